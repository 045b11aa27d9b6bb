//! `weft tokenize`: show the token ids (and their pieces) of a text for a model's tokenizer.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use weft::gguf::GgufFile;
use weft::tokenizer::Tokenizer;

use crate::cmd::models::resolve_or_fetch;
use crate::fetch;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Model name from the manifest or path to a GGUF file [default: the default model]
    #[arg(short = 'm', long)]
    model: Option<String>,
    /// Parse special tokens written in the text (`<|im_start|>` ...) instead of treating them
    /// as plain text
    #[arg(long)]
    special: bool,
    /// Print a JSON array of ids instead of one id and piece per line
    #[arg(long)]
    json: bool,
    /// Prepend the model's BOS token
    #[arg(long)]
    bos: bool,
    /// Read the text from a file (UTF-8)
    #[arg(short = 'f', long, conflicts_with = "text")]
    file: Option<PathBuf>,
    /// The text [default: standard input]
    text: Option<String>,
}

pub fn run(args: &TokenizeArgs) -> Result<()> {
    let text = match (&args.file, &args.text) {
        (Some(path), _) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            utf8(bytes).with_context(|| format!("{}", path.display()))?
        }
        (None, Some(t)) => t.clone(),
        (None, None) => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).context("reading standard input")?;
            utf8(bytes).context("standard input")?
        }
    };
    let model = match &args.model {
        Some(m) => m.clone(),
        None => fetch::manifest()?.default.clone(),
    };
    let path = resolve_or_fetch(&model)?;
    let file = GgufFile::open(&path)?;
    let tok =
        Tokenizer::from_gguf(&file).with_context(|| format!("tokenizer of {}", path.display()))?;
    let mut ids = tok.encode(&text, false, args.special)?;
    if args.bos {
        let Some(bos) = tok.bos() else { bail!("{} has no BOS token", path.display()) };
        ids.insert(0, bos);
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    } else {
        for &id in &ids {
            let piece = String::from_utf8_lossy(tok.token_to_piece(id));
            writeln!(out, "{id:>7} {piece:?}")?;
        }
    }
    Ok(())
}

/// The text of `bytes`, or an error naming where the invalid UTF-8 is.
fn utf8(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        anyhow::anyhow!("not valid UTF-8 (first invalid byte at offset {at})")
    })
}
