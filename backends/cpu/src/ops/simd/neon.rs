//! aarch64 NEON kernels (4 f32 lanes). NEON is part of the aarch64 baseline, so these need
//! no run-time check of their own; the table is used at the `Neon` level, which the matmul
//! ties to the dot-product extension. Attention uses the portable kernels (see `KERNELS`).
//!
//! f16 <-> f32 use `fcvtl` / `fcvtn` (base AArch64 SIMD) through `asm!`: their intrinsics
//! take `float16x4_t`, which is not stable Rust yet.

use half::f16;
use std::arch::aarch64::*;
use std::arch::asm;

const W: usize = 4;

#[inline(always)]
fn load(x: &[f32; W]) -> float32x4_t {
    // SAFETY: `x` is 4 readable f32; `ld1` has no alignment need.
    unsafe { vld1q_f32(x.as_ptr()) }
}

#[inline(always)]
fn store(x: &mut [f32; W], v: float32x4_t) {
    // SAFETY: `x` is 4 writable f32.
    unsafe { vst1q_f32(x.as_mut_ptr(), v) }
}

#[inline(always)]
fn splat(v: f32) -> float32x4_t {
    // SAFETY: register-only NEON operation (NEON is baseline on aarch64).
    unsafe { vdupq_n_f32(v) }
}

/// e^x per lane: x = n ln2 + r, |r| <= ln2/2, Cephes' degree-5 polynomial for e^r (about
/// 1 ulp), times 2^n built in the exponent bits: the same steps and constants as the x86
/// kernels. x < -87.33 gives 0 (true values are below f32's normal range, -inf included);
/// x > 88.37 gives +inf; NaN stays NaN.
#[inline(always)]
fn exp(x: float32x4_t) -> float32x4_t {
    // SAFETY: register-only NEON operations.
    unsafe {
        let n = vrndnq_f32(vmulq_f32(x, splat(std::f32::consts::LOG2_E)));
        let r = vfmsq_f32(x, n, splat(0.693_359_4));
        let r = vfmsq_f32(r, n, splat(-2.121_944_4e-4));
        let mut p = splat(1.987_569_1e-4);
        for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
            p = vfmaq_f32(splat(c), p, r);
        }
        let y = vfmaq_f32(vaddq_f32(r, splat(1.0)), p, vmulq_f32(r, r));
        let bits = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
        let e = vmulq_f32(y, vreinterpretq_f32_s32(bits));
        let hi = vcgtq_f32(x, splat(88.37626));
        let lo = vcltq_f32(x, splat(-87.33654));
        let e = vbslq_f32(hi, splat(f32::INFINITY), e);
        vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(e), lo))
    }
}

/// `exp` on a short tail (< 4 values), padded: the same function as the full lanes.
#[inline(always)]
fn exp_tail(x: &mut [f32]) {
    let mut t = [f32::NEG_INFINITY; W];
    t[..x.len()].copy_from_slice(x);
    let v = exp(load(&t));
    store(&mut t, v);
    x.copy_from_slice(&t[..x.len()]);
}

/// out = x / sqrt(mean(x^2) + eps) * w for one row.
pub(crate) fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let (xc, xt) = x.as_chunks::<W>();
    // SAFETY: register-only NEON operations.
    let sum = unsafe {
        let mut acc = [splat(0.0); 4];
        let (x4, x1) = xc.as_chunks::<4>();
        for c in x4 {
            for (a, v) in acc.iter_mut().zip(c) {
                *a = vfmaq_f32(*a, load(v), load(v));
            }
        }
        for v in x1 {
            acc[0] = vfmaq_f32(acc[0], load(v), load(v));
        }
        let all = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
        vaddvq_f32(all) + xt.iter().map(|v| v * v).sum::<f32>()
    };
    let scale = (1.0 / (sum as f64 / x.len() as f64 + eps as f64).sqrt()) as f32;
    let (oc, ot) = out.as_chunks_mut::<W>();
    let (wc, wt) = w.as_chunks::<W>();
    for ((o, v), wv) in oc.iter_mut().zip(xc).zip(wc) {
        // SAFETY: register-only NEON operations.
        store(o, unsafe { vmulq_f32(vmulq_n_f32(load(v), scale), load(wv)) });
    }
    for ((o, &v), &wv) in ot.iter_mut().zip(xt).zip(wt) {
        *o = v * scale * wv;
    }
}

/// RoPE Norm style on one head; tables as in `scalar::rope_norm`.
pub(crate) fn rope_norm(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let n_rot = cos.len();
    let (hc, ht) = head[..n_rot].as_chunks_mut::<W>();
    let (cc, ct) = cos.as_chunks::<W>();
    let (sc, st) = sin.as_chunks::<W>();
    for ((x, c), s) in hc.iter_mut().zip(cc).zip(sc) {
        let v = load(x);
        // SAFETY: register-only NEON operations; `rev64` swaps the lanes of each pair.
        let r = unsafe { vfmaq_f32(vmulq_f32(vrev64q_f32(v), load(s)), v, load(c)) };
        store(x, r);
    }
    super::scalar::rope_norm(ht, ct, st);
}

