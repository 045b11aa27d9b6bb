//! GEMV over x8-packed weights (`packed.rs`): 8 rows per 256-bit register, one lane each.
//!
//! Per block column: the 8 rows' codes are multiplied by the same activation block, 4
//! codes at a time (a broadcast 4-byte activation chunk against 4 codes of every row), so
//! the integer sums of the 8 rows come out in the 8 i32 lanes; then one int-to-float
//! conversion and one FMA with the 8 scales (one 8 x f16 load) serve all 8 rows. Shared by
//! the AVX2, AVX-VNNI and AVX-512 levels through [`Dot`].
//!
//! Unsafe: every raw read is inside a block column whose bounds the entry point asserts;
//! the intrinsics need the features the entry points enable.

use super::avx2::{pf, Dot};
use super::packed::{PackedWeight, X8Layout, X8};
use super::ActRow;
use std::arch::x86_64::*;
use weft::GgmlType;

/// 4 activation codes at `p` in every i32 lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> __m256i {
    // SAFETY: the caller guarantees 4 readable bytes at `p`.
    unsafe { _mm256_set1_epi32(p.cast::<i32>().read_unaligned()) }
}

/// Group k's fifth bits (0x10 or 0 per code byte) from the packed `qh` (bit 8e + k).
#[inline(always)]
unsafe fn bit4<const K: i32>(qh: __m256i) -> __m256i {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let moved = if K < 4 {
            _mm256_sll_epi32(qh, _mm_cvtsi32_si128(4 - K))
        } else {
            _mm256_srl_epi32(qh, _mm_cvtsi32_si128(K - 4))
        };
        _mm256_and_si256(moved, _mm256_set1_epi8(0x10))
    }
}

/// Integer sums of one 4-bit block column: 8 rows x 32 codes against one activation block.
/// `init` carries the offset correction (Q4_0/Q5_0) or zero.
#[inline(always)]
unsafe fn isum_4bit<D: Dot, const Q5: bool>(
    col: *const u8,
    qs_off: usize,
    qh_off: usize,
    x: *const i8,
    init: __m256i,
) -> __m256i {
    // SAFETY: the caller guarantees a whole block column at `col` and 32 codes at `x`.
    unsafe {
        let lo4 = _mm256_set1_epi8(0x0F);
        let qh = if Q5 { _mm256_loadu_si256(col.add(qh_off).cast()) } else { lo4 };
        let (mut a0, mut a1) = (init, _mm256_setzero_si256());
        // The `vpmaddubsw` path sums in i16 (a lane's 4 chunks of 5-bit codes, or all 8 of
        // 4-bit ones: at most 8 x 2 x 15 x 128 < 2^15) and widens once per half or block.
        let z = _mm256_setzero_si256();
        let (mut s0, mut s1) = (z, z);
        macro_rules! chunk {
            ($v:literal) => {{
                let raw = _mm256_loadu_si256(col.add(qs_off + 32 * $v).cast());
                let mut lo = _mm256_and_si256(raw, lo4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4);
                if Q5 {
                    lo = _mm256_or_si256(lo, bit4::<$v>(qh));
                    hi = _mm256_or_si256(hi, bit4::<{ $v + 4 }>(qh));
                }
                if D::I16 {
                    s0 = _mm256_add_epi16(s0, D::mul16(lo, bcast4(x.add(4 * $v))));
                    s1 = _mm256_add_epi16(s1, D::mul16(hi, bcast4(x.add(16 + 4 * $v))));
                } else {
                    a0 = D::dot(a0, lo, bcast4(x.add(4 * $v)));
                    a1 = D::dot(a1, hi, bcast4(x.add(16 + 4 * $v)));
                }
            }};
        }
        chunk!(0);
        chunk!(1);
        chunk!(2);
        chunk!(3);
        if D::I16 {
            if Q5 {
                a0 = _mm256_add_epi32(a0, D::widen(s0));
                a1 = D::widen(s1);
            } else {
                a0 = _mm256_add_epi32(a0, D::widen(_mm256_add_epi16(s0, s1)));
            }
        }
        _mm256_add_epi32(a0, a1)
    }
}

