//! Parallel context encoding end to end (PAPER.md §1–§5): a request (sink, pieces, query)
//! is laid out in KV cells, the sink and every piece are encoded with the block-diagonal
//! visibility rule (batched through the GEMM path: a micro-batch may hold several pieces,
//! which still never see each other), then the query and generated tokens attend to
//! everything, optionally with selective attention in every layer, APE's rescaling, and an
//! observer recording attention entropy.
//!
//! Re-use: when the next request has the same sink and pieces (same tokens, positions and
//! BOS), their cells are kept and only the query is encoded (a second question over the same
//! documents; `weft chat --doc`). Pieces encoded for other requests come from the
//! [`DocCache`] when one is attached.
//!
//! The crate docs ([`crate`]) show the whole API in one example.

use crate::backend::Backend;
use crate::doc_cache::{DocCache, DocKey};
use crate::engine::{
    decode_tokens, DecodeStats, DecodeTarget, EngineConfig, EngineError, GenerateParams,
};
use crate::kv_cache::{CellMeta, KvCache};
use crate::layout::{BosPolicy, CellKind, Layout, LayoutConfig, PositionPolicy, Request};
use crate::model::{ForwardBatch, ForwardState, Model, Selection};
use crate::observer::{AttnStats, ForwardObserver};
use crate::ops::ApeParams;
use crate::sampling::Sampler;
use crate::selection::Pooling;
use crate::tokenizer::Tokenizer;
use std::fmt;
use std::ops::Range;
use std::time::{Duration, Instant};

/// How pieces are combined (PAPER.md §1–§4 and §7).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Mode {
    /// The paper's method: the configured positions, BOS policy and selection.
    #[default]
    Paper,
    /// APE: left-aligned pieces; query-side attention divides piece logits by T and scales
    /// the piece block's log-sum-exp by S*T.
    Ape { temperature: f32, scale: f32 },
    /// Parallel Context Windows: left-aligned pieces, a BOS per piece of which the query
    /// sees only the first.
    Pcw,
}

impl Mode {
    /// APE with its defaults T = 0.9, S = 0.9.
    pub fn ape() -> Mode {
        let d = ApeParams::default();
        Mode::Ape { temperature: d.temperature, scale: d.scale }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Paper => f.write_str("paper"),
            Mode::Ape { temperature, scale } => write!(f, "ape(T={temperature},S={scale})"),
            Mode::Pcw => f.write_str("pcw"),
        }
    }
}

/// Options of one parallel encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelConfig {
    pub positions: PositionPolicy,
    pub bos: BosPolicy,
    /// The model's BOS id (needed by `BosPolicy::Shared`/`PerPiece` and by PCW).
    pub bos_token: Option<u32>,
    pub mode: Mode,
    /// Pieces kept by selective attention (0: off).
    pub select_k: usize,
    pub pooling: Pooling,
    /// Record attention statistics of the query tokens ([`ParallelEngine::stats`]).
    pub observe: bool,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            positions: PositionPolicy::Even,
            bos: BosPolicy::None,
            bos_token: None,
            mode: Mode::Paper,
            select_k: 0,
            pooling: Pooling::HeadsTokens,
            observe: false,
        }
    }
}

impl ParallelConfig {
    /// The layout rules this configuration implies (PCW and APE fix positions and BOS).
    pub fn layout_config(&self, n_ctx: usize, n_ctx_train: usize) -> LayoutConfig {
        let mut c = LayoutConfig::new(n_ctx);
        c.n_ctx_train = n_ctx_train.max(1);
        c.bos_token = self.bos_token;
        c.positions = self.positions;
        c.bos = self.bos;
        match self.mode {
            Mode::Paper => {}
            Mode::Ape { .. } => c.positions = PositionPolicy::Left,
            Mode::Pcw => {
                c.positions = PositionPolicy::Left;
                c.bos = BosPolicy::PerPiece;
                c.hide_extra_bos = true;
            }
        }
        c
    }
}

