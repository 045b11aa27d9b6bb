//! Plain parameter types of the backend ops and their shape rules, shared by every backend.
//!
//! Backends (`weft-cpu`, `weft-vulkan`) take these types as arguments, so the model code that
//! builds them stays backend-independent. The validation helpers here are the single source of
//! the shape rules: a backend calls them before touching memory, so every backend rejects the
//! same inputs with the same message. [`reference`] holds the scalar definition of each op,
//! the oracle the conformance tests compare backends against.

use std::fmt;
use std::ops::Range;

pub mod reference;

/// A malformed op argument: wrong buffer length, out-of-range parameter or mask range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {detail}")]
pub struct OpsError {
    /// The op that rejected its arguments (`"attention"`, `"rope"`, ...).
    pub op: &'static str,
    pub detail: String,
}

impl OpsError {
    pub fn new(op: &'static str, detail: impl Into<String>) -> Self {
        Self { op, detail: detail.into() }
    }
}

/// Which element pairs RoPE rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])`: ggml's default mode, used by the llama architecture.
    Norm,
    /// Halves `(x[i], x[i + n_rot/2])`: ggml's `GGML_ROPE_TYPE_NEOX`, used by qwen2.
    Neox,
}

impl fmt::Display for RopeStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Norm => "norm",
            Self::Neox => "neox",
        })
    }
}

/// Rotary position embedding parameters (no YaRN extrapolation: ext_factor 0, attn_factor 1).
///
/// Pair `i` (0 <= i < n_rot/2) of a token at position `pos` is rotated by
/// `theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / freq_factors[i]`.
/// Dimensions `n_rot..head_dim` are left untouched.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeParams {
    pub style: RopeStyle,
    pub head_dim: usize,
    /// Rotated dimensions per head (`{arch}.rope.dimension_count`), even, <= head_dim.
    pub n_rot: usize,
    /// `{arch}.rope.freq_base` (1e4 llama-2, 1e5 SmolLM2, 1e6 qwen2).
    pub freq_base: f32,
    /// 1 / `{arch}.rope.scaling.factor` for linear scaling, else 1.
    pub freq_scale: f32,
    /// Llama-3 `rope_freqs.weight`: f32 [n_rot/2] divisors of theta_i.
    pub freq_factors: Option<Vec<f32>>,
}

impl RopeParams {
    /// Rejects parameters no model can have (odd or oversized n_rot, non-positive base, ...).
    pub fn validate(&self) -> Result<(), OpsError> {
        let err = |d: String| Err(OpsError::new("rope", d));
        if self.head_dim == 0
            || self.n_rot == 0
            || !self.n_rot.is_multiple_of(2)
            || self.n_rot > self.head_dim
        {
            return err(format!(
                "n_rot {} must be even, non-zero and <= head_dim {}",
                self.n_rot, self.head_dim
            ));
        }
        if !(self.freq_base.is_finite() && self.freq_base > 0.0) {
            return err(format!("freq_base {} must be finite and > 0", self.freq_base));
        }
        if !(self.freq_scale.is_finite() && self.freq_scale > 0.0) {
            return err(format!("freq_scale {} must be finite and > 0", self.freq_scale));
        }
        if let Some(ff) = &self.freq_factors {
            if ff.len() != self.n_rot / 2 {
                return err(format!(
                    "freq_factors has {} values, n_rot/2 is {}",
                    ff.len(),
                    self.n_rot / 2
                ));
            }
            if let Some(i) = ff.iter().position(|f| !(f.is_finite() && *f > 0.0)) {
                return err(format!("freq_factors[{i}] = {} must be finite and > 0", ff[i]));
            }
        }
        Ok(())
    }

    /// Validates the parameters and `x: f32 [n_tokens, n_head, head_dim]` against
    /// `positions: [n_tokens]`.
    pub fn check(&self, x_len: usize, n_head: usize, n_positions: usize) -> Result<(), OpsError> {
        self.validate()?;
        let want = n_positions.checked_mul(n_head).and_then(|v| v.checked_mul(self.head_dim));
        if n_head == 0 || want != Some(x_len) {
            return Err(OpsError::new(
                "rope",
                format!(
                    "x has {x_len} values, expected n_tokens {n_positions} * n_head {n_head} * head_dim {}",
                    self.head_dim
                ),
            ));
        }
        Ok(())
    }

