//! Row softmax (sampling, tools; attention has its own fused softmax).

use super::shape_err;
use super::simd::Kernels;
use crate::{Cpu, CpuError};
use weft::ops::check_rows;

impl Cpu {
    /// Softmax of each row of `x: f32 [n_rows, n_cols]`, in place.
    pub fn softmax_rows(&self, x: &mut [f32], n_cols: usize) -> Result<(), CpuError> {
        check_rows("softmax", x.len(), n_cols, x.len()).map_err(shape_err)?;
        let k = Kernels::for_cpu(self);
        let work = x.len() * 8;
        self.for_each_chunk(x, n_cols, work, |_, row| (k.softmax_row)(row));
        Ok(())
    }
}