/// Counts and timing of one encode.
#[derive(Clone, Copy, Debug, Default)]
pub struct EncodeStats {
    /// Sink and piece cells kept from the previous request.
    pub n_reused: usize,
    /// Sink and piece cells copied from the document cache.
    pub n_cached: usize,
    /// Sink and piece cells evaluated.
    pub n_context_eval: usize,
    /// Query cells evaluated.
    pub n_query: usize,
    /// Time of the sink and piece encoding (cache look-ups included).
    pub context_time: Duration,
    /// Time of the query encoding (logits included).
    pub query_time: Duration,
}

/// A model and a KV cache running parallel-encoding requests.
pub struct ParallelEngine<'m, 'a, B: Backend> {
    model: &'m Model<'a, B>,
    kv: KvCache<B>,
    st: ForwardState<B>,
    n_ubatch: usize,
    n_out: usize,
    /// the layout whose cells fill the cache (the last encoded request)
    layout: Option<Layout>,
    /// mode and selection of the last request, used again while decoding
    cfg: ParallelConfig,
    /// tokens generated after the query so far
    n_gen: usize,
    /// f32 [n_vocab]: logits of the last evaluated token
    logits: Vec<f32>,
    /// f32 [n_out, n_vocab]: host copy of a block of logit rows
    rows: Vec<f32>,
    stats: Option<AttnStats>,
    doc_cache: Option<DocCache>,
    /// tokens generated after the query, in cell order
    gen_tokens: Vec<u32>,
}

impl<'m, 'a, B: Backend> ParallelEngine<'m, 'a, B> {
    pub fn new(model: &'m Model<'a, B>, cfg: EngineConfig) -> Result<Self, EngineError> {
        let n_ubatch = cfg.n_ubatch.clamp(1, cfg.n_ctx.max(1));
        let n_out = cfg.n_out.clamp(1, n_ubatch);
        let kv = KvCache::new(model.backend(), &model.hparams, cfg.n_ctx, cfg.kv_type)?;
        let st = ForwardState::new(model, n_ubatch, n_out)?;
        let n_vocab = model.n_vocab();
        Ok(ParallelEngine {
            model,
            kv,
            st,
            n_ubatch,
            n_out,
            layout: None,
            cfg: ParallelConfig::default(),
            n_gen: 0,
            logits: vec![0.0; n_vocab],
            rows: vec![0.0; n_out * n_vocab],
            stats: None,
            doc_cache: None,
            gen_tokens: Vec::new(),
        })
    }

    /// Attach a document cache: pieces are looked up before they are encoded and stored
    /// after.
    pub fn set_doc_cache(&mut self, cache: DocCache) {
        self.doc_cache = Some(cache);
    }

    pub fn doc_cache(&self) -> Option<&DocCache> {
        self.doc_cache.as_ref()
    }

    pub fn model(&self) -> &'m Model<'a, B> {
        self.model
    }

    pub fn n_ctx(&self) -> usize {
        self.kv.n_ctx()
    }

    /// The KV cache (read-only: its cells and their K/V).
    pub fn kv_cache(&self) -> &KvCache<B> {
        &self.kv
    }

    /// The layout of the last encoded request.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// Logits of the last evaluated token (f32 [n_vocab]).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Observer results of the last encode's query tokens (with `observe`).
    pub fn stats(&self) -> Option<&AttnStats> {
        self.stats.as_ref()
    }

    /// Forget everything in the cache (the document cache is kept).
    pub fn clear(&mut self) {
        self.kv.clear();
        self.layout = None;
        self.n_gen = 0;
    }

    /// Encode `req`; the last query token's logits are then in [`ParallelEngine::logits`].
    pub fn encode(
        &mut self,
        req: &Request,
        cfg: &ParallelConfig,
    ) -> Result<EncodeStats, EngineError> {
        let last = req.query.len().saturating_sub(1);
        let mut logits = std::mem::take(&mut self.logits);
        let r = self.encode_rows(req, cfg, last..req.query.len(), |_, l| {
            logits.copy_from_slice(l);
            Ok(())
        });
        self.logits = logits;
        r
    }