    /// The rotation angle of pair `i` at position `pos`, in f64 (the reference definition;
    /// backends compute their cos/sin tables from it so every level rotates identically).
    pub fn theta(&self, pos: i32, i: usize) -> f64 {
        let exponent = -2.0 * i as f64 / self.n_rot as f64;
        let mut theta =
            pos as f64 * self.freq_scale as f64 * (self.freq_base as f64).powf(exponent);
        if let Some(ff) = &self.freq_factors {
            theta /= ff[i] as f64;
        }
        theta
    }
}

/// Attention head geometry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnParams {
    pub n_head: usize,
    /// KV heads; query head `h` reads KV head `h / (n_head / n_head_kv)` (GQA).
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Logit scale, usually `1 / sqrt(head_dim)`.
    pub scale: f32,
}

impl AttnParams {
    pub fn validate(&self) -> Result<(), OpsError> {
        if self.n_head == 0 || self.n_head_kv == 0 || self.head_dim == 0 {
            return Err(OpsError::new("attention", format!("empty head geometry {self:?}")));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return Err(OpsError::new(
                "attention",
                format!("n_head {} is not a multiple of n_head_kv {}", self.n_head, self.n_head_kv),
            ));
        }
        if !self.scale.is_finite() {
            return Err(OpsError::new("attention", format!("scale {} is not finite", self.scale)));
        }
        Ok(())
    }

    /// The KV head query head `h` reads.
    pub fn kv_head(&self, h: usize) -> usize {
        h / (self.n_head / self.n_head_kv)
    }

    /// Validates the geometry and the buffer lengths of `q: f32 [n_q, n_head, head_dim]`,
    /// `k`, `v: f16 or f32 [n_cells, n_head_kv, head_dim]` and `out: f32 [n_q, n_head * head_dim]`,
    /// and the mask against them. Returns `(n_q, n_cells)`.
    pub fn check(
        &self,
        q_len: usize,
        k_len: usize,
        v_len: usize,
        out_len: usize,
        mask: &AttnMask<'_>,
    ) -> Result<(usize, usize), OpsError> {
        self.validate()?;
        let err = |d: String| Err(OpsError::new("attention", d));
        let q_row = self.n_head * self.head_dim;
        let kv_row = self.n_head_kv * self.head_dim;
        if q_len == 0 || !q_len.is_multiple_of(q_row) {
            return err(format!(
                "q has {q_len} values, not a non-zero multiple of n_head * head_dim {q_row}"
            ));
        }
        if k_len == 0 || !k_len.is_multiple_of(kv_row) {
            return err(format!(
                "k has {k_len} values, not a non-zero multiple of n_head_kv * head_dim {kv_row}"
            ));
        }
        if v_len != k_len {
            return err(format!("v has {v_len} values, k has {k_len}"));
        }
        if out_len != q_len {
            return err(format!("out has {out_len} values, q has {q_len}"));
        }
        let (n_q, n_cells) = (q_len / q_row, k_len / kv_row);
        if let AttnMask::HeadRanges { n_head, .. } = *mask {
            if n_head != self.n_head {
                return err(format!("per-head mask for {n_head} heads, n_head is {}", self.n_head));
            }
        }
        mask.validate(n_q, n_cells)?;
        Ok((n_q, n_cells))
    }
}

/// Which KV cells each query row attends to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnMask<'a> {
    /// Query row i (absolute cell n_past + i) sees cells 0..=n_past+i.
    Causal { n_past: usize },
    /// Query row i sees the union of `ranges[offsets[i]..offsets[i+1]]` (cell index ranges,
    /// non-empty, sorted, disjoint). Parallel encoding uses it: sink + own piece for piece
    /// tokens; sink + all kept pieces + own prefix for query tokens. Dropped pieces are simply
    /// absent, so their V rows are never read.
    Ranges { offsets: &'a [usize], ranges: &'a [Range<usize>] },
    /// Like `Ranges`, one entry per (query row, head): row i, head h sees
    /// `ranges[offsets[i * n_head + h]..offsets[i * n_head + h + 1]]`. Selective attention
    /// without pooling over heads keeps different pieces per head.
    HeadRanges { n_head: usize, offsets: &'a [usize], ranges: &'a [Range<usize>] },
}

