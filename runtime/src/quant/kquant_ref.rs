//! Reference quantizers for the K-quants (ggml's `quantize_row_q{2..6}_K_ref`, the variant
//! without importance weights), so tests and tools can make K-quant data.
//!
//! Each searches per sub-block for a scale (and min) that minimises a weighted error, then
//! quantizes the sub-block scales themselves to 4/6/8 bits under one f16 super-block scale,
//! and finally requantizes the weights with the rounded scales. Every f32 operation is done in
//! the order ggml's C source writes it, without fused multiply-adds (ggml built with
//! `-ffp-contract=off`); a ggml build that contracts `a * b + c` into FMAs can differ in
//! the last bit of a search score and so, rarely, pick a different scale.

use super::blocks::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use super::k2_3::q3_k_scales;
use super::k4_5::{pack_scale_min_k4, scale_min_k4};
use super::nearest_int;
use crate::ggml_type::QK_K;
use half::f16;

/// ggml's `GROUP_MAX_EPS`: sub-blocks with max |x| below this are treated as all zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// Symmetric `nmax`-level search (ggml's `make_qx_quants` with `rmse_type = 1`, no importance
/// weights): weights `x^2`, scales `-(nmax + 0.1 k) / max` for k in -9..=9. Writes
/// `L[i] = q + nmax` (0..2 nmax) and returns the scale.
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (amax, max) = abs_max_signed(x);
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let mut iscale = -(nmax as f32) / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (li, &v) in l_out.iter_mut().zip(x) {
        let l = quant(iscale, v);
        *li = (l + nmax) as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&k| k != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l_out.iter_mut().zip(x) {
                *li = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric search for Q3_K (ggml's `make_q3_quants` with `do_rmse`): start from
/// `-nmax / max`, then up to 5 passes of coordinate descent on each `L[i]`. Writes
/// `L[i] = q + nmax` and returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (amax, max) = abs_max_signed(x);
    if amax < GROUP_MAX_EPS {
        l_out.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for (li, &v) in l_out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *li = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (li, &v) in l_out.iter_mut().zip(x) {
            let w = v * v;
            let old = f32::from(*li);
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(*li) {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for li in l_out.iter_mut() {
        *li += nmax as i8;
    }
    sumlx / suml2
}

/// Parameters of ggml's `make_qkx2_quants` grid search over the inverse scale.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    /// Minimise weighted |error| instead of weighted error^2.
    use_mad: bool,
}

/// Asymmetric (scale + min) search, ggml's `make_qkx2_quants`: tries inverse scales
/// `(rmin + rdelta * k + nmax) / (max - min)` for k in 0..=nstep, each followed by a weighted
/// least-squares fit of scale and min. Writes `L[i]` in 0..=nmax; returns (scale, -min), the
/// min being <= 0.
fn make_qkx2_quants(p: &Qkx2, x: &[f32], weights: &[f32], l_out: &mut [u8]) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.fill(0);
        return (0.0, -min);
    }
    let nmax = p.nmax as f32;
    let err = |diff: f32| if p.use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, p.nmax);
        l_out[i] = l as u8;
        best_mad += weights[i] * err(scale * l as f32 + min - x[i]);
    }
    if p.nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + nmax) / (max - min);
        let mut sum_l = 0.0f32;
        let mut sum_l2 = 0.0f32;
        let mut sum_xl = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, p.nmax);
            laux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                mad += weights[i] * err(this_scale * f32::from(laux[i]) + this_min - x[i]);
            }
            if mad < best_mad {
                l_out.copy_from_slice(&laux[..n]);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// (max |x|, the element that has it), first one on ties.
fn abs_max_signed(x: &[f32]) -> (f32, f32) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// Packs 2-bit values (Q2_K/Q3_K `qs` layout, see k2_3.rs).
fn pack2(l: &[u8; QK_K]) -> [u8; QK_K / 4] {
    let mut qs = [0u8; QK_K / 4];
    for j in (0..QK_K).step_by(128) {
        for i in 0..32 {
            let b = j + i;
            qs[j / 4 + i] = l[b] | (l[b + 32] << 2) | (l[b + 64] << 4) | (l[b + 96] << 6);
        }
    }
    qs
}

/// Quantize to Q2_K as `quantize_row_q2_K_ref` (`x.len() == y.len() * 256`; panics otherwise).
pub fn quantize_row_q2_k(x: &[f32], y: &mut [BlockQ2K]) {
    assert_eq!(x.len(), y.len() * QK_K, "quantize_row_q2_k: length mismatch");
    const Q4SCALE: f32 = 15.0;
    let search = Qkx2 { nmax: 3, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: true };
    for (xb, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_min = 0.0f32;
        for j in 0..QK_K / 16 {
            let xs = &xb[16 * j..16 * j + 16];
            let mut weights = [0.0f32; 16];
            for (w, v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            (scales[j], mins[j]) =
                make_qkx2_quants(&search, xs, &weights, &mut l[16 * j..16 * j + 16]);
            if scales[j] > max_scale {
                max_scale = scales[j];
            }
            if mins[j] > max_min {
                max_min = mins[j];
            }
        }
        out.scales = [0; QK_K / 16];
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..QK_K / 16 {
                out.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            out.d = f16::from_f32(max_scale / Q4SCALE);
        } else {
            out.d = f16::ZERO;
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..QK_K / 16 {
                out.scales[j] |= (nearest_int(iscale * mins[j]) << 4) as u8;
            }
            out.dmin = f16::from_f32(max_min / Q4SCALE);
        } else {
            out.dmin = f16::ZERO;
        }
        for j in 0..QK_K / 16 {
            let d = out.d.to_f32() * f32::from(out.scales[j] & 0x0f);
            if d == 0.0 {
                continue;
            }
            let dm = out.dmin.to_f32() * f32::from(out.scales[j] >> 4);
            for i in 16 * j..16 * j + 16 {
                l[i] = nearest_int((xb[i] + dm) / d).clamp(0, 3) as u8;
            }
        }
        out.qs = pack2(&l);
    }
}

/// Quantize to Q3_K as `quantize_row_q3_K_ref` (`x.len() == y.len() * 256`; panics otherwise).
pub fn quantize_row_q3_k(x: &[f32], y: &mut [BlockQ3K]) {
    assert_eq!(x.len(), y.len() * QK_K, "quantize_row_q3_k: length mismatch");
    for (xb, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut amax = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_q3_quants(4, &xb[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        out.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..QK_K / 16 {
                let ls = ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    out.scales[j] = ls & 0x0f;
                } else {
                    out.scales[j - 8] |= (ls & 0x0f) << 4;
                }
                out.scales[j % 4 + 8] |= (ls >> 4) << (2 * (j / 4));
            }
            out.d = f16::from_f32(1.0 / iscale);
        } else {
            out.d = f16::ZERO;
        }
        let sc = q3_k_scales(&out.scales);
        for j in 0..QK_K / 16 {
            let d = out.d.to_f32() * f32::from(sc[j]);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(xb[i] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        // Bit 2 goes to hmask (bit e / 32 of byte e % 32); the low 2 bits to qs.
        out.hmask = [0; QK_K / 8];
        let mut low = [0u8; QK_K];
        for (e, (&le, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
            let mut v = le as u8;
            if v > 3 {
                out.hmask[e % 32] |= 1 << (e / 32);
                v -= 4;
            }
            *lo = v;
        }
        out.qs = pack2(&low);
    }
}

/// Shared by Q4_K and Q5_K: per 32-element sub-block (scale, min) search with weights
/// `rms(x) + |x_i|`, 6-bit quantization of scales and mins, then the final levels in
/// 0..=nmax. Returns (d, dmin, packed scales, levels).
fn quantize_k4_5(xb: &[f32], search: &Qkx2) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 32];
    let mut mins = [0.0f32; QK_K / 32];
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        let xs = &xb[32 * j..32 * j + 32];
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0.0f32; 32];
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        (scales[j], mins[j]) = make_qkx2_quants(search, xs, &weights, &mut l[32 * j..32 * j + 32]);
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..QK_K / 32 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for j in 0..QK_K / 32 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = d.to_f32() * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((xb[i] + dm) / dj).clamp(0, search.nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// Quantize to Q4_K as `quantize_row_q4_K_ref` (`x.len() == y.len() * 256`; panics otherwise).
pub fn quantize_row_q4_k(x: &[f32], y: &mut [BlockQ4K]) {
    assert_eq!(x.len(), y.len() * QK_K, "quantize_row_q4_k: length mismatch");
    let search = Qkx2 { nmax: 15, rmin: -1.0, rdelta: 0.1, nstep: 20, use_mad: false };
    for (xb, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, dmin, scales, l) = quantize_k4_5(xb, &search);
        (out.d, out.dmin, out.scales) = (d, dmin, scales);
        for c in 0..QK_K / 64 {
            for i in 0..32 {
                out.qs[32 * c + i] = l[64 * c + i] | (l[64 * c + 32 + i] << 4);
            }
        }
    }
}

/// Quantize to Q5_K as `quantize_row_q5_K_ref` (`x.len() == y.len() * 256`; panics otherwise).
pub fn quantize_row_q5_k(x: &[f32], y: &mut [BlockQ5K]) {
    assert_eq!(x.len(), y.len() * QK_K, "quantize_row_q5_k: length mismatch");
    let search = Qkx2 { nmax: 31, rmin: -0.5, rdelta: 0.1, nstep: 15, use_mad: false };
    for (xb, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let (d, dmin, scales, l) = quantize_k4_5(xb, &search);
        (out.d, out.dmin, out.scales) = (d, dmin, scales);
        out.qh = [0; QK_K / 8];
        for c in 0..QK_K / 64 {
            for i in 0..32 {
                let (lo, hi) = (l[64 * c + i], l[64 * c + 32 + i]);
                out.qh[i] |= ((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1));
                out.qs[32 * c + i] = (lo & 0x0f) | ((hi & 0x0f) << 4);
            }
        }
    }
}

/// Quantize to Q6_K as `quantize_row_q6_K_ref` (`x.len() == y.len() * 256`; panics otherwise).
pub fn quantize_row_q6_k(x: &[f32], y: &mut [BlockQ6K]) {
    assert_eq!(x.len(), y.len() * QK_K, "quantize_row_q6_k: length mismatch");
    for (xb, out) in x.chunks_exact(QK_K).zip(y.iter_mut()) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut max_scale = 0.0f32;
        let mut max_abs_scale = 0.0f32;
        for j in 0..QK_K / 16 {
            scales[j] = make_qx_quants(32, &xb[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > max_abs_scale {
                max_abs_scale = scales[j].abs();
                max_scale = scales[j];
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *out = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        out.d = f16::from_f32(1.0 / iscale);
        for j in 0..QK_K / 16 {
            out.scales[j] = nearest_int(iscale * scales[j]).min(127) as i8;
        }
        for j in 0..QK_K / 16 {
            let d = out.d.to_f32() * f32::from(out.scales[j]);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(xb[i] / d).clamp(-32, 31) + 32) as i8;
            }
        }
        // Layout: see k6.rs. Levels are 0..=63 here.
        for n in 0..QK_K / 128 {
            for i in 0..32 {
                let q = |k: usize| l[128 * n + 32 * k + i] as u8;
                out.ql[64 * n + i] = (q(0) & 0x0f) | ((q(2) & 0x0f) << 4);
                out.ql[64 * n + 32 + i] = (q(1) & 0x0f) | ((q(3) & 0x0f) << 4);
                out.qh[32 * n + i] =
                    (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
            }
        }
    }
}
