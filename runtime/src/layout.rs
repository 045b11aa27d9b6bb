//! Parallel context encoding: where every token of a request sits (KV cell, RoPE position,
//! piece) and what it may attend to. Host-side policy, identical for every backend; no
//! backend calls (PAPER.md §1–§3).
//!
//! A request is an optional shared **sink**, `P` **pieces** encoded independently of each
//! other, and a **query**. Cells are laid out in that order starting at KV cell 0:
//! `sink | piece 0 | piece 1 | ... | piece P-1 | query | generated...`.
//!
//! Visibility (`key <= query && (different piece || same item)` in DESIGN.md terms):
//! - a sink token sees earlier sink tokens (plain causal);
//! - a piece token sees the whole sink and the earlier tokens of its own piece;
//! - a query (or generated) token sees the sink, every kept piece and earlier query tokens.
//!
//! With one piece this is exactly ordinary causal attention over sink + piece + query.

use crate::ops::AttnMask;
use crate::selection::KeepSets;
use std::fmt;
use std::ops::Range;

/// One parallel-encoding request, as token ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// Shared prefix every piece sees (PAPER.md §3); `None` = no sink.
    pub sink: Option<Vec<u32>>,
    /// The documents / demonstrations / chunks, encoded independently.
    pub pieces: Vec<Vec<u32>>,
    /// The question or continuation; sees everything.
    pub query: Vec<u32>,
}

/// Where each piece's tokens sit on the RoPE axis (PAPER.md §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PositionPolicy {
    /// The authors' default: piece token i of a piece of length `len` gets
    /// `n + floor(i * Lmax / len)`, so every piece spans the longest piece's positions.
    #[default]
    Even,
    /// `n + i` (Parallel Context Windows, APE).
    Left,
    /// `n + Lmax - len + i`: every piece ends where the longest one ends.
    Right,
    /// Ordinary consecutive positions, as if the pieces were one text (an ablation; the
    /// pieces still do not see each other).
    Sequential,
}

impl fmt::Display for PositionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Even => "even",
            Self::Left => "left",
            Self::Right => "right",
            Self::Sequential => "sequential",
        })
    }
}

/// Where BOS tokens go (PAPER.md §3: the authors add none; adding one silently per piece
/// changes the baseline, so this is explicit and reported).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum BosPolicy {
    /// No BOS anywhere (the authors' setting).
    #[default]
    None,
    /// One BOS at cell 0, before the sink: itself a shared sink every piece sees.
    Shared,
    /// One BOS at the start of every piece (Parallel Context Windows). With
    /// [`LayoutConfig::hide_extra_bos`] the query sees only the first piece's BOS.
    PerPiece,
}

impl fmt::Display for BosPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Shared => "shared",
            Self::PerPiece => "per-piece",
        })
    }
}

/// How to lay a request out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutConfig {
    pub positions: PositionPolicy,
    pub bos: BosPolicy,
    /// The model's BOS id; required unless `bos` is [`BosPolicy::None`].
    pub bos_token: Option<u32>,
    /// PCW: query-side tokens do not see the BOS of pieces 1..P (only piece 0's BOS is kept).
    /// Only meaningful with [`BosPolicy::PerPiece`].
    pub hide_extra_bos: bool,
    /// KV cells available (`n_ctx`): the whole layout must fit.
    pub n_ctx: usize,
    /// Largest usable RoPE position + 1 (the model's training context, or `n_ctx`):
    /// positions at or past it are an error.
    pub n_ctx_train: usize,
}

impl LayoutConfig {
    /// Defaults of the paper (even positions, no BOS) for a context of `n_ctx` cells whose
    /// positions are also bounded by `n_ctx`.
    pub fn new(n_ctx: usize) -> Self {
        Self {
            positions: PositionPolicy::Even,
            bos: BosPolicy::None,
            bos_token: None,
            hide_extra_bos: false,
            n_ctx,
            n_ctx_train: n_ctx,
        }
    }
}

