//! Conformance of attention over an f32 KV cache at every CPU level this machine has:
//! plain attention (causal and ranges masks) and the extras entry point (group scores,
//! entropy, mean |logit|, APE, the scoring-only pass) against the generic scalar reference
//! in f64; 1 vs 2 threads bit-identical; and, on K/V values exactly representable in f16,
//! the f32 kernels give the very bits of the f16 kernels of the same level (the f16 path
//! widens exactly to f32 and then runs the same arithmetic). Also `kv_store` and the
//! backend's f32 KV buffers (store, read/write as bytes, mixed-type errors).

// One-range masks are ordinary inputs here, not a mistaken `vec![a..b]`.
#![allow(clippy::single_range_in_vec_init)]

use half::f16;
use std::ops::Range;
use weft::backend::Backend;
use weft::layout::{Layout, LayoutConfig, Request};
use weft::ops::{reference, ApeParams, AttnExtras, AttnMask, AttnParams};
use weft::{KvElem, KvType};
use weft_cpu::{Cpu, CpuConfig, CpuLevel, KvBuf};
use weft_tests::Rng;

fn backends() -> Vec<(CpuLevel, Cpu, Cpu)> {
    CpuLevel::available()
        .into_iter()
        .map(|level| {
            let one = Cpu::new(CpuConfig { level: Some(level), threads: 1 }).unwrap();
            let two = Cpu::new(CpuConfig { level: Some(level), threads: 2 }).unwrap();
            (level, one, two)
        })
        .collect()
}

fn assert_bits_eq(a: &[f32], b: &[f32], what: &str) {
    let differ = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
    assert!(differ.is_none() && a.len() == b.len(), "{what}: differ at {differ:?}");
}

fn assert_abs(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite() && (g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

fn assert_nmse(got: &[f32], want: &[f32], bound: f64, what: &str) {
    assert!(got.iter().all(|v| v.is_finite()), "{what}: not finite");
    let err: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w as f64).powi(2)).sum();
    let norm: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum::<f64>().max(1e-30);
    assert!(err / norm <= bound, "{what}: normalised MSE {:e}", err / norm);
}

/// Head geometries of the default models and odd ones (head_dim not a multiple of 8 or 16).
fn geometries() -> Vec<AttnParams> {
    vec![
        AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 },
        AttnParams { n_head: 14, n_head_kv: 2, head_dim: 64, scale: 0.125 },
        AttnParams { n_head: 3, n_head_kv: 1, head_dim: 40, scale: 0.3 },
        AttnParams { n_head: 2, n_head_kv: 2, head_dim: 7, scale: 0.5 },
        AttnParams { n_head: 6, n_head_kv: 3, head_dim: 72, scale: 0.12 },
    ]
}

/// Sorted, disjoint visible ranges per row with gaps (dropped pieces), every row non-empty.
fn random_ranges(rng: &mut Rng, n_q: usize, n_cells: usize) -> (Vec<usize>, Vec<Range<usize>>) {
    let mut offsets = vec![0];
    let mut ranges = Vec::new();
    for i in 0..n_q {
        let mut c = 0;
        let first = ranges.len();
        while c < n_cells {
            let end = (c + 1 + rng.below(90)).min(n_cells);
            if rng.below(3) != 0 {
                ranges.push(c..end);
            }
            c = end + rng.below(40);
        }
        if ranges.len() == first {
            ranges.push(i % n_cells..i % n_cells + 1);
        }
        offsets.push(ranges.len());
    }
    (offsets, ranges)
}

/// Inputs of one attention call: q f32 [n_q, n_head, head_dim]; K/V f32 and, for the
/// representable case, the same values as f16.
struct Case {
    p: AttnParams,
    n_q: usize,
    q: Vec<f32>,
    /// f32 [n_cells, n_head_kv, head_dim]
    k: Vec<f32>,
    /// f32 [n_cells, n_head_kv, head_dim]
    v: Vec<f32>,
}

