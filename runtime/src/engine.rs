//! Generation engine: one causal sequence in a KV cache, prompt prefill in micro-batches,
//! the decode loop with streaming text, stop conditions and timing.

use crate::backend::Backend;
use crate::kv_cache::{CellMeta, KvCache, KvCacheError};
use crate::model::{ForwardBatch, ForwardState, Model, ModelError};
use crate::ops::AttnMask;
use crate::sampling::{Sampler, StopStrings};
use crate::tokenizer::{StreamDecoder, Tokenizer};
use crate::KvType;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Sizes of an engine's preallocated state.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// KV cache cells (the context length).
    pub n_ctx: usize,
    /// Tokens per forward call during prefill (llama.cpp's n_ubatch).
    pub n_ubatch: usize,
    /// Logit rows computed per output matmul when many rows are wanted (perplexity).
    pub n_out: usize,
    /// Element type of the K and V cache (llama.cpp's `type_k` / `type_v`; f16 by default).
    pub kv_type: KvType,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig { n_ctx: 4096, n_ubatch: 512, n_out: 32, kv_type: KvType::F16 }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token (not emitted).
    Eog,
    /// A stop string appeared (cut from the output).
    StopString,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// The KV cache is full.
    ContextFull,
    /// The text callback asked to stop.
    Cancelled,
}

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct GenerateParams {
    /// Most tokens to generate (0: none).
    pub max_tokens: usize,
    /// Stop when one of these appears in the generated text.
    pub stop: Vec<String>,
}

/// Counts and timing of a prefill.
#[derive(Clone, Copy, Debug)]
pub struct PrefillStats {
    /// Prompt tokens found already in the cache (not evaluated again).
    pub n_reused: usize,
    /// Prompt tokens evaluated.
    pub n_eval: usize,
    pub time: Duration,
}

impl PrefillStats {
    pub fn tok_per_s(&self) -> f64 {
        rate(self.n_eval, self.time)
    }
}

/// Counts and timing of a decode loop.
#[derive(Clone, Copy, Debug)]
pub struct DecodeStats {
    /// Tokens sampled (an end-of-generation token included).
    pub n_gen: usize,
    /// Time of the loop (sampling and single-token forwards).
    pub time: Duration,
    pub stop: StopReason,
}

impl DecodeStats {
    pub fn tok_per_s(&self) -> f64 {
        rate(self.n_gen, self.time)
    }
}

/// Counts and timings of one generation.
#[derive(Clone, Copy, Debug)]
pub struct GenerateStats {
    pub prefill: PrefillStats,
    pub decode: DecodeStats,
}

