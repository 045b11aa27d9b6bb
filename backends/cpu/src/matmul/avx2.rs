//! AVX2 + FMA + F16C GEMV kernels (256-bit), with `vpmaddubsw` integer dots or, where the
//! CPU has AVX-VNNI, `vpdpbusd` on ymm, and the helpers the other AVX2 files share
//! (`avx2_gemm.rs`: tiled GEMM and float weights; `avx2_quant.rs`: activation quantizers).
//!
//! The kernel bodies are `#[inline(always)]` functions generic over [`Dot`] (the u8 x i8
//! dot instruction); the `#[target_feature]` entry points at the bottom instantiate them, and
//! `avx512.rs` instantiates the same GEMV bodies with the EVEX `vpdpbusd`. Decode is bound
//! by memory bandwidth, so 256-bit GEMV kernels serve the AVX-512 level too.
//!
//! Unsafe: every raw load is within a slice whose length the entry point asserts; the
//! intrinsics need the features the entry points enable.

use super::avx2_k;
use super::format::{self, SubFormat};
use super::Work;
use std::arch::x86_64::*;
use weft::GgmlType;

/// A u8 x i8 -> i32 dot-product instruction on ymm: each i32 lane of `acc` gains the sum
/// of the four products of its bytes.
pub(super) trait Dot {
    /// Whether products of the full u8 range with i8 are exact. `vpmaddubsw` saturates its
    /// i16 pair sums, so that path is exact only for codes <= 128 (|a| <= 127).
    const FULL_U8: bool;
    /// # Safety
    /// The CPU must support the instruction (the caller's `#[target_feature]`).
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i;
    /// Whether `dot` goes through i16 pair sums (`vpmaddubsw`, then `vpmaddwd` by ones).
    /// Kernels may then add several chunks' pair sums in i16 ([`Dot::mul16`]) and widen
    /// once ([`Dot::widen`]), as far as [`SubFormat::i16_chunks`] allows: the sums are
    /// exact either way, and the multiply ports, which `vpmaddwd` shares with
    /// `vpmaddubsw`, do half the work (the AVX2 level's prefill and decode are bound by them).
    const I16: bool = false;
    /// The i16 pair sums of `u` x `s` (u8 x i8).
    /// # Safety
    /// AVX2 (every caller's `#[target_feature]` includes it).
    #[inline(always)]
    unsafe fn mul16(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: AVX2 is enabled in every caller.
        unsafe { _mm256_maddubs_epi16(u, s) }
    }
    /// i16 pair sums -> i32 lane sums.
    /// # Safety
    /// As [`Dot::mul16`].
    #[inline(always)]
    unsafe fn widen(v: __m256i) -> __m256i {
        // SAFETY: AVX2 is enabled in every caller.
        unsafe { _mm256_madd_epi16(v, _mm256_set1_epi16(1)) }
    }
    /// Bit j of `qh` -> byte j equal to 0x10 (set) or 0: the fifth bit of Q5 codes.
    /// # Safety
    /// As [`Dot::dot`].
    #[inline(always)]
    unsafe fn bit4(qh: u32) -> __m256i {
        // SAFETY: AVX2 is enabled in every caller.
        unsafe { bit4_from_bits(qh) }
    }
}

/// AVX2: `vpmaddubsw` + `vpmaddwd` by ones.
pub(super) struct Maddubs;

impl Dot for Maddubs {
    const FULL_U8: bool = false;
    const I16: bool = true;
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: AVX2 is enabled in every caller (see the trait's contract).
        unsafe {
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
            _mm256_add_epi32(acc, p)
        }
    }
}

/// AVX-VNNI (VEX-encoded `vpdpbusd`).
pub(super) struct AvxVnni;

impl Dot for AvxVnni {
    const FULL_U8: bool = true;
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: AVX-VNNI is enabled in every caller (see the trait's contract).
        unsafe { _mm256_dpbusd_avx_epi32(acc, u, s) }
    }
}

pub(super) use super::ActRow;

// ---------------------------------------------------------------------------------------
// Small helpers. All `unsafe fn`: they need AVX2/FMA/F16C and, where they take pointers,
// readable memory at the pointer.

