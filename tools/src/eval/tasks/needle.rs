//! Synthetic needle in a haystack (PAPER.md §6): essays concatenated in a seeded order and cut
//! to `haystack_chars` at a sentence end, one sentence "The special magic number is N." (N a
//! random 7-digit number) inserted after the sentence nearest a random depth; the text is cut
//! into P contiguous token chunks; the query asks for the number (substring recall).

use anyhow::{bail, Result};
use weft::sampling::Rng;

use super::TaskParams;
use crate::eval::example::{below, shuffle, Context, Example, Query, Rule, Target};

pub const QUESTION: &str =
    "\n\nQuestion: What is the special magic number mentioned in the text above?\nAnswer: The special magic number is";

pub fn needle(number: u32) -> String {
    format!(" The special magic number is {number}.")
}

pub fn build(essays: &[(String, String)], p: &TaskParams) -> Result<Vec<Example>> {
    if p.haystack_chars < 200 {
        bail!("needle: haystack of {} characters is too short", p.haystack_chars);
    }
    let mut rng = Rng::new(p.seed);
    let mut out = Vec::with_capacity(p.n);
    for k in 0..p.n {
        let mut order: Vec<usize> = (0..essays.len()).collect();
        shuffle(&mut rng, &mut order);
        let mut hay = String::new();
        for &i in order.iter().cycle().take(order.len() * 64) {
            if hay.len() >= p.haystack_chars {
                break;
            }
            hay.push_str(essays[i].1.trim());
            hay.push_str("\n\n");
        }
        let hay = cut_at_sentence(&hay, p.haystack_chars);
        let number = 1_000_000 + below(&mut rng, 9_000_000) as u32;
        // Depth in [0.05, 0.95] of the text, moved to the next sentence end.
        let depth = 0.05 + 0.9 * rng.next_f64();
        let at = sentence_end_after(hay, (hay.len() as f64 * depth) as usize);
        let text = format!("{}{}{}", &hay[..at], needle(number), &hay[at..]);
        out.push(Example {
            id: format!("needle-{k}-d{:02}", (depth * 100.0) as u32),
            context: Context::Text(text),
            query: Query::Text(QUESTION.to_string()),
            target: Target::Answer {
                answer: number.to_string(),
                rule: Rule::Substring,
                max_tokens: 8,
            },
        });
    }
    Ok(out)
}

/// The longest prefix of at most `max` bytes that ends after a '.', '?' or '!'.
fn cut_at_sentence(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    match s[..end].rfind(['.', '?', '!']) {
        Some(i) => &s[..=i],
        None => &s[..end],
    }
}

/// Byte index just after the first sentence end at or after `from` (or the text's end).
fn sentence_end_after(s: &str, from: usize) -> usize {
    let mut from = from.min(s.len());
    while !s.is_char_boundary(from) {
        from += 1;
    }
    s[from..].find(['.', '?', '!']).map_or(s.len(), |i| from + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn essays() -> Vec<(String, String)> {
        (0..3)
            .map(|i| {
                (
                    format!("e{i}"),
                    format!("Essay {i} begins. It has a middle? Yes it does! It ends."),
                )
            })
            .collect()
    }

    #[test]
    fn one_needle_inside_the_haystack() {
        let p = TaskParams { n: 4, seed: 5, units: 0, seg_len: 0, haystack_chars: 400 };
        let ex = build(&essays(), &p).unwrap();
        for e in &ex {
            let Context::Text(t) = &e.context else { panic!() };
            let Target::Answer { answer, .. } = &e.target else { panic!() };
            assert_eq!(t.matches("special magic number").count(), 1);
            assert!(t.contains(&needle(answer.parse().unwrap())));
            assert!(t.len() <= 400 + needle(0).len() + 8);
            assert_eq!(answer.len(), 7);
        }
        assert_eq!(build(&essays(), &p).unwrap(), ex);
    }

    #[test]
    fn sentence_helpers() {
        assert_eq!(cut_at_sentence("A b. C d. E", 8), "A b.");
        assert_eq!(sentence_end_after("A b. C d. E", 5), 9);
        assert_eq!(sentence_end_after("A b", 1), 3);
    }
}
