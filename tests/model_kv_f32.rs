//! The whole model with an f32 KV cache (`EngineConfig::kv_type = KvType::F32`) on both
//! default models: last-position logits against llama.cpp's references (the rules of
//! `model_parity.rs`, top-1 equal except at a near tie, with KL(reference ‖ weft) ≤ 0.02:
//! see `KL_MAX`), f32
//! vs f16 KV close over prefill and decode steps, and the document cache with f32 entries
//! (round trip through memory and disk bit-exact; f16 entries, v1 files and files of the
//! other type are never used for an f32 engine, and the reverse). 2 threads, as the
//! references.

use serde_json::Value;
use std::path::{Path, PathBuf};
use weft::doc_cache::DocCache;
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::layout::{PositionPolicy, Request};
use weft::model::Model;
use weft::parallel::{ParallelConfig, ParallelEngine};
use weft::sampling::argmax_logits;
use weft::tokenizer::Tokenizer;
use weft::KvType;
use weft_cpu::{Cpu, CpuConfig};

/// The references were made with llama.cpp's f16 cache, so an f32 cache is a different
/// computation from theirs: its KL against them includes the f16 rounding of K, V, the query
/// and the probabilities that the f16 path reproduces (`reference::ggml_f16`), amplified by
/// the models' Q8 activation quantization (see `KL_F16_F32_MAX`). Measured up to 0.0143 on
/// SmolLM2 (AVX2 level, 2026-11-24) against ≤ 0.0083 for the f16 cache at every level;
/// the 0.01 is the f16 (default) configuration's bound, held in `model_parity.rs`.
const KL_MAX: f64 = 0.02;
/// Candidates whose logits differ by less than this are a near tie (see `model_parity.rs`).
const NEAR_TIE: f32 = 0.15;
/// f32 vs f16 KV on the same tokens. The caches differ only by f16 rounding of K and V, but
/// these models amplify small differences (the Q8 quantization of activation blocks turns
/// last-bit changes into logit changes of up to ~0.6 on SmolLM2, see `model_parity.rs`):
/// measured on this machine (AVX-512, 2026-11-23) up to 6.5e-3 after prefill and 1.4e-2 at
/// a decode step on SmolLM2, 4e-3 / 4.9e-3 on Qwen. Twice the largest seen; a cache read
/// wrongly (wrong type, stride or rounding) gives KL of order 1.
const KL_F16_F32_MAX: f64 = 0.03;

fn cpu() -> Cpu {
    Cpu::new(CpuConfig { level: None, threads: 2 }).expect("cpu backend")
}

