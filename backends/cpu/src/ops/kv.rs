//! Writing new K/V rows into the f16 KV cache.

use super::shape_err;
use super::simd::Kernels;
use crate::{Cpu, CpuError};
use half::f16;
use weft::ops::check_kv_store;

impl Cpu {
    /// Stores `src: f32 [n_rows, row_len]` into cells `cell0..cell0 + n_rows` of
    /// `cache: f16 [n_cells, row_len]` (row_len = n_head_kv * head_dim), rounding to nearest
    /// even as F16C and `half` both do, so every level writes identical bits.
    pub fn kv_store(
        &self,
        cache: &mut [f16],
        cell0: usize,
        row_len: usize,
        src: &[f32],
    ) -> Result<(), CpuError> {
        let n_rows = check_kv_store(cache.len(), cell0, row_len, src.len()).map_err(shape_err)?;
        let dst = &mut cache[cell0 * row_len..(cell0 + n_rows) * row_len];
        (Kernels::for_cpu(self).f32_to_f16)(src, dst);
        Ok(())
    }
}
