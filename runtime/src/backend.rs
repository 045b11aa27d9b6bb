//! The compute backend a model runs on (DESIGN principle 3: `Model<B: Backend>`, static
//! generics, no enum of backends).
//!
//! The op set is small and coarse and destination-passing: the caller owns every output
//! buffer, allocated once before the token loop. Buffers are backend-resident (host vectors on
//! the CPU, device buffers on Vulkan), so the trait names their types and moves data across
//! only through [`Backend::upload`] / [`Backend::download`]. Host-side policy (token ids,
//! positions, the attention mask) is passed as plain host slices: every backend receives the
//! same description and does its own upload.
//!
//! Ops take whole buffers plus the number of rows in use: buffers are sized for the largest
//! batch and a smaller batch uses their leading rows.

use crate::gguf::TensorView;
use crate::ops::{AttnExtras, AttnMask, AttnParams, RopeParams};
use crate::{GgmlType, KvType};

/// A compute backend: buffer types, transfers and the model op set.
pub trait Backend {
    /// The backend's error type; it must say which op failed and why.
    type Error: std::error::Error + Send + Sync + 'static;
    /// An f32 activation buffer (flat; shapes are documented where buffers are allocated).
    type Buf;
    /// A buffer for one layer's K or V cache, `[n_cells, n_head_kv * head_dim]`, of the
    /// [`KvType`] it was allocated with (f16 or f32).
    type KvBuf;
    /// A weight tensor usable by [`Backend::matmul`] and [`Backend::get_rows`]. It may borrow
    /// the model file (the CPU backend reads the memory map in place).
    type Weight<'a>;
    /// Reusable per-forward working memory (e.g. activations quantized for a matmul).
    type Scratch;

    /// A short human-readable description (`cpu avx512 x2`).
    fn describe(&self) -> String;

    /// Whether [`Backend::matmul`] supports weights of this type.
    fn supports_matmul(&self, t: GgmlType) -> bool;
    /// Whether [`Backend::get_rows`] supports weights of this type.
    fn supports_get_rows(&self, t: GgmlType) -> bool;

