//! The llama graph (also qwen2: the same graph plus Q/K/V biases and NeoX RoPE), in ggml's op
//! order:
//!
//! ```text
//! x = token_embd[tokens]
//! per layer: xn = rms_norm(x) * attn_norm
//!            q, k, v = xn * W{q,k,v}^T (+ bias);  q, k = rope(q, k)
//!            store k, v in the cache cells;  a = attention(q, cache, mask)
//!            x += a * Wo^T
//!            xn = rms_norm(x) * ffn_norm;  x += (silu(xn * Wgate^T) * (xn * Wup^T)) * Wdown^T
//! logits = (rms_norm(x) * output_norm) * Woutput^T
//! ```

use super::{backend_err, ForwardBatch, ForwardState, Model, ModelError};
use crate::backend::Backend;
use crate::kv_cache::KvCache;
use crate::observer::ForwardObserver;
use std::ops::Range;

impl<'a, B: Backend> Model<'a, B> {
    /// Run one batch: its K/V go to cells `batch.cell0 ..` (already claimed in `kv`), and the
    /// final hidden states stay in `st` for [`Model::logits`].
    pub fn forward(
        &self,
        kv: &mut KvCache<B>,
        st: &mut ForwardState<B>,
        batch: &ForwardBatch<'_>,
    ) -> Result<(), ModelError> {
        self.forward_observed(kv, st, batch, None)
    }

    /// [`Model::forward`] recording attention statistics into `obs` (when given).
    pub fn forward_observed(
        &self,
        kv: &mut KvCache<B>,
        st: &mut ForwardState<B>,
        batch: &ForwardBatch<'_>,
        mut obs: Option<ForwardObserver<'_>>,
    ) -> Result<(), ModelError> {
        let hp = &self.hparams;
        let be = self.backend;
        let n = batch.tokens.len();
        if n == 0 || n > st.n_batch {
            return Err(ModelError::Batch(format!("{n} tokens, state holds 1..={}", st.n_batch)));
        }
        if batch.positions.len() != n {
            return Err(ModelError::Batch(format!(
                "{} positions for {n} tokens",
                batch.positions.len()
            )));
        }
        if batch.cell0 + n > batch.n_kv || batch.n_kv > kv.len() {
            return Err(ModelError::Batch(format!(
                "cells {}..{} and n_kv {} do not fit the {} cells in use",
                batch.cell0,
                batch.cell0 + n,
                batch.n_kv,
                kv.len()
            )));
        }
        if kv.n_layer() != hp.n_layer || kv.row_len() != hp.n_embd_kv() {
            return Err(ModelError::Batch("KV cache was made for another model".into()));
        }
        if let Some(&id) = batch.tokens.iter().find(|&&t| t as usize >= hp.n_vocab) {
            return Err(ModelError::TokenOutOfRange { id, n_vocab: hp.n_vocab });
        }
        let (n_embd, n_q, n_kv_row, n_ff) = (hp.n_embd, hp.n_embd_q(), hp.n_embd_kv(), hp.n_ff);
        let w = &self.weights;
        let e = backend_err;

        be.get_rows(&w.token_embd, batch.tokens, &mut st.x).map_err(e)?;
        for (il, lw) in w.layers.iter().enumerate() {
            // attention block
            be.rms_norm(&st.x, &lw.attn_norm, n, hp.norm_eps, &mut st.xn).map_err(e)?;
            be.matmul(&lw.attn_q, &st.xn, n, &mut st.q, &mut st.scratch).map_err(e)?;
            be.matmul(&lw.attn_k, &st.xn, n, &mut st.k, &mut st.scratch).map_err(e)?;
            be.matmul(&lw.attn_v, &st.xn, n, &mut st.v, &mut st.scratch).map_err(e)?;
            if let Some(b) = &lw.attn_q_bias {
                be.add(&mut st.q, n * n_q, b, n_q).map_err(e)?;
            }
            if let Some(b) = &lw.attn_k_bias {
                be.add(&mut st.k, n * n_kv_row, b, n_kv_row).map_err(e)?;
            }
            if let Some(b) = &lw.attn_v_bias {
                be.add(&mut st.v, n * n_kv_row, b, n_kv_row).map_err(e)?;
            }
            be.rope(&mut st.q, hp.n_head, batch.positions, &self.rope).map_err(e)?;
            be.rope(&mut st.k, hp.n_head_kv, batch.positions, &self.rope).map_err(e)?;
            if let Some(o) = obs.as_mut() {
                self.observe_qk(il, st, n, o)?;
            }
            let (k_cache, v_cache) = kv.layer_mut(il);
            be.kv_store(k_cache, batch.cell0, n_kv_row, &st.k, n).map_err(e)?;
            be.kv_store(v_cache, batch.cell0, n_kv_row, &st.v, n).map_err(e)?;
            self.attend_layer(il, kv, st, batch, obs.as_mut())?;
            be.matmul(&lw.attn_output, &st.attn, n, &mut st.proj, &mut st.scratch).map_err(e)?;
            be.add(&mut st.x, n * n_embd, &st.proj, n * n_embd).map_err(e)?;

            // feed-forward block
            be.rms_norm(&st.x, &lw.ffn_norm, n, hp.norm_eps, &mut st.xn).map_err(e)?;
            be.matmul(&lw.ffn_gate, &st.xn, n, &mut st.gate, &mut st.scratch).map_err(e)?;
            be.matmul(&lw.ffn_up, &st.xn, n, &mut st.up, &mut st.scratch).map_err(e)?;
            be.silu_mul(&mut st.gate, &st.up, n * n_ff).map_err(e)?;
            be.matmul(&lw.ffn_down, &st.gate, n, &mut st.proj, &mut st.scratch).map_err(e)?;
            be.add(&mut st.x, n * n_embd, &st.proj, n * n_embd).map_err(e)?;
        }
        st.n_tokens = n;
        if let Some(o) = obs.filter(|o| o.attention) {
            o.stats.count(n);
        }
        Ok(())
    }

    /// Logits of rows `rows` of the last forward's batch into `out` (f32 [rows.len(), n_vocab]),
    /// computed `n_out` rows at a time.
    pub fn logits(
        &self,
        st: &mut ForwardState<B>,
        rows: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let hp = &self.hparams;
        let be = self.backend;
        let e = backend_err;
        if rows.end > st.n_tokens || rows.start > rows.end {
            return Err(ModelError::Batch(format!(
                "logits of rows {rows:?}, last batch had {} tokens",
                st.n_tokens
            )));
        }
        if out.len() != rows.len() * hp.n_vocab {
            return Err(ModelError::Batch(format!(
                "logits output holds {}, {} rows of {} needed",
                out.len(),
                rows.len(),
                hp.n_vocab
            )));
        }
        let n_embd = hp.n_embd;
        let mut r = rows.start;
        while r < rows.end {
            let c = (rows.end - r).min(st.n_out);
            be.copy(&st.x, r * n_embd, &mut st.out_x, 0, c * n_embd).map_err(e)?;
            be.rms_norm(&st.out_x, &self.weights.output_norm, c, hp.norm_eps, &mut st.out_xn)
                .map_err(e)?;
            be.matmul(self.weights.output(), &st.out_xn, c, &mut st.logits, &mut st.scratch)
                .map_err(e)?;
            let o = (r - rows.start) * hp.n_vocab;
            be.download(&st.logits, 0, &mut out[o..o + c * hp.n_vocab]).map_err(e)?;
            r += c;
        }
        Ok(())
    }
}
