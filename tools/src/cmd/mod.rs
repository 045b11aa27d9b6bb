//! One file per subcommand; each has an args struct (clap) and a `run`.

pub mod bench;
pub mod bench_parallel;
pub mod chat;
pub mod common;
pub mod data;
pub mod docs;
pub mod entropy;
pub mod eval;
pub mod inspect;
pub mod models;
pub mod perplexity;
pub mod report;
pub mod run;
pub mod tokenize;
