//! Attention over the f16 or f32 KV cache with a causal or ranges mask (flash-style: no
//! [n_q, n_cells] probability matrix; see `simd::OnlineSoftmax` for the per-row loop).

use super::shape_err;
use super::simd::extras::RowExtras;
use super::simd::{AttnElem, AttnFns, AttnHead, Kernels};
use crate::{Cpu, CpuError};
use half::f16;
use rayon::prelude::*;
use std::ops::Range;
use weft::kv_type::KvSlice;
use weft::ops::{ApeParams, AttnExtras, AttnMask, AttnParams};
use weft::selection::SCORE_TOPK;
use weft::KvElem;

impl Cpu {
    /// `out = softmax(scale * q . k over the visible cells) . v` for each query row and head;
    /// query head h reads KV head h / (n_head / n_head_kv).
    ///
    /// q: f32 [n_q, n_head, head_dim]; k, v: T (f16 or f32) [n_cells, n_head_kv, head_dim];
    /// out: f32 [n_q, n_head * head_dim]. The mask must give every row at least one cell.
    ///
    /// Work items are (query row, head) pairs, each computed alone over its visible ranges in
    /// a fixed order with stack temporaries only (an f32 [ATTN_BLOCK] score block; the
    /// output row is the accumulator).
    pub fn attention<T: KvElem>(
        &self,
        q: &[f32],
        k: &[T],
        v: &[T],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        match (T::as_kv_slice(k), T::as_kv_slice(v)) {
            (KvSlice::F16(k), KvSlice::F16(v)) => {
                self.attention_typed::<f16>(q, k, v, p, mask, out)
            }
            (KvSlice::F32(k), KvSlice::F32(v)) => {
                self.attention_typed::<f32>(q, k, v, p, mask, out)
            }
            _ => Err(mixed_types()),
        }
    }

    /// [`Cpu::attention`] for one element type.
    fn attention_typed<T: AttnElem>(
        &self,
        q: &[f32],
        k: &[T],
        v: &[T],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        let (n_q, _n_cells) =
            p.check(q.len(), k.len(), v.len(), out.len(), mask).map_err(shape_err)?;
        let hd = p.head_dim;
        let attend = T::attn_fns(Kernels::for_cpu(self)).attend;
        let visible: usize = (0..n_q).map(|i| mask.visible(i)).sum();
        let work = visible.saturating_mul(p.n_head * hd * 2);
        self.for_each_chunk(out, hd, work, |idx, o| {
            let (i, h) = (idx / p.n_head, idx % p.n_head);
            let head = AttnHead {
                q: &q[idx * hd..][..hd],
                k,
                v,
                kv_row: p.n_head_kv * hd,
                kv_off: p.kv_head(h) * hd,
                scale: p.scale,
            };
            attend(&head, &mask.row_head(i, h), o);
        });
        Ok(())
    }