fn cfg(n_ctx: usize, kv_type: KvType) -> EngineConfig {
    EngineConfig { n_ctx, n_ubatch: 512, n_out: 1, kv_type }
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
    let (lp, lq) = (log_softmax(p_logits), log_softmax(q_logits));
    lp.iter().zip(&lq).map(|(&a, &b)| a.exp() * (a - b)).sum()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// Top-1 equal, or the reference's gap between the two within NEAR_TIE.
fn same_top_or_near_tie(reference: &[f32], got: &[f32]) -> bool {
    let (r, g) = (argmax_logits(reference).unwrap(), argmax_logits(got).unwrap());
    r == g || reference[r as usize] - reference[g as usize] < NEAR_TIE
}

/// Top-1 equal, or a near tie (within NEAR_TIE) on either side between the two candidates.
/// The llama.cpp reference ran with an f16 cache, so the f32 cache computes a slightly
/// different function (logits move by up to ~0.2 between the cache types, KL up to
/// KL_F16_F32_MAX): where weft's f32-cache logits nearly tie, as on SmolLM2's prompt 1 at
/// the AVX2 level (weft's gap 0.0095, llama.cpp's 0.33), either order is correct.
fn same_top_or_either_near_tie(reference: &[f32], got: &[f32]) -> bool {
    let (r, g) = (argmax_logits(reference).unwrap(), argmax_logits(got).unwrap());
    same_top_or_near_tie(reference, got) || got[g as usize] - got[r as usize] < NEAR_TIE
}

fn f32_kv_parity(name: &str, tag: &str) {
    let Some(path) = weft_tests::model_path(name) else { return };
    let refs = weft_tests::refs_dir();
    let cases = read_json(&refs.join(format!("logits_{tag}.json")));
    let file = GgufFile::open(&path).expect("open model");
    let cpu = cpu();
    let model = Model::load(&cpu, &file).expect("load model");
    let mut f32_kv = Engine::new(&model, cfg(256, KvType::F32)).expect("f32 engine");
    let mut f16_kv = Engine::new(&model, cfg(256, KvType::F16)).expect("f16 engine");
    assert_eq!(f32_kv.kv_cache().kv_type(), KvType::F32);
    assert_eq!(f16_kv.kv_cache().kv_type(), KvType::F16);
    let mut failures = Vec::new();
    for (k, case) in cases.as_array().expect("cases").iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy_ids"]);
        let reference = read_f32(&refs.join(format!("logits_{tag}_{k}.f32")));
        f32_kv.clear();
        f16_kv.clear();
        let a = f32_kv.eval(&prompt).expect("eval f32").to_vec();
        let b = f16_kv.eval(&prompt).expect("eval f16").to_vec();
        let d_ref = kl(&reference, &a);
        let d_kv = kl(&b, &a);
        println!(
            "{tag} prompt {k}: KL(llama.cpp ‖ f32 KV) {d_ref:.6} (f16 KV {:.6}), \
             KL(f16 KV ‖ f32 KV) {d_kv:.2e}",
            kl(&reference, &b)
        );
        if d_ref.is_nan() || d_ref > KL_MAX {
            failures.push(format!("prompt {k}: KL vs llama.cpp {d_ref} > {KL_MAX}"));
        }
        if !same_top_or_either_near_tie(&reference, &a) {
            failures.push(format!("prompt {k}: top-1 differs from llama.cpp (no near tie)"));
        }
        if d_kv.is_nan() || d_kv > KL_F16_F32_MAX {
            failures.push(format!("prompt {k}: KL f16 vs f32 KV {d_kv} > {KL_F16_F32_MAX}"));
        }
        // Decode steps over llama.cpp's greedy tokens: both caches stay close.
        for (s, &t) in greedy.iter().take(4).enumerate() {
            let a = f32_kv.eval(&[t]).expect("decode f32").to_vec();
            let b = f16_kv.eval(&[t]).expect("decode f16").to_vec();
            let d = kl(&b, &a);
            println!("{tag} prompt {k} decode step {s}: KL(f16 KV ‖ f32 KV) {d:.2e}");
            if d.is_nan() || d > KL_F16_F32_MAX || !same_top_or_near_tie(&b, &a) {
                failures.push(format!("prompt {k} decode step {s}: f16 vs f32 KV KL {d}"));
            }
        }
    }
    assert!(failures.is_empty(), "{tag}: {failures:#?}");
}

#[test]
fn smollm2_f32_kv_logits_match_llama_cpp_and_f16_kv() {
    f32_kv_parity("smollm2-135m", "smollm2");
}

#[test]
fn qwen_f32_kv_logits_match_llama_cpp_and_f16_kv() {
    f32_kv_parity("qwen2.5-0.5b", "qwen");
}

