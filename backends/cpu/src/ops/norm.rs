//! RMS normalisation (llama's `attn_norm` / `ffn_norm` / `output_norm`).

use super::shape_err;
use super::simd::Kernels;
use crate::{Cpu, CpuError};
use weft::ops::check_rows;

impl Cpu {
    /// `out = x / sqrt(mean(x^2) + eps) * weight` for each row.
    /// x, out: f32 [n_rows, n_embd]; weight: f32 [n_embd] (its length sets the row length).
    pub fn rms_norm(
        &self,
        x: &[f32],
        weight: &[f32],
        eps: f32,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        let n = weight.len();
        check_rows("rms_norm", x.len(), n, out.len()).map_err(shape_err)?;
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(CpuError::Shape {
                op: "rms_norm",
                detail: format!("eps {eps} must be finite and >= 0"),
            });
        }
        let k = Kernels::for_cpu(self);
        self.for_each_chunk(out, n, x.len(), |i, o| {
            (k.rms_norm_row)(&x[i * n..][..n], weight, eps, o)
        });
        Ok(())
    }
}
