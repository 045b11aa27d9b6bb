//! Models: hyper-parameters, weights, and the forward pass of each architecture.
//!
//! A model consumes token ids, their RoPE positions, the cache cells that receive their K/V and
//! an attention mask; it knows nothing of pieces, prompts or sampling (DESIGN principle 4).

mod attend;
mod hparams;
mod llama;
mod weights;

pub use crate::observer::{AttnStats, ForwardObserver};
pub use hparams::{Arch, HParams};
pub use weights::{LayerWeights, Weights};

use crate::backend::Backend;
use crate::gguf::{GgufError, GgufFile};
use crate::kv_cache::KvCacheError;
use crate::ops::{ApeParams, AttnMask, AttnParams, RopeParams, RopeStyle};
use crate::selection::Pooling;
use crate::GgmlType;
use std::ops::Range;

/// Errors while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("the file has no general.architecture")]
    NoArch,
    #[error("architecture '{0}' is not supported (weft runs: llama, qwen2)")]
    UnsupportedArch(String),
    #[error("invalid hyper-parameters: {0}")]
    BadHParams(String),
    #[error("tensor {0} is missing")]
    MissingTensor(String),
    #[error("tensor {name}: shape {got:?}, expected {expected:?} (ggml order)")]
    TensorShape { name: String, expected: Vec<u64>, got: Vec<u64> },
    #[error("tensor {name}: type {ty} is not supported here")]
    UnsupportedTensorType { name: String, ty: GgmlType },
    #[error("tensor {name}: {detail}")]
    BadTensor { name: String, detail: String },
    #[error("backend: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    KvCache(#[from] KvCacheError),
    #[error("batch: {0}")]
    Batch(String),
    #[error("selection: {0}")]
    Selection(#[from] crate::selection::SelectionError),
    #[error("token id {id} out of range (n_vocab {n_vocab})")]
    TokenOutOfRange { id: u32, n_vocab: usize },
}

pub(crate) fn backend_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> ModelError {
    ModelError::Backend(Box::new(e))
}

/// A loaded model on backend `B`; weights may borrow the file (`'a`).
pub struct Model<'a, B: Backend> {
    pub hparams: HParams,
    backend: &'a B,
    weights: Weights<'a, B>,
    rope: RopeParams,
    attn: AttnParams,
}

impl<'a, B: Backend> Model<'a, B> {
    /// Read hyper-parameters and make every weight resident on `backend`.
    pub fn load(backend: &'a B, file: &'a GgufFile) -> Result<Self, ModelError> {
        let hparams = HParams::from_gguf(file)?;
        let weights = Weights::load(backend, file, &hparams)?;
        let rope = RopeParams {
            // ggml's llama graph rotates adjacent pairs; qwen2 rotates halves (NeoX).
            style: match hparams.arch {
                Arch::Llama => RopeStyle::Norm,
                Arch::Qwen2 => RopeStyle::Neox,
            },
            head_dim: hparams.head_dim,
            n_rot: hparams.n_rot,
            freq_base: hparams.rope_freq_base,
            freq_scale: hparams.rope_freq_scale,
            freq_factors: weights.rope_freqs.clone(),
        };
        let attn = AttnParams {
            n_head: hparams.n_head,
            n_head_kv: hparams.n_head_kv,
            head_dim: hparams.head_dim,
            scale: 1.0 / (hparams.head_dim as f32).sqrt(),
        };
        Ok(Model { hparams, backend, weights, rope, attn })
    }

    pub fn backend(&self) -> &'a B {
        self.backend
    }

    pub fn weights(&self) -> &Weights<'a, B> {
        &self.weights
    }

    pub fn n_vocab(&self) -> usize {
        self.hparams.n_vocab
    }
}

/// One forward call's inputs: a batch of tokens appended to the KV cache.
pub struct ForwardBatch<'b> {
    /// [n_tokens] token ids
    pub tokens: &'b [u32],
    /// [n_tokens] RoPE positions
    pub positions: &'b [i32],
    /// Cache cells `cell0 .. cell0 + n_tokens` receive this batch's K and V.
    pub cell0: usize,
    /// Attention reads cells `0 .. n_kv` (at least `cell0 + n_tokens`).
    pub n_kv: usize,
    /// Which cells each token sees (cell indices).
    pub mask: AttnMask<'b>,
    /// Selective attention over key groups, for every row of the batch (query-side
    /// batches only); `None` = off.
    pub selection: Option<Selection<'b>>,
    /// APE rescaling of the keys in these groups (query-side batches only).
    pub ape: Option<(&'b [Range<usize>], ApeParams)>,
}

