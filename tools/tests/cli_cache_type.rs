//! `--cache-type f16|f32` (the KV cache element type, K and V together): an f32 cache runs
//! and gives logits close to the f16 one, `weft bench` shows the type columns only when not
//! the default, and an unsupported type is a clear error on every command that takes it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn weft() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weft"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("weft-cli-cache-type-{}-{name}", std::process::id()))
}

fn run_logits(cache_type: &str) -> (Output, Vec<f32>) {
    let path = tmp(&format!("logits-{cache_type}.f32"));
    let o = weft()
        .args(["run", "-p", "The capital of France is", "-n", "4", "--temp", "0", "-t", "2"])
        .args(["--cache-type", cache_type, "--logits-out"])
        .arg(&path)
        .output()
        .unwrap();
    let b = std::fs::read(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    (o, b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// KL(softmax(p) ‖ softmax(q)).
fn kl(p: &[f32], q: &[f32]) -> f64 {
    let lsm = |l: &[f32]| {
        let m = l.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let z = l.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
        l.iter().map(|&v| v as f64 - z).collect::<Vec<f64>>()
    };
    let (lp, lq) = (lsm(p), lsm(q));
    lp.iter().zip(&lq).map(|(&a, &b)| a.exp() * (a - b)).sum()
}

#[test]
fn run_with_f32_cache_works_and_is_close_to_f16() {
    let (o32, l32) = run_logits("f32");
    assert!(o32.status.success(), "stderr: {}", text(&o32.stderr));
    assert!(!text(&o32.stdout).trim().is_empty(), "no text generated");
    let (o16, l16) = run_logits("f16");
    assert!(o16.status.success(), "stderr: {}", text(&o16.stderr));
    assert_eq!(l32.len(), 49152, "SmolLM2 n_vocab logits");
    assert_eq!(l16.len(), l32.len());
    assert_ne!(l16, l32, "f32 and f16 caches round differently");
    let d = kl(&l16, &l32);
    assert!(d < 0.03, "KL(f16 ‖ f32) {d}");
}

#[test]
fn bench_shows_type_columns_only_for_f32() {
    let bench = |extra: &[&str]| {
        let o = weft()
            .args(["bench", "-p", "8", "-n", "2", "-t", "1", "-r", "1"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "stderr: {}", text(&o.stderr));
        text(&o.stdout)
    };
    let f32_table = bench(&["--cache-type", "f32"]);
    assert!(f32_table.contains("type_k") && f32_table.contains("type_v"), "{f32_table}");
    let row = |l: &&str| l.contains("    f32 |    f32 |") && l.contains("pp8");
    assert_eq!(f32_table.lines().filter(row).count(), 1, "{f32_table}");
    let f16_table = bench(&[]);
    assert!(!f16_table.contains("type_k"), "{f16_table}");
    let json = bench(&["--cache-type", "f32", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v.as_array().unwrap().iter().all(|r| r["type_k"] == "f32" && r["type_v"] == "f32"));
}

#[test]
fn unsupported_cache_type_is_a_clear_error() {
    let text_file = tmp("ppl.txt");
    std::fs::write(&text_file, "Some text to score.").unwrap();
    let cmds: [&[&str]; 6] = [
        &["run", "-p", "hi"],
        &["chat"],
        &["perplexity", "-f", text_file.to_str().unwrap()],
        &["bench"],
        &["eval", "--task", "lm"],
        &["entropy"],
    ];
    for cmd in cmds {
        let o = weft().args(cmd).args(["--cache-type", "q9"]).output().unwrap();
        let err = text(&o.stderr);
        assert!(!o.status.success(), "{cmd:?} accepted --cache-type q9");
        assert!(
            err.contains("--cache-type") && err.contains("q9") && err.contains("f16 or f32"),
            "{cmd:?}: {err}"
        );
    }
    let o = weft().args(["run", "--help"]).output().unwrap();
    let help = text(&o.stdout);
    assert!(help.contains("--cache-type") && help.contains("-ctk/-ctv"), "{help}");
    let _ = std::fs::remove_file(&text_file);
}