    /// [`Cpu::attention`] plus the optional outputs requested in `extras` (group scores,
    /// entropy, mean |logit|), computed in the same block loop from the logits and each
    /// row's log-sum-exp; with `extras.scores_only` V is never read and `out` is left as it
    /// was (selection's scoring pass); with `extras.ape` the piece keys form a block of their
    /// own, rescaled per APE and combined with the rest. With nothing requested this is
    /// exactly `attention`.
    ///
    /// Allocates once per call: the packed per-(row, head) results, f32 [n_q * n_head,
    /// n_pieces + 2], and per worker a [`Scratch`].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_ext<T: KvElem>(
        &self,
        q: &[f32],
        k: &[T],
        v: &[T],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        extras: &mut AttnExtras<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        match (T::as_kv_slice(k), T::as_kv_slice(v)) {
            (KvSlice::F16(k), KvSlice::F16(v)) => {
                self.attention_ext_typed::<f16>(q, k, v, p, mask, extras, out)
            }
            (KvSlice::F32(k), KvSlice::F32(v)) => {
                self.attention_ext_typed::<f32>(q, k, v, p, mask, extras, out)
            }
            _ => Err(mixed_types()),
        }
    }

    /// [`Cpu::attention_ext`] for one element type.
    #[allow(clippy::too_many_arguments)]
    fn attention_ext_typed<T: AttnElem>(
        &self,
        q: &[f32],
        k: &[T],
        v: &[T],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        extras: &mut AttnExtras<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        if extras.is_plain() {
            return self.attention_typed(q, k, v, p, mask, out);
        }
        let (n_q, n_cells) =
            p.check(q.len(), k.len(), v.len(), out.len(), mask).map_err(shape_err)?;
        extras.check(n_q, p.n_head, n_cells).map_err(shape_err)?;
        if extras.scores_only && extras.is_empty() {
            return Ok(());
        }
        let hd = p.head_dim;
        let kern = T::attn_fns(Kernels::for_cpu(self));
        let pieces: &[Range<usize>] = extras.group_scores.as_ref().map_or(&[], |g| g.0);
        let n_pieces = pieces.len();
        let want = Want {
            entropy: extras.entropy.is_some(),
            abs_logit: extras.mean_abs_logit.is_some(),
            output: !extras.scores_only,
        };
        let ape = extras.ape;
        // f32 [n_q * n_head, n_pieces + 2]: scores, entropy, mean |logit| of each item.
        let stride = n_pieces + 2;
        let mut packed = vec![0f32; n_q * p.n_head * stride];
        let item = |idx: usize, o: &mut [f32], res: &mut [f32], sc: &mut Scratch| {
            let (i, h) = (idx / p.n_head, idx % p.n_head);
            let head = AttnHead {
                q: &q[idx * hd..][..hd],
                k,
                v,
                kv_row: p.n_head_kv * hd,
                kv_off: p.kv_head(h) * hd,
                scale: p.scale,
            };
            let ranges = mask.row_head(i, h);
            match ape {
                None => row_plain(&kern, &head, &ranges, pieces, want, o, res, sc),
                Some((ape_ranges, a)) => {
                    row_ape(&kern, &head, &ranges, pieces, ape_ranges, a, want, o, res, sc)
                }
            }
        };
        let visible: usize = (0..n_q).map(|i| mask.visible(i)).sum();
        let work = visible.saturating_mul(p.n_head * hd * 2);
        let new_scratch = || Scratch::new(n_pieces, hd);
        let n_items = n_q * p.n_head;
        if self.threads() <= 1 || n_items <= 1 || work < super::PAR_MIN_WORK {
            let mut sc = new_scratch();
            for (idx, (o, res)) in out.chunks_mut(hd).zip(packed.chunks_mut(stride)).enumerate() {
                item(idx, o, res, &mut sc);
            }
        } else {
            // Items are independent and each is computed alone in a fixed order: any split
            // over threads gives bit-identical results.
            let min_len = (n_items / (self.threads() * 8)).max(1);
            self.pool().install(|| {
                out.par_chunks_mut(hd)
                    .zip(packed.par_chunks_mut(stride))
                    .enumerate()
                    .with_min_len(min_len)
                    .for_each_init(new_scratch, |sc, (idx, (o, res))| item(idx, o, res, sc))
            });
        }
        for (idx, res) in packed.chunks(stride).enumerate() {
            if let Some((_, scores)) = &mut extras.group_scores {
                scores[idx * n_pieces..][..n_pieces].copy_from_slice(&res[..n_pieces]);
            }
            if let Some(e) = &mut extras.entropy {
                e[idx] = res[n_pieces];
            }
            if let Some(a) = &mut extras.mean_abs_logit {
                a[idx] = res[n_pieces + 1];
            }
        }
        Ok(())
    }
}

/// K and V of different element types (a generic caller cannot produce them; the error
/// keeps the dispatch total).
fn mixed_types() -> CpuError {
    CpuError::Shape { op: "attention", detail: "k and v have different element types".into() }
}

/// Which outputs an item computes.
#[derive(Clone, Copy)]
struct Want {
    entropy: bool,
    abs_logit: bool,
    /// the attention output itself (false: scoring pass)
    output: bool,
}

/// Per-worker temporaries of [`Cpu::attention_ext`].
struct Scratch {
    /// f32 [n_pieces][SCORE_TOPK]: top logits per piece of the current item
    top: Vec<[f32; SCORE_TOPK]>,
    /// an empty top list for the non-piece block of an APE row
    none: Vec<[f32; SCORE_TOPK]>,
    /// APE: the row's visible ranges inside / outside the piece block
    in_ranges: Vec<Range<usize>>,
    out_ranges: Vec<Range<usize>>,
    /// f32 [head_dim]: the piece block's output of an APE row
    o_pieces: Vec<f32>,
}

impl Scratch {
    fn new(n_pieces: usize, head_dim: usize) -> Self {
        Scratch {
            top: vec![[f32::NEG_INFINITY; SCORE_TOPK]; n_pieces],
            none: Vec::new(),
            in_ranges: Vec::new(),
            out_ranges: Vec::new(),
            o_pieces: vec![0.0; head_dim],
        }
    }
}

/// One (row, head) without APE: results into `res` = [scores.., entropy, mean |logit|].
#[allow(clippy::too_many_arguments)]
fn row_plain<T: AttnElem>(
    kern: &AttnFns<T>,
    head: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    pieces: &[Range<usize>],
    want: Want,
    o: &mut [f32],
    res: &mut [f32],
    sc: &mut Scratch,
) {
    let n_pieces = pieces.len();
    let mut obs = RowExtras::new(pieces, &mut sc.top, want.entropy, want.abs_logit);
    let f = if want.output { kern.attend_extras } else { kern.score_extras };
    let st = f(head, ranges, o, &mut obs);
    let (scores, rest) = res.split_at_mut(n_pieces);
    let (ent, abs) = rest.split_at_mut(1);
    obs.finish(&st, scores, &mut ent[0], &mut abs[0]);
}

