//! NEON (+dotprod) GEMV over x8-packed weights (`packed.rs`): the aarch64 counterpart of
//! `avx2_x8.rs`. A group's 8 rows sit in two 128-bit registers (rows 0-3 and 4-7, one i32
//! lane each); `sdot` multiplies 4 codes of each row by the same broadcast 4 activation
//! codes. `sdot` is signed x signed, so codes go in as they are (0..31 for the 4- and 5-bit
//! types, whose offset enters through the activation's `corr`), and Q8_0's stored `code + 128`
//! is flipped back to signed (no `corr` then).
//!
//! `vdotq_s32` is not stable in Rust yet, so `sdot` is `neon.rs`'s one line of inline
//! assembly, enabled with the `dotprod` target feature the entry point requires
//! (`CpuLevel::Neon` means dotprod was detected).
//!
//! Unsafe: every raw read is inside a block column whose bounds `group_dot` asserts.

use super::neon::sdot;
use super::packed::{PackedWeight, X8Layout, X8};
use super::ActRow;
use std::arch::aarch64::*;
use weft::GgmlType;

/// 4 activation codes at `p` in every i32 lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> int8x16_t {
    // SAFETY: the caller guarantees 4 readable bytes at `p`.
    unsafe { vreinterpretq_s8_s32(vdupq_n_s32(p.cast::<i32>().read_unaligned())) }
}

/// 4 f16 at `p` as f32.
#[inline(always)]
unsafe fn f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: the caller guarantees 8 readable bytes at `p`.
    unsafe { vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p.cast()))) }
}

/// Integer sums of one 4-bit block column: rows 0-3 and 4-7.
#[inline(always)]
unsafe fn isum_4bit<const Q5: bool>(
    col: *const u8,
    qs_off: usize,
    qh_off: usize,
    x: *const i8,
    init: int32x4_t,
) -> [int32x4_t; 2] {
    // SAFETY: the caller guarantees a whole block column at `col` and 32 codes at `x`.
    unsafe {
        let lo4 = vdupq_n_u8(0x0F);
        let bit = vdupq_n_u32(0x1010_1010);
        let mut acc = [init, init];
        for (half, a) in acc.iter_mut().enumerate() {
            let qh =
                if Q5 { vld1q_u32(col.add(qh_off + 16 * half).cast()) } else { vdupq_n_u32(0) };
            for v in 0..4 {
                let raw = vld1q_u8(col.add(qs_off + 32 * v + 16 * half));
                let mut lo = vandq_u8(raw, lo4);
                let mut hi = vshrq_n_u8::<4>(raw);
                if Q5 {
                    // Bits 8e + k (k = v, 4 + v) to bit 4 of byte e.
                    let b_lo = vandq_u32(vshlq_u32(qh, vdupq_n_s32(4 - v as i32)), bit);
                    let b_hi = vandq_u32(vshlq_u32(qh, vdupq_n_s32(-(v as i32))), bit);
                    lo = vorrq_u8(lo, vreinterpretq_u8_u32(b_lo));
                    hi = vorrq_u8(hi, vreinterpretq_u8_u32(b_hi));
                }
                *a = sdot(*a, vreinterpretq_s8_u8(lo), bcast4(x.add(4 * v)));
                *a = sdot(*a, vreinterpretq_s8_u8(hi), bcast4(x.add(16 + 4 * v)));
            }
        }
        acc
    }
}

/// Integer sums of one Q8_0 block column (stored codes + 128, flipped back to signed).
#[inline(always)]
unsafe fn isum_q8(col: *const u8, qs_off: usize, x: *const i8) -> [int32x4_t; 2] {
    // SAFETY: the caller guarantees a whole block column at `col` and 32 codes at `x`.
    unsafe {
        let flip = vdupq_n_u8(0x80);
        let mut acc = [vdupq_n_s32(0); 2];
        for (half, a) in acc.iter_mut().enumerate() {
            for g in 0..8 {
                let w = veorq_u8(vld1q_u8(col.add(qs_off + 32 * g + 16 * half)), flip);
                *a = sdot(*a, vreinterpretq_s8_u8(w), bcast4(x.add(4 * g)));
            }
        }
        acc
    }
}

