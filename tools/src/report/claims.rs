//! The five claims of the paper (issue #7, PAPER.md §6) checked against one model's results:
//! paired differences between settings over the same examples, with 95 % intervals, and a
//! verdict that says whether the interval allows a conclusion.
//!
//! Pairing: every setting of a task runs the same example ids, so a difference between two
//! settings is taken per example (and, when pooled over several P, per (example, P) pair) and
//! its mean gets a normal 95 % interval. Pairs from different P of one example are not
//! independent; pooled intervals are therefore somewhat optimistic, and the report says so.

use std::fmt::Write as _;

use crate::eval::results::RunFile;
use crate::eval::runner::Setting;
use crate::eval::score::{mean_ci, Interval};
use crate::eval::tasks::TaskKind;

/// A per-example quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Accuracy (1/0) for answer tasks; mean NLL per query token (nats) for lm.
    Score,
    /// Mean over layers of query-token attention entropy (nats).
    Entropy,
}

/// Value of `m` for each example id of setting `s`.
pub fn values(f: &RunFile, s: Setting, m: Metric) -> Vec<(String, f64)> {
    let Some(run) = f.runs.iter().find(|r| r.setting == s) else { return Vec::new() };
    run.outcomes
        .iter()
        .filter_map(|o| {
            let v = match m {
                Metric::Score => o.score.or_else(|| o.nll.map(|n| n.mean())),
                Metric::Entropy => o.stats.as_ref().map(|s| s.mean_entropy()),
            };
            v.map(|v| (o.id.clone(), v))
        })
        .collect()
}

/// Paired differences b − a over example ids present in both, pooled over `pairs`.
pub fn paired(f: &RunFile, pairs: &[(Setting, Setting)], m: Metric) -> Option<Interval> {
    let mut d = Vec::new();
    for &(a, b) in pairs {
        let va = values(f, a, m);
        for (id, y) in values(f, b, m) {
            if let Some((_, x)) = va.iter().find(|(i, _)| *i == id) {
                d.push(y - x);
            }
        }
    }
    (!d.is_empty()).then(|| mean_ci(&d))
}

