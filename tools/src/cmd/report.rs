//! `weft report`: the reproduction report of issue #7 in one command. Runs (or resumes) the
//! default sweep — `weft eval --entropy` for every task and model, so one pass gives both the
//! score and the query entropy of every setting — logs its wall time and the machine's load,
//! and writes docs/RESULTS.md with plots under docs/results/.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::eval::{run_sweep, EngineKind, OnOff, SweepArgs};
use crate::eval::plot::{line_chart, Series};
use crate::eval::report::rows;
use crate::eval::results::RunFile;
use crate::eval::sweep::Mode;
use crate::eval::tasks::TaskKind;
use crate::report::log::{load_avg, SweepLog, TaskRun};
use crate::report::render::{render, ModelResults, ReportInput};

/// The report's static sections (data sets, protocols), appended after the results.
const APPENDIX: &str = include_str!("../report/appendix.md");

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Models (manifest names or GGUF paths), comma-separated; `model:lm+icl` runs only the
    /// named tasks on that model.
    #[arg(short, long, value_delimiter = ',', default_value = "qwen2.5-0.5b,smollm2-135m:lm+icl")]
    pub models: Vec<String>,
    /// Tasks, comma-separated (the default for models without a `:tasks` suffix).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "lm,icl,rag,needle,kv")]
    pub tasks: Vec<TaskKind>,
    /// Examples per setting for each task, as task=N pairs (tasks not named keep theirs).
    #[arg(long, value_delimiter = ',', default_value = "lm=3,icl=10,rag=8,needle=4,kv=4")]
    pub n: Vec<String>,
    /// Context units per example for each task, as task=N pairs: demonstrations (icl),
    /// documents (rag), key-value pairs (kv); tasks not named use `weft eval`'s default.
    #[arg(long, value_delimiter = ',', default_value = "kv=32")]
    pub units: Vec<String>,
    /// Numbers of pieces P, comma-separated.
    #[arg(long = "p", value_delimiter = ',', default_value = "1,4,16")]
    pub ps: Vec<usize>,
    /// Shared sink settings, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    pub sink: Vec<OnOff>,
    /// Selection settings (pieces kept, 0 = off), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    pub select: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// lm: segment length S in tokens (query = the last S/4).
    #[arg(long, default_value_t = 1024)]
    pub seg_len: usize,
    /// needle: haystack length in characters.
    #[arg(long, default_value_t = 4000)]
    pub haystack_chars: usize,
    /// Worker threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Where the sweep's results files go (one directory per task and model).
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// The report to write; plots go to `results/` beside it.
    #[arg(long, default_value = "docs/RESULTS.md")]
    pub doc: PathBuf,
    /// Do not run anything: rebuild the report and plots from the results files.
    #[arg(long)]
    pub render_only: bool,
    /// Discard earlier results instead of resuming.
    #[arg(long)]
    pub fresh: bool,
}

/// The N that `task=N` pairs give `task` (the last one wins), if any.
fn spec_for(specs: &[String], task: TaskKind) -> Result<Option<usize>> {
    let mut n = None;
    for s in specs {
        let Some((t, v)) = s.split_once('=') else {
            bail!("--n {s}: expected task=N (e.g. icl=10)");
        };
        let t = <TaskKind as clap::ValueEnum>::from_str(t.trim(), true)
            .map_err(|e| anyhow::anyhow!("--n {s}: {e}"))?;
        let v: usize = v.trim().parse().with_context(|| format!("--n {s}: N is not a number"))?;
        if t == task {
            n = Some(v);
        }
    }
    Ok(n)
}

fn n_for(specs: &[String], task: TaskKind) -> Result<usize> {
    spec_for(specs, task)?.with_context(|| format!("--n names no count for task {}", task.name()))
}

/// A `--models` entry: the model and its tasks (`model:lm+icl`, else `default`).
fn model_tasks(entry: &str, default: &[TaskKind]) -> Result<(String, Vec<TaskKind>)> {
    // A GGUF path may hold ':' only in odd places; the suffix is taken after the last one
    // and only when every part names a task.
    if let Some((m, ts)) = entry.rsplit_once(':') {
        let parsed: Result<Vec<TaskKind>, _> = ts
            .split('+')
            .map(|t| <TaskKind as clap::ValueEnum>::from_str(t.trim(), true))
            .collect();
        if let Ok(tasks) = parsed {
            return Ok((m.to_string(), tasks));
        }
        bail!("--models {entry}: expected model or model:task+task (tasks: lm icl rag needle kv)");
    }
    Ok((entry.to_string(), default.to_vec()))
}

