//! Fused AVX2 GEMV dots for the 2- and 3-bit K-quants (Q2_K, Q3_K) against Q8_K
//! activations, reading the native blocks (the generic unpack-then-dot path ran at a
//! fraction of the memory bandwidth). The AVX-512 level runs the same bodies (see
//! `avx512.rs`): decode is bound by memory bandwidth.
//!
//! Both formats have 16 sub-blocks of 16 per 256-element super-block. Codes are at most 7,
//! so `vpmaddubsw` (u8 x i8 pair sums into i16) is exact, and one `vpmaddwd` with the
//! sub-block scales (low 128-bit lane: sub-block 2k, high lane: 2k + 1) gives i32 sums.
//!
//! Unsafe: every raw load is within a slice whose length is asserted first; the callers
//! enable AVX2/FMA/F16C.

use super::avx2::{hsum, load, pf, scale_splat, ActRow};
use std::arch::x86_64::*;

/// Bytes of a Q2_K block: scales[16], qs[64], d, dmin.
const Q2K_BYTES: usize = 84;
/// Bytes of a Q3_K block: hmask[32], qs[64], scales[12], d.
const Q3K_BYTES: usize = 110;

/// `vpshufb` control that broadcasts i16 word `2k` to the low lane and `2k + 1` to the high
/// lane of a register holding the same 8 words in both lanes.
#[inline(always)]
unsafe fn pair_ctl(k: usize) -> __m256i {
    let (w0, w1) = (0x0202 * (2 * k as i16) + 0x0100, 0x0202 * (2 * k as i16 + 1) + 0x0100);
    // SAFETY: AVX is enabled in every caller.
    unsafe { _mm256_setr_epi16(w0, w0, w0, w0, w0, w0, w0, w0, w1, w1, w1, w1, w1, w1, w1, w1) }
}

/// `(v >> n) & mask` per byte, for a shift count known only at run time (bits shifted in from
/// the neighbouring byte are masked away as long as `mask < 256 >> n`).
#[inline(always)]
unsafe fn shr_bytes(v: __m256i, n: usize, mask: i8) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32)), _mm256_set1_epi8(mask))
    }
}

/// Q2_K x Q8_K: x = d * (sc_j & 15) * q - dmin * (sc_j >> 4), q in 0..4; the min term in f32
/// from the activations' per-sub-block sums `s`.
#[inline(always)]
pub(super) unsafe fn dot_q2_k(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / Q2K_BYTES;
    assert!(a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 16 && a.s.len() >= nsb * 16);
    // SAFETY: super-block i reads w[84i..84i+84], a.qs[256i..256i+256], a.d/a.s[16i..16i+16].
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut macc = _mm256_setzero_ps();
        for i in 0..nsb {
            let b = w.as_ptr().add(i * Q2K_BYTES);
            pf(b, 2);
            let (scp, qs) = (b, b.add(16));
            let x = a.qs.as_ptr().add(i * 256);
            let sc16 = _mm_loadu_si128(scp.cast());
            let sc_lo = _mm_and_si128(sc16, _mm_set1_epi8(0x0F));
            let mut isum = _mm256_setzero_si256();
            for n in 0..2 {
                let raw = load(qs.add(32 * n).cast());
                // i16 scales 8n..8n+8 in both lanes.
                let half = if n == 0 { sc_lo } else { _mm_srli_si128(sc_lo, 8) };
                let scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(half));
                for k in 0..4 {
                    // Element n*128 + 32k + l is bits 2k..2k+2 of qs[32n + l].
                    let q = shr_bytes(raw, 2 * k, 3);
                    let p = _mm256_maddubs_epi16(q, load(x.add(128 * n + 32 * k)));
                    isum = _mm256_add_epi32(
                        isum,
                        _mm256_madd_epi16(p, _mm256_shuffle_epi8(scales, pair_ctl(k))),
                    );
                }
            }
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(b.add(80).cast::<i32>().read_unaligned()));
            let scale = _mm_mul_ss(dd, _mm_load_ss(a.d.as_ptr().add(i * 16)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(scale), acc);
            // Mins: sum_j (sc_j >> 4) * s_j, times dmin.
            let mins = _mm_and_si128(_mm_srli_epi16(sc16, 4), _mm_set1_epi8(0x0F));
            let m0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mins));
            let m1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(mins, 8)));
            let s = a.s.as_ptr().add(i * 16);
            let ms = _mm256_fmadd_ps(
                m1,
                _mm256_loadu_ps(s.add(8)),
                _mm256_mul_ps(m0, _mm256_loadu_ps(s)),
            );
            let dmin = _mm256_broadcastss_ps(_mm_shuffle_ps(dd, dd, 1));
            macc = _mm256_fnmadd_ps(ms, dmin, macc);
        }
        hsum(_mm256_add_ps(acc, macc))
    }
}

