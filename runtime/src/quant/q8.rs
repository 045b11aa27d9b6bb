//! 8-bit formats: Q8_0 (weights and the activation format for Q4_0/Q5_0/Q8_0), Q8_1 (the
//! activation format for Q4_1/Q5_1) and Q8_K (the activation format for the K-quants).

use super::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0, QK8_1};
use super::nearest_int;
use crate::ggml_type::QK_K;
use half::f16;

/// max(|x|) over a block, with ggml's `MAX(amax, fabsf(v))` comparison order.
fn abs_max(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        amax = if amax > a { amax } else { a };
    }
    amax
}

/// Dequantize Q8_0 blocks into `y` (`y.len() == x.len() * 32`; panics otherwise).
pub fn dequantize_row_q8_0(x: &[BlockQ8_0], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK8_0, "dequantize_row_q8_0: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK8_0)) {
        let d = b.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = f32::from(q) * d;
        }
    }
}

/// Quantize to Q8_0 the way `quantize_row_q8_0_ref` does (`x.len() == y.len() * 32`):
/// symmetric, `d = max|x| / 127`, values rounded half away from zero.
pub fn quantize_row_q8_0(x: &[f32], y: &mut [BlockQ8_0]) {
    assert_eq!(x.len(), y.len() * QK8_0, "quantize_row_q8_0: length mismatch");
    for (xb, out) in x.chunks_exact(QK8_0).zip(y.iter_mut()) {
        let d = abs_max(xb) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.d = f16::from_f32(d);
        for (q, &v) in out.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
        }
    }
}

/// Dot of two Q8_0 rows (same number of blocks; panics otherwise).
pub fn vec_dot_q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_q8_0_q8_0: block count mismatch");
    let mut sumf = 0.0f32;
    for (bx, by) in x.iter().zip(y) {
        let mut sumi = 0i32;
        for (&a, &b) in bx.qs.iter().zip(&by.qs) {
            sumi += i32::from(a) * i32::from(b);
        }
        sumf += sumi as f32 * (bx.d.to_f32() * by.d.to_f32());
    }
    sumf
}

/// Dequantize Q8_1 blocks into `y` (`s` is redundant and ignored). Panics on a length
/// mismatch (`y.len() == x.len() * 32`).
pub fn dequantize_row_q8_1(x: &[BlockQ8_1], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK8_1, "dequantize_row_q8_1: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK8_1)) {
        let d = b.d.to_f32();
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = f32::from(q) * d;
        }
    }
}

/// Quantize to Q8_1 the way `quantize_row_q8_1_ref` does (`x.len() == y.len() * 32`): as
/// Q8_0, plus `s = d * sum(q)` so Q4_1/Q5_1 dots get their min term without a second pass.
pub fn quantize_row_q8_1(x: &[f32], y: &mut [BlockQ8_1]) {
    assert_eq!(x.len(), y.len() * QK8_1, "quantize_row_q8_1: length mismatch");
    for (xb, out) in x.chunks_exact(QK8_1).zip(y.iter_mut()) {
        let d = abs_max(xb) / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.d = f16::from_f32(d);
        let mut sum = 0i32;
        for (q, &v) in out.qs.iter_mut().zip(xb) {
            *q = (v * id).round() as i8;
            sum += i32::from(*q);
        }
        out.s = f16::from_f32(sum as f32 * d);
    }
}

/// Dequantize Q8_K blocks into `y` (`y.len() == x.len() * 256`; panics otherwise).
pub fn dequantize_row_q8_k(x: &[BlockQ8K], y: &mut [f32]) {
    assert_eq!(y.len(), x.len() * QK_K, "dequantize_row_q8_k: length mismatch");
    for (b, out) in x.iter().zip(y.chunks_exact_mut(QK_K)) {
        for (o, &q) in out.iter_mut().zip(&b.qs) {
            *o = b.d * f32::from(q);
        }
    }
}

/// Quantize to Q8_K the way `quantize_row_q8_K_ref` does (`x.len() == y.len() * 256`).
///
/// The element of largest magnitude maps to -127 (so the f32 scale `d` may be negative);
/// values round half to even; `bsums[j]` is the sum of `qs[16j..16j+16]`, which the K-quant
/// dots use for their min terms.
pub fn quantize_row_q8_k(x: &[f32], y: &mut [BlockQ8K]) {
    assert_eq!(x.len(), y.len() * QK_K, "quantize_row_q8_k: length mismatch");
    for (xb, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in xb {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            out.d = 0.0;
            out.qs = [0; QK_K];
            out.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in out.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, qs) in out.bsums.iter_mut().zip(out.qs.chunks_exact(16)) {
            *s = qs.iter().map(|&q| i16::from(q)).sum();
        }
        out.d = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_k_extreme_maps_to_minus_127_and_bsums_add_up() {
        let x: Vec<f32> = (0..QK_K).map(|i| (i as f32 - 100.0) * 0.25).collect();
        let mut y = [BlockQ8K { d: 0.0, qs: [0; QK_K], bsums: [0; 16] }];
        quantize_row_q8_k(&x, &mut y);
        // max |x| is x[255] = 38.75 (positive), so d < 0 and q[255] = -127.
        assert!(y[0].d < 0.0);
        assert_eq!(y[0].qs[255], -127);
        for j in 0..16 {
            let s: i32 = y[0].qs[16 * j..16 * j + 16].iter().map(|&q| i32::from(q)).sum();
            assert_eq!(i32::from(y[0].bsums[j]), s);
        }
    }

    #[test]
    fn q8_1_sum_field_is_d_times_sum_q() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
        let mut y = [BlockQ8_1 { d: f16::ZERO, s: f16::ZERO, qs: [0; 32] }; 2];
        quantize_row_q8_1(&x, &mut y);
        for (b, xb) in y.iter().zip(x.chunks_exact(32)) {
            // s uses the f32 scale, before d is rounded to f16.
            let d = abs_max(xb) / 127.0;
            assert_eq!(b.d, f16::from_f32(d));
            let sum: i32 = b.qs.iter().map(|&q| i32::from(q)).sum();
            assert_ne!(sum, 0);
            assert_eq!(b.s, f16::from_f32(sum as f32 * d));
        }
    }
}