/// Directory-safe form of a model name.
fn model_slug(m: &str) -> String {
    // A path gives its file name without ".gguf"; a manifest name (dots and all) is kept.
    let base = Path::new(m).file_name().map_or(m.into(), |s| s.to_string_lossy().into_owned());
    base.trim_end_matches(".gguf")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect()
}

fn results_path(a: &ReportArgs, model: &str, task: TaskKind) -> PathBuf {
    a.results_dir.join(format!("report-{}-{}", task.name(), model_slug(model)))
}

/// The command line that regenerates the report with these arguments.
fn command_line(a: &ReportArgs, threads: usize) -> String {
    let join = |v: Vec<String>| v.join(",");
    let onoff = |v: &[OnOff]| {
        join(v.iter().map(|s| if *s == OnOff::On { "on".into() } else { "off".into() }).collect())
    };
    format!(
        "weft data fetch --all\nweft report -t {} --models {} --tasks {} --n {} --units {} --p {} \
         --sink {} --select {} --seed {} --seg-len {} --haystack-chars {}",
        threads,
        join(a.models.clone()),
        join(a.tasks.iter().map(|t| t.name().to_string()).collect()),
        join(a.n.clone()),
        join(a.units.clone()),
        join(a.ps.iter().map(|p| p.to_string()).collect()),
        onoff(&a.sink),
        join(a.select.iter().map(|k| k.to_string()).collect()),
        a.seed,
        a.seg_len,
        a.haystack_chars
    )
}

pub fn run(a: ReportArgs) -> Result<()> {
    let log_path = a.results_dir.join("report").join("sweep.json");
    let mut log = SweepLog::load(&log_path)?;
    if !a.render_only {
        log.threads = crate::cmd::common::cpu(a.threads)?.threads();
        log.cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        for entry in &a.models {
            let (model, tasks) = model_tasks(entry, &a.tasks)?;
            let model = &model;
            for task in tasks {
                let out = results_path(&a, model, task);
                let sweep = SweepArgs {
                    model: model.clone(),
                    ps: a.ps.clone(),
                    sink: a.sink.clone(),
                    select: a.select.clone(),
                    n: n_for(&a.n, task)?,
                    seed: a.seed,
                    units: spec_for(&a.units, task)?,
                    seg_len: a.seg_len,
                    haystack_chars: a.haystack_chars,
                    data_dir: None,
                    out: Some(out.clone()),
                    fresh: a.fresh,
                    engine: EngineKind::Parallel,
                    threads: a.threads,
                    // The report's sweeps use the default (f16) KV cache.
                    cache: crate::cmd::common::CacheArgs { cache_type: weft::KvType::default() },
                };
                let started = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let load_start = load_avg();
                let t0 = Instant::now();
                eprintln!("weft report: {} on {model}", task.name());
                // One task failing (missing data, a model that cannot hold the context) must
                // not lose the others: report it and go on.
                if let Err(e) = run_sweep(&sweep, task, Mode::Eval { observe: true }) {
                    eprintln!("weft report: {} on {model} failed: {e:#}", task.name());
                    continue;
                }
                let wall_s = t0.elapsed().as_secs_f64();
                let example_s = read_results(&out)?
                    .map(|f| f.runs.iter().flat_map(|r| &r.outcomes).map(|o| o.seconds).sum())
                    .unwrap_or(0.0);
                log.record(TaskRun {
                    model: model.clone(),
                    task: task.name().into(),
                    n: sweep.n,
                    ps: a.ps.clone(),
                    sinks: a.sink.iter().map(|s| *s == OnOff::On).collect(),
                    selects: a.select.clone(),
                    wall_s,
                    example_s,
                    load_start,
                    load_end: load_avg(),
                    started,
                });
                log.save(&log_path)?;
            }
        }
    }
    write_report(&a, &log)
}

fn read_results(dir: &Path) -> Result<Option<RunFile>> {
    let path = dir.join("eval.json");
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?))
}

