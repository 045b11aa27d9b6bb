//! Issue #5's memory budget: after loading a default model and generating, the process's
//! peak resident memory stays within the model file's size + the KV cache + 100 MiB (weights
//! are mapped or repacked once, never held twice). Read from `weft run`'s memory line
//! (VmHWM of /proc/self/status), so only where /proc exists.

use std::process::Command;

/// The numbers (MiB) after `key` in `line`: "model file 93.8 MiB" -> 93.8.
fn mib_after(line: &str, key: &str) -> f64 {
    let rest =
        &line[line.find(key).unwrap_or_else(|| panic!("no {key:?} in {line:?}")) + key.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

fn check(model: &str) {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: resident memory is not reported here");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "-m", model, "-p", "Name three rivers.", "-n", "16", "--temp", "0"])
        .args(["-c", "4096", "-t", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("weft: memory:")).expect("memory line");
    let file = mib_after(line, "model file ");
    let kv = mib_after(line, "KV cache ");
    let peak = mib_after(line, "(peak ");
    assert!(file > 50.0 && kv > 10.0, "{line}");
    assert!(peak <= file + kv + 100.0, "{model}: peak resident over budget: {line}");
}

#[test]
fn smollm2_resident_memory_within_budget() {
    check("smollm2-135m");
}

#[test]
fn qwen_resident_memory_within_budget() {
    check("qwen2.5-0.5b");
}

/// `--no-repack` keeps every weight mapped: it runs, stays within the budget, and its
/// logits match the repacked run's (different summation order only).
#[test]
fn no_repack_runs_and_matches_the_repacked_logits() {
    let dir = std::env::temp_dir().join(format!("weft-no-repack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut logits = Vec::new();
    for extra in [&[][..], &["--no-repack"][..]] {
        let path = dir.join(format!("logits{}.bin", extra.len()));
        let out = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["run", "-m", "smollm2-135m", "-p", "Name three rivers.", "-n", "0"])
            .args(["-c", "512", "-t", "2", "--logits-out"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let bytes = std::fs::read(&path).unwrap();
        let v: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        logits.push(v);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (&logits[0], &logits[1]);
    assert_eq!(a.len(), b.len());
    let max_diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
    assert!(max_diff < 0.5, "repacked and mapped logits differ by {max_diff}");
    assert_eq!(argmax(a), argmax(b));
}
