//! AVX2 + FMA + F16C kernels (256-bit), with `vpmaddubsw` integer dots or, where the CPU
//! has AVX-VNNI, `vpdpbusd` on ymm.
//!
//! The kernel bodies are `#[inline(always)]` functions generic over [`Dot`] (the u8 x i8
//! dot instruction); the `#[target_feature]` entry points at the bottom instantiate them, and
//! `avx512.rs` instantiates the same GEMV bodies with the EVEX `vpdpbusd`. Decode is bound
//! by memory bandwidth, so 256-bit GEMV kernels serve the AVX-512 level too.
//!
//! Unsafe: every raw load is within a slice whose length the entry point asserts; the
//! intrinsics need the features the entry points enable.

use super::format::{self, SubFormat, GROUP};
use super::{Acts, Tile, Work};
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
}

/// AVX2: `vpmaddubsw` + `vpmaddwd` by ones.
pub(super) struct Maddubs;

impl Dot for Maddubs {
    const FULL_U8: bool = false;
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

/// Activation row `0` of a natural-layout [`Acts`]: codes and per-sub-block metadata.
#[derive(Clone, Copy)]
pub(super) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub corr: &'a [i32],
}

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

/// One f16 at `p` as f32 lane 0.
#[inline(always)]
unsafe fn f16x1(p: *const u8) -> __m128 {
    // SAFETY: the caller guarantees 2 readable bytes at `p` and F16C.
    unsafe { _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<u16>().read_unaligned() as i32)) }
}