/// A request that cannot be laid out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("request has no pieces")]
    NoPieces,
    #[error("piece {0} is empty")]
    EmptyPiece(usize),
    #[error("query is empty")]
    EmptyQuery,
    #[error("BOS policy {0} needs the model's BOS token, and none was given")]
    NoBosToken(BosPolicy),
    #[error("layout needs {need} KV cells, the context has {n_ctx}")]
    TooManyCells { need: usize, n_ctx: usize },
    #[error("layout reaches position {max_pos}, the model's context is {n_ctx_train}")]
    PositionOverflow { max_pos: usize, n_ctx_train: usize },
    #[error("keep set has {got} entries, the layout has {n_pieces} pieces")]
    KeepLength { got: usize, n_pieces: usize },
    #[error("keep sets are for {got} tokens, the batch has {n_rows} rows")]
    KeepRows { got: usize, n_rows: usize },
    #[error("rows at cells {first}..{end} are not query-side cells (query starts at {query_start}, n_ctx {n_ctx})")]
    BadRows { first: usize, end: usize, query_start: usize, n_ctx: usize },
    #[error(
        "rows at cells {first}..{end} are not sink or piece cells (query starts at {query_start})"
    )]
    NotContextRows { first: usize, end: usize, query_start: usize },
}

/// What a cell holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    Sink,
    Piece,
    Query,
}

/// Per-cell metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    pub token: u32,
    /// RoPE position.
    pub pos: i32,
    /// Piece index for piece cells, `None` for sink and query cells.
    pub piece: Option<u32>,
    pub kind: CellKind,
    /// Whether this cell is a BOS the layout inserted (not part of the request's tokens).
    pub bos: bool,
}

/// Owned data of an [`AttnMask::Ranges`] (query row i sees `ranges[offsets[i]..offsets[i+1]]`)
/// or, with `n_head` set, of an [`AttnMask::HeadRanges`] (one entry per (row, head)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskRanges {
    /// `Some(n_head)` for a per-head mask.
    pub n_head: Option<usize>,
    /// [n_entries + 1]; an entry is a row, or a (row, head) pair of a per-head mask.
    pub offsets: Vec<usize>,
    /// Cell ranges, sorted and disjoint per entry; adjacent ranges are merged.
    pub ranges: Vec<Range<usize>>,
}

impl MaskRanges {
    pub fn as_mask(&self) -> AttnMask<'_> {
        match self.n_head {
            None => AttnMask::Ranges { offsets: &self.offsets, ranges: &self.ranges },
            Some(n_head) => {
                AttnMask::HeadRanges { n_head, offsets: &self.offsets, ranges: &self.ranges }
            }
        }
    }

    /// Number of query rows.
    pub fn n_rows(&self) -> usize {
        self.offsets.len().saturating_sub(1) / self.n_head.unwrap_or(1).max(1)
    }

    pub(crate) fn new() -> Self {
        Self { n_head: None, offsets: vec![0], ranges: Vec::new() }
    }

    /// Appends `r` to the row being built, merging it with the previous range when they touch.
    pub(crate) fn push(&mut self, r: Range<usize>) {
        if r.is_empty() {
            return;
        }
        let row_start = *self.offsets.last().unwrap_or(&0);
        if self.ranges.len() > row_start {
            if let Some(last) = self.ranges.last_mut() {
                if last.end == r.start {
                    last.end = r.end;
                    return;
                }
            }
        }
        self.ranges.push(r);
    }

    pub(crate) fn end_row(&mut self) {
        self.offsets.push(self.ranges.len());
    }
}

/// A request laid out in KV cells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// One per cell, in cell order.
    cells: Vec<Cell>,
    sink: Range<usize>,
    pieces: Vec<Range<usize>>,
    query: Range<usize>,
    /// Longest piece, in cells (BOS included).
    l_max: usize,
    /// Position of the first query token.
    query_pos: usize,
    positions: PositionPolicy,
    bos: BosPolicy,
    hide_extra_bos: bool,
    n_ctx: usize,
}