impl Case {
    /// Random f32 K/V (mostly not representable in f16).
    fn new(rng: &mut Rng, p: AttnParams, n_q: usize, n_cells: usize, q_scale: f32) -> Case {
        let n = n_cells * p.n_head_kv * p.head_dim;
        Case {
            p,
            n_q,
            q: rng.vec(n_q * p.n_head * p.head_dim, q_scale),
            k: rng.vec(n, 1.0),
            v: rng.vec(n, 1.0),
        }
    }

    /// Q/K/V drawn as f16 and widened (exactly representable in f16: over an f16 cache the
    /// query is rounded to f16, see `reference::ggml_f16`).
    fn representable(rng: &mut Rng, p: AttnParams, n_q: usize, n_cells: usize) -> Case {
        let n = n_cells * p.n_head_kv * p.head_dim;
        let widen = |v: Vec<f16>| v.iter().map(|x| x.to_f32()).collect();
        Case {
            p,
            n_q,
            q: widen(rng.vec_f16(n_q * p.n_head * p.head_dim, 1.5)),
            k: widen(rng.vec_f16(n, 1.0)),
            v: widen(rng.vec_f16(n, 1.0)),
        }
    }

    fn f16(x: &[f32]) -> Vec<f16> {
        x.iter().map(|&v| f16::from_f32(v)).collect()
    }
}

/// Outputs of one extras call with everything requested.
#[derive(Clone, Debug, PartialEq)]
struct Outputs {
    out: Vec<f32>,
    scores: Vec<f32>,
    entropy: Vec<f32>,
    abs: Vec<f32>,
}

/// Runs the extras entry point on `cpu` (or the reference with `None`) over K/V of type `T`.
#[allow(clippy::too_many_arguments)]
fn run_extras<T: KvElem>(
    cpu: Option<&Cpu>,
    c: &Case,
    k: &[T],
    v: &[T],
    mask: &AttnMask<'_>,
    pieces: &[Range<usize>],
    ape: Option<ApeParams>,
    scores_only: bool,
) -> Outputs {
    let rows = c.n_q * c.p.n_head;
    let mut o = Outputs {
        out: vec![if scores_only { f32::NAN } else { 0.0 }; rows * c.p.head_dim],
        scores: vec![0.0; rows * pieces.len()],
        entropy: vec![0.0; rows],
        abs: vec![0.0; rows],
    };
    let mut ex = AttnExtras {
        group_scores: Some((pieces, &mut o.scores)),
        entropy: Some(&mut o.entropy),
        mean_abs_logit: Some(&mut o.abs),
        scores_only,
        ape: ape.map(|a| (pieces, a)),
    };
    match cpu {
        Some(cpu) => cpu.attention_ext(&c.q, k, v, &c.p, mask, &mut ex, &mut o.out).unwrap(),
        None => reference::attention_extras(&c.q, k, v, &c.p, mask, &mut ex, &mut o.out).unwrap(),
    }
    o
}

/// Plain f32-KV attention at every level vs the reference; 1 vs 2 threads bit-identical.
fn check_plain(c: &Case, mask: &AttnMask<'_>, what: &str) {
    let mut want = vec![0.0; c.q.len()];
    reference::attention(&c.q, &c.k, &c.v, &c.p, mask, &mut want).unwrap();
    for (level, one, two) in backends() {
        let what = format!("{what} [{level}]");
        let (mut a, mut b) = (vec![f32::NAN; c.q.len()], vec![f32::NAN; c.q.len()]);
        one.attention(&c.q, &c.k, &c.v, &c.p, mask, &mut a).unwrap();
        two.attention(&c.q, &c.k, &c.v, &c.p, mask, &mut b).unwrap();
        assert_nmse(&a, &want, 1e-10, &what);
        assert_bits_eq(&a, &b, &format!("{what} 1 vs 2 threads"));
    }
}

