//! One evaluation example, independent of P and of the sink setting, and how it becomes a
//! `weft::layout::Request` for a given P (PAPER.md §1, §6): the context's units are dealt into
//! P pieces, or a contiguous text is cut into P chunks of tokens; the optional sink and the
//! query are tokenized as they are.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use weft::layout::Request;
use weft::sampling::Rng;

/// The shared sink for downstream tasks (PAPER.md §3).
pub const TASK_SINK: &str =
    "Given the following contexts, answer the final question accordingly:\n\n";
/// The shared sink for language modelling (PAPER.md §3).
pub const LM_SINK: &str =
    "Given the following partial context, predicting the next sequence of words:\n\n";

/// How the units of a context are split over P pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deal {
    /// Unit i goes to piece i mod P (demonstrations, documents: every piece gets a mix).
    RoundRobin,
    /// Units in order, P balanced runs, longer ones first (a JSON object's pairs).
    Contiguous,
}

/// What the pieces are made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Context {
    /// Separate texts (demonstrations, documents, key-value lines); a piece is the
    /// concatenation of its units, tokenized as one text.
    Units { units: Vec<String>, deal: Deal },
    /// One text, tokenized whole and cut into P contiguous token chunks (the last shorter).
    Text(String),
    /// Token ids, cut into P contiguous chunks (language modelling, already tokenized).
    Tokens(Vec<u32>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Query {
    Text(String),
    Tokens(Vec<u32>),
}

/// How a generated answer is judged (see `score.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The normalised first line of the output equals the normalised answer (ICL labels).
    Exact,
    /// The normalised answer occurs in the normalised output (RAG, needle, key-value).
    Substring,
}

/// What is measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Greedy generation of at most `max_tokens` tokens, cut at the first newline, scored by
    /// `rule` against `answer`.
    Answer { answer: String, rule: Rule, max_tokens: usize },
    /// Perplexity over the query: the logits at query index i predict query token i + 1, for
    /// i in 0..len-1 (the query's first token is the unsplit next token of the context).
    Perplexity,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Stable within a task and seed; results are keyed by it (resume).
    pub id: String,
    pub context: Context,
    pub query: Query,
    pub target: Target,
}

/// Which sink text a task uses when the sink is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkKind {
    Task,
    Lm,
}

impl SinkKind {
    pub fn text(self) -> &'static str {
        match self {
            SinkKind::Task => TASK_SINK,
            SinkKind::Lm => LM_SINK,
        }
    }
}

impl Example {
    /// The request for `p` pieces, with the sink text when `sink` is `Some`.
    pub fn request(
        &self,
        p: usize,
        sink: Option<&str>,
        tokenize: &dyn Fn(&str) -> Result<Vec<u32>>,
    ) -> Result<Request> {
        if p == 0 {
            bail!("P must be at least 1");
        }
        let pieces = match &self.context {
            Context::Units { units, deal } => {
                if units.len() < p {
                    bail!("example {}: {} units cannot fill {p} pieces", self.id, units.len());
                }
                deal_units(units, p, *deal)
                    .iter()
                    .map(|text| tokenize(text))
                    .collect::<Result<Vec<_>>>()?
            }
            Context::Text(t) => split_tokens(&tokenize(t)?, p),
            Context::Tokens(t) => split_tokens(t, p),
        };
        if let Some(i) = pieces.iter().position(Vec::is_empty) {
            bail!("example {}: piece {i} of {p} is empty (context too short)", self.id);
        }
        let query = match &self.query {
            Query::Text(t) => tokenize(t)?,
            Query::Tokens(t) => t.clone(),
        };
        let sink = sink.map(tokenize).transpose()?;
        Ok(Request { sink, pieces, query })
    }
}

/// The texts of `p` pieces: units concatenated in order within a piece.
pub fn deal_units(units: &[String], p: usize, deal: Deal) -> Vec<String> {
    let mut pieces = vec![String::new(); p];
    match deal {
        Deal::RoundRobin => {
            for (i, u) in units.iter().enumerate() {
                pieces[i % p].push_str(u);
            }
        }
        Deal::Contiguous => {
            for (j, piece) in pieces.iter_mut().enumerate() {
                piece.extend(
                    units[bound(j, units.len(), p)..bound(j + 1, units.len(), p)]
                        .iter()
                        .map(String::as_str),
                );
            }
        }
    }
    pieces
}

