//! docs/RESULTS.md from the sweep's results files: the sweep log (configuration, wall time,
//! load), the paper's table beside ours, the five claims checked with intervals, the
//! hand-written discussion, and per model and task a table of score and query entropy against
//! P for every sink/selection setting, with its plots.

use std::fmt::Write as _;

use super::claims::claims_markdown;
use super::log::SweepLog;
use super::paper::{paper_column, paper_table, paper_value, PAPER_P};
use crate::eval::report::{rows, Row};
use crate::eval::results::RunFile;
use crate::eval::score::Interval;
use crate::eval::tasks::TaskKind;

/// The results of one model.
pub struct ModelResults<'a> {
    /// Manifest name or path as given on the command line.
    pub name: String,
    /// One file per task, in task order.
    pub files: Vec<&'a RunFile>,
}

/// Everything the report is made of.
pub struct ReportInput<'a> {
    pub command: String,
    pub log: &'a SweepLog,
    pub models: Vec<ModelResults<'a>>,
    /// Markdown written by a person after reading the numbers (docs/results/discussion.md).
    pub discussion: Option<String>,
    /// Static sections (data, protocols) appended verbatim.
    pub appendix: &'a str,
    /// Plot paths relative to docs/, per (model name, task): score and entropy plots.
    pub plots: Vec<(String, TaskKind, Vec<String>)>,
}

fn ci(i: &Option<Interval>, scale: f64, digits: usize) -> String {
    match i {
        Some(i) if i.n >= 2 => format!(
            "{:.d$} [{:.d$}, {:.d$}]",
            i.mean * scale,
            i.lo * scale,
            i.hi * scale,
            d = digits
        ),
        Some(i) => format!("{:.d$}", i.mean * scale, d = digits),
        None => "-".into(),
    }
}

/// Score cell of a row: accuracy % or perplexity.
fn score_cell(r: &Row) -> String {
    if r.ppl.is_some() {
        ci(&r.ppl, 1.0, 2)
    } else {
        ci(&r.accuracy, 100.0, 1)
    }
}

/// Per-task table: P, sink, select, n, score [95 % CI], entropy [95 % CI], the paper's value
/// (no sink, no selection rows only), tokens and seconds.
pub fn task_table(f: &RunFile) -> String {
    let task = f.config.task;
    let score = if task == TaskKind::Lm { "perplexity" } else { "accuracy %" };
    let mut s = format!(
        "| P | sink | select | n | {score} [95 % CI] | query entropy, nats [95 % CI] | paper \
         Llama-3.1-8B {} | tokens | s / example |\n|---|---|---|---|---|---|---|---|---|\n",
        paper_column(task)
    );
    let mut rs = rows(f);
    rs.sort_by_key(|r| (r.setting.p, r.setting.sink, r.setting.select));
    for r in rs {
        let baseline = !r.setting.sink && r.setting.select == 0;
        let paper = paper_value(task, r.setting.p)
            .filter(|_| baseline)
            .map(|v| if task == TaskKind::Lm { format!("{v:.2}") } else { format!("{v:.1}") })
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.1} |",
            r.setting.p,
            if r.setting.sink { "on" } else { "off" },
            r.setting.select,
            r.n,
            score_cell(&r),
            ci(&r.entropy, 1.0, 3),
            paper,
            r.mean_tokens,
            r.seconds / r.n.max(1) as f64
        );
    }
    s
}

/// Ours at the paper's P values (no sink, no selection), one column per task, beside the
/// paper's table.
pub fn side_by_side(m: &ModelResults<'_>) -> String {
    let mut s = String::from("| P |");
    for f in &m.files {
        let t = f.config.task;
        let _ =
            write!(s, " {} {} | paper |", t.name(), if t == TaskKind::Lm { "ppl" } else { "%" });
    }
    s.push_str("\n|---|");
    for _ in &m.files {
        s.push_str("---|---|");
    }
    s.push('\n');
    let mut all_p: Vec<usize> =
        m.files.iter().flat_map(|f| f.runs.iter().map(|r| r.setting.p)).collect();
    all_p.extend(PAPER_P);
    all_p.sort_unstable();
    all_p.dedup();
    for p in all_p {
        let _ = write!(s, "| {p} |");
        for f in &m.files {
            let t = f.config.task;
            let row = rows(f)
                .into_iter()
                .find(|r| r.setting.p == p && !r.setting.sink && r.setting.select == 0);
            let ours = row.map(|r| score_cell(&r)).unwrap_or_else(|| "-".into());
            let paper = paper_value(t, p)
                .map(|v| if t == TaskKind::Lm { format!("{v:.2}") } else { format!("{v:.1}") })
                .unwrap_or_else(|| "-".into());
            let _ = write!(s, " {ours} | {paper} |");
        }
        s.push('\n');
    }
    s
}

