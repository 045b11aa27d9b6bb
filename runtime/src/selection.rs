//! Selective attention policy (PAPER.md §4), host side: pool the backend's per-piece group
//! scores and keep the K best pieces.
//!
//! The backend returns `score[t, h, m]` = sum of the [`SCORE_TOPK`] largest attention
//! probabilities of query token t, head h over the keys of piece m (computed inside the
//! attention kernel from logits and the row's log-sum-exp). Here the scores are optionally
//! pooled over heads and/or tokens of the same forward call — `pooled[m]` = sum of the
//! [`AGGR_TOPK`] largest `score[., ., m]` over the pooled dimensions — and the `top_k` best
//! pieces are kept. The query's attention then runs with the dropped pieces' key ranges
//! omitted, which equals zeroing their probabilities and renormalising. Sink and query keys
//! are never part of any piece, so they are never dropped.

use crate::layout::MaskRanges;
use crate::ops::AttnMask;
use std::fmt;
use std::ops::Range;

/// Probabilities summed per piece, per (token, head): the authors' `score_topk`.
pub const SCORE_TOPK: usize = 5;
/// Scores summed per piece over the pooled dimensions: the authors' `aggr_topk`.
pub const AGGR_TOPK: usize = 5;

/// Which dimensions of the group scores are pooled before choosing pieces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Pooling {
    /// One choice per (token, head) (the authors' setting for language modelling).
    #[default]
    None,
    /// One choice per token, shared by its heads.
    Heads,
    /// One choice per head, shared by the call's tokens.
    Tokens,
    /// One choice for the whole call (the authors' setting for tasks).
    HeadsTokens,
}

impl Pooling {
    fn pools_heads(self) -> bool {
        matches!(self, Self::Heads | Self::HeadsTokens)
    }
    fn pools_tokens(self) -> bool {
        matches!(self, Self::Tokens | Self::HeadsTokens)
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Heads => "heads",
            Self::Tokens => "tokens",
            Self::HeadsTokens => "heads+tokens",
        })
    }
}

/// Malformed scores.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("scores have {got} values, expected n_tokens {n_tokens} * n_head {n_head} * n_pieces {n_pieces}")]
    Shape { got: usize, n_tokens: usize, n_head: usize, n_pieces: usize },
    #[error("score[{index}] is NaN")]
    NaN { index: usize },
}

/// The pieces kept per selection group: f32 scores went in, `bool [n_groups_t, n_groups_h,
/// n_pieces]` comes out, where a pooled dimension has one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepSets {
    pub n_tokens: usize,
    pub n_head: usize,
    pub n_pieces: usize,
    pub pooling: Pooling,
    /// bool [n_groups_t, n_groups_h, n_pieces]
    keep: Vec<bool>,
}

impl KeepSets {
    /// The keep set of token `t`, head `h`: bool [n_pieces].
    pub fn get(&self, t: usize, h: usize) -> &[bool] {
        let t = if self.pooling.pools_tokens() { 0 } else { t };
        let h = if self.pooling.pools_heads() { 0 } else { h };
        let n_groups_h = if self.pooling.pools_heads() { 1 } else { self.n_head };
        &self.keep[(t * n_groups_h + h) * self.n_pieces..][..self.n_pieces]
    }

    /// Whether every head of a token shares one keep set (so a per-row attention mask can
    /// express it): pooling over heads.
    pub fn per_token(&self) -> bool {
        self.pooling.pools_heads()
    }

    /// Whether every piece is kept everywhere (selection off or `top_k >= n_pieces`).
    pub fn keeps_all(&self) -> bool {
        self.keep.iter().all(|&k| k)
    }
}

/// Sum of the `k` largest values (all of them when fewer).
fn sum_top(values: impl Iterator<Item = f32>, k: usize) -> f32 {
    // Descending top-k, k is small (5).
    let mut top = [f32::NEG_INFINITY; AGGR_TOPK];
    let k = k.min(AGGR_TOPK);
    for v in values {
        if k > 0 && v > top[k - 1] {
            let mut i = k - 1;
            while i > 0 && top[i - 1] < v {
                top[i] = top[i - 1];
                i -= 1;
            }
            top[i] = v;
        }
    }
    // Summed in f64 in descending order: one fixed order, whatever the input order.
    top[..k].iter().filter(|v| v.is_finite()).map(|&v| v as f64).sum::<f64>() as f32
}

/// Marks the `top_k` largest of `pooled: [n_pieces]` in `keep`. Ties go to the lower piece
/// index, so the choice is deterministic.
fn keep_best(pooled: &[f32], top_k: usize, keep: &mut [bool]) {
    if top_k == 0 || top_k >= pooled.len() {
        keep.fill(true);
        return;
    }
    keep.fill(false);
    for _ in 0..top_k {
        let best = (0..pooled.len()).filter(|&m| !keep[m]).reduce(|a, b| {
            if pooled[b] > pooled[a] {
                b
            } else {
                a
            }
        });
        if let Some(m) = best {
            keep[m] = true;
        }
    }
}

