//! Token sampling with llama.cpp's semantics and default chain order:
//! repetition penalties -> top-k -> top-p -> min-p -> temperature -> draw.
//!
//! Temperature <= 0 is greedy (the highest logit after penalties; the first on ties). The
//! draw uses weft's own small PRNG (xoshiro256**, seeded with splitmix64), so a seed gives the
//! same tokens on every machine, though not the same tokens as llama.cpp (which uses mt19937
//! and `std::discrete_distribution`).

use std::collections::{HashMap, VecDeque};

/// Sampler settings. Defaults are llama.cpp's (`common_params_sampling`).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// <= 0: greedy.
    pub temp: f32,
    /// <= 0: off.
    pub top_k: i32,
    /// >= 1: off.
    pub top_p: f32,
    /// <= 0: off.
    pub min_p: f32,
    /// 1: off. A seen token's logit is divided by it when positive, multiplied when not.
    pub repeat_penalty: f32,
    /// Subtracted count times (0: off).
    pub frequency_penalty: f32,
    /// Subtracted once for a seen token (0: off).
    pub presence_penalty: f32,
    /// How many of the last tokens the penalties look at (0: off).
    pub penalty_last_n: usize,
    /// Filters keep at least this many candidates.
    pub min_keep: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temp: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            min_keep: 0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding (argmax), no penalties.
    pub fn greedy() -> Self {
        SamplerConfig { temp: 0.0, ..Default::default() }
    }
}

/// xoshiro256** (Blackman & Vigna), seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng { s: [next(), next(), next(), next()] }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// One candidate token.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cand {
    id: u32,
    logit: f32,
    p: f32,
}

/// A stateful sampler: the penalty window and the PRNG persist across calls.
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// the last `penalty_last_n` accepted tokens
    prev: VecDeque<u32>,
    /// occurrences of each token in `prev`
    counts: HashMap<u32, u32>,
    /// candidates, reused between calls: [n_vocab] at most
    cands: Vec<Cand>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = Rng::new(cfg.seed);
        Sampler { cfg, rng, prev: VecDeque::new(), counts: HashMap::new(), cands: Vec::new() }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Forget the penalty window (the PRNG keeps its state).
    pub fn reset(&mut self) {
        self.prev.clear();
        self.counts.clear();
    }

    /// Record a token (prompt or generated) for the repetition penalties.
    pub fn accept(&mut self, id: u32) {
        let n = self.cfg.penalty_last_n;
        if n == 0 {
            return;
        }
        if self.prev.len() == n {
            if let Some(old) = self.prev.pop_front() {
                if let Some(c) = self.counts.get_mut(&old) {
                    *c -= 1;
                    if *c == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
        }
        self.prev.push_back(id);
        *self.counts.entry(id).or_insert(0) += 1;
    }

    /// Choose the next token from one position's logits (f32 [n_vocab]). Does not
    /// [`accept`](Self::accept) it. Returns `None` for an empty vocabulary.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        if logits.is_empty() {
            return None;
        }
        self.cands.clear();
        self.cands.extend(logits.iter().enumerate().map(|(i, &l)| Cand {
            id: i as u32,
            logit: l,
            p: 0.0,
        }));
        self.apply_penalties();
        let cfg = self.cfg.clone();
        if cfg.temp <= 0.0 {
            return Some(argmax(&self.cands));
        }
        // top_k leaves the candidates sorted; top_p needs them sorted.
        let sorted = cfg.top_k > 0;
        if cfg.top_k > 0 {
            top_k(&mut self.cands, cfg.top_k as usize);
        }
        if cfg.top_p < 1.0 {
            if !sorted {
                sort_desc(&mut self.cands);
            }
            top_p(&mut self.cands, cfg.top_p, cfg.min_keep);
        }
        if cfg.min_p > 0.0 {
            min_p(&mut self.cands, cfg.min_p, cfg.min_keep);
        }
        for c in self.cands.iter_mut() {
            c.logit /= cfg.temp;
        }
        softmax(&mut self.cands);
        let r = self.rng.next_f64();
        Some(draw(&self.cands, r))
    }

    fn apply_penalties(&mut self) {
        let c = &self.cfg;
        if c.penalty_last_n == 0
            || (c.repeat_penalty == 1.0 && c.frequency_penalty == 0.0 && c.presence_penalty == 0.0)
        {
            return;
        }
        for (&id, &count) in &self.counts {
            if let Some(cand) = self.cands.get_mut(id as usize) {
                if cand.logit <= 0.0 {
                    cand.logit *= c.repeat_penalty;
                } else {
                    cand.logit /= c.repeat_penalty;
                }
                cand.logit -= count as f32 * c.frequency_penalty + c.presence_penalty;
            }
        }
    }
}

/// The candidate with the highest logit; the first one on ties.
fn argmax(c: &[Cand]) -> u32 {
    let mut best = 0;
    for i in 1..c.len() {
        if c[i].logit > c[best].logit {
            best = i;
        }
    }
    c[best].id
}