/// Sum of 8 lanes in a fixed order.
#[inline(always)]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: AVX is enabled in every caller.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

/// Two consecutive f16 at `p` as f32 lanes 0 and 1.
#[inline(always)]
unsafe fn f16x2(p: *const u8) -> __m128 {
    // SAFETY: the caller guarantees 4 readable bytes at `p` and F16C.
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned())) }
}

/// The f16 at `p` as f32 in all 8 lanes. A broadcast load then a full-width conversion:
/// converting one lane let LLVM load the f16 with `vpinsrw` into whatever register was
/// free, often an accumulator, chaining every block's scale to the previous block's FMA
/// (Q4_0/Q5_0/Q8_0 GEMV ran at about half speed).
#[inline(always)]
pub(super) unsafe fn f16_splat(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes at `p` and AVX2/F16C.
    unsafe { _mm256_cvtph_ps(_mm_set1_epi16(p.cast::<i16>().read_unaligned())) }
}

/// `f16 at p * *q` in all 8 lanes (the same single product in every lane).
#[inline(always)]
pub(super) unsafe fn scale_splat(p: *const u8, q: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes at `p`, 4 at `q`, and AVX2/F16C.
    unsafe { _mm256_mul_ps(f16_splat(p), _mm256_broadcast_ss(&*q)) }
}

/// Software prefetch distance of the GEMV kernels, in bytes past the block being read.
/// Every block prefetches the line this far ahead, so requests stream steadily (issuing a
/// whole row's lines at once before each row reached about 60 % of the read bandwidth on
/// matrices larger than the LLC; 2 KB ahead per block, about 85 %).
const PF_DIST: usize = 2048;

/// Prefetch `n` lines starting `PF_DIST` bytes past `p` (a block of up to `64 n` bytes).
#[inline(always)]
pub(super) unsafe fn pf(p: *const u8, n: usize) {
    for k in 0..n {
        // SAFETY: a prefetch never faults, and `wrapping_add` keeps the address computation
        // defined past the end of the weights.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PF_DIST + 64 * k).cast()) };
    }
}

/// 16 bytes of packed nibbles -> 32 codes: low nibbles in the low lane, high in the high.
/// A broadcast load (load port only) and one variable shift, instead of a lane insert on
/// the shuffle port that decode kernels are short of.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `p` and AVX2.
    unsafe {
        let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.cast()));
        let v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
        _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
    }
}

/// Bit j of `qh` -> byte j equal to 0x10 (set) or 0 (the fifth bit of Q5 codes).
#[inline(always)]
unsafe fn bit4_from_bits(qh: u32) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let v = _mm256_set1_epi32(qh as i32);
        let spread = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3,
            3, 3, 3,
        );
        let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        let v = _mm256_and_si256(_mm256_shuffle_epi8(v, spread), bits);
        _mm256_and_si256(_mm256_cmpeq_epi8(v, bits), _mm256_set1_epi8(0x10))
    }
}

/// 32 bytes at `p`.
#[inline(always)]
pub(super) unsafe fn load(p: *const i8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes at `p`.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

// ---------------------------------------------------------------------------------------
// Fused GEMV dots: one weight row in native blocks times one activation row. Two float
// accumulators (even and odd blocks) hide the FMA latency; the order is fixed.

/// Q8_0 x Q8_0, block `i` added to `acc`: |w| x sign(a, w) keeps `vpmaddubsw` exact.
#[inline(always)]
unsafe fn step_q8_0<D: Dot>(w: *const u8, a: ActRow, i: usize, acc: __m256) -> __m256 {
    // SAFETY: the caller checked block i and activation block i exist.
    unsafe {
        let b = w.add(i * 34);
        pf(b, 1);
        let q = load(b.add(2).cast());
        let x = load(a.qs.as_ptr().add(i * 32));
        let p = D::dot(_mm256_setzero_si256(), _mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
        let sc = scale_splat(b, a.d.as_ptr().add(i));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc)
    }
}

/// Q4_0 / Q5_0 x Q8_0, block `i`: unsigned codes, the offset enters as the integer `corr`.
#[inline(always)]
unsafe fn step_q4_0_q5_0<D: Dot, const Q5: bool>(
    w: *const u8,
    a: ActRow,
    i: usize,
    acc: __m256,
) -> __m256 {
    // SAFETY: the caller checked block i and activation block i exist.
    unsafe {
        let b = w.add(i * if Q5 { 22 } else { 18 });
        pf(b, 1);
        let q = if Q5 {
            let qh = b.add(2).cast::<u32>().read_unaligned();
            _mm256_or_si256(nibbles(b.add(6)), D::bit4(qh))
        } else {
            nibbles(b.add(2))
        };
        let x = load(a.qs.as_ptr().add(i * 32));
        let p = D::dot(_mm256_castsi128_si256(_mm_cvtsi32_si128(*a.corr.get_unchecked(i))), q, x);
        let sc = scale_splat(b, a.d.as_ptr().add(i));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc)
    }
}

