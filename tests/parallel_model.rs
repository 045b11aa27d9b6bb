//! Parallel context encoding on the real default models (CPU backend): the must-hold
//! identities of issue #6 at model level, the document cache, selection's choice, the
//! observer, and bad requests.
//!
//! - P = 1 gives the logits of ordinary causal attention over sink + document + query.
//! - Pieces encoded in separate micro-batches over a shared sink give the logits of one
//!   pass with the block-diagonal mask.
//! - K >= P gives the logits of no selection; K = 1 with one relevant piece gives the
//!   logits of a request holding only that piece.
//! - A document-cache hit (memory or disk) gives the logits of recomputation; a damaged
//!   file is detected and recomputed.

use std::path::PathBuf;
use weft::doc_cache::DocCache;
use weft::engine::{Engine, EngineConfig, EngineError};
use weft::gguf::GgufFile;
use weft::layout::{PositionPolicy, Request};
use weft::model::Model;
use weft::parallel::{Mode, ParallelConfig, ParallelEngine};
use weft::selection::Pooling;
use weft::tokenizer::Tokenizer;
use weft_cpu::{Cpu, CpuConfig};

const SINK: &str = "Given the following contexts, answer the final question accordingly:\n\n";
const DOCS: [&str; 4] = [
    "Document (Title: Lake Baikal): Lake Baikal in Siberia is the deepest lake in the world, \
     reaching 1,642 metres. It holds about a fifth of the fresh surface water on Earth.\n\n",
    "Document (Title: Saffron): Saffron is a spice made from the dried stigmas of the crocus \
     flower. It takes around 150 flowers to yield one gram of the spice.\n\n",
    "Document (Title: Basalt): Basalt is a dark volcanic rock formed by the rapid cooling of \
     lava rich in iron and magnesium.\n\n",
    "Document (Title: Chess clocks): A chess clock has two displays and buttons so that only \
     one player's time runs at once.\n\n",
];
const QUERY: &str = "Question: How deep is Lake Baikal?\nAnswer:";

struct Fixture {
    file: GgufFile,
    cpu: Cpu,
}

fn fixture(name: &str) -> Option<Fixture> {
    let path = weft_tests::model_path(name)?;
    let file = GgufFile::open(&path).expect("open model");
    let cpu = Cpu::new(CpuConfig { level: None, threads: 2 }).expect("cpu");
    Some(Fixture { file, cpu })
}

fn enc(tok: &Tokenizer, s: &str) -> Vec<u32> {
    tok.encode(s, false, false).expect("tokenize")
}

fn request(tok: &Tokenizer, sink: bool, docs: &[&str]) -> Request {
    Request {
        sink: sink.then(|| enc(tok, SINK)),
        pieces: docs.iter().map(|d| enc(tok, d)).collect(),
        query: enc(tok, QUERY),
    }
}

fn cfg(n_ctx: usize, n_ubatch: usize) -> EngineConfig {
    EngineConfig { n_ctx, n_ubatch, n_out: 8, ..EngineConfig::default() }
}

/// Largest |a - b| relative to the largest |b|, and whether the argmaxes agree.
fn compare(a: &[f32], b: &[f32]) -> (f32, bool) {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let am = |v: &[f32]| (0..v.len()).max_by(|&i, &j| v[i].total_cmp(&v[j]));
    (diff / scale, am(a) == am(b))
}

/// KL(softmax(b) || softmax(a)) in nats.
fn kl(a: &[f32], b: &[f32]) -> f64 {
    let lsm = |l: &[f32]| {
        let m = l.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let z = l.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
        l.iter().map(|&v| v as f64 - z).collect::<Vec<f64>>()
    };
    let (la, lb) = (lsm(a), lsm(b));
    lb.iter().zip(&la).map(|(&q, &p)| q.exp() * (q - p)).sum()
}

