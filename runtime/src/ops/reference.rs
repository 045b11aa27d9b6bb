//! Scalar reference of each backend op: the definition backends are tested against.
//!
//! Written for clarity, with f64 accumulation wherever a sum is taken, so that its own rounding
//! error is far below any backend's. Semantics follow ggml (llama.cpp): RMS norm
//! `x / sqrt(mean(x^2) + eps) * w`; RoPE without YaRN; SiLU `x / (1 + e^-x)`; attention is the
//! full softmax over the visible keys of each row, materialised per row. Over an f16 cache,
//! attention rounds as ggml does (see [`ggml_f16`]).

use super::{
    check_broadcast, check_kv_store, check_rows, AttnExtras, AttnMask, AttnParams, OpsError,
    RopeParams, RopeStyle,
};
use crate::KvElem;

/// `out = x / sqrt(mean(x^2) + eps) * weight`, row by row; rows are `weight.len()` long.
/// x, out: f32 [n_rows, n_embd]; weight: f32 [n_embd].
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) -> Result<(), OpsError> {
    let n = weight.len();
    check_rows("rms_norm", x.len(), n, out.len())?;
    for (xr, or) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let sum: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let scale = 1.0 / (sum / n as f64 + eps as f64).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = (v as f64 * scale * w as f64) as f32;
        }
    }
    Ok(())
}

/// Rotates `x: f32 [n_tokens, n_head, head_dim]` in place; token t is at `positions[t]`.
pub fn rope(
    x: &mut [f32],
    n_head: usize,
    positions: &[i32],
    p: &RopeParams,
) -> Result<(), OpsError> {
    p.check(x.len(), n_head, positions.len())?;
    let half = p.n_rot / 2;
    for (tok, &pos) in x.chunks_exact_mut(n_head * p.head_dim).zip(positions) {
        for head in tok.chunks_exact_mut(p.head_dim) {
            for i in 0..half {
                let (sin, cos) = p.theta(pos, i).sin_cos();
                let (a, b) = match p.style {
                    RopeStyle::Norm => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (head[a] as f64, head[b] as f64);
                head[a] = (x0 * cos - x1 * sin) as f32;
                head[b] = (x0 * sin + x1 * cos) as f32;
            }
        }
    }
    Ok(())
}

/// `a += b`, where `b` is as long as `a` or one row broadcast over `a`'s rows (a bias).
pub fn add(a: &mut [f32], b: &[f32]) -> Result<(), OpsError> {
    check_broadcast("add", a.len(), b.len())?;
    for row in a.chunks_exact_mut(b.len()) {
        for (x, &y) in row.iter_mut().zip(b) {
            *x += y;
        }
    }
    Ok(())
}

/// SiLU (swish): `x / (1 + e^-x)`.
pub fn silu(x: f32) -> f32 {
    let x = x as f64;
    (x / (1.0 + (-x).exp())) as f32
}

/// `gate = silu(gate) * up`, elementwise (the SwiGLU feed-forward's combine step).
pub fn silu_mul(gate: &mut [f32], up: &[f32]) -> Result<(), OpsError> {
    if gate.len() != up.len() {
        return Err(OpsError::new(
            "silu_mul",
            format!("gate has {} values, up has {}", gate.len(), up.len()),
        ));
    }
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = *g as f64;
        *g = (x / (1.0 + (-x).exp()) * u as f64) as f32;
    }
    Ok(())
}

/// Softmax of each row of `x: f32 [n_rows, n_cols]`, in place.
pub fn softmax_rows(x: &mut [f32], n_cols: usize) -> Result<(), OpsError> {
    check_rows("softmax", x.len(), n_cols, x.len())?;
    for row in x.chunks_exact_mut(n_cols) {
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        for v in row.iter_mut() {
            *v = ((*v as f64 - max).exp() / sum) as f32;
        }
    }
    Ok(())
}

/// Stores `src: f32 [n_rows, row_len]` into cells `cell0..cell0 + n_rows` of
/// `cache: T [n_cells, row_len]` (f16: round to nearest even; f32: copied).
pub fn kv_store<T: KvElem>(
    cache: &mut [T],
    cell0: usize,
    row_len: usize,
    src: &[f32],
) -> Result<(), OpsError> {
    let n_rows = check_kv_store(cache.len(), cell0, row_len, src.len())?;
    let dst = &mut cache[cell0 * row_len..(cell0 + n_rows) * row_len];
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = T::from_f32(s);
    }
    Ok(())
}

