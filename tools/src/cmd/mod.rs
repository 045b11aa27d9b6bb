//! One file per subcommand; each has an args struct (clap) and a `run`.

pub mod bench;
pub mod bench_parallel;
pub mod chat;
pub mod common;
pub mod docs;
pub mod inspect;
pub mod models;
pub mod perplexity;
pub mod run;
pub mod tokenize;