/// The visible cell ranges of one query row: one range for a causal row, a slice for
/// [`AttnMask::Ranges`]. Derefs to `[Range<usize>]`; building it never allocates.
#[derive(Clone, Debug)]
pub enum RowRanges<'a> {
    One(Range<usize>),
    Many(&'a [Range<usize>]),
}

impl std::ops::Deref for RowRanges<'_> {
    type Target = [Range<usize>];
    fn deref(&self) -> &[Range<usize>] {
        match self {
            Self::One(r) => std::slice::from_ref(r),
            Self::Many(r) => r,
        }
    }
}

impl<'a> AttnMask<'a> {
    /// Checks the mask against `n_q` query rows and `n_cells` KV cells: offsets well formed,
    /// ranges non-empty, sorted, disjoint and inside `0..n_cells`, every row sees at least one
    /// cell (a row with none has no softmax).
    pub fn validate(&self, n_q: usize, n_cells: usize) -> Result<(), OpsError> {
        let err = |d: String| Err(OpsError::new("attention mask", d));
        match *self {
            AttnMask::Causal { n_past } => {
                if n_past.checked_add(n_q).is_none_or(|end| end > n_cells) {
                    return err(format!(
                        "causal: n_past {n_past} + n_q {n_q} exceeds n_cells {n_cells}"
                    ));
                }
            }
            AttnMask::Ranges { offsets, ranges } | AttnMask::HeadRanges { offsets, ranges, .. } => {
                let n_rows = match *self {
                    AttnMask::HeadRanges { n_head: 0, .. } => {
                        return err("per-head ranges with n_head 0".into())
                    }
                    AttnMask::HeadRanges { n_head, .. } => n_q.saturating_mul(n_head),
                    _ => n_q,
                };
                if offsets.len() != n_rows.saturating_add(1) {
                    return err(format!(
                        "{} offsets for {n_rows} query rows (need n_rows + 1)",
                        offsets.len()
                    ));
                }
                if offsets[n_rows] > ranges.len() {
                    return err(format!(
                        "offsets end at {} but there are {} ranges",
                        offsets[n_rows],
                        ranges.len()
                    ));
                }
                for i in 0..n_rows {
                    let (a, b) = (offsets[i], offsets[i + 1]);
                    if a >= b {
                        return err(format!("row {i}: offsets {a}..{b} give no visible cells"));
                    }
                    let mut prev_end = 0;
                    for (j, r) in ranges[a..b].iter().enumerate() {
                        if r.start >= r.end || r.end > n_cells || (j > 0 && r.start < prev_end) {
                            return err(format!(
                                "row {i}: range {}..{} is empty, unsorted, overlapping or past n_cells {n_cells}",
                                r.start, r.end
                            ));
                        }
                        prev_end = r.end;
                    }
                }
            }
        }
        Ok(())
    }

    /// The visible ranges of query row `i`, head 0 (the mask must have been validated for a
    /// count of rows > i). Per-head masks need [`AttnMask::row_head`].
    pub fn row(&self, i: usize) -> RowRanges<'a> {
        self.row_head(i, 0)
    }

    /// The visible ranges of query row `i`, head `h` (validated as for [`AttnMask::row`]).
    pub fn row_head(&self, i: usize, h: usize) -> RowRanges<'a> {
        match *self {
            AttnMask::Causal { n_past } => RowRanges::One(0..n_past + i + 1),
            AttnMask::Ranges { offsets, ranges } => {
                RowRanges::Many(&ranges[offsets[i]..offsets[i + 1]])
            }
            AttnMask::HeadRanges { n_head, offsets, ranges } => {
                let j = i * n_head + h;
                RowRanges::Many(&ranges[offsets[j]..offsets[j + 1]])
            }
        }
    }

    /// Number of cells query row `i` sees (head 0; a work estimate for per-head masks).
    pub fn visible(&self, i: usize) -> usize {
        self.row(i).iter().map(|r| r.len()).sum()
    }
}

