//! Attention over the f16 KV cache with a causal or ranges mask (flash-style: no
//! [n_q, n_cells] probability matrix; see `simd::OnlineSoftmax` for the per-row loop).

use super::shape_err;
use super::simd::extras::RowExtras;
use super::simd::{AttnHead, Kernels};
use crate::{Cpu, CpuError};
use half::f16;
use rayon::prelude::*;
use weft::ops::{AttnExtras, AttnMask, AttnParams};
use weft::selection::SCORE_TOPK;

impl Cpu {
    /// `out = softmax(scale * q . k over the visible cells) . v` for each query row and head;
    /// query head h reads KV head h / (n_head / n_head_kv).
    ///
    /// q: f32 [n_q, n_head, head_dim]; k, v: f16 [n_cells, n_head_kv, head_dim];
    /// out: f32 [n_q, n_head * head_dim]. The mask must give every row at least one cell.
    ///
    /// Work items are (query row, head) pairs, each computed alone over its visible ranges in
    /// a fixed order with stack temporaries only (an f32 [ATTN_BLOCK] score block; the
    /// output row is the accumulator).
    pub fn attention(
        &self,
        q: &[f32],
        k: &[f16],
        v: &[f16],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        let (n_q, _n_cells) =
            p.check(q.len(), k.len(), v.len(), out.len(), mask).map_err(shape_err)?;
        let hd = p.head_dim;
        let kern = Kernels::for_cpu(self);
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
            (kern.attend)(&head, &mask.row_head(i, h), o);
        });
        Ok(())
    }

    /// [`Cpu::attention`] plus the optional outputs requested in `extras` (group scores,
    /// entropy, mean |logit|), computed in the same block loop from the logits and each
    /// row's log-sum-exp. With nothing requested this is exactly `attention`.
    ///
    /// Allocates once per call: the packed per-(row, head) results, f32 [n_q * n_head,
    /// n_pieces + 2], and per worker a top-5 logit scratch f32 [n_pieces, 5].
    #[allow(clippy::too_many_arguments)]
    pub fn attention_ext(
        &self,
        q: &[f32],
        k: &[f16],
        v: &[f16],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        extras: &mut AttnExtras<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        if extras.is_empty() {
            return self.attention(q, k, v, p, mask, out);
        }
        let (n_q, n_cells) =
            p.check(q.len(), k.len(), v.len(), out.len(), mask).map_err(shape_err)?;
        extras.check(n_q, p.n_head, n_cells).map_err(shape_err)?;
        let hd = p.head_dim;
        let kern = Kernels::for_cpu(self);
        let pieces: &[std::ops::Range<usize>] = extras.group_scores.as_ref().map_or(&[], |g| g.0);
        let n_pieces = pieces.len();
        let (want_ent, want_abs) = (extras.entropy.is_some(), extras.mean_abs_logit.is_some());
        // f32 [n_q * n_head, n_pieces + 2]: scores, entropy, mean |logit| of each item.
        let stride = n_pieces + 2;
        let mut packed = vec![0f32; n_q * p.n_head * stride];
        let item = |idx: usize, o: &mut [f32], res: &mut [f32], top: &mut [[f32; SCORE_TOPK]]| {
            let (i, h) = (idx / p.n_head, idx % p.n_head);
            let head = AttnHead {
                q: &q[idx * hd..][..hd],
                k,
                v,
                kv_row: p.n_head_kv * hd,
                kv_off: p.kv_head(h) * hd,
                scale: p.scale,
            };
            let mut obs = RowExtras::new(pieces, top, want_ent, want_abs);
            let st = (kern.attend_extras)(&head, &mask.row_head(i, h), o, &mut obs);
            let (scores, rest) = res.split_at_mut(n_pieces);
            let (ent, abs) = rest.split_at_mut(1);
            obs.finish(&st, scores, &mut ent[0], &mut abs[0]);
        };
        let visible: usize = (0..n_q).map(|i| mask.visible(i)).sum();
        let work = visible.saturating_mul(p.n_head * hd * 2);
        let new_top = || vec![[f32::NEG_INFINITY; SCORE_TOPK]; n_pieces];
        let n_items = n_q * p.n_head;
        if self.threads() <= 1 || n_items <= 1 || work < super::PAR_MIN_WORK {
            let mut top = new_top();
            for (idx, (o, res)) in out.chunks_mut(hd).zip(packed.chunks_mut(stride)).enumerate() {
                item(idx, o, res, &mut top);
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
                    .for_each_init(new_top, |top, (idx, (o, res))| item(idx, o, res, top))
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