/// Q4_1 / Q5_1 x Q8_1, block `i`: d * da * sum(q a) into `acc`, m * s into lane 1 of `macc`.
#[inline(always)]
unsafe fn step_q4_1_q5_1<D: Dot, const Q5: bool>(
    w: *const u8,
    a: ActRow,
    i: usize,
    (acc, macc): (__m256, __m128),
) -> (__m256, __m128) {
    // SAFETY: the caller checked block i and activation block i exist.
    unsafe {
        let b = w.add(i * if Q5 { 24 } else { 20 });
        pf(b, 1);
        let q = if Q5 {
            let qh = b.add(4).cast::<u32>().read_unaligned();
            _mm256_or_si256(nibbles(b.add(8)), D::bit4(qh))
        } else {
            nibbles(b.add(4))
        };
        let x = load(a.qs.as_ptr().add(i * 32));
        let p = D::dot(_mm256_setzero_si256(), q, x);
        let ds =
            _mm_unpacklo_ps(_mm_load_ss(a.d.as_ptr().add(i)), _mm_load_ss(a.s.as_ptr().add(i)));
        let prod = _mm_mul_ps(f16x2(b), ds); // [d * da, m * s]
        (
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(prod), acc),
            _mm_add_ps(macc, prod),
        )
    }
}

/// Two accumulation chains (even and odd blocks) hide the FMA latency; fixed order. Plain
/// code, no closures: closures would not inherit the callers' target features.
macro_rules! two_chains {
    ($nb:expr, $zero:expr, $step:expr, ($($arg:expr),*), |$c0:ident, $c1:ident| $combine:expr) => {{
        let (mut $c0, mut $c1) = ($zero, $zero);
        let mut i = 0;
        while i + 1 < $nb {
            $c0 = $step($($arg,)* i, $c0);
            $c1 = $step($($arg,)* i + 1, $c1);
            i += 2;
        }
        if i < $nb {
            $c0 = $step($($arg,)* i, $c0);
        }
        $combine
    }};
}

#[inline(always)]
unsafe fn dot_q8_0<D: Dot>(w: &[u8], a: ActRow) -> f32 {
    let nb = w.len() / 34;
    assert!(a.qs.len() >= nb * 32 && a.d.len() >= nb);
    // SAFETY: blocks 0..nb of w and of the activations exist (asserted above).
    unsafe {
        two_chains!(nb, _mm256_setzero_ps(), step_q8_0::<D>, (w.as_ptr(), a), |c0, c1| hsum(
            _mm256_add_ps(c0, c1)
        ))
    }
}

#[inline(always)]
unsafe fn dot_q4_0_q5_0<D: Dot, const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let nb = w.len() / if Q5 { 22 } else { 18 };
    assert!(a.qs.len() >= nb * 32 && a.d.len() >= nb && a.corr.len() >= nb);
    // SAFETY: blocks 0..nb of w and of the activations exist (asserted above).
    unsafe {
        two_chains!(nb, _mm256_setzero_ps(), step_q4_0_q5_0::<D, Q5>, (w.as_ptr(), a), |c0, c1| {
            hsum(_mm256_add_ps(c0, c1))
        })
    }
}