/// "Equal within float tolerance" for whole-model logits. Bit-equality is asserted where
/// the computation is the same; where batches are shaped differently (a token's row sits at
/// another index of a GEMM tile, or goes through the GEMV path) rounding differs, and
/// these models amplify it (SmolLM2's logits move by up to ~0.8 between CPU levels), so the
/// bound is the one of the llama.cpp parity tests: either nearly equal logits, or KL <= 0.01
/// with the same top-1 unless the top two are within 0.15 (a near tie).
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let (rel, same_top) = compare(a, b);
    if rel <= tol && same_top {
        return;
    }
    let d = kl(a, b);
    let mut sorted = b.to_vec();
    sorted.sort_by(|x, y| y.total_cmp(x));
    let near_tie = sorted[0] - sorted[1] < 0.15;
    assert!(
        d <= 0.01 && (same_top || near_tie),
        "{what}: max relative diff {rel:e}, KL {d:e}, same top-1 {same_top}"
    );
}

fn one_piece_equals_causal(name: &str) {
    let Some(fx) = fixture(name) else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    for sink in [false, true] {
        let req = request(&tok, sink, &DOCS[..1]);
        let all: Vec<u32> =
            req.sink.iter().flatten().chain(&req.pieces[0]).chain(&req.query).copied().collect();
        let mut causal = Engine::new(&model, cfg(512, 512)).unwrap();
        let want = causal.eval(&all).unwrap().to_vec();
        for positions in [PositionPolicy::Even, PositionPolicy::Left, PositionPolicy::Right] {
            let mut par = ParallelEngine::new(&model, cfg(512, 512)).unwrap();
            let c = ParallelConfig { positions, ..Default::default() };
            par.encode(&req, &c).unwrap();
            assert_close(par.logits(), &want, 1e-4, &format!("{name} P=1 sink {sink} {positions}"));
        }
    }
}

#[test]
fn smollm2_one_piece_equals_causal() {
    one_piece_equals_causal("smollm2-135m");
}

#[test]
fn qwen_one_piece_equals_causal() {
    one_piece_equals_causal("qwen2.5-0.5b");
}

#[test]
fn separate_pieces_equal_one_block_diagonal_pass() {
    let Some(fx) = fixture("smollm2-135m") else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let req = request(&tok, true, &DOCS);
    let c = ParallelConfig::default();
    // One micro-batch holds the sink and all pieces: one pass with the block-diagonal mask.
    let mut one = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    one.encode(&req, &c).unwrap();
    // Micro-batches of 7: pieces are split and encoded apart, over the shared sink.
    let mut apart = ParallelEngine::new(&model, cfg(1024, 7)).unwrap();
    apart.encode(&req, &c).unwrap();
    assert_close(apart.logits(), one.logits(), 1e-4, "separate vs one pass");
    // And the pieces really are independent: changing piece 3 changes nothing that piece 0
    // computed, so with selection keeping only piece 0 the logits do not depend on it.
    let c1 = ParallelConfig { select_k: 1, positions: PositionPolicy::Left, observe: true, ..c };
    let mut a = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    a.encode(&request(&tok, true, &DOCS), &c1).unwrap();
    let mut other = DOCS;
    other[3] = "Document (Title: Tides): Tides are caused by the moon's gravity.\n\n";
    let mut b = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    b.encode(&request(&tok, true, &other), &c1).unwrap();
    let kept_only_0 = |e: &ParallelEngine<'_, '_, Cpu>| {
        let s = e.stats().unwrap();
        (0..s.n_layer()).all(|l| s.kept_fraction(l, 0) == Some(1.0))
    };
    if kept_only_0(&a) && kept_only_0(&b) {
        assert_eq!(a.logits(), b.logits(), "a dropped piece changed the logits");
    }
}