/// Integer sums of one Q8_0 block column (codes stored plus 128). With `vpdpbusd` the
/// unsigned codes go in directly and `init` holds -128 * sum(a); `vpmaddubsw` would
/// saturate on them, so that path turns them back to signed and takes |w| x sign(a, w).
#[inline(always)]
unsafe fn isum_q8<D: Dot>(col: *const u8, qs_off: usize, x: *const i8, init: __m256i) -> __m256i {
    // SAFETY: the caller guarantees a whole block column at `col` and 32 codes at `x`.
    unsafe {
        let (mut a0, mut a1) =
            (if D::FULL_U8 { init } else { _mm256_setzero_si256() }, _mm256_setzero_si256());
        let flip = _mm256_set1_epi8(-128);
        for g in 0..8 {
            let w = _mm256_loadu_si256(col.add(qs_off + 32 * g).cast());
            let a = bcast4(x.add(4 * g));
            let acc = if g % 2 == 0 { &mut a0 } else { &mut a1 };
            *acc = if D::FULL_U8 {
                D::dot(*acc, w, a)
            } else {
                let s = _mm256_xor_si256(w, flip);
                D::dot(*acc, _mm256_sign_epi8(s, s), _mm256_sign_epi8(a, s))
            };
        }
        _mm256_add_epi32(a0, a1)
    }
}

/// One Q4_K super-block column (8 rows x 256 codes) against activation super-block `j`:
/// per sub-block the 8 rows' integer sums times their 6-bit scales, summed in i32, then
/// `d * da` in float; the mins' term `dmin * sum_s min_s * s_s` goes into `macc`.
#[inline(always)]
unsafe fn q4k_column<D: Dot>(
    col: *const u8,
    a: ActRow,
    j: usize,
    acc: &mut __m256,
    macc: &mut __m256,
) {
    // SAFETY: the caller guarantees a whole block column at `col`, 256 codes at
    // a.qs[256j..] and 8 metadata values at a.d/a.s[8j..].
    unsafe {
        let lo4 = _mm256_set1_epi8(0x0F);
        let x = a.qs.as_ptr().add(256 * j);
        let mut itot = _mm256_setzero_si256();
        for pair in 0..4 {
            // This column's 19 lines of prefetch, 5 per pair, spread over the column.
            pf(col.add(320 * pair), 5);
            let z = _mm256_setzero_si256();
            let (mut l0, mut l1, mut h0, mut h1) = (z, z, z, z);
            for v in (0..8).step_by(2) {
                for (w, (lacc, hacc)) in [(v, (&mut l0, &mut h0)), (v + 1, (&mut l1, &mut h1))] {
                    let raw = _mm256_loadu_si256(col.add(160 + 32 * (8 * pair + w)).cast());
                    let lo = _mm256_and_si256(raw, lo4);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4);
                    let (xl, xh) =
                        (bcast4(x.add(64 * pair + 4 * w)), bcast4(x.add(64 * pair + 32 + 4 * w)));
                    if D::I16 {
                        // 4-bit codes: a sub-block's 8 chunks fit an i16 lane (see isum_4bit).
                        *lacc = _mm256_add_epi16(*lacc, D::mul16(lo, xl));
                        *hacc = _mm256_add_epi16(*hacc, D::mul16(hi, xh));
                    } else {
                        *lacc = D::dot(*lacc, lo, xl);
                        *hacc = D::dot(*hacc, hi, xh);
                    }
                }
            }
            if D::I16 {
                (l0, h0) = (D::widen(_mm256_add_epi16(l0, l1)), D::widen(_mm256_add_epi16(h0, h1)));
                (l1, h1) = (z, z);
            }
            let sc = |s: usize| _mm256_cvtepu8_epi32(_mm_loadl_epi64(col.add(32 + 8 * s).cast()));
            let lo = _mm256_mullo_epi32(_mm256_add_epi32(l0, l1), sc(2 * pair));
            let hi = _mm256_mullo_epi32(_mm256_add_epi32(h0, h1), sc(2 * pair + 1));
            itot = _mm256_add_epi32(itot, _mm256_add_epi32(lo, hi));
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(col.cast()));
        let scale = _mm256_mul_ps(d, _mm256_set1_ps(*a.d.get_unchecked(8 * j)));
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(itot), scale, *acc);
        let mut mt = _mm256_setzero_ps();
        for s in 0..8 {
            let mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                col.add(96 + 8 * s).cast(),
            )));
            mt = _mm256_fmadd_ps(mn, _mm256_set1_ps(*a.s.get_unchecked(8 * j + s)), mt);
        }
        let dmin = _mm256_cvtph_ps(_mm_loadu_si128(col.add(16).cast()));
        *macc = _mm256_fnmadd_ps(dmin, mt, *macc);
    }
}