#[inline(always)]
unsafe fn dot_q4_1_q5_1<D: Dot, const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let nb = w.len() / if Q5 { 24 } else { 20 };
    assert!(a.qs.len() >= nb * 32 && a.d.len() >= nb && a.s.len() >= nb);
    // SAFETY: blocks 0..nb of w and of the activations exist (asserted above).
    unsafe {
        let zero = (_mm256_setzero_ps(), _mm_setzero_ps());
        two_chains!(nb, zero, step_q4_1_q5_1::<D, Q5>, (w.as_ptr(), a), |c0, c1| {
            let m = _mm_add_ps(c0.1, c1.1);
            hsum(_mm256_add_ps(c0.0, c1.0)) + _mm_cvtss_f32(_mm_shuffle_ps(m, m, 1))
        })
    }
}

/// Q4_K (or, with `Q5`, Q5_K) x Q8_K: integer sums scaled by the 6-bit sub-block scales,
/// f32 min term. Q5_K adds the fifth bit of code `64j + l` (`64j + 32 + l`) from bit `2j`
/// (`2j + 1`) of `qh[l]`; codes stay below 32, so `vpmaddubsw` is exact.
#[inline(always)]
unsafe fn dot_q4_k<D: Dot, const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let bb = if Q5 { 176 } else { 144 };
    let nsb = w.len() / bb;
    assert!(a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 8 && a.s.len() >= nsb * 8);
    // SAFETY: super-block i reads w[bb*i..bb*(i+1)], a.qs[256i..], a.d/a.s[8i..8i+8].
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut macc = _mm256_setzero_ps();
        let lo4 = _mm256_set1_epi8(0x0F);
        for i in 0..nsb {
            let b = w.as_ptr().add(i * bb);
            pf(b, 3);
            // Q5_K: d, dmin, scales[12], qh[32], qs[128]; Q4_K has no qh.
            let qs = b.add(if Q5 { 48 } else { 16 });
            let qh = if Q5 { load(b.add(16).cast()) } else { _mm256_setzero_si256() };
            let mut sc = [0u32; 3];
            std::ptr::copy_nonoverlapping(b.add(4), sc.as_mut_ptr().cast::<u8>(), 12);
            let (s0, m1) = (sc[0] & 0x3f3f_3f3f, sc[1] & 0x3f3f_3f3f);
            let s1 = (sc[2] & 0x0f0f_0f0f) | (((sc[0] >> 6) & 0x0303_0303) << 4);
            let m2 = ((sc[2] >> 4) & 0x0f0f_0f0f) | (((sc[1] >> 6) & 0x0303_0303) << 4);
            // i16 scales 0..8 in both lanes; sub-block j broadcasts word j.
            let scales = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, s1 as i32, s0 as i32));
            let scales = _mm256_broadcastsi128_si256(scales);
            let mut isum = _mm256_setzero_si256();
            let x = a.qs.as_ptr().add(i * 256);
            for j in 0..4 {
                let raw = load(qs.add(32 * j).cast());
                let mut q_lo = _mm256_and_si256(raw, lo4);
                let mut q_hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4);
                if Q5 {
                    // Bit 2j (2j + 1) of each qh byte to bit 4: shift within 16-bit lanes,
                    // then keep only bit 4 of each byte (no bits cross a byte that way).
                    let b16 = _mm256_set1_epi8(0x10);
                    let (b0, b1) = (2 * j as i32, 2 * j as i32 + 1);
                    let h0 = if b0 <= 4 {
                        _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - b0))
                    } else {
                        _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b0 - 4))
                    };
                    let h1 = if b1 <= 4 {
                        _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - b1))
                    } else {
                        _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b1 - 4))
                    };
                    q_lo = _mm256_or_si256(q_lo, _mm256_and_si256(h0, b16));
                    q_hi = _mm256_or_si256(q_hi, _mm256_and_si256(h1, b16));
                }
                let p0 = _mm256_maddubs_epi16(q_lo, load(x.add(64 * j)));
                let p1 = _mm256_maddubs_epi16(q_hi, load(x.add(64 * j + 32)));
                let sc0 = _mm256_shuffle_epi8(
                    scales,
                    _mm256_set1_epi16(0x0100 + 0x0202 * (2 * j as i16)),
                );
                let sc1 = _mm256_shuffle_epi8(
                    scales,
                    _mm256_set1_epi16(0x0100 + 0x0202 * (2 * j as i16 + 1)),
                );
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p0, sc0));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p1, sc1));
            }
            let dd = f16x2(b); // [d, dmin]
            let scale = _mm_mul_ss(dd, _mm_load_ss(a.d.as_ptr().add(i * 8)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(scale), acc);
            let mins =
                _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, m2 as i32, m1 as i32)));
            let dmin = _mm256_broadcastss_ps(_mm_shuffle_ps(dd, dd, 1));
            let ms = _mm256_mul_ps(mins, _mm256_loadu_ps(a.s.as_ptr().add(i * 8)));
            macc = _mm256_fnmadd_ps(ms, dmin, macc);
        }
        hsum(_mm256_add_ps(acc, macc))
    }
}

