//! AVX2 activation quantizers: Q8_0, Q8_1 and Q8_K rows written with the reference's exact
//! bytes (checked by `simd_quantizers_are_bit_exact`).
//!
//! Unsafe: every raw access is within the slices whose lengths are asserted first; the
//! intrinsics need the features of the `#[target_feature]` functions.

use std::arch::x86_64::*;
use weft::GgmlType;

// ---------------------------------------------------------------------------------------
// Activation quantizers. They write the reference's exact bytes (same f32 operations in the
// same order: max|x|, one division, one multiply and the same rounding per element), so the
// kernels multiply the very codes the reference `vec_dot` would. A row with a non-finite
// value is left to the reference quantizer (its NaN handling is order-dependent).

/// |v| of 8 lanes.
#[inline(always)]
unsafe fn abs8(v: __m256) -> __m256 {
    // SAFETY: AVX is enabled in every caller.
    unsafe { _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff))) }
}

/// Max of 8 lanes (exact, order-free).
#[inline(always)]
unsafe fn hmax(v: __m256) -> f32 {
    // SAFETY: AVX is enabled in every caller.
    unsafe {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
    }
}

/// Round half away from zero (C `roundf`), exact for every finite f32.
#[inline(always)]
unsafe fn round_away(v: __m256) -> __m256 {
    // SAFETY: AVX is enabled in every caller.
    unsafe {
        let t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
        let half = _mm256_cmp_ps(abs8(_mm256_sub_ps(v, t)), _mm256_set1_ps(0.5), _CMP_GE_OQ);
        let sign_one = _mm256_or_ps(
            _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN))),
            _mm256_set1_ps(1.0),
        );
        _mm256_add_ps(t, _mm256_and_ps(half, sign_one))
    }
}

/// Four i32x8 (values within i8) -> 32 i8 in element order.
#[inline(always)]
unsafe fn pack32(q: [__m256i; 4]) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// f32 -> f16 bits, round to nearest even (as `half::f16::from_f32`).
#[inline(always)]
unsafe fn to_f16(v: f32) -> [u8; 2] {
    // SAFETY: F16C is enabled in every caller.
    unsafe {
        (_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(v), _MM_FROUND_TO_NEAREST_INT), 0) as u16)
            .to_le_bytes()
    }
}

/// Q8_0 (`Q8_1 == false`) or Q8_1 blocks of `x` into `out`, as `quantize_row_q8_0/q8_1`.
/// (A `#[target_feature]` function so that its closures inherit the features.)
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_0_1<const Q8_1: bool>(x: &[f32], out: &mut [u8]) -> bool {
    let bsz = if Q8_1 { 36 } else { 34 };
    let nb = x.len() / 32;
    assert!(x.len() == nb * 32 && out.len() == nb * bsz);
    // SAFETY: block i reads x[32i..32i+32] and writes out[bsz*i..bsz*(i+1)], in bounds.
    unsafe {
        for i in 0..nb {
            let v: [__m256; 4] =
                std::array::from_fn(|k| _mm256_loadu_ps(x.as_ptr().add(32 * i + 8 * k)));
            let a = v.map(|v| abs8(v));
            let all = _mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]));
            // NaN or inf anywhere (the ordered compare fails): the reference takes the row.
            let fin = a.map(|a| _mm256_cmp_ps(a, _mm256_set1_ps(f32::MAX), _CMP_LE_OQ));
            let fin = _mm256_and_ps(_mm256_and_ps(fin[0], fin[1]), _mm256_and_ps(fin[2], fin[3]));
            if _mm256_movemask_ps(fin) != 0xff {
                return false;
            }
            let d = hmax(all) / 127.0;
            let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            let q = v.map(|v| _mm256_cvttps_epi32(round_away(_mm256_mul_ps(v, id))));
            let b = out.as_mut_ptr().add(i * bsz);
            b.cast::<[u8; 2]>().write_unaligned(to_f16(d));
            if Q8_1 {
                let s =
                    _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
                let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01)));
                b.add(2).cast::<[u8; 2]>().write_unaligned(to_f16(sum as f32 * d));
            }
            _mm256_storeu_si256(b.add(bsz - 32).cast(), pack32(q));
        }
    }
    true
}