/// One Q6_K super-block column (8 rows x 256 codes) against activation super-block `j`:
/// per sub-block of 16 the 8 rows' integer sums, started at the offset correction
/// `corr = -32 * sum(a)`, times their signed 8-bit scales, summed in i32 (at most
/// 16 x 128 x 16 x 32 x 128 = 2^27 in magnitude, so exact on every `Dot`), then one FMA
/// with `d * da` per super-block serves the 8 rows.
/// `vpmaddubsw` is exact here: codes <= 63, |a| <= 128, so a pair sums to at most 16128.
#[inline(always)]
unsafe fn q6k_column<D: Dot>(col: *const u8, l: X8Layout, a: ActRow, j: usize, acc: &mut __m256) {
    // SAFETY: the caller guarantees a whole block column at `col`, 256 codes at
    // a.qs[256j..] and 16 metadata values at a.d/a.corr[16j..].
    unsafe {
        let (sc, ql, qh) = (col.add(l.sc.unwrap_or(0)), col.add(l.qs), col.add(l.qh.unwrap_or(0)));
        let x = a.qs.as_ptr().add(256 * j);
        let corr = a.corr.as_ptr().add(16 * j);
        let lo4 = _mm256_set1_epi8(0x0F);
        let (m3, m30) = (_mm256_set1_epi8(0x03), _mm256_set1_epi8(0x30));
        let mut itot = _mm256_setzero_si256();
        for n in 0..2 {
            // Chunks v = 4 quarter .. 4 quarter + 4 complete sub-blocks 8n + 2k + quarter.
            for quarter in 0..2 {
                let sub = |k: usize| 8 * n + 2 * k + quarter;
                let mut s = [
                    _mm256_set1_epi32(*corr.add(sub(0))),
                    _mm256_set1_epi32(*corr.add(sub(1))),
                    _mm256_set1_epi32(*corr.add(sub(2))),
                    _mm256_set1_epi32(*corr.add(sub(3))),
                ];
                let mut t16 = [_mm256_setzero_si256(); 4];
                for v in 4 * quarter..4 * quarter + 4 {
                    // This column's prefetches, spread over its 16 steps (2 lines each, the
                    // column's 27 lines in all) rather than issued at once.
                    pf(col.add(128 * (8 * n + v)), 2);
                    let l0 = _mm256_loadu_si256(ql.add(32 * (16 * n + v)).cast());
                    let l1 = _mm256_loadu_si256(ql.add(32 * (16 * n + 8 + v)).cast());
                    let h = _mm256_loadu_si256(qh.add(32 * (8 * n + v)).cast());
                    // Piece k: elements 128n + 32k + 4v.. of each row (16-bit shifts: the
                    // masks drop what crosses a byte).
                    let q = [
                        _mm256_or_si256(
                            _mm256_and_si256(l0, lo4),
                            _mm256_slli_epi16(_mm256_and_si256(h, m3), 4),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(l1, lo4),
                            _mm256_and_si256(_mm256_slli_epi16(h, 2), m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l0, 4), lo4),
                            _mm256_and_si256(h, m30),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(l1, 4), lo4),
                            _mm256_and_si256(_mm256_srli_epi16(h, 2), m30),
                        ),
                    ];
                    if D::I16 {
                        // 6-bit codes: two chunks' pair sums fit an i16 lane (2 x 2 x 63 x
                        // 128 < 2^15), widened after every odd chunk.
                        for k in 0..4 {
                            let p = D::mul16(q[k], bcast4(x.add(128 * n + 32 * k + 4 * v)));
                            t16[k] = if v % 2 == 0 { p } else { _mm256_add_epi16(t16[k], p) };
                            if v % 2 == 1 {
                                s[k] = _mm256_add_epi32(s[k], D::widen(t16[k]));
                            }
                        }
                    } else {
                        for k in 0..4 {
                            s[k] = D::dot(s[k], q[k], bcast4(x.add(128 * n + 32 * k + 4 * v)));
                        }
                    }
                }
                for (k, sk) in s.into_iter().enumerate() {
                    let scale = _mm256_cvtepi8_epi32(_mm_loadl_epi64(sc.add(8 * sub(k)).cast()));
                    itot = _mm256_add_epi32(itot, _mm256_mullo_epi32(sk, scale));
                }
            }
        }
        let d = _mm256_cvtph_ps(_mm_loadu_si128(col.cast()));
        let scale = _mm256_mul_ps(d, _mm256_set1_ps(*a.d.get_unchecked(16 * j)));
        *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(itot), scale, *acc);
    }
}