/// `p` contiguous chunks whose lengths differ by at most one, longer ones first (so the last
/// is the shortest, as in PAPER.md §6, and no chunk is empty while n >= p; an empty chunk,
/// n < p, is rejected by [`Example::request`]).
pub fn split_tokens(tokens: &[u32], p: usize) -> Vec<Vec<u32>> {
    (0..p)
        .map(|j| tokens[bound(j, tokens.len(), p)..bound(j + 1, tokens.len(), p)].to_vec())
        .collect()
}

/// Start of chunk `j` of `n` items in `p` balanced contiguous chunks: the first n mod p
/// chunks hold one item more.
fn bound(j: usize, n: usize, p: usize) -> usize {
    j * (n / p) + j.min(n % p)
}

/// `k` distinct indices from 0..n in random order (partial Fisher-Yates).
pub fn sample_indices(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let k = k.min(n);
    for i in 0..k {
        let j = i + below(rng, n - i);
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// Uniform in 0..n (n > 0); the modulo bias is below 2^-40 for the sizes used here.
pub fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Shuffles in place (Fisher-Yates).
pub fn shuffle<T>(rng: &mut Rng, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i + 1);
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in tokenizer: one id per byte.
    fn bytes(s: &str) -> Result<Vec<u32>> {
        Ok(s.bytes().map(u32::from).collect())
    }

    fn units(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i};")).collect()
    }

    #[test]
    fn round_robin_and_contiguous_deal() {
        let u = units(5);
        assert_eq!(deal_units(&u, 2, Deal::RoundRobin), ["0;2;4;", "1;3;"]);
        assert_eq!(deal_units(&u, 2, Deal::Contiguous), ["0;1;2;", "3;4;"]);
        assert_eq!(deal_units(&units(6), 4, Deal::Contiguous), ["0;1;", "2;3;", "4;", "5;"]);
        assert_eq!(deal_units(&u, 1, Deal::RoundRobin), ["0;1;2;3;4;"]);
        // Every unit lands exactly once, whatever P.
        for p in 1..=5 {
            for d in [Deal::RoundRobin, Deal::Contiguous] {
                assert_eq!(deal_units(&u, p, d).concat().len(), u.concat().len());
            }
        }
    }

    #[test]
    fn split_tokens_last_chunk_shorter() {
        let t: Vec<u32> = (0..10).collect();
        let s = split_tokens(&t, 3);
        assert_eq!(s, vec![vec![0, 1, 2, 3], vec![4, 5, 6], vec![7, 8, 9]]);
        // 9 tokens in 4 chunks: none empty (ceil-sized chunks would give 3, 3, 3, 0).
        assert!(split_tokens(&t[..9], 4).iter().all(|c| c.len() == 2 || c.len() == 3));
        assert_eq!(split_tokens(&t, 1), vec![t.clone()]);
        assert_eq!(split_tokens(&t[..2], 3)[2], Vec::<u32>::new());
    }

    #[test]
    fn request_has_sink_pieces_query() {
        let ex = Example {
            id: "a".into(),
            context: Context::Units { units: units(4), deal: Deal::RoundRobin },
            query: Query::Text("q".into()),
            target: Target::Perplexity,
        };
        let r = ex.request(2, Some("S"), &bytes).unwrap();
        assert_eq!(r.sink, Some(vec![b'S' as u32]));
        assert_eq!(r.pieces, vec![bytes("0;2;").unwrap(), bytes("1;3;").unwrap()]);
        assert_eq!(r.query, vec![b'q' as u32]);
        assert!(ex.request(2, None, &bytes).unwrap().sink.is_none());
        assert!(ex.request(5, None, &bytes).is_err());
        assert!(ex.request(0, None, &bytes).is_err());
        let text = Example { context: Context::Text("abcdefg".into()), ..ex.clone() };
        let r = text.request(3, None, &bytes).unwrap();
        assert_eq!(r.pieces.concat(), bytes("abcdefg").unwrap());
        assert_eq!(r.pieces.len(), 3);
        assert!(text.request(8, None, &bytes).is_err());
    }

    #[test]
    fn sampling_is_seeded_and_distinct() {
        let a = sample_indices(&mut Rng::new(7), 100, 10);
        let b = sample_indices(&mut Rng::new(7), 100, 10);
        assert_eq!(a, b);
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 10);
        assert_ne!(a, sample_indices(&mut Rng::new(8), 100, 10));
    }
}
