//! A [`Runner`] on the ordinary causal engine (`weft::engine::Engine`): sink, pieces and query
//! concatenated into one sequence with full attention. It is the reference the parallel engine
//! must equal at P = 1, and the "no parallel encoding" baseline at any P (the pieces then see
//! each other; only their tokenization differs). It has no selection and no attention
//! observer, so it refuses `select > 0` and entropy runs.

use std::ops::Range;

use anyhow::{bail, Result};
use weft::backend::Backend;
use weft::engine::{Engine, GenerateParams};
use weft::layout::Request;
use weft::sampling::{Sampler, SamplerConfig};
use weft::tokenizer::Tokenizer;

use super::runner::{EncodeOpts, LayerStats, Runner};

pub struct FullRunner<'m, 'a, B: Backend> {
    pub engine: Engine<'m, 'a, B>,
    pub tokenizer: &'m Tokenizer,
}

/// sink ++ pieces ++ query, and where the query starts.
fn concat(req: &Request) -> (Vec<u32>, usize) {
    let mut t: Vec<u32> = req.sink.clone().unwrap_or_default();
    for p in &req.pieces {
        t.extend_from_slice(p);
    }
    let q0 = t.len();
    t.extend_from_slice(&req.query);
    (t, q0)
}

fn check(opts: &EncodeOpts) -> Result<()> {
    if opts.select_k > 0 {
        bail!("the full-attention engine has no selective attention: use --engine parallel");
    }
    if opts.observe {
        bail!("the full-attention engine has no attention observer: use --engine parallel");
    }
    Ok(())
}

/// Greedy continuation text, cut at the first newline after non-blank text.
pub fn one_line_answer(text: &str) -> Option<String> {
    let start = text.len() - text.trim_start().len();
    text[start..].find('\n').map(|i| text[..start + i].to_string())
}

impl<B: Backend> Runner for FullRunner<'_, '_, B> {
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
        check(opts)?;
        let (tokens, q0) = concat(req);
        self.engine.clear();
        self.engine.eval_rows(&tokens, q0 + rows.start..q0 + rows.end, |i, l| {
            f(i - q0, l);
            Ok(())
        })?;
        Ok(())
    }

    fn generate(&mut self, req: &Request, opts: &EncodeOpts, max_tokens: usize) -> Result<String> {
        check(opts)?;
        let (tokens, _) = concat(req);
        self.engine.clear();
        self.engine.prefill(&tokens)?;
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
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_is_cut_at_first_newline_after_text() {
        assert_eq!(one_line_answer(" 42\nUtterance"), Some(" 42".to_string()));
        assert_eq!(one_line_answer("\n 42\n"), Some("\n 42".to_string()));
        assert_eq!(one_line_answer("\n 42"), None);
    }

    #[test]
    fn concat_marks_query_start() {
        let r =
            Request { sink: Some(vec![1]), pieces: vec![vec![2, 3], vec![4]], query: vec![5, 6] };
        assert_eq!(concat(&r), (vec![1, 2, 3, 4, 5, 6], 4));
    }
}
