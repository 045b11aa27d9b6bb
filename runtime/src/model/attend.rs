//! One layer's attention step, with the optional parts of parallel encoding: selective
//! attention (a scoring pass, host-side pooling and choice, attention over the kept groups)
//! and the observer's statistics. The plain path is one backend call.

use super::{backend_err, ForwardBatch, ForwardState, Model, ModelError};
use crate::backend::Backend;
use crate::kv_cache::KvCache;
use crate::layout::MaskRanges;
use crate::observer::ForwardObserver;
use crate::ops::AttnExtras;
use crate::selection::{mask_without_dropped, select_pieces};

impl<B: Backend> Model<'_, B> {
    /// Attention of layer `il` for the batch in `st.q` (K/V already stored) into `st.attn`.
    pub(super) fn attend_layer(
        &self,
        il: usize,
        kv: &KvCache<B>,
        st: &mut ForwardState<B>,
        batch: &ForwardBatch<'_>,
        obs: Option<&mut ForwardObserver<'_>>,
    ) -> Result<(), ModelError> {
        let be = self.backend;
        let e = backend_err;
        let n = batch.tokens.len();
        let n_head = self.hparams.n_head;
        let (k_cache, v_cache) = kv.layer(il);
        let sel = batch.selection.filter(|s| s.is_active());
        let mut obs = obs.filter(|o| o.attention);
        if sel.is_none() && obs.is_none() && batch.ape.is_none() {
            return be
                .attention(
                    &st.q,
                    n,
                    k_cache,
                    v_cache,
                    batch.n_kv,
                    &self.attn,
                    &batch.mask,
                    &mut st.attn,
                )
                .map_err(e);
        }

        // Selection: score every group over the full mask (no V pass), keep the best.
        let mut kept: Option<MaskRanges> = None;
        if let Some(sel) = sel {
            let n_groups = sel.groups.len();
            st.sel_scores.resize(n * n_head * n_groups, 0.0);
            let mut ex = AttnExtras {
                group_scores: Some((sel.groups, &mut st.sel_scores[..])),
                scores_only: true,
                ape: batch.ape,
                ..Default::default()
            };
            be.attention_ext(
                &st.q,
                n,
                k_cache,
                v_cache,
                batch.n_kv,
                &self.attn,
                &batch.mask,
                &mut ex,
                &mut st.attn,
            )
            .map_err(e)?;
            let keep = select_pieces(&st.sel_scores, n, n_head, n_groups, sel.pooling, sel.top_k)?;
            if let Some(o) = obs.as_deref_mut() {
                o.stats.add_kept(il, &keep);
            }
            if !keep.keeps_all() {
                kept = Some(mask_without_dropped(&batch.mask, n, sel.groups, &keep));
            }
        }
        let mask = kept.as_ref().map_or(batch.mask, |m| m.as_mask());

        let mut ex = AttnExtras { ape: batch.ape, ..Default::default() };
        if obs.is_some() {
            st.obs_entropy.resize(n * n_head, 0.0);
            st.obs_abs_logit.resize(n * n_head, 0.0);
            ex.entropy = Some(&mut st.obs_entropy[..]);
            ex.mean_abs_logit = Some(&mut st.obs_abs_logit[..]);
        }
        be.attention_ext(
            &st.q,
            n,
            k_cache,
            v_cache,
            batch.n_kv,
            &self.attn,
            &mask,
            &mut ex,
            &mut st.attn,
        )
        .map_err(e)?;
        if let Some(o) = obs {
            o.stats.add_attention(il, &st.obs_entropy, &st.obs_abs_logit);
        }
        Ok(())
    }

    /// Records the L2 norms of this batch's q rows (query-side batches), after RoPE.
    pub(super) fn observe_qk(
        &self,
        il: usize,
        st: &mut ForwardState<B>,
        n: usize,
        o: &mut ForwardObserver<'_>,
    ) -> Result<(), ModelError> {
        let hp = &self.hparams;
        let e = backend_err;
        if o.attention {
            st.obs_rows.resize(n * hp.n_embd_q(), 0.0);
            self.backend.download(&st.q, 0, &mut st.obs_rows).map_err(e)?;
            o.stats.add_q(il, &st.obs_rows, hp.head_dim);
        }
        Ok(())
    }
}