fn rate(n: usize, t: Duration) -> f64 {
    let s = t.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    KvCache(#[from] KvCacheError),
    #[error("empty prompt: at least one token is needed to compute logits")]
    EmptyPrompt,
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    DocCache(#[from] crate::doc_cache::DocCacheError),
    #[error("{0}")]
    Config(crate::ops::OpsError),
    #[error("nothing encoded yet: call encode before decode")]
    NothingEncoded,
}

/// A model, its KV cache and forward state, running one ordinary causal sequence: cell i holds
/// the token at position i.
pub struct Engine<'m, 'a, B: Backend> {
    model: &'m Model<'a, B>,
    kv: KvCache<B>,
    st: ForwardState<B>,
    n_ubatch: usize,
    n_out: usize,
    /// the tokens whose K/V fill cells 0 .. tokens.len()
    tokens: Vec<u32>,
    /// i32 [n_ubatch]: positions of the current micro-batch
    positions: Vec<i32>,
    /// [n_ubatch]: cell metadata of the current micro-batch
    metas: Vec<CellMeta>,
    /// f32 [n_vocab]: logits of the last evaluated token
    logits: Vec<f32>,
    /// f32 [n_out, n_vocab]: host copy of a block of logit rows
    rows: Vec<f32>,
}

impl<'m, 'a, B: Backend> Engine<'m, 'a, B> {
    pub fn new(model: &'m Model<'a, B>, cfg: EngineConfig) -> Result<Self, EngineError> {
        let n_ubatch = cfg.n_ubatch.clamp(1, cfg.n_ctx.max(1));
        let n_out = cfg.n_out.clamp(1, n_ubatch);
        let kv = KvCache::new(model.backend(), &model.hparams, cfg.n_ctx, cfg.kv_type)?;
        let st = ForwardState::new(model, n_ubatch, n_out)?;
        let n_vocab = model.n_vocab();
        Ok(Engine {
            model,
            kv,
            st,
            n_ubatch,
            n_out,
            tokens: Vec::with_capacity(cfg.n_ctx),
            positions: Vec::with_capacity(n_ubatch),
            metas: Vec::with_capacity(n_ubatch),
            logits: vec![0.0; n_vocab],
            rows: vec![0.0; n_out * n_vocab],
        })
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

    /// Tokens in the cache, in position order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Logits of the last evaluated token (f32 [n_vocab]).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Empty the cache.
    pub fn clear(&mut self) {
        self.kv.clear();
        self.tokens.clear();
    }

    /// Drop cached tokens from `n` on.
    pub fn truncate(&mut self, n: usize) {
        self.kv.truncate(n);
        self.tokens.truncate(n);
    }

    /// Append `tokens` and return the logits of the last one.
    pub fn eval(&mut self, tokens: &[u32]) -> Result<&[f32], EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let last = tokens.len() - 1;
        let mut logits = std::mem::take(&mut self.logits);
        let r = self.eval_rows(tokens, last..tokens.len(), |_, l| {
            logits.copy_from_slice(l);
            Ok(())
        });
        self.logits = logits;
        r?;
        Ok(&self.logits)
    }

    /// Append `tokens`, calling `f(i, logits)` for every `i` in `rows` (indices into `tokens`)
    /// in order. Fails before any work when the tokens do not fit the cache.
    pub fn eval_rows<F>(
        &mut self,
        tokens: &[u32],
        rows: Range<usize>,
        mut f: F,
    ) -> Result<(), EngineError>
    where
        F: FnMut(usize, &[f32]) -> Result<(), EngineError>,
    {
        if tokens.len() > self.kv.free() {
            return Err(KvCacheError::ContextFull {
                need: tokens.len(),
                free: self.kv.free(),
                n_ctx: self.kv.n_ctx(),
            }
            .into());
        }
        let n_vocab = self.model.n_vocab();
        for (b, chunk) in tokens.chunks(self.n_ubatch).enumerate() {
            let start = b * self.n_ubatch;
            let cell0 = self.kv.len();
            self.positions.clear();
            self.positions.extend((0..chunk.len()).map(|i| (cell0 + i) as i32));
            self.metas.clear();
            self.metas.extend(self.positions.iter().map(|&p| CellMeta::shared(p)));
            self.kv.push(&self.metas)?;
            let mut batch = ForwardBatch::new(
                chunk,
                &self.positions,
                cell0,
                cell0 + chunk.len(),
                AttnMask::Causal { n_past: cell0 },
            );
            // Rows of this micro-batch that want logits (at least one row runs to the end).
            let lo = rows.start.max(start);
            let hi = rows.end.min(start + chunk.len());
            batch.out_rows =
                Some(if lo < hi { lo - start..hi - start } else { chunk.len() - 1..chunk.len() });
            if let Err(e) = self.model.forward(&mut self.kv, &mut self.st, &batch) {
                // The cells were claimed but never written: give them back.
                self.kv.truncate(cell0);
                return Err(e.into());
            }
            self.tokens.extend_from_slice(chunk);
            // The wanted rows' logits, `n_out` at a time.
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
        Ok(())
    }

    /// Make the cache hold exactly `tokens`, re-using the longest cached common prefix (at
    /// least the last token is evaluated, to have its logits). Returns how many were reused.
    pub fn eval_with_prefix_reuse(&mut self, tokens: &[u32]) -> Result<usize, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let common = self.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let keep = common.min(tokens.len() - 1);
        self.truncate(keep);
        self.eval(&tokens[keep..])?;
        Ok(keep)
    }

    /// Evaluate `prompt` (re-using the cached common prefix); its last logits are then in
    /// [`Engine::logits`].
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<PrefillStats, EngineError> {
        let t0 = Instant::now();
        let n_reused = self.eval_with_prefix_reuse(prompt)?;
        Ok(PrefillStats { n_reused, n_eval: prompt.len() - n_reused, time: t0.elapsed() })
    }

    /// Sample and evaluate tokens after a prefill, streaming text pieces to `on_text` (return
    /// `false` to stop). The last sampled token is not evaluated: a following prefill whose
    /// prompt extends the cached tokens re-uses them.
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
        decode_tokens(self, tokenizer, sampler, params, on_text)
    }

    /// [`prefill`](Self::prefill) `prompt` (its tokens feed the sampler's repetition window),
    /// then [`decode`](Self::decode).
    pub fn generate<F>(
        &mut self,
        prompt: &[u32],
        tokenizer: &Tokenizer,
        sampler: &mut Sampler,
        params: &GenerateParams,
        on_text: F,
    ) -> Result<GenerateStats, EngineError>
    where
        F: FnMut(&str) -> bool,
    {
        let prefill = self.prefill(prompt)?;
        for &t in prompt {
            sampler.accept(t);
        }
        let decode = self.decode(tokenizer, sampler, params, on_text)?;
        Ok(GenerateStats { prefill, decode })
    }
}

/// What the decode loop needs from an engine: the logits to sample from, whether another
/// token fits the cache, and a way to evaluate a sampled token.
pub(crate) trait DecodeTarget {
    fn logits(&self) -> &[f32];
    fn has_room(&self) -> bool;
    fn eval_token(&mut self, id: u32) -> Result<(), EngineError>;
}

impl<B: Backend> DecodeTarget for Engine<'_, '_, B> {
    fn logits(&self) -> &[f32] {
        &self.logits
    }
    fn has_room(&self) -> bool {
        self.kv.free() > 0
    }
    fn eval_token(&mut self, id: u32) -> Result<(), EngineError> {
        self.eval(&[id]).map(|_| ())
    }
}

/// The decode loop of every engine: sample from the target's logits, stream the text
/// (control tokens that are not end-of-generation, such as template markers, are not shown),
/// stop on end-of-generation, a stop string, `max_tokens`, a full cache or `on_text`
/// returning `false`. The last sampled token is not evaluated.
pub(crate) fn decode_tokens<T, F>(
    target: &mut T,
    tokenizer: &Tokenizer,
    sampler: &mut Sampler,
    params: &GenerateParams,
    mut on_text: F,
) -> Result<DecodeStats, EngineError>
where
    T: DecodeTarget + ?Sized,
    F: FnMut(&str) -> bool,
{
    let t0 = Instant::now();
    let mut decoder = StreamDecoder::new(tokenizer).skip_control(true);
    let mut stops = StopStrings::new(&params.stop);
    let mut n_gen = 0;
    let stop = loop {
        if n_gen >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        let Some(id) = sampler.sample(target.logits()) else {
            break StopReason::Eog;
        };
        sampler.accept(id);
        n_gen += 1;
        if tokenizer.is_eog(id) {
            break StopReason::Eog;
        }
        let piece = decoder.push(id);
        let (text, hit) = stops.push(&piece);
        if !text.is_empty() && !on_text(&text) {
            break StopReason::Cancelled;
        }
        if hit {
            break StopReason::StopString;
        }
        if n_gen >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if !target.has_room() {
            break StopReason::ContextFull;
        }
        target.eval_token(id)?;
    };
    if !matches!(stop, StopReason::StopString | StopReason::Cancelled) {
        let (text, _) = stops.push(&decoder.finish());
        let rest = text + &stops.finish();
        if !rest.is_empty() {
            on_text(&rest);
        }
    }
    Ok(DecodeStats { n_gen, time: t0.elapsed(), stop })
}