/// The 8 outputs of one group of rows: `group` is its `nb` block columns.
#[inline(always)]
unsafe fn group_dot<D: Dot>(t: GgmlType, p: &PackedWeight, group: &[u8], a: ActRow) -> __m256 {
    let l = p.layout;
    let nb = p.nb();
    let colb = l.column();
    let n_sub = p.cols / l.bs;
    assert!(group.len() >= nb * colb && a.qs.len() >= p.cols);
    assert!(a.d.len() >= n_sub && a.s.len() >= n_sub && a.corr.len() >= n_sub);
    if t == GgmlType::Q6_K {
        // SAFETY: block column j reads group[j*colb..(j+1)*colb], a.qs[256j..256(j+1)] and
        // a.d/a.corr[16j..16j+16]: all asserted above.
        unsafe {
            let mut acc = _mm256_setzero_ps();
            for j in 0..nb {
                let col = group.as_ptr().add(j * colb);
                q6k_column::<D>(col, l, a, j, &mut acc);
            }
            return acc;
        }
    }
    if t == GgmlType::Q4_K {
        // SAFETY: block column j reads group[j*colb..(j+1)*colb], a.qs[256j..256(j+1)] and
        // a.d/a.s[8j..8j+8]: all asserted above.
        unsafe {
            let (mut acc, mut macc) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for j in 0..nb {
                let col = group.as_ptr().add(j * colb);
                q4k_column::<D>(col, a, j, &mut acc, &mut macc);
            }
            return _mm256_add_ps(acc, macc);
        }
    }
    let lines = colb.div_ceil(64);
    // SAFETY: block column j reads group[j*colb..(j+1)*colb], a.qs[32j..32j+32] and index j
    // of the activation metadata: all asserted above.
    unsafe {
        let (mut acc, mut macc) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for j in 0..nb {
            let col = group.as_ptr().add(j * colb);
            pf(col, lines);
            let x = a.qs.as_ptr().add(32 * j);
            let corr = _mm256_set1_epi32(*a.corr.get_unchecked(j));
            let zero = _mm256_setzero_si256();
            let isum = match t {
                GgmlType::Q4_0 => isum_4bit::<D, false>(col, l.qs, 0, x, corr),
                GgmlType::Q5_0 => isum_4bit::<D, true>(col, l.qs, l.qh.unwrap_or(0), x, corr),
                GgmlType::Q4_1 => isum_4bit::<D, false>(col, l.qs, 0, x, zero),
                GgmlType::Q5_1 => isum_4bit::<D, true>(col, l.qs, l.qh.unwrap_or(0), x, zero),
                _ => isum_q8::<D>(col, l.qs, x, corr),
            };
            let d = _mm256_cvtph_ps(_mm_loadu_si128(col.cast()));
            let scale = _mm256_mul_ps(d, _mm256_set1_ps(*a.d.get_unchecked(j)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
            if let Some(mo) = l.m {
                let m = _mm256_cvtph_ps(_mm_loadu_si128(col.add(mo).cast()));
                macc = _mm256_fmadd_ps(m, _mm256_set1_ps(*a.s.get_unchecked(j)), macc);
            }
        }
        _mm256_add_ps(acc, macc)
    }
}

/// Outputs of rows `r0 .. r0 + y.len()` (`r0` a multiple of 8).
#[inline(always)]
pub(super) unsafe fn gemv_x8<D: Dot>(p: &PackedWeight, r0: usize, a: ActRow, y: &mut [f32]) {
    assert!(r0.is_multiple_of(X8) && r0 + y.len() <= p.rows);
    let group_bytes = p.nb() * p.layout.column();
    let data = p.bytes();
    for (i, out) in y.chunks_mut(X8).enumerate() {
        let g = r0 / X8 + i;
        let group = &data[g * group_bytes..(g + 1) * group_bytes];
        let mut res = [0.0f32; X8];
        // SAFETY: the entry point enabled AVX2/FMA/F16C and D's instruction; res holds 8.
        unsafe { _mm256_storeu_ps(res.as_mut_ptr(), group_dot::<D>(p.ggml_type, p, group, a)) };
        out.copy_from_slice(&res[..out.len()]);
    }
}

// Entry points: safe to call only where the features exist (the caller checks the `Cpu`'s
// level, verified supported when the `Cpu` was built).

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn gemv_x8_avx2(p: &PackedWeight, r0: usize, a: ActRow, y: &mut [f32]) {
    // SAFETY: this function's features are the ones the kernels need.
    unsafe { gemv_x8::<super::avx2::Maddubs>(p, r0, a, y) }
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn gemv_x8_avxvnni(p: &PackedWeight, r0: usize, a: ActRow, y: &mut [f32]) {
    // SAFETY: this function's features are the ones the kernels need.
    unsafe { gemv_x8::<super::avx2::AvxVnni>(p, r0, a, y) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(super) fn gemv_x8_avx512(p: &PackedWeight, r0: usize, a: ActRow, y: &mut [f32]) {
    // SAFETY: this function's features are the ones the kernels need.
    unsafe { gemv_x8::<super::avx512::Avx512Vnni>(p, r0, a, y) }
}