/// Optional outputs of one attention call, computed inside the kernel from the logits and
/// each row's log-sum-exp (no [n_head, n_q, n_cells] probability tensor). A `None` field
/// costs nothing; with every field `None` the call is plain attention.
///
/// The probabilities are those of the call's mask, i.e. after selection when the mask
/// omits dropped pieces.
///
/// `scores_only` turns the call into the scoring pass of selective attention: the extras
/// are computed, V is never read and `out` is left as it was.
///
/// `ape` applies APE's rescaling (PAPER.md §7) to the keys inside its ranges (the pieces):
/// they form one block whose logits are divided by the temperature T and whose
/// log-sum-exp is multiplied by S*T before it is combined with the block of the other keys
/// (sink, query). The extras then describe the combined distribution.
#[derive(Debug, Default)]
pub struct AttnExtras<'a> {
    /// Per-piece group scores: the piece key ranges (cells, non-empty, sorted, disjoint) and
    /// `f32 [n_q, n_head, n_pieces]`: the sum of the `SCORE_TOPK` (5) largest probabilities of
    /// each row and head over that piece's visible keys (0 when the row sees none of them).
    pub group_scores: Option<(&'a [Range<usize>], &'a mut [f32])>,
    /// f32 [n_q, n_head]: attention entropy `-sum p ln p` (natural log) of each row and head.
    pub entropy: Option<&'a mut [f32]>,
    /// f32 [n_q, n_head]: mean |scaled logit| over each row's visible keys (scale diagnostic).
    pub mean_abs_logit: Option<&'a mut [f32]>,
    /// Compute only the requested extras: `out` is not written and V is not read.
    pub scores_only: bool,
    /// APE: the piece key ranges (cells, sorted, disjoint) and T, S.
    pub ape: Option<(&'a [Range<usize>], ApeParams)>,
}

/// APE's piece-block temperature and scale (APE's defaults: T = 0.9, S = 0.9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApeParams {
    /// T: piece logits are divided by it.
    pub temperature: f32,
    /// S: the piece block's log-sum-exp is multiplied by S*T.
    pub scale: f32,
}

impl Default for ApeParams {
    fn default() -> Self {
        ApeParams { temperature: 0.9, scale: 0.9 }
    }
}

impl ApeParams {
    /// Checks T and S are finite and positive.
    pub fn validate(&self) -> Result<(), OpsError> {
        let ok = |x: f32| x.is_finite() && x > 0.0;
        if !ok(self.temperature) || !ok(self.scale) {
            return Err(OpsError::new(
                "ape",
                format!(
                    "temperature {} and scale {} must be finite and positive",
                    self.temperature, self.scale
                ),
            ));
        }
        Ok(())
    }
}