/// Index of the largest value of a logit vector; the first one on ties (greedy decoding).
pub fn argmax_logits(logits: &[f32]) -> Option<u32> {
    if logits.is_empty() {
        return None;
    }
    let mut best = 0;
    for i in 1..logits.len() {
        if logits[i] > logits[best] {
            best = i;
        }
    }
    Some(best as u32)
}

fn desc(a: &Cand, b: &Cand) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

fn sort_desc(c: &mut [Cand]) {
    c.sort_unstable_by(desc);
}

/// Keep the k highest logits, sorted descending.
fn top_k(c: &mut Vec<Cand>, k: usize) {
    let k = k.min(c.len());
    if k == 0 {
        return;
    }
    if k < c.len() {
        c.select_nth_unstable_by(k - 1, desc);
        c.truncate(k);
    }
    sort_desc(c);
}

/// Softmax of the candidates' logits into `p` (max-subtracted, f32 sums as llama.cpp).
fn softmax(c: &mut [Cand]) {
    let max = c.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in c.iter_mut() {
        x.p = (x.logit - max).exp();
        sum += x.p;
    }
    for x in c.iter_mut() {
        x.p /= sum;
    }
}

/// Keep the smallest prefix (of descending candidates) whose probability reaches p.
fn top_p(c: &mut Vec<Cand>, p: f32, min_keep: usize) {
    softmax(c);
    let mut cum = 0.0f32;
    let mut last = c.len();
    for (i, x) in c.iter().enumerate() {
        cum += x.p;
        if cum >= p && i + 1 >= min_keep {
            last = i + 1;
            break;
        }
    }
    c.truncate(last);
}

/// Keep candidates whose probability is at least `p` times the highest one's.
fn min_p(c: &mut Vec<Cand>, p: f32, min_keep: usize) {
    if c.is_empty() {
        return;
    }
    let max = c.iter().map(|c| c.logit).fold(f32::NEG_INFINITY, f32::max);
    let min_logit = max + p.ln();
    let kept = c.iter().filter(|x| x.logit >= min_logit).count();
    if kept >= min_keep {
        c.retain(|x| x.logit >= min_logit);
    } else {
        sort_desc(c);
        c.truncate(min_keep.min(c.len()));
    }
}

/// Draw from the candidates' probabilities with a uniform `r` in [0, 1).
fn draw(c: &[Cand], r: f64) -> u32 {
    let total: f64 = c.iter().map(|x| x.p as f64).sum();
    let target = r * total;
    let mut cum = 0.0f64;
    for x in c {
        cum += x.p as f64;
        if target < cum {
            return x.id;
        }
    }
    // Rounding left target at the very end: the last candidate with non-zero probability.
    c.iter().rev().find(|x| x.p > 0.0).unwrap_or(&c[c.len() - 1]).id
}

/// Stop-string matcher for streamed text: holds back text that may be the start of a stop
/// string, and cuts the output at the first complete one.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// text received but not yet released
    pending: String,
}

impl StopStrings {
    pub fn new(stops: &[String]) -> StopStrings {
        StopStrings {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            pending: String::new(),
        }
    }

    /// Add generated text. Returns the text that is safe to emit and whether a stop string
    /// was found (the stop string and everything after it are dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.pending.push_str(text);
        let first = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min();
        if let Some(i) = first {
            let out = self.pending[..i].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let mut hold = 0;
        for s in &self.stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = &self.pending[i..];
                if suffix.len() < s.len() && s.starts_with(suffix) {
                    hold = hold.max(suffix.len());
                    break;
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        (out, false)
    }

    /// Release held-back text at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(logits: &[f32]) -> Vec<Cand> {
        logits.iter().enumerate().map(|(i, &l)| Cand { id: i as u32, logit: l, p: 0.0 }).collect()
    }

    fn ids(c: &[Cand]) -> Vec<u32> {
        c.iter().map(|c| c.id).collect()
    }

