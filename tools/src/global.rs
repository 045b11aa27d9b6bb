//! Options given before or after any subcommand (`--models-dir`, `-v`, `--no-repack`), set once by `main` and
//! read by the commands, so a command's `run` needs only its own arguments.

use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Default, Clone)]
pub struct Global {
    /// `--models-dir`: overrides `WEFT_MODELS` and the default cache.
    pub models_dir: Option<PathBuf>,
    /// `-v` count: 1 shows the commands weft runs (pip, python).
    pub verbose: u8,
    /// `--no-repack`: run decode on the memory-mapped weights as they are.
    pub no_repack: bool,
}

static GLOBAL: OnceLock<Global> = OnceLock::new();

/// Sets the global options; only the first call counts (main calls it once).
pub fn init(g: Global) {
    let _ = GLOBAL.set(g);
}

/// The global options (defaults before `init`).
pub fn get() -> &'static Global {
    GLOBAL.get_or_init(Global::default)
}
