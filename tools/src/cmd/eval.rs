//! `weft eval`: the downstream-task sweep of PAPER.md §6 (lm, icl, rag, needle, kv) over P,
//! sink on/off and selection, with resumable JSON results, a markdown table, CSV and plots.
//! `weft entropy` (entropy.rs) runs the same sweep measuring query-token attention entropy.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::model::Model;
use weft::tokenizer::Tokenizer;

use super::common;
use crate::eval::example::{Example, Target};
use crate::eval::full::FullRunner;
use crate::eval::results::{ModelInfo, RunConfig, RunFile};
use crate::eval::runner::Runner;
use crate::eval::sweep::{self, Mode};
use crate::eval::tasks::{self, TaskKind, TaskParams};
use crate::eval::{plot, report};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    Off,
    On,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// Parallel context encoding (weft::parallel): pieces encoded independently.
    Parallel,
    /// Ordinary causal attention over sink + pieces + query concatenated (baseline; equals
    /// the parallel engine at P = 1).
    Full,
}

/// Flags shared by `weft eval` and `weft entropy`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// Model: a manifest name or a GGUF path.
    #[arg(short, long, default_value = "smollm2-135m")]
    pub model: String,
    /// Numbers of pieces P, comma-separated.
    #[arg(long = "p", value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub ps: Vec<usize>,
    /// Shared sink settings (PAPER.md §3), comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "off,on")]
    pub sink: Vec<OnOff>,
    /// Selective attention: pieces kept per layer, 0 = off (PAPER.md §4), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    pub select: Vec<usize>,
    /// Examples per setting.
    #[arg(long, default_value_t = 20)]
    pub n: usize,
    /// Seed of the example draw (and of the ICL label remapping).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Demonstrations (icl), documents (rag) or key-value pairs (kv) per example
    /// [default: 32, 16, 64, at least the largest P].
    #[arg(long)]
    pub units: Option<usize>,
    /// lm: segment length S in tokens (the query is the last min(1024, S/4)).
    #[arg(long, default_value_t = 2048)]
    pub seg_len: usize,
    /// needle: haystack length in characters (about 4 per token).
    #[arg(long, default_value_t = 8000)]
    pub haystack_chars: usize,
    /// Data directory [default: $WEFT_DATA, else ~/.cache/weft/data; see `weft data`].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output directory [default: results/<mode>-<task>-<model>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Discard earlier results in the output directory instead of resuming.
    #[arg(long)]
    pub fresh: bool,
    #[arg(long, value_enum, default_value = "parallel")]
    pub engine: EngineKind,
    /// Worker threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub cache: common::CacheArgs,
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[arg(long, value_enum)]
    pub task: TaskKind,
    /// Also record query-token attention statistics (as `weft entropy`).
    #[arg(long)]
    pub entropy: bool,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

pub fn run(a: EvalArgs) -> Result<()> {
    run_sweep(&a.sweep, a.task, Mode::Eval { observe: a.entropy })
}