/// 16 bytes of packed nibbles -> 32 codes: low nibbles in the low lane, high in the high.
#[inline(always)]
unsafe fn nibbles(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes at `p` and AVX2.
    unsafe {
        let t = _mm_loadu_si128(p.cast());
        let v = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
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

/// 4 floats at `p` in both 128-bit lanes.
#[inline(always)]
unsafe fn bcast4(p: *const f32) -> __m256 {
    // SAFETY: the caller guarantees 16 readable bytes at `p`.
    unsafe {
        let v = _mm_loadu_ps(p);
        _mm256_set_m128(v, v)
    }
}

#[inline(always)]
unsafe fn load(p: *const i8) -> __m256i {
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
        let q = load(b.add(2).cast());
        let x = load(a.qs.as_ptr().add(i * 32));
        let p = D::dot(_mm256_setzero_si256(), _mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
        let sc = _mm_mul_ss(f16x1(b), _mm_load_ss(a.d.as_ptr().add(i)));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc)
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
        let q = if Q5 {
            let qh = b.add(2).cast::<u32>().read_unaligned();
            _mm256_or_si256(nibbles(b.add(6)), bit4_from_bits(qh))
        } else {
            nibbles(b.add(2))
        };
        let x = load(a.qs.as_ptr().add(i * 32));
        let p = D::dot(_mm256_castsi128_si256(_mm_cvtsi32_si128(*a.corr.get_unchecked(i))), q, x);
        let sc = _mm_mul_ss(f16x1(b), _mm_load_ss(a.d.as_ptr().add(i)));
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_broadcastss_ps(sc), acc)
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
        let q = if Q5 {
            let qh = b.add(4).cast::<u32>().read_unaligned();
            _mm256_or_si256(nibbles(b.add(8)), bit4_from_bits(qh))
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

/// Q4_K x Q8_K: integer sums scaled by the 6-bit sub-block scales, f32 min term.
#[inline(always)]
unsafe fn dot_q4_k<D: Dot>(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / 144;
    assert!(a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 8 && a.s.len() >= nsb * 8);
    // SAFETY: super-block i reads w[144i..144i+144], a.qs[256i..], a.d/a.s[8i..8i+8].
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut macc = _mm256_setzero_ps();
        let lo4 = _mm256_set1_epi8(0x0F);
        for i in 0..nsb {
            let b = w.as_ptr().add(i * 144);
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
                let raw = load(b.add(16 + 32 * j).cast());
                let q_lo = _mm256_and_si256(raw, lo4);
                let q_hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4);
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
            let scale = _mm_mul_ss(f16x1(b.add(208)), _mm_load_ss(a.d.as_ptr().add(i * 16)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_broadcastss_ps(scale), acc);
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
                GgmlType::Q4_K => dot_q4_k::<D>(row, a),
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
// GEMM microkernel: R activation rows x one interleaved tile of 4 weight rows. A tile chunk
// is 64 bytes ([weight row c][sub-block b][4 bytes]); a ymm holds two weight rows, so the
// kernel makes two passes (rows 0-1, rows 2-3) over R broadcast activation chunks. Each
// i32 lane ends a group as one (weight row, sub-block) integer dot, scaled once in f32.

/// Activation rows per GEMM microkernel call at this level.
pub(super) const TILE_ROWS: usize = 4;

#[inline(always)]
unsafe fn tile_kernel<D: Dot, const R: usize, const CH: usize>(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    let bs = CH * 4;
    let ng = acts.meta_stride / GROUP;
    assert!(R <= TILE_ROWS && bs == fmt.bs);
    assert!(acts.qs.len() >= (r0 + R) * acts.q_stride && acts.q_stride >= ng * GROUP * bs);
    assert!(
        acts.d.len() >= (r0 + R) * acts.meta_stride
            && acts.corr.len() >= (r0 + R) * acts.meta_stride
    );
    assert!(!fmt.has_min || acts.s.len() >= (r0 + R) * acts.meta_stride);
    assert!(tile.q.len() >= ng * CH * 64 && tile.d.len() >= ng * 16);
    assert!(!fmt.has_min || tile.m.len() >= ng * 16);
    // Q8_0 codes (w + 128) overflow vpmaddubsw: that path recovers the signed weight and
    // uses |w| x sign(a, w) instead of the offset.
    let signed = fmt.off == 128 && !D::FULL_U8;
    let use_corr = fmt.off != 0 && !signed;
    // SAFETY: group g reads tile bytes [g*CH*64, (g+1)*CH*64) and tile metadata
    // [16g, 16g+16), activation bytes [g*GROUP*bs, (g+1)*GROUP*bs) of rows r0..r0+R and their
    // metadata [4g, 4g+4): all within the lengths asserted above.
    unsafe {
        let aq = |r: usize| acts.qs.as_ptr().add((r0 + r) * acts.q_stride);
        let am = |r: usize| (r0 + r) * acts.meta_stride;
        for h in 0..2 {
            let mut facc = [_mm256_setzero_ps(); R];
            for g in 0..ng {
                let mut iacc = [_mm256_setzero_si256(); R];
                if use_corr {
                    for r in 0..R {
                        let c = acts.corr.as_ptr().add(am(r) + g * GROUP);
                        iacc[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128(c.cast()));
                    }
                }
                for t in 0..CH {
                    let w = load(tile.q.as_ptr().add((g * CH + t) * 64 + 32 * h).cast());
                    if signed {
                        let ws = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
                        let wa = _mm256_sign_epi8(ws, ws);
                        for r in 0..R {
                            let x = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                aq(r).add(g * GROUP * bs + t * 16).cast(),
                            ));
                            iacc[r] = D::dot(iacc[r], wa, _mm256_sign_epi8(x, ws));
                        }
                    } else {
                        for r in 0..R {
                            let x = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                aq(r).add(g * GROUP * bs + t * 16).cast(),
                            ));
                            iacc[r] = D::dot(iacc[r], w, x);
                        }
                    }
                }
                let dw = _mm256_loadu_ps(tile.d.as_ptr().add(g * 16 + 8 * h));
                for r in 0..R {
                    let da = bcast4(acts.d.as_ptr().add(am(r) + g * GROUP));
                    facc[r] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(iacc[r]),
                        _mm256_mul_ps(dw, da),
                        facc[r],
                    );
                }
                if fmt.has_min {
                    let mw = _mm256_loadu_ps(tile.m.as_ptr().add(g * 16 + 8 * h));
                    for r in 0..R {
                        let sa = bcast4(acts.s.as_ptr().add(am(r) + g * GROUP));
                        facc[r] = _mm256_fmadd_ps(mw, sa, facc[r]);
                    }
                }
            }
            for r in 0..R {
                // Lanes [row 2h: b0..b3 | row 2h+1: b0..b3] -> two sums, fixed order.
                let v = facc[r];
                let s = _mm_hadd_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s = _mm_hadd_ps(s, s);
                out[r][2 * h] = _mm_cvtss_f32(s);
                out[r][2 * h + 1] = _mm_cvtss_f32(_mm_movehdup_ps(s));
            }
        }
    }
}