/// One (row, head) with APE: the visible keys inside `ape_ranges` are attended with logits
/// divided by T, the others normally; the blocks are combined with weights
/// `exp(S*T*lse_pieces)` and `exp(lse_other)`. Entropy of the mixture:
/// `H = w_p H_p + w_o H_o - w_p ln w_p - w_o ln w_o`.
#[allow(clippy::too_many_arguments)]
fn row_ape<T: AttnElem>(
    kern: &AttnFns<T>,
    head: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    pieces: &[Range<usize>],
    ape_ranges: &[Range<usize>],
    a: ApeParams,
    want: Want,
    o: &mut [f32],
    res: &mut [f32],
    sc: &mut Scratch,
) {
    split_ranges(ranges, ape_ranges, &mut sc.in_ranges, &mut sc.out_ranges);
    if sc.in_ranges.is_empty() || sc.out_ranges.is_empty() {
        // One block only: its own softmax, APE changes nothing but the temperature.
        let t = if sc.in_ranges.is_empty() { 1.0 } else { a.temperature };
        let h = AttnHead { scale: head.scale / t, ..*head };
        return row_plain(kern, &h, ranges, pieces, want, o, res, sc);
    }
    let n_pieces = pieces.len();
    let f = if want.output { kern.attend_extras } else { kern.score_extras };
    let hp = AttnHead { scale: head.scale / a.temperature, ..*head };
    let mut obs_p = RowExtras::new(pieces, &mut sc.top, want.entropy, want.abs_logit);
    let st_p = f(&hp, &sc.in_ranges, &mut sc.o_pieces, &mut obs_p);
    let mut obs_o = RowExtras::new(&[], &mut sc.none, want.entropy, want.abs_logit);
    let st_o = f(head, &sc.out_ranges, o, &mut obs_o);
    let lp = RowExtras::lse(&st_p) * (a.scale * a.temperature) as f64;
    let lo = RowExtras::lse(&st_o);
    let m = lp.max(lo);
    let (ep, eo) = ((lp - m).exp(), (lo - m).exp());
    let (wp, wo) = (ep / (ep + eo), eo / (ep + eo));
    if want.output {
        for (x, &y) in o.iter_mut().zip(&sc.o_pieces) {
            *x = (wo * *x as f64 + wp * y as f64) as f32;
        }
    }
    let (scores, rest) = res.split_at_mut(n_pieces);
    obs_p.scores(&st_p, wp, scores);
    if want.entropy {
        let xlnx = |w: f64| if w > 0.0 { w * w.ln() } else { 0.0 };
        rest[0] =
            (wp * obs_p.entropy(&st_p) + wo * obs_o.entropy(&st_o) - xlnx(wp) - xlnx(wo)) as f32;
    }
    if want.abs_logit {
        // The piece block saw logits divided by T: undo it for the raw mean.
        let ((sp, np), (so, no)) = (obs_p.abs_sum(), obs_o.abs_sum());
        rest[1] = ((sp * a.temperature as f64 + so) / (np + no).max(1) as f64) as f32;
    }
}

/// Splits sorted disjoint `ranges` into the parts inside and outside the sorted disjoint
/// `blocks`.
fn split_ranges(
    ranges: &[Range<usize>],
    blocks: &[Range<usize>],
    inside: &mut Vec<Range<usize>>,
    outside: &mut Vec<Range<usize>>,
) {
    inside.clear();
    outside.clear();
    let mut b = 0;
    for r in ranges {
        let mut c = r.start;
        while c < r.end {
            while b < blocks.len() && blocks[b].end <= c {
                b += 1;
            }
            match blocks.get(b) {
                Some(blk) if blk.start <= c => {
                    let e = blk.end.min(r.end);
                    inside.push(c..e);
                    c = e;
                }
                Some(blk) => {
                    let e = blk.start.min(r.end);
                    outside.push(c..e);
                    c = e;
                }
                None => {
                    outside.push(c..r.end);
                    c = r.end;
                }
            }
        }
    }
}

#[cfg(test)]
// One-range inputs are ordinary here, not a mistaken `vec![a..b]`.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::split_ranges;

    #[test]
    fn split_by_blocks() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        split_ranges(&[0..10, 12..20], &[2..4, 8..13, 19..30], &mut a, &mut b);
        assert_eq!(a, vec![2..4, 8..10, 12..13, 19..20]);
        assert_eq!(b, vec![0..2, 4..8, 13..19]);
        split_ranges(&[0..5], &[], &mut a, &mut b);
        assert_eq!((a.len(), b), (0, vec![0..5]));
    }
}
