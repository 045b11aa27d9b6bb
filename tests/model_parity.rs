//! The whole model against llama.cpp (reference outputs in shared/refs, see its README):
//! last-position logits (top-1 equal except at near ties, KL(reference ‖ weft) ≤ 0.01),
//! greedy continuations, perplexity within 0.5 %, and thread-count independence. 2 threads,
//! as the references.

use serde_json::Value;
use std::path::Path;
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::model::Model;
use weft::perplexity::perplexity;
use weft::sampling::argmax_logits;
use weft::tokenizer::Tokenizer;
use weft_cpu::{Cpu, CpuConfig};

const KL_MAX: f64 = 0.01;
/// Greedy tokens that must agree with llama.cpp before the first divergence, unless that
/// divergence is a near tie (below).
const GREEDY_MIN: usize = 5;
/// Two candidates whose logits differ by less than this are a near tie: which one wins depends
/// on rounding, not on correctness. weft's own instruction-set levels (scalar, AVX2, AVX-512)
/// differ from each other by up to ~0.6 in single SmolLM2 logits (its layer-11 activations
/// reach ~90, so the Q8 quantization of activation blocks amplifies last-bit differences); the
/// references' top-2 gaps at SmolLM2 prompts 0 and 3 are 0.038 and 0.144.
const NEAR_TIE: f32 = 0.15;

fn cpu(threads: usize) -> Cpu {
    Cpu::new(CpuConfig { level: None, threads }).expect("cpu backend")
}

fn read_json(path: &Path) -> Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_f32(path: &Path) -> Vec<f32> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn log_softmax(l: &[f32]) -> Vec<f64> {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = l.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    l.iter().map(|&x| x as f64 - lse).collect()
}

/// KL(p ‖ q) of the softmax distributions of two logit vectors.
fn kl(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    let lp = log_softmax(p_logits);
    let lq = log_softmax(q_logits);
    lp.iter().zip(&lq).map(|(&a, &b)| a.exp() * (a - b)).sum()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn logits_parity(name: &str, tag: &str) {
    let Some(path) = weft_tests::model_path(name) else { return };
    let refs = weft_tests::refs_dir();
    let cases = read_json(&refs.join(format!("logits_{tag}.json")));
    let file = GgufFile::open(&path).expect("open model");
    let cpu = cpu(2);
    let model = Model::load(&cpu, &file).expect("load model");
    let cfg = EngineConfig { n_ctx: 256, n_ubatch: 512, n_out: 1, ..EngineConfig::default() };
    let mut engine = Engine::new(&model, cfg).expect("engine");
    let mut failures = Vec::new();
    for (k, case) in cases.as_array().expect("cases").iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy_ids"]);
        let reference = read_f32(&refs.join(format!("logits_{tag}_{k}.f32")));
        engine.clear();
        let logits = engine.eval(&prompt).expect("eval").to_vec();
        assert_eq!(logits.len(), reference.len(), "n_vocab");
        let d = kl(&reference, &logits);
        let top_ref = argmax_logits(&reference).unwrap();
        let top = argmax_logits(&logits).unwrap();
        let mut n_match = 0;
        let mut tok = top;
        let mut cur = logits.clone();
        let mut tie_at = None;
        for &want in &greedy {
            if tok != want {
                // A divergence where weft's logit for llama.cpp's token is within NEAR_TIE of
                // weft's best is a near tie.
                let gap = cur[tok as usize] - cur[want as usize];
                println!(
                    "{tag} prompt {k}: step {n_match}: weft {tok}, llama.cpp {want}, gap {gap:.4}"
                );
                if gap < NEAR_TIE {
                    tie_at = Some(n_match);
                }
                break;
            }
            n_match += 1;
            if n_match == greedy.len() {
                break;
            }
            cur = engine.eval(&[tok]).expect("decode").to_vec();
            tok = argmax_logits(&cur).unwrap();
        }
        let near_tie_top = reference[top_ref as usize] - reference[top as usize] < NEAR_TIE;
        println!(
            "{tag} prompt {k}: KL {d:.6}, top-1 {top} (llama.cpp {top_ref}{}), greedy {n_match}/{} match{}",
            if top != top_ref && near_tie_top { ", near tie" } else { "" },
            greedy.len(),
            if tie_at.is_some() { " (diverged at a near tie)" } else { "" }
        );
        if top != top_ref && !near_tie_top {
            failures.push(format!("prompt {k}: top-1 {top} != {top_ref}"));
        }
        if d.is_nan() || d > KL_MAX {
            failures.push(format!("prompt {k}: KL {d} > {KL_MAX}"));
        }
        if n_match < GREEDY_MIN.min(greedy.len()) && tie_at.is_none() {
            failures.push(format!("prompt {k}: greedy agrees for {n_match} tokens only"));
        }
    }
    assert!(failures.is_empty(), "{tag}: {failures:#?}");
}

