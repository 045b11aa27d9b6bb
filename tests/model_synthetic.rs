//! Models on tiny synthetic GGUF files (random F32 weights, written with GgufWriter): load
//! errors name the problem, and the engine's batching, masking, prefix re-use and context
//! limits behave, without needing a real model.

use weft::engine::{Engine, EngineConfig, EngineError};
use weft::gguf::{GgufFile, GgufWriter, MetaValue};
use weft::kv_cache::KvCacheError;
use weft::model::{Model, ModelError};
use weft::GgmlType;
use weft_cpu::{Cpu, CpuConfig};

const N_EMBD: usize = 64;
const N_FF: usize = 96;
const N_HEAD: usize = 4;
const N_HEAD_KV: usize = 2;
const HEAD_DIM: usize = N_EMBD / N_HEAD;
const N_VOCAB: usize = 80;
const N_LAYER: usize = 2;

struct Tensor {
    name: String,
    ty: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

/// A deterministic pseudo-random stream (LCG), values in [-scale, scale).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, scale: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

fn f32_tensor(name: &str, dims: &[usize], rng: &mut Lcg, scale: f32, offset: f32) -> Tensor {
    let n: usize = dims.iter().product();
    let data = (0..n).flat_map(|_| (offset + rng.next(scale)).to_le_bytes()).collect();
    Tensor {
        name: name.into(),
        ty: GgmlType::F32,
        dims: dims.iter().map(|&d| d as u64).collect(),
        data,
    }
}

fn tensors(qwen: bool, tied: bool) -> Vec<Tensor> {
    let mut r = Lcg(42);
    let mut t = Vec::new();
    let (q, kv) = (N_HEAD * HEAD_DIM, N_HEAD_KV * HEAD_DIM);
    t.push(f32_tensor("token_embd.weight", &[N_EMBD, N_VOCAB], &mut r, 1.0, 0.0));
    for i in 0..N_LAYER {
        let n = |s: &str| format!("blk.{i}.{s}");
        let w = 1.0 / (N_EMBD as f32).sqrt();
        t.push(f32_tensor(&n("attn_norm.weight"), &[N_EMBD], &mut r, 0.1, 1.0));
        t.push(f32_tensor(&n("attn_q.weight"), &[N_EMBD, q], &mut r, w, 0.0));
        t.push(f32_tensor(&n("attn_k.weight"), &[N_EMBD, kv], &mut r, w, 0.0));
        t.push(f32_tensor(&n("attn_v.weight"), &[N_EMBD, kv], &mut r, w, 0.0));
        t.push(f32_tensor(&n("attn_output.weight"), &[q, N_EMBD], &mut r, w, 0.0));
        if qwen {
            t.push(f32_tensor(&n("attn_q.bias"), &[q], &mut r, 0.1, 0.0));
            t.push(f32_tensor(&n("attn_k.bias"), &[kv], &mut r, 0.1, 0.0));
            t.push(f32_tensor(&n("attn_v.bias"), &[kv], &mut r, 0.1, 0.0));
        }
        t.push(f32_tensor(&n("ffn_norm.weight"), &[N_EMBD], &mut r, 0.1, 1.0));
        t.push(f32_tensor(&n("ffn_gate.weight"), &[N_EMBD, N_FF], &mut r, w, 0.0));
        t.push(f32_tensor(&n("ffn_up.weight"), &[N_EMBD, N_FF], &mut r, w, 0.0));
        let wd = 1.0 / (N_FF as f32).sqrt();
        t.push(f32_tensor(&n("ffn_down.weight"), &[N_FF, N_EMBD], &mut r, wd, 0.0));
    }
    t.push(f32_tensor("output_norm.weight", &[N_EMBD], &mut r, 0.1, 1.0));
    if !tied {
        t.push(f32_tensor("output.weight", &[N_EMBD, N_VOCAB], &mut r, 0.2, 0.0));
    }
    t
}

fn gguf(arch: &str, tensors: Vec<Tensor>) -> GgufFile {
    let mut w = GgufWriter::new();
    let u = |v: usize| MetaValue::U32(v as u32);
    w.add_metadata("general.architecture", MetaValue::String(arch.into()));
    w.add_metadata(format!("{arch}.block_count"), u(N_LAYER));
    w.add_metadata(format!("{arch}.context_length"), u(256));
    w.add_metadata(format!("{arch}.embedding_length"), u(N_EMBD));
    w.add_metadata(format!("{arch}.feed_forward_length"), u(N_FF));
    w.add_metadata(format!("{arch}.attention.head_count"), u(N_HEAD));
    w.add_metadata(format!("{arch}.attention.head_count_kv"), u(N_HEAD_KV));
    w.add_metadata(format!("{arch}.rope.freq_base"), MetaValue::F32(10000.0));
    w.add_metadata(format!("{arch}.attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5));
    w.add_metadata(format!("{arch}.vocab_size"), u(N_VOCAB));
    for t in tensors {
        w.add_tensor(&t.name, t.ty, &t.dims, t.data).expect("add tensor");
    }
    GgufFile::from_bytes(w.to_bytes().expect("serialise")).expect("parse")
}

fn cpu(threads: usize) -> Cpu {
    Cpu::new(CpuConfig { level: None, threads }).expect("cpu")
}

fn load_err(file: &GgufFile) -> ModelError {
    let cpu = cpu(1);
    match Model::load(&cpu, file) {
        Ok(_) => panic!("load should fail"),
        Err(e) => e,
    }
}

const PROMPT: [u32; 11] = [3, 17, 42, 8, 79, 0, 23, 23, 61, 5, 30];

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn unknown_architecture_is_named() {
    let e = load_err(&gguf("mamba", tensors(false, true)));
    assert!(matches!(&e, ModelError::UnsupportedArch(a) if a == "mamba"), "{e}");
    assert!(e.to_string().contains("mamba"), "{e}");
}

#[test]
fn missing_tensor_is_named() {
    let mut t = tensors(false, true);
    t.retain(|t| t.name != "blk.1.ffn_up.weight");
    let e = load_err(&gguf("llama", t));
    assert!(e.to_string().contains("blk.1.ffn_up.weight"), "{e}");
}

#[test]
fn wrong_shape_is_named() {
    let mut t = tensors(false, true);
    let k = t.iter_mut().find(|t| t.name == "blk.0.attn_k.weight").unwrap();
    k.dims = vec![N_EMBD as u64 / 2, 2 * (N_HEAD_KV * HEAD_DIM) as u64];
    let e = load_err(&gguf("llama", t));
    assert!(
        matches!(&e, ModelError::TensorShape { name, .. } if name == "blk.0.attn_k.weight"),
        "{e}"
    );
}

#[test]
fn unsupported_matmul_type_is_named() {
    let mut t = tensors(false, true);
    let q = t.iter_mut().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
    // A type weft has no matmul for, with the right shape and byte size.
    q.ty = GgmlType::IQ4_NL;
    q.data =
        vec![0u8; GgmlType::IQ4_NL.row_size(N_EMBD as u64).unwrap() as usize * N_HEAD * HEAD_DIM];
    let e = load_err(&gguf("llama", t));
    assert!(
        matches!(&e, ModelError::UnsupportedTensorType { name, ty: GgmlType::IQ4_NL } if name == "blk.0.attn_q.weight"),
        "{e}"
    );
}

#[test]
fn unsupported_norm_type_is_named() {
    let mut t = tensors(false, true);
    let q = t.iter_mut().find(|t| t.name == "blk.0.attn_norm.weight").unwrap();
    q.ty = GgmlType::Q8_0;
    q.data = vec![0u8; GgmlType::Q8_0.row_size(N_EMBD as u64).unwrap() as usize];
    let e = load_err(&gguf("llama", t));
    assert!(
        matches!(&e, ModelError::UnsupportedTensorType { name, ty: GgmlType::Q8_0 } if name == "blk.0.attn_norm.weight"),
        "{e}"
    );
    assert!(e.to_string().contains("q8_0") || e.to_string().contains("Q8_0"), "{e}");
}

/// Logits of every prompt position from one batch equal the last logits of evaluating each
/// prefix alone (causal masking), and equal token-by-token decoding (KV cache re-use).
fn batch_consistency(arch: &str, qwen: bool, tied: bool) {
    let file = gguf(arch, tensors(qwen, tied));
    let cpu = cpu(2);
    let model = Model::load(&cpu, &file).expect("load");
    let cfg = EngineConfig { n_ctx: 64, n_ubatch: 512, n_out: 4, ..EngineConfig::default() };
    let mut engine = Engine::new(&model, cfg).expect("engine");
    let mut rows = vec![Vec::new(); PROMPT.len()];
    engine
        .eval_rows(&PROMPT, 0..PROMPT.len(), |i, l| {
            rows[i] = l.to_vec();
            Ok(())
        })
        .expect("eval rows");
    assert!(rows.iter().all(|r| r.len() == N_VOCAB && r.iter().all(|x| x.is_finite())));
    let mut seq = Engine::new(&model, cfg).expect("engine");
    for i in 0..PROMPT.len() {
        engine.clear();
        let alone = engine.eval(&PROMPT[..=i]).expect("eval prefix").to_vec();
        let d = max_rel_diff(&rows[i], &alone);
        assert!(d < 2e-3, "{arch}: row {i}: batch vs prefix alone differ by {d}");
        let step = seq.eval(&PROMPT[i..=i]).expect("decode").to_vec();
        let d = max_rel_diff(&rows[i], &step);
        assert!(d < 2e-3, "{arch}: row {i}: batch vs token-by-token differ by {d}");
    }
    // Micro-batches of 3 give the same last logits as one batch.
    let mut small = Engine::new(
        &model,
        EngineConfig { n_ctx: 64, n_ubatch: 3, n_out: 1, ..EngineConfig::default() },
    )
    .unwrap();
    let l = small.eval(&PROMPT).expect("eval").to_vec();
    let d = max_rel_diff(&rows[PROMPT.len() - 1], &l);
    assert!(d < 2e-3, "{arch}: micro-batches differ by {d}");
}

#[test]
fn llama_batching_is_consistent() {
    batch_consistency("llama", false, true);
}

#[test]
fn qwen2_with_biases_and_output_is_consistent() {
    batch_consistency("qwen2", true, false);
}

#[test]
fn prefix_reuse_matches_fresh_eval() {
    let file = gguf("llama", tensors(false, true));
    let cpu = cpu(1);
    let model = Model::load(&cpu, &file).expect("load");
    let cfg = EngineConfig { n_ctx: 64, n_ubatch: 512, n_out: 1, ..EngineConfig::default() };
    let mut a = Engine::new(&model, cfg).unwrap();
    let mut b = Engine::new(&model, cfg).unwrap();
    a.eval(&PROMPT[..7]).unwrap();
    let mut other = PROMPT.to_vec();
    other[9] = 1;
    let reused = a.eval_with_prefix_reuse(&other).unwrap();
    assert_eq!(reused, 7);
    let reused = a.eval_with_prefix_reuse(&PROMPT).unwrap();
    assert_eq!(reused, 9);
    let fresh = b.eval(&PROMPT).unwrap().to_vec();
    assert!(max_rel_diff(a.logits(), &fresh) < 2e-3);
    // The same prompt again: everything but the last token is re-used.
    assert_eq!(a.eval_with_prefix_reuse(&PROMPT).unwrap(), PROMPT.len() - 1);
    assert_eq!(a.tokens(), &PROMPT);
}

#[test]
fn context_overflow_is_an_error_not_a_panic() {
    let file = gguf("llama", tensors(false, true));
    let cpu = cpu(1);
    let model = Model::load(&cpu, &file).expect("load");
    let mut e = Engine::new(
        &model,
        EngineConfig { n_ctx: 8, n_ubatch: 4, n_out: 1, ..EngineConfig::default() },
    )
    .unwrap();
    let full = |r: Result<&[f32], EngineError>| {
        matches!(r, Err(EngineError::KvCache(KvCacheError::ContextFull { .. })))
    };
    assert!(full(e.eval(&PROMPT[..9])));
    assert!(e.tokens().is_empty(), "a failed eval claims no cells");
    e.eval(&PROMPT[..5]).unwrap();
    assert!(full(e.eval(&PROMPT[..4])));
    assert_eq!(e.tokens(), &PROMPT[..5]);
    e.eval(&PROMPT[5..8]).unwrap();
    assert!(full(e.eval(&[1])));
    let err = e.eval(&[1]).unwrap_err().to_string();
    assert!(err.contains("context"), "{err}");
    // Out-of-range token ids are an error too.
    e.clear();
    let r = e.eval(&[N_VOCAB as u32]);
    assert!(matches!(r, Err(EngineError::Model(ModelError::TokenOutOfRange { .. }))));
    assert!(e.tokens().is_empty());
}
