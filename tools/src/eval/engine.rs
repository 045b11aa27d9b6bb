//! The [`Runner`] on `weft::parallel::ParallelEngine`: parallel context encoding with the
//! paper's defaults (even positions, no BOS, Paper mode), selection and pooling per setting,
//! and the attention observer for entropy runs.

use std::ops::Range;

use anyhow::Result;
use weft::backend::Backend;
use weft::engine::{EngineConfig, GenerateParams};
use weft::layout::Request;
use weft::model::Model;
use weft::parallel::{ParallelConfig, ParallelEngine};
use weft::sampling::{Sampler, SamplerConfig};
use weft::tokenizer::Tokenizer;

use super::full::one_line_answer;
use super::runner::{EncodeOpts, LayerStats, Runner};

pub struct ParallelRunner<'m, 'a, B: Backend> {
    pub engine: ParallelEngine<'m, 'a, B>,
    pub tokenizer: &'m Tokenizer,
}

pub fn parallel_runner<'m, 'a, B: Backend>(
    model: &'m Model<'a, B>,
    tokenizer: &'m Tokenizer,
    cfg: EngineConfig,
) -> Result<Box<dyn Runner + 'm>>
where
    'a: 'm,
{
    Ok(Box::new(ParallelRunner { engine: ParallelEngine::new(model, cfg)?, tokenizer }))
}

/// The engine configuration of a setting: the paper's layout defaults, the setting's
/// selection and pooling.
pub fn parallel_config(opts: &EncodeOpts) -> ParallelConfig {
    ParallelConfig {
        select_k: opts.select_k,
        pooling: opts.pooling,
        observe: opts.observe,
        ..ParallelConfig::default()
    }
}

impl<B: Backend> Runner for ParallelRunner<'_, '_, B> {
    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false, false)?)
    }

    fn score_rows(
        &mut self,
        req: &Request,
        opts: &EncodeOpts,
        rows: Range<usize>,
        f: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<()> {
        self.engine.encode_rows(req, &parallel_config(opts), rows, |i, l| {
            f(i, l);
            Ok(())
        })?;
        Ok(())
    }

    fn generate(&mut self, req: &Request, opts: &EncodeOpts, max_tokens: usize) -> Result<String> {
        self.engine.encode(req, &parallel_config(opts))?;
        let mut sampler = Sampler::new(SamplerConfig::greedy());
        let params = GenerateParams { max_tokens, stop: Vec::new() };
        let mut out = String::new();
        self.engine.decode(self.tokenizer, &mut sampler, &params, |t| {
            out.push_str(t);
            one_line_answer(&out).is_none()
        })?;
        Ok(one_line_answer(&out).unwrap_or(out))
    }

    fn stats(&self) -> Option<LayerStats> {
        self.engine.stats().map(|s| LayerStats {
            entropy: s.entropy_by_layer(),
            mean_abs_logit: s.mean_abs_logit_by_layer(),
            q_norm: s.q_norm_by_layer(),
            k_norm_piece_start: s.k_norm_piece_start_by_layer(),
        })
    }
}
