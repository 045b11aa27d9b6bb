//! One file per command.

pub mod bench;
pub mod chat;
pub mod common;
pub mod perplexity;
pub mod run;