#[test]
fn selection_k_at_least_p_is_off_and_k1_keeps_the_relevant_piece() {
    let Some(fx) = fixture("smollm2-135m") else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let req = request(&tok, true, &DOCS);
    let base = ParallelConfig { positions: PositionPolicy::Left, ..Default::default() };
    let mut e = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    e.encode(&req, &base).unwrap();
    let want = e.logits().to_vec();
    for k in [4, 5, 64] {
        for pooling in [Pooling::None, Pooling::HeadsTokens] {
            e.encode(&req, &ParallelConfig { select_k: k, pooling, ..base.clone() }).unwrap();
            assert_eq!(e.logits(), &want[..], "K = {k} >= P with {pooling} changed the logits");
        }
    }
    // K = 1 with one relevant piece (the question is about piece 0; the others are short
    // filler, so the query's positions do not move without them): selection keeps piece 0
    // in every layer, and the logits are those of the request without the other pieces.
    let req = request(&tok, true, &[DOCS[0], "ok.\n\n", "yes.\n\n"]);
    e.encode(&req, &base).unwrap();
    let want = e.logits().to_vec();
    let c1 = ParallelConfig { select_k: 1, observe: true, ..base.clone() };
    e.encode(&req, &c1).unwrap();
    let stats = e.stats().unwrap().clone();
    let got = e.logits().to_vec();
    let kept: Vec<f64> = (0..stats.n_layer()).map(|l| stats.kept_fraction(l, 0).unwrap()).collect();
    assert_eq!(stats.n_pieces(), 3);
    assert!(kept.iter().all(|&f| f == 1.0), "piece 0 not kept everywhere: {kept:?}");
    e.encode(&request(&tok, true, &DOCS[..1]), &base).unwrap();
    assert_close(&got, e.logits(), 1e-4, "K=1 vs relevant piece alone");
    // K = 1 really drops something: the logits differ from no selection.
    let (rel, _) = compare(&got, &want);
    assert!(rel > 1e-3, "selection changed nothing ({rel:e})");
}

#[test]
fn observer_reports_entropy_of_query_tokens() {
    let Some(fx) = fixture("smollm2-135m") else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let req = request(&tok, false, &DOCS);
    let mut e = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    e.encode(&req, &ParallelConfig::default()).unwrap();
    let plain = e.logits().to_vec();
    assert!(e.stats().is_none());
    e.encode(&req, &ParallelConfig { observe: true, ..Default::default() }).unwrap();
    // Observing does not change the result.
    assert_eq!(e.logits(), &plain[..]);
    let s = e.stats().unwrap();
    let hp = &model.hparams;
    assert_eq!((s.n_layer(), s.n_head(), s.n_tokens()), (hp.n_layer, hp.n_head, req.query.len()));
    let max_h = (e.layout().unwrap().n_cells() as f64).ln();
    for (l, h) in s.entropy_by_layer().iter().enumerate() {
        assert!(*h > 0.0 && *h < max_h, "layer {l}: entropy {h} outside (0, ln n)");
    }
    assert!(s.q_norm_by_layer().iter().all(|&v| v > 0.0));
    assert!(s.k_norm_piece_start_by_layer().iter().all(|&v| v > 0.0));
    assert!(s.mean_abs_logit_by_layer().iter().all(|&v| v > 0.0));
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weft-doc-cache-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cache_hits_equal_recomputation(name: &str) {
    let Some(fx) = fixture(name) else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let id = DocCache::model_fingerprint(&fx.file);
    let dir = tmp_dir(name);
    let req = request(&tok, true, &DOCS[..3]);
    let c = ParallelConfig { positions: PositionPolicy::Left, ..Default::default() };
    let mut cold = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    cold.encode(&req, &c).unwrap();
    let want = cold.logits().to_vec();

    let mut e = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    e.set_doc_cache(DocCache::new(id.clone(), 64 << 20).with_dir(&dir).unwrap());
    let s = e.encode(&req, &c).unwrap();
    assert_eq!((s.n_cached, e.doc_cache().unwrap().stats().stores), (0, 4), "sink + 3 pieces");
    assert_eq!(e.logits(), &want[..], "cold encode with a cache");
    // Same documents in another order with another question: memory hits.
    let mut req2 = request(&tok, true, &[DOCS[2], DOCS[0], DOCS[1]]);
    req2.query = enc(&tok, "Question: What is saffron?\nAnswer:");
    e.clear();
    let s = e.encode(&req2, &c).unwrap();
    assert_eq!(s.n_context_eval, 0, "sink and documents all come from the cache");
    let hit = e.logits().to_vec();
    let mut fresh = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    fresh.encode(&req2, &c).unwrap();
    assert_close(&hit, fresh.logits(), 1e-4, "memory hit vs recomputation");
    assert_eq!(e.doc_cache().unwrap().stats().hits_memory, 4);

    // A new process: disk hits.
    let mut d = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    d.set_doc_cache(DocCache::new(id.clone(), 64 << 20).with_dir(&dir).unwrap());
    d.encode(&req, &c).unwrap();
    assert_close(d.logits(), &want, 1e-4, "disk hit vs recomputation");
    let disk = d.logits().to_vec();
    assert_eq!(d.doc_cache().unwrap().stats().hits_disk, 4);

    // Damage one file: reported, recomputed, the result unchanged.
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|f| f.unwrap().path()).collect();
    assert_eq!(files.len(), 4);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&files[0], &bytes).unwrap();
    std::fs::write(&files[1], &bytes[..100]).unwrap();
    let mut g = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    g.set_doc_cache(DocCache::new(id, 64 << 20).with_dir(&dir).unwrap());
    g.encode(&req, &c).unwrap();
    let st = g.doc_cache().unwrap().stats();
    assert_eq!((st.damaged, st.hits_disk, st.stores), (2, 2, 2), "{st:?}");
    assert_close(g.logits(), &disk, 1e-4, "after damaged files");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn smollm2_cache_hits_equal_recomputation() {
    cache_hits_equal_recomputation("smollm2-135m");
}

