//! Q2_K and Q3_K: 256-weight super-blocks of 16 sub-blocks of 16.
//!
//! Both store 2 low bits per weight in `qs`: for element `e`, byte `qs[32 * (e / 128) + e % 32]`
//! at bit offset `2 * ((e % 128) / 32)`. Sub-block `e / 16` has its own scale.
//! Q2_K: 4-bit scale and 4-bit min per sub-block (`scales[j]`: low nibble scale, high nibble
//! min), `x = d * sc * q - dmin * m`. Q3_K: bit 2 of `q` is bit `e / 32` of `hmask[e % 32]`,
//! stored inverted (set means +0, clear means -4), 16 6-bit signed scales packed in 12 bytes,
//! `x = d * (sc - 32) * q` with `q` in -4..=3. Both dot with Q8_K.

use super::blocks::{BlockQ2K, BlockQ3K, BlockQ8K};
use super::klanes::KLanes;
use crate::ggml_type::QK_K;

/// The 2-bit fields of a Q2_K/Q3_K `qs` array, in element order (0..=3).
fn unpack2(qs: &[u8; QK_K / 4]) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for (e, v) in q.iter_mut().enumerate() {
        let byte = qs[32 * (e / 128) + e % 32];
        *v = (byte >> (2 * ((e % 128) / 32))) & 3;
    }
    q
}

/// Dequantize Q2_K super-blocks into `y` (`y.len() == x.len() * 256`; panics otherwise).
pub fn dequantize_row_q2_k(x: &[BlockQ2K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "dequantize_row_q2_k: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let dmin = b.dmin.to_f32();
        let q = unpack2(&b.qs);
        for (j, (out16, q16)) in out.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let dl = d * f32::from(b.scales[j] & 0x0f);
            let ml = dmin * f32::from(b.scales[j] >> 4);
            for (o, &qv) in out16.iter_mut().zip(q16) {
                *o = dl * f32::from(qv) - ml;
            }
        }
    }
}

/// Dot of a Q2_K row with a Q8_K row (same number of blocks; panics otherwise).
///
/// Per super-block, integer sums: `isum = sum_j sc_j * sum(q * q8)` and the min term
/// `summs = sum_j m_j * bsums_j`; then `d8 * d * isum - d8 * dmin * summs`.
pub fn vec_dot_q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q2_k_q8_k: block count mismatch");
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let q = unpack2(&bx.qs);
        let mut summs = 0i32;
        let mut isum = 0i32;
        for j in 0..QK_K / 16 {
            summs += i32::from(by.bsums[j]) * i32::from(bx.scales[j] >> 4);
            let mut isuml = 0i32;
            for e in 16 * j..16 * j + 16 {
                isuml += i32::from(by.qs[e]) * i32::from(q[e]);
            }
            isum += i32::from(bx.scales[j] & 0x0f) * isuml;
        }
        let dall = by.d * bx.d.to_f32();
        let dmin = by.d * bx.dmin.to_f32();
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// The 16 Q3_K sub-block scales, already offset to -32..=31.
///
/// Low 4 bits of scale `j`: `scales[j]` low nibble for j < 8, `scales[j - 8]` high nibble
/// otherwise; high 2 bits: bits `2 * (j / 4)` of `scales[8 + j % 4]`.
pub(crate) fn q3_k_scales(scales: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let lo = if j < 8 { scales[j] & 0x0f } else { scales[j - 8] >> 4 };
        let hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (lo | (hi << 4)) as i8 - 32;
    }
    out
}

/// The signed 3-bit values (-4..=3) of a Q3_K super-block, in element order.
fn q3_k_values(b: &BlockQ3K) -> [i8; QK_K] {
    let low = unpack2(&b.qs);
    let mut q = [0i8; QK_K];
    for (e, v) in q.iter_mut().enumerate() {
        let high_set = b.hmask[e % 32] & (1 << (e / 32)) != 0;
        *v = low[e] as i8 - if high_set { 0 } else { 4 };
    }
    q
}

/// Dequantize Q3_K super-blocks into `y` (`y.len() == x.len() * 256`; panics otherwise).
pub fn dequantize_row_q3_k(x: &[BlockQ3K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "dequantize_row_q3_k: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let scales = q3_k_scales(&b.scales);
        let q = q3_k_values(b);
        for (j, (out16, q16)) in out.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let dl = d * f32::from(scales[j]);
            for (o, &qv) in out16.iter_mut().zip(q16) {
                *o = dl * f32::from(qv);
            }
        }
    }
}

/// Dot of a Q3_K row with a Q8_K row (same number of blocks; panics otherwise): per
/// super-block `d * d8 * sum_e sc(e) * q(e) * q8(e)`, summed in ggml's lane order (klanes.rs).
pub fn vec_dot_q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q3_k_q8_k: block count mismatch");
    let mut lanes = KLanes::default();
    for (bx, by) in x.iter().zip(y) {
        let scales = q3_k_scales(&bx.scales);
        let q = q3_k_values(bx);
        lanes.add_block(bx.d.to_f32() * by.d, &q, &by.qs, |e| i32::from(scales[e / 16]));
    }
    lanes.finish(0.0)
}