/// The 16 signed 6-bit scales of a Q3_K block (12 bytes at `p`), as i8 minus 32.
#[inline(always)]
unsafe fn q3k_scales(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 12 readable bytes at `p`; SSE2 is baseline.
    unsafe {
        let mut w = [0u32; 3];
        std::ptr::copy_nonoverlapping(p, w.as_mut_ptr().cast::<u8>(), 12);
        let (a0, a1, a2) = (w[0], w[1], w[2]);
        let (lo, hi) = (0x0f0f_0f0f, 0x0303_0303);
        // Scale j: low nibble from byte j (j < 8) or the high nibble of byte j - 8; its two
        // high bits are bits 2(j / 4).. of byte 8 + j % 4.
        let s0 = (a0 & lo) | ((a2 & hi) << 4);
        let s1 = (a1 & lo) | (((a2 >> 2) & hi) << 4);
        let s2 = ((a0 >> 4) & lo) | (((a2 >> 4) & hi) << 4);
        let s3 = ((a1 >> 4) & lo) | (((a2 >> 6) & hi) << 4);
        let v = _mm_set_epi32(s3 as i32, s2 as i32, s1 as i32, s0 as i32);
        _mm_sub_epi8(v, _mm_set1_epi8(32))
    }
}

/// Q3_K x Q8_K: codes q = low 2 bits | high bit << 2 (0..8) with offset 4, entering as the
/// integer `corr = -4 * sum(a)` per sub-block; 16 signed scales.
#[inline(always)]
pub(super) unsafe fn dot_q3_k(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / Q3K_BYTES;
    assert!(a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 16 && a.corr.len() >= nsb * 16);
    // SAFETY: super-block i reads w[110i..110i+110], a.qs[256i..256i+256],
    // a.d/a.corr[16i..16i+16].
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nsb {
            let b = w.as_ptr().add(i * Q3K_BYTES);
            pf(b, 2);
            let (hm, qs) = (load(b.cast()), b.add(32));
            let x = a.qs.as_ptr().add(i * 256);
            let sc = q3k_scales(b.add(96));
            let mut isum = _mm256_setzero_si256();
            for n in 0..2 {
                let raw = load(qs.add(32 * n).cast());
                let scales = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(if n == 0 {
                    sc
                } else {
                    _mm_srli_si128(sc, 8)
                }));
                for k in 0..4 {
                    // Low bits 2k..2k+2 of qs[32n + l]; high bit 4n + k of hmask[l].
                    let low = shr_bytes(raw, 2 * k, 3);
                    let high = shr_bytes(hm, 4 * n + k, 1);
                    let q = _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
                    let p = _mm256_maddubs_epi16(q, load(x.add(128 * n + 32 * k)));
                    isum = _mm256_add_epi32(
                        isum,
                        _mm256_madd_epi16(p, _mm256_shuffle_epi8(scales, pair_ctl(k))),
                    );
                }
            }
            // Offset: sum_j sc_j * corr_j.
            let c = a.corr.as_ptr().add(i * 16);
            let sc_lo = _mm256_cvtepi8_epi32(sc);
            let sc_hi = _mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8));
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(sc_lo, _mm256_loadu_si256(c.cast())));
            isum = _mm256_add_epi32(
                isum,
                _mm256_mullo_epi32(sc_hi, _mm256_loadu_si256(c.add(8).cast())),
            );
            let scale = scale_splat(b.add(108), a.d.as_ptr().add(i * 16));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        }
        hsum(acc)
    }
}
