//! One file per subcommand; each has an args struct (clap) and a `run`.

pub mod inspect;
pub mod models;
pub mod tokenize;