    #[test]
    fn greedy_picks_first_max() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0]), Some(1));
        assert_eq!(s.sample(&[]), None);
        assert_eq!(argmax_logits(&[-1.0, -0.5, -0.5]), Some(1));
    }

    #[test]
    fn top_k_keeps_k_sorted() {
        let mut c = cands(&[1.0, 5.0, 3.0, 4.0, 2.0]);
        top_k(&mut c, 3);
        assert_eq!(ids(&c), vec![1, 3, 2]);
    }

    #[test]
    fn top_p_hand_computed() {
        // logits ln(0.5), ln(0.3), ln(0.2): probabilities 0.5, 0.3, 0.2.
        let mut c = cands(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]);
        top_p(&mut c, 0.7, 0);
        assert_eq!(ids(&c), vec![0, 1]); // 0.5 < 0.7 <= 0.8
        let mut c = cands(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]);
        top_p(&mut c, 0.5, 0);
        assert_eq!(ids(&c), vec![0]);
        let mut c = cands(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]);
        top_p(&mut c, 0.5, 2);
        assert_eq!(ids(&c), vec![0, 1]);
    }

    #[test]
    fn min_p_hand_computed() {
        // probabilities 0.5, 0.3, 0.2 with min_p 0.5: keep p >= 0.25 -> tokens 0 and 1.
        let mut c = cands(&[0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]);
        min_p(&mut c, 0.5, 0);
        assert_eq!(ids(&c), vec![0, 1]);
        let mut c = cands(&[0.2f32.ln(), 0.5f32.ln(), 0.3f32.ln()]);
        min_p(&mut c, 0.7, 2);
        assert_eq!(ids(&c), vec![1, 2]);
    }

    #[test]
    fn repetition_penalty_llama_semantics() {
        let cfg = SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg);
        // Token 0 (logit 3) was seen: 3 / 2 = 1.5 < 2, so token 1 wins.
        s.accept(0);
        assert_eq!(s.sample(&[3.0, 2.0, -1.0]), Some(1));
        // A negative logit is multiplied: -1 * 2 = -2, still below -1.5.
        let mut s = Sampler::new(SamplerConfig { repeat_penalty: 2.0, ..SamplerConfig::greedy() });
        s.accept(1);
        assert_eq!(s.sample(&[-2.5, -1.0, -1.5]), Some(2));
    }

    #[test]
    fn penalty_window_slides() {
        let cfg =
            SamplerConfig { repeat_penalty: 10.0, penalty_last_n: 2, ..SamplerConfig::greedy() };
        let mut s = Sampler::new(cfg);
        s.accept(0);
        s.accept(1);
        s.accept(2); // token 0 leaves the window
        assert_eq!(s.sample(&[1.0, 0.9, 0.8]), Some(0));
        assert_eq!(s.counts.len(), 2);
    }

    #[test]
    fn frequency_and_presence() {
        let cfg = SamplerConfig {
            frequency_penalty: 1.0,
            presence_penalty: 0.5,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg);
        s.accept(0);
        s.accept(0);
        // 5 - 2*1 - 0.5 = 2.5 < 3
        assert_eq!(s.sample(&[5.0, 3.0]), Some(1));
    }

    #[test]
    fn seeded_sampling_is_reproducible_and_follows_distribution() {
        let cfg = SamplerConfig {
            temp: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..Default::default()
        };
        let logits = [0.25f32.ln(), 0.75f32.ln()];
        let mut a = Sampler::new(cfg.clone());
        let mut b = Sampler::new(cfg);
        let mut ones = 0;
        for _ in 0..4000 {
            let x = a.sample(&logits).unwrap();
            assert_eq!(Some(x), b.sample(&logits));
            ones += x as usize;
        }
        // 3000 expected; 4 standard deviations is ~110.
        assert!((2890..=3110).contains(&ones), "{ones}");
    }

    #[test]
    fn temperature_sharpens() {
        // At temperature 0.1 the 0.75/0.25 split becomes 3^10 : 1: essentially always token 1.
        let cfg = SamplerConfig {
            temp: 0.1,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 1,
            ..Default::default()
        };
        let mut s = Sampler::new(cfg);
        let logits = [0.25f32.ln(), 0.75f32.ln()];
        let ones: u32 = (0..1000).map(|_| s.sample(&logits).unwrap()).sum();
        assert!(ones >= 995, "{ones}");
    }

    #[test]
    fn top_k_one_is_greedy() {
        let cfg = SamplerConfig { temp: 1.0, top_k: 1, seed: 3, ..Default::default() };
        let mut s = Sampler::new(cfg);
        for _ in 0..50 {
            assert_eq!(s.sample(&[0.1, 0.0, 0.3, 0.2]), Some(2));
        }
    }

    #[test]
    fn draw_hand_computed() {
        let c = vec![Cand { id: 4, logit: 0.0, p: 0.25 }, Cand { id: 9, logit: 0.0, p: 0.75 }];
        assert_eq!(draw(&c, 0.0), 4);
        assert_eq!(draw(&c, 0.2499), 4);
        assert_eq!(draw(&c, 0.25), 9);
        assert_eq!(draw(&c, 0.999), 9);
    }

    #[test]
    fn rng_known_values() {
        // Two generators with one seed agree; different seeds differ; f64 stays in [0, 1).
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let mut c = Rng::new(43);
        let xa: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let xb: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let xc: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xa, xb);
        assert_ne!(xa, xc);
        for _ in 0..1000 {
            let f = a.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }

    #[test]
    fn stop_strings_hold_back_and_cut() {
        let mut s = StopStrings::new(&["</s>".to_string(), "\n\nUser:".to_string()]);
        assert_eq!(s.push("Hello"), ("Hello".to_string(), false));
        assert_eq!(s.push(" wor<"), (" wor".to_string(), false));
        assert_eq!(s.push("/"), (String::new(), false));
        assert_eq!(s.push("x"), ("</x".to_string(), false));
        assert_eq!(s.push("ld\n"), ("ld".to_string(), false));
        assert_eq!(s.push("\nUs"), (String::new(), false));
        assert_eq!(s.push("er: hi"), (String::new(), true));
        let mut s = StopStrings::new(&["ab".to_string()]);
        assert_eq!(s.push("xa"), ("x".to_string(), false));
        assert_eq!(s.finish(), "a");
        let mut s = StopStrings::new(&[]);
        assert_eq!(s.push("é</s>"), ("é</s>".to_string(), false));
    }
}