impl Layout {
    /// Lays `req` out: cells, positions and BOS per `cfg`.
    pub fn build(req: &Request, cfg: &LayoutConfig) -> Result<Layout, LayoutError> {
        if req.pieces.is_empty() {
            return Err(LayoutError::NoPieces);
        }
        if let Some(p) = req.pieces.iter().position(|p| p.is_empty()) {
            return Err(LayoutError::EmptyPiece(p));
        }
        if req.query.is_empty() {
            return Err(LayoutError::EmptyQuery);
        }
        let bos_token = match (cfg.bos, cfg.bos_token) {
            (BosPolicy::None, _) => None,
            (b, None) => return Err(LayoutError::NoBosToken(b)),
            (_, Some(t)) => Some(t),
        };
        let sink_len =
            req.sink.as_ref().map_or(0, |s| s.len()) + usize::from(cfg.bos == BosPolicy::Shared);
        let piece_bos = usize::from(cfg.bos == BosPolicy::PerPiece);
        let piece_lens: Vec<usize> = req.pieces.iter().map(|p| p.len() + piece_bos).collect();
        let l_max = piece_lens.iter().copied().max().unwrap_or(0);
        let total_pieces: usize = piece_lens.iter().sum();
        let n_cells = sink_len + total_pieces + req.query.len();
        if n_cells > cfg.n_ctx {
            return Err(LayoutError::TooManyCells { need: n_cells, n_ctx: cfg.n_ctx });
        }
        let query_pos = sink_len
            + match cfg.positions {
                PositionPolicy::Sequential => total_pieces,
                _ => l_max,
            };
        // The last query token's position; positions must stay below n_ctx_train (and i32).
        let max_pos = query_pos + req.query.len() - 1;
        if max_pos >= cfg.n_ctx_train || max_pos > i32::MAX as usize {
            return Err(LayoutError::PositionOverflow { max_pos, n_ctx_train: cfg.n_ctx_train });
        }

        let mut cells = Vec::with_capacity(n_cells);
        let cell = |token, pos: usize, piece, kind, bos| Cell {
            token,
            pos: pos as i32, // < n_ctx_train and <= i32::MAX: checked above
            piece,
            kind,
            bos,
        };
        if let (BosPolicy::Shared, Some(b)) = (cfg.bos, bos_token) {
            cells.push(cell(b, 0, None, CellKind::Sink, true));
        }
        for &t in req.sink.iter().flatten() {
            cells.push(cell(t, cells.len(), None, CellKind::Sink, false));
        }
        let sink = 0..cells.len();
        let mut pieces = Vec::with_capacity(req.pieces.len());
        let mut seq_start = sink_len; // Sequential: where the next piece starts
        for (p, toks) in req.pieces.iter().enumerate() {
            let len = piece_lens[p];
            let start = cells.len();
            let bos = bos_token.filter(|_| piece_bos == 1);
            let tokens = bos.into_iter().chain(toks.iter().copied());
            for (i, t) in tokens.enumerate() {
                let off = match cfg.positions {
                    PositionPolicy::Even => i * l_max / len,
                    PositionPolicy::Left => i,
                    PositionPolicy::Right => l_max - len + i,
                    PositionPolicy::Sequential => seq_start - sink_len + i,
                };
                let is_bos = bos.is_some() && i == 0;
                cells.push(cell(t, sink_len + off, Some(p as u32), CellKind::Piece, is_bos));
            }
            seq_start += len;
            pieces.push(start..cells.len());
        }
        let q0 = cells.len();
        for (j, &t) in req.query.iter().enumerate() {
            cells.push(cell(t, query_pos + j, None, CellKind::Query, false));
        }
        let query = q0..cells.len();
        Ok(Layout {
            cells,
            sink,
            pieces,
            query,
            l_max,
            query_pos,
            positions: cfg.positions,
            bos: cfg.bos,
            hide_extra_bos: cfg.hide_extra_bos && cfg.bos == BosPolicy::PerPiece,
            n_ctx: cfg.n_ctx,
        })
    }

    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    pub fn n_cells(&self) -> usize {
        self.cells.len()
    }

