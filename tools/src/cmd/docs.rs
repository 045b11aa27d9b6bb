//! Parallel context encoding in the commands: the `--doc` flags `weft run` and `weft chat`
//! share, turning files and a question into a [`Request`], and the reports.
//!
//! With the chat template, the template is rendered around a placeholder user message and
//! split there: what comes before it (system prompt, the user turn's opening) plus the sink
//! text forms the shared sink, the documents are the pieces, and the question plus the rest
//! of the conversation (the assistant turn's opening) is the query. So the documents sit
//! inside the user's turn, where a chat model expects them.

use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};
use weft::doc_cache::DocCache;
use weft::gguf::GgufFile;
use weft::layout::{BosPolicy, PositionPolicy, Request};
use weft::observer::AttnStats;
use weft::parallel::{EncodeStats, Mode, ParallelConfig};
use weft::selection::Pooling;
use weft::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

/// The task sink of PAPER.md §3.
pub const DEFAULT_SINK: &str =
    "Given the following contexts, answer the final question accordingly:\n\n";

/// Placeholder split point inside a rendered chat template.
const SPLIT: &str = "\u{1}weft-docs-question\u{1}";

#[derive(clap::Args, Debug, Clone)]
pub struct DocArgs {
    /// Documents encoded in parallel (repeatable; each file is one piece).
    #[arg(long = "doc", value_name = "FILE", num_args = 1..)]
    pub docs: Vec<PathBuf>,
    /// Shared sink text every document sees (default: the paper's task sink).
    #[arg(long, conflicts_with = "no_sink")]
    pub sink: Option<String>,
    /// No shared sink (each document's first token becomes its own sink).
    #[arg(long)]
    pub no_sink: bool,
    /// Keep only the K most relevant documents in every layer (0: all).
    #[arg(long = "select", default_value_t = 0)]
    pub select: usize,
    /// What selection pools over: none, heads, tokens, heads+tokens.
    #[arg(long = "pool", default_value = "heads+tokens", value_parser = parse_pool)]
    pub pool: Pooling,
    /// Positions of document tokens: even, left, right, sequential.
    #[arg(long, default_value = "even", value_parser = parse_positions)]
    pub positions: PositionPolicy,
    /// paper, ape (T = S = 0.9) or pcw (Parallel Context Windows).
    #[arg(long, default_value = "paper", value_parser = parse_mode)]
    pub mode: Mode,
    /// BOS tokens: none, shared, per-piece.
    #[arg(long, default_value = "none", value_parser = parse_bos)]
    pub bos: BosPolicy,
    /// Write the attention observer's figures for the query tokens here (JSON).
    #[arg(long)]
    pub entropy_out: Option<PathBuf>,
    /// Keep encoded documents in this directory too (re-used by later runs).
    #[arg(long)]
    pub doc_cache: Option<PathBuf>,
}

fn parse_pool(s: &str) -> Result<Pooling, String> {
    Ok(match s {
        "none" => Pooling::None,
        "heads" => Pooling::Heads,
        "tokens" => Pooling::Tokens,
        "heads+tokens" | "both" => Pooling::HeadsTokens,
        _ => return Err(format!("'{s}': expected none, heads, tokens or heads+tokens")),
    })
}

fn parse_positions(s: &str) -> Result<PositionPolicy, String> {
    Ok(match s {
        "even" => PositionPolicy::Even,
        "left" => PositionPolicy::Left,
        "right" => PositionPolicy::Right,
        "sequential" => PositionPolicy::Sequential,
        _ => return Err(format!("'{s}': expected even, left, right or sequential")),
    })
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Ok(match s {
        "paper" => Mode::Paper,
        "ape" => Mode::ape(),
        "pcw" => Mode::Pcw,
        _ => return Err(format!("'{s}': expected paper, ape or pcw")),
    })
}