#[test]
fn f32_kv_causal_matches_reference() {
    let mut rng = Rng(31);
    for p in geometries() {
        for n_q in [1, 5, 33] {
            for n_cells in [1, 7, 63, 64, 65, 130, 300] {
                if n_cells < n_q {
                    continue;
                }
                let c = Case::new(&mut rng, p, n_q, n_cells, 1.0);
                let mask = AttnMask::Causal { n_past: n_cells - n_q };
                let what = format!(
                    "causal {}/{} hd {} n_q {n_q} n_cells {n_cells}",
                    p.n_head, p.n_head_kv, p.head_dim
                );
                check_plain(&c, &mask, &what);
            }
        }
    }
}

#[test]
fn f32_kv_ranges_match_reference() {
    let mut rng = Rng(37);
    for p in geometries() {
        for n_q in [1, 5, 17] {
            for n_cells in [1, 17, 100, 257] {
                let (offsets, ranges) = random_ranges(&mut rng, n_q, n_cells);
                let mask = AttnMask::Ranges { offsets: &offsets, ranges: &ranges };
                let c = Case::new(&mut rng, p, n_q, n_cells, 1.0);
                let what = format!(
                    "ranges {}/{} hd {} n_q {n_q} n_cells {n_cells}",
                    p.n_head, p.n_head_kv, p.head_dim
                );
                check_plain(&c, &mask, &what);
            }
        }
    }
}

/// A request with a sink, `lens` pieces and a query of `n_query` tokens.
fn layout(sink: usize, lens: &[usize], n_query: usize) -> Layout {
    let req = Request {
        sink: (sink > 0).then(|| vec![1; sink]),
        pieces: lens.iter().map(|&l| vec![2; l]).collect(),
        query: vec![3; n_query],
    };
    Layout::build(&req, &LayoutConfig::new(4096)).unwrap()
}

#[test]
fn f32_kv_extras_ape_and_scores_only_match_reference() {
    let mut rng = Rng(41);
    let shapes: [(usize, &[usize], usize); 3] =
        [(4, &[3, 5], 3), (7, &[70, 2, 61, 130], 5), (0, &[1, 9, 65], 2)];
    let ape = ApeParams { temperature: 0.9, scale: 0.9 };
    for p in geometries() {
        for (sink, lens, n_query) in shapes {
            let l = layout(sink, lens, n_query);
            let c = Case::new(&mut rng, p, n_query, l.n_cells(), 1.5);
            let keep: Vec<bool> = (0..l.n_pieces()).map(|i| i != 1).collect();
            let masks =
                [l.attn_mask_for_query(None).unwrap(), l.attn_mask_for_query(Some(&keep)).unwrap()];
            for (mi, m) in masks.iter().enumerate() {
                let mask = m.as_mask();
                for (ape, scores_only) in
                    [(None, false), (Some(ape), false), (None, true), (Some(ape), true)]
                {
                    let what = format!(
                        "{}/{} hd {} pieces {lens:?} mask {mi} ape {} scores_only {scores_only}",
                        p.n_head,
                        p.n_head_kv,
                        p.head_dim,
                        ape.is_some()
                    );
                    let pieces = l.pieces();
                    let want = run_extras(None, &c, &c.k, &c.v, &mask, pieces, ape, scores_only);
                    for (level, one, two) in backends() {
                        let what = format!("{what} [{level}]");
                        let a =
                            run_extras(Some(&one), &c, &c.k, &c.v, &mask, pieces, ape, scores_only);
                        let b =
                            run_extras(Some(&two), &c, &c.k, &c.v, &mask, pieces, ape, scores_only);
                        if scores_only {
                            assert!(a.out.iter().all(|x| x.is_nan()), "{what}: out written");
                        } else {
                            assert_nmse(&a.out, &want.out, 1e-9, &format!("{what} out"));
                        }
                        assert_abs(&a.scores, &want.scores, 2e-5, &format!("{what} scores"));
                        assert_abs(&a.entropy, &want.entropy, 2e-4, &format!("{what} entropy"));
                        assert_nmse(&a.abs, &want.abs, 1e-11, &format!("{what} mean |logit|"));
                        for (x, y, n) in [
                            (&a.out, &b.out, "out"),
                            (&a.scores, &b.scores, "scores"),
                            (&a.entropy, &b.entropy, "entropy"),
                            (&a.abs, &b.abs, "abs"),
                        ] {
                            let (x, y): (Vec<f32>, Vec<f32>) = if scores_only && n == "out" {
                                (vec![], vec![])
                            } else {
                                (x.clone(), y.clone())
                            };
                            assert_bits_eq(&x, &y, &format!("{what} {n} 1 vs 2 threads"));
                        }
                    }
                }
            }
        }
    }
}

