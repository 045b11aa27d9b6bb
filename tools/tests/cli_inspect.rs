//! `weft inspect` as a user runs it: malformed files give one clear error line and a failing
//! exit status, never a panic; good files print a report (text or JSON).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().expect("run weft")
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

#[test]
fn malformed_files_fail_with_one_error_line() {
    let manifest = std::fs::read_to_string(data_dir().join("malformed/expected.tsv")).unwrap();
    let mut n = 0;
    for line in manifest.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (file, expected) = line.split_once('\t').unwrap();
        let path = data_dir().join("malformed").join(file);
        let out = weft(&["inspect", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: exit status {}", out.status);
        assert!(!stderr.contains("panicked"), "{file}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{file}: not one line: {stderr:?}");
        assert!(stderr.starts_with("error: "), "{file}: {stderr:?}");
        assert!(stderr.contains(expected), "{file}: {stderr:?} lacks {expected:?}");
        assert!(out.stdout.is_empty(), "{file}: printed a partial report");
        n += 1;
    }
    assert!(n >= 35);
}

#[test]
fn missing_file_is_an_error() {
    let out = weft(&["inspect", "/nonexistent/model.gguf"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("/nonexistent/model.gguf"),
        "{stderr}"
    );
}

#[test]
fn valid_fixture_text_and_json() {
    let path = data_dir().join("valid/writer_sample.gguf");
    let path = path.to_str().unwrap();
    let out = weft(&["inspect", path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["architecture   llama", "block_count", "token_embd.weight", "q4_K", "3 tensors"]
    {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }

    let out = weft(&["inspect", "--json", path]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "llama");
    assert_eq!(v["version"], 3);
    assert_eq!(v["tensors"].as_array().unwrap().len(), 3);
    assert_eq!(v["tokenizer"]["n_vocab"], 3);
    assert_eq!(v["types"][0]["type"], "q4_K");
}
