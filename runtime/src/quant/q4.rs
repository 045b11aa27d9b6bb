//! Q4_0 and Q4_1: 32 weights per block, 4 bits each.
//!
//! Nibble layout (both formats): `qs[j]` holds element `j` in its low nibble and element
//! `j + 16` in its high nibble. Q4_0 is symmetric (`x = d * (q - 8)`), Q4_1 has a min
//! (`x = d * q + m`). Both dot against Q8 activations of the same block size: Q4_0 with Q8_0,
//! Q4_1 with Q8_1 (whose precomputed `s = d * sum(q)` carries the min term).

use super::blocks::{BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK4_0, QK4_1};
use half::f16;

/// Dequantize Q4_0 blocks into `y` (`y.len() == x.len() * 32`; panics otherwise).
pub fn dequantize_row_q4_0(x: &[BlockQ4_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK4_0, "dequantize_row_q4_0: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK4_0)) {
        let d = b.d.to_f32();
        for (j, &q) in b.qs.iter().enumerate() {
            out[j] = (i32::from(q & 0x0f) - 8) as f32 * d;
            out[j + QK4_0 / 2] = (i32::from(q >> 4) - 8) as f32 * d;
        }
    }
}

/// Quantize to Q4_0 the way `quantize_row_q4_0_ref` does (`x.len() == y.len() * 32`).
///
/// The scale maps the element of largest magnitude (keeping its sign) to -8, so that extreme
/// is exact and the other side gets 7 levels.
pub fn quantize_row_q4_0(x: &[f32], y: &mut [BlockQ4_0]) {
    assert_eq!(x.len(), y.len() * QK4_0, "quantize_row_q4_0: length mismatch");
    for (xb, out) in x.chunks_exact(QK4_0).zip(y.iter_mut()) {
        let max = signed_absmax(xb);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.d = f16::from_f32(d);
        for j in 0..QK4_0 / 2 {
            // +8.5 then truncation = round half up around the zero point 8.
            let q0 = ((xb[j] * id + 8.5) as i32).clamp(0, 15) as u8;
            let q1 = ((xb[j + QK4_0 / 2] * id + 8.5) as i32).clamp(0, 15) as u8;
            out.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Dot of a Q4_0 row with a Q8_0 row (same number of blocks; panics otherwise).
pub fn vec_dot_q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q4_0_q8_0: block count mismatch");
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for (j, &q) in bx.qs.iter().enumerate() {
            sumi += (i32::from(q & 0x0f) - 8) * i32::from(by.qs[j]);
            sumi += (i32::from(q >> 4) - 8) * i32::from(by.qs[j + QK4_0 / 2]);
        }
        // ggml's order: (sumi * dx) * dy.
        sumf += sumi as f32 * bx.d.to_f32() * by.d.to_f32();
    }
    sumf
}

/// Dequantize Q4_1 blocks into `y` (`y.len() == x.len() * 32`; panics otherwise).
pub fn dequantize_row_q4_1(x: &[BlockQ4_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK4_1, "dequantize_row_q4_1: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK4_1)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        for (j, &q) in b.qs.iter().enumerate() {
            out[j] = f32::from(q & 0x0f) * d + m;
            out[j + QK4_1 / 2] = f32::from(q >> 4) * d + m;
        }
    }
}

/// Quantize to Q4_1 the way `quantize_row_q4_1_ref` does (`x.len() == y.len() * 32`):
/// 16 evenly spaced levels from the block's min to its max.
pub fn quantize_row_q4_1(x: &[f32], y: &mut [BlockQ4_1]) {
    assert_eq!(x.len(), y.len() * QK4_1, "quantize_row_q4_1: length mismatch");
    for (xb, out) in x.chunks_exact(QK4_1).zip(y.iter_mut()) {
        let (min, max) = min_max(xb);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.d = f16::from_f32(d);
        out.m = f16::from_f32(min);
        for j in 0..QK4_1 / 2 {
            let q0 = (((xb[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            let q1 = (((xb[j + QK4_1 / 2] - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            out.qs[j] = q0 | (q1 << 4);
        }
    }
}

/// Dot of a Q4_1 row with a Q8_1 row (same number of blocks; panics otherwise).
pub fn vec_dot_q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q4_1_q8_1: block count mismatch");
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for (j, &q) in bx.qs.iter().enumerate() {
            sumi += i32::from(q & 0x0f) * i32::from(by.qs[j]);
            sumi += i32::from(q >> 4) * i32::from(by.qs[j + QK4_1 / 2]);
        }
        // sum(x*y) = dx*dy*sum(q*qy) + m * sum(dy*qy), and s = dy*sum(qy).
        sumf += bx.d.to_f32() * by.d.to_f32() * sumi as f32 + bx.m.to_f32() * by.s.to_f32();
    }
    sumf
}

/// The element of largest magnitude, with its sign (the first one wins ties), or 0.
pub(crate) fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// (min, max) of a block, starting from (f32::MAX, -f32::MAX) as ggml does.
pub(crate) fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}
