//! `weft entropy`: the sweep of `weft eval` measuring per-layer attention entropy of query
//! tokens (and the scale diagnostics) instead of scores (PAPER.md §5).

use anyhow::Result;

use super::eval::{run_sweep, SweepArgs};
use crate::eval::sweep::Mode;
use crate::eval::tasks::TaskKind;

#[derive(clap::Args, Debug)]
pub struct EntropyArgs {
    #[arg(long, value_enum, default_value = "lm")]
    pub task: TaskKind,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

pub fn run(a: EntropyArgs) -> Result<()> {
    run_sweep(&a.sweep, a.task, Mode::Entropy)
}
