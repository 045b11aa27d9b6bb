//! `weft perplexity`: llama.cpp's perplexity protocol over a text file.

use super::common::{self, CacheArgs};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::model::Model;
use weft::perplexity::perplexity;
use weft::tokenizer::Tokenizer;

#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// Model: a manifest name or a GGUF path.
    #[arg(short, long, default_value = "smollm2-135m")]
    pub model: String,
    /// The text file to score.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Score at most this many chunks (default: all whole chunks).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Worker threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    let path = common::model_path(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let cpu = common::cpu(args.threads)?;
    eprintln!("weft: cpu level {}, {} threads", cpu.level(), cpu.threads());
    let model = Model::load(&cpu, &file).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    // llama.cpp tokenizes the whole text with add_special (BOS only if the model asks) and no
    // special-token parsing, then puts BOS at the start of every chunk when the model wants it.
    let tokens = tokenizer.encode(&text, true, false)?;
    let bos = if tokenizer.add_bos() { tokenizer.bos() } else { None };
    let cfg = EngineConfig {
        n_ctx: args.ctx_size,
        n_ubatch: args.ctx_size.min(512),
        n_out: 32,
        kv_type: args.cache.cache_type,
    };
    let mut engine = Engine::new(&model, cfg)?;
    let t0 = Instant::now();
    let json = args.json;
    let acc = perplexity(&mut engine, &tokens, args.ctx_size, args.chunks, bos, |i, acc| {
        if !json {
            eprint!("[{}]{:.4},", i + 1, acc.ppl());
            let _ = std::io::stderr().flush();
        }
    })?;
    let secs = t0.elapsed().as_secs_f64();
    let stderr = acc.stderr().unwrap_or(f64::NAN);
    let n_chunks = acc.count / (args.ctx_size - 1 - args.ctx_size / 2);
    if json {
        let v = serde_json::json!({
            "model": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "ctx": args.ctx_size,
            "type_k": args.cache.cache_type.name(),
            "type_v": args.cache.cache_type.name(),
            "chunks": n_chunks,
            "tokens": tokens.len(),
            "scored": acc.count,
            "ppl": acc.ppl(),
            "stderr": stderr,
            "seconds": secs,
        });
        println!("{v}");
    } else {
        eprintln!();
        eprintln!(
            "weft: {} chunks of {}, {} tokens scored, {:.1} s ({:.1} tok/s)",
            n_chunks,
            args.ctx_size,
            acc.count,
            secs,
            (n_chunks * args.ctx_size) as f64 / secs
        );
        println!("PPL = {:.4} +/- {:.5}", acc.ppl(), stderr);
    }
    Ok(())
}