/// RoPE NeoX style on one head; tables as in `scalar::rope_neox`.
pub(crate) fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (lo, hi) = head[..2 * half].split_at_mut(half);
    let (lc, lt) = lo.as_chunks_mut::<W>();
    let (hc, ht) = hi.as_chunks_mut::<W>();
    let (cc, ct) = cos.as_chunks::<W>();
    let (sc, st) = sin.as_chunks::<W>();
    for (((a, b), c), s) in lc.iter_mut().zip(hc.iter_mut()).zip(cc).zip(sc) {
        let (x0, x1, c, s) = (load(a), load(b), load(c), load(s));
        // SAFETY: register-only NEON operations.
        let (na, nb) =
            unsafe { (vfmsq_f32(vmulq_f32(x0, c), x1, s), vfmaq_f32(vmulq_f32(x1, c), x0, s)) };
        store(a, na);
        store(b, nb);
    }
    for (((a, b), &c), &s) in lt.iter_mut().zip(ht.iter_mut()).zip(ct).zip(st) {
        let (x0, x1) = (*a, *b);
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

#[inline(always)]
fn silu_mul4(g: float32x4_t, u: float32x4_t) -> float32x4_t {
    // SAFETY: register-only NEON operations.
    unsafe {
        let e = exp(vnegq_f32(g));
        vmulq_f32(vdivq_f32(g, vaddq_f32(splat(1.0), e)), u)
    }
}

/// gate = silu(gate) * up.
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let (gc, gt) = gate.as_chunks_mut::<W>();
    let (uc, ut) = up.as_chunks::<W>();
    for (g, u) in gc.iter_mut().zip(uc) {
        store(g, silu_mul4(load(g), load(u)));
    }
    if !gt.is_empty() {
        let (mut g, mut u) = ([0f32; W], [0f32; W]);
        g[..gt.len()].copy_from_slice(gt);
        u[..ut.len()].copy_from_slice(ut);
        let r = silu_mul4(load(&g), load(&u));
        store(&mut g, r);
        gt.copy_from_slice(&g[..gt.len()]);
    }
}

/// Softmax of one row, in place: max, exp(x - max) with a lane-wise sum (fixed order), scale.
pub(crate) fn softmax_row(x: &mut [f32]) {
    let (xc, xt) = x.as_chunks::<W>();
    // SAFETY: register-only NEON operations.
    let max = unsafe {
        let mut m = splat(f32::NEG_INFINITY);
        for v in xc {
            m = vmaxq_f32(m, load(v));
        }
        xt.iter().fold(vmaxvq_f32(m), |a, &b| a.max(b))
    };
    let (xc, xt) = x.as_chunks_mut::<W>();
    // The sum in f64 lanes, as the portable kernel: four f32 lanes over a vocabulary-sized
    // row lose several bits.
    // SAFETY: register-only NEON operations.
    let sum = unsafe {
        let mv = splat(max);
        let (mut lo, mut hi) = (vdupq_n_f64(0.0), vdupq_n_f64(0.0));
        for v in xc.iter_mut() {
            let e = exp(vsubq_f32(load(v), mv));
            lo = vaddq_f64(lo, vcvt_f64_f32(vget_low_f32(e)));
            hi = vaddq_f64(hi, vcvt_high_f64_f32(e));
            store(v, e);
        }
        xt.iter_mut().for_each(|v| *v -= max);
        exp_tail(xt);
        vaddvq_f64(vaddq_f64(lo, hi)) + xt.iter().map(|&v| v as f64).sum::<f64>()
    };
    let inv = (1.0 / sum) as f32;
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        // SAFETY: register-only NEON operation.
        store(v, unsafe { vmulq_n_f32(load(v), inv) });
    }
    xt.iter_mut().for_each(|v| *v *= inv);
}

/// dst = src rounded to f16 (nearest even, the FPCR default, as `half`).
pub(crate) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let (sc, st) = src.as_chunks::<W>();
    let (dc, dt) = dst.as_chunks_mut::<W>();
    for (s, d) in sc.iter().zip(dc.iter_mut()) {
        let v = load(s);
        let h: uint16x4_t;
        // SAFETY: a register-only conversion (base AArch64 SIMD).
        unsafe {
            asm!(
                "fcvtn {h:v}.4h, {v:v}.4s",
                h = lateout(vreg) h,
                v = in(vreg) v,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        // SAFETY: `d` is 4 writable f16 = 8 bytes.
        unsafe { vst1_u16(d.as_mut_ptr().cast(), h) };
    }
    super::scalar::f32_to_f16(st, dt);
}

/// dst = src widened to f32 (exact).
pub(crate) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let (sc, st) = src.as_chunks::<W>();
    let (dc, dt) = dst.as_chunks_mut::<W>();
    for (s, d) in sc.iter().zip(dc.iter_mut()) {
        // SAFETY: `s` is 4 readable f16 = 8 bytes.
        let h = unsafe { vld1_u16(s.as_ptr().cast()) };
        let v: float32x4_t;
        // SAFETY: a register-only conversion (base AArch64 SIMD).
        unsafe {
            asm!(
                "fcvtl {v:v}.4s, {h:v}.4h",
                v = lateout(vreg) v,
                h = in(vreg) h,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        store(d, v);
    }
    super::scalar::f16_to_f32(st, dt);
}

/// The NEON table. Attention (`attend`, `attend_extras`, `score_extras`) and any entry added
/// later come from the portable table: its loops are auto-vectorised for NEON.
pub(crate) static KERNELS: super::Kernels = super::Kernels {
    rms_norm_row,
    rope_norm,
    rope_neox,
    silu_mul,
    softmax_row,
    f32_to_f16,
    f16_to_f32,
    ..super::scalar::KERNELS
};
