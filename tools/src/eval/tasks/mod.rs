//! The five tasks of PAPER.md §6 as code that turns data + a seed into examples. Each task
//! file loads its data (from the data cache layout: `<root>/<data set>/<file>`), draws `n`
//! examples with the seed, and knows its sink text and selection pooling.

pub mod icl;
pub mod kv;
pub mod lm;
pub mod needle;
pub mod rag;

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::example::{Example, SinkKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// Language modelling: perplexity over the last S/4 (at most 1024) tokens of S-token
    /// segments of Paul Graham essays.
    Lm,
    /// In-context learning: BIG-bench intent recognition, labels remapped to random integers.
    Icl,
    /// Retrieval-augmented QA: BIG-bench knowledge-conflict questions, gold + distractor passages.
    Rag,
    /// Needle in a haystack of essays (synthetic, seeded).
    Needle,
    /// JSON key-value retrieval (synthetic, seeded).
    Kv,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Lm => "lm",
            TaskKind::Icl => "icl",
            TaskKind::Rag => "rag",
            TaskKind::Needle => "needle",
            TaskKind::Kv => "kv",
        }
    }

    pub fn sink(self) -> SinkKind {
        if self == TaskKind::Lm {
            SinkKind::Lm
        } else {
            SinkKind::Task
        }
    }

    /// PAPER.md §4: no pooling for language modelling, pooling over heads and query tokens
    /// for tasks.
    pub fn pooling(self) -> weft::selection::Pooling {
        if self == TaskKind::Lm {
            weft::selection::Pooling::None
        } else {
            weft::selection::Pooling::HeadsTokens
        }
    }

    /// Data sets (data manifest names) the task reads.
    pub fn datasets(self) -> &'static [&'static str] {
        match self {
            TaskKind::Lm | TaskKind::Needle => &["paulgraham"],
            TaskKind::Icl | TaskKind::Rag => &["bigbench"],
            TaskKind::Kv => &[],
        }
    }

    /// Default context units (demonstrations, documents, key-value pairs) per example.
    pub fn default_units(self) -> usize {
        match self {
            TaskKind::Icl => 32,
            TaskKind::Rag => 16,
            TaskKind::Kv => 64,
            TaskKind::Lm | TaskKind::Needle => 0,
        }
    }
}

/// How examples are drawn; recorded in the results so a resumed run uses the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskParams {
    pub n: usize,
    pub seed: u64,
    /// Demonstrations (icl), documents (rag) or pairs (kv) per example.
    pub units: usize,
    /// lm: segment length S in tokens.
    pub seg_len: usize,
    /// needle: haystack length in characters (about 4 per token for English prose).
    pub haystack_chars: usize,
}

/// Builds the examples of `task` from the data under `root` (the data cache, or a directory
/// with the same layout such as tests/data/eval). `tokenize` is needed by lm only.
pub fn build(
    task: TaskKind,
    root: &Path,
    p: &TaskParams,
    tokenize: &dyn Fn(&str) -> Result<Vec<u32>>,
) -> Result<Vec<Example>> {
    let examples = match task {
        TaskKind::Lm => lm::build(&read_essays(root)?, p, tokenize)?,
        TaskKind::Icl => icl::build(&read_bigbench(root, "intent_recognition")?, p)?,
        TaskKind::Rag => {
            rag::build(&read_bigbench(root, "contextual_parametric_knowledge_conflicts")?, p)?
        }
        TaskKind::Needle => needle::build(&read_essays(root)?, p)?,
        TaskKind::Kv => kv::build(p),
    };
    if examples.is_empty() {
        anyhow::bail!("task {}: the data gave no examples", task.name());
    }
    Ok(examples)
}

/// A BIG-bench task.json: only the fields the tasks use.
#[derive(Debug, Deserialize)]
pub struct BigBenchTask {
    pub examples: Vec<BigBenchExample>,
}

#[derive(Debug, Deserialize)]
pub struct BigBenchExample {
    pub input: String,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub target_scores: std::collections::BTreeMap<String, f64>,
}

fn read_bigbench(root: &Path, task: &str) -> Result<BigBenchTask> {
    let path = root.join("bigbench").join(format!("{task}.json"));
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (run `weft data fetch bigbench`)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The essays, sorted by file name (a stable order for seeded draws).
pub fn read_essays(root: &Path) -> Result<Vec<(String, String)>> {
    let dir = root.join("paulgraham").join("essays");
    let rd = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {} (run `weft data fetch paulgraham`)", dir.display()))?;
    let mut out = Vec::new();
    for e in rd {
        let path = e?.path();
        if path.extension().is_some_and(|x| x == "txt") {
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            out.push((name, text));
        }
    }
    out.sort();
    if out.is_empty() {
        anyhow::bail!("no essays in {}", dir.display());
    }
    Ok(out)
}