/// Renders docs/RESULTS.md and its plots from whatever results files exist.
fn write_report(a: &ReportArgs, log: &SweepLog) -> Result<()> {
    let doc_dir = a.doc.parent().map(Path::to_path_buf).unwrap_or_default();
    let plot_dir = doc_dir.join("results");
    std::fs::create_dir_all(&plot_dir)
        .with_context(|| format!("creating {}", plot_dir.display()))?;
    let mut loaded: Vec<(String, Vec<RunFile>)> = Vec::new();
    for entry in &a.models {
        let (model, tasks) = model_tasks(entry, &a.tasks)?;
        let model = &model;
        let mut files = Vec::new();
        for task in tasks {
            if let Some(f) = read_results(&results_path(a, model, task))? {
                files.push(f);
            }
        }
        if !files.is_empty() {
            loaded.push((model.clone(), files));
        }
    }
    if loaded.is_empty() {
        bail!(
            "no results under {}: run `weft report` without --render-only",
            a.results_dir.display()
        );
    }
    let mut plots = Vec::new();
    for (model, files) in &loaded {
        for f in files {
            // `line_chart` sets the extension, so the stem must hold no dot of its own.
            let stem = format!("{}-{}", model_slug(model).replace('.', "_"), f.config.task.name());
            let written = report_plots(f, &plot_dir, &stem, model)?;
            plots.push((model.clone(), f.config.task, written));
        }
    }
    let discussion_path = plot_dir.join("discussion.md");
    let discussion = std::fs::read_to_string(&discussion_path).ok();
    let input = ReportInput {
        // the threads the sweep ran with (a later --render-only may pass none)
        command: command_line(a, if log.threads > 0 { log.threads } else { a.threads }),
        log,
        models: loaded
            .iter()
            .map(|(name, files)| ModelResults { name: name.clone(), files: files.iter().collect() })
            .collect(),
        discussion,
        appendix: APPENDIX,
        plots,
    };
    let md = render(&input);
    std::fs::write(&a.doc, md).with_context(|| format!("writing {}", a.doc.display()))?;
    eprintln!("weft report: wrote {} and plots in {}", a.doc.display(), plot_dir.display());
    Ok(())
}

/// Score and entropy against P, one line per sink/selection setting, as SVG (the PNG that
/// `line_chart` also draws is removed: the docs keep the small vector files). Returns paths
/// relative to the report's directory.
fn report_plots(f: &RunFile, dir: &Path, stem: &str, model: &str) -> Result<Vec<String>> {
    let rs = rows(f);
    let task = f.config.task;
    let mut labels: Vec<String> = rs.iter().map(|r| r.setting.variant_label()).collect();
    labels.dedup();
    labels.sort();
    labels.dedup();
    let series = |get: &dyn Fn(&crate::eval::report::Row) -> Option<f64>| -> Vec<Series> {
        labels
            .iter()
            .map(|l| Series {
                label: l.clone(),
                points: rs
                    .iter()
                    .filter(|r| r.setting.variant_label() == *l)
                    .filter_map(|r| get(r).map(|y| (r.setting.p as f64, y)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let (score, y_desc) = if task == TaskKind::Lm {
        (series(&|r| r.ppl.map(|i| i.mean)), "perplexity")
    } else {
        (series(&|r| r.accuracy.map(|i| i.mean * 100.0)), "accuracy %")
    };
    let entropy = series(&|r| r.entropy.map(|i| i.mean));
    let mut out = Vec::new();
    for (kind, s, y) in [("score", score, y_desc), ("entropy", entropy, "query entropy (nats)")] {
        if s.is_empty() {
            continue;
        }
        let path = dir.join(format!("{stem}-{kind}"));
        let title = format!("{} on {model}: {y} vs P", task.name());
        for file in line_chart(&path, &title, "P (pieces)", y, &s, true)? {
            if file.extension().is_some_and(|e| e == "png") {
                std::fs::remove_file(&file)?;
            }
        }
        out.push(format!("results/{stem}-{kind}.svg"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_specs_and_slugs() {
        let specs = vec!["lm=3".to_string(), "icl=12".into(), "icl=14".into()];
        assert_eq!(n_for(&specs, TaskKind::Lm).unwrap(), 3);
        assert_eq!(n_for(&specs, TaskKind::Icl).unwrap(), 14);
        assert!(n_for(&specs, TaskKind::Kv).is_err());
        assert!(n_for(&["x=3".into()], TaskKind::Kv).is_err());
        assert!(n_for(&["kv".into()], TaskKind::Kv).is_err());
        assert_eq!(spec_for(&["kv=32".into()], TaskKind::Icl).unwrap(), None);
        assert_eq!(spec_for(&["kv=32".into()], TaskKind::Kv).unwrap(), Some(32));
        let all = [TaskKind::Lm, TaskKind::Icl];
        assert_eq!(model_tasks("m", &all).unwrap(), ("m".to_string(), all.to_vec()));
        assert_eq!(
            model_tasks("s:lm+kv", &all).unwrap(),
            ("s".to_string(), vec![TaskKind::Lm, TaskKind::Kv])
        );
        assert!(model_tasks("s:lm+nope", &all).is_err());
        assert_eq!(model_slug("qwen2.5-0.5b"), "qwen2.5-0.5b");
        assert_eq!(model_slug("/m/Small Model.gguf"), "Small_Model");
    }
}
