//! Conformance of the attention kernel's optional outputs (group scores, entropy, mean
//! |logit|) and of the parallel-encoding identities, at every CPU level this machine has,
//! against the materialised-probability reference `weft::ops::reference::attention_extras`.
//!
//! Identities: group scores = reference top-5 probability sums; fused entropy = -sum p ln p
//! of materialised probabilities; omitting dropped pieces' ranges = softmax over the kept
//! keys (zero-then-renormalise); K >= P = no selection; P = 1 = ordinary causal attention;
//! pieces encoded separately = one block-diagonal pass; 1 vs 2 threads bit-identical; with
//! no extras requested the extras entry point is plain attention, bit for bit.

// One-range masks are ordinary inputs here, not a mistaken `vec![a..b]`.
#![allow(clippy::single_range_in_vec_init)]

use half::f16;
use std::ops::Range;
use weft::layout::{Layout, LayoutConfig, MaskRanges, Request};
use weft::ops::{reference, ApeParams, AttnExtras, AttnMask, AttnParams};
use weft::selection::{select_pieces, Pooling};
use weft_cpu::{Cpu, CpuConfig, CpuLevel};
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

/// Outputs of one attention call with every extra requested.
#[derive(Clone, Debug, PartialEq)]
struct Outputs {
    out: Vec<f32>,
    scores: Vec<f32>,
    entropy: Vec<f32>,
    abs: Vec<f32>,
}

struct Case {
    p: AttnParams,
    q: Vec<f32>,
    k: Vec<f16>,
    v: Vec<f16>,
    n_q: usize,
}

impl Case {
    fn new(rng: &mut Rng, p: AttnParams, n_q: usize, n_cells: usize, q_scale: f32) -> Case {
        Case {
            p,
            q: rng.vec(n_q * p.n_head * p.head_dim, q_scale),
            k: rng.vec_f16(n_cells * p.n_head_kv * p.head_dim, 1.0),
            v: rng.vec_f16(n_cells * p.n_head_kv * p.head_dim, 1.0),
            n_q,
        }
    }

    fn run(&self, cpu: Option<&Cpu>, mask: &AttnMask<'_>, pieces: &[Range<usize>]) -> Outputs {
        self.run_opts(cpu, mask, pieces, None, false)
    }

