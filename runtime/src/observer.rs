//! The attention observer (PAPER.md §5): per-layer, per-head attention entropy of the
//! query-side tokens, and the scale diagnostics (mean |logit|, L2 norms of q for query
//! tokens and of k at the first token of every piece).
//!
//! The model fills it only when one is passed to [`crate::model::Model::forward_observed`],
//! asking the backend for the extra outputs of its attention op; without an observer the
//! forward pass runs exactly the plain code (the "do you want this tensor" shape of
//! llama.cpp's eval callback). Sums are kept in f64 and turned into means on request.

use serde::Serialize;

/// What one forward call should record.
#[derive(Debug)]
pub struct ForwardObserver<'o> {
    pub stats: &'o mut AttnStats,
    /// Record the attention entropy, mean |logit| and q norms of every row of the batch
    /// (query-side batches).
    pub attention: bool,
}

/// Sums over observed tokens; means on request.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AttnStats {
    n_layer: usize,
    n_head: usize,
    /// query-side tokens observed (counted once per token, not per layer)
    n_tokens: usize,
    /// f64 [n_layer, n_head]: sum over tokens of the entropy (nats)
    entropy: Vec<f64>,
    /// f64 [n_layer, n_head]: sum over tokens of the mean |scaled logit|
    abs_logit: Vec<f64>,
    /// f64 [n_layer]: sum over tokens and heads of ||q|| (after RoPE)
    q_norm: Vec<f64>,
    /// f64 [n_layer]: sum over recorded rows and KV heads of ||k|| (after RoPE)
    k_norm: Vec<f64>,
    /// (row, KV head) pairs recorded in `k_norm`, per layer
    n_k: usize,
    /// u64 [n_layer, n_pieces]: (token, head) selections that kept each piece
    kept: Vec<u64>,
    /// u64 [n_layer]: (token, head) selections made
    n_sel: Vec<u64>,
    /// pieces of the selections recorded (0 before the first)
    n_pieces: usize,
}

impl AttnStats {
    pub fn new(n_layer: usize, n_head: usize) -> Self {
        AttnStats {
            n_layer,
            n_head,
            n_tokens: 0,
            entropy: vec![0.0; n_layer * n_head],
            abs_logit: vec![0.0; n_layer * n_head],
            q_norm: vec![0.0; n_layer],
            k_norm: vec![0.0; n_layer],
            n_k: 0,
            kept: Vec::new(),
            n_sel: vec![0; n_layer],
            n_pieces: 0,
        }
    }

    /// Fraction of the (query token, head) selections of `layer` that kept piece `p`
    /// (`None` when no selection ran).
    pub fn kept_fraction(&self, layer: usize, p: usize) -> Option<f64> {
        let n = *self.n_sel.get(layer)?;
        (n > 0 && p < self.n_pieces).then(|| self.kept[layer * self.n_pieces + p] as f64 / n as f64)
    }

    /// Pieces of the recorded selections (0 when selection was off).
    pub fn n_pieces(&self) -> usize {
        self.n_pieces
    }

    /// Records one layer's keep sets (every token and head of the batch).
    pub(crate) fn add_kept(&mut self, layer: usize, keep: &crate::selection::KeepSets) {
        if self.n_pieces != keep.n_pieces {
            // A new piece count (first selection): start the counts over.
            self.n_pieces = keep.n_pieces;
            self.kept = vec![0; self.n_layer * keep.n_pieces];
            self.n_sel.fill(0);
        }
        for t in 0..keep.n_tokens {
            for h in 0..keep.n_head {
                for (m, &k) in keep.get(t, h).iter().enumerate() {
                    self.kept[layer * self.n_pieces + m] += u64::from(k);
                }
            }
        }
        self.n_sel[layer] += (keep.n_tokens * keep.n_head) as u64;
    }

    pub fn n_layer(&self) -> usize {
        self.n_layer
    }

    pub fn n_head(&self) -> usize {
        self.n_head
    }

    /// Query-side tokens observed.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// Mean entropy of `layer`, `head` over the observed tokens (nats).
    pub fn entropy(&self, layer: usize, head: usize) -> f64 {
        self.entropy[layer * self.n_head + head] / self.n_tokens.max(1) as f64
    }