/// ggml's precision over an f16 KV cache: its attention multiplies the f16 keys with the
/// query converted to f16 (a `mul_mat`'s f32 operand is converted to the f16 operand's dot
/// type), and the f16 values with the normalised probabilities converted to f16 the same
/// way. The reference and the backends follow it, so that weft's attention output stays
/// within f32 rounding of llama.cpp's (the next matmul quantizes it to 8 bits, which turns
/// 1e-3 differences into different codes). An f32 cache is exact.
pub fn ggml_f16<T: KvElem>() -> bool {
    std::mem::size_of::<T>() == 2
}

/// `x` rounded as [`ggml_f16`] says for cache element `T` (to f16 and back, or unchanged).
fn kv_round<T: KvElem>(x: f64) -> f64 {
    if ggml_f16::<T>() {
        half::f16::from_f64(x).to_f64()
    } else {
        x
    }
}

/// `out = softmax(scale * q . k over the visible cells) . v`, each row's probabilities
/// materialised and every sum taken in f64 (rounded as [`ggml_f16`] says over an f16 cache).
///
/// q: f32 [n_q, n_head, head_dim]; k, v: T (f16 or f32) [n_cells, n_head_kv, head_dim];
/// out: f32 [n_q, n_head * head_dim].
pub fn attention<T: KvElem>(
    q: &[f32],
    k: &[T],
    v: &[T],
    p: &AttnParams,
    mask: &AttnMask<'_>,
    out: &mut [f32],
) -> Result<(), OpsError> {
    let (n_q, n_cells) = p.check(q.len(), k.len(), v.len(), out.len(), mask)?;
    let hd = p.head_dim;
    let kv_row = p.n_head_kv * hd;
    // f64 [n_cells] logits of one (row, head); only visible cells are written and read.
    let mut logits = vec![0f64; n_cells];
    let mut acc = vec![0f64; hd];
    for i in 0..n_q {
        for h in 0..p.n_head {
            let ranges = mask.row_head(i, h);
            let qh = &q[(i * p.n_head + h) * hd..][..hd];
            let kvo = p.kv_head(h) * hd;
            let mut max = f64::NEG_INFINITY;
            for c in ranges.iter().flat_map(|r| r.clone()) {
                let kc = &k[c * kv_row + kvo..][..hd];
                let dot: f64 =
                    qh.iter().zip(kc).map(|(&a, &b)| kv_round::<T>(a as f64) * b.to_f64()).sum();
                logits[c] = dot * p.scale as f64;
                max = max.max(logits[c]);
            }
            let sum: f64 =
                ranges.iter().flat_map(|r| r.clone()).map(|c| (logits[c] - max).exp()).sum();
            acc.fill(0.0);
            for c in ranges.iter().flat_map(|r| r.clone()) {
                let w = kv_round::<T>((logits[c] - max).exp() / sum);
                for (a, &vv) in acc.iter_mut().zip(&v[c * kv_row + kvo..][..hd]) {
                    *a += w * vv.to_f64();
                }
            }
            for (o, &a) in out[(i * p.n_head + h) * hd..][..hd].iter_mut().zip(&acc) {
                *o = a as f32;
            }
        }
    }
    Ok(())
}

