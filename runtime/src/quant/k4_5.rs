//! Q4_K and Q5_K: 256-weight super-blocks of 8 sub-blocks of 32, each with a 6-bit scale
//! and a 6-bit min (packed in 12 bytes), `x = d * sc * q - dmin * m`.
//!
//! 4 low bits: element `e` is in `qs[32 * (e / 64) + e % 32]`, low nibble when
//! `(e % 64) < 32`, else high nibble. Q5_K adds bit 4 from bit `e / 32` of `qh[e % 32]`.
//! Both dot with Q8_K.

use super::blocks::{BlockQ4K, BlockQ5K, BlockQ8K, K_SCALE_SIZE};
use super::klanes::KLanes;
use crate::ggml_type::QK_K;

/// Scale and min of sub-block `j` (0..8), 6 bits each.
///
/// Bytes 0..4 hold scales 0..4 (low 6 bits), bytes 4..8 mins 0..4; sub-blocks 4..8 keep their
/// low 4 bits in the nibbles of bytes 8..12 and their top 2 bits in the spare top bits of
/// bytes 0..8.
pub(crate) fn scale_min_k4(j: usize, s: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        let sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc, m)
    }
}

/// Inverse of [`scale_min_k4`]: packs 8 (scale, min) pairs, each 0..=63.
pub(crate) fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut s = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        if j < 4 {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4);
            s[j - 4] |= (ls[j] >> 4) << 6;
            s[j] |= (lm[j] >> 4) << 6;
        }
    }
    s
}

/// The 4-bit values of a Q4_K/Q5_K `qs` array, in element order.
fn unpack4(qs: &[u8; QK_K / 2]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for (e, v) in q.iter_mut().enumerate() {
        let byte = qs[32 * (e / 64) + e % 32];
        *v = (if e % 64 < 32 { byte & 0x0f } else { byte >> 4 }) as i8;
    }
    q
}

/// The 5-bit values of a Q5_K super-block, in element order.
fn q5_k_values(b: &BlockQ5K) -> [i8; QK_K] {
    let mut q = unpack4(&b.qs);
    for (e, v) in q.iter_mut().enumerate() {
        if b.qh[e % 32] & (1 << (e / 32)) != 0 {
            *v += 16;
        }
    }
    q
}

/// Shared by Q4_K and Q5_K: `x = d * sc * q - dmin * m` over 8 sub-blocks of 32.
fn dequantize_k4_5(
    d: f32,
    dmin: f32,
    scales: &[u8; K_SCALE_SIZE],
    q: &[i8; QK_K],
    out: &mut [f32],
) {
    for (j, (out32, q32)) in out.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
        let (sc, m) = scale_min_k4(j, scales);
        let d1 = d * f32::from(sc);
        let m1 = dmin * f32::from(m);
        for (o, &qv) in out32.iter_mut().zip(q32) {
            *o = d1 * f32::from(qv) - m1;
        }
    }
}

/// Shared by the Q4_K and Q5_K dots, one super-block: adds `d * d8 * sum_e sc(e) q(e) q8(e)`
/// to the lanes (ggml's order, see klanes.rs) and returns the min term
/// `dmin * d8 * sum_j m_j * (bsums_2j + bsums_2j+1)`, which ggml subtracts from its running sum.
fn dot_k4_5(
    d: f32,
    dmin: f32,
    scales: &[u8; K_SCALE_SIZE],
    q: &[i8; QK_K],
    by: &BlockQ8K,
    lanes: &mut KLanes,
) -> f32 {
    let mut sc = [0i32; 8];
    let mut summs = 0i32;
    for j in 0..QK_K / 32 {
        let (s, m) = scale_min_k4(j, scales);
        sc[j] = i32::from(s);
        summs += i32::from(m) * (i32::from(by.bsums[2 * j]) + i32::from(by.bsums[2 * j + 1]));
    }
    lanes.add_block(d * by.d, q, &by.qs, |e| sc[e / 32]);
    dmin * by.d * summs as f32
}

/// Dequantize Q4_K super-blocks into `y` (`y.len() == x.len() * 256`; panics otherwise).
pub fn dequantize_row_q4_k(x: &[BlockQ4K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "dequantize_row_q4_k: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        dequantize_k4_5(b.d.to_f32(), b.dmin.to_f32(), &b.scales, &unpack4(&b.qs), out);
    }
}

/// Dot of a Q4_K row with a Q8_K row (same number of blocks; panics otherwise).
pub fn vec_dot_q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q4_k_q8_k: block count mismatch");
    let mut lanes = KLanes::default();
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let q = unpack4(&bx.qs);
        sumf -= dot_k4_5(bx.d.to_f32(), bx.dmin.to_f32(), &bx.scales, &q, by, &mut lanes);
    }
    lanes.finish(sumf)
}

/// Dequantize Q5_K super-blocks into `y` (`y.len() == x.len() * 256`; panics otherwise).
pub fn dequantize_row_q5_k(x: &[BlockQ5K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "dequantize_row_q5_k: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        dequantize_k4_5(b.d.to_f32(), b.dmin.to_f32(), &b.scales, &q5_k_values(b), out);
    }
}

/// Dot of a Q5_K row with a Q8_K row (same number of blocks; panics otherwise).
pub fn vec_dot_q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q5_k_q8_k: block count mismatch");
    let mut lanes = KLanes::default();
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let q = q5_k_values(bx);
        sumf -= dot_k4_5(bx.d.to_f32(), bx.dmin.to_f32(), &bx.scales, &q, by, &mut lanes);
    }
    lanes.finish(sumf)
}
