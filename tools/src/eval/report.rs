//! Summaries of a results file: one row per setting (score or perplexity with a 95 % interval,
//! mean query entropy, time), as a markdown table and CSV, plus the per-layer entropy CSV.

use std::fmt::Write as _;

use super::results::RunFile;
use super::runner::Setting;
use super::score::{mean_ci, ppl_ci, wilson, Interval};

/// The aggregate of one setting.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub setting: Setting,
    pub n: usize,
    /// Accuracy (Wilson interval) for answer tasks.
    pub accuracy: Option<Interval>,
    /// Perplexity (exp of the mean per-example NLL, interval through exp) for lm.
    pub ppl: Option<Interval>,
    /// Mean over examples of the mean over layers of query-token entropy.
    pub entropy: Option<Interval>,
    /// Mean over examples, per layer.
    pub entropy_by_layer: Vec<f64>,
    pub mean_tokens: f64,
    pub seconds: f64,
}

pub fn rows(f: &RunFile) -> Vec<Row> {
    let mut runs: Vec<_> = f.runs.iter().collect();
    runs.sort_by_key(|r| (r.setting.sink, r.setting.select, r.setting.p));
    runs.into_iter()
        .map(|r| {
            let os = &r.outcomes;
            let n = os.len();
            let scores: Vec<f64> = os.iter().filter_map(|o| o.score).collect();
            let nlls: Vec<f64> = os.iter().filter_map(|o| o.nll.map(|s| s.mean())).collect();
            let stats: Vec<_> = os.iter().filter_map(|o| o.stats.as_ref()).collect();
            let ent: Vec<f64> = stats.iter().map(|s| s.mean_entropy()).collect();
            let n_layer = stats.iter().map(|s| s.entropy.len()).max().unwrap_or(0);
            let entropy_by_layer = (0..n_layer)
                .map(|l| {
                    let v: Vec<f64> =
                        stats.iter().filter_map(|s| s.entropy.get(l).copied()).collect();
                    v.iter().sum::<f64>() / v.len().max(1) as f64
                })
                .collect();
            Row {
                setting: r.setting,
                n,
                accuracy: (!scores.is_empty()).then(|| wilson(scores.iter().sum(), scores.len())),
                ppl: (!nlls.is_empty()).then(|| ppl_ci(&nlls)),
                entropy: (!ent.is_empty()).then(|| mean_ci(&ent)),
                entropy_by_layer,
                mean_tokens: os.iter().map(|o| o.n_tokens as f64).sum::<f64>() / n.max(1) as f64,
                seconds: os.iter().map(|o| o.seconds).sum(),
            }
        })
        .collect()
}

fn ci(i: &Option<Interval>, scale: f64, digits: usize) -> String {
    match i {
        Some(i) => format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            i.mean * scale,
            i.lo * scale,
            i.hi * scale,
            d = digits
        ),
        None => "-".into(),
    }
}

/// Markdown table; accuracy in percent.
pub fn markdown(f: &RunFile) -> String {
    let c = &f.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} `{}` on `{}` (sha256 {}…), n={} seed={}; 95 % intervals (Wilson for accuracy, normal \
         over examples for perplexity and entropy)\n",
        c.mode,
        c.task.name(),
        c.model.file,
        c.model.sha256.get(..12).unwrap_or(&c.model.sha256),
        c.params.n,
        c.params.seed
    );
    s.push_str(
        "| P | sink | select | n | accuracy % | ppl | query entropy (nats) | tokens | seconds |\n",
    );
    s.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for r in rows(f) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} |",
            r.setting.p,
            if r.setting.sink { "on" } else { "off" },
            r.setting.select,
            r.n,
            ci(&r.accuracy, 100.0, 1),
            ci(&r.ppl, 1.0, 2),
            ci(&r.entropy, 1.0, 3),
            r.mean_tokens,
            r.seconds
        );
    }
    s
}

/// One CSV line per setting.
pub fn csv(f: &RunFile) -> String {
    let mut s = String::from(
        "task,p,sink,select,n,accuracy,accuracy_lo,accuracy_hi,ppl,ppl_lo,ppl_hi,entropy,entropy_lo,entropy_hi,mean_tokens,seconds\n",
    );
    let num = |i: &Option<Interval>| match i {
        Some(i) => format!("{},{},{}", i.mean, i.lo, i.hi),
        None => ",,".into(),
    };
    for r in rows(f) {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{}",
            f.config.task.name(),
            r.setting.p,
            r.setting.sink,
            r.setting.select,
            r.n,
            num(&r.accuracy),
            num(&r.ppl),
            num(&r.entropy),
            r.mean_tokens,
            r.seconds
        );
    }
    s
}

/// Per-layer mean entropy: one line per setting, one column per layer.
pub fn entropy_by_layer_csv(f: &RunFile) -> String {
    let rows = rows(f);
    let n_layer = rows.iter().map(|r| r.entropy_by_layer.len()).max().unwrap_or(0);
    let mut s = String::from("p,sink,select");
    for l in 0..n_layer {
        let _ = write!(s, ",layer{l}");
    }
    s.push('\n');
    for r in rows.iter().filter(|r| !r.entropy_by_layer.is_empty()) {
        let _ = write!(s, "{},{},{}", r.setting.p, r.setting.sink, r.setting.select);
        for v in &r.entropy_by_layer {
            let _ = write!(s, ",{v}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::results::{ModelInfo, Outcome, RunConfig};
    use crate::eval::runner::LayerStats;
    use crate::eval::tasks::{TaskKind, TaskParams};

    fn outcome(id: &str, score: f64, ent: [f64; 2]) -> Outcome {
        Outcome {
            id: id.into(),
            score: Some(score),
            output: None,
            answer: None,
            nll: None,
            stats: Some(LayerStats { entropy: ent.to_vec(), ..Default::default() }),
            n_tokens: 100,
            seconds: 1.0,
        }
    }

    #[test]
    fn aggregates_per_setting() {
        let mut f = RunFile::new(RunConfig {
            mode: "eval".into(),
            task: TaskKind::Icl,
            params: TaskParams { n: 2, seed: 0, units: 8, seg_len: 0, haystack_chars: 0 },
            model: ModelInfo { file: "m.gguf".into(), sha256: "0123456789abcdef".into() },
            engine: vec![],
        });
        let s1 = Setting { p: 1, sink: false, select: 0 };
        let s4 = Setting { p: 4, sink: false, select: 0 };
        f.push(s4, outcome("a", 0.0, [2.0, 4.0]));
        f.push(s1, outcome("a", 1.0, [1.0, 2.0]));
        f.push(s1, outcome("b", 0.0, [1.0, 4.0]));
        let r = rows(&f);
        assert_eq!(r[0].setting, s1);
        assert_eq!(r[0].n, 2);
        assert!((r[0].accuracy.unwrap().mean - 0.5).abs() < 1e-12);
        assert_eq!(r[0].entropy_by_layer, vec![1.0, 3.0]);
        assert!((r[0].entropy.unwrap().mean - 2.0).abs() < 1e-12);
        let md = markdown(&f);
        assert!(md.contains("| 1 | off | 0 | 2 | 50.0 ["), "{md}");
        assert!(md.contains("| 4 | off | 0 | 1 | 0.0 ["), "{md}");
        let c = csv(&f);
        assert_eq!(c.lines().count(), 3);
        assert!(entropy_by_layer_csv(&f).contains("\n1,false,0,1,3\n"));
    }
}
