//! aarch64 NEON + dot-product GEMV kernels, and the helpers `neon_gemm.rs` shares.
//!
//! Integer dots use `sdot` (i8 x i8 -> i32, four products per lane). Its intrinsic
//! (`vdotq_s32`) is not stable Rust yet, so one small `asm!` helper, [`sdot`], emits it from
//! functions compiled with the `dotprod` feature. `sdot` is signed on both sides, so the
//! unsigned codes of the sub-block format ([`super::format`]) are used as they are when they
//! fit in i8 (every type but Q8_0, whose codes are `w ^ 0x80`: the kernels read its signed
//! bytes directly), and the integer offset either enters through the activations' `corr`
//! or is subtracted from the codes before the dot.
//!
//! The fused GEMV dots read the weights in their native block layout, one row at a time, two
//! float accumulation chains where blocks are small; summation order is fixed by the shapes.
//!
//! Unsafe: every raw load is within a slice whose length the kernel asserts first; `sdot`
//! needs the `dotprod` feature the entry points enable (NEON itself is baseline on aarch64).

use super::format::{self, scale_min_k4, scales_q3k};
use super::{ActRow, Work};
use std::arch::aarch64::*;
use std::arch::asm;
use weft::GgmlType;

/// `acc + dot4(a, b)` per i32 lane: each lane gains the sum of the four products of its
/// i8 lanes (`sdot v.4s, v.16b, v.16b`).
///
/// # Safety
/// The CPU must have the dot-product extension (the callers' `#[target_feature]`).
#[inline]
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // SAFETY: a pure register operation; `dotprod` is enabled for this function.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// The f16 at `p` (little endian, any alignment) as f32.
///
/// # Safety
/// 2 readable bytes at `p`.
#[inline(always)]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes.
    half::f16::from_bits(unsafe { p.cast::<u16>().read_unaligned() }).to_f32()
}

/// 16 bytes at `p` as i8 lanes.
///
/// # Safety
/// 16 readable bytes at `p`.
#[inline(always)]
pub(super) unsafe fn ld8(p: *const u8) -> int8x16_t {
    // SAFETY: the caller guarantees 16 readable bytes; `ld1` has no alignment need.
    unsafe { vld1q_s8(p.cast()) }
}

/// 16 bytes at `p` as u8 lanes.
///
/// # Safety
/// 16 readable bytes at `p`.
#[inline(always)]
unsafe fn ldu(p: *const u8) -> uint8x16_t {
    // SAFETY: as `ld8`.
    unsafe { vld1q_u8(p) }
}

/// Unsigned codes (< 128) as the i8 lanes `sdot` takes: the same bits.
#[inline(always)]
fn s8(v: uint8x16_t) -> int8x16_t {
    // SAFETY: a bit cast between vector types of the same size.
    unsafe { vreinterpretq_s8_u8(v) }
}

/// Codes minus a constant offset, as signed lanes (the offset folded into the weights).
#[inline(always)]
fn minus(v: uint8x16_t, off: u8) -> int8x16_t {
    // SAFETY: register-only NEON operations (NEON is baseline on aarch64).
    unsafe { vreinterpretq_s8_u8(vsubq_u8(v, vdupq_n_u8(off))) }
}

/// `(v >> n) & mask` per byte for a shift known at run time (`n < 8`).
#[inline(always)]
fn shr_and(v: uint8x16_t, n: usize, mask: u8) -> uint8x16_t {
    // SAFETY: register-only NEON operations; a negative `ushl` count shifts right.
    unsafe { vandq_u8(vshlq_u8(v, vdupq_n_s8(-(n as i8))), vdupq_n_u8(mask)) }
}

/// Bits 0..16 of `qh` -> 16 bytes of 0x10 or 0 (`lo`), bits 16..32 likewise (`hi`): the fifth
/// bit of Q5_0 / Q5_1 codes.
#[inline(always)]
fn bit4(qh: u32) -> (uint8x16_t, uint8x16_t) {
    const SEL_LO: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const SEL_HI: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: the loads read the 16-byte constant arrays above; the rest is register-only.
    unsafe {
        let v = vreinterpretq_u8_u32(vdupq_n_u32(qh));
        let bits = vld1q_u8(BITS.as_ptr());
        let ten = vdupq_n_u8(0x10);
        let lo = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(SEL_LO.as_ptr())), bits), ten);
        let hi = vandq_u8(vtstq_u8(vqtbl1q_u8(v, vld1q_u8(SEL_HI.as_ptr())), bits), ten);
        (lo, hi)
    }
}