/// One Q4_K super-block column against activation super-block `j` (see `avx2_x8.rs`).
#[inline(always)]
unsafe fn q4k_column(col: *const u8, a: ActRow, j: usize, acc: &mut [float32x4_t; 2]) {
    // SAFETY: the caller guarantees a whole block column at `col`, 256 codes at
    // a.qs[256j..] and 8 metadata values at a.d/a.s[8j..].
    unsafe {
        let x = a.qs.as_ptr().add(256 * j);
        let lo4 = vdupq_n_u8(0x0F);
        // u8 [8 rows] at `p` as i32 lanes: rows 0-3, rows 4-7.
        let widen = |p: *const u8| {
            let w = vmovl_u8(vld1_u8(p));
            [
                vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(w))),
                vreinterpretq_s32_u32(vmovl_u16(vget_high_u16(w))),
            ]
        };
        for half in 0..2 {
            let mut itot = vdupq_n_s32(0);
            for pair in 0..4 {
                let (mut l, mut h) = (vdupq_n_s32(0), vdupq_n_s32(0));
                for v in 0..8 {
                    let raw = vld1q_u8(col.add(160 + 32 * (8 * pair + v) + 16 * half));
                    let lo = vreinterpretq_s8_u8(vandq_u8(raw, lo4));
                    let hi = vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw));
                    l = sdot(l, lo, bcast4(x.add(64 * pair + 4 * v)));
                    h = sdot(h, hi, bcast4(x.add(64 * pair + 32 + 4 * v)));
                }
                let sl = widen(col.add(32 + 8 * (2 * pair)))[half];
                let sh = widen(col.add(32 + 8 * (2 * pair + 1)))[half];
                itot = vaddq_s32(itot, vaddq_s32(vmulq_s32(l, sl), vmulq_s32(h, sh)));
            }
            let d = vmulq_n_f32(f16x4(col.add(8 * half)), *a.d.get_unchecked(8 * j));
            let mut mt = vdupq_n_f32(0.0);
            for s in 0..8 {
                let mn = vcvtq_f32_s32(widen(col.add(96 + 8 * s))[half]);
                mt = vfmaq_n_f32(mt, mn, *a.s.get_unchecked(8 * j + s));
            }
            let dmin = f16x4(col.add(16 + 8 * half));
            acc[half] = vfmaq_f32(acc[half], vcvtq_f32_s32(itot), d);
            acc[half] = vfmsq_f32(acc[half], dmin, mt);
        }
    }
}

/// One Q6_K super-block column against activation super-block `j` (see `avx2_x8.rs`): per
/// sub-block of 16 the integer sums from `corr`, times the signed scales, summed in i32,
/// then `d * da` in float. Codes 0..63 go into `sdot` as they are.
#[inline(always)]
unsafe fn q6k_column(col: *const u8, l: X8Layout, a: ActRow, j: usize, acc: &mut [float32x4_t; 2]) {
    // SAFETY: the caller guarantees a whole block column at `col`, 256 codes at
    // a.qs[256j..] and 16 metadata values at a.d/a.corr[16j..].
    unsafe {
        let (sc, ql, qh) = (col.add(l.sc.unwrap_or(0)), col.add(l.qs), col.add(l.qh.unwrap_or(0)));
        let x = a.qs.as_ptr().add(256 * j);
        let corr = a.corr.as_ptr().add(16 * j);
        let (lo4, m3, m30) = (vdupq_n_u8(0x0F), vdupq_n_u8(0x03), vdupq_n_u8(0x30));
        for half in 0..2 {
            let mut itot = vdupq_n_s32(0);
            for n in 0..2 {
                // Chunks v = 4 quarter .. 4 quarter + 4 complete sub-blocks 8n + 2k + quarter.
                for quarter in 0..2 {
                    let sub = |k: usize| 8 * n + 2 * k + quarter;
                    let mut s = [
                        vdupq_n_s32(*corr.add(sub(0))),
                        vdupq_n_s32(*corr.add(sub(1))),
                        vdupq_n_s32(*corr.add(sub(2))),
                        vdupq_n_s32(*corr.add(sub(3))),
                    ];
                    for v in 4 * quarter..4 * quarter + 4 {
                        let l0 = vld1q_u8(ql.add(32 * (16 * n + v) + 16 * half));
                        let l1 = vld1q_u8(ql.add(32 * (16 * n + 8 + v) + 16 * half));
                        let h = vld1q_u8(qh.add(32 * (8 * n + v) + 16 * half));
                        // Piece k: elements 128n + 32k + 4v.. of rows 4 half .. 4 half + 4.
                        let q = [
                            vorrq_u8(vandq_u8(l0, lo4), vshlq_n_u8::<4>(vandq_u8(h, m3))),
                            vorrq_u8(vandq_u8(l1, lo4), vandq_u8(vshlq_n_u8::<2>(h), m30)),
                            vorrq_u8(vshrq_n_u8::<4>(l0), vandq_u8(h, m30)),
                            vorrq_u8(vshrq_n_u8::<4>(l1), vandq_u8(vshrq_n_u8::<2>(h), m30)),
                        ];
                        for k in 0..4 {
                            let xa = bcast4(x.add(128 * n + 32 * k + 4 * v));
                            s[k] = sdot(s[k], vreinterpretq_s8_u8(q[k]), xa);
                        }
                    }
                    for (k, sk) in s.into_iter().enumerate() {
                        // Scales of rows 4 half .. 4 half + 4, widened to i32.
                        let w = vmovl_s8(vld1_s8(sc.add(8 * sub(k)).cast()));
                        let w = if half == 0 { vget_low_s16(w) } else { vget_high_s16(w) };
                        itot = vaddq_s32(itot, vmulq_s32(sk, vmovl_s16(w)));
                    }
                }
            }
            let d = vmulq_n_f32(f16x4(col.add(8 * half)), *a.d.get_unchecked(16 * j));
            acc[half] = vfmaq_f32(acc[half], vcvtq_f32_s32(itot), d);
        }
    }
}