#[test]
fn smollm2_logits_match_llama_cpp() {
    logits_parity("smollm2-135m", "smollm2");
}

#[test]
fn qwen_logits_match_llama_cpp() {
    logits_parity("qwen2.5-0.5b", "qwen");
}

fn ppl_parity(name: &str, tag: &str) {
    let Some(path) = weft_tests::model_path(name) else { return };
    let refs = weft_tests::refs_dir();
    let r = read_json(&refs.join("ppl.json"));
    let want = r[tag]["ppl"].as_f64().expect("ppl");
    let chunks = r[tag]["chunks"].as_u64().expect("chunks") as usize;
    let n_ctx = r[tag]["ctx"].as_u64().expect("ctx") as usize;
    let text = std::fs::read_to_string(refs.join("pride-and-prejudice.txt")).expect("text");
    let file = GgufFile::open(&path).expect("open model");
    let tokenizer = Tokenizer::from_gguf(&file).expect("tokenizer");
    let tokens = tokenizer.encode(&text, true, false).expect("tokenize");
    let bos = if tokenizer.add_bos() { tokenizer.bos() } else { None };
    let cpu = cpu(2);
    let model = Model::load(&cpu, &file).expect("load model");
    let cfg =
        EngineConfig { n_ctx, n_ubatch: n_ctx.min(512), n_out: 32, ..EngineConfig::default() };
    let mut engine = Engine::new(&model, cfg).expect("engine");
    let acc = perplexity(&mut engine, &tokens, n_ctx, Some(chunks), bos, |_, _| {}).expect("ppl");
    let got = acc.ppl();
    let rel = (got - want).abs() / want;
    println!(
        "{tag}: PPL {got:.4} +/- {:.5} over {chunks} chunks; llama.cpp {want}; relative difference {:.4} %",
        acc.stderr().unwrap_or(f64::NAN),
        rel * 100.0
    );
    assert_eq!(acc.count, chunks * (n_ctx - 1 - n_ctx / 2), "scored tokens");
    assert!(rel <= 0.005, "{tag}: PPL {got} vs llama.cpp {want} ({:.3} %)", rel * 100.0);
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    ppl_parity("smollm2-135m", "smollm2");
}

#[test]
fn qwen_perplexity_matches_llama_cpp() {
    ppl_parity("qwen2.5-0.5b", "qwen");
}

/// Static work partition: 1 and 2 threads give bit-identical logits, in prefill (GEMM) and
/// decode (GEMV).
#[test]
fn one_and_two_threads_give_identical_logits() {
    let Some(path) = weft_tests::model_path("smollm2-135m") else { return };
    let file = GgufFile::open(&path).expect("open model");
    let prompt: Vec<u32> = vec![504, 2455, 282, 1029, 314, 253, 1129, 27461, 30];
    let run = |threads: usize| {
        let cpu = cpu(threads);
        let model = Model::load(&cpu, &file).expect("load model");
        let cfg = EngineConfig { n_ctx: 64, n_ubatch: 512, n_out: 1, ..EngineConfig::default() };
        let mut engine = Engine::new(&model, cfg).expect("engine");
        let prefill = engine.eval(&prompt).expect("eval").to_vec();
        let decode = engine.eval(&[441]).expect("decode").to_vec();
        (prefill, decode)
    };
    let (p1, d1) = run(1);
    let (p2, d2) = run(2);
    assert!(p1.iter().zip(&p2).all(|(a, b)| a.to_bits() == b.to_bits()), "prefill differs");
    assert!(d1.iter().zip(&d2).all(|(a, b)| a.to_bits() == b.to_bits()), "decode differs");
}