/// On values exactly representable in f16, f32-KV attention is the f16 kernel of the same
/// level bit for bit in every extra (scores, entropy, mean |logit|), and its output equals
/// the f16 kernel's up to the f16 rounding of the probabilities (`reference::ggml_f16`):
/// plain (causal and ranges) and every extras variant.
#[test]
fn f32_kv_equals_f16_kv_on_representable_values() {
    let mut rng = Rng(43);
    let ape = ApeParams { temperature: 0.8, scale: 0.95 };
    for p in geometries() {
        for (n_q, n_cells) in [(1, 1), (3, 65), (33, 200), (7, 301)] {
            let c = Case::representable(&mut rng, p, n_q, n_cells);
            let (k16, v16) = (Case::f16(&c.k), Case::f16(&c.v));
            let (offsets, ranges) = random_ranges(&mut rng, n_q, n_cells);
            let masks = [
                AttnMask::Causal { n_past: n_cells - n_q },
                AttnMask::Ranges { offsets: &offsets, ranges: &ranges },
            ];
            let pieces: Vec<Range<usize>> =
                (0..n_cells).step_by(40).map(|s| s..(s + 30).min(n_cells)).collect();
            for (level, one, _) in backends() {
                for (mi, mask) in masks.iter().enumerate() {
                    let what = format!(
                        "{}/{} hd {} n_q {n_q} n_cells {n_cells} mask {mi} [{level}]",
                        p.n_head, p.n_head_kv, p.head_dim
                    );
                    let (mut a, mut b) = (vec![0.0; c.q.len()], vec![0.0; c.q.len()]);
                    one.attention(&c.q, &c.k, &c.v, &p, mask, &mut a).unwrap();
                    one.attention(&c.q, &k16, &v16, &p, mask, &mut b).unwrap();
                    // Over f16 the probabilities are rounded to f16 as ggml does
                    // (`reference::ggml_f16`): equal up to that rounding.
                    assert_nmse(&b, &a, 1e-6, &format!("{what} plain f32 vs f16"));
                    for (ape, so) in
                        [(None, false), (Some(ape), false), (None, true), (Some(ape), true)]
                    {
                        let x = run_extras(Some(&one), &c, &c.k, &c.v, mask, &pieces, ape, so);
                        let y = run_extras(Some(&one), &c, &k16, &v16, mask, &pieces, ape, so);
                        let what = format!("{what} ape {} scores_only {so}", ape.is_some());
                        if !so {
                            assert_nmse(&y.out, &x.out, 1e-6, &format!("{what} out"));
                        }
                        assert_bits_eq(&x.scores, &y.scores, &format!("{what} scores"));
                        assert_bits_eq(&x.entropy, &y.entropy, &format!("{what} entropy"));
                        assert_bits_eq(&x.abs, &y.abs, &format!("{what} abs"));
                    }
                }
            }
        }
    }
}