#[test]
fn qwen_cache_hits_equal_recomputation() {
    cache_hits_equal_recomputation("qwen2.5-0.5b");
}

#[test]
fn second_question_encodes_only_the_query_and_modes_run() {
    let Some(fx) = fixture("smollm2-135m") else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let mut req = request(&tok, true, &DOCS);
    let mut e = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    let c = ParallelConfig::default();
    e.encode(&req, &c).unwrap();
    req.query = enc(&tok, "Question: What is basalt?\nAnswer:");
    let s = e.encode(&req, &c).unwrap();
    assert_eq!((s.n_context_eval, s.n_reused), (0, e.layout().unwrap().query().start));
    let mut fresh = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    fresh.encode(&req, &c).unwrap();
    assert_eq!(e.logits(), fresh.logits());

    // APE and PCW run, differ from the paper's mode, and APE with T = S = 1 is the paper's
    // mode with left positions.
    let left = ParallelConfig { positions: PositionPolicy::Left, ..c.clone() };
    e.encode(&req, &left).unwrap();
    let paper = e.logits().to_vec();
    e.encode(
        &req,
        &ParallelConfig { mode: Mode::Ape { temperature: 1.0, scale: 1.0 }, ..c.clone() },
    )
    .unwrap();
    assert_close(e.logits(), &paper, 1e-4, "APE T=S=1");
    e.encode(&req, &ParallelConfig { mode: Mode::ape(), ..c.clone() }).unwrap();
    assert!(compare(e.logits(), &paper).0 > 1e-3, "APE changed nothing");
    let bos = tok.bos();
    assert!(e.encode(&req, &ParallelConfig { mode: Mode::Pcw, ..c.clone() }).is_err());
    e.encode(&req, &ParallelConfig { mode: Mode::Pcw, bos_token: bos, ..c.clone() }).unwrap();
    assert_eq!(e.layout().unwrap().n_bos(), DOCS.len());
}

