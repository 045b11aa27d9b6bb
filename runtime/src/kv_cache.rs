//! The KV cache: per layer, one K and one V buffer of `n_ctx` cells, preallocated, plus
//! host-side metadata for every cell in use (its RoPE position and the piece it belongs to).
//!
//! The buffers hold f16 by default (as llama.cpp does) or f32 ([`KvType`], chosen when the
//! cache is created; K and V share it). Cells are filled in order: a batch takes the next free cells, so the cells
//! of one batch are contiguous. The metadata is what the parallel-encoding layout reads to build
//! positions and attention masks; the model itself sees only positions, cell indices and a mask.

use crate::backend::Backend;
use crate::model::HParams;
use crate::KvType;
use std::ops::Range;

/// Metadata of one cache cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellMeta {
    /// RoPE position the cell's key was rotated with.
    pub pos: i32,
    /// Piece id: [`CellMeta::SHARED`] for ordinary tokens (sink, query, plain chat), else the
    /// parallel-encoding piece the token belongs to.
    pub piece: u32,
}

impl CellMeta {
    /// The piece id of tokens that belong to no piece.
    pub const SHARED: u32 = 0;

    /// An ordinary token at `pos`.
    pub fn shared(pos: i32) -> CellMeta {
        CellMeta { pos, piece: Self::SHARED }
    }
}

/// Errors of the KV cache.
#[derive(Debug, thiserror::Error)]
pub enum KvCacheError {
    #[error("context full: {need} more cells needed, {free} free of n_ctx {n_ctx}")]
    ContextFull { need: usize, free: usize, n_ctx: usize },
    #[error("KV cache of n_ctx 0 requested")]
    ZeroContext,
    #[error(
        "KV cache allocation of {n_layer} layers x {n_ctx} cells x {row_len} {kv_type} failed: {msg}"
    )]
    Alloc { n_layer: usize, n_ctx: usize, row_len: usize, kv_type: KvType, msg: String },
}

/// K and V storage for every layer, and the metadata of the cells in use.
pub struct KvCache<B: Backend> {
    /// per layer: kv_type [n_ctx, n_head_kv * head_dim]
    k: Vec<B::KvBuf>,
    /// per layer: kv_type [n_ctx, n_head_kv * head_dim]
    v: Vec<B::KvBuf>,
    kv_type: KvType,
    /// metadata of cells 0 .. cells.len() (the cells in use)
    cells: Vec<CellMeta>,
    n_ctx: usize,
    row_len: usize,
}

impl<B: Backend> KvCache<B> {
    /// A cache of `n_ctx` cells per layer of `kv_type` elements for a model with these
    /// hyper-parameters.
    pub fn new(
        backend: &B,
        hp: &HParams,
        n_ctx: usize,
        kv_type: KvType,
    ) -> Result<Self, KvCacheError> {
        if n_ctx == 0 {
            return Err(KvCacheError::ZeroContext);
        }
        let row_len = hp.n_embd_kv();
        let alloc_err =
            |msg: String| KvCacheError::Alloc { n_layer: hp.n_layer, n_ctx, row_len, kv_type, msg };
        let n = n_ctx.checked_mul(row_len).ok_or_else(|| alloc_err("size overflows".into()))?;
        let mut k = Vec::with_capacity(hp.n_layer);
        let mut v = Vec::with_capacity(hp.n_layer);
        for _ in 0..hp.n_layer {
            k.push(backend.alloc_kv(kv_type, n).map_err(|e| alloc_err(e.to_string()))?);
            v.push(backend.alloc_kv(kv_type, n).map_err(|e| alloc_err(e.to_string()))?);
        }
        Ok(KvCache { k, v, kv_type, cells: Vec::with_capacity(n_ctx), n_ctx, row_len })
    }

    /// The element type of every K and V buffer.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Cells per layer.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Bytes of K and V storage over all layers (elements of the cache's [`KvType`]).
    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.n_ctx * self.row_len * self.kv_type.type_size()
    }

    /// Cells in use.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Free cells.
    pub fn free(&self) -> usize {
        self.n_ctx - self.cells.len()
    }

    /// Elements per cell row: n_head_kv * head_dim.
    pub fn row_len(&self) -> usize {
        self.row_len
    }

    /// Metadata of the cells in use, by cell index.
    pub fn cells(&self) -> &[CellMeta] {
        &self.cells
    }

    /// Claim the next `metas.len()` cells; returns their index range. The caller then writes
    /// their K/V (a model forward with `cell0 = range.start`). Never partially claims.
    pub fn push(&mut self, metas: &[CellMeta]) -> Result<Range<usize>, KvCacheError> {
        if metas.len() > self.free() {
            return Err(KvCacheError::ContextFull {
                need: metas.len(),
                free: self.free(),
                n_ctx: self.n_ctx,
            });
        }
        let start = self.cells.len();
        self.cells.extend_from_slice(metas);
        Ok(start..self.cells.len())
    }

    /// Forget every cell from `n` on (their storage is overwritten by later pushes).
    pub fn truncate(&mut self, n: usize) {
        self.cells.truncate(n);
    }

    /// Forget every cell.
    pub fn clear(&mut self) {
        self.cells.clear();
    }

    /// Layer `il`'s K and V buffers, mutable (for storing a batch).
    pub fn layer_mut(&mut self, il: usize) -> (&mut B::KvBuf, &mut B::KvBuf) {
        (&mut self.k[il], &mut self.v[il])
    }

    /// Layer `il`'s K and V buffers.
    pub fn layer(&self, il: usize) -> (&B::KvBuf, &B::KvBuf) {
        (&self.k[il], &self.v[il])
    }

    /// Number of layers.
    pub fn n_layer(&self) -> usize {
        self.k.len()
    }

    /// Bytes [`KvCache::read_cells`] produces for `n_cells` cells.
    pub fn cells_bytes(&self, n_cells: usize) -> usize {
        2 * self.n_layer() * n_cells * self.row_len * self.kv_type.type_size()
    }

    /// Copies the K and V of `cells` of every layer to the host: `dst` is kv_type
    /// [2, n_layer, cells.len(), row_len] (all K layers, then all V layers) as little-endian
    /// bytes, [`KvCache::cells_bytes`] long.
    pub fn read_cells(
        &self,
        backend: &B,
        cells: Range<usize>,
        dst: &mut [u8],
    ) -> Result<(), B::Error> {
        let n = cells.len() * self.row_len * self.kv_type.type_size();
        let off = cells.start * self.row_len;
        for (buf, d) in self.k.iter().chain(&self.v).zip(dst.chunks_mut(n.max(1))) {
            backend.kv_read(buf, off, d)?;
        }
        Ok(())
    }

    /// Writes `src` (laid out as in [`KvCache::read_cells`]) into `cells` of every layer.
    pub fn write_cells(
        &mut self,
        backend: &B,
        cells: Range<usize>,
        src: &[u8],
    ) -> Result<(), B::Error> {
        let n = cells.len() * self.row_len * self.kv_type.type_size();
        let off = cells.start * self.row_len;
        for (buf, s) in self.k.iter_mut().chain(self.v.iter_mut()).zip(src.chunks(n.max(1))) {
            backend.kv_write(s, buf, off)?;
        }
        Ok(())
    }
}