#[test]
fn kv_store_f32_copies_exactly_and_checks_bounds() {
    let mut rng = Rng(47);
    let row_len = 3 * 64;
    let src = rng.vec(2 * row_len, 3.0);
    for (level, one, _) in backends() {
        let mut cache = vec![f32::NAN; 8 * row_len];
        one.kv_store(&mut cache, 3, row_len, &src).unwrap();
        assert_bits_eq(&cache[3 * row_len..5 * row_len], &src, &format!("kv_store [{level}]"));
        assert!(cache[..3 * row_len].iter().chain(&cache[5 * row_len..]).all(|x| x.is_nan()));
        let mut want = vec![f32::NAN; 8 * row_len];
        reference::kv_store(&mut want, 3, row_len, &src).unwrap();
        assert_bits_eq(&cache[3 * row_len..5 * row_len], &want[3 * row_len..5 * row_len], "ref");
        assert!(one.kv_store(&mut cache, 7, row_len, &src).is_err(), "past the end");
        assert!(one.kv_store(&mut cache, 0, row_len, &src[1..]).is_err(), "partial row");
    }
}

#[test]
fn backend_f32_buffers_store_read_write_and_reject_mixed_types() {
    let cpu = Cpu::new(CpuConfig { level: None, threads: 1 }).unwrap();
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let row_len = p.n_head_kv * p.head_dim;
    let n_cells = 10;
    let mut rng = Rng(53);
    let rows = rng.vec(n_cells * row_len, 1.0);
    let mut k = cpu.alloc_kv(KvType::F32, n_cells * row_len).unwrap();
    let mut v = cpu.alloc_kv(KvType::F32, n_cells * row_len).unwrap();
    assert_eq!((cpu.kv_type(&k), k.len()), (KvType::F32, n_cells * row_len));
    Backend::kv_store(&cpu, &mut k, 0, row_len, &rows, n_cells).unwrap();
    Backend::kv_store(&cpu, &mut v, 0, row_len, &rows, n_cells).unwrap();
    assert_eq!(k, KvBuf::F32(rows.clone()));
    // Read cells 2..5 as little-endian f32 bytes, write them to cells 6..9 of a fresh buffer.
    let mut bytes = vec![0u8; 3 * row_len * 4];
    cpu.kv_read(&k, 2 * row_len, &mut bytes).unwrap();
    let want: Vec<u8> =
        rows[2 * row_len..5 * row_len].iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(bytes, want);
    let mut w = cpu.alloc_kv(KvType::F32, n_cells * row_len).unwrap();
    cpu.kv_write(&bytes, &mut w, 6 * row_len).unwrap();
    let KvBuf::F32(wv) = &w else { panic!("f32 buffer expected") };
    assert_bits_eq(&wv[6 * row_len..9 * row_len], &rows[2 * row_len..5 * row_len], "write");
    // Bad byte counts and ranges are errors.
    assert!(cpu.kv_read(&k, 0, &mut [0u8; 6]).is_err(), "not whole f32 elements");
    assert!(cpu.kv_read(&k, 9 * row_len, &mut bytes).is_err(), "past the end");
    assert!(cpu.kv_write(&bytes, &mut w, 8 * row_len).is_err(), "past the end");
    // Backend attention over f32 buffers = Cpu::attention over the slices.
    let q = rng.vec(2 * p.n_head * p.head_dim, 1.0);
    let mask = AttnMask::Causal { n_past: n_cells - 2 };
    let (mut a, mut b) = (vec![0.0; q.len()], vec![0.0; q.len()]);
    Backend::attention(&cpu, &q, 2, &k, &v, n_cells, &p, &mask, &mut a).unwrap();
    cpu.attention(&q, &rows, &rows, &p, &mask, &mut b).unwrap();
    assert_bits_eq(&a, &b, "backend f32 attention");
    // K f32 with V f16: a clear error, not a misread.
    let v16 = cpu.alloc_kv(KvType::F16, n_cells * row_len).unwrap();
    let err = Backend::attention(&cpu, &q, 2, &k, &v16, n_cells, &p, &mask, &mut a).unwrap_err();
    assert!(err.to_string().contains("k is f32, v is f16"), "{err}");
}
