//! Optional per-row outputs of the attention kernels (group scores, entropy, mean |logit|),
//! gathered by an observer that the kernels' block loop calls once per key block.
//!
//! Each level's `attend` is generic over [`BlockObserver`]; the plain op instantiates it
//! with [`NoObserver`], whose empty inline hook compiles away, so attention without extras
//! runs exactly the code it ran before. [`RowExtras`] is the one real observer.

use super::OnlineSoftmax;
use std::ops::Range;
use weft::selection::SCORE_TOPK;

/// Called by the block loop after a block's logits are known and the running max has been
/// updated, before the logits are exponentiated in place.
pub(crate) trait BlockObserver {
    /// `logits`: f32 [n], the scaled logits of cells `cell..cell + n`; `prev`: the softmax
    /// state before this block; `max`: the running max including this block.
    fn block(&mut self, cell: usize, logits: &[f32], prev: OnlineSoftmax, max: f32);
}

/// Observes nothing: the plain attention path.
pub(crate) struct NoObserver;

impl BlockObserver for NoObserver {
    #[inline(always)]
    fn block(&mut self, _: usize, _: &[f32], _: OnlineSoftmax, _: f32) {}
}

/// Extras of one (query row, head).
///
/// Group scores need the row's final log-sum-exp, which is known only after the last block,
/// so the first pass keeps the [`SCORE_TOPK`] largest logits of every piece (probability is
/// monotonic in the logit within a row) and [`RowExtras::finish`] turns them into
/// `sum exp(s - lse)`. Entropy `H = lse - sum p*s` is accumulated online as
/// `T = sum exp(s - max) * (s - max)` (relative to the running max, so no cancellation
/// against lse), rescaled like the softmax sum when the max grows: `H = ln(sum) - T / sum`.
pub(crate) struct RowExtras<'a> {
    /// Piece key ranges (cells, sorted, disjoint); empty when no group scores are wanted.
    pieces: &'a [Range<usize>],
    /// f32 [n_pieces][SCORE_TOPK]: each piece's largest logits so far, descending
    /// (-inf = none yet).
    top: &'a mut [[f32; SCORE_TOPK]],
    /// First piece that may still overlap the next block (blocks come in increasing cells).
    cursor: usize,
    entropy: bool,
    /// sum exp(s - max) * (s - max) over the keys seen (f64: it is a cancelling sum).
    ent_t: f64,
    abs_logit: bool,
    abs_sum: f64,
    n_keys: usize,
}

impl<'a> RowExtras<'a> {
    /// `top` is the caller's scratch: f32 [pieces.len()][SCORE_TOPK].
    pub fn new(
        pieces: &'a [Range<usize>],
        top: &'a mut [[f32; SCORE_TOPK]],
        entropy: bool,
        abs_logit: bool,
    ) -> Self {
        top.fill([f32::NEG_INFINITY; SCORE_TOPK]);
        Self { pieces, top, cursor: 0, entropy, ent_t: 0.0, abs_logit, abs_sum: 0.0, n_keys: 0 }
    }

    /// Writes the row's results from the final softmax state: `scores: f32 [n_pieces]`
    /// (sum of the top-5 probabilities per piece, 0 for a piece the row does not see),
    /// then entropy and mean |logit| when asked for.
    pub fn finish(
        &self,
        st: &OnlineSoftmax,
        scores: &mut [f32],
        entropy: &mut f32,
        abs_logit: &mut f32,
    ) {
        self.scores(st, 1.0, scores);
        if self.entropy {
            *entropy = self.entropy(st) as f32;
        }
        if self.abs_logit {
            *abs_logit = (self.abs_sum / self.n_keys.max(1) as f64) as f32;
        }
    }

    /// The block's log-sum-exp from its final softmax state.
    pub fn lse(st: &OnlineSoftmax) -> f64 {
        st.max as f64 + (st.sum as f64).ln()
    }

    /// `scores: f32 [n_pieces]` = `weight` times the sum of the top-5 probabilities of each
    /// piece within this block (the block's own softmax).
    pub fn scores(&self, st: &OnlineSoftmax, weight: f64, scores: &mut [f32]) {
        let lse = Self::lse(st);
        for (s, top) in scores.iter_mut().zip(self.top.iter()) {
            let v: f64 =
                top.iter().filter(|t| t.is_finite()).map(|&t| (t as f64 - lse).exp()).sum();
            *s = (v * weight) as f32;
        }
    }

    /// Entropy of the block's own softmax, `ln(sum) - T / sum` (0 when not gathered).
    pub fn entropy(&self, st: &OnlineSoftmax) -> f64 {
        let sum = st.sum as f64;
        if self.entropy {
            sum.ln() - self.ent_t / sum
        } else {
            0.0
        }
    }

    /// Sum of |logit| over the keys seen and their count.
    pub fn abs_sum(&self) -> (f64, usize) {
        (self.abs_sum, self.n_keys)
    }
}

/// Inserts `v` into a descending top-[`SCORE_TOPK`] list.
#[inline]
fn insert_top(top: &mut [f32; SCORE_TOPK], v: f32) {
    if v > top[SCORE_TOPK - 1] {
        let mut i = SCORE_TOPK - 1;
        while i > 0 && top[i - 1] < v {
            top[i] = top[i - 1];
            i -= 1;
        }
        top[i] = v;
    }
}

impl BlockObserver for RowExtras<'_> {
    fn block(&mut self, cell: usize, logits: &[f32], prev: OnlineSoftmax, max: f32) {
        let end = cell + logits.len();
        if !self.pieces.is_empty() {
            while self.pieces.get(self.cursor).is_some_and(|r| r.end <= cell) {
                self.cursor += 1;
            }
            for (r, top) in self.pieces[self.cursor..].iter().zip(&mut self.top[self.cursor..]) {
                if r.start >= end {
                    break;
                }
                let (a, b) = (r.start.max(cell), r.end.min(end));
                for &s in &logits[a - cell..b - cell] {
                    insert_top(top, s);
                }
            }
        }
        if self.entropy {
            if max > prev.max && prev.max != f32::NEG_INFINITY {
                // Re-express the old terms relative to the new max:
                // e^(s-M)(s-M) = f e^(s-m0) ((s-m0) + (m0-M)), f = e^(m0-M).
                let d = prev.max as f64 - max as f64;
                self.ent_t = d.exp() * (self.ent_t + d * prev.sum as f64);
            }
            let m = max as f64;
            self.ent_t +=
                logits.iter().map(|&s| (s as f64 - m).exp() * (s as f64 - m)).sum::<f64>();
        }
        if self.abs_logit {
            self.abs_sum += logits.iter().map(|&s| s.abs() as f64).sum::<f64>();
            self.n_keys += logits.len();
        }
    }
}