/// Sum of the 4 lanes (pairwise, a fixed order).
#[inline(always)]
pub(super) fn hsum(v: float32x4_t) -> f32 {
    // SAFETY: register-only NEON operation.
    unsafe { vaddvq_f32(v) }
}

/// `acc + p * scale` with `p` converted to f32.
#[inline(always)]
fn fma_i(acc: float32x4_t, p: int32x4_t, scale: f32) -> float32x4_t {
    // SAFETY: register-only NEON operations.
    unsafe { vfmaq_n_f32(acc, vcvtq_f32_s32(p), scale) }
}

// ---------------------------------------------------------------------------------------
// Fused GEMV dots, one weight row (native blocks) times the natural-layout activations.
// Each `step_*` adds block `i` to one of two accumulation chains (even and odd blocks).

/// Q8_0 x Q8_0: the signed weight bytes times the activation codes.
#[inline(always)]
unsafe fn step_q8_0(w: *const u8, a: ActRow, i: usize, acc: float32x4_t) -> float32x4_t {
    // SAFETY: the caller checked block i of the weights and of the activations exist.
    unsafe {
        let b = w.add(i * 34);
        let x = a.qs.as_ptr().add(i * 32).cast::<u8>();
        let p = sdot(vdupq_n_s32(0), ld8(b.add(2)), ld8(x));
        let p = sdot(p, ld8(b.add(18)), ld8(x.add(16)));
        fma_i(acc, p, f16_at(b) * *a.d.get_unchecked(i))
    }
}

/// The 32 codes of a Q4 / Q5 block: element `l` in `lo` (l < 16), `16 + l` in `hi`.
#[inline(always)]
unsafe fn codes_q4_q5<const Q5: bool>(qs: *const u8, qh: *const u8) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: the caller guarantees 16 readable bytes at `qs` and, with Q5, 4 at `qh`.
    unsafe {
        let raw = ldu(qs);
        let lo = vandq_u8(raw, vdupq_n_u8(0x0F));
        let hi = vshrq_n_u8::<4>(raw);
        if Q5 {
            let (h0, h1) = bit4(qh.cast::<u32>().read_unaligned());
            (vorrq_u8(lo, h0), vorrq_u8(hi, h1))
        } else {
            (lo, hi)
        }
    }
}

/// Q4_0 / Q5_0 x Q8_0: unsigned codes; the offset enters as the integer `corr`.
#[inline(always)]
unsafe fn step_q4_0_q5_0<const Q5: bool>(
    w: *const u8,
    a: ActRow,
    i: usize,
    acc: float32x4_t,
) -> float32x4_t {
    // SAFETY: the caller checked block i of the weights and of the activations exist.
    unsafe {
        let b = w.add(i * if Q5 { 22 } else { 18 });
        let (lo, hi) = codes_q4_q5::<Q5>(b.add(if Q5 { 6 } else { 2 }), b.add(2));
        let x = a.qs.as_ptr().add(i * 32).cast::<u8>();
        let init = vsetq_lane_s32::<0>(*a.corr.get_unchecked(i), vdupq_n_s32(0));
        let p = sdot(sdot(init, s8(lo), ld8(x)), s8(hi), ld8(x.add(16)));
        fma_i(acc, p, f16_at(b) * *a.d.get_unchecked(i))
    }
}

/// Q4_1 / Q5_1 x Q8_1: `d * da * sum(q a)` into the vector chain, `m * s` into the scalar one.
#[inline(always)]
unsafe fn step_q4_1_q5_1<const Q5: bool>(
    w: *const u8,
    a: ActRow,
    i: usize,
    (acc, macc): (float32x4_t, f32),
) -> (float32x4_t, f32) {
    // SAFETY: the caller checked block i of the weights and of the activations exist.
    unsafe {
        let b = w.add(i * if Q5 { 24 } else { 20 });
        let (lo, hi) = codes_q4_q5::<Q5>(b.add(if Q5 { 8 } else { 4 }), b.add(4));
        let x = a.qs.as_ptr().add(i * 32).cast::<u8>();
        let p = sdot(sdot(vdupq_n_s32(0), s8(lo), ld8(x)), s8(hi), ld8(x.add(16)));
        (
            fma_i(acc, p, f16_at(b) * *a.d.get_unchecked(i)),
            macc + f16_at(b.add(2)) * *a.s.get_unchecked(i),
        )
    }
}