const SINK: &str = "Given the following contexts, answer the final question accordingly:\n\n";
const DOCS: [&str; 2] = [
    "Document (Title: Lake Baikal): Lake Baikal in Siberia is the deepest lake in the world, \
     reaching 1,642 metres.\n\n",
    "Document (Title: Basalt): Basalt is a dark volcanic rock formed by the rapid cooling of \
     lava rich in iron and magnesium.\n\n",
];
const QUERY: &str = "Question: How deep is Lake Baikal?\nAnswer:";

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-kv-f32-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn hex(k: &weft::doc_cache::DocKey) -> String {
    k.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// f32 entries round-trip (memory and disk hits give the logits of the cold run, bit for
/// bit); an f16 cache directory is never used by an f32 engine (other keys: misses), not
/// even an f16 file put under the f32 key's name (rejected as damaged, recomputed).
#[test]
fn doc_cache_f32_entries_round_trip_and_f16_entries_are_not_used() {
    let Some(path) = weft_tests::model_path("smollm2-135m") else { return };
    let file = GgufFile::open(&path).expect("open model");
    let cpu = cpu();
    let model = Model::load(&cpu, &file).expect("load model");
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let enc = |s: &str| tok.encode(s, false, false).unwrap();
    let req = Request {
        sink: Some(enc(SINK)),
        pieces: DOCS.iter().map(|d| enc(d)).collect(),
        query: enc(QUERY),
    };
    let c = ParallelConfig { positions: PositionPolicy::Left, ..Default::default() };
    let id = DocCache::model_fingerprint(&file);
    let dir = tmp_dir("docs");
    let engine = |ty: KvType| {
        let mut e = ParallelEngine::new(&model, cfg(512, ty)).unwrap();
        e.set_doc_cache(DocCache::new(id.clone(), 64 << 20).with_dir(&dir).unwrap());
        e
    };

    // f32: cold run stores sink + 2 pieces; a memory hit and a disk hit give the same bits.
    let mut e32 = engine(KvType::F32);
    e32.encode(&req, &c).unwrap();
    let want = e32.logits().to_vec();
    assert_eq!(e32.doc_cache().unwrap().stats().stores, 3);
    e32.clear();
    let s = e32.encode(&req, &c).unwrap();
    assert_eq!((s.n_context_eval, e32.doc_cache().unwrap().stats().hits_memory), (0, 3));
    assert_eq!(e32.logits(), &want[..], "f32 memory hit");
    let mut d32 = engine(KvType::F32);
    d32.encode(&req, &c).unwrap();
    assert_eq!(d32.doc_cache().unwrap().stats().hits_disk, 3);
    assert_eq!(d32.logits(), &want[..], "f32 disk hit");
    // Every f32 file holds 4-byte elements: sink + pieces cells x 2 x n_layer x n_embd_kv.
    let hp = &model.hparams;
    let payload: usize = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| std::fs::metadata(f.unwrap().path()).unwrap().len() as usize - (60 + 32))
        .sum();
    let n_ctx_cells =
        req.sink.as_ref().unwrap().len() + req.pieces.iter().map(Vec::len).sum::<usize>();
    assert_eq!(payload, n_ctx_cells * 2 * hp.n_layer * hp.n_embd_kv() * 4);

    // f16 in the same directory: other keys, so nothing of the f32 entries is used.
    let mut e16 = engine(KvType::F16);
    e16.encode(&req, &c).unwrap();
    let st = e16.doc_cache().unwrap().stats();
    assert_eq!((st.hits_disk, st.hits_memory, st.misses, st.stores), (0, 0, 3, 3), "{st:?}");
    let want16 = e16.logits().to_vec();

    // An f16 file under the f32 key's name: rejected (type field), counted, recomputed.
    let layout = e32.layout().unwrap().clone();
    let cache = DocCache::new(id.clone(), 0);
    let k16 = cache.key(&layout, 0, KvType::F16);
    let k32 = cache.key(&layout, 0, KvType::F32);
    assert_ne!(k16, k32);
    let f16_file = dir.join(format!("{}.weftkv", hex(&k16)));
    let f32_file = dir.join(format!("{}.weftkv", hex(&k32)));
    std::fs::copy(&f16_file, &f32_file).unwrap();
    let mut g32 = engine(KvType::F32);
    g32.encode(&req, &c).unwrap();
    let st = g32.doc_cache().unwrap().stats();
    // The f16 file is half the size of an f32 entry: the size check rejects it.
    assert_eq!((st.damaged, st.hits_disk, st.misses), (1, 2, 1), "{st:?}");
    assert_eq!(g32.logits(), &want[..], "f32 after a foreign file");
    // The f16 engine still hits its own files and gets its own logits.
    let mut h16 = engine(KvType::F16);
    h16.encode(&req, &c).unwrap();
    assert_eq!(h16.doc_cache().unwrap().stats().hits_disk, 3);
    assert_eq!(h16.logits(), &want16[..], "f16 disk hit");
    let _ = std::fs::remove_dir_all(&dir);
}
