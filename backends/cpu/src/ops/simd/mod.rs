//! Per-instruction-set kernels of the non-matmul ops, one instruction set per file.
//!
//! Every file exports the same functions with the same meaning; the op drivers in `ops/*.rs`
//! validate shapes, pick a file by [`crate::CpuLevel`] once per call and split the work over
//! threads. Kernels work on one row / head / slice and never allocate: their temporaries are
//! small stack arrays.
//!
//! The attention kernels are generic over the KV cache element ([`weft::KvElem`]: f16 or
//! f32) and monomorphised: each level loads a vector of cache elements as f32 lanes through
//! a small trait of its own (F16C `vcvtph2ps` for f16, a plain load for f32), so the f16 path
//! is the same code it always was and the f32 path is not a copy of it.

use half::f16;
use std::ops::Range;
use weft::KvElem;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
pub(crate) mod extras;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;
pub(crate) mod scalar;

/// Keys whose logits are computed together before their V rows are accumulated: the score
/// buffer is `f32 [ATTN_BLOCK]` on the stack, and the running max/sum are rescaled at most
/// once per block.
pub(crate) const ATTN_BLOCK: usize = 64;

/// One (query row, head) pair of an attention call, as the kernels see it; `T` is the KV
/// cache element (f16 or f32).
pub(crate) struct AttnHead<'a, T = f16> {
    /// f32 [head_dim]: this head's query row, unscaled.
    pub q: &'a [f32],
    /// T [n_cells, n_head_kv, head_dim]: the whole K cache.
    pub k: &'a [T],
    /// T [n_cells, n_head_kv, head_dim]: the whole V cache.
    pub v: &'a [T],
    /// Values per cell: n_head_kv * head_dim.
    pub kv_row: usize,
    /// Offset of this head's KV head inside a cell: kv_head * head_dim.
    pub kv_off: usize,
    pub scale: f32,
}

// Manual impls: the derives would require `T: Clone` / `T: Copy`, which the slices do not need.
impl<T> Clone for AttnHead<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for AttnHead<'_, T> {}

impl<T> AttnHead<'_, T> {
    /// T [n, n_head_kv, head_dim] starting at `cell`, cut so that the last cell ends at
    /// this head's last value. Kernels index it as `blk[j * kv_row + kv_off + d]`,
    /// `j < n`, `d < head_dim`, all in bounds by construction.
    #[inline]
    pub fn block<'s>(&self, cache: &'s [T], cell: usize, n: usize) -> &'s [T] {
        let hd = self.q.len();
        &cache[cell * self.kv_row..(cell + n - 1) * self.kv_row + self.kv_off + hd]
    }
}

/// The most logits of one (row, head) that the two-pass kernels (f16 cache, see
/// [`ggml_f16`]) keep on the stack (16 KB) instead of computing them again in their second
/// pass (the AVX2 and portable kernels; the AVX-512 one still recomputes).
pub(crate) const LOGITS_KEPT: usize = 4096;

/// Head dimensions up to this have their query rounded to f16 over an f16 cache (larger
/// ones, which no supported model has, keep the f32 query).
pub(crate) const MAX_ROUNDED_HD: usize = 512;

/// Whether the cache element is f16: attention then follows ggml's precision (the reference
/// parity is measured against). ggml multiplies an f16 cache with a query converted to f16
/// (a `mul_mat`'s f32 operand is converted to the f16 operand's dot type), and the V product
/// with the normalised probabilities converted to f16 the same way. Matching those two
/// roundings keeps weft's attention output within f32 rounding of llama.cpp's instead of
/// ~1e-3 away, which matters because the next matmul quantizes it to 8 bits.
#[inline(always)]
pub(crate) fn ggml_f16<T>() -> bool {
    std::mem::size_of::<T>() == 2
}

/// The head `h` with its query rounded to f16 in `buf` when the cache is f16 (see
/// [`ggml_f16`]), else `h` as it is.
#[inline(always)]
pub(crate) fn ggml_query<'b, T>(
    h: &AttnHead<'b, T>,
    buf: &'b mut [f32; MAX_ROUNDED_HD],
) -> AttnHead<'b, T> {
    let hd = h.q.len();
    if !ggml_f16::<T>() || hd > MAX_ROUNDED_HD {
        return *h;
    }
    for (d, &x) in buf.iter_mut().zip(h.q) {
        *d = f16::from_f32(x).to_f32();
    }
    AttnHead { q: &buf[..hd], ..*h }
}

/// The online-softmax state of one (row, head) between key blocks. The accumulator itself is
/// the output row (f32 [head_dim]), scaled by `1 / sum` at the end.
///
/// The loop that drives it (`attend` in each kernel file) walks the visible key ranges in
/// blocks of [`ATTN_BLOCK`]: (1) logits of the block into a stack buffer, (2) `update`
/// rescales when the max grows, (3) the block's logits become `exp(s - max)` and their V rows
/// are accumulated. Between (2) and (3) the loop hands the block's logits to an
/// [`extras::BlockObserver`]: per-piece top-5 logits (turned into group scores with the
/// row's final log-sum-exp) and the entropy's running sum live there (`extras.rs`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct OnlineSoftmax {
    /// Max logit seen so far (-inf before the first block).
    pub max: f32,
    /// Sum of exp(logit - max) over the keys seen so far.
    pub sum: f32,
}