/// Loads the model, builds the examples, runs (or resumes) the sweep, writes the reports.
pub fn run_sweep(a: &SweepArgs, task: TaskKind, mode: Mode) -> Result<()> {
    if a.ps.is_empty() || a.ps.contains(&0) {
        bail!("--p needs positive piece counts");
    }
    let path = common::model_path(&a.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let cpu = common::cpu(a.threads)?;
    let model = Model::load(&cpu, &file).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let tokenize = |t: &str| -> Result<Vec<u32>> { Ok(tokenizer.encode(t, false, false)?) };

    let max_p = *a.ps.iter().max().unwrap_or(&1);
    let params = TaskParams {
        n: a.n,
        seed: a.seed,
        units: a.units.unwrap_or(task.default_units().max(max_p)),
        seg_len: a.seg_len,
        haystack_chars: a.haystack_chars,
    };
    let data_dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => {
            let dir = crate::data::data_dir()?;
            let m = crate::data::DataManifest::builtin()?;
            for name in task.datasets() {
                m.require(name)?.require_installed(&dir)?;
            }
            dir
        }
    };
    let examples = tasks::build(task, &data_dir, &params, &tokenize)?;
    let n_ctx = needed_ctx(&examples, &a.ps, task, &tokenize)?;

    let sha256 = weft::manifest::sha256_file(&path, &mut |_| {})?;
    let engine_label = match a.engine {
        EngineKind::Parallel => "parallel",
        EngineKind::Full => "full",
    };
    let config = RunConfig {
        mode: mode.name().into(),
        task,
        params,
        model: ModelInfo {
            file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
            sha256,
        },
        engine: {
            let mut e = vec![
                ("engine".into(), engine_label.into()),
                ("positions".into(), "even".into()),
                ("bos".into(), "none".into()),
                ("pooling".into(), format!("{:?}", task.pooling())),
            ];
            // Recorded only when not the default, so earlier (f16) result files still resume;
            // an f32 sweep never resumes an f16 one.
            if a.cache.cache_type != weft::KvType::default() {
                e.push(("kv_type".into(), a.cache.cache_type.name().into()));
            }
            e
        },
    };
    let stem = Path::new(&config.model.file)
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("results").join(format!("{}-{}-{stem}", mode.name(), task.name()))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join(format!("{}.json", mode.name()));
    if a.fresh && json.exists() {
        std::fs::remove_file(&json).with_context(|| format!("removing {}", json.display()))?;
    }
    let mut results = RunFile::open_or_new(&json, config)?;
    let sinks: Vec<bool> = a.sink.iter().map(|s| *s == OnOff::On).collect();
    let settings = sweep::settings(&a.ps, &sinks, &a.select);
    eprintln!(
        "weft: {} {} on {}: {} examples x {} settings, n_ctx {n_ctx}, {} threads",
        mode.name(),
        task.name(),
        results.config.model.file,
        examples.len(),
        settings.len(),
        cpu.threads()
    );

    let cfg = EngineConfig { n_ctx, n_ubatch: 512, n_out: 32, kv_type: a.cache.cache_type };
    let mut runner: Box<dyn Runner + '_> = match a.engine {
        EngineKind::Full => {
            Box::new(FullRunner { engine: Engine::new(&model, cfg)?, tokenizer: &tokenizer })
        }
        EngineKind::Parallel => crate::eval::engine::parallel_runner(&model, &tokenizer, cfg)?,
    };
    sweep::run_sweep(runner.as_mut(), task, &examples, &settings, mode, &mut results, &json)?;
    write_reports(&results, &out)
}

/// Enough KV cells for the longest request of the sweep plus its generated tokens.
fn needed_ctx(
    examples: &[Example],
    ps: &[usize],
    task: TaskKind,
    tokenize: &dyn Fn(&str) -> Result<Vec<u32>>,
) -> Result<usize> {
    let mut need = 0;
    for ex in examples {
        let gen = match ex.target {
            Target::Answer { max_tokens, .. } => max_tokens,
            Target::Perplexity => 0,
        };
        for &p in ps {
            let r = ex.request(p, Some(task.sink().text()), tokenize)?;
            let len = r.sink.map_or(0, |s| s.len())
                + r.pieces.iter().map(Vec::len).sum::<usize>()
                + r.query.len();
            need = need.max(len + gen + 1);
        }
    }
    Ok(need.next_multiple_of(256))
}

/// summary.md, summary.csv, entropy_by_layer.csv and the plots; the table also on stdout.
pub fn write_reports(results: &RunFile, out: &Path) -> Result<()> {
    let md = report::markdown(results);
    std::fs::write(out.join("summary.md"), &md)?;
    std::fs::write(out.join("summary.csv"), report::csv(results))?;
    if results.runs.iter().any(|r| r.outcomes.iter().any(|o| o.stats.is_some())) {
        std::fs::write(out.join("entropy_by_layer.csv"), report::entropy_by_layer_csv(results))?;
    }
    // The results are saved already: a machine without a plot font still gets them.
    let files = plot::plots(results, out).unwrap_or_else(|e| {
        eprintln!("weft: warning: no plots: {e:#}");
        Vec::new()
    });
    print!("{md}");
    eprintln!("weft: wrote {} ({} plot files)", out.display(), files.len());
    Ok(())
}
