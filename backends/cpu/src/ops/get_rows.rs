//! Embedding lookup (`token_embd` rows gathered by token id).

use super::simd::Kernels;
use crate::matmul::{CpuWeight, WeightRef};
use crate::{Cpu, CpuError};
use half::f16;
use weft::quant::{can_dequantize, dequantize_row};
use weft::GgmlType;

impl Cpu {
    /// `out[i] = dequantize(row ids[i] of w)`: w holds `rows` rows of `cols` values of any type
    /// the runtime's reference can dequantize; out: f32 [ids.len(), cols].
    ///
    /// f32 and f16 rows are converted here (f16 with the level's F16C kernel); quantized rows
    /// go through `weft::quant::dequantize_row`, the format's definition: a gather touches a
    /// few rows per token, so it is never worth a second implementation. Every id is checked
    /// before anything is written.
    pub fn get_rows(&self, w: &WeightRef, ids: &[u32], out: &mut [f32]) -> Result<(), CpuError> {
        let shape = |detail: String| CpuError::Shape { op: "get_rows", detail };
        let t = w.ggml_type;
        if !can_dequantize(t) {
            return Err(CpuError::UnsupportedType { op: "get_rows", ty: t });
        }
        let row_bytes = t
            .row_size(w.cols as u64)
            .and_then(|b| usize::try_from(b).ok())
            .filter(|_| w.cols > 0)
            .ok_or_else(|| shape(format!("{} cols are not whole {t} blocks", w.cols)))?;
        if row_bytes.checked_mul(w.rows) != Some(w.data.len()) {
            return Err(shape(format!(
                "{} data bytes for {} rows of {row_bytes} bytes",
                w.data.len(),
                w.rows
            )));
        }
        if ids.len().checked_mul(w.cols) != Some(out.len()) {
            return Err(shape(format!(
                "out has {} values for {} ids of {} cols",
                out.len(),
                ids.len(),
                w.cols
            )));
        }
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= w.rows) {
            return Err(shape(format!("ids[{i}] = {id} is out of range (rows {})", w.rows)));
        }
        let k = Kernels::for_cpu(self);
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(w.cols)) {
            let src = &w.data[id as usize * row_bytes..][..row_bytes];
            match t {
                GgmlType::F32 => {
                    for (d, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                        *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    }
                }
                GgmlType::F16 => match bytemuck::try_cast_slice::<u8, f16>(src) {
                    Ok(h) => (k.f16_to_f32)(h, dst),
                    // GGUF tensor data is aligned; an odd address only comes from a caller's
                    // own buffer, which still gets the right values.
                    Err(_) => {
                        for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                            *d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                        }
                    }
                },
                _ => dequantize_row(t, src, dst).map_err(|e| shape(format!("row {id}: {e}")))?,
            }
        }
        Ok(())
    }

    /// [`Self::get_rows`] on a weight as the backend holds it: a packed weight's rows are
    /// rebuilt in ggml's layout (into a stack buffer, so the lookup allocates nothing for
    /// rows up to 16 KiB) and dequantized by the reference.
    pub fn get_rows_weight(
        &self,
        w: &CpuWeight,
        ids: &[u32],
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        let p = match w {
            CpuWeight::Mapped(w) => return self.get_rows(w, ids, out),
            CpuWeight::Packed(p) => p,
        };
        let shape = |detail: String| CpuError::Shape { op: "get_rows", detail };
        let (t, rows, cols) = (w.ggml_type(), w.rows(), w.cols());
        if ids.len().checked_mul(cols) != Some(out.len()) {
            return Err(shape(format!(
                "out has {} values for {} ids of {cols} cols",
                out.len(),
                ids.len()
            )));
        }
        if let Some((i, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= rows) {
            return Err(shape(format!("ids[{i}] = {id} is out of range (rows {rows})")));
        }
        let row_bytes = p.row_bytes();
        let mut stack = [0u8; 16 << 10];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if row_bytes <= stack.len() {
            &mut stack[..row_bytes]
        } else {
            heap.resize(row_bytes, 0);
            &mut heap
        };
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(cols)) {
            p.native_row(id as usize, buf);
            dequantize_row(t, buf, dst).map_err(|e| shape(format!("row {id}: {e}")))?;
        }
        Ok(())
    }
}
