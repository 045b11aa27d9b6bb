//! The scalar level's float dot. Quantized weights on the scalar level call the runtime's
//! reference `vec_dot` directly (mod.rs); float weights keep their activations in f32 (the
//! reference would round them to f16/bf16 first), summed in element order.

use weft::GgmlType;

/// Dot of one float weight row (F32, F16 or BF16 bytes) with f32 activations.
pub(crate) fn dot_float(t: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    let mut sum = 0.0f32;
    match t {
        GgmlType::F32 => {
            for (c, &xv) in w.chunks_exact(4).zip(x) {
                sum += f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * xv;
            }
        }
        GgmlType::F16 => {
            for (c, &xv) in w.chunks_exact(2).zip(x) {
                sum += half::f16::from_le_bytes([c[0], c[1]]).to_f32() * xv;
            }
        }
        GgmlType::BF16 => {
            for (c, &xv) in w.chunks_exact(2).zip(x) {
                sum += half::bf16::from_le_bytes([c[0], c[1]]).to_f32() * xv;
            }
        }
        _ => unreachable!("dot_float: {t} is not a float type (checked by matmul)"),
    }
    sum
}