/// Pools `scores: f32 [n_tokens, n_head, n_pieces]` per `pooling` and keeps the `top_k` best
/// pieces of each group (`top_k = 0`: selection off, everything kept).
pub fn select_pieces(
    scores: &[f32],
    n_tokens: usize,
    n_head: usize,
    n_pieces: usize,
    pooling: Pooling,
    top_k: usize,
) -> Result<KeepSets, SelectionError> {
    let want = n_tokens.checked_mul(n_head).and_then(|v| v.checked_mul(n_pieces));
    if want != Some(scores.len()) {
        return Err(SelectionError::Shape { got: scores.len(), n_tokens, n_head, n_pieces });
    }
    if let Some(index) = scores.iter().position(|v| v.is_nan()) {
        return Err(SelectionError::NaN { index });
    }
    let (gt, gh) = (
        if pooling.pools_tokens() { 1 } else { n_tokens },
        if pooling.pools_heads() { 1 } else { n_head },
    );
    let mut keep = vec![true; gt * gh * n_pieces];
    // f32 [n_pieces]: one group's pooled scores.
    let mut pooled = vec![0f32; n_pieces];
    let score = |t: usize, h: usize, m: usize| scores[(t * n_head + h) * n_pieces + m];
    for t0 in 0..gt {
        for h0 in 0..gh {
            // The (token, head) pairs of this group.
            let ts = if pooling.pools_tokens() { 0..n_tokens } else { t0..t0 + 1 };
            let hs = if pooling.pools_heads() { 0..n_head } else { h0..h0 + 1 };
            for (m, pm) in pooled.iter_mut().enumerate() {
                *pm = if pooling == Pooling::None {
                    score(t0, h0, m)
                } else {
                    let vals = ts.clone().flat_map(|t| hs.clone().map(move |h| (t, h)));
                    sum_top(vals.map(|(t, h)| score(t, h, m)), AGGR_TOPK)
                };
            }
            keep_best(&pooled, top_k, &mut keep[(t0 * gh + h0) * n_pieces..][..n_pieces]);
        }
    }
    Ok(KeepSets { n_tokens, n_head, n_pieces, pooling, keep })
}

