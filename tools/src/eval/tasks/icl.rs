//! In-context learning (PAPER.md §6): classification demonstrations
//! "{text}\nlabel: {id}\n\n" with the class names remapped to random integers for the whole
//! run (the model must learn the mapping from the demonstrations), dealt round-robin into P
//! pieces; the query is "{text}\nlabel:" and the answer the test item's integer (exact match).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use weft::sampling::Rng;

use super::{BigBenchTask, TaskParams};
use crate::eval::example::{
    below, sample_indices, shuffle, Context, Deal, Example, Query, Rule, Target,
};

/// Label ids are drawn from 0..LABEL_RANGE.
const LABEL_RANGE: usize = 100;

/// One labelled text.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub text: String,
    pub label: String,
}

/// The items of a BIG-bench multiple-choice task: the label is the choice scored 1.
pub fn items(task: &BigBenchTask) -> Result<Vec<Item>> {
    task.examples
        .iter()
        .map(|e| {
            let label = e.target_scores.iter().find(|(_, &s)| s == 1.0).map(|(l, _)| l.clone());
            match label {
                Some(label) => Ok(Item { text: e.input.trim().to_string(), label }),
                None => bail!("example without a label scored 1: {:.60}", e.input),
            }
        })
        .collect()
}

/// Maps each class name to a distinct random integer in 0..100 (one mapping per run seed).
pub fn remap_labels(labels: &[String], rng: &mut Rng) -> Result<BTreeMap<String, u32>> {
    let mut names = labels.to_vec();
    names.sort();
    names.dedup();
    if names.len() < 5 {
        bail!("the ICL task needs at least 5 labels, the data has {}", names.len());
    }
    let ids = sample_indices(rng, LABEL_RANGE, names.len());
    Ok(names.into_iter().zip(ids.into_iter().map(|i| i as u32)).collect())
}

pub fn demonstration(text: &str, id: u32) -> String {
    format!("{text}\nlabel: {id}\n\n")
}

pub fn build(task: &BigBenchTask, p: &TaskParams) -> Result<Vec<Example>> {
    let items = items(task)?;
    let mut rng = Rng::new(p.seed);
    let labels: Vec<String> = items.iter().map(|i| i.label.clone()).collect();
    let map = remap_labels(&labels, &mut rng)?;
    if items.len() < p.n + p.units {
        bail!("icl: {} items cannot give {} tests + {} demonstrations", items.len(), p.n, p.units);
    }
    // Test items first, the rest is the demonstration pool (never the test item itself).
    let order = sample_indices(&mut rng, items.len(), items.len());
    let (tests, pool) = order.split_at(p.n);
    let mut out = Vec::with_capacity(p.n);
    for (k, &t) in tests.iter().enumerate() {
        let demos = pick_demos(&items, pool, p.units, &mut rng);
        let units =
            demos.iter().map(|&d| demonstration(&items[d].text, map[&items[d].label])).collect();
        let test = &items[t];
        out.push(Example {
            id: format!("icl-{k}-{t}"),
            context: Context::Units { units, deal: Deal::RoundRobin },
            query: Query::Text(format!("{}\nlabel:", test.text)),
            target: Target::Answer {
                answer: map[&test.label].to_string(),
                rule: Rule::Exact,
                max_tokens: 4,
            },
        });
    }
    Ok(out)
}

/// `k` demonstrations from `pool`: one per label first (when k allows), then random ones,
/// shuffled, so every class is shown whatever the seed.
fn pick_demos(items: &[Item], pool: &[usize], k: usize, rng: &mut Rng) -> Vec<usize> {
    let mut labels: Vec<&str> = pool.iter().map(|&i| items[i].label.as_str()).collect();
    labels.sort();
    labels.dedup();
    let mut chosen = Vec::with_capacity(k);
    if k >= labels.len() {
        for l in labels {
            let of: Vec<usize> = pool.iter().copied().filter(|&i| items[i].label == l).collect();
            chosen.push(of[below(rng, of.len())]);
        }
    }
    let rest: Vec<usize> = pool.iter().copied().filter(|i| !chosen.contains(i)).collect();
    for j in sample_indices(rng, rest.len(), k - chosen.len()) {
        chosen.push(rest[j]);
    }
    shuffle(rng, &mut chosen);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tasks::BigBenchExample;

    fn task(n: usize, n_labels: usize) -> BigBenchTask {
        let examples = (0..n)
            .map(|i| BigBenchExample {
                input: format!("Utterance: text {i}"),
                target: None,
                target_scores: (0..n_labels)
                    .map(|l| (format!("class_{l}"), if l == i % n_labels { 1.0 } else { 0.0 }))
                    .collect(),
            })
            .collect();
        BigBenchTask { examples }
    }

    fn params(n: usize, units: usize, seed: u64) -> TaskParams {
        TaskParams { n, seed, units, seg_len: 0, haystack_chars: 0 }
    }

    #[test]
    fn remapping_is_consistent_distinct_and_seeded() {
        let ex = build(&task(60, 7), &params(5, 14, 3)).unwrap();
        // Every demonstration of every example uses the same class -> id map.
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for e in &ex {
            let Context::Units { units, .. } = &e.context else { panic!() };
            assert_eq!(units.len(), 14);
            for u in units {
                let (text, id) = u.trim_end().split_once("\nlabel: ").unwrap();
                let i: usize = text.trim_start_matches("Utterance: text ").parse().unwrap();
                let class = format!("class_{}", i % 7);
                let prev = seen.insert(class, id.to_string());
                assert!(prev.is_none() || prev.as_deref() == Some(id));
            }
            // The test item is never its own demonstration.
            let Query::Text(q) = &e.query else { panic!() };
            let test_line = q.strip_suffix("\nlabel:").unwrap();
            assert!(units.iter().all(|u| !u.starts_with(&format!("{test_line}\n"))));
        }
        assert_eq!(seen.len(), 7, "14 demonstrations cover all 7 classes");
        let mut ids: Vec<&String> = seen.values().collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 7, "distinct ids");
        // The answer is the remapped id of the test item's class.
        for e in &ex {
            let Query::Text(q) = &e.query else { panic!() };
            let i: usize = q
                .trim_start_matches("Utterance: text ")
                .trim_end_matches("\nlabel:")
                .parse()
                .unwrap();
            let Target::Answer { answer, .. } = &e.target else { panic!() };
            assert_eq!(answer, &seen[&format!("class_{}", i % 7)]);
        }
        // Same seed, same examples; another seed, another mapping.
        assert_eq!(build(&task(60, 7), &params(5, 14, 3)).unwrap(), ex);
        let other =
            remap_labels(&seen.keys().cloned().collect::<Vec<_>>(), &mut Rng::new(4)).unwrap();
        assert_ne!(
            other.values().map(|v| v.to_string()).collect::<Vec<_>>(),
            seen.values().cloned().collect::<Vec<_>>()
        );
    }

    #[test]
    fn too_few_labels_or_items_is_an_error() {
        assert!(build(&task(60, 4), &params(5, 14, 3)).is_err());
        assert!(build(&task(10, 7), &params(5, 14, 3)).is_err());
    }
}
