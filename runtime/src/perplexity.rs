//! Perplexity with llama.cpp's protocol (`llama-perplexity`, default mode): cut the token
//! stream into non-overlapping chunks of `n_ctx` tokens, evaluate each chunk from an empty
//! cache (its first token replaced by BOS when the model asks for BOS), and score the second
//! half: the logits at positions `n_ctx/2 .. n_ctx-2` predicting the next token.
//!
//! PPL = exp(mean NLL); its uncertainty is `sqrt(var(NLL) / (count - 1)) * PPL`, as llama.cpp
//! reports it.

use crate::backend::Backend;
use crate::engine::{Engine, EngineError};

/// Running totals of a perplexity evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PplAccum {
    /// sum of negative log-likelihoods
    pub nll: f64,
    /// sum of squared negative log-likelihoods
    pub nll2: f64,
    /// scored tokens
    pub count: usize,
}

impl PplAccum {
    pub fn add(&mut self, nll: f64) {
        self.nll += nll;
        self.nll2 += nll * nll;
        self.count += 1;
    }

    /// exp(mean NLL).
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count.max(1) as f64).exp()
    }

    /// Standard error of the PPL estimate (llama.cpp's formula); `None` below two tokens or
    /// when the variance is not positive.
    pub fn stderr(&self) -> Option<f64> {
        if self.count < 2 {
            return None;
        }
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        (var > 0.0).then(|| (var / (n - 1.0)).sqrt() * mean.exp())
    }
}

/// Negative log-probability of `tok` under softmax(`logits`), computed as llama.cpp does: f32
/// max and differences, f64 sum of f32 exponentials.
pub fn nll(logits: &[f32], tok: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| (l - max).exp() as f64).sum();
    let log_softmax = (logits[tok] - max) as f64 - sum.ln();
    -log_softmax
}

/// Errors of [`perplexity`].
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error("{n_tokens} tokens: at least 2 * n_ctx = {need} are needed")]
    TooFewTokens { n_tokens: usize, need: usize },
    #[error("n_ctx {0} is too small (at least 4)")]
    BadContext(usize),
    #[error("token {tok} out of range")]
    BadToken { tok: u32 },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Perplexity of `tokens` in chunks of `n_ctx` (the engine needs at least `n_ctx` cells).
/// `n_chunks`: at most this many chunks (`None`: all whole chunks). `bos`: the BOS id when the
/// model wants BOS. `on_chunk(i, &accum)` is called after every chunk.
pub fn perplexity<B: Backend>(
    engine: &mut Engine<'_, '_, B>,
    tokens: &[u32],
    n_ctx: usize,
    n_chunks: Option<usize>,
    bos: Option<u32>,
    mut on_chunk: impl FnMut(usize, &PplAccum),
) -> Result<PplAccum, PerplexityError> {
    if n_ctx < 4 {
        return Err(PerplexityError::BadContext(n_ctx));
    }
    if tokens.len() < 2 * n_ctx {
        return Err(PerplexityError::TooFewTokens { n_tokens: tokens.len(), need: 2 * n_ctx });
    }
    let max_chunks = tokens.len() / n_ctx;
    let n_chunks = n_chunks.map_or(max_chunks, |n| n.min(max_chunks));
    let first = n_ctx / 2;
    let n_vocab = engine.model().n_vocab();
    let mut acc = PplAccum::default();
    // u32 [n_ctx]: the chunk as evaluated (first token possibly replaced by BOS)
    let mut chunk = vec![0u32; n_ctx];
    for i in 0..n_chunks {
        let orig = &tokens[i * n_ctx..(i + 1) * n_ctx];
        chunk.copy_from_slice(orig);
        if let Some(b) = bos {
            chunk[0] = b;
        }
        engine.clear();
        let mut bad = None;
        engine.eval_rows(&chunk, first..n_ctx - 1, |j, logits| {
            let next = orig[j + 1];
            if next as usize >= n_vocab {
                bad = Some(next);
            } else {
                acc.add(nll(logits, next as usize));
            }
            Ok(())
        })?;
        if let Some(tok) = bad {
            return Err(PerplexityError::BadToken { tok });
        }
        on_chunk(i, &acc);
    }
    Ok(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nll_hand_computed() {
        // softmax([0, ln 3]) = [0.25, 0.75]
        let l = [0.0f32, 3.0f32.ln()];
        assert!((nll(&l, 0) - 4.0f64.ln()).abs() < 1e-6);
        assert!((nll(&l, 1) - (4.0f64 / 3.0).ln()).abs() < 1e-6);
    }

    #[test]
    fn accum_matches_llama_formula() {
        let mut a = PplAccum::default();
        for v in [1.0, 2.0, 3.0, 4.0] {
            a.add(v);
        }
        // mean 2.5, E[x^2] = 7.5, var = 1.25, stderr = sqrt(1.25 / 3) * e^2.5
        assert!((a.ppl() - 2.5f64.exp()).abs() < 1e-9);
        let want = (1.25f64 / 3.0).sqrt() * 2.5f64.exp();
        assert!((a.stderr().unwrap() - want).abs() < 1e-9);
        let mut b = PplAccum::default();
        b.add(1.0);
        assert_eq!(b.stderr(), None);
    }
}
