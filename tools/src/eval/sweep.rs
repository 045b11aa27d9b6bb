//! The sweep driver: every (setting, example) not yet in the results file is encoded through
//! the [`Runner`], scored, and saved at once (resumable), with a progress bar and ETA.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::example::{Example, Target};
use super::results::{Outcome, RunFile};
use super::runner::{EncodeOpts, Runner, Setting};
use super::score::{score_answer, NllSum};
use super::tasks::TaskKind;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Scores (answers or perplexity); attention statistics too when `observe`.
    Eval { observe: bool },
    /// Attention statistics of the query tokens only: nothing is generated.
    Entropy,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Eval { .. } => "eval",
            Mode::Entropy => "entropy",
        }
    }
}

/// Settings of the sweep, in the order they run: P outermost, so a partial sweep already
/// covers every P at the first settings.
pub fn settings(ps: &[usize], sinks: &[bool], selects: &[usize]) -> Vec<Setting> {
    let mut out = Vec::new();
    for &p in ps {
        for &sink in sinks {
            for &select in selects {
                out.push(Setting { p, sink, select });
            }
        }
    }
    out
}

/// Runs one example under one setting.
pub fn run_one(
    runner: &mut dyn Runner,
    task: TaskKind,
    ex: &Example,
    s: &Setting,
    mode: Mode,
) -> Result<Outcome> {
    let t0 = Instant::now();
    let sink = s.sink.then(|| task.sink().text());
    let tok = |t: &str| runner.tokenize(t);
    let req = ex.request(s.p, sink, &tok)?;
    let n_tokens = req.sink.as_ref().map_or(0, Vec::len)
        + req.pieces.iter().map(Vec::len).sum::<usize>()
        + req.query.len();
    let observe = match mode {
        Mode::Eval { observe } => observe,
        Mode::Entropy => true,
    };
    let opts = EncodeOpts { select_k: s.select, pooling: task.pooling(), observe };
    let mut o = Outcome {
        id: ex.id.clone(),
        score: None,
        output: None,
        answer: None,
        nll: None,
        stats: None,
        n_tokens,
        seconds: 0.0,
    };
    match (&ex.target, mode) {
        (_, Mode::Entropy) => {
            let last = req.query.len() - 1;
            runner.score_rows(&req, &opts, last..last, &mut |_, _| {})?;
        }
        (Target::Perplexity, Mode::Eval { .. }) => {
            let q = &req.query;
            let mut sum = NllSum::default();
            runner.score_rows(&req, &opts, 0..q.len() - 1, &mut |i, logits| {
                sum.add_logits(logits, q[i + 1])
            })?;
            o.nll = Some(sum);
        }
        (Target::Answer { answer, rule, max_tokens }, Mode::Eval { .. }) => {
            let out = runner.generate(&req, &opts, *max_tokens)?;
            o.score = Some(score_answer(&out, answer, *rule));
            o.output = Some(out);
            o.answer = Some(answer.clone());
        }
    }
    if observe {
        o.stats = runner.stats();
    }
    o.seconds = t0.elapsed().as_secs_f64();
    Ok(o)
}

/// Runs every missing (setting, example), saving `results` to `path` after each.
pub fn run_sweep(
    runner: &mut dyn Runner,
    task: TaskKind,
    examples: &[Example],
    settings: &[Setting],
    mode: Mode,
    results: &mut RunFile,
    path: &Path,
) -> Result<()> {
    // Settings that differ only in selection share the context encoding (selection is
    // query-side only), and the engine re-uses a context it has just encoded: run those
    // settings back to back for each example.
    let mut todo: Vec<(Setting, &Example)> = settings
        .iter()
        .flat_map(|s| examples.iter().map(move |e| (*s, e)))
        .filter(|(s, e)| !results.done(s, &e.id))
        .collect();
    let pos = |s: &Setting| settings.iter().position(|x| x == s).unwrap_or(usize::MAX);
    let ex_pos = |id: &str| examples.iter().position(|e| e.id == id).unwrap_or(usize::MAX);
    todo.sort_by_key(|(s, e)| (s.p, s.sink, ex_pos(&e.id), pos(s)));
    let total = settings.len() * examples.len();
    if todo.is_empty() {
        eprintln!("weft: all {total} runs already in {}", path.display());
        return Ok(());
    }
    if todo.len() < total {
        eprintln!("weft: resuming {}: {} of {total} runs done", path.display(), total - todo.len());
    }
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
        )
        .context("progress bar template")?,
    );
    for (s, ex) in todo {
        bar.set_message(format!("P={} {} {}", s.p, s.variant_label(), ex.id));
        let o = run_one(runner, task, ex, &s, mode)
            .with_context(|| format!("example {} at P={} {}", ex.id, s.p, s.variant_label()))?;
        results.push(s, o);
        results.save(path)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}