    /// Mean entropy per layer, over heads and tokens.
    pub fn entropy_by_layer(&self) -> Vec<f64> {
        self.per_layer(&self.entropy)
    }

    /// Grand mean over layers.
    pub fn mean_entropy(&self) -> f64 {
        let v = self.entropy_by_layer();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    /// Mean |scaled logit| per layer.
    pub fn mean_abs_logit_by_layer(&self) -> Vec<f64> {
        self.per_layer(&self.abs_logit)
    }

    /// Mean L2 norm of the query tokens' q per layer (over tokens and heads).
    pub fn q_norm_by_layer(&self) -> Vec<f64> {
        let n = (self.n_tokens * self.n_head).max(1) as f64;
        self.q_norm.iter().map(|s| s / n).collect()
    }

    /// Mean L2 norm of k at the pieces' first tokens per layer (over pieces and KV heads).
    pub fn k_norm_piece_start_by_layer(&self) -> Vec<f64> {
        let n = self.n_k.max(1) as f64;
        self.k_norm.iter().map(|s| s / n).collect()
    }

    fn per_layer(&self, sums: &[f64]) -> Vec<f64> {
        let n = (self.n_tokens * self.n_head).max(1) as f64;
        sums.chunks(self.n_head.max(1)).map(|c| c.iter().sum::<f64>() / n).collect()
    }

    /// Adds one layer's attention extras of `n` tokens: `entropy`, `abs_logit`:
    /// f32 [n, n_head].
    pub(crate) fn add_attention(&mut self, layer: usize, entropy: &[f32], abs_logit: &[f32]) {
        let nh = self.n_head;
        for (row_e, row_a) in entropy.chunks(nh).zip(abs_logit.chunks(nh)) {
            for h in 0..nh {
                self.entropy[layer * nh + h] += row_e[h] as f64;
                self.abs_logit[layer * nh + h] += row_a[h] as f64;
            }
        }
    }

    /// Adds one layer's q rows: f32 [n, n_head, head_dim].
    pub(crate) fn add_q(&mut self, layer: usize, q: &[f32], head_dim: usize) {
        self.q_norm[layer] += q.chunks(head_dim).map(l2).sum::<f64>();
    }

    /// Adds the k rows of the pieces' first tokens, read from the cache (widened from the
    /// cache's type): `k` is f32 [n_layer, n_rows, n_head_kv * head_dim].
    pub fn add_piece_start_k(&mut self, k: &[f32], head_dim: usize) {
        let per_layer = k.len() / self.n_layer.max(1);
        for (layer, rows) in k.chunks(per_layer.max(1)).enumerate().take(self.n_layer) {
            self.k_norm[layer] += rows
                .chunks(head_dim)
                .map(|h| h.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt())
                .sum::<f64>();
        }
        // One sample per (row, KV head).
        self.n_k += per_layer / head_dim.max(1);
    }

    /// Counts `n_tokens` query-side rows after a forward.
    pub(crate) fn count(&mut self, n_tokens: usize) {
        self.n_tokens += n_tokens;
    }
}

fn l2(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_over_tokens_heads_layers() {
        let mut s = AttnStats::new(2, 2);
        // Two tokens, layer 0: entropies (1, 3) and (2, 4); layer 1 all 0.5.
        s.add_attention(0, &[1.0, 3.0, 2.0, 4.0], &[1.0; 4]);
        s.add_attention(1, &[0.5; 4], &[2.0; 4]);
        s.add_q(0, &[3.0, 4.0, 0.0, 1.0, 6.0, 8.0, 0.0, 0.0], 2);
        s.add_piece_start_k(&[3.0, 4.0, 0.0, 0.0], 2);
        s.count(2);
        assert_eq!(s.entropy(0, 0), 1.5);
        assert_eq!(s.entropy(0, 1), 3.5);
        assert_eq!(s.entropy_by_layer(), vec![2.5, 0.5]);
        assert_eq!(s.mean_entropy(), 1.5);
        assert_eq!(s.mean_abs_logit_by_layer(), vec![1.0, 2.0]);
        // ||(3,4)|| + ||(0,1)|| + ||(6,8)|| + 0 = 16 over 4 (token, head) pairs.
        assert_eq!(s.q_norm_by_layer(), vec![4.0, 0.0]);
        assert_eq!(s.k_norm_piece_start_by_layer(), vec![5.0, 0.0]);
    }
}