impl<'b> ForwardBatch<'b> {
    /// A batch with a mask and no selection or APE.
    pub fn new(
        tokens: &'b [u32],
        positions: &'b [i32],
        cell0: usize,
        n_kv: usize,
        mask: AttnMask<'b>,
    ) -> Self {
        ForwardBatch { tokens, positions, cell0, n_kv, mask, selection: None, ape: None }
    }
}

/// Selective attention (PAPER.md §4) as the model sees it: key groups and a keep rule. In
/// every layer the backend scores each group (sum of the top-5 probabilities), the scores
/// are pooled, the `top_k` best groups are kept and attention runs without the others.
#[derive(Clone, Copy, Debug)]
pub struct Selection<'b> {
    /// Key groups: cell ranges, sorted and disjoint (the pieces).
    pub groups: &'b [Range<usize>],
    /// Groups kept (0 or at least the number of groups: everything is kept).
    pub top_k: usize,
    pub pooling: Pooling,
}

impl Selection<'_> {
    /// Whether this selection can drop anything.
    pub fn is_active(&self) -> bool {
        self.top_k > 0 && self.top_k < self.groups.len()
    }
}

/// Preallocated activations for batches of up to `n_batch` tokens (llama2.c's RunState): no
/// allocation happens in the token loop.
pub struct ForwardState<B: Backend> {
    n_batch: usize,
    n_out: usize,
    /// tokens in the last forward
    n_tokens: usize,
    /// f32 [n_batch, n_embd]: the residual stream
    x: B::Buf,
    /// f32 [n_batch, n_embd]: normed input of a sub-block
    xn: B::Buf,
    /// f32 [n_batch, n_head * head_dim]
    q: B::Buf,
    /// f32 [n_batch, n_head_kv * head_dim]
    k: B::Buf,
    /// f32 [n_batch, n_head_kv * head_dim]
    v: B::Buf,
    /// f32 [n_batch, n_head * head_dim]: attention output, heads concatenated
    attn: B::Buf,
    /// f32 [n_batch, n_embd]: attn_output / ffn_down projection
    proj: B::Buf,
    /// f32 [n_batch, n_ff]
    gate: B::Buf,
    /// f32 [n_batch, n_ff]
    up: B::Buf,
    /// f32 [n_out, n_embd]: rows selected for logits
    out_x: B::Buf,
    /// f32 [n_out, n_embd]: the same rows after output_norm
    out_xn: B::Buf,
    /// f32 [n_out, n_vocab]
    logits: B::Buf,
    scratch: B::Scratch,
    /// f32 [n_tokens, n_head, n_groups]: selection's group scores (host; grown on demand)
    sel_scores: Vec<f32>,
    /// f32 [n_tokens, n_head]: observer entropy and mean |logit| (host; grown on demand)
    obs_entropy: Vec<f32>,
    obs_abs_logit: Vec<f32>,
    /// f32 [n_tokens, n_head * head_dim]: observer's host copy of q or k rows
    obs_rows: Vec<f32>,
}

impl<B: Backend> ForwardState<B> {
    /// Buffers for batches of up to `n_batch` tokens, computing logits `n_out` rows at a time.
    pub fn new<'a>(model: &Model<'a, B>, n_batch: usize, n_out: usize) -> Result<Self, ModelError> {
        if n_batch == 0 || n_out == 0 {
            return Err(ModelError::Batch("n_batch and n_out must be positive".into()));
        }
        let hp = &model.hparams;
        let be = model.backend;
        let a = |n: usize| be.alloc(n).map_err(backend_err);
        let max_cols = hp.n_embd.max(hp.n_ff).max(hp.n_embd_q());
        Ok(ForwardState {
            n_batch,
            n_out,
            n_tokens: 0,
            x: a(n_batch * hp.n_embd)?,
            xn: a(n_batch * hp.n_embd)?,
            q: a(n_batch * hp.n_embd_q())?,
            k: a(n_batch * hp.n_embd_kv())?,
            v: a(n_batch * hp.n_embd_kv())?,
            attn: a(n_batch * hp.n_embd_q())?,
            proj: a(n_batch * hp.n_embd)?,
            gate: a(n_batch * hp.n_ff)?,
            up: a(n_batch * hp.n_ff)?,
            out_x: a(n_out * hp.n_embd)?,
            out_xn: a(n_out * hp.n_embd)?,
            logits: a(n_out * hp.n_vocab)?,
            scratch: be.alloc_scratch(n_batch, max_cols).map_err(backend_err)?,
            sel_scores: Vec::new(),
            obs_entropy: Vec::new(),
            obs_abs_logit: Vec::new(),
            obs_rows: Vec::new(),
        })
    }

    /// Largest batch this state can run.
    pub fn n_batch(&self) -> usize {
        self.n_batch
    }

    /// Tokens in the last forward (rows available to [`Model::logits`]).
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }
}