/// The 8 outputs of one group of rows: `group` is its `nb` block columns.
#[inline(always)]
unsafe fn group_dot(p: &PackedWeight, group: &[u8], a: ActRow) -> [f32; X8] {
    let (t, l, nb) = (p.ggml_type, p.layout, p.nb());
    let colb = l.column();
    let n_sub = p.cols / l.bs;
    assert!(group.len() >= nb * colb && a.qs.len() >= p.cols);
    assert!(a.d.len() >= n_sub && a.s.len() >= n_sub && a.corr.len() >= n_sub);
    // SAFETY: block column j reads group[j*colb..(j+1)*colb], a.qs[32j..] (a.qs[256j..] for
    // Q4_K and Q6_K) and the activation metadata of its sub-blocks: all asserted above.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut macc = [vdupq_n_f32(0.0); 2];
        for j in 0..nb {
            let col = group.as_ptr().add(j * colb);
            if t == GgmlType::Q4_K {
                q4k_column(col, a, j, &mut acc);
                continue;
            }
            if t == GgmlType::Q6_K {
                q6k_column(col, l, a, j, &mut acc);
                continue;
            }
            let x = a.qs.as_ptr().add(32 * j);
            let corr = vdupq_n_s32(*a.corr.get_unchecked(j));
            let zero = vdupq_n_s32(0);
            let isum = match t {
                GgmlType::Q4_0 => isum_4bit::<false>(col, l.qs, 0, x, corr),
                GgmlType::Q5_0 => isum_4bit::<true>(col, l.qs, l.qh.unwrap_or(0), x, corr),
                GgmlType::Q4_1 => isum_4bit::<false>(col, l.qs, 0, x, zero),
                GgmlType::Q5_1 => isum_4bit::<true>(col, l.qs, l.qh.unwrap_or(0), x, zero),
                _ => isum_q8(col, l.qs, x),
            };
            let da = *a.d.get_unchecked(j);
            for half in 0..2 {
                let d = vmulq_n_f32(f16x4(col.add(8 * half)), da);
                acc[half] = vfmaq_f32(acc[half], vcvtq_f32_s32(isum[half]), d);
                if let Some(mo) = l.m {
                    let m = f16x4(col.add(mo + 8 * half));
                    macc[half] = vfmaq_n_f32(macc[half], m, *a.s.get_unchecked(j));
                }
            }
        }
        let mut out = [0.0f32; X8];
        vst1q_f32(out.as_mut_ptr(), vaddq_f32(acc[0], macc[0]));
        vst1q_f32(out.as_mut_ptr().add(4), vaddq_f32(acc[1], macc[1]));
        out
    }
}

/// Outputs of rows `r0 .. r0 + y.len()` (`r0` a multiple of 8). Safe to call only where
/// NEON and dotprod exist (the caller holds a `Cpu` of level `Neon`, which checked them).
#[target_feature(enable = "neon,dotprod")]
pub(super) fn gemv_x8_neon(p: &PackedWeight, r0: usize, a: ActRow, y: &mut [f32]) {
    assert!(r0.is_multiple_of(X8) && r0 + y.len() <= p.rows);
    let group_bytes = p.nb() * p.layout.column();
    let data = p.bytes();
    for (i, out) in y.chunks_mut(X8).enumerate() {
        let g = r0 / X8 + i;
        let group = &data[g * group_bytes..(g + 1) * group_bytes];
        // SAFETY: this function enables the features the kernels need.
        let res = unsafe { group_dot(p, group, a) };
        out.copy_from_slice(&res[..out.len()]);
    }
}
