//! Retrieval-augmented QA (PAPER.md §6) on BIG-bench `contextual_parametric_knowledge_conflicts`:
//! Natural Questions whose gold passage was edited to a counterfactual answer, so the answer
//! must come from the document, not from the model's memory. Each example: the gold passage
//! plus distractor passages of other questions, in random order, as
//! "Document: {text}\n\n" units dealt round-robin into P pieces; query
//! "Question: {q}\nAnswer:"; substring exact match against the edited answer.
//!
//! The source has no page titles, so the paper's "Document (Title: …): …" becomes
//! "Document: …" (the title would be the only place the wording differs).

use anyhow::{bail, Result};
use weft::sampling::Rng;

use super::{BigBenchTask, TaskParams};
use crate::eval::example::{below, sample_indices, Context, Deal, Example, Query, Rule, Target};

/// Passages longer than this (characters) are skipped: a few tables run to many thousand
/// characters and would dominate the context.
const MAX_DOC_CHARS: usize = 1200;

#[derive(Clone, Debug, PartialEq)]
pub struct QaItem {
    pub question: String,
    pub passage: String,
    pub answer: String,
}

/// Parses "\nQuestion: {q}\nContext: {passage}" inputs; keeps items whose answer occurs in
/// their passage and whose passage is at most MAX_DOC_CHARS.
pub fn items(task: &BigBenchTask) -> Result<Vec<QaItem>> {
    let mut out = Vec::new();
    for e in &task.examples {
        let Some(rest) = e.input.trim_start().strip_prefix("Question: ") else {
            bail!("rag: input without `Question: `: {:.60}", e.input);
        };
        let Some((q, passage)) = rest.split_once("\nContext: ") else {
            bail!("rag: input without `Context: `: {:.60}", e.input);
        };
        let Some(answer) = &e.target else {
            bail!("rag: example without target: {:.60}", e.input);
        };
        let passage = passage.trim();
        if passage.len() <= MAX_DOC_CHARS && passage.contains(answer.as_str()) {
            out.push(QaItem {
                question: q.trim().to_string(),
                passage: passage.to_string(),
                answer: answer.clone(),
            });
        }
    }
    Ok(out)
}

pub fn document(passage: &str) -> String {
    format!("Document: {passage}\n\n")
}

pub fn build(task: &BigBenchTask, p: &TaskParams) -> Result<Vec<Example>> {
    let items = items(task)?;
    if p.units == 0 || items.len() < p.n + p.units {
        bail!(
            "rag: {} usable items cannot give {} questions with {} documents",
            items.len(),
            p.n,
            p.units
        );
    }
    let mut rng = Rng::new(p.seed);
    let order = sample_indices(&mut rng, items.len(), items.len());
    let (tests, pool) = order.split_at(p.n);
    let mut out = Vec::with_capacity(p.n);
    for (k, &t) in tests.iter().enumerate() {
        let it = &items[t];
        // Distractors answer other questions; none may contain this question's answer.
        let cands: Vec<usize> =
            pool.iter().copied().filter(|&d| !items[d].passage.contains(&it.answer)).collect();
        if cands.len() < p.units - 1 {
            bail!("rag: not enough distractor passages for question {t}");
        }
        let mut docs: Vec<String> = sample_indices(&mut rng, cands.len(), p.units - 1)
            .into_iter()
            .map(|j| document(&items[cands[j]].passage))
            .collect();
        docs.insert(below(&mut rng, p.units), document(&it.passage));
        out.push(Example {
            id: format!("rag-{k}-{t}"),
            context: Context::Units { units: docs, deal: Deal::RoundRobin },
            query: Query::Text(format!("Question: {}\nAnswer:", it.question)),
            target: Target::Answer {
                answer: it.answer.clone(),
                rule: Rule::Substring,
                max_tokens: 16,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tasks::BigBenchExample;

    fn task(n: usize) -> BigBenchTask {
        let examples = (0..n)
            .map(|i| BigBenchExample {
                input: format!(
                    "\nQuestion: who is person {i}?\nContext: Person {i} is Name{i} Surname."
                ),
                target: Some(format!("Name{i} Surname")),
                target_scores: Default::default(),
            })
            .collect();
        BigBenchTask { examples }
    }

    #[test]
    fn gold_document_once_among_distractors() {
        let p = TaskParams { n: 4, seed: 9, units: 6, seg_len: 0, haystack_chars: 0 };
        let ex = build(&task(30), &p).unwrap();
        assert_eq!(ex.len(), 4);
        for e in &ex {
            let Context::Units { units, .. } = &e.context else { panic!() };
            let Target::Answer { answer, .. } = &e.target else { panic!() };
            assert_eq!(units.len(), 6);
            assert_eq!(units.iter().filter(|u| u.contains(answer.as_str())).count(), 1);
            assert!(units.iter().all(|u| u.starts_with("Document: ") && u.ends_with("\n\n")));
            let Query::Text(q) = &e.query else { panic!() };
            assert!(q.starts_with("Question: who is person") && q.ends_with("\nAnswer:"));
        }
        assert_eq!(build(&task(30), &p).unwrap(), ex);
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut t = task(3);
        t.examples[1].input = "no question here".into();
        assert!(items(&t).is_err());
    }
}