impl AttnExtras<'_> {
    /// Whether no extra output is requested (`scores_only` and `ape` aside).
    pub fn is_empty(&self) -> bool {
        self.group_scores.is_none() && self.entropy.is_none() && self.mean_abs_logit.is_none()
    }

    /// Whether the call is plain attention.
    pub fn is_plain(&self) -> bool {
        self.is_empty() && !self.scores_only && self.ape.is_none()
    }

    /// Number of pieces (0 without group scores).
    pub fn n_pieces(&self) -> usize {
        self.group_scores.as_ref().map_or(0, |(r, _)| r.len())
    }

    /// Checks the output lengths against `n_q` rows of `n_head` heads and the piece ranges
    /// against `n_cells`.
    pub fn check(&self, n_q: usize, n_head: usize, n_cells: usize) -> Result<(), OpsError> {
        let err = |d: String| Err(OpsError::new("attention extras", d));
        let rows = n_q * n_head;
        let check_ranges = |pieces: &[Range<usize>]| {
            let mut prev_end = 0;
            for (m, r) in pieces.iter().enumerate() {
                if r.start >= r.end || r.end > n_cells || (m > 0 && r.start < prev_end) {
                    return err(format!(
                        "piece {m}: range {}..{} is empty, unsorted, overlapping or past n_cells {n_cells}",
                        r.start, r.end
                    ));
                }
                prev_end = r.end;
            }
            Ok(())
        };
        if let Some((pieces, ape)) = &self.ape {
            ape.validate()?;
            check_ranges(pieces)?;
        }
        if let Some((pieces, scores)) = &self.group_scores {
            if pieces.is_empty() {
                return err("group scores requested with no piece ranges".into());
            }
            check_ranges(pieces)?;
            if rows.checked_mul(pieces.len()) != Some(scores.len()) {
                return err(format!(
                    "group scores have {} values, expected n_q {n_q} * n_head {n_head} * n_pieces {}",
                    scores.len(),
                    pieces.len()
                ));
            }
        }
        for (name, buf) in [("entropy", &self.entropy), ("mean_abs_logit", &self.mean_abs_logit)] {
            if let Some(b) = buf {
                if b.len() != rows {
                    return err(format!(
                        "{name} has {} values, expected n_q {n_q} * n_head {n_head}",
                        b.len()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks `x` as whole rows of `row_len` with an `out` of the same length (rms_norm,
/// softmax). Returns the row count.
pub fn check_rows(
    op: &'static str,
    x_len: usize,
    row_len: usize,
    out_len: usize,
) -> Result<usize, OpsError> {
    if row_len == 0 || !x_len.is_multiple_of(row_len) {
        return Err(OpsError::new(op, format!("{x_len} values are not whole rows of {row_len}")));
    }
    if out_len != x_len {
        return Err(OpsError::new(op, format!("out has {out_len} values, x has {x_len}")));
    }
    Ok(x_len / row_len)
}

/// Checks `a += b` where `b` is either as long as `a` or one row broadcast over `a`'s rows.
pub fn check_broadcast(op: &'static str, a_len: usize, b_len: usize) -> Result<(), OpsError> {
    if b_len == 0 || !a_len.is_multiple_of(b_len) {
        return Err(OpsError::new(
            op,
            format!("b has {b_len} values; a has {a_len}, not whole rows of b"),
        ));
    }
    Ok(())
}

/// Checks a KV store of `src: f32 [n_rows, row_len]` into `cache: f16 or f32 [n_cells, row_len]` at
/// cell `cell0`. Returns `n_rows`.
pub fn check_kv_store(
    cache_len: usize,
    cell0: usize,
    row_len: usize,
    src_len: usize,
) -> Result<usize, OpsError> {
    let err = |d: String| Err(OpsError::new("kv_store", d));
    if row_len == 0 || !src_len.is_multiple_of(row_len) {
        return err(format!("src has {src_len} values, not whole rows of {row_len}"));
    }
    let n_rows = src_len / row_len;
    let end = cell0.checked_add(n_rows).and_then(|c| c.checked_mul(row_len));
    if end.is_none_or(|e| e > cache_len) {
        return err(format!(
            "cells {cell0}..{} of {row_len} values do not fit a cache of {cache_len} values",
            cell0.saturating_add(n_rows)
        ));
    }
    Ok(n_rows)
}

#[cfg(test)]
// One-range masks are ordinary inputs here, not a mistaken `vec![a..b]`.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn rope(style: RopeStyle) -> RopeParams {
        RopeParams {
            style,
            head_dim: 64,
            n_rot: 64,
            freq_base: 1e4,
            freq_scale: 1.0,
            freq_factors: None,
        }
    }

    #[test]
    fn rope_validation() {
        assert!(rope(RopeStyle::Norm).validate().is_ok());
        assert!(RopeParams { n_rot: 63, ..rope(RopeStyle::Norm) }.validate().is_err());
        assert!(RopeParams { n_rot: 66, ..rope(RopeStyle::Norm) }.validate().is_err());
        assert!(RopeParams { freq_base: 0.0, ..rope(RopeStyle::Neox) }.validate().is_err());
        let ff = Some(vec![1.0; 31]);
        assert!(RopeParams { freq_factors: ff, ..rope(RopeStyle::Neox) }.validate().is_err());
        let ff = Some(vec![1.0; 32]);
        assert!(RopeParams { freq_factors: ff, ..rope(RopeStyle::Neox) }.validate().is_ok());
        assert!(rope(RopeStyle::Norm).check(2 * 3 * 64, 3, 2).is_ok());
        assert!(rope(RopeStyle::Norm).check(2 * 3 * 64, 3, 3).is_err());
    }

    #[test]
    fn rope_theta() {
        let p = rope(RopeStyle::Norm);
        assert_eq!(p.theta(5, 0), 5.0);
        assert!((p.theta(1, 16) - 1e4f64.powf(-0.5)).abs() < 1e-15);
        let p = RopeParams { freq_factors: Some(vec![2.0; 32]), freq_scale: 0.5, ..p };
        assert_eq!(p.theta(8, 0), 2.0);
    }

    #[test]
    fn attn_params() {
        let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
        assert!(p.validate().is_ok());
        assert_eq!((p.kv_head(0), p.kv_head(2), p.kv_head(3), p.kv_head(8)), (0, 0, 1, 2));
        assert!(AttnParams { n_head_kv: 2, ..p }.validate().is_err());
        assert!(AttnParams { scale: f32::NAN, ..p }.validate().is_err());
        let m = AttnMask::Causal { n_past: 2 };
        assert_eq!(p.check(9 * 64 * 3, 3 * 64 * 5, 3 * 64 * 5, 9 * 64 * 3, &m), Ok((3, 5)));
        assert!(p.check(9 * 64 * 3, 3 * 64 * 4, 3 * 64 * 4, 9 * 64 * 3, &m).is_err());
        assert!(p.check(9 * 64 * 3, 3 * 64 * 5, 3 * 64 * 6, 9 * 64 * 3, &m).is_err());
        assert!(p.check(9 * 64 * 3 + 1, 3 * 64 * 5, 3 * 64 * 5, 9 * 64 * 3 + 1, &m).is_err());
    }

    #[test]
    fn mask_rows() {
        let m = AttnMask::Causal { n_past: 3 };
        assert_eq!(&*m.row(0), &[0..4]);
        assert_eq!(m.visible(2), 6);
        let offsets = [0, 2, 3];
        let ranges = [0..2, 5..7, 0..9];
        let m = AttnMask::Ranges { offsets: &offsets, ranges: &ranges };
        assert!(m.validate(2, 9).is_ok());
        assert_eq!(&*m.row(0), &[0..2, 5..7]);
        assert_eq!(m.visible(0), 4);
        assert!(m.validate(2, 8).is_err()); // 0..9 past n_cells
        assert!(m.validate(1, 9).is_err()); // offsets count
    }

    #[test]
    fn head_ranges() {
        let offsets = [0, 1, 3, 4, 5];
        let ranges = [0..2, 0..1, 3..4, 2..4, 0..4];
        let m = AttnMask::HeadRanges { n_head: 2, offsets: &offsets, ranges: &ranges };
        assert!(m.validate(2, 4).is_ok());
        assert_eq!(&*m.row_head(0, 1), &[0..1, 3..4]);
        assert_eq!(&*m.row_head(1, 0), &[2..4]);
        assert!(m.validate(3, 4).is_err());
        let p = AttnParams { n_head: 2, n_head_kv: 1, head_dim: 1, scale: 1.0 };
        assert!(p.check(4, 4, 4, 4, &m).is_ok());
        let p = AttnParams { n_head: 1, ..p };
        assert!(p.check(2, 4, 4, 2, &m).is_err());
        let m = AttnMask::HeadRanges { n_head: 0, offsets: &[0], ranges: &[] };
        assert!(m.validate(2, 4).is_err());
    }

    #[test]
    fn mask_rejects_bad_ranges() {
        let bad: [&[std::ops::Range<usize>]; 4] = [&[3..3], &[4..6, 5..8], &[5..8, 0..2], &[0..11]];
        for ranges in bad {
            let offsets = [0, ranges.len()];
            let m = AttnMask::Ranges { offsets: &offsets, ranges };
            assert!(m.validate(1, 10).is_err(), "{ranges:?}");
        }
        let m = AttnMask::Ranges { offsets: &[0, 0], ranges: &[] };
        assert!(m.validate(1, 10).is_err());
        let m = AttnMask::Ranges { offsets: &[0, 2], ranges: &[0..1] };
        assert!(m.validate(1, 10).is_err());
        let m = AttnMask::Ranges { offsets: &[1, 0, 1], ranges: &[0..1] };
        assert!(m.validate(2, 10).is_err());
        assert!(AttnMask::Causal { n_past: 8 }.validate(3, 10).is_err());
        assert!(AttnMask::Causal { n_past: usize::MAX }.validate(3, 10).is_err());
    }

    #[test]
    fn shape_helpers() {
        assert_eq!(check_rows("rms_norm", 12, 4, 12), Ok(3));
        assert!(check_rows("rms_norm", 12, 5, 12).is_err());
        assert!(check_rows("rms_norm", 12, 4, 8).is_err());
        assert!(check_broadcast("add", 12, 4).is_ok());
        assert!(check_broadcast("add", 12, 5).is_err());
        assert!(check_broadcast("add", 12, 0).is_err());
        assert_eq!(check_kv_store(40, 2, 4, 8), Ok(2));
        assert!(check_kv_store(40, 9, 4, 8).is_err());
        assert!(check_kv_store(40, usize::MAX, 4, 8).is_err());
    }
}