#[test]
fn bad_requests_are_errors() {
    let Some(fx) = fixture("smollm2-135m") else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let mut e = ParallelEngine::new(&model, cfg(64, 32)).unwrap();
    let c = ParallelConfig::default();
    let mut req = request(&tok, false, &DOCS[..1]);
    req.pieces.push(Vec::new());
    assert!(matches!(e.encode(&req, &c), Err(EngineError::Layout(_))), "empty piece");
    let req = request(&tok, true, &DOCS);
    assert!(matches!(e.encode(&req, &c), Err(EngineError::Layout(_))), "too long");
    let mut req = request(&tok, false, &DOCS[..1]);
    req.query.clear();
    assert!(e.encode(&req, &c).is_err(), "empty query");
    let bad = ParallelConfig { mode: Mode::Ape { temperature: 0.0, scale: 1.0 }, ..c };
    assert!(e.encode(&request(&tok, false, &DOCS[..1]), &bad).is_err(), "T = 0");
    let mut sampler = weft::sampling::Sampler::new(weft::sampling::SamplerConfig::greedy());
    let mut fresh = ParallelEngine::new(&model, cfg(64, 32)).unwrap();
    let p = weft::engine::GenerateParams { max_tokens: 4, stop: vec![] };
    assert!(matches!(
        fresh.decode(&tok, &mut sampler, &p, |_| true),
        Err(EngineError::NothingEncoded)
    ));
}

/// With left positions a piece's cells hold exactly what a causal run over sink + that piece
/// computes: the K/V of every piece (every layer) match the causal run's, within rounding.
fn piece_kv_equals_causal_sink_plus_piece(name: &str) {
    let Some(fx) = fixture(name) else { return };
    let model = Model::load(&fx.cpu, &fx.file).unwrap();
    let tok = Tokenizer::from_gguf(&fx.file).unwrap();
    let req = request(&tok, true, &DOCS[..3]);
    let c = ParallelConfig { positions: PositionPolicy::Left, ..Default::default() };
    let mut par = ParallelEngine::new(&model, cfg(1024, 512)).unwrap();
    par.encode(&req, &c).unwrap();
    let layout = par.layout().unwrap().clone();
    let sink = req.sink.as_ref().unwrap();
    let kv_len = |cells: usize| 2 * model.hparams.n_layer * cells * model.hparams.n_embd_kv();
    for (p, piece) in req.pieces.iter().enumerate() {
        let all: Vec<u32> = sink.iter().chain(piece).copied().collect();
        let mut causal = Engine::new(&model, cfg(1024, 512)).unwrap();
        causal.eval(&all).unwrap();
        // f16 [2, n_layer, cells, n_embd_kv] as little-endian bytes (the default KV type)
        let mut want_b = vec![0u8; kv_len(piece.len()) * 2];
        let mut got_b = want_b.clone();
        let cells = sink.len()..sink.len() + piece.len();
        causal.kv_cache().read_cells(&fx.cpu, cells, &mut want_b).unwrap();
        par.kv_cache().read_cells(&fx.cpu, layout.piece(p), &mut got_b).unwrap();
        let f16s = |b: &[u8]| -> Vec<half::f16> {
            b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect()
        };
        let (want, got) = (f16s(&want_b), f16s(&got_b));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.to_f32().abs()));
        let diff =
            got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a.to_f32() - b.to_f32()).abs()));
        let bits = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        eprintln!(
            "{name} piece {p}: max |diff| {diff} of max |kv| {scale}, {bits} of {} values differ",
            got.len()
        );
        // Rounding only, amplified through the layers: the piece's keys fall into other
        // blocks of ATTN_BLOCK than in the causal run (another online-softmax rescaling
        // order). Measured: AVX-512 within 2 %, AVX2 (AMD Zen 3) 0.39 of 17.9 (2.2 %).
        assert!(diff <= 0.03 * scale, "{name} piece {p}: K/V differ by {diff} (max {scale})");
    }
}

#[test]
fn smollm2_piece_kv_equals_causal_sink_plus_piece() {
    piece_kv_equals_causal_sink_plus_piece("smollm2-135m");
}

#[test]
fn qwen_piece_kv_equals_causal_sink_plus_piece() {
    piece_kv_equals_causal_sink_plus_piece("qwen2.5-0.5b");
}
