//! `weft run`: generate a continuation of one prompt, streamed to stdout.

use super::common::{self, CacheArgs, SamplingArgs};
use super::docs::{self, DocArgs};
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use weft::engine::{Engine, EngineConfig, GenerateParams};
use weft::gguf::GgufFile;
use weft::model::Model;
use weft::parallel::ParallelEngine;
use weft::sampling::Sampler;
use weft::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Model: a manifest name or a GGUF path.
    #[arg(short, long, default_value = "smollm2-135m")]
    pub model: String,
    /// The prompt (a user message, unless --no-template).
    #[arg(short, long)]
    pub prompt: String,
    /// Tokens to generate (0: none).
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Worker threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Context length (KV cache cells).
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Use the prompt as raw text (BOS only if the model asks for it) instead of the chat template.
    #[arg(long)]
    pub no_template: bool,
    /// A system message (with the chat template).
    #[arg(long)]
    pub system: Option<String>,
    /// Stop when this text is generated (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Write the last prompt position's logits here (f32 little-endian, n_vocab values).
    #[arg(long)]
    pub logits_out: Option<PathBuf>,
    #[command(flatten)]
    pub docs: DocArgs,
}

fn engine_config(args: &RunArgs) -> EngineConfig {
    EngineConfig { n_ctx: args.ctx_size, kv_type: args.cache.cache_type, ..EngineConfig::default() }
}

pub fn run(args: RunArgs) -> Result<()> {
    let path = common::model_path(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let cpu = common::cpu(args.threads)?;
    eprintln!("weft: cpu level {}, {} threads", cpu.level(), cpu.threads());
    let model = Model::load(&cpu, &file).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    if args.docs.enabled() {
        return run_docs(&args, &file, &model, &tokenizer);
    }
    let tokens = match template(&args, &file, &tokenizer)? {
        // add_special adds BOS only when the file asks for it (tokenizer.ggml.add_bos_token).
        None => tokenizer.encode(&args.prompt, true, false)?,
        Some(t) => tokenizer.encode(&t.render(&messages(&args), true)?, true, true)?,
    };
    anyhow::ensure!(!tokens.is_empty(), "the prompt is empty after tokenization");
    let mut engine = Engine::new(&model, engine_config(&args))?;
    let mut sampler = Sampler::new(args.sampling.config());

    let prefill = engine.prefill(&tokens)?;
    for &t in &tokens {
        sampler.accept(t);
    }
    if let Some(p) = &args.logits_out {
        let bytes: Vec<u8> = engine.logits().iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    let params = GenerateParams { max_tokens: args.n_predict, stop: args.stop.clone() };
    let decode =
        stream_stdout(|on_text| engine.decode(&tokenizer, &mut sampler, &params, on_text))?;
    eprintln!(
        "weft: prompt {} tokens, {:.1} tok/s; generated {} tokens, {:.1} tok/s; stop: {:?}",
        prefill.n_eval,
        prefill.tok_per_s(),
        decode.n_gen,
        decode.tok_per_s(),
        decode.stop
    );
    let file_bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
    eprintln!("{}", common::memory_line(file_bytes, engine.kv_cache().bytes() as u64));
    Ok(())
}

/// The model's chat template, or `None` with --no-template.
fn template(
    args: &RunArgs,
    file: &GgufFile,
    tokenizer: &Tokenizer,
) -> Result<Option<ChatTemplate>> {
    if args.no_template {
        return Ok(None);
    }
    let t = ChatTemplate::from_gguf(file, tokenizer)?;
    Ok(Some(
        t.context("the model has no chat template (tokenizer.chat_template); use --no-template")?,
    ))
}

/// The conversation of one prompt: the optional system message, then the user's prompt.
fn messages(args: &RunArgs) -> Vec<ChatMessage> {
    let system =
        args.system.iter().map(|s| ChatMessage { role: "system".into(), content: s.clone() });
    let user = ChatMessage { role: "user".into(), content: args.prompt.clone() };
    system.chain(std::iter::once(user)).collect()
}

/// Runs `decode` with a callback that streams text to stdout; a closed pipe ends quietly.
fn stream_stdout<T, E>(
    decode: impl FnOnce(&mut dyn FnMut(&str) -> bool) -> Result<T, E>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut out = std::io::stdout().lock();
    let mut write_err = None;
    let r =
        decode(&mut |text: &str| match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        })?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    let _ = writeln!(out);
    Ok(r)
}

/// `weft run --doc ...`: the documents encoded in parallel, then the question.
fn run_docs(
    args: &RunArgs,
    file: &GgufFile,
    model: &Model<'_, weft_cpu::Cpu>,
    tokenizer: &Tokenizer,
) -> Result<()> {
    let d = &args.docs;
    let template = template(args, file, tokenizer)?;
    let docs = d.read_docs(tokenizer)?;
    let req = d.request(tokenizer, template.as_ref(), &docs, &messages(args))?;
    let cfg = d.config(tokenizer);
    let mut engine = ParallelEngine::new(model, engine_config(args))?;
    engine.set_doc_cache(d.doc_cache(file)?);
    let enc = engine.encode(&req, &cfg)?;
    docs::report(d, &cfg, &docs, &req, &enc);
    docs::report_cache(engine.doc_cache());
    if let Some(p) = &args.logits_out {
        let bytes: Vec<u8> = engine.logits().iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    if let (Some(p), Some(stats)) = (&d.entropy_out, engine.stats()) {
        docs::write_entropy(p, &args.model, &cfg, &docs, stats)?;
        eprintln!("weft: attention entropy of the query written to {}", p.display());
    }
    let mut sampler = Sampler::new(args.sampling.config());
    for &t in &req.query {
        sampler.accept(t);
    }
    let params = GenerateParams { max_tokens: args.n_predict, stop: args.stop.clone() };
    let decode = stream_stdout(|on_text| engine.decode(tokenizer, &mut sampler, &params, on_text))?;
    eprintln!(
        "weft: generated {} tokens, {:.1} tok/s; stop: {:?}",
        decode.n_gen,
        decode.tok_per_s(),
        decode.stop
    );
    Ok(())
}
