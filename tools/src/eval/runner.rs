//! The boundary between the evaluation driver and an inference engine: what a sweep needs
//! from a model, so the driver, tasks and reports do not depend on how encoding is done.
//! `engine.rs` implements it with `weft::parallel::ParallelEngine`.

use std::ops::Range;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use weft::layout::Request;
use weft::selection::Pooling;

/// One point of the sweep: P pieces, the shared sink on or off, selection keeping `select`
/// pieces per layer (0 = off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Setting {
    pub p: usize,
    pub sink: bool,
    pub select: usize,
}

impl Setting {
    /// "sink=on select=2", the label of a line in the plots.
    pub fn variant_label(&self) -> String {
        format!("sink={} select={}", if self.sink { "on" } else { "off" }, self.select)
    }
}

/// How the query side is encoded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EncodeOpts {
    /// Pieces kept per layer by selective attention (0 = off).
    pub select_k: usize,
    pub pooling: Pooling,
    /// Collect per-layer attention statistics of the query tokens.
    pub observe: bool,
}

/// Per-layer diagnostics of query-side tokens of one encode (PAPER.md §5), copied out of the
/// engine's observer: index = layer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Mean attention entropy over heads and query tokens, nats.
    pub entropy: Vec<f64>,
    pub mean_abs_logit: Vec<f64>,
    pub q_norm: Vec<f64>,
    /// Mean L2 norm of k at the first token of each piece.
    pub k_norm_piece_start: Vec<f64>,
}

impl LayerStats {
    /// Grand mean over layers.
    pub fn mean_entropy(&self) -> f64 {
        self.entropy.iter().sum::<f64>() / self.entropy.len().max(1) as f64
    }
}

pub trait Runner {
    /// Text to token ids as the tasks need them: no BOS, no special-token parsing (the
    /// authors add no BOS; the layout's BOS policy is the engine's business).
    fn tokenize(&self, text: &str) -> Result<Vec<u32>>;
    /// Encodes `req` and calls `f(i, logits)` for query token indices `i` in `rows`.
    fn score_rows(
        &mut self,
        req: &Request,
        opts: &EncodeOpts,
        rows: Range<usize>,
        f: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()>;
    /// Encodes `req`, then greedy-decodes at most `max_tokens` tokens, stopping at a newline
    /// after the first non-blank text.
    fn generate(&mut self, req: &Request, opts: &EncodeOpts, max_tokens: usize) -> Result<String>;
    /// Statistics of the last encode when it ran with `observe`.
    fn stats(&self) -> Option<LayerStats>;
}