    /// Encode `req`, calling `f(i, logits)` for every query index `i` in `rows` in order
    /// (the logits at query token i predict query token i + 1). [`ParallelEngine::logits`]
    /// then holds the last query token's logits only if `rows` ends at the query's end.
    pub fn encode_rows<F>(
        &mut self,
        req: &Request,
        cfg: &ParallelConfig,
        rows: Range<usize>,
        mut f: F,
    ) -> Result<EncodeStats, EngineError>
    where
        F: FnMut(usize, &[f32]) -> Result<(), EngineError>,
    {
        let hp = &self.model.hparams;
        let layout = Layout::build(req, &cfg.layout_config(self.kv.n_ctx(), hp.n_ctx_train))?;
        if let Mode::Ape { temperature, scale } = cfg.mode {
            ApeParams { temperature, scale }.validate().map_err(EngineError::Config)?;
        }
        if rows.start > rows.end || rows.end > req.query.len() {
            return Err(EngineError::Config(crate::ops::OpsError::new(
                "encode",
                format!("query rows {rows:?} outside the query of {} tokens", req.query.len()),
            )));
        }
        let mut stats = EncodeStats::default();
        let t0 = Instant::now();
        let q0 = layout.query().start;
        let reuse = self.layout.as_ref().is_some_and(|prev| {
            let p = prev.query().start;
            p == q0 && prev.cells()[..p] == layout.cells()[..q0] && self.kv.len() >= q0
        });
        self.layout = None; // the cache is inconsistent until this encode succeeds
        self.n_gen = 0;
        self.cfg = cfg.clone();
        let mut obs = cfg.observe.then(|| AttnStats::new(hp.n_layer, hp.n_head));
        if reuse {
            self.kv.truncate(q0);
            stats.n_reused = q0;
        } else {
            self.kv.clear();
            let metas: Vec<CellMeta> = layout.cells()[..q0].iter().map(cell_meta).collect();
            self.kv.push(&metas)?;
            let (n_eval, n_cached) = self.encode_context(&layout)?;
            stats.n_context_eval = n_eval;
            stats.n_cached = n_cached;
        }
        if let Some(o) = obs.as_mut() {
            self.observe_piece_starts(&layout, o)?;
        }
        stats.context_time = t0.elapsed();

        let t1 = Instant::now();
        let query = layout.query();
        let metas: Vec<CellMeta> = layout.cells()[query.clone()].iter().map(cell_meta).collect();
        self.kv.push(&metas)?;
        let n_vocab = self.model.n_vocab();
        for start in (0..query.len()).step_by(self.n_ubatch) {
            let n = (query.len() - start).min(self.n_ubatch);
            let first = query.start + start;
            let mask = layout.attn_mask_for_rows(first, n, None)?;
            let observer = obs.as_mut().map(|stats| ForwardObserver { stats, attention: true });
            // Rows of this micro-batch that want logits (at least one row runs to the end).
            let (lo, hi) = (rows.start.max(start), rows.end.min(start + n));
            let out = if lo < hi { lo - start..hi - start } else { n - 1..n };
            self.forward_query(&layout, first, n, &mask, out, observer)?;
            let mut r = lo;
            while r < hi {
                let c = (hi - r).min(self.n_out);
                let out = &mut self.rows[..c * n_vocab];
                self.model.logits(&mut self.st, r - start..r - start + c, out)?;
                for j in 0..c {
                    f(r + j, &out[j * n_vocab..(j + 1) * n_vocab])?;
                }
                r += c;
            }
        }
        stats.n_query = query.len();
        stats.query_time = t1.elapsed();
        self.stats = obs;
        self.layout = Some(layout);
        Ok(stats)
    }