/// The whole report.
pub fn render(input: &ReportInput<'_>) -> String {
    let mut s = String::new();
    s.push_str("# Parallel context encoding: reproduction on small models\n\n");
    let _ = writeln!(
        s,
        "This report reproduces, at small scale on a CPU, the analysis of Zhang et al. (ACL \
         2025, arXiv 2412.16545) summarised in `shared/PAPER.md` §5–6. It is generated: do not \
         edit it by hand (the discussion comes from `docs/results/discussion.md`). Regenerate \
         with\n\n```sh\n{}\n```\n",
        input.command
    );
    s.push_str(
        "The sweep is resumable (results under `results/report-<task>-<model>/eval.json`); \
         `--render-only` rebuilds this file and the plots from those files without running \
         the models.\n\n",
    );

    s.push_str("## The sweep that produced these numbers\n\n");
    s.push_str(&input.log.markdown());

    s.push_str("\n## Side by side with the paper\n\n");
    s.push_str(
        "The paper (PAPER.md §6; Llama-3.1-8B, 8K context, no sink, no selection; numbers \
         marked there as secondary):\n\n",
    );
    s.push_str(&paper_table());
    for m in &input.models {
        let _ = writeln!(
            s,
            "\n`{}`, no sink, no selection (ours with 95 % intervals; P = 64 is not run: see \
             the sweep table):\n",
            m.name
        );
        s.push_str(&side_by_side(m));
    }

    s.push_str("\n## The five claims, checked\n\n");
    s.push_str(
        "Differences are paired over the same examples (every setting runs the same example \
         ids). \"CI > 0\" / \"CI < 0\": the 95 % interval excludes zero; \"CI spans 0\": these \
         samples do not allow a conclusion; \"all pairs equal\": every pair differs by the same \
         amount, so the normal interval collapses to a point (compare the Wilson intervals of \
         the two settings in the tables below instead). Pooled rows pair (example, P); pairs from one \
         example at different P are not independent, so pooled intervals are optimistic.\n",
    );
    for m in &input.models {
        let _ = writeln!(s, "\n### `{}`\n", m.name);
        s.push_str(&claims_markdown(&m.files));
    }

    if let Some(d) = &input.discussion {
        s.push_str("\n## Discussion\n\n");
        s.push_str(d.trim());
        s.push('\n');
    }

    s.push_str("\n## Results by task\n\n");
    s.push_str(
        "Score and mean query-token attention entropy (mean over layers, heads and query \
         tokens, nats; PAPER.md §5) against P for each sink/selection setting. Intervals: \
         Wilson for accuracy, normal over examples for entropy and for mean NLL (perplexity \
         interval through exp). The paper column holds Llama-3.1-8B's number for the \
         no-sink, no-selection rows at the paper's P. Plots: score and entropy against P, \
         one line per setting.\n",
    );
    for m in &input.models {
        for f in &m.files {
            let t = f.config.task;
            let p = &f.config.params;
            let _ = writeln!(
                s,
                "\n### {} — `{}` (`{}`, sha256 {}…)\n",
                t.name(),
                m.name,
                f.config.model.file,
                f.config.model.sha256.get(..12).unwrap_or(&f.config.model.sha256)
            );
            let _ = writeln!(
                s,
                "n = {} examples per setting, seed {}{}.\n",
                p.n,
                p.seed,
                match t {
                    TaskKind::Lm => format!(", segment length S = {}", p.seg_len),
                    TaskKind::Needle => format!(", haystack {} characters", p.haystack_chars),
                    TaskKind::Icl => format!(", {} demonstrations", p.units),
                    TaskKind::Rag => format!(", {} documents", p.units),
                    TaskKind::Kv => format!(", {} key-value pairs", p.units),
                }
            );
            s.push_str(&task_table(f));
            if let Some((_, _, files)) =
                input.plots.iter().find(|(name, task, _)| *name == m.name && *task == t)
            {
                s.push('\n');
                for path in files {
                    let _ = writeln!(s, "![{} {}]({path})", t.name(), m.name);
                }
            }
        }
    }

    s.push('\n');
    s.push_str(input.appendix.trim());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::log::TaskRun;

    /// Hand-made results files (testdata/): icl with P = 1 and 4 under three settings, lm with
    /// P = 1 and 4; numbers chosen so every cell can be checked by hand.
    fn fixtures() -> (RunFile, RunFile) {
        let icl = serde_json::from_str(include_str!("testdata/eval-icl.json")).unwrap();
        let lm = serde_json::from_str(include_str!("testdata/eval-lm.json")).unwrap();
        (icl, lm)
    }

    #[test]
    fn task_table_cells() {
        let (icl, lm) = fixtures();
        let t = task_table(&icl);
        // P = 1: 3/3 right, Wilson [43.9, 100]; entropy per example (mean of 2 layers) 1.0,
        // 1.05, 1.10.
        assert!(t.contains("| 1 | off | 0 | 3 | 100.0 [43.9, 100.0] | 1.050 ["), "{t}");
        // the paper's ICL number only on the no-sink, no-selection row of a paper P
        assert!(t.contains("| 66.0 | 100 | 2.0 |"), "{t}");
        assert!(t.contains("| 4 | on | 0 | 3 | 100.0 [43.9, 100.0] | 1.550 ["), "{t}");
        assert_eq!(t.matches("66.0").count(), 1, "{t}");
        let l = task_table(&lm);
        // ppl = exp(mean NLL): exp(2.05) = 7.77 at P = 1, exp(2.55) = 12.81 at P = 4
        assert!(l.contains("| 1 | off | 0 | 2 | 7.77 ["), "{l}");
        assert!(l.contains("| 4 | off | 0 | 2 | 12.81 ["), "{l}");
        assert!(l.contains("| 5.35 |"), "{l}");
    }

    #[test]
    fn whole_report() {
        let (icl, lm) = fixtures();
        let log = SweepLog {
            threads: 2,
            cpus: 2,
            runs: vec![TaskRun {
                model: "tiny".into(),
                task: "icl".into(),
                n: 3,
                ps: vec![1, 4],
                sinks: vec![false, true],
                selects: vec![0, 2],
                wall_s: 600.0,
                example_s: 24.0,
                load_start: Some(3.0),
                load_end: Some(4.0),
                started: 0,
            }],
        };
        let input = ReportInput {
            command: "weft report --models tiny".into(),
            log: &log,
            models: vec![ModelResults { name: "tiny".into(), files: vec![&lm, &icl] }],
            discussion: Some("Hand-written words.\n".into()),
            appendix: "## Data\n\nstatic",
            plots: vec![("tiny".into(), TaskKind::Icl, vec!["results/tiny-icl-score.svg".into()])],
        };
        let md = render(&input);
        for want in [
            "weft report --models tiny",
            "| tiny | icl | 3 | 1,4 | off,on | 0,2 | 10.0 min | 24 s | 3.0 → 4.0 |",
            "| 64 | 10.46 | 10.8 | 33.0 | 0.0 |",
            // side by side: ours at P = 4 (no paper value), the paper's at P = 8 (none of ours)
            "| 4 | 12.81 [",
            "| 8 | - | 6.92 | - | 44.4 |",
            "- icl (P 1→4): +1.000",
            "Hand-written words.",
            "![icl tiny](results/tiny-icl-score.svg)",
            "### icl — `tiny`",
            "## Data\n\nstatic",
        ] {
            assert!(md.contains(want), "missing {want:?} in\n{md}");
        }
        // lm accuracy is never shown as a percentage
        assert!(!md.contains("lm (P 1→4): +50"), "{md}");
        // without a discussion file there is no discussion section
        let md2 = render(&ReportInput { discussion: None, ..input });
        assert!(!md2.contains("## Discussion"));
    }
}