/// Q8_K blocks of `x` into `out`, as `quantize_row_q8_k` (round half to even, the element
/// of largest magnitude maps to -127, `bsums` per 16).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_k(x: &[f32], out: &mut [u8]) -> bool {
    let nb = x.len() / 256;
    assert!(x.len() == nb * 256 && out.len() == nb * 292);
    // SAFETY: block i reads x[256i..256i+256] and writes out[292i..292i+292], in bounds.
    unsafe {
        for i in 0..nb {
            let xb = x.as_ptr().add(256 * i);
            let b = out.as_mut_ptr().add(292 * i);
            let mut all = _mm256_setzero_ps();
            let mut fin = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
            for k in 0..32 {
                let a = abs8(_mm256_loadu_ps(xb.add(8 * k)));
                all = _mm256_max_ps(a, all);
                fin = _mm256_and_ps(fin, _mm256_cmp_ps(a, _mm256_set1_ps(f32::MAX), _CMP_LE_OQ));
            }
            // NaN or inf anywhere (the ordered compare fails): the reference takes the row.
            if _mm256_movemask_ps(fin) != 0xff {
                return false;
            }
            let amax = hmax(all);
            if amax == 0.0 {
                std::ptr::write_bytes(b, 0, 292);
                continue;
            }
            // The first element reaching max |x| (the reference keeps the first on ties).
            let am = _mm256_set1_ps(amax);
            let mut max = 0.0f32;
            for k in 0..32 {
                let hit = _mm256_movemask_ps(_mm256_cmp_ps(
                    abs8(_mm256_loadu_ps(xb.add(8 * k))),
                    am,
                    _CMP_EQ_OQ,
                ));
                if hit != 0 {
                    max = *xb.add(8 * k + hit.trailing_zeros() as usize);
                    break;
                }
            }
            let iscale = -127.0 / max;
            let is = _mm256_set1_ps(iscale);
            let mut sums = [0i32; 64];
            for c in 0..8 {
                // cvtps rounds half to even (the default MXCSR mode), like `round_ties_even`.
                let q: [__m256i; 4] = std::array::from_fn(|k| {
                    let v = _mm256_mul_ps(is, _mm256_loadu_ps(xb.add(32 * c + 8 * k)));
                    _mm256_min_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(127))
                });
                let p = pack32(q);
                _mm256_storeu_si256(b.add(4 + 32 * c).cast(), p);
                let s4 = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_set1_epi8(1), p),
                    _mm256_set1_epi16(1),
                );
                _mm256_storeu_si256(sums.as_mut_ptr().add(8 * c).cast(), s4);
            }
            b.cast::<[u8; 4]>().write_unaligned((1.0 / iscale).to_le_bytes());
            for j in 0..16 {
                let s = &sums[4 * j..4 * j + 4];
                let bsum = (s[0] + s[1] + s[2] + s[3]) as i16;
                b.add(260 + 2 * j).cast::<[u8; 2]>().write_unaligned(bsum.to_le_bytes());
            }
        }
    }
    true
}

/// Quantize one activation row to `act_t` (Q8_0, Q8_1 or Q8_K) with the reference's exact
/// bytes. Returns false, leaving `out` unspecified, when the row holds a non-finite value.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn quantize_row_q8(act_t: GgmlType, x: &[f32], out: &mut [u8]) -> bool {
    // SAFETY: this function's features are the ones the quantizers need.
    unsafe {
        match act_t {
            GgmlType::Q8_0 => quantize_q8_0_1::<false>(x, out),
            GgmlType::Q8_1 => quantize_q8_0_1::<true>(x, out),
            GgmlType::Q8_K => quantize_q8_k(x, out),
            _ => false,
        }
    }
}