    /// Encodes the sink and piece cells (already claimed), from the document cache where
    /// possible. Returns (cells evaluated, cells copied from the cache).
    fn encode_context(&mut self, layout: &Layout) -> Result<(usize, usize), EngineError> {
        // Which context cells must be computed: all, minus the cached sink and pieces.
        let q0 = layout.query().start;
        let mut todo = vec![true; q0];
        let mut n_cached = 0;
        // (cells, key) of the sink (when there is one) and of every piece.
        let mut parts: Vec<(Range<usize>, DocKey)> = Vec::new();
        if let Some(cache) = self.doc_cache.as_mut() {
            let ty = self.kv.kv_type();
            parts.extend(cache.sink_key(layout, ty).map(|k| (layout.sink(), k)));
            parts.extend(
                (0..layout.n_pieces()).map(|p| (layout.piece(p), cache.key(layout, p, ty))),
            );
            for (range, key) in &parts {
                if cache.load(key, self.model.backend(), &mut self.kv, range.clone())? {
                    todo[range.clone()].fill(false);
                    n_cached += range.len();
                }
            }
        }
        let mut n_eval = 0;
        let mut c = 0;
        while c < q0 {
            if !todo[c] {
                c += 1;
                continue;
            }
            let n = todo[c..].iter().take(self.n_ubatch).take_while(|&&t| t).count();
            let mask = layout.attn_mask_for_context_rows(c, n)?;
            let tokens = layout.tokens(c..c + n);
            let positions = layout.positions(c..c + n);
            let mut batch = ForwardBatch::new(&tokens, &positions, c, c + n, mask.as_mask());
            batch.out_rows = Some(n - 1..n); // no logits are needed from the context
            self.model.forward(&mut self.kv, &mut self.st, &batch)?;
            n_eval += n;
            c += n;
        }
        if let Some(cache) = self.doc_cache.as_mut() {
            for (range, key) in parts {
                if todo[range.start] {
                    cache.store(key, self.model.backend(), &self.kv, range)?;
                }
            }
        }
        Ok((n_eval, n_cached))
    }

    /// Records the k norms of every piece's first cell, read back from the cache (so it
    /// works whether the pieces were computed, re-used or loaded).
    fn observe_piece_starts(&self, layout: &Layout, o: &mut AttnStats) -> Result<(), EngineError> {
        let hp = &self.model.hparams;
        let row = self.kv.row_len();
        let n = layout.n_pieces();
        let ty = self.kv.kv_type();
        // kv_type [row] as little-endian bytes: one K row read back.
        let mut bytes = vec![0u8; row * ty.type_size()];
        // f32 [n_layer, n_pieces, row]: K of the first cells.
        let mut k = vec![0f32; hp.n_layer * n * row];
        for (l, k_layer) in k.chunks_mut(n * row).enumerate() {
            let (k_cache, _) = self.kv.layer(l);
            for (r, dst) in layout.pieces().iter().zip(k_layer.chunks_mut(row)) {
                self.model
                    .backend()
                    .kv_read(k_cache, r.start * row, &mut bytes)
                    .map_err(|e| EngineError::Model(crate::model::backend_err(e)))?;
                ty.decode_f32(&bytes, dst);
            }
        }
        o.add_piece_start_k(&k, hp.head_dim);
        Ok(())
    }

    /// One forward of `n` query-side rows at cells `first..` (cells claimed) with the
    /// request's selection and APE settings.
    fn forward_query(
        &mut self,
        layout: &Layout,
        first: usize,
        n: usize,
        mask: &crate::layout::MaskRanges,
        out_rows: Range<usize>,
        observer: Option<ForwardObserver<'_>>,
    ) -> Result<(), EngineError> {
        let cells = &self.kv.cells()[first..first + n];
        let tokens: Vec<u32> = (first..first + n).map(|c| self.cell_token(layout, c)).collect();
        let positions: Vec<i32> = cells.iter().map(|m| m.pos).collect();
        let mut batch = ForwardBatch::new(&tokens, &positions, first, first + n, mask.as_mask());
        batch.out_rows = Some(out_rows);
        if self.cfg.select_k > 0 {
            batch.selection = Some(Selection {
                groups: layout.pieces(),
                top_k: self.cfg.select_k,
                pooling: self.cfg.pooling,
            });
        }
        if let Mode::Ape { temperature, scale } = self.cfg.mode {
            batch.ape = Some((layout.pieces(), ApeParams { temperature, scale }));
        }
        self.model.forward_observed(&mut self.kv, &mut self.st, &batch, observer)?;
        Ok(())
    }