    pub fn n_pieces(&self) -> usize {
        self.pieces.len()
    }

    /// Cells of the sink (BOS included with [`BosPolicy::Shared`]); empty without a sink.
    pub fn sink(&self) -> Range<usize> {
        self.sink.clone()
    }

    /// Cells of piece `p` (its BOS included with [`BosPolicy::PerPiece`]).
    pub fn piece(&self, p: usize) -> Range<usize> {
        self.pieces[p].clone()
    }

    /// Cells of every piece, sorted and disjoint: the key groups of selective attention.
    pub fn pieces(&self) -> &[Range<usize>] {
        &self.pieces
    }

    pub fn query(&self) -> Range<usize> {
        self.query.clone()
    }

    /// Longest piece in cells (`Lmax` of PAPER.md §2).
    pub fn l_max(&self) -> usize {
        self.l_max
    }

    pub fn position_policy(&self) -> PositionPolicy {
        self.positions
    }

    /// The BOS policy in force (to be reported with every result).
    pub fn bos_policy(&self) -> BosPolicy {
        self.bos
    }

    /// Number of BOS cells the layout inserted.
    pub fn n_bos(&self) -> usize {
        self.cells.iter().filter(|c| c.bos).count()
    }

    /// Token ids of `cells` (for the embedding lookup of one batch).
    pub fn tokens(&self, cells: Range<usize>) -> Vec<u32> {
        self.cells[cells].iter().map(|c| c.token).collect()
    }

    /// RoPE positions of `cells`.
    pub fn positions(&self, cells: Range<usize>) -> Vec<i32> {
        self.cells[cells].iter().map(|c| c.pos).collect()
    }

    /// Position of generated token `k` (0 = the first token after the query).
    pub fn generated_pos(&self, k: usize) -> usize {
        self.query_pos + self.query.len() + k
    }

    /// Whether a query-side token sees key cell `key` with every piece kept. Cells past the
    /// layout (generated tokens) count as query cells.
    fn query_sees(&self, key: usize) -> bool {
        let Some(c) = self.cells.get(key) else { return true };
        !(self.hide_extra_bos && c.bos && c.kind == CellKind::Piece && c.piece != Some(0))
    }

    /// The visibility rule: may the token at cell `row` attend to cell `key` (every piece
    /// kept)? Cells past the layout are generated tokens.
    pub fn visible(&self, row: usize, key: usize) -> bool {
        if key > row {
            return false;
        }
        let kind = |c: usize| self.cells.get(c).map_or(CellKind::Query, |c| c.kind);
        match kind(row) {
            CellKind::Sink => true,
            CellKind::Piece => {
                kind(key) == CellKind::Sink || self.cells[key].piece == self.cells[row].piece
            }
            CellKind::Query => self.query_sees(key),
        }
    }

