//! `weft`: the command-line tool.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "weft", version, about = "weft: an LLM runtime for GGUF models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Run(cmd::run::RunArgs),
    /// Interactive chat with the model's chat template.
    Chat(cmd::chat::ChatArgs),
    /// Perplexity of a text file (llama.cpp's protocol).
    Perplexity(cmd::perplexity::PerplexityArgs),
    /// Prompt-processing and generation speed (llama-bench's protocol).
    Bench(cmd::bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(a) => cmd::run::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Bench(a) => cmd::bench::run(a),
    }
}