impl OnlineSoftmax {
    pub const fn new() -> Self {
        Self { max: f32::NEG_INFINITY, sum: 0.0 }
    }

    /// Takes the max of a new block; returns the factor the sum and the accumulator must be
    /// multiplied by (1 when the max did not grow, 0 on the first block).
    #[inline]
    pub fn update(&mut self, block_max: f32) -> Option<f32> {
        if block_max > self.max {
            let factor =
                if self.max == f32::NEG_INFINITY { 0.0 } else { (self.max - block_max).exp() };
            self.max = block_max;
            self.sum *= factor;
            Some(factor)
        } else {
            None
        }
    }
}

/// Splits a cell range into blocks of at most [`ATTN_BLOCK`] keys: `(first cell, count)`.
#[inline]
pub(crate) fn blocks(r: &Range<usize>) -> impl Iterator<Item = (usize, usize)> {
    let (start, end) = (r.start, r.end);
    (start..end).step_by(ATTN_BLOCK).map(move |c| (c, (end - c).min(ATTN_BLOCK)))
}

/// One level's kernels as plain function pointers, chosen once per op call.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    /// (x, weight, eps, out): one row of `rms_norm`.
    pub rms_norm_row: fn(&[f32], &[f32], f32, &mut [f32]),
    /// (head, cos, sin): one head, Norm style, tables f32 [n_rot].
    pub rope_norm: fn(&mut [f32], &[f32], &[f32]),
    /// (head, cos, sin): one head, NeoX style, tables f32 [n_rot/2].
    pub rope_neox: fn(&mut [f32], &[f32], &[f32]),
    /// (gate, up): gate = silu(gate) * up.
    pub silu_mul: fn(&mut [f32], &[f32]),
    pub softmax_row: fn(&mut [f32]),
    pub f32_to_f16: fn(&[f32], &mut [f16]),
    pub f16_to_f32: fn(&[f16], &mut [f32]),
    /// Attention over an f16 KV cache: one (row, head) over its visible ranges.
    pub attend: AttendFn<f16>,
    /// `attend` with an observer gathering the optional outputs; returns the final softmax
    /// state the observer's `finish` needs.
    pub attend_extras: AttendExtrasFn<f16>,
    /// `attend_extras` without reading V or writing the output: the scoring pass of
    /// selective attention (logits, log-sum-exp and the observer only).
    pub score_extras: AttendExtrasFn<f16>,
    /// `attend` over an f32 KV cache.
    pub attend_f32: AttendFn<f32>,
    /// `attend_extras` over an f32 KV cache.
    pub attend_extras_f32: AttendExtrasFn<f32>,
    /// `score_extras` over an f32 KV cache.
    pub score_extras_f32: AttendExtrasFn<f32>,
}

/// (head, visible ranges, out): one (row, head) of attention, f32 [head_dim] into `out`.
pub(crate) type AttendFn<T> = fn(&AttnHead<'_, T>, &[Range<usize>], &mut [f32]);

/// (head, visible ranges, out, observer) -> final softmax state.
pub(crate) type AttendExtrasFn<T> =
    fn(&AttnHead<'_, T>, &[Range<usize>], &mut [f32], &mut extras::RowExtras<'_>) -> OnlineSoftmax;

/// The attention entries of a kernel table for one KV element type.
pub(crate) struct AttnFns<T: 'static> {
    pub attend: AttendFn<T>,
    pub attend_extras: AttendExtrasFn<T>,
    pub score_extras: AttendExtrasFn<T>,
}

/// A KV element the CPU attention supports: picks its entries from a kernel table.
pub(crate) trait AttnElem: KvElem {
    fn attn_fns(k: &Kernels) -> AttnFns<Self>;
}

impl AttnElem for f16 {
    #[inline]
    fn attn_fns(k: &Kernels) -> AttnFns<f16> {
        AttnFns { attend: k.attend, attend_extras: k.attend_extras, score_extras: k.score_extras }
    }
}

impl AttnElem for f32 {
    #[inline]
    fn attn_fns(k: &Kernels) -> AttnFns<f32> {
        AttnFns {
            attend: k.attend_f32,
            attend_extras: k.attend_extras_f32,
            score_extras: k.score_extras_f32,
        }
    }
}

impl Kernels {
    /// The kernel table of the CPU's level. The SIMD tables call `#[target_feature]`
    /// functions: they are sound to use because a [`crate::Cpu`] only ever holds a level
    /// that `Cpu::new` checked the machine supports. The NEON table has its own elementwise,
    /// norm, RoPE, softmax and f16 kernels, and the portable attention.
    pub fn for_cpu(cpu: &crate::Cpu) -> &'static Kernels {
        match cpu.level() {
            #[cfg(target_arch = "x86_64")]
            crate::CpuLevel::Avx512 => &avx512::KERNELS,
            #[cfg(target_arch = "x86_64")]
            crate::CpuLevel::Avx2 => &avx2::KERNELS,
            #[cfg(target_arch = "aarch64")]
            crate::CpuLevel::Neon => &neon::KERNELS,
            _ => &scalar::KERNELS,
        }
    }
}
