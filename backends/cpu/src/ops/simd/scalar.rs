//! Portable kernels: plain Rust, no intrinsics. The baseline on every machine (and what the
//! compiler auto-vectorises for the target's baseline, e.g. SSE2 or NEON).

use super::extras::{BlockObserver, NoObserver, RowExtras};
use super::{
    blocks, ggml_f16, ggml_query, AttnHead, OnlineSoftmax, ATTN_BLOCK, LOGITS_KEPT, MAX_ROUNDED_HD,
};
use half::f16;
use std::ops::Range;
use weft::KvElem;

/// out = x / sqrt(mean(x^2) + eps) * w for one row. The sum of squares is taken in f64, as
/// ggml does.
pub(crate) fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let scale = (1.0 / (sum / x.len() as f64 + eps as f64).sqrt()) as f32;
    for ((o, &v), &wv) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * wv;
    }
}

/// RoPE Norm style on one head: pairs (x[2i], x[2i+1]).
/// `cos`, `sin`: f32 [n_rot] as laid out by `ops::rope` (cos duplicated per pair, sin as
/// (-s, +s)), so x'[j] = x[j] * cos[j] + x[j ^ 1] * sin[j].
pub(crate) fn rope_norm(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    for ((pair, c), s) in head.chunks_exact_mut(2).zip(cos.chunks_exact(2)).zip(sin.chunks_exact(2))
    {
        let (x0, x1) = (pair[0], pair[1]);
        pair[0] = x0 * c[0] + x1 * s[0];
        pair[1] = x1 * c[1] + x0 * s[1];
    }
}

/// RoPE NeoX style on one head: pairs (x[i], x[i + n_rot/2]).
/// `cos`, `sin`: f32 [n_rot/2], the plain cos/sin of each pair's angle.
pub(crate) fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (lo, hi) = head.split_at_mut(half);
    for (((a, b), &c), &s) in lo.iter_mut().zip(&mut hi[..half]).zip(cos).zip(sin) {
        let (x0, x1) = (*a, *b);
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

/// gate = silu(gate) * up.
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// Softmax of one row, in place. The sum is taken in f64: a serial f32 sum over a
/// vocabulary-sized row loses several bits.
pub(crate) fn softmax_row(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// dst = src rounded to f16 (nearest even).
pub(crate) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f16::from_f32(s);
    }
}

/// dst = src widened to f32 (exact).
pub(crate) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// One (query row, head) of attention over `ranges`; writes f32 [head_dim] into `out`.
/// `T` is the KV element (f16 or f32), inferred from the head (a kernel table's `attend`
/// entry gets the f16 one, `attend_f32` the f32 one).
pub(crate) fn attend<T: KvElem>(h: &AttnHead<'_, T>, ranges: &[Range<usize>], out: &mut [f32]) {
    attend_obs::<T, _, true>(h, ranges, out, &mut NoObserver);
}

/// `attend`, reporting every block's logits to `obs`.
pub(crate) fn attend_extras<T: KvElem>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut RowExtras<'_>,
) -> OnlineSoftmax {
    attend_obs::<T, _, true>(h, ranges, out, obs)
}

/// `attend_extras` without the V pass: only the observer's outputs and the softmax state;
/// `out` is not touched (the scoring pass of selective attention).
pub(crate) fn score_extras<T: KvElem>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut RowExtras<'_>,
) -> OnlineSoftmax {
    attend_obs::<T, _, false>(h, ranges, out, obs)
}

/// Logits of keys `c .. c + n` into `s[..n]`; returns their max.
#[inline(always)]
fn block_logits<T: KvElem>(
    h: &AttnHead<'_, T>,
    c: usize,
    n: usize,
    s: &mut [f32; ATTN_BLOCK],
) -> f32 {
    let hd = h.q.len();
    let kb = h.block(h.k, c, n);
    let mut bmax = f32::NEG_INFINITY;
    for (j, sj) in s[..n].iter_mut().enumerate() {
        let kr = &kb[j * h.kv_row + h.kv_off..][..hd];
        let dot: f32 = h.q.iter().zip(kr).map(|(&a, &b)| a * b.to_f32()).sum();
        *sj = dot * h.scale;
        bmax = bmax.max(*sj);
    }
    bmax
}