    /// A zeroed f32 buffer of `n` elements.
    fn alloc(&self, n: usize) -> Result<Self::Buf, Self::Error>;
    /// A zeroed KV buffer of `n` elements of type `ty`.
    fn alloc_kv(&self, ty: KvType, n: usize) -> Result<Self::KvBuf, Self::Error>;
    /// Scratch memory for batches of up to `max_rows` activation rows of at most `max_cols`.
    fn alloc_scratch(&self, max_rows: usize, max_cols: usize)
        -> Result<Self::Scratch, Self::Error>;
    /// Make a weight tensor resident (the CPU backend borrows it or repacks it, a GPU
    /// copies it).
    fn weight<'a>(&self, t: &TensorView<'a>) -> Result<Self::Weight<'a>, Self::Error>;
    /// A tensor used only by [`Backend::get_rows`] (a token embedding that is not also the
    /// output projection): a backend may keep it as it is, since a lookup reads a few rows.
    fn embedding_weight<'a>(&self, t: &TensorView<'a>) -> Result<Self::Weight<'a>, Self::Error> {
        self.weight(t)
    }
    /// Whether `w` is a copy that never reads the file's bytes again: the loader then lets
    /// the file's pages go, so resident memory counts the weights once.
    fn weight_is_copy(&self, _w: &Self::Weight<'_>) -> bool {
        false
    }
    /// An F32/F16/BF16 tensor (norm weights, biases) converted to an f32 buffer.
    fn upload_tensor_f32(&self, t: &TensorView<'_>) -> Result<Self::Buf, Self::Error>;

    /// `dst[..src.len()] = src`.
    fn upload(&self, src: &[f32], dst: &mut Self::Buf) -> Result<(), Self::Error>;
    /// `dst = src[offset .. offset + dst.len()]`.
    fn download(&self, src: &Self::Buf, offset: usize, dst: &mut [f32]) -> Result<(), Self::Error>;
    /// `dst[dst_off .. dst_off + n] = src[src_off .. src_off + n]`.
    fn copy(
        &self,
        src: &Self::Buf,
        src_off: usize,
        dst: &mut Self::Buf,
        dst_off: usize,
        n: usize,
    ) -> Result<(), Self::Error>;

    /// `y[m, w.rows] = x[m, w.cols] * W^T` (ggml mul_mat).
    fn matmul(
        &self,
        w: &Self::Weight<'_>,
        x: &Self::Buf,
        m: usize,
        y: &mut Self::Buf,
        scratch: &mut Self::Scratch,
    ) -> Result<(), Self::Error>;
    /// `out[i, :] = dequantize(w[ids[i], :])` (token embedding).
    fn get_rows(
        &self,
        w: &Self::Weight<'_>,
        ids: &[u32],
        out: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// Row-wise RMS norm of `x[n_rows, weight_len]` times `weight`, into `out`.
    fn rms_norm(
        &self,
        x: &Self::Buf,
        weight: &Self::Buf,
        n_rows: usize,
        eps: f32,
        out: &mut Self::Buf,
    ) -> Result<(), Self::Error>;
    /// Rotary embedding in place on `x[positions.len(), n_head, head_dim]`.
    fn rope(
        &self,
        x: &mut Self::Buf,
        n_head: usize,
        positions: &[i32],
        p: &RopeParams,
    ) -> Result<(), Self::Error>;
    /// `a[..n] += b`, where `b` is either `n` elements or one row broadcast over `a`'s rows.
    fn add(
        &self,
        a: &mut Self::Buf,
        n: usize,
        b: &Self::Buf,
        b_len: usize,
    ) -> Result<(), Self::Error>;
    /// `gate[..n] = silu(gate[..n]) * up[..n]`.
    fn silu_mul(&self, gate: &mut Self::Buf, up: &Self::Buf, n: usize) -> Result<(), Self::Error>;
    /// Store `n_rows` rows of `src[n_rows, row_len]` into cache cells `cell0 ..`, converted
    /// to the cache's type (f16: round to nearest even; f32: copied).
    fn kv_store(
        &self,
        cache: &mut Self::KvBuf,
        cell0: usize,
        row_len: usize,
        src: &Self::Buf,
        n_rows: usize,
    ) -> Result<(), Self::Error>;
    /// Multi-head attention of `q[n_q, n_head, head_dim]` over cache cells `0 .. n_kv` of `k`
    /// and `v` (`[n_cells, n_head_kv, head_dim]`, both of one [`KvType`]), restricted by
    /// `mask`, into `out[n_q, n_head * head_dim]`.
    fn attention(
        &self,
        q: &Self::Buf,
        n_q: usize,
        k: &Self::KvBuf,
        v: &Self::KvBuf,
        n_kv: usize,
        p: &AttnParams,
        mask: &AttnMask<'_>,
        out: &mut Self::Buf,
    ) -> Result<(), Self::Error>;

    /// [`Backend::attention`] with the optional outputs of `extras` (per-piece group scores,
    /// entropy, mean |logit|; host slices), a scoring-only mode that leaves `out` untouched,
    /// and APE's piece-block rescaling. With nothing requested it must equal `attention`.
    #[allow(clippy::too_many_arguments)]
    fn attention_ext(
        &self,
        q: &Self::Buf,
        n_q: usize,
        k: &Self::KvBuf,
        v: &Self::KvBuf,
        n_kv: usize,
        p: &AttnParams,
        mask: &AttnMask<'_>,
        extras: &mut AttnExtras<'_>,
        out: &mut Self::Buf,
    ) -> Result<(), Self::Error>;

    /// The element type of a KV buffer.
    fn kv_type(&self, cache: &Self::KvBuf) -> KvType;
    /// Copies `n = dst.len() / type_size` elements `cache[offset .. offset + n]` (element
    /// offsets) into `dst` as little-endian bytes of the cache's type (the document cache's
    /// read-back). `dst.len()` must be a multiple of the type size.
    fn kv_read(
        &self,
        cache: &Self::KvBuf,
        offset: usize,
        dst: &mut [u8],
    ) -> Result<(), Self::Error>;
    /// `cache[offset .. offset + n] = src`, `src` being `n` little-endian elements of the
    /// cache's type (a document cache hit).
    fn kv_write(
        &self,
        src: &[u8],
        cache: &mut Self::KvBuf,
        offset: usize,
    ) -> Result<(), Self::Error>;
}
