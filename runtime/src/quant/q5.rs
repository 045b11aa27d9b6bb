//! Q5_0 and Q5_1: 32 weights per block, 5 bits each.
//!
//! The low 4 bits use Q4's nibble layout (`qs[j]`: element `j` low, `j + 16` high); bit 4 of
//! element `j` is bit `j` of `qh` read as a little-endian u32. Q5_0: `x = d * (q - 16)`
//! (dots with Q8_0); Q5_1: `x = d * q + m` (dots with Q8_1).

use super::blocks::{BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK5_0, QK5_1};
use super::q4::{min_max, signed_absmax};
use half::f16;

/// The 5-bit values of a block (0..=31), in element order.
fn unpack5(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let qh = u32::from_le_bytes(qh);
    let mut q = [0u8; 32];
    for j in 0..16 {
        let hi0 = ((qh >> j) & 1) as u8;
        let hi1 = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 0x0f) | (hi0 << 4);
        q[j + 16] = (qs[j] >> 4) | (hi1 << 4);
    }
    q
}

/// Packs 32 5-bit values into (qh, qs).
fn pack5(q: &[u8; 32]) -> ([u8; 4], [u8; 16]) {
    let mut qh = 0u32;
    let mut qs = [0u8; 16];
    for j in 0..16 {
        qs[j] = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
        qh |= u32::from(q[j] >> 4) << j;
        qh |= u32::from(q[j + 16] >> 4) << (j + 16);
    }
    (qh.to_le_bytes(), qs)
}

/// Dequantize Q5_0 blocks into `y` (`y.len() == x.len() * 32`; panics otherwise).
pub fn dequantize_row_q5_0(x: &[BlockQ5_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK5_0, "dequantize_row_q5_0: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK5_0)) {
        let d = b.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&unpack5(b.qh, &b.qs)) {
            *o = (i32::from(q) - 16) as f32 * d;
        }
    }
}

/// Quantize to Q5_0 the way `quantize_row_q5_0_ref` does (`x.len() == y.len() * 32`): the
/// element of largest magnitude maps to -16.
pub fn quantize_row_q5_0(x: &[f32], y: &mut [BlockQ5_0]) {
    assert_eq!(x.len(), y.len() * QK5_0, "quantize_row_q5_0: length mismatch");
    for (xb, out) in x.chunks_exact(QK5_0).zip(y.iter_mut()) {
        let max = signed_absmax(xb);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.d = f16::from_f32(d);
        let mut q = [0u8; 32];
        for (qj, &v) in q.iter_mut().zip(xb) {
            *qj = ((v * id + 16.5) as i32).clamp(0, 31) as u8;
        }
        (out.qh, out.qs) = pack5(&q);
    }
}

/// Dot of a Q5_0 row with a Q8_0 row (same number of blocks; panics otherwise).
pub fn vec_dot_q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q5_0_q8_0: block count mismatch");
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let q = unpack5(bx.qh, &bx.qs);
        let mut sumi = 0i32;
        for (&qx, &qy) in q.iter().zip(&by.qs) {
            sumi += (i32::from(qx) - 16) * i32::from(qy);
        }
        sumf += bx.d.to_f32() * by.d.to_f32() * sumi as f32;
    }
    sumf
}

/// Dequantize Q5_1 blocks into `y` (`y.len() == x.len() * 32`; panics otherwise).
pub fn dequantize_row_q5_1(x: &[BlockQ5_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK5_1, "dequantize_row_q5_1: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK5_1)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        for (o, &q) in out.iter_mut().zip(&unpack5(b.qh, &b.qs)) {
            *o = f32::from(q) * d + m;
        }
    }
}

/// Quantize to Q5_1 the way `quantize_row_q5_1_ref` does (`x.len() == y.len() * 32`):
/// 32 evenly spaced levels from the block's min to its max.
pub fn quantize_row_q5_1(x: &[f32], y: &mut [BlockQ5_1]) {
    assert_eq!(x.len(), y.len() * QK5_1, "quantize_row_q5_1: length mismatch");
    for (xb, out) in x.chunks_exact(QK5_1).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.d = f16::from_f32(d);
        out.m = f16::from_f32(min);
        let mut q = [0u8; 32];
        for (qj, &v) in q.iter_mut().zip(xb) {
            *qj = (((v - min) * id + 0.5) as i32).clamp(0, 31) as u8;
        }
        (out.qh, out.qs) = pack5(&q);
    }
}

/// Dot of a Q5_1 row with a Q8_1 row (same number of blocks; panics otherwise).
pub fn vec_dot_q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q5_1_q8_1: block count mismatch");
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let q = unpack5(bx.qh, &bx.qs);
        let mut sumi = 0i32;
        for (&qx, &qy) in q.iter().zip(&by.qs) {
            sumi += i32::from(qx) * i32::from(qy);
        }
        sumf += bx.d.to_f32() * by.d.to_f32() * sumi as f32 + bx.m.to_f32() * by.s.to_f32();
    }
    sumf
}