/// [`attention`] plus its optional outputs, from each row's materialised probabilities
/// (f64): group scores = sum of the 5 largest probabilities over each piece's visible keys,
/// entropy = `-sum p ln p`, mean |logit| over the visible keys. With `ape`, the keys inside
/// its ranges form a block whose logits are divided by T and whose log-sum-exp is scaled by
/// S*T; the probabilities are those of the two blocks combined. With `scores_only`, `out`
/// is left as it was.
pub fn attention_extras<T: KvElem>(
    q: &[f32],
    k: &[T],
    v: &[T],
    p: &AttnParams,
    mask: &AttnMask<'_>,
    extras: &mut AttnExtras<'_>,
    out: &mut [f32],
) -> Result<(), OpsError> {
    let (n_q, n_cells) = p.check(q.len(), k.len(), v.len(), out.len(), mask)?;
    extras.check(n_q, p.n_head, n_cells)?;
    let hd = p.head_dim;
    let kv_row = p.n_head_kv * hd;
    let n_pieces = extras.n_pieces();
    let ape = extras.ape;
    // bool [n_cells]: whether a cell is in APE's piece block.
    let mut in_ape = vec![false; n_cells];
    if let Some((ranges, _)) = ape {
        ranges.iter().flat_map(|r| r.clone()).for_each(|c| in_ape[c] = true);
    }
    // f64 [n_cells]: raw logits of one (row, head); NaN = not visible.
    let mut raw = vec![f64::NAN; n_cells];
    // f64 [n_cells]: probabilities of one (row, head); NaN = not visible.
    let mut prob = vec![f64::NAN; n_cells];
    let mut acc = vec![0f64; hd];
    for i in 0..n_q {
        for h in 0..p.n_head {
            let ranges = mask.row_head(i, h);
            let item = i * p.n_head + h;
            raw.fill(f64::NAN);
            prob.fill(f64::NAN);
            let qh = &q[item * hd..][..hd];
            let kvo = p.kv_head(h) * hd;
            let cells = || ranges.iter().flat_map(|r| r.clone());
            for c in cells() {
                let kc = &k[c * kv_row + kvo..][..hd];
                let dot: f64 =
                    qh.iter().zip(kc).map(|(&a, &b)| kv_round::<T>(a as f64) * b.to_f64()).sum();
                raw[c] = dot * p.scale as f64;
            }
            let n_vis = cells().count() as f64;
            if let Some(m) = &mut extras.mean_abs_logit {
                m[item] = (cells().map(|c| raw[c].abs()).sum::<f64>() / n_vis) as f32;
            }
            // Per block (0: other keys, 1: APE pieces): logits, lse, then probabilities.
            let t = ape.map_or(1.0, |(_, a)| a.temperature as f64);
            let st = ape.map_or(1.0, |(_, a)| (a.scale * a.temperature) as f64);
            let logit = |c: usize| if in_ape[c] { raw[c] / t } else { raw[c] };
            let mut lse = [f64::NEG_INFINITY; 2];
            for (b, l) in lse.iter_mut().enumerate() {
                let in_b = |c: &usize| in_ape[*c] == (b == 1);
                let max = cells().filter(in_b).map(logit).fold(f64::NEG_INFINITY, f64::max);
                if max > f64::NEG_INFINITY {
                    *l = max
                        + cells().filter(in_b).map(|c| (logit(c) - max).exp()).sum::<f64>().ln();
                }
            }
            // Block weights: exp(lse_other) against exp(S*T*lse_pieces), normalised.
            let a = [lse[0], lse[1] * st];
            let m = a[0].max(a[1]);
            let w = [(a[0] - m).exp(), (a[1] - m).exp()];
            let wsum = w[0] + w[1];
            for c in cells() {
                let b = usize::from(in_ape[c]);
                prob[c] = w[b] / wsum * (logit(c) - lse[b]).exp();
            }
            if !extras.scores_only {
                acc.fill(0.0);
                for c in cells() {
                    // Each block's own normalised probabilities are what get rounded.
                    let b = usize::from(in_ape[c]);
                    let pc = w[b] / wsum * kv_round::<T>((logit(c) - lse[b]).exp());
                    for (a, &vv) in acc.iter_mut().zip(&v[c * kv_row + kvo..][..hd]) {
                        *a += pc * vv.to_f64();
                    }
                }
                for (o, &a) in out[item * hd..][..hd].iter_mut().zip(&acc) {
                    *o = a as f32;
                }
            }
            if let Some(e) = &mut extras.entropy {
                let ent: f64 =
                    cells().map(|c| prob[c]).filter(|&p| p > 0.0).map(|p| -p * p.ln()).sum();
                e[item] = ent as f32;
            }
            if let Some((pieces, scores)) = &mut extras.group_scores {
                for (m, r) in pieces.iter().enumerate() {
                    let mut ps: Vec<f64> =
                        r.clone().map(|c| prob[c]).filter(|p| !p.is_nan()).collect();
                    ps.sort_by(|a, b| b.total_cmp(a));
                    scores[item * n_pieces + m] =
                        ps.iter().take(crate::selection::SCORE_TOPK).sum::<f64>() as f32;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
// One-range masks are ordinary inputs here, not a mistaken `vec![a..b]`.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn rms_norm_hand_example() {
        // mean(x^2) = (9 + 16) / 2 = 12.5
        let mut out = [0.0; 4];
        rms_norm(&[3.0, 4.0, 0.0, 2.0], &[1.0, 2.0], 0.0, &mut out).unwrap();
        let s = 1.0 / 12.5f32.sqrt();
        assert!((out[0] - 3.0 * s).abs() < 1e-6 && (out[1] - 8.0 * s).abs() < 1e-6);
        assert!((out[2]).abs() < 1e-6 && (out[3] - 2.0 / 2.0f32.sqrt() * 2.0).abs() < 1e-6);
        assert!(rms_norm(&[1.0; 5], &[1.0; 2], 0.0, &mut [0.0; 5]).is_err());
    }

    #[test]
    fn rope_quarter_turn() {
        // n_rot 4, base 1: every pair turns by theta = pos.
        let pi2 = std::f32::consts::FRAC_PI_2;
        let p = RopeParams {
            style: RopeStyle::Norm,
            head_dim: 6,
            n_rot: 4,
            freq_base: 1.0,
            freq_scale: pi2,
            freq_factors: None,
        };
        let mut x = [1.0, 0.0, 0.0, 1.0, 7.0, 8.0];
        rope(&mut x, 1, &[1], &p).unwrap();
        let want = [0.0, 1.0, -1.0, 0.0, 7.0, 8.0];
        assert!(x.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{x:?}");
        // NeoX pairs (0, 2) and (1, 3).
        let p = RopeParams { style: RopeStyle::Neox, ..p };
        let mut x = [1.0, 0.0, 0.0, 1.0, 7.0, 8.0];
        rope(&mut x, 1, &[1], &p).unwrap();
        let want = [0.0, -1.0, 1.0, 0.0, 7.0, 8.0];
        assert!(x.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{x:?}");
    }

    #[test]
    fn softmax_and_silu() {
        let mut x = [0.0, 2f32.ln(), 1000.0, 1000.0];
        softmax_rows(&mut x, 2).unwrap();
        assert!((x[0] - 1.0 / 3.0).abs() < 1e-7 && (x[1] - 2.0 / 3.0).abs() < 1e-7);
        assert_eq!(&x[2..], &[0.5, 0.5]);
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        let mut g = [1.0, -100.0];
        silu_mul(&mut g, &[2.0, 1.0]).unwrap();
        assert!((g[0] - 1.462_117_2).abs() < 1e-6 && g[1].abs() < 1e-40);
    }

    #[test]
    fn attention_two_cells() {
        // One head, head_dim 1: logits 0 and ln 3 -> p = (1/4, 3/4).
        let p = AttnParams { n_head: 2, n_head_kv: 1, head_dim: 1, scale: 3f32.ln() };
        let q = [1.0, 0.0]; // head 0 sees logits (0, ln 3); head 1 sees (0, 0)
        let k = [f16::from_f32(0.0), f16::from_f32(1.0)];
        let v = [f16::from_f32(4.0), f16::from_f32(8.0)];
        let mut out = [0.0; 2];
        let m = AttnMask::Causal { n_past: 1 };
        attention(&q, &k, &v, &p, &m, &mut out).unwrap();
        assert!((out[0] - 7.0).abs() < 1e-6 && (out[1] - 6.0).abs() < 1e-6, "{out:?}");
        let offsets = [0, 1];
        let ranges = [1..2];
        let m = AttnMask::Ranges { offsets: &offsets, ranges: &ranges };
        attention(&q, &k, &v, &p, &m, &mut out).unwrap();
        assert_eq!(out, [8.0, 8.0]);
        let m = AttnMask::Causal { n_past: 2 };
        assert!(attention(&q, &k, &v, &p, &m, &mut out).is_err());
    }

    #[test]
    fn kv_store_rounds() {
        let mut cache = [f16::ZERO; 6];
        kv_store(&mut cache, 1, 2, &[1.0, 0.1, -2.5, 65504.0]).unwrap();
        assert_eq!(
            cache[2..],
            [f16::from_f32(1.0), f16::from_f32(0.1), f16::from_f32(-2.5), f16::MAX]
        );
        assert_eq!(cache[..2], [f16::ZERO; 2]);
        assert!(kv_store(&mut cache, 2, 2, &[0.0; 4]).is_err());
    }
}
