//! `weft chat`: an interactive conversation on stdin/stdout with the model's chat template.
//! The KV cache keeps the conversation: each turn evaluates only what the template adds.

use super::common::{self, CacheArgs, SamplingArgs};
use super::docs::{self, DocArgs};
use anyhow::{Context, Result};
use std::io::{BufRead, Write};
use weft::engine::{Engine, EngineConfig, EngineError, GenerateParams};
use weft::gguf::GgufFile;
use weft::kv_cache::KvCacheError;
use weft::model::{Model, ModelError};
use weft::parallel::ParallelEngine;
use weft::sampling::Sampler;
use weft::tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    /// Model: a manifest name or a GGUF path.
    #[arg(short, long, default_value = "smollm2-135m")]
    pub model: String,
    /// A system message that opens the conversation.
    #[arg(long)]
    pub system: Option<String>,
    /// Most tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
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
    #[command(flatten)]
    pub docs: DocArgs,
}

fn is_context_full(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::KvCache(KvCacheError::ContextFull { .. })
            | EngineError::Model(ModelError::KvCache(KvCacheError::ContextFull { .. }))
    )
}

fn engine_config(args: &ChatArgs) -> EngineConfig {
    EngineConfig { n_ctx: args.ctx_size, kv_type: args.cache.cache_type, ..EngineConfig::default() }
}

pub fn run(args: ChatArgs) -> Result<()> {
    let path = common::model_path(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let cpu = common::cpu(args.threads)?;
    eprintln!("weft: cpu level {}, {} threads", cpu.level(), cpu.threads());
    let model = Model::load(&cpu, &file).with_context(|| format!("loading {}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let template = ChatTemplate::from_gguf(&file, &tokenizer)?
        .context("the model has no chat template (tokenizer.chat_template)")?;
    if args.docs.enabled() {
        return chat_docs(&args, &file, &model, &tokenizer, &template);
    }
    let mut engine = Engine::new(&model, engine_config(&args))?;
    let mut sampler = Sampler::new(args.sampling.config());
    let params = GenerateParams { max_tokens: args.n_predict, stop: Vec::new() };
    let opening = opening(&args);
    let mut messages = opening.clone();
    eprintln!("weft chat: type a message; /reset starts over, /quit (or end of input) ends.");

    let mut out = std::io::stdout();
    while let Some(line) = next_line()? {
        if line.trim() == "/reset" {
            messages = opening.clone();
            engine.clear();
            sampler.reset();
            eprintln!("(conversation reset)");
            continue;
        }
        messages.push(ChatMessage { role: "user".into(), content: line });
        let prompt = template.render(&messages, true)?;
        let tokens = tokenizer.encode(&prompt, true, true)?;
        let mut reply = String::new();
        let result = engine.generate(&tokens, &tokenizer, &mut sampler, &params, |text| {
            reply.push_str(text);
            out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_ok()
        });
        println!();
        match result {
            Ok(stats) => {
                eprintln!(
                    "({} prompt tokens new, {} reused, {:.1} tok/s; {} generated, {:.1} tok/s)",
                    stats.prefill.n_eval,
                    stats.prefill.n_reused,
                    stats.prefill.tok_per_s(),
                    stats.decode.n_gen,
                    stats.decode.tok_per_s()
                );
                messages.push(ChatMessage { role: "assistant".into(), content: reply });
            }
            Err(e) if is_context_full(&e) => {
                messages.pop();
                eprintln!("weft: {e}; /reset to start a new conversation");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `weft chat --doc ...`: the documents are encoded once (parallel encoding) and kept across
/// turns; each turn encodes only the conversation after them.
fn chat_docs(
    args: &ChatArgs,
    file: &GgufFile,
    model: &Model<'_, weft_cpu::Cpu>,
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
) -> Result<()> {
    let d = &args.docs;
    let docs = d.read_docs(tokenizer)?;
    let cfg = d.config(tokenizer);
    let mut engine = ParallelEngine::new(model, engine_config(args))?;
    engine.set_doc_cache(d.doc_cache(file)?);
    let mut sampler = Sampler::new(args.sampling.config());
    let params = GenerateParams { max_tokens: args.n_predict, stop: Vec::new() };
    let opening = opening(args);
    let mut messages = opening.clone();
    list_docs(&docs);
    eprintln!(
        "weft chat: type a message; /docs lists the documents, /reset starts over, /quit ends."
    );
    let mut out = std::io::stdout();
    while let Some(line) = next_line()? {
        match line.trim() {
            "/docs" => {
                list_docs(&docs);
                continue;
            }
            "/reset" => {
                messages = opening.clone();
                sampler.reset();
                eprintln!("(conversation reset; documents kept)");
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage { role: "user".into(), content: line });
        let req = d.request(tokenizer, Some(template), &docs, &messages)?;
        let enc = match engine.encode(&req, &cfg) {
            Ok(s) => s,
            Err(e) => {
                messages.pop();
                eprintln!("weft: {e}; /reset to start a new conversation");
                continue;
            }
        };
        docs::report(d, &cfg, &docs, &req, &enc);
        docs::report_cache(engine.doc_cache());
        sampler.reset();
        for &t in &req.query {
            sampler.accept(t);
        }
        let mut reply = String::new();
        let result = engine.decode(tokenizer, &mut sampler, &params, |text| {
            reply.push_str(text);
            out.write_all(text.as_bytes()).and_then(|_| out.flush()).is_ok()
        });
        println!();
        match result {
            Ok(stats) => {
                eprintln!("({} generated, {:.1} tok/s)", stats.n_gen, stats.tok_per_s());
                messages.push(ChatMessage { role: "assistant".into(), content: reply });
            }
            Err(e) if is_context_full(&e) => {
                messages.pop();
                eprintln!("weft: {e}; /reset to start a new conversation");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The messages a conversation starts with: the system message, if any.
fn opening(args: &ChatArgs) -> Vec<ChatMessage> {
    let system = args.system.iter();
    system.map(|s| ChatMessage { role: "system".into(), content: s.clone() }).collect()
}

/// Prompts and reads the user's next non-blank line (without its line ending); `None` at
/// end of input or on /quit, /exit.
fn next_line() -> Result<Option<String>> {
    loop {
        eprint!("> ");
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => return Ok(None),
            _ => return Ok(Some(line.to_string())),
        }
    }
}

fn list_docs(docs: &[docs::Doc]) {
    for (i, d) in docs.iter().enumerate() {
        eprintln!("  [{i}] {} ({} tokens)", d.path.display(), d.tokens.len());
    }
}