/// P values present in the file, sorted.
pub fn ps(f: &RunFile) -> Vec<usize> {
    let mut v: Vec<usize> = f.runs.iter().map(|r| r.setting.p).collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn has(f: &RunFile, s: Setting) -> bool {
    f.runs.iter().any(|r| r.setting == s && !r.outcomes.is_empty())
}

/// "+0.12 [+0.05, +0.19]" with a verdict: whether the interval excludes zero.
fn diff_text(i: &Interval, scale: f64, digits: usize) -> String {
    let sig = if i.n < 2 {
        "n<2, no interval"
    } else if i.lo == i.hi {
        // every pair differs by the same amount (e.g. 10/10 right → 0/10): the normal
        // interval collapses; the Wilson intervals of the two settings are the honest bound
        "all pairs equal"
    } else if i.lo > 0.0 {
        "CI > 0"
    } else if i.hi < 0.0 {
        "CI < 0"
    } else {
        "CI spans 0"
    };
    format!(
        "{:+.d$} [{:+.d$}, {:+.d$}] ({sig}, {} pairs)",
        i.mean * scale,
        i.lo * scale,
        i.hi * scale,
        i.n,
        d = digits
    )
}

/// Scale and digits of a score difference: accuracy points for answer tasks, nats of NLL
/// per token (= log of the perplexity ratio) for lm.
fn score_fmt(task: TaskKind) -> (f64, usize, &'static str) {
    if task == TaskKind::Lm {
        (1.0, 3, "Δ log ppl")
    } else {
        (100.0, 1, "Δ acc (points)")
    }
}

const fn st(p: usize, sink: bool, select: usize) -> Setting {
    Setting { p, sink, select }
}

/// Markdown of the five checks for one model's results (one file per task).
pub fn claims_markdown(files: &[&RunFile]) -> String {
    let mut s = String::new();
    let e = Metric::Entropy;

    s.push_str(
        "**(1) Query entropy rises with P** — no sink, no selection; entropy at the largest P \
         minus at P = 1, paired over examples (nats):\n\n",
    );
    for f in files {
        let ps = ps(f);
        let (Some(&p0), Some(&p1)) = (ps.first(), ps.last()) else { continue };
        if p0 == p1 {
            continue;
        }
        if let Some(i) = paired(f, &[(st(p0, false, 0), st(p1, false, 0))], e) {
            let _ =
                writeln!(s, "- {} (P {p0}→{p1}): {}", f.config.task.name(), diff_text(&i, 1.0, 3));
        }
    }

    s.push_str(
        "\n**(2) Perplexity / accuracy degrade with P** — no sink, no selection; largest P minus \
         P = 1 (accuracy points; for lm the change of mean NLL per token, i.e. log of the \
         perplexity ratio, > 0 = worse):\n\n",
    );
    for f in files {
        let ps = ps(f);
        let (Some(&p0), Some(&p1)) = (ps.first(), ps.last()) else { continue };
        if p0 == p1 {
            continue;
        }
        let task = f.config.task;
        let (k, d, _) = score_fmt(task);
        if let Some(i) = paired(f, &[(st(p0, false, 0), st(p1, false, 0))], Metric::Score) {
            let _ = writeln!(s, "- {} (P {p0}→{p1}): {}", task.name(), diff_text(&i, k, d));
        }
    }

    s.push_str(
        "\n**(3) The sink lowers entropy and helps ICL most** — sink on minus off, no \
         selection, pooled over P > 1:\n\n",
    );
    for f in files {
        let task = f.config.task;
        let pairs: Vec<_> = ps(f)
            .into_iter()
            .filter(|&p| p > 1)
            .map(|p| (st(p, false, 0), st(p, true, 0)))
            .filter(|(a, b)| has(f, *a) && has(f, *b))
            .collect();
        let (k, d, label) = score_fmt(task);
        let ent = paired(f, &pairs, e).map(|i| diff_text(&i, 1.0, 3));
        let sc = paired(f, &pairs, Metric::Score).map(|i| diff_text(&i, k, d));
        if ent.is_some() || sc.is_some() {
            let _ = writeln!(
                s,
                "- {}: Δ entropy {}; {label} {}",
                task.name(),
                ent.unwrap_or_else(|| "-".into()),
                sc.unwrap_or_else(|| "-".into())
            );
        }
    }

    s.push_str(
        "\n**(4) Selection helps RAG and needle most** — selection (K = 2) minus none, no sink, \
         pooled over P > 2 (at P ≤ 2 keeping 2 pieces drops nothing):\n\n",
    );
    for f in files {
        let task = f.config.task;
        let sel = f.runs.iter().map(|r| r.setting.select).filter(|&k| k > 0).min();
        let Some(k_sel) = sel else { continue };
        let pairs: Vec<_> = ps(f)
            .into_iter()
            .filter(|&p| p > k_sel)
            .map(|p| (st(p, false, 0), st(p, false, k_sel)))
            .filter(|(a, b)| has(f, *a) && has(f, *b))
            .collect();
        let (k, d, label) = score_fmt(task);
        if let Some(i) = paired(f, &pairs, Metric::Score) {
            let ent = paired(f, &pairs, e).map(|i| diff_text(&i, 1.0, 3));
            let _ = writeln!(
                s,
                "- {}: {label} {}; Δ entropy {}",
                task.name(),
                diff_text(&i, k, d),
                ent.unwrap_or_else(|| "-".into())
            );
        }
    }

    s.push_str(
        "\n**(5) Sink + selection is the best balance** — mean score per setting over P > 1 \
         (accuracy % for answer tasks, perplexity for lm), and each setting's mean accuracy \
         over the answer tasks:\n\n",
    );
    s.push_str(&balance_table(files));
    s
}

/// The variants (sink, select) present in any file, in a fixed order.
fn variants(files: &[&RunFile]) -> Vec<(bool, usize)> {
    let mut v: Vec<(bool, usize)> = files
        .iter()
        .flat_map(|f| f.runs.iter().map(|r| (r.setting.sink, r.setting.select)))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Per variant: mean score over P > 1 for each task, and the mean over answer tasks.
fn balance_table(files: &[&RunFile]) -> String {
    let mut s = String::from("| sink | select |");
    for f in files {
        let _ = write!(s, " {} |", f.config.task.name());
    }
    s.push_str(" mean of answer tasks % |\n|---|---|");
    for _ in files {
        s.push_str("---|");
    }
    s.push_str("---|\n");
    for (sink, select) in variants(files) {
        let _ = write!(s, "| {} | {} |", if sink { "on" } else { "off" }, select);
        let mut answer_means = Vec::new();
        for f in files {
            let v: Vec<f64> = ps(f)
                .into_iter()
                .filter(|&p| p > 1)
                .flat_map(|p| values(f, st(p, sink, select), Metric::Score))
                .map(|(_, v)| v)
                .collect();
            if v.is_empty() {
                s.push_str(" - |");
                continue;
            }
            let m = v.iter().sum::<f64>() / v.len() as f64;
            if f.config.task == TaskKind::Lm {
                let _ = write!(s, " {:.2} |", m.exp());
            } else {
                answer_means.push(m * 100.0);
                let _ = write!(s, " {:.1} |", m * 100.0);
            }
        }
        if answer_means.is_empty() {
            s.push_str(" - |\n");
        } else {
            let m = answer_means.iter().sum::<f64>() / answer_means.len() as f64;
            let _ = writeln!(s, " {m:.1} |");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::results::{ModelInfo, Outcome, RunConfig};
    use crate::eval::runner::LayerStats;
    use crate::eval::tasks::TaskParams;

    fn file(task: TaskKind) -> RunFile {
        RunFile::new(RunConfig {
            mode: "eval".into(),
            task,
            params: TaskParams { n: 2, seed: 0, units: 8, seg_len: 0, haystack_chars: 0 },
            model: ModelInfo { file: "m.gguf".into(), sha256: "00".into() },
            engine: vec![],
        })
    }

    fn o(id: &str, score: f64, ent: f64) -> Outcome {
        Outcome {
            id: id.into(),
            score: Some(score),
            output: None,
            answer: None,
            nll: None,
            stats: Some(LayerStats { entropy: vec![ent], ..Default::default() }),
            n_tokens: 10,
            seconds: 1.0,
        }
    }

    #[test]
    fn paired_differences_match_ids() {
        let mut f = file(TaskKind::Icl);
        f.push(st(1, false, 0), o("a", 1.0, 1.0));
        f.push(st(1, false, 0), o("b", 1.0, 2.0));
        f.push(st(4, false, 0), o("b", 0.0, 3.0));
        f.push(st(4, false, 0), o("a", 1.0, 2.0));
        f.push(st(4, false, 0), o("c", 1.0, 9.0)); // no partner at P = 1: ignored
        let i = paired(&f, &[(st(1, false, 0), st(4, false, 0))], Metric::Entropy).unwrap();
        assert_eq!(i.n, 2);
        assert!((i.mean - 1.0).abs() < 1e-12 && i.lo == i.hi || (i.hi - i.lo).abs() < 1e-9);
        let sc = paired(&f, &[(st(1, false, 0), st(4, false, 0))], Metric::Score).unwrap();
        assert!((sc.mean + 0.5).abs() < 1e-12);
        assert_eq!(ps(&f), vec![1, 4]);
    }

    #[test]
    fn claims_text_has_verdicts() {
        let mut f = file(TaskKind::Icl);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            let x = i as f64 * 0.01;
            f.push(st(1, false, 0), o(id, 1.0, 1.0 + x));
            f.push(st(4, false, 0), o(id, 0.0, 2.0 + x * 2.0));
            f.push(st(4, true, 0), o(id, 1.0, 1.5 + x));
            f.push(st(4, false, 2), o(id, 0.0, 1.8 + x));
        }
        let md = claims_markdown(&[&f]);
        assert!(md.contains("- icl (P 1→4): +1.010 ["), "{md}");
        assert!(md.contains("CI > 0"), "{md}");
        // sink: accuracy +100 points on all three pairs, entropy lower
        assert!(md.contains("Δ acc (points) +100.0 [+100.0, +100.0] (all pairs equal"), "{md}");
        assert!(md.contains("| on | 0 | 100.0 | 100.0 |"), "{md}");
        assert!(md.contains("| off | 2 | 0.0 | 0.0 |"), "{md}");
    }
}
