//! Per-instruction-set kernels of the non-matmul ops, one instruction set per file.
//!
//! Every file exports the same functions with the same meaning; the op drivers in `ops/*.rs`
//! validate shapes, pick a file by [`crate::CpuLevel`] once per call and split the work over
//! threads. Kernels work on one row / head / slice and never allocate: their temporaries are
//! small stack arrays.

use half::f16;
use std::ops::Range;

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

/// One (query row, head) pair of an attention call, as the kernels see it.
#[derive(Clone, Copy)]
pub(crate) struct AttnHead<'a> {
    /// f32 [head_dim]: this head's query row, unscaled.
    pub q: &'a [f32],
    /// f16 [n_cells, n_head_kv, head_dim]: the whole K cache.
    pub k: &'a [f16],
    /// f16 [n_cells, n_head_kv, head_dim]: the whole V cache.
    pub v: &'a [f16],
    /// Values per cell: n_head_kv * head_dim.
    pub kv_row: usize,
    /// Offset of this head's KV head inside a cell: kv_head * head_dim.
    pub kv_off: usize,
    pub scale: f32,
}

impl AttnHead<'_> {
    /// f16 [n, n_head_kv, head_dim] starting at `cell`, cut so that the last cell ends at
    /// this head's last value. Kernels index it as `blk[j * kv_row + kv_off + d]`,
    /// `j < n`, `d < head_dim`, all in bounds by construction.
    #[inline]
    pub fn block<'s>(&self, cache: &'s [f16], cell: usize, n: usize) -> &'s [f16] {
        let hd = self.q.len();
        &cache[cell * self.kv_row..(cell + n - 1) * self.kv_row + self.kv_off + hd]
    }
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
    pub attend: fn(&AttnHead<'_>, &[Range<usize>], &mut [f32]),
    /// `attend` with an observer gathering the optional outputs; returns the final softmax
    /// state the observer's `finish` needs.
    pub attend_extras: AttendExtrasFn,
    /// `attend_extras` without reading V or writing the output: the scoring pass of
    /// selective attention (logits, log-sum-exp and the observer only).
    pub score_extras: AttendExtrasFn,
}

/// (head, visible ranges, out, observer) -> final softmax state.
pub(crate) type AttendExtrasFn =
    fn(&AttnHead<'_>, &[Range<usize>], &mut [f32], &mut extras::RowExtras<'_>) -> OnlineSoftmax;

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