    /// Mask of the sink batch: plain causal from cell 0.
    pub fn attn_mask_for_sink(&self) -> AttnMask<'static> {
        AttnMask::Causal { n_past: 0 }
    }

    /// Mask of piece `p` encoded as one batch (rows = the piece's cells in order): each row
    /// sees the sink and its own piece's prefix. Encoding every piece this way over one sink
    /// equals one pass with the block-diagonal mask.
    pub fn attn_mask_for_piece(&self, p: usize) -> MaskRanges {
        let piece = self.piece(p);
        let mut m = MaskRanges::new();
        for row in piece.clone() {
            m.push(self.sink());
            m.push(piece.start..row + 1);
            m.end_row();
        }
        m
    }

    /// Mask of `n_rows` sink or piece rows at cells `first..first + n_rows` (one batch of
    /// the encoding before the query; it may span several pieces): a sink row sees the sink
    /// up to itself, a piece row the whole sink and its own piece up to itself.
    pub fn attn_mask_for_context_rows(
        &self,
        first: usize,
        n_rows: usize,
    ) -> Result<MaskRanges, LayoutError> {
        let end = first.saturating_add(n_rows);
        if end > self.query.start {
            return Err(LayoutError::NotContextRows { first, end, query_start: self.query.start });
        }
        let mut m = MaskRanges::new();
        for row in first..end {
            match self.cells[row].piece {
                None => m.push(0..row + 1),
                Some(p) => {
                    m.push(self.sink());
                    m.push(self.pieces[p as usize].start..row + 1);
                }
            }
            m.end_row();
        }
        Ok(m)
    }

    /// Mask of the query batch: each row sees the sink, the kept pieces (all when `keep` is
    /// `None`; `keep: [n_pieces]`) and the query up to itself.
    pub fn attn_mask_for_query(&self, keep: Option<&[bool]>) -> Result<MaskRanges, LayoutError> {
        self.attn_mask_for_rows(self.query.start, self.query.len(), keep)
    }

    /// Mask of `n_rows` query-side rows at cells `first..first + n_rows` (the query, or
    /// generated tokens after it: decode passes `first = n_cells + k`), one keep set for all.
    pub fn attn_mask_for_rows(
        &self,
        first: usize,
        n_rows: usize,
        keep: Option<&[bool]>,
    ) -> Result<MaskRanges, LayoutError> {
        self.check_rows(first, n_rows)?;
        if let Some(k) = keep {
            if k.len() != self.n_pieces() {
                return Err(LayoutError::KeepLength { got: k.len(), n_pieces: self.n_pieces() });
            }
        }
        let mut m = MaskRanges::new();
        for row in first..first + n_rows {
            self.push_query_row(&mut m, row, keep);
        }
        Ok(m)
    }

    /// Mask of `n_rows` query-side rows at cells `first..` with the keep sets of a selection
    /// over exactly those rows (`sets.n_tokens == n_rows`, `sets.n_pieces == n_pieces`):
    /// a per-row mask when the sets are pooled over heads, else a per-(row, head) mask.
    pub fn attn_mask_for_keep_sets(
        &self,
        first: usize,
        n_rows: usize,
        sets: &KeepSets,
    ) -> Result<MaskRanges, LayoutError> {
        self.check_rows(first, n_rows)?;
        if sets.n_pieces != self.n_pieces() {
            return Err(LayoutError::KeepLength { got: sets.n_pieces, n_pieces: self.n_pieces() });
        }
        if sets.n_tokens != n_rows {
            return Err(LayoutError::KeepRows { got: sets.n_tokens, n_rows });
        }
        let mut m = MaskRanges::new();
        let n_head = if sets.per_token() { 1 } else { sets.n_head };
        if !sets.per_token() {
            m.n_head = Some(n_head);
        }
        for (t, row) in (first..first + n_rows).enumerate() {
            for h in 0..n_head {
                self.push_query_row(&mut m, row, Some(sets.get(t, h)));
            }
        }
        Ok(m)
    }

    fn check_rows(&self, first: usize, n_rows: usize) -> Result<(), LayoutError> {
        let end = first.saturating_add(n_rows);
        if first < self.query.start || end > self.n_ctx {
            return Err(LayoutError::BadRows {
                first,
                end,
                query_start: self.query.start,
                n_ctx: self.n_ctx,
            });
        }
        Ok(())
    }

    /// One query-side entry: sink + kept pieces (minus hidden BOS cells) + query up to `row`.
    fn push_query_row(&self, m: &mut MaskRanges, row: usize, keep: Option<&[bool]>) {
        m.push(self.sink());
        for (p, r) in self.pieces.iter().enumerate() {
            if keep.is_some_and(|k| !k[p]) {
                continue;
            }
            let start = if self.query_sees(r.start) { r.start } else { r.start + 1 };
            m.push(start..r.end);
        }
        m.push(self.query.start..row + 1);
        m.end_row();
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