/// Dispatch on the row count (R) and chunks per group (sub-block size / 4).
#[inline(always)]
pub(super) unsafe fn tile_rows<D: Dot>(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    nr: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    macro_rules! go {
        ($ch:literal) => {
            match nr {
                1 => tile_kernel::<D, 1, $ch>(fmt, acts, r0, tile, out),
                2 => tile_kernel::<D, 2, $ch>(fmt, acts, r0, tile, out),
                3 => tile_kernel::<D, 3, $ch>(fmt, acts, r0, tile, out),
                _ => tile_kernel::<D, 4, $ch>(fmt, acts, r0, tile, out),
            }
        };
    }
    // SAFETY: the entry point enabled AVX2/FMA/F16C and D's instruction.
    unsafe {
        if fmt.bs == 32 {
            go!(8)
        } else {
            go!(4)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Float weights (F32, F16, BF16) with f32 activations.

/// 8 weights at element `k` of a float row, widened to f32.
#[inline(always)]
unsafe fn load_w8(t: GgmlType, row: *const u8, k: usize) -> __m256 {
    // SAFETY: the caller guarantees elements k..k+8 exist and AVX2/F16C.
    unsafe {
        match t {
            GgmlType::F32 => _mm256_loadu_ps(row.cast::<f32>().add(k)),
            GgmlType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * k).cast())),
            _ => {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(row.add(2 * k).cast()));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            }
        }
    }
}

/// One weight element as f32 (scalar tails).
#[inline(always)]
pub(super) fn load_w1(t: GgmlType, row: &[u8], k: usize) -> f32 {
    match t {
        GgmlType::F32 => {
            f32::from_le_bytes([row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3]])
        }
        GgmlType::F16 => half::f16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32(),
        _ => half::bf16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32(),
    }
}

/// Float tile: R activation rows x C weight rows; lanes hold k mod 8, the tail k >= cols/8*8
/// is added in scalar afterwards: a fixed order for every output.
#[inline(always)]
unsafe fn float_tile<const R: usize, const C: usize>(
    t: GgmlType,
    cols: usize,
    w: &[&[u8]; C],
    x: &[&[f32]; R],
    out: &mut [[f32; C]; R],
) {
    let esz = t.type_size();
    for c in 0..C {
        assert!(w[c].len() >= cols * esz);
    }
    for r in 0..R {
        assert!(x[r].len() >= cols);
    }
    let k8 = cols / 8 * 8;
    // SAFETY: elements k < k8 <= cols are read from rows asserted to hold cols elements.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut k = 0;
        while k < k8 {
            let mut xv = [_mm256_setzero_ps(); R];
            for r in 0..R {
                xv[r] = _mm256_loadu_ps(x[r].as_ptr().add(k));
            }
            for c in 0..C {
                let wv = load_w8(t, w[c].as_ptr(), k);
                for r in 0..R {
                    acc[r][c] = _mm256_fmadd_ps(wv, xv[r], acc[r][c]);
                }
            }
            k += 8;
        }
        for r in 0..R {
            for c in 0..C {
                let mut s = hsum(acc[r][c]);
                for k in k8..cols {
                    s += load_w1(t, w[c], k) * x[r][k];
                }
                out[r][c] = s;
            }
        }
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

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn tile_avx2(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    nr: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { tile_rows::<Maddubs>(fmt, acts, r0, nr, tile, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn tile_avxvnni(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    nr: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { tile_rows::<AvxVnni>(fmt, acts, r0, nr, tile, out) }
}

/// Float matmul block: outputs `y[r][c]` (f32 [m, y_stride]) for activation rows
/// `x` (f32 [m, cols]) and the weight rows in `w` (whole rows), 2 x 4 at a time.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn float_rows_avx2(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    x: &[f32],
    m: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { float_rows::<2, 4>(t, cols, w, x, m, y, y_stride) }
}

/// Shared driver of the float tiles (also used by the AVX-512 level with its own features).
#[inline(always)]
pub(super) unsafe fn float_rows<const R: usize, const C: usize>(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    x: &[f32],
    m: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    let rb = cols * t.type_size();
    let n = w.len() / rb;
    let mut c0 = 0;
    // SAFETY: the caller enabled AVX2/FMA/F16C.
    unsafe {
        while c0 < n {
            let nc = C.min(n - c0);
            let wr: [&[u8]; C] = std::array::from_fn(|c| &w[(c0 + c.min(nc - 1)) * rb..][..rb]);
            let mut r0 = 0;
            while r0 < m {
                let nr = R.min(m - r0);
                let xr: [&[f32]; R] =
                    std::array::from_fn(|r| &x[(r0 + r.min(nr - 1)) * cols..][..cols]);
                let mut out = [[0.0f32; C]; R];
                if nr == R {
                    float_tile::<R, C>(t, cols, &wr, &xr, &mut out);
                } else {
                    // Row tail: one row at a time (same per-output order as the full tile).
                    for r in 0..nr {
                        let mut o1 = [[0.0f32; C]; 1];
                        float_tile::<1, C>(t, cols, &wr, &[xr[r]], &mut o1);
                        out[r] = o1[0];
                    }
                }
                for r in 0..nr {
                    y[(r0 + r) * y_stride + c0..][..nc].copy_from_slice(&out[r][..nc]);
                }
                r0 += R;
            }
            c0 += C;
        }
    }
}

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
