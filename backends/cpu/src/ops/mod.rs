//! The non-matmul ops of the CPU backend, one concern per file, as `impl Cpu` methods.
//!
//! Every op is destination-passing (the caller owns the output) and allocates nothing: shape
//! rules come from `weft::ops` (shared with every backend), the kernels of the CPU's level
//! from [`simd::Kernels`], and the work is split over the pool in independent items (rows,
//! tokens, (query row, head) pairs) that are each computed in a fixed order — so the result
//! does not depend on how items land on threads, and 1 and N threads are bit-identical.

mod attention;
mod elementwise;
mod get_rows;
mod kv;
mod norm;
mod rope;
pub(crate) mod simd;
mod softmax;

pub use rope::MAX_N_ROT;

use crate::{Cpu, CpuError};
use weft::ops::OpsError;

/// A shape error from the shared rules, as the backend reports it.
pub(crate) fn shape_err(e: OpsError) -> CpuError {
    CpuError::Shape { op: e.op, detail: e.detail }
}

/// Below this much work (about one multiply-add per unit) an op stays on the calling thread:
/// waking the pool costs more than it saves.
const PAR_MIN_WORK: usize = 1 << 15;

impl Cpu {
    /// Calls `f(index, chunk)` for every `chunk_len`-long chunk of `data` (the last may be
    /// shorter), on the pool when `work` is worth it. Chunks are independent, so any split
    /// gives the same result.
    pub(crate) fn for_each_chunk<T, F>(&self, data: &mut [T], chunk_len: usize, work: usize, f: F)
    where
        T: Send,
        F: Fn(usize, &mut [T]) + Sync + Send,
    {
        let n_items = data.len().div_ceil(chunk_len.max(1));
        if self.threads() <= 1 || n_items <= 1 || work < PAR_MIN_WORK {
            data.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
            return;
        }
        // A few items per claim keeps the claiming overhead small while leaving enough claims
        // to balance uneven items (causal attention rows grow with the row index).
        let per = (n_items / (self.threads() * 8)).max(1);
        self.par_chunks_mut(data, chunk_len * per, |_, j, group| {
            group.chunks_mut(chunk_len).enumerate().for_each(|(k, c)| f(j * per + k, c))
        });
    }
}