/// Two accumulation chains (even and odd blocks) over `nb` blocks; fixed order.
macro_rules! two_chains {
    ($nb:expr, $zero:expr, $step:expr, ($($arg:expr),*)) => {{
        let (mut c0, mut c1) = ($zero, $zero);
        let mut i = 0;
        while i + 1 < $nb {
            c0 = $step($($arg,)* i, c0);
            c1 = $step($($arg,)* i + 1, c1);
            i += 2;
        }
        if i < $nb {
            c0 = $step($($arg,)* i, c0);
        }
        (c0, c1)
    }};
}

#[inline(always)]
unsafe fn dot_q8_0(w: &[u8], a: ActRow) -> f32 {
    let nb = w.len() / 34;
    assert!(w.len() == nb * 34 && a.qs.len() >= nb * 32 && a.d.len() >= nb);
    // SAFETY: blocks 0..nb of the weights and of the activations exist (asserted above).
    let (c0, c1) = unsafe { two_chains!(nb, vdupq_n_f32(0.0), step_q8_0, (w.as_ptr(), a)) };
    // SAFETY: register-only NEON operation.
    hsum(unsafe { vaddq_f32(c0, c1) })
}

#[inline(always)]
unsafe fn dot_q4_0_q5_0<const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let bb = if Q5 { 22 } else { 18 };
    let nb = w.len() / bb;
    assert!(w.len() == nb * bb && a.qs.len() >= nb * 32 && a.d.len() >= nb);
    assert!(a.corr.len() >= nb);
    // SAFETY: blocks 0..nb of the weights and of the activations exist (asserted above).
    let (c0, c1) =
        unsafe { two_chains!(nb, vdupq_n_f32(0.0), step_q4_0_q5_0::<Q5>, (w.as_ptr(), a)) };
    // SAFETY: register-only NEON operation.
    hsum(unsafe { vaddq_f32(c0, c1) })
}

#[inline(always)]
unsafe fn dot_q4_1_q5_1<const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let bb = if Q5 { 24 } else { 20 };
    let nb = w.len() / bb;
    assert!(w.len() == nb * bb && a.qs.len() >= nb * 32 && a.d.len() >= nb && a.s.len() >= nb);
    // SAFETY: blocks 0..nb of the weights and of the activations exist (asserted above).
    let (c0, c1) = unsafe {
        let zero = (vdupq_n_f32(0.0), 0.0f32);
        two_chains!(nb, zero, step_q4_1_q5_1::<Q5>, (w.as_ptr(), a))
    };
    // SAFETY: register-only NEON operation.
    hsum(unsafe { vaddq_f32(c0.0, c1.0) }) + (c0.1 + c1.1)
}

