//! Shared helpers for weft's integration tests: where the default models and the llama.cpp
//! reference outputs are.

use std::path::PathBuf;

/// File names of the default models inside the model cache (see `models/manifest.toml`).
pub fn model_file_name(name: &str) -> Option<&'static str> {
    match name {
        "smollm2-135m" => Some("SmolLM2-135M-Instruct.Q4_1.gguf"),
        "qwen2.5-0.5b" => Some("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
        _ => None,
    }
}

/// The model cache: `WEFT_MODELS`, else `$XDG_CACHE_HOME/weft/models`, else
/// `~/.cache/weft/models`.
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_MODELS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("weft").join("models")
}

/// Path of a default model by manifest name. Panics (failing the test) when the model is not
/// in the cache, unless `WEFT_ALLOW_MISSING_MODELS=1`, in which case it returns `None` and the
/// caller skips with a note. CI fetches the models first, so there they are never skipped.
pub fn model_path(name: &str) -> Option<PathBuf> {
    let file = model_file_name(name).unwrap_or_else(|| panic!("unknown default model {name}"));
    let p = models_dir().join(file);
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("WEFT_ALLOW_MISSING_MODELS").as_deref() == Ok("1") {
        eprintln!("note: {} not found; skipping (WEFT_ALLOW_MISSING_MODELS=1)", p.display());
        return None;
    }
    panic!("model {name} not found at {}; run `weft models fetch --all` first", p.display());
}

/// The llama.cpp reference outputs (`shared/refs` beside the checkout; `WEFT_REFS` overrides).
pub fn refs_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_REFS") {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..").join("shared").join("refs")
}