    /// `run` with APE over the pieces and/or the scoring-only mode (`out` starts as NaN:
    /// scoring must leave it untouched).
    fn run_opts(
        &self,
        cpu: Option<&Cpu>,
        mask: &AttnMask<'_>,
        pieces: &[Range<usize>],
        ape: Option<ApeParams>,
        scores_only: bool,
    ) -> Outputs {
        let rows = self.n_q * self.p.n_head;
        let mut o = Outputs {
            out: vec![if scores_only { f32::NAN } else { 0.0 }; rows * self.p.head_dim],
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
        let (q, k, v, p) = (&self.q, &self.k, &self.v, &self.p);
        match cpu {
            Some(cpu) => cpu.attention_ext(q, k, v, p, mask, &mut ex, &mut o.out).unwrap(),
            None => reference::attention_extras(q, k, v, p, mask, &mut ex, &mut o.out).unwrap(),
        }
        o
    }

    /// Every level, 1 and 2 threads, against the reference; plain attention bit-identical.
    fn check(&self, mask: &AttnMask<'_>, pieces: &[Range<usize>], what: &str) {
        let want = self.run(None, mask, pieces);
        for (level, one, two) in backends() {
            let what = format!("{what} [{level:?}]");
            let a = self.run(Some(&one), mask, pieces);
            let b = self.run(Some(&two), mask, pieces);
            // f16 cache: probabilities are rounded to f16 (ggml's precision); the kernel's and
            // the reference's may round a value near a boundary differently.
            assert_nmse(&a.out, &want.out, 1e-7, &format!("{what} out"));
            assert_abs(&a.scores, &want.scores, 2e-5, &format!("{what} scores"));
            assert_abs(&a.entropy, &want.entropy, 2e-4, &format!("{what} entropy"));
            assert_nmse(&a.abs, &want.abs, 1e-11, &format!("{what} mean |logit|"));
            for (x, y, n) in [
                (&a.out, &b.out, "out"),
                (&a.scores, &b.scores, "scores"),
                (&a.entropy, &b.entropy, "entropy"),
                (&a.abs, &b.abs, "abs"),
            ] {
                assert_bits_eq(x, y, &format!("{what} {n} 1 vs 2 threads"));
            }
            let mut plain = vec![0.0; a.out.len()];
            one.attention(&self.q, &self.k, &self.v, &self.p, mask, &mut plain).unwrap();
            assert_bits_eq(&a.out, &plain, &format!("{what} extras vs plain out"));
        }
    }
}

fn geometries() -> Vec<AttnParams> {
    vec![
        AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 },
        AttnParams { n_head: 14, n_head_kv: 2, head_dim: 64, scale: 0.125 },
        AttnParams { n_head: 3, n_head_kv: 1, head_dim: 40, scale: 0.3 },
        AttnParams { n_head: 2, n_head_kv: 2, head_dim: 7, scale: 0.5 },
    ]
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
fn extras_match_reference_on_query_masks() {
    let mut rng = Rng(7);
    // Pieces shorter than 5, straddling 64-key blocks, several per block, and long.
    let shapes: [(usize, &[usize], usize); 5] = [
        (0, &[3], 2),
        (4, &[3, 5], 3),
        (7, &[70, 2, 61, 130], 5),
        (0, &[1, 1, 9, 64, 65], 1),
        (13, &[200, 3, 97], 33),
    ];
    for p in geometries() {
        for (sink, lens, n_query) in shapes {
            let l = layout(sink, lens, n_query);
            let c = Case::new(&mut rng, p, n_query, l.n_cells(), 1.5);
            let what = format!(
                "{}/{} hd {} sink {sink} pieces {lens:?}",
                p.n_head, p.n_head_kv, p.head_dim
            );
            let m = l.attn_mask_for_query(None).unwrap();
            c.check(&m.as_mask(), l.pieces(), &what);
            // With a piece dropped: its scores are 0, the rest renormalise.
            let keep: Vec<bool> =
                (0..l.n_pieces()).map(|i| i % 2 == 1 || lens.len() == 1).collect();
            let m = l.attn_mask_for_query(Some(&keep)).unwrap();
            c.check(&m.as_mask(), l.pieces(), &format!("{what} keep {keep:?}"));
        }
    }
}

#[test]
fn extras_match_reference_on_causal_and_piece_masks() {
    let mut rng = Rng(11);
    let l = layout(5, &[40, 77, 6], 4);
    for p in geometries() {
        // Causal over everything, scores for every piece (rows see parts of pieces).
        let n_cells = l.n_cells();
        let c = Case::new(&mut rng, p, 9, n_cells, 2.0);
        c.check(&AttnMask::Causal { n_past: n_cells - 9 }, l.pieces(), "causal tail");
        // Piece 1 encoded as a batch: scores of the other pieces are 0.
        let m = l.attn_mask_for_piece(1);
        let c = Case::new(&mut rng, p, m.n_rows(), n_cells, 2.0);
        c.check(&m.as_mask(), l.pieces(), "piece 1 batch");
        let out = c.run(Some(&backends()[0].1), &m.as_mask(), l.pieces());
        for (i, s) in out.scores.chunks(3).enumerate() {
            assert!(s[0] == 0.0 && s[2] == 0.0 && s[1] > 0.0, "item {i}: {s:?}");
        }
    }
}

#[test]
fn hand_example_uniform_attention() {
    // q = 0: every visible key has probability 1/n. 20 visible keys in pieces of 3, 8 and
    // 9 keys; entropy ln 20; scores 3/20, 5/20, 5/20; mean |logit| 0.
    let p = AttnParams { n_head: 1, n_head_kv: 1, head_dim: 8, scale: 1.0 };
    let mut rng = Rng(3);
    let mut c = Case::new(&mut rng, p, 1, 20, 1.0);
    c.q.fill(0.0);
    let pieces = [0..3, 3..11, 11..20];
    for (level, one, _) in backends() {
        let o = c.run(Some(&one), &AttnMask::Causal { n_past: 19 }, &pieces);
        assert_abs(&o.scores, &[0.15, 0.25, 0.25], 1e-6, &format!("{level:?} scores"));
        assert_abs(&o.entropy, &[20f32.ln()], 1e-5, &format!("{level:?} entropy"));
        assert_eq!(o.abs, [0.0]);
    }
}

/// Output of one query row when the dropped pieces' probabilities are zeroed and the rest
/// renormalised, from materialised f64 probabilities over the full query mask.
fn zero_then_renormalise(c: &Case, full: &MaskRanges, dropped: &[Range<usize>]) -> Vec<f32> {
    let p = &c.p;
    let (hd, kv_row) = (p.head_dim, p.n_head_kv * p.head_dim);
    let mut out = vec![0f32; c.q.len()];
    for i in 0..c.n_q {
        for h in 0..p.n_head {
            let qh = &c.q[(i * p.n_head + h) * hd..][..hd];
            let kvo = p.kv_head(h) * hd;
            let cells: Vec<usize> = full.as_mask().row(i).iter().flat_map(|r| r.clone()).collect();
            let logits: Vec<f64> = cells
                .iter()
                .map(|&cell| {
                    let kc = &c.k[cell * kv_row + kvo..][..hd];
                    qh.iter().zip(kc).map(|(&a, &b)| a as f64 * b.to_f64()).sum::<f64>()
                        * p.scale as f64
                })
                .collect();
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut prob: Vec<f64> = logits.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = prob.iter().sum();
            prob.iter_mut().for_each(|x| *x /= total);
            for (x, cell) in prob.iter_mut().zip(&cells) {
                if dropped.iter().any(|r| r.contains(cell)) {
                    *x = 0.0;
                }
            }
            let kept: f64 = prob.iter().sum();
            for d in 0..hd {
                let acc: f64 = prob
                    .iter()
                    .zip(&cells)
                    .map(|(x, &cell)| x * c.v[cell * kv_row + kvo + d].to_f64())
                    .sum();
                out[(i * p.n_head + h) * hd + d] = (acc / kept) as f32;
            }
        }
    }
    out
}

#[test]
fn dropping_pieces_equals_softmax_over_kept_keys() {
    let mut rng = Rng(5);
    let l = layout(6, &[30, 70, 4, 50], 7);
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let c = Case::new(&mut rng, p, 7, l.n_cells(), 3.0);
    let full = l.attn_mask_for_query(None).unwrap();
    // The host's selection from the kernel's own group scores (pooled over heads + tokens).
    let cpu = &backends()[0].1;
    let scores = c.run(Some(cpu), &full.as_mask(), l.pieces()).scores;
    let sets = select_pieces(&scores, 7, 9, 4, Pooling::HeadsTokens, 2).unwrap();
    let keep = sets.get(0, 0).to_vec();
    assert_eq!(keep.iter().filter(|&&k| k).count(), 2);
    let dropped: Vec<Range<usize>> = (0..4).filter(|&m| !keep[m]).map(|m| l.piece(m)).collect();
    let want = zero_then_renormalise(&c, &full, &dropped);
    let kept = l.attn_mask_for_query(Some(&keep)).unwrap();
    for (level, one, _) in backends() {
        let got = c.run(Some(&one), &kept.as_mask(), l.pieces());
        // `want` has unrounded probabilities; the f16 cache rounds them (ggml's precision).
        assert_nmse(&got.out, &want, 1e-6, &format!("{level:?} kept-keys softmax"));
        // Dropped pieces get no probability mass.
        for s in got.scores.chunks(4) {
            for m in 0..4 {
                assert!(keep[m] || s[m] == 0.0);
            }
        }
    }
}

#[test]
fn per_head_selection_matches_reference() {
    // Selection without pooling over heads keeps different pieces per head: an
    // AttnMask::HeadRanges mask; each head equals the reference over its own kept pieces.
    let mut rng = Rng(23);
    let l = layout(5, &[17, 66, 3, 40, 9], 6);
    for p in geometries() {
        let c = Case::new(&mut rng, p, 6, l.n_cells(), 2.5);
        let full = l.attn_mask_for_query(None).unwrap();
        let cpu = &backends()[0].1;
        let scores = c.run(Some(cpu), &full.as_mask(), l.pieces()).scores;
        for pooling in [Pooling::None, Pooling::Tokens, Pooling::Heads] {
            let sets = select_pieces(&scores, 6, p.n_head, 5, pooling, 2).unwrap();
            let m = l.attn_mask_for_keep_sets(l.query().start, 6, &sets).unwrap();
            assert_eq!(m.n_head.is_some(), pooling != Pooling::Heads);
            let what = format!("{}/{} {pooling}", p.n_head, p.n_head_kv);
            c.check(&m.as_mask(), l.pieces(), &what);
            // Head h of token t matches a per-row run with that head's keep set.
            let got = c.run(Some(cpu), &m.as_mask(), l.pieces());
            let (t, h) = (5, p.n_head - 1);
            let one = l.attn_mask_for_query(Some(sets.get(t, h))).unwrap();
            let alone = c.run(Some(cpu), &one.as_mask(), l.pieces());
            let hd = p.head_dim;
            let at = (t * p.n_head + h) * hd;
            assert_bits_eq(&got.out[at..at + hd], &alone.out[at..at + hd], &what);
        }
    }
}

#[test]
fn k_at_least_p_equals_no_selection() {
    let mut rng = Rng(9);
    let l = layout(3, &[20, 9, 33], 4);
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let c = Case::new(&mut rng, p, 4, l.n_cells(), 2.0);
    let full = l.attn_mask_for_query(None).unwrap();
    let cpu = &backends()[0].1;
    let base = c.run(Some(cpu), &full.as_mask(), l.pieces());
    for (k, pooling) in [(3, Pooling::Heads), (5, Pooling::HeadsTokens), (0, Pooling::Heads)] {
        let sets = select_pieces(&base.scores, 4, 9, 3, pooling, k).unwrap();
        assert!(sets.keeps_all());
        for t in 0..4 {
            let m = l.attn_mask_for_rows(l.query().start + t, 1, Some(sets.get(t, 0))).unwrap();
            assert_eq!(m.ranges, full.ranges[full.offsets[t]..full.offsets[t + 1]]);
        }
        let m = l.attn_mask_for_query(Some(sets.get(0, 0))).unwrap();
        assert_eq!(m, full);
        assert_eq!(c.run(Some(cpu), &m.as_mask(), l.pieces()), base);
    }
}

#[test]
fn one_piece_equals_causal_attention() {
    let mut rng = Rng(13);
    let l = layout(5, &[90], 6);
    let p = AttnParams { n_head: 14, n_head_kv: 2, head_dim: 64, scale: 0.125 };
    for (level, one, _) in backends() {
        // Query rows.
        let c = Case::new(&mut rng, p, 6, l.n_cells(), 2.0);
        let m = l.attn_mask_for_query(None).unwrap();
        let causal = AttnMask::Causal { n_past: l.query().start };
        let (a, b) =
            (c.run(Some(&one), &m.as_mask(), l.pieces()), c.run(Some(&one), &causal, l.pieces()));
        assert_eq!(a, b, "{level:?} query");
        // Piece rows: causal from cell 0 over sink + piece.
        let c = Case::new(&mut rng, p, 90, l.n_cells(), 2.0);
        let m = l.attn_mask_for_piece(0);
        let causal = AttnMask::Causal { n_past: 5 };
        let k_len = 95 * p.n_head_kv * p.head_dim; // cells 0..95 are sink + piece
        let c95 = Case { k: c.k[..k_len].to_vec(), v: c.v[..k_len].to_vec(), ..c };
        let (a, b) = (
            c95.run(Some(&one), &m.as_mask(), l.pieces()),
            c95.run(Some(&one), &causal, l.pieces()),
        );
        assert_eq!(a, b, "{level:?} piece");
    }
}

#[test]
fn separate_pieces_equal_block_diagonal_pass() {
    let mut rng = Rng(17);
    let l = layout(4, &[11, 70, 5], 2);
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let n_rows: usize = (0..3).map(|m| l.piece(m).len()).sum();
    let all = Case::new(&mut rng, p, n_rows, l.n_cells(), 2.0);
    // One pass over every piece row with the block-diagonal mask (rows in cell order).
    let mut joint = MaskRanges { n_head: None, offsets: vec![0], ranges: vec![] };
    for m in 0..3 {
        let pm = l.attn_mask_for_piece(m);
        for i in 0..pm.n_rows() {
            joint.ranges.extend(pm.as_mask().row(i).iter().cloned());
            joint.offsets.push(joint.ranges.len());
        }
    }
    let row = p.n_head * p.head_dim;
    for (level, one, two) in backends() {
        let whole = all.run(Some(&two), &joint.as_mask(), l.pieces());
        let mut at = 0;
        for m in 0..3 {
            let pm = l.attn_mask_for_piece(m);
            let n = pm.n_rows();
            let c = Case { q: all.q[at * row..(at + n) * row].to_vec(), n_q: n, ..all_clone(&all) };
            let sep = c.run(Some(&one), &pm.as_mask(), l.pieces());
            assert_bits_eq(
                &sep.out,
                &whole.out[at * row..(at + n) * row],
                &format!("{level:?} piece {m}"),
            );
            at += n;
        }
    }
}

fn all_clone(c: &Case) -> Case {
    Case { p: c.p, q: c.q.clone(), k: c.k.clone(), v: c.v.clone(), n_q: c.n_q }
}

#[test]
fn no_extras_is_plain_attention_and_bad_extras_are_errors() {
    let mut rng = Rng(19);
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let c = Case::new(&mut rng, p, 3, 50, 1.0);
    let mask = AttnMask::Causal { n_past: 47 };
    for (level, one, _) in backends() {
        let (mut a, mut b) = (vec![0.0; c.q.len()], vec![0.0; c.q.len()]);
        one.attention(&c.q, &c.k, &c.v, &p, &mask, &mut a).unwrap();
        one.attention_ext(&c.q, &c.k, &c.v, &p, &mask, &mut AttnExtras::default(), &mut b).unwrap();
        assert_bits_eq(&a, &b, &format!("{level:?}"));
    }
    let cpu = &backends()[0].1;
    let mut out = vec![0.0; c.q.len()];
    let bad: [(&[Range<usize>], usize); 5] = [
        (&[0..10], 26),        // wrong score length
        (&[], 0),              // no pieces
        (&[5..5], 27),         // empty piece
        (&[0..10, 5..20], 54), // overlap
        (&[40..51], 27),       // past n_cells
    ];
    for (pieces, n) in bad {
        let mut scores = vec![0.0; n];
        let mut ex = AttnExtras { group_scores: Some((pieces, &mut scores)), ..Default::default() };
        assert!(cpu.attention_ext(&c.q, &c.k, &c.v, &p, &mask, &mut ex, &mut out).is_err());
        assert!(
            reference::attention_extras(&c.q, &c.k, &c.v, &p, &mask, &mut ex, &mut out).is_err()
        );
    }
    let mut ent = vec![0.0; 26];
    let mut ex = AttnExtras { entropy: Some(&mut ent), ..Default::default() };
    assert!(cpu.attention_ext(&c.q, &c.k, &c.v, &p, &mask, &mut ex, &mut out).is_err());
}

#[test]
fn ape_and_scoring_pass_match_reference() {
    let mut rng = Rng(23);
    let shapes: [(usize, &[usize], usize); 3] =
        [(4, &[3, 5], 3), (7, &[70, 2, 61, 130], 5), (0, &[1, 9, 65], 2)];
    let ape = ApeParams { temperature: 0.9, scale: 0.9 };
    for p in geometries() {
        for (sink, lens, n_query) in shapes {
            let l = layout(sink, lens, n_query);
            let c = Case::new(&mut rng, p, n_query, l.n_cells(), 1.5);
            let what = format!("{}/{} sink {sink} pieces {lens:?}", p.n_head, p.n_head_kv);
            let keep: Vec<bool> = (0..l.n_pieces()).map(|i| i != 1).collect();
            for m in
                [l.attn_mask_for_query(None).unwrap(), l.attn_mask_for_query(Some(&keep)).unwrap()]
            {
                let mask = m.as_mask();
                let want = c.run_opts(None, &mask, l.pieces(), Some(ape), false);
                let score_want = c.run(None, &mask, l.pieces());
                for (level, one, two) in backends() {
                    let what = format!("{what} [{level:?}] ranges {:?}", m.ranges);
                    let a = c.run_opts(Some(&one), &mask, l.pieces(), Some(ape), false);
                    let b = c.run_opts(Some(&two), &mask, l.pieces(), Some(ape), false);
                    assert_nmse(&a.out, &want.out, 1e-7, &format!("{what} ape out"));
                    assert_abs(&a.scores, &want.scores, 2e-5, &format!("{what} ape scores"));
                    assert_abs(&a.entropy, &want.entropy, 2e-4, &format!("{what} ape entropy"));
                    assert_nmse(&a.abs, &want.abs, 1e-11, &format!("{what} ape |logit|"));
                    assert_bits_eq(&a.out, &b.out, &format!("{what} ape 1 vs 2 threads"));
                    // Scoring pass: same scores as the full pass, output untouched.
                    let s = c.run_opts(Some(&one), &mask, l.pieces(), None, true);
                    let full = c.run(Some(&one), &mask, l.pieces());
                    assert_bits_eq(&s.scores, &full.scores, &format!("{what} scoring pass"));
                    assert_abs(&s.scores, &score_want.scores, 2e-5, &format!("{what} scores"));
                    assert!(s.out.iter().all(|v| v.is_nan()), "{what}: scoring wrote out");
                }
            }
        }
    }
    // T = S = 1 is plain attention (one softmax over both blocks), up to rounding.
    let l = layout(5, &[12, 30], 3);
    let p = geometries()[0];
    let c = Case::new(&mut rng, p, 3, l.n_cells(), 1.5);
    let m = l.attn_mask_for_query(None).unwrap();
    let unit = ApeParams { temperature: 1.0, scale: 1.0 };
    for (_, one, _) in backends() {
        let a = c.run_opts(Some(&one), &m.as_mask(), l.pieces(), Some(unit), false);
        let b = c.run(Some(&one), &m.as_mask(), l.pieces());
        // Each APE block rounds its own probabilities to f16: equal up to that rounding.
        assert_nmse(&a.out, &b.out, 1e-6, "ape T=S=1 out");
        assert_abs(&a.entropy, &b.entropy, 1e-4, "ape T=S=1 entropy");
        assert_abs(&a.scores, &b.scores, 1e-6, "ape T=S=1 scores");
    }
}