/// The two passes of ggml's precision over an f16 cache (see `ggml_f16`): the max and
/// sum, then the V rows weighted by the normalised probabilities rounded to f16. With
/// `N` >= the visible keys the first pass's logits are kept (f32 [N] on the stack) for the
/// second; with `N` = 0 they are computed again (the same values).
#[inline(always)]
fn two_pass<T: KvElem, O: BlockObserver, const N: usize>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut O,
) -> OnlineSoftmax {
    let hd = h.q.len();
    let mut st = OnlineSoftmax::new();
    // f32 [ATTN_BLOCK]: the block's logits.
    let mut s = [0f32; ATTN_BLOCK];
    // f32 [N]: every visible key's logit, in visiting order.
    let mut kept = [0f32; N];
    let mut at = 0;
    for r in ranges {
        for (c, n) in blocks(r) {
            let bmax = block_logits(h, c, n, &mut s);
            if N > 0 {
                kept[at..at + n].copy_from_slice(&s[..n]);
                at += n;
            }
            let prev = st;
            st.update(bmax);
            obs.block(c, &s[..n], prev, st.max);
            for &sj in &s[..n] {
                st.sum += (sj - st.max).exp();
            }
        }
    }
    out.fill(0.0);
    let inv = 1.0 / st.sum;
    at = 0;
    for r in ranges {
        for (c, n) in blocks(r) {
            if N > 0 {
                s[..n].copy_from_slice(&kept[at..at + n]);
                at += n;
            } else {
                block_logits(h, c, n, &mut s);
            }
            let vb = h.block(h.v, c, n);
            for (j, &sj) in s[..n].iter().enumerate() {
                let p = f16::from_f32((sj - st.max).exp() * inv).to_f32();
                let vr = &vb[j * h.kv_row + h.kv_off..][..hd];
                for (o, &vv) in out.iter_mut().zip(vr) {
                    *o += p * vv.to_f32();
                }
            }
        }
    }
    st
}

#[inline(always)]
fn attend_obs<T: KvElem, O: BlockObserver, const V: bool>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut O,
) -> OnlineSoftmax {
    let mut qbuf = [0f32; MAX_ROUNDED_HD];
    let h = &ggml_query(h, &mut qbuf);
    let hd = h.q.len();
    let mut st = OnlineSoftmax::new();
    // f32 [ATTN_BLOCK]: the block's logits, then its probabilities (unnormalised).
    let mut s = [0f32; ATTN_BLOCK];
    if V && ggml_f16::<T>() {
        // Two passes (see `ggml_f16`), keeping the logits between them where they fit.
        let visible: usize = ranges.iter().map(|r| r.len()).sum();
        return match visible {
            0..=512 => two_pass::<T, O, 512>(h, ranges, out, obs),
            513..=LOGITS_KEPT => two_pass::<T, O, LOGITS_KEPT>(h, ranges, out, obs),
            _ => two_pass::<T, O, 0>(h, ranges, out, obs),
        };
    }
    if V {
        out.fill(0.0);
    }
    for r in ranges {
        for (c, n) in blocks(r) {
            let bmax = block_logits(h, c, n, &mut s);
            let prev = st;
            if let Some(f) = st.update(bmax) {
                if V {
                    out.iter_mut().for_each(|o| *o *= f);
                }
            }
            obs.block(c, &s[..n], prev, st.max);
            let vb = h.block(h.v, c, n);
            for (j, sj) in s[..n].iter_mut().enumerate() {
                let p = (*sj - st.max).exp();
                *sj = p;
                st.sum += p;
                if !V {
                    continue;
                }
                let vr = &vb[j * h.kv_row + h.kv_off..][..hd];
                for (o, &vv) in out.iter_mut().zip(vr) {
                    *o += p * vv.to_f32();
                }
            }
        }
    }
    if V {
        let inv = 1.0 / st.sum;
        out.iter_mut().for_each(|o| *o *= inv);
    }
    st
}

pub(crate) static KERNELS: super::Kernels = super::Kernels {
    rms_norm_row,
    rope_norm,
    rope_neox,
    silu_mul,
    softmax_row,
    f32_to_f16,
    f16_to_f32,
    attend,
    attend_extras,
    score_extras,
    attend_f32: attend,
    attend_extras_f32: attend_extras,
    score_extras_f32: score_extras,
};