/// Q6_K x Q8_K: 6-bit codes (offset 32 through `corr`), 16 signed 8-bit scales.
#[inline(always)]
unsafe fn dot_q6_k<D: Dot>(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / 210;
    assert!(a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 16 && a.corr.len() >= nsb * 16);
    // SAFETY: super-block i reads w[210i..210i+210], a.qs[256i..], a.d/a.corr[16i..16i+16].
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let lo4 = _mm256_set1_epi8(0x0F);
        for i in 0..nsb {
            let b = w.as_ptr().add(i * 210);
            pf(b, 4);
            let (ql, qh, scp) = (b, b.add(128), b.add(192));
            let x = a.qs.as_ptr().add(i * 256);
            let mut isum = _mm256_setzero_si256();
            for n in 0..2 {
                let l0 = load(ql.add(64 * n).cast());
                let l1 = load(ql.add(64 * n + 32).cast());
                let h = load(qh.add(32 * n).cast());
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(l0, lo4),
                        _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(3)), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(l1, lo4),
                        _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(12)), 2),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4),
                        _mm256_and_si256(h, _mm256_set1_epi8(0x30)),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4),
                        _mm256_and_si256(_mm256_srli_epi16(h, 2), _mm256_set1_epi8(0x30)),
                    ),
                ];
                // i16 scales 8n..8n+8 in both lanes; piece k uses 2k (low lane), 2k+1 (high).
                let scales = _mm_cvtepi8_epi16(_mm_loadl_epi64(scp.add(8 * n).cast()));
                let scales = _mm256_broadcastsi128_si256(scales);
                for (k, &qk) in q.iter().enumerate() {
                    let p = _mm256_maddubs_epi16(qk, load(x.add(128 * n + 32 * k)));
                    let (w0, w1) =
                        (0x0202 * (2 * k as i16) + 0x0100, 0x0202 * (2 * k as i16 + 1) + 0x0100);
                    let ctl = _mm256_setr_epi16(
                        w0, w0, w0, w0, w0, w0, w0, w0, w1, w1, w1, w1, w1, w1, w1, w1,
                    );
                    isum = _mm256_add_epi32(
                        isum,
                        _mm256_madd_epi16(p, _mm256_shuffle_epi8(scales, ctl)),
                    );
                }
            }
            // Offset: sum_j sc_j * corr_j with corr_j = -32 * sum(a in sub-block j).
            let c = a.corr.as_ptr().add(i * 16);
            let sc_lo = _mm256_cvtepi8_epi32(_mm_loadl_epi64(scp.cast()));
            let sc_hi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(scp.add(8).cast()));
            isum = _mm256_add_epi32(isum, _mm256_mullo_epi32(sc_lo, _mm256_loadu_si256(c.cast())));
            isum = _mm256_add_epi32(
                isum,
                _mm256_mullo_epi32(sc_hi, _mm256_loadu_si256(c.add(8).cast())),
            );
            let scale = scale_splat(b.add(208), a.d.as_ptr().add(i * 16));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        }
        hsum(acc)
    }
}

