//! Synthetic JSON key-value retrieval (PAPER.md §6): `units` pairs of random 8-hex-digit keys
//! and values, one `"key": "value",` line per unit, dealt contiguously into P pieces (each
//! piece a run of the object's lines); the query names one key and the answer is its value
//! (substring match). Generated from the seed alone: no data set.

use weft::sampling::Rng;

use super::TaskParams;
use crate::eval::example::{below, Context, Deal, Example, Query, Rule, Target};

fn hex8(rng: &mut Rng) -> String {
    format!("{:08x}", rng.next_u64() as u32)
}

pub fn build(p: &TaskParams) -> Vec<Example> {
    let mut rng = Rng::new(p.seed);
    (0..p.n)
        .map(|k| {
            let mut keys: Vec<String> = Vec::with_capacity(p.units);
            while keys.len() < p.units {
                let key = hex8(&mut rng);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let values: Vec<String> = (0..p.units).map(|_| hex8(&mut rng)).collect();
            let units =
                keys.iter().zip(&values).map(|(k, v)| format!("\"{k}\": \"{v}\",\n")).collect();
            let t = below(&mut rng, p.units.max(1));
            Example {
                id: format!("kv-{k}"),
                context: Context::Units { units, deal: Deal::Contiguous },
                query: Query::Text(format!(
                    "\nExtract the value of the key \"{}\" from the JSON object above.\nValue: \"",
                    keys[t]
                )),
                target: Target::Answer {
                    answer: values[t].clone(),
                    rule: Rule::Substring,
                    max_tokens: 10,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_asked_key_is_in_the_context_with_its_value() {
        let p = TaskParams { n: 5, seed: 1, units: 20, seg_len: 0, haystack_chars: 0 };
        let ex = build(&p);
        assert_eq!(ex.len(), 5);
        for e in &ex {
            let Context::Units { units, .. } = &e.context else { panic!() };
            let Query::Text(q) = &e.query else { panic!() };
            let Target::Answer { answer, .. } = &e.target else { panic!() };
            let key = q.split('"').nth(1).unwrap();
            let line = format!("\"{key}\": \"{answer}\",\n");
            assert_eq!(units.iter().filter(|u| **u == line).count(), 1);
        }
        assert_eq!(build(&p), ex);
        assert_ne!(build(&TaskParams { seed: 2, ..p }), ex);
    }
}