/// Q4_K (or, with `Q5`, Q5_K) x Q8_K: 8 sub-blocks of 32 per super-block, integer sums
/// scaled by the 6-bit scales, the min term in f32 from the activations' sums `s`.
#[inline(always)]
unsafe fn dot_q4_k<const Q5: bool>(w: &[u8], a: ActRow) -> f32 {
    let bb = if Q5 { 176 } else { 144 };
    let nsb = w.len() / bb;
    assert!(w.len() == nsb * bb && a.qs.len() >= nsb * 256);
    assert!(a.d.len() >= nsb * 8 && a.s.len() >= nsb * 8);
    // SAFETY: super-block i reads w[bb*i..bb*(i+1)], a.qs[256i..256i+256], a.d/a.s[8i..8i+8].
    unsafe {
        let mut acc = vdupq_n_f32(0.0);
        let mut msum = 0.0f32;
        for i in 0..nsb {
            let b = w.as_ptr().add(i * bb);
            // d, dmin, scales[12], (Q5_K: qh[32]), qs[128].
            let sc: &[u8; 12] = &*b.add(4).cast::<[u8; 12]>();
            let qs = b.add(if Q5 { 48 } else { 16 });
            let qh = [ldu(b.add(16)), ldu(b.add(32))];
            let x = a.qs.as_ptr().add(i * 256).cast::<u8>();
            let mut isum = vdupq_n_s32(0);
            let mut mins = 0.0f32;
            for j in 0..4 {
                let (s_lo, m_lo) = scale_min_k4(2 * j, sc);
                let (s_hi, m_hi) = scale_min_k4(2 * j + 1, sc);
                let (mut p_lo, mut p_hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for h in 0..2 {
                    // Code 64j + 16h + l: low nibble of qs[32j + 16h + l]; 64j + 32 + 16h + l:
                    // its high nibble. Q5_K: fifth bits 2j and 2j + 1 of qh[16h + l].
                    let raw = ldu(qs.add(32 * j + 16 * h));
                    let mut lo = vandq_u8(raw, vdupq_n_u8(0x0F));
                    let mut hi = vshrq_n_u8::<4>(raw);
                    if Q5 {
                        lo = vorrq_u8(lo, vshlq_n_u8::<4>(shr_and(qh[h], 2 * j, 1)));
                        hi = vorrq_u8(hi, vshlq_n_u8::<4>(shr_and(qh[h], 2 * j + 1, 1)));
                    }
                    p_lo = sdot(p_lo, s8(lo), ld8(x.add(64 * j + 16 * h)));
                    p_hi = sdot(p_hi, s8(hi), ld8(x.add(64 * j + 32 + 16 * h)));
                }
                isum = vmlaq_n_s32(isum, p_lo, s_lo as i32);
                isum = vmlaq_n_s32(isum, p_hi, s_hi as i32);
                mins += m_lo as f32 * a.s[i * 8 + 2 * j] + m_hi as f32 * a.s[i * 8 + 2 * j + 1];
            }
            acc = fma_i(acc, isum, f16_at(b) * a.d[i * 8]);
            msum -= f16_at(b.add(2)) * mins;
        }
        hsum(acc) + msum
    }
}

/// Q6_K x Q8_K: 6-bit codes minus 32, 16 signed scales.
#[inline(always)]
unsafe fn dot_q6_k(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / 210;
    assert!(w.len() == nsb * 210 && a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 16);
    // SAFETY: super-block i reads w[210i..210i+210], a.qs[256i..256i+256], a.d[16i].
    unsafe {
        let mut acc = vdupq_n_f32(0.0);
        for i in 0..nsb {
            let b = w.as_ptr().add(i * 210);
            // ql[128], qh[64], scales[16] (i8), d.
            let (ql, qh, sc) = (b, b.add(128), b.add(192).cast::<i8>());
            let x = a.qs.as_ptr().add(i * 256).cast::<u8>();
            let mut isum = vdupq_n_s32(0);
            for n in 0..2 {
                for h in 0..2 {
                    // Elements 128n + 32k + 16h + l, k = 0..4, from ql[64n + 16h + l],
                    // ql[64n + 32 + 16h + l] and bits 2k, 2k + 1 of qh[32n + 16h + l].
                    let l0 = ldu(ql.add(64 * n + 16 * h));
                    let l1 = ldu(ql.add(64 * n + 32 + 16 * h));
                    let hb = ldu(qh.add(32 * n + 16 * h));
                    let lo4 = vdupq_n_u8(0x0F);
                    let q = [
                        vorrq_u8(vandq_u8(l0, lo4), vshlq_n_u8::<4>(vandq_u8(hb, vdupq_n_u8(3)))),
                        vorrq_u8(vandq_u8(l1, lo4), vshlq_n_u8::<2>(vandq_u8(hb, vdupq_n_u8(12)))),
                        vorrq_u8(vshrq_n_u8::<4>(l0), vandq_u8(hb, vdupq_n_u8(0x30))),
                        vorrq_u8(
                            vshrq_n_u8::<4>(l1),
                            vandq_u8(vshrq_n_u8::<2>(hb), vdupq_n_u8(0x30)),
                        ),
                    ];
                    for (k, &qk) in q.iter().enumerate() {
                        let p = sdot(
                            vdupq_n_s32(0),
                            minus(qk, 32),
                            ld8(x.add(128 * n + 32 * k + 16 * h)),
                        );
                        isum = vmlaq_n_s32(isum, p, *sc.add(8 * n + 2 * k + h) as i32);
                    }
                }
            }
            acc = fma_i(acc, isum, f16_at(b.add(208)) * a.d[i * 16]);
        }
        hsum(acc)
    }
}

/// Q2_K x Q8_K: 2-bit codes, 4-bit scales and mins (16 sub-blocks of 16).
#[inline(always)]
unsafe fn dot_q2_k(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / 84;
    assert!(w.len() == nsb * 84 && a.qs.len() >= nsb * 256);
    assert!(a.d.len() >= nsb * 16 && a.s.len() >= nsb * 16);
    // SAFETY: super-block i reads w[84i..84i+84], a.qs[256i..256i+256], a.d/a.s[16i..16i+16].
    unsafe {
        let mut acc = vdupq_n_f32(0.0);
        let mut msum = 0.0f32;
        for i in 0..nsb {
            let b = w.as_ptr().add(i * 84);
            // scales[16], qs[64], d, dmin.
            let (sc, qs) = (b, b.add(16));
            let x = a.qs.as_ptr().add(i * 256).cast::<u8>();
            let mut isum = vdupq_n_s32(0);
            for n in 0..2 {
                for h in 0..2 {
                    // Element 128n + 32k + 16h + l is bits 2k..2k+2 of qs[32n + 16h + l].
                    let raw = ldu(qs.add(32 * n + 16 * h));
                    for k in 0..4 {
                        let q = shr_and(raw, 2 * k, 3);
                        let p = sdot(vdupq_n_s32(0), s8(q), ld8(x.add(128 * n + 32 * k + 16 * h)));
                        isum = vmlaq_n_s32(isum, p, (*sc.add(8 * n + 2 * k + h) & 0xF) as i32);
                    }
                }
            }
            let mut mins = 0.0f32;
            for j in 0..16 {
                mins += (*sc.add(j) >> 4) as f32 * a.s[i * 16 + j];
            }
            acc = fma_i(acc, isum, f16_at(b.add(80)) * a.d[i * 16]);
            msum -= f16_at(b.add(82)) * mins;
        }
        hsum(acc) + msum
    }
}

/// Q3_K x Q8_K: codes low 2 bits | high bit << 2, minus 4; 16 signed 6-bit scales.
#[inline(always)]
unsafe fn dot_q3_k(w: &[u8], a: ActRow) -> f32 {
    let nsb = w.len() / 110;
    assert!(w.len() == nsb * 110 && a.qs.len() >= nsb * 256 && a.d.len() >= nsb * 16);
    // SAFETY: super-block i reads w[110i..110i+110], a.qs[256i..256i+256], a.d[16i].
    unsafe {
        let mut acc = vdupq_n_f32(0.0);
        for i in 0..nsb {
            let b = w.as_ptr().add(i * 110);
            // hmask[32], qs[64], scales[12], d.
            let (hm, qs) = ([ldu(b), ldu(b.add(16))], b.add(32));
            let sc = scales_q3k(&*b.add(96).cast::<[u8; 12]>());
            let x = a.qs.as_ptr().add(i * 256).cast::<u8>();
            let mut isum = vdupq_n_s32(0);
            for n in 0..2 {
                for h in 0..2 {
                    // Low bits 2k..2k+2 of qs[32n + 16h + l]; high bit 4n + k of hmask[16h + l].
                    let raw = ldu(qs.add(32 * n + 16 * h));
                    for k in 0..4 {
                        let high = vshlq_n_u8::<2>(shr_and(hm[h], 4 * n + k, 1));
                        let q = minus(vorrq_u8(shr_and(raw, 2 * k, 3), high), 4);
                        let p = sdot(vdupq_n_s32(0), q, ld8(x.add(128 * n + 32 * k + 16 * h)));
                        isum = vmlaq_n_s32(isum, p, sc[8 * n + 2 * k + h] as i32);
                    }
                }
            }
            acc = fma_i(acc, isum, f16_at(b.add(108)) * a.d[i * 16]);
        }
        hsum(acc)
    }
}

/// Every output of a chunk of weight rows (`w`: whole rows of `row_bytes`).
#[target_feature(enable = "neon,dotprod")]
pub(super) fn gemv_neon(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    row_bytes: usize,
    a: ActRow,
    y: &mut [f32],
    _work: &mut Work,
) {
    debug_assert!(format::sub_format(t).is_some_and(|f| cols.is_multiple_of(f.bs)));
    for (row, out) in w.chunks_exact(row_bytes).zip(y.iter_mut()) {
        // SAFETY: this function enables the features the kernels need; each kernel
        // checks its slice lengths.
        *out = unsafe {
            match t {
                GgmlType::Q8_0 => dot_q8_0(row, a),
                GgmlType::Q4_0 => dot_q4_0_q5_0::<false>(row, a),
                GgmlType::Q5_0 => dot_q4_0_q5_0::<true>(row, a),
                GgmlType::Q4_1 => dot_q4_1_q5_1::<false>(row, a),
                GgmlType::Q5_1 => dot_q4_1_q5_1::<true>(row, a),
                GgmlType::Q4_K => dot_q4_k::<false>(row, a),
                GgmlType::Q5_K => dot_q4_k::<true>(row, a),
                GgmlType::Q2_K => dot_q2_k(row, a),
                GgmlType::Q3_K => dot_q3_k(row, a),
                GgmlType::Q6_K => dot_q6_k(row, a),
                _ => unreachable!("gemv_neon: {t} has no quantized dot (checked by matmul)"),
            }
        };
    }
}