/// Any sub-block format from an unpacked row (`q` u8 [cols], `dw`/`mw` f32 [n_sub]).
#[inline(always)]
unsafe fn dot_unpacked<D: Dot>(fmt: SubFormat, q: &[u8], dw: &[f32], mw: &[f32], a: ActRow) -> f32 {
    let n = dw.len();
    let bs = fmt.bs;
    assert!(q.len() >= n * bs && a.qs.len() >= n * bs && a.d.len() >= n && a.corr.len() >= n);
    assert!(!fmt.has_min || (mw.len() >= n && a.s.len() >= n));
    assert!(D::FULL_U8 || fmt.off < 128, "codes above 128 need vpdpbusd");
    // SAFETY: sub-block j reads q/a.qs[bs*j..bs*(j+1)] and index j of the metadata; with
    // bs == 16 two sub-blocks are read at once and n is even (16 per super-block).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut msum = 0.0f32;
        let step = 32 / bs;
        let mut j = 0;
        while j < n {
            let init = if bs == 32 {
                _mm256_castsi128_si256(_mm_cvtsi32_si128(a.corr[j]))
            } else {
                _mm256_setr_epi32(a.corr[j], 0, 0, 0, a.corr[j + 1], 0, 0, 0)
            };
            let p =
                D::dot(init, load(q.as_ptr().add(j * bs).cast()), load(a.qs.as_ptr().add(j * bs)));
            let sc = if bs == 32 {
                _mm256_set1_ps(dw[j] * a.d[j])
            } else {
                _mm256_setr_m128(_mm_set1_ps(dw[j] * a.d[j]), _mm_set1_ps(dw[j + 1] * a.d[j + 1]))
            };
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc);
            if fmt.has_min {
                for k in j..j + step {
                    msum += mw[k] * a.s[k];
                }
            }
            j += step;
        }
        hsum(acc) + msum
    }
}

/// Every output of a chunk of weight rows (`w`: whole rows of `row_bytes`).
#[inline(always)]
pub(super) unsafe fn gemv_rows<D: Dot>(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    row_bytes: usize,
    a: ActRow,
    y: &mut [f32],
    work: &mut Work,
) {
    let fmt = format::sub_format(t).expect("checked by matmul");
    for (row, out) in w.chunks_exact(row_bytes).zip(y.iter_mut()) {
        // SAFETY: the entry point enabled AVX2/FMA/F16C and D's instruction.
        *out = unsafe {
            match t {
                GgmlType::Q8_0 => dot_q8_0::<D>(row, a),
                GgmlType::Q4_0 => dot_q4_0_q5_0::<D, false>(row, a),
                GgmlType::Q5_0 => dot_q4_0_q5_0::<D, true>(row, a),
                GgmlType::Q4_1 => dot_q4_1_q5_1::<D, false>(row, a),
                GgmlType::Q5_1 => dot_q4_1_q5_1::<D, true>(row, a),
                GgmlType::Q4_K => dot_q4_k::<D, false>(row, a),
                GgmlType::Q5_K => dot_q4_k::<D, true>(row, a),
                GgmlType::Q2_K => avx2_k::dot_q2_k(row, a),
                GgmlType::Q3_K => avx2_k::dot_q3_k(row, a),
                GgmlType::Q6_K => dot_q6_k::<D>(row, a),
                _ => {
                    let n = cols / fmt.bs;
                    let q = super::grow(&mut work.q, cols);
                    let d = super::grow(&mut work.d, n);
                    let m = super::grow(&mut work.m, n);
                    format::unpack_row(t, row, q, d, m);
                    dot_unpacked::<D>(fmt, q, d, m, a)
                }
            }
        };
    }
}

// ---------------------------------------------------------------------------------------
// Entry points. Safe to call only where the named features exist (the caller checks the
// `Cpu`'s level, which was verified supported when the `Cpu` was built).

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn gemv_avx2(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    rb: usize,
    a: ActRow,
    y: &mut [f32],
    work: &mut Work,
) {
    // SAFETY: this function's features are the ones the kernels need.
    unsafe { gemv_rows::<Maddubs>(t, cols, w, rb, a, y, work) }
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn gemv_avxvnni(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    rb: usize,
    a: ActRow,
    y: &mut [f32],
    work: &mut Work,
) {
    // SAFETY: this function's features are the ones the kernels need.
    unsafe { gemv_rows::<AvxVnni>(t, cols, w, rb, a, y, work) }
}
