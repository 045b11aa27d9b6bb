//! Language modelling (PAPER.md §6), scaled to the model: every essay is tokenized (no BOS,
//! as the authors), cut into non-overlapping segments of S tokens, and `n` segments are drawn
//! with the seed. With Q = min(1024, S/4): the first S-Q-1 tokens are the context, cut into P
//! contiguous chunks (the last one shorter); the next token is left unsplit as the query's
//! first token; the last Q tokens are the query, and the perplexity is over those Q tokens
//! (the logits at query index i predict query token i+1).

use anyhow::{bail, Result};
use weft::sampling::Rng;

use super::TaskParams;
use crate::eval::example::{sample_indices, Context, Example, Query, Target};

/// Query length for segment length `s`.
pub fn query_len(s: usize) -> usize {
    (s / 4).min(1024)
}

pub fn build(
    essays: &[(String, String)],
    p: &TaskParams,
    tokenize: &dyn Fn(&str) -> Result<Vec<u32>>,
) -> Result<Vec<Example>> {
    let s = p.seg_len;
    let q = query_len(s);
    if q < 2 || s < q + 3 {
        bail!("lm: segment length {s} is too short");
    }
    let mut segments: Vec<(String, usize, Vec<u32>)> = Vec::new();
    for (name, text) in essays {
        let toks = tokenize(text)?;
        for (j, seg) in toks.chunks_exact(s).enumerate() {
            segments.push((name.clone(), j, seg.to_vec()));
        }
    }
    if segments.len() < p.n {
        bail!("lm: the essays give {} segments of {s} tokens, {} wanted", segments.len(), p.n);
    }
    let mut rng = Rng::new(p.seed);
    let mut pick = sample_indices(&mut rng, segments.len(), p.n);
    pick.sort();
    Ok(pick
        .into_iter()
        .map(|i| {
            let (name, j, seg) = &segments[i];
            let split = s - q - 1;
            Example {
                id: format!("lm-{name}-{j}"),
                context: Context::Tokens(seg[..split].to_vec()),
                query: Query::Tokens(seg[split..].to_vec()),
                target: Target::Perplexity,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Result<Vec<u32>> {
        Ok(s.bytes().map(u32::from).collect())
    }

    #[test]
    fn segments_split_into_context_and_query() {
        let essays = vec![("a".to_string(), "x".repeat(100)), ("b".to_string(), "y".repeat(70))];
        let p = TaskParams { n: 3, seed: 2, units: 0, seg_len: 32, haystack_chars: 0 };
        let ex = build(&essays, &p, &bytes).unwrap();
        assert_eq!(ex.len(), 3);
        for e in &ex {
            let Context::Tokens(c) = &e.context else { panic!() };
            let Query::Tokens(q) = &e.query else { panic!() };
            // Q = 8 scored tokens plus the unsplit next token.
            assert_eq!(q.len(), query_len(32) + 1);
            assert_eq!(c.len() + q.len(), 32);
        }
        // 3 segments of "a" + 2 of "b": asking for 6 fails.
        assert!(build(&essays, &TaskParams { n: 6, ..p.clone() }, &bytes).is_err());
        assert_eq!(query_len(2048), 512);
        assert_eq!(query_len(8192), 1024);
    }
}
