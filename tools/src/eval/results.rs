//! The results file of one sweep (JSON): what was run (tool, task, example parameters, model
//! checksum, engine settings) and one outcome per (setting, example). Written after every
//! example through a temporary file and a rename, so an interrupted sweep resumes where it
//! stopped and never leaves a torn file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::runner::{LayerStats, Setting};
use super::score::NllSum;
use super::tasks::{TaskKind, TaskParams};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// File name of the GGUF.
    pub file: String,
    pub sha256: String,
}

/// Everything that must match for a file to be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// "eval" or "entropy".
    pub mode: String,
    pub task: TaskKind,
    pub params: TaskParams,
    pub model: ModelInfo,
    /// Engine settings that change results (positions, BOS policy, pooling, ...), as text.
    pub engine: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub id: String,
    /// 1 or 0 for answer tasks; absent for perplexity and entropy-only runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nll: Option<NllSum>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<LayerStats>,
    /// Tokens in sink + pieces + query.
    pub n_tokens: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettingRun {
    pub setting: Setting,
    pub outcomes: Vec<Outcome>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    pub tool: String,
    pub config: RunConfig,
    pub runs: Vec<SettingRun>,
}

impl RunFile {
    pub fn new(config: RunConfig) -> RunFile {
        RunFile { tool: format!("weft {}", env!("CARGO_PKG_VERSION")), config, runs: Vec::new() }
    }

    /// Opens `path` to resume when it exists (its configuration must equal `config`), else a
    /// new empty file.
    pub fn open_or_new(path: &Path, config: RunConfig) -> Result<RunFile> {
        if !path.exists() {
            return Ok(RunFile::new(config));
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let old: RunFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a weft results file", path.display()))?;
        if old.config != config {
            bail!(
                "{} holds results of another configuration (task, examples, model or engine \
                 settings differ); pass another --out or --fresh to start over",
                path.display()
            );
        }
        Ok(old)
    }

    pub fn done(&self, s: &Setting, id: &str) -> bool {
        self.runs.iter().any(|r| r.setting == *s && r.outcomes.iter().any(|o| o.id == id))
    }

    pub fn push(&mut self, s: Setting, o: Outcome) {
        match self.runs.iter_mut().find(|r| r.setting == s) {
            Some(r) => r.outcomes.push(o),
            None => self.runs.push(SettingRun { setting: s, outcomes: vec![o] }),
        }
    }

    /// Atomic write: `<path>.tmp-<pid>` then rename.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> RunConfig {
        RunConfig {
            mode: "eval".into(),
            task: TaskKind::Kv,
            params: TaskParams { n: 2, seed, units: 4, seg_len: 0, haystack_chars: 0 },
            model: ModelInfo { file: "m.gguf".into(), sha256: "ab".into() },
            engine: vec![("positions".into(), "even".into())],
        }
    }

    #[test]
    fn save_resume_and_mismatch() {
        let dir = std::env::temp_dir().join(format!("weft-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("eval.json");
        let _ = std::fs::remove_file(&path);
        let mut f = RunFile::open_or_new(&path, config(1)).unwrap();
        assert!(f.runs.is_empty());
        let s = Setting { p: 2, sink: true, select: 0 };
        let o = Outcome {
            id: "kv-0".into(),
            score: Some(1.0),
            output: Some("x".into()),
            answer: Some("x".into()),
            nll: None,
            stats: None,
            n_tokens: 10,
            seconds: 0.5,
        };
        f.push(s, o.clone());
        f.save(&path).unwrap();
        let g = RunFile::open_or_new(&path, config(1)).unwrap();
        assert_eq!(g, f);
        assert!(g.done(&s, "kv-0"));
        assert!(!g.done(&s, "kv-1"));
        assert!(!g.done(&Setting { p: 4, ..s }, "kv-0"));
        assert!(RunFile::open_or_new(&path, config(2)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
