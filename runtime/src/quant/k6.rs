//! Q6_K: 256-weight super-blocks of 16 sub-blocks of 16, 6 bits per weight, a signed 8-bit
//! scale per sub-block, `x = d * sc * (q - 32)`. Dots with Q8_K.
//!
//! Element `e` of 128-element half `n = e / 128`, quarter `k = (e % 128) / 32`, lane
//! `l = e % 32`: low 4 bits in `ql[64 n + l + 32 (k % 2)]` (low nibble for k < 2, high
//! nibble otherwise), high 2 bits at bit `2 k` of `qh[32 n + l]`.

use super::blocks::{BlockQ6K, BlockQ8K};
use super::klanes::KLanes;
use crate::ggml_type::QK_K;

/// The signed 6-bit values (-32..=31) of a Q6_K super-block, in element order.
fn q6_k_values(b: &BlockQ6K) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for (e, v) in q.iter_mut().enumerate() {
        let (n, k, l) = (e / 128, (e % 128) / 32, e % 32);
        let low = (b.ql[64 * n + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0f;
        let high = (b.qh[32 * n + l] >> (2 * k)) & 3;
        *v = (low | (high << 4)) as i8 - 32;
    }
    q
}

/// Dequantize Q6_K super-blocks into `y` (`y.len() == x.len() * 256`; panics otherwise).
pub fn dequantize_row_q6_k(x: &[BlockQ6K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "dequantize_row_q6_k: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let q = q6_k_values(b);
        for (j, (out16, q16)) in out.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            // ggml's order: (d * sc) * q.
            let dl = d * f32::from(b.scales[j]);
            for (o, &qv) in out16.iter_mut().zip(q16) {
                *o = dl * f32::from(qv);
            }
        }
    }
}

/// Dot of a Q6_K row with a Q8_K row (same number of blocks; panics otherwise): per
/// super-block `d * d8 * sum_e sc(e) * q(e) * q8(e)`, summed in ggml's lane order (klanes.rs).
pub fn vec_dot_q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q6_k_q8_k: block count mismatch");
    let mut lanes = KLanes::default();
    for (bx, by) in x.iter().zip(y) {
        let q = q6_k_values(bx);
        lanes.add_block(bx.d.to_f32() * by.d, &q, &by.qs, |e| i32::from(bx.scales[e / 16]));
    }
    lanes.finish(0.0)
}