/// The mask of `n_q` rows after selection: `base` (a causal or per-row ranges mask) with
/// the dropped key groups removed, per the keep sets of a selection over exactly those rows
/// (`keep.n_tokens == n_q`, one set per `groups` entry). A per-row mask when the sets are
/// pooled over heads, else a per-(row, head) mask. Keys outside every group (sink, query)
/// are never removed. The model calls this without knowing what the groups are.
pub fn mask_without_dropped(
    base: &AttnMask<'_>,
    n_q: usize,
    groups: &[Range<usize>],
    keep: &KeepSets,
) -> MaskRanges {
    let mut m = MaskRanges::new();
    let n_head = if keep.per_token() { 1 } else { keep.n_head };
    if !keep.per_token() {
        m.n_head = Some(n_head);
    }
    for i in 0..n_q {
        for h in 0..n_head {
            let kept = keep.get(i, h);
            // Dropped groups, in cell order (groups are sorted and disjoint).
            let mut dropped = groups.iter().zip(kept).filter(|(_, &k)| !k).map(|(g, _)| g);
            let mut d = dropped.next();
            for r in base.row_head(i, h).iter() {
                let mut c = r.start;
                while c < r.end {
                    while d.is_some_and(|g| g.end <= c) {
                        d = dropped.next();
                    }
                    match d {
                        Some(g) if g.start <= c => c = g.end.min(r.end),
                        Some(g) => {
                            let e = g.start.min(r.end);
                            m.push(c..e);
                            c = e;
                        }
                        None => {
                            m.push(c..r.end);
                            c = r.end;
                        }
                    }
                }
            }
            m.end_row();
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_of_top_five() {
        assert_eq!(sum_top([1.0, 7.0, 3.0, 2.0, 9.0, 4.0, 8.0].into_iter(), 5), 31.0);
        assert_eq!(sum_top([0.5, 0.25].into_iter(), 5), 0.75);
        assert_eq!(sum_top([2.0, 1.0, 3.0].into_iter(), 2), 5.0);
    }

    #[test]
    fn no_pooling_picks_per_token_and_head() {
        // 1 token, 2 heads, 3 pieces.
        let s = [0.1, 0.5, 0.3, /* head 1 */ 0.6, 0.2, 0.1];
        let k = select_pieces(&s, 1, 2, 3, Pooling::None, 1).unwrap();
        assert_eq!(k.get(0, 0), [false, true, false]);
        assert_eq!(k.get(0, 1), [true, false, false]);
        let k = select_pieces(&s, 1, 2, 3, Pooling::None, 2).unwrap();
        assert_eq!(k.get(0, 0), [false, true, true]);
        assert_eq!(k.get(0, 1), [true, true, false]);
        assert!(!k.per_token());
    }

    #[test]
    fn pooling_over_heads_and_tokens() {
        // 2 tokens, 6 heads, 2 pieces. Piece 0 has one huge score, piece 1 many medium
        // ones: top-5 pooling sums the 5 largest, so piece 1 (5 * 0.3 = 1.5) beats piece 0
        // (0.9 + 4 * 0.1 = 1.3) over heads for token 0.
        let mut s = vec![0f32; 2 * 6 * 2];
        let at = |t: usize, h: usize, m: usize| (t * 6 + h) * 2 + m;
        for h in 0..6 {
            s[at(0, h, 0)] = if h == 0 { 0.9 } else { 0.1 };
            s[at(0, h, 1)] = 0.3;
            s[at(1, h, 0)] = 0.5; // token 1 prefers piece 0 on every head
            s[at(1, h, 1)] = 0.2;
        }
        let k = select_pieces(&s, 2, 6, 2, Pooling::Heads, 1).unwrap();
        assert!(k.per_token());
        assert_eq!((k.get(0, 3), k.get(1, 3)), (&[false, true][..], &[true, false][..]));
        // Over both: piece 0 top-5 = 0.9 + 4 * 0.5 = 2.9; piece 1 = 5 * 0.3 = 1.5.
        let k = select_pieces(&s, 2, 6, 2, Pooling::HeadsTokens, 1).unwrap();
        assert_eq!((k.get(0, 0), k.get(1, 5)), (&[true, false][..], &[true, false][..]));
        // Over tokens, per head: head 0 piece 0 = 0.9 + 0.5, piece 1 = 0.5 -> piece 0;
        // head 1: piece 0 = 0.6, piece 1 = 0.5 -> piece 0.
        let k = select_pieces(&s, 2, 6, 2, Pooling::Tokens, 1).unwrap();
        assert_eq!((k.get(1, 0), k.get(0, 1)), (&[true, false][..], &[true, false][..]));
    }

    #[test]
    fn off_and_large_k_keep_everything() {
        let s = [0.3, 0.1, 0.2, 0.0];
        for (k, pooling) in [(0, Pooling::None), (4, Pooling::HeadsTokens), (9, Pooling::Heads)] {
            let sets = select_pieces(&s, 1, 1, 4, pooling, k).unwrap();
            assert!(sets.keeps_all(), "{k} {pooling}");
        }
        let sets = select_pieces(&s, 1, 1, 4, Pooling::None, 2).unwrap();
        assert_eq!(sets.get(0, 0), [true, false, true, false]);
    }

    #[test]
    fn ties_go_to_lower_index() {
        let k = select_pieces(&[0.2, 0.4, 0.4, 0.4], 1, 1, 4, Pooling::None, 2).unwrap();
        assert_eq!(k.get(0, 0), [false, true, true, false]);
    }

    #[test]
    fn bad_scores_are_errors() {
        assert!(matches!(
            select_pieces(&[0.0; 5], 1, 2, 3, Pooling::None, 1),
            Err(SelectionError::Shape { got: 5, .. })
        ));
        assert_eq!(
            select_pieces(&[0.0, f32::NAN], 1, 1, 2, Pooling::None, 1),
            Err(SelectionError::NaN { index: 1 })
        );
    }

    #[test]
    fn dropped_groups_leave_the_mask() {
        // Sink 0..2, pieces 2..5 and 5..9, query 9..11 (two rows).
        let groups = [2..5, 5..9];
        let offsets = [0, 1, 2];
        let ranges = [0..10, 0..11];
        let base = AttnMask::Ranges { offsets: &offsets, ranges: &ranges };
        let k = select_pieces(&[0.1, 0.9, 0.2, 0.8], 2, 1, 2, Pooling::HeadsTokens, 1).unwrap();
        let m = mask_without_dropped(&base, 2, &groups, &k);
        assert_eq!(m.n_head, None);
        assert_eq!(m.offsets, vec![0, 2, 4]);
        assert_eq!(m.ranges, vec![0..2, 5..10, 0..2, 5..11]);
        // Per head, causal base: head 0 keeps piece 0, head 1 keeps piece 1.
        let k = select_pieces(&[0.9, 0.1, 0.2, 0.8], 1, 2, 2, Pooling::None, 1).unwrap();
        let m = mask_without_dropped(&AttnMask::Causal { n_past: 10 }, 1, &groups, &k);
        assert_eq!(m.n_head, Some(2));
        assert_eq!(m.ranges, vec![0..5, 9..11, 0..2, 5..11]);
        // Keeping everything gives the base back.
        let k = select_pieces(&[0.9, 0.1], 1, 1, 2, Pooling::None, 2).unwrap();
        let m = mask_without_dropped(&base, 1, &groups, &k);
        assert_eq!(m.ranges, vec![0..10]);
    }
}