fn parse_bos(s: &str) -> Result<BosPolicy, String> {
    Ok(match s {
        "none" => BosPolicy::None,
        "shared" => BosPolicy::Shared,
        "per-piece" => BosPolicy::PerPiece,
        _ => return Err(format!("'{s}': expected none, shared or per-piece")),
    })
}

/// A document read from disk.
pub struct Doc {
    pub path: PathBuf,
    pub tokens: Vec<u32>,
}

impl DocArgs {
    pub fn enabled(&self) -> bool {
        !self.docs.is_empty()
    }

    /// The engine configuration these flags ask for.
    pub fn config(&self, tokenizer: &Tokenizer) -> ParallelConfig {
        ParallelConfig {
            positions: self.positions,
            bos: self.bos,
            bos_token: tokenizer.bos(),
            mode: self.mode,
            select_k: self.select,
            pooling: self.pool,
            observe: self.entropy_out.is_some(),
        }
    }

    /// Reads and tokenizes every document (no BOS: the BOS policy adds what is asked).
    pub fn read_docs(&self, tokenizer: &Tokenizer) -> Result<Vec<Doc>> {
        self.docs.iter().map(|p| read_doc(p, tokenizer)).collect()
    }

    /// The sink text (before any template prefix).
    fn sink_text(&self) -> &str {
        if self.no_sink {
            ""
        } else {
            self.sink.as_deref().unwrap_or(DEFAULT_SINK)
        }
    }

    /// The request for `docs` and a conversation whose last user message is the question;
    /// `template` None = raw text (sink, documents, question as given).
    pub fn request(
        &self,
        tokenizer: &Tokenizer,
        template: Option<&ChatTemplate>,
        docs: &[Doc],
        messages: &[ChatMessage],
    ) -> Result<Request> {
        let (prefix, question_and_rest) = match template {
            Some(t) => split_template(t, messages)?,
            None => {
                let q = messages.last().map(|m| m.content.clone()).unwrap_or_default();
                (String::new(), q)
            }
        };
        let sink_text = format!("{prefix}{}", self.sink_text());
        // Without a sink the template's opening cannot be shared: it opens the query.
        let (sink, query_text) = if self.no_sink {
            (None, format!("{prefix}{question_and_rest}"))
        } else {
            (Some(tokenizer.encode(&sink_text, false, true)?), question_and_rest)
        };
        let query = tokenizer.encode(&query_text, false, true)?;
        if query.is_empty() {
            bail!("the question is empty");
        }
        let sink = sink.filter(|s| !s.is_empty());
        Ok(Request { sink, pieces: docs.iter().map(|d| d.tokens.clone()).collect(), query })
    }

    /// A document cache for `file`: in memory (512 MiB), and on disk with --doc-cache.
    pub fn doc_cache(&self, file: &GgufFile) -> Result<DocCache> {
        let cache = DocCache::new(DocCache::model_fingerprint(file), 512 << 20);
        Ok(match &self.doc_cache {
            Some(d) => {
                cache.with_dir(d).with_context(|| format!("document cache {}", d.display()))?
            }
            None => cache,
        })
    }
}

fn read_doc(path: &Path, tokenizer: &Tokenizer) -> Result<Doc> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({})", path.display(), e.utf8_error()))?;
    let text = text.trim_end();
    if text.trim().is_empty() {
        bail!("{}: the document is empty", path.display());
    }
    // Pieces end in a blank line, as the paper's task formats do.
    let tokens = tokenizer.encode(&format!("{text}\n\n"), false, false)?;
    Ok(Doc { path: path.to_path_buf(), tokens })
}

/// Renders the conversation with the first user message's text preceded by a split
/// marker: (everything before the marker, the rest with the marker removed).
fn split_template(t: &ChatTemplate, messages: &[ChatMessage]) -> Result<(String, String)> {
    let mut msgs = messages.to_vec();
    let first_user = msgs
        .iter_mut()
        .find(|m| m.role == "user")
        .context("the conversation has no user message")?;
    first_user.content = format!("{SPLIT}{}", first_user.content);
    let text = t.render(&msgs, true)?;
    let at = text.find(SPLIT).context("the chat template dropped the user message")?;
    Ok((text[..at].to_string(), text[at + SPLIT.len()..].to_string()))
}

