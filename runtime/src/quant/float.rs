//! Plain float formats: F32, F16 (IEEE binary16) and BF16 (bfloat16).
//!
//! Conversions follow ggml: f32 -> f16 rounds to nearest even (what `half` and F16C do);
//! f32 -> bf16 rounds to nearest even and quiets NaNs by setting bit 6 of the result, exactly
//! as `ggml_compute_fp32_to_bf16`. Dots multiply in f32 and accumulate in f64, as ggml's
//! generic `ggml_vec_dot_f16` / `_bf16` / `_f32` do.

use half::{bf16, f16};

/// f16 -> f32 (exact).
#[inline]
pub fn f16_to_f32(h: f16) -> f32 {
    h.to_f32()
}

/// f32 -> f16, round to nearest even.
#[inline]
pub fn f32_to_f16(x: f32) -> f16 {
    f16::from_f32(x)
}

/// bf16 -> f32 (exact: bf16 is the high half of an f32).
#[inline]
pub fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits(u32::from(h.to_bits()) << 16)
}

/// f32 -> bf16 as ggml does it: round to nearest even; NaN keeps its top bits and is forced
/// quiet (bit 6 set) so a signalling NaN never rounds into infinity.
#[inline]
pub fn f32_to_bf16(x: f32) -> bf16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits(((bits >> 16) | 64) as u16);
    }
    // Adding 0x7fff plus the lowest kept bit rounds half to even; u64 avoids the overflow
    // that ggml's u32 arithmetic has only for NaN inputs (handled above).
    let rounded = (u64::from(bits) + 0x7fff + u64::from((bits >> 16) & 1)) >> 16;
    bf16::from_bits(rounded as u16)
}

/// Dequantize a row of f16 values. Panics if the lengths differ.
pub fn dequantize_row_f16(x: &[f16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_f16: length mismatch");
    for (o, &h) in y.iter_mut().zip(x) {
        *o = f16_to_f32(h);
    }
}

/// Quantize a row to f16. Panics if the lengths differ.
pub fn quantize_row_f16(x: &[f32], y: &mut [f16]) {
    assert_eq!(x.len(), y.len(), "quantize_row_f16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32_to_f16(v);
    }
}

/// Dequantize a row of bf16 values. Panics if the lengths differ.
pub fn dequantize_row_bf16(x: &[bf16], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "dequantize_row_bf16: length mismatch");
    for (o, &h) in y.iter_mut().zip(x) {
        *o = bf16_to_f32(h);
    }
}

/// Quantize a row to bf16. Panics if the lengths differ.
pub fn quantize_row_bf16(x: &[f32], y: &mut [bf16]) {
    assert_eq!(x.len(), y.len(), "quantize_row_bf16: length mismatch");
    for (o, &v) in y.iter_mut().zip(x) {
        *o = f32_to_bf16(v);
    }
}

/// Dot of two f32 rows: products in f32, sum in f64. Panics if the lengths differ.
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_f32: length mismatch");
    let mut sum = 0.0f64;
    for (&a, &b) in x.iter().zip(y) {
        sum += f64::from(a * b);
    }
    sum as f32
}

/// Dot of two f16 rows: products in f32, sum in f64. Panics if the lengths differ.
pub fn vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_f16: length mismatch");
    let mut sum = 0.0f64;
    for (&a, &b) in x.iter().zip(y) {
        sum += f64::from(f16_to_f32(a) * f16_to_f32(b));
    }
    sum as f32
}

/// Dot of two bf16 rows: products in f32, sum in f64. Panics if the lengths differ.
pub fn vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    assert_eq!(x.len(), y.len(), "vec_dot_bf16: length mismatch");
    let mut sum = 0.0f64;
    for (&a, &b) in x.iter().zip(y) {
        sum += f64::from(bf16_to_f32(a) * bf16_to_f32(b));
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounds_to_nearest_even_and_quiets_nan() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0).to_bits(), 0x3f80);
        // 1 + 3*2^-8 is halfway between mantissas 0x01 and 0x02: it goes up to the even one.
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0).to_bits(), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)).to_bits(), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::INFINITY).to_bits(), 0x7f80);
        assert_eq!(bf16_to_f32(bf16::from_bits(0xc040)), -3.0);
    }

    #[test]
    fn f16_round_trip_is_exact_for_representable_values() {
        for bits in (0u16..0x7c00).step_by(7) {
            let h = f16::from_bits(bits);
            assert_eq!(f32_to_f16(f16_to_f32(h)).to_bits(), bits);
        }
    }
}
