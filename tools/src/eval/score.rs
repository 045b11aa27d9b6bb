//! Scoring: exact and substring match of generated answers (SQuAD-style normalisation), the
//! perplexity arithmetic over query rows, and the confidence intervals the reports print.

use serde::{Deserialize, Serialize};

use super::example::Rule;

/// Lower case, punctuation to spaces, the articles a/an/the dropped, whitespace collapsed
/// (the normalisation of SQuAD / Natural Questions exact match).
pub fn normalize(s: &str) -> String {
    let lower: String = s
        .chars()
        .map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' })
        .flat_map(char::to_lowercase)
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The generated text up to its first non-empty line's end (answers are one line; the model
/// may start with a newline or space).
pub fn first_line(output: &str) -> &str {
    output.trim_start().lines().next().unwrap_or("")
}

/// 1 when `output` answers `answer` under `rule`, else 0. An empty answer never matches.
pub fn score_answer(output: &str, answer: &str, rule: Rule) -> f64 {
    let gold = normalize(answer);
    if gold.is_empty() {
        return 0.0;
    }
    let hit = match rule {
        Rule::Exact => normalize(first_line(output)) == gold,
        // Word-boundary containment: "12" must not match inside "123".
        Rule::Substring => {
            let out = format!(" {} ", normalize(output));
            out.contains(&format!(" {gold} "))
        }
    };
    if hit {
        1.0
    } else {
        0.0
    }
}

/// Sum of negative log-likelihoods over scored rows of one example.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NllSum {
    pub nll: f64,
    pub count: usize,
}

impl NllSum {
    /// Adds the NLL of `next` under `logits` (llama.cpp's arithmetic: runtime's `nll`).
    pub fn add_logits(&mut self, logits: &[f32], next: u32) {
        self.nll += weft::perplexity::nll(logits, next as usize);
        self.count += 1;
    }

    pub fn mean(&self) -> f64 {
        self.nll / self.count.max(1) as f64
    }
}

/// Mean and a 95 % interval of a set of per-example values.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub n: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

/// 95 % Wilson score interval for a proportion of `hits` in `n` (well behaved at 0 and 1 and
/// for the small n of a CPU sweep, unlike the normal approximation).
pub fn wilson(hits: f64, n: usize) -> Interval {
    if n == 0 {
        return Interval { n, mean: f64::NAN, lo: f64::NAN, hi: f64::NAN };
    }
    let z = 1.959_964;
    let nf = n as f64;
    let p = hits / nf;
    let denom = 1.0 + z * z / nf;
    let centre = (p + z * z / (2.0 * nf)) / denom;
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt() / denom;
    Interval { n, mean: p, lo: (centre - half).max(0.0), hi: (centre + half).min(1.0) }
}

/// Mean of `xs` with a 95 % normal interval (t ≈ 1.96; with n = 1 the interval is the point).
pub fn mean_ci(xs: &[f64]) -> Interval {
    let n = xs.len();
    if n == 0 {
        return Interval { n, mean: f64::NAN, lo: f64::NAN, hi: f64::NAN };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Interval { n, mean, lo: mean, hi: mean };
    }
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
    let half = 1.959_964 * (var / n as f64).sqrt();
    Interval { n, mean, lo: mean - half, hi: mean + half }
}

/// Perplexity over examples: exp of the mean of per-example mean NLLs, with the interval
/// mapped through exp (examples have equal query lengths in the lm task).
pub fn ppl_ci(per_example_mean_nll: &[f64]) -> Interval {
    let m = mean_ci(per_example_mean_nll);
    Interval { n: m.n, mean: m.mean.exp(), lo: m.lo.exp(), hi: m.hi.exp() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize("  The Eiffel-Tower!! "), "eiffel tower");
        assert_eq!(normalize("Chalino Sánchez."), "chalino sánchez");
        assert_eq!(normalize("a"), "");
    }

    #[test]
    fn exact_match_scores_first_line() {
        assert_eq!(score_answer(" 42\n\nUtterance: next", "42", Rule::Exact), 1.0);
        assert_eq!(score_answer("42.", "42", Rule::Exact), 1.0);
        assert_eq!(score_answer("17\n42", "42", Rule::Exact), 0.0);
        assert_eq!(score_answer("421", "42", Rule::Exact), 0.0);
        assert_eq!(score_answer("", "42", Rule::Exact), 0.0);
    }

    #[test]
    fn substring_match_on_word_boundaries() {
        assert_eq!(
            score_answer(" It was Griselda Blanco, of course.", "Griselda Blanco", Rule::Substring),
            1.0
        );
        assert_eq!(score_answer("griselda  BLANCO", "Griselda Blanco", Rule::Substring), 1.0);
        assert_eq!(score_answer("Jeremy Johnson", "Griselda Blanco", Rule::Substring), 0.0);
        assert_eq!(score_answer("The number is 1234567", "123456", Rule::Substring), 0.0);
        assert_eq!(score_answer("The number is 1234567.", "1234567", Rule::Substring), 1.0);
        assert_eq!(score_answer("anything", "!!", Rule::Substring), 0.0);
    }

    #[test]
    fn perplexity_arithmetic() {
        // Uniform logits over 4 tokens: NLL = ln 4 each, PPL = 4.
        let mut s = NllSum::default();
        s.add_logits(&[0.0; 4], 1);
        s.add_logits(&[0.0; 4], 3);
        assert_eq!(s.count, 2);
        assert!((s.nll - 2.0 * 4f64.ln()).abs() < 1e-9);
        assert!((s.mean().exp() - 4.0).abs() < 1e-9);
        // logits [ln 3, 0]: p(token 0) = 3/4.
        let mut t = NllSum::default();
        t.add_logits(&[3f32.ln(), 0.0], 0);
        assert!((t.nll - (4.0f64 / 3.0).ln()).abs() < 1e-6);
        // Across examples: geometric mean of per-example PPLs 2 and 8 is 4.
        let c = ppl_ci(&[2f64.ln(), 8f64.ln()]);
        assert!((c.mean - 4.0).abs() < 1e-9);
        assert!(c.lo < 4.0 && c.hi > 4.0);
    }

    #[test]
    fn intervals() {
        let w = wilson(5.0, 10);
        assert!((w.mean - 0.5).abs() < 1e-12);
        assert!((w.lo - 0.2366).abs() < 1e-3 && (w.hi - 0.7634).abs() < 1e-3);
        let z = wilson(0.0, 10);
        assert_eq!(z.lo, 0.0);
        assert!(z.hi > 0.2 && z.hi < 0.35);
        let m = mean_ci(&[1.0, 2.0, 3.0]);
        assert!((m.mean - 2.0).abs() < 1e-12);
        assert!((m.hi - m.mean - 1.959964 / 3f64.sqrt()).abs() < 1e-6);
    }
}