    fn cell_token(&self, layout: &Layout, cell: usize) -> u32 {
        match layout.cells().get(cell) {
            Some(c) => c.token,
            None => self.gen_tokens[cell - layout.n_cells()],
        }
    }

    /// Sample and evaluate tokens after [`ParallelEngine::encode`], streaming text to
    /// `on_text` (return `false` to stop). Generated tokens see everything the query sees,
    /// with the same selection.
    pub fn decode<F>(
        &mut self,
        tokenizer: &Tokenizer,
        sampler: &mut Sampler,
        params: &GenerateParams,
        on_text: F,
    ) -> Result<DecodeStats, EngineError>
    where
        F: FnMut(&str) -> bool,
    {
        let layout = self.layout.take().ok_or(EngineError::NothingEncoded)?;
        let mut target = Generating { engine: self, layout: &layout };
        let r = decode_tokens(&mut target, tokenizer, sampler, params, on_text);
        self.layout = Some(layout);
        r
    }

    /// Appends one generated token after the query (or the previous generated token).
    pub fn eval_generated(&mut self, layout: &Layout, id: u32) -> Result<&[f32], EngineError> {
        let cell = self.kv.len();
        let pos = layout.generated_pos(self.n_gen) as i32;
        if pos as usize >= self.model.hparams.n_ctx_train.max(1) {
            return Err(EngineError::Layout(crate::layout::LayoutError::PositionOverflow {
                max_pos: pos as usize,
                n_ctx_train: self.model.hparams.n_ctx_train,
            }));
        }
        let mask = layout.attn_mask_for_rows(cell, 1, None)?;
        self.kv.push(&[CellMeta::shared(pos)])?;
        self.gen_tokens.truncate(cell - layout.n_cells());
        self.gen_tokens.push(id);
        if let Err(e) = self.forward_query(layout, cell, 1, &mask, 0..1, None) {
            self.kv.truncate(cell);
            return Err(e);
        }
        self.n_gen += 1;
        let n_vocab = self.model.n_vocab();
        self.model.logits(&mut self.st, 0..1, &mut self.rows[..n_vocab])?;
        self.logits.copy_from_slice(&self.rows[..n_vocab]);
        Ok(&self.logits)
    }
}

/// A parallel engine decoding after its request's layout (taken out of the engine while
/// it decodes, so both can be borrowed).
struct Generating<'e, 'l, 'm, 'a, B: Backend> {
    engine: &'e mut ParallelEngine<'m, 'a, B>,
    layout: &'l Layout,
}

impl<B: Backend> DecodeTarget for Generating<'_, '_, '_, '_, B> {
    fn logits(&self) -> &[f32] {
        &self.engine.logits
    }
    fn has_room(&self) -> bool {
        self.engine.kv.free() > 0
    }
    fn eval_token(&mut self, id: u32) -> Result<(), EngineError> {
        self.engine.eval_generated(self.layout, id).map(|_| ())
    }
}

/// Cache metadata of a layout cell: its position, and piece p as id p + 1.
fn cell_meta(c: &crate::layout::Cell) -> CellMeta {
    let piece = match (c.kind, c.piece) {
        (CellKind::Piece, Some(p)) => p + 1,
        _ => CellMeta::SHARED,
    };
    CellMeta { pos: c.pos, piece }
}