/// One line on stderr describing an encode.
pub fn report(args: &DocArgs, cfg: &ParallelConfig, docs: &[Doc], req: &Request, s: &EncodeStats) {
    let lens: Vec<usize> = docs.iter().map(|d| d.tokens.len()).collect();
    // The positions and BOS in force (PCW and APE fix them).
    let layout = cfg.layout_config(1, 1);
    eprintln!(
        "weft: {} documents {:?} tokens, sink {}, query {}; positions {}, bos {}, mode {}, select {}{}",
        docs.len(),
        lens,
        req.sink.as_ref().map_or(0, |s| s.len()),
        req.query.len(),
        layout.positions,
        layout.bos,
        cfg.mode,
        args.select,
        if args.select > 0 { format!(" (pool {})", args.pool) } else { String::new() },
    );
    let ctx_rate = rate(s.n_context_eval, s.context_time.as_secs_f64());
    eprintln!(
        "weft: documents: {} tokens encoded ({ctx_rate:.1} tok/s), {} from the document cache, {} kept from the last request; query: {} tokens in {:.3} s",
        s.n_context_eval,
        s.n_cached,
        s.n_reused,
        s.n_query,
        s.query_time.as_secs_f64()
    );
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Reports what the document cache did, and warns about damaged files.
pub fn report_cache(cache: Option<&DocCache>) {
    let Some(c) = cache else { return };
    let s = c.stats();
    if s.damaged > 0 {
        eprintln!(
            "weft: warning: {} damaged document-cache file(s) were deleted and recomputed",
            s.damaged
        );
    }
    if s.hits_memory + s.hits_disk + s.misses > 0 {
        eprintln!(
            "weft: document cache: {} hits in memory, {} on disk, {} misses; {} entries, {:.1} MiB",
            s.hits_memory,
            s.hits_disk,
            s.misses,
            s.entries,
            s.bytes as f64 / (1 << 20) as f64
        );
    }
}

/// Writes the observer's figures as JSON.
pub fn write_entropy(
    path: &Path,
    model: &str,
    cfg: &ParallelConfig,
    docs: &[Doc],
    stats: &AttnStats,
) -> Result<()> {
    let heads: Vec<Vec<f64>> = (0..stats.n_layer())
        .map(|l| (0..stats.n_head()).map(|h| stats.entropy(l, h)).collect())
        .collect();
    let kept: Vec<Vec<f64>> = (0..stats.n_layer())
        .map(|l| (0..stats.n_pieces()).filter_map(|p| stats.kept_fraction(l, p)).collect())
        .collect();
    let v = json!({
        "model": model,
        "config": {
            "positions": cfg.positions.to_string(),
            "bos": cfg.bos.to_string(),
            "mode": cfg.mode.to_string(),
            "select_k": cfg.select_k,
            "pooling": cfg.pooling.to_string(),
        },
        "documents": docs.iter().map(|d| json!({"path": d.path, "tokens": d.tokens.len()})).collect::<Vec<_>>(),
        "n_query_tokens": stats.n_tokens(),
        "mean_entropy": stats.mean_entropy(),
        "entropy_by_layer": stats.entropy_by_layer(),
        "entropy_by_layer_head": heads,
        "mean_abs_logit_by_layer": stats.mean_abs_logit_by_layer(),
        "q_norm_by_layer": stats.q_norm_by_layer(),
        "k_norm_piece_start_by_layer": stats.k_norm_piece_start_by_layer(),
        "kept_fraction_by_layer_piece": kept,
    });
    let text = serde_json::to_string_pretty(&v)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
