//! Writing new K/V rows into the f16 or f32 KV cache.

use super::shape_err;
use super::simd::Kernels;
use crate::{Cpu, CpuError};
use weft::kv_type::KvSliceMut;
use weft::ops::check_kv_store;
use weft::KvElem;

impl Cpu {
    /// Stores `src: f32 [n_rows, row_len]` into cells `cell0..cell0 + n_rows` of
    /// `cache: T [n_cells, row_len]` (row_len = n_head_kv * head_dim). f16 rounds to nearest
    /// even as F16C and `half` both do, so every level writes identical bits; f32 copies.
    pub fn kv_store<T: KvElem>(
        &self,
        cache: &mut [T],
        cell0: usize,
        row_len: usize,
        src: &[f32],
    ) -> Result<(), CpuError> {
        let n_rows = check_kv_store(cache.len(), cell0, row_len, src.len()).map_err(shape_err)?;
        let dst = &mut cache[cell0 * row_len..(cell0 + n_rows) * row_len];
        match T::as_kv_slice_mut(dst) {
            KvSliceMut::F16(dst) => (Kernels::for_cpu(self).f32_to_f16)(src, dst),
            KvSliceMut::F32(dst) => dst.copy_from_slice(src),
        }
        Ok(())
    }
}
