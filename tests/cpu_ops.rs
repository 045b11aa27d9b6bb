//! Conformance of the CPU backend's non-matmul ops: every op at every level this machine has
//! (`CpuLevel::available()`), on the real odd shapes of the default models, against the scalar
//! reference in `weft::ops::reference` (normalised MSE bound + NaN/Inf checks); 1 vs 2 threads
//! bit-identical; malformed shapes and masks rejected with `Err`.

// One-range masks are ordinary inputs here, not a mistaken `vec![a..b]`.
#![allow(clippy::single_range_in_vec_init)]

use half::f16;
use std::ops::Range;
use weft::ops::{reference, AttnMask, AttnParams, RopeParams, RopeStyle};
use weft_cpu::{Cpu, CpuConfig, CpuLevel};
use weft_tests::Rng;

/// One single-threaded and one two-threaded backend per available level.
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

/// Fails unless `got` is finite and sum((got - want)^2) / sum(want^2) <= `bound`.
fn assert_close(got: &[f32], want: &[f32], bound: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().position(|v| !v.is_finite()) {
        panic!("{what}: got[{i}] = {} is not finite", got[i]);
    }
    let err: f64 = got.iter().zip(want).map(|(&g, &w)| (g as f64 - w as f64).powi(2)).sum();
    let norm: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum::<f64>().max(1e-30);
    let nmse = err / norm;
    assert!(nmse <= bound, "{what}: normalised MSE {nmse:e} > {bound:e}");
}

fn assert_bits_eq(a: &[f32], b: &[f32], what: &str) {
    let differ = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
    assert!(differ.is_none() && a.len() == b.len(), "{what}: 1 vs 2 threads differ at {differ:?}");
}

#[test]
fn rms_norm_matches_reference() {
    let mut rng = Rng(1);
    for n_embd in [576, 896, 37] {
        for n_rows in [1, 5, 33, 64] {
            let x = rng.vec(n_rows * n_embd, 2.0);
            let w = rng.vec(n_embd, 1.0);
            for eps in [1e-5, 1e-6] {
                let mut want = vec![0.0; x.len()];
                reference::rms_norm(&x, &w, eps, &mut want).unwrap();
                for (level, one, two) in backends() {
                    let what = format!("rms_norm {level} n_embd {n_embd} n_rows {n_rows}");
                    let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                    one.rms_norm(&x, &w, eps, &mut a).unwrap();
                    two.rms_norm(&x, &w, eps, &mut b).unwrap();
                    assert_close(&a, &want, 1e-11, &what);
                    assert_bits_eq(&a, &b, &what);
                }
            }
        }
    }
}

fn rope_cases() -> Vec<RopeParams> {
    let mut rng = Rng(2);
    let mut v = Vec::new();
    for style in [RopeStyle::Norm, RopeStyle::Neox] {
        for (n_rot, base, scale, ff) in [
            (64, 1e5, 1.0, false),
            (64, 1e6, 0.25, false),
            (64, 5e5, 1.0, true),
            (40, 1e4, 1.0, true),
        ] {
            let freq_factors =
                ff.then(|| (0..n_rot / 2).map(|_| 1.0 + 4.0 * (rng.uniform() + 1.0)).collect());
            v.push(RopeParams {
                style,
                head_dim: 64,
                n_rot,
                freq_base: base,
                freq_scale: scale,
                freq_factors,
            });
        }
    }
    v
}

#[test]
fn rope_matches_reference() {
    let mut rng = Rng(3);
    for p in rope_cases() {
        for n_head in [9, 3, 14, 2] {
            for n_tokens in [1, 5, 33, 70] {
                // Positions not starting at 0, with gaps and repeats (parallel pieces share them).
                let positions: Vec<i32> =
                    (0..n_tokens).map(|t| 17 + (t as i32 * 37) % 5000).collect();
                let x = rng.vec(n_tokens * n_head * 64, 1.0);
                let mut want = x.clone();
                reference::rope(&mut want, n_head, &positions, &p).unwrap();
                for (level, one, two) in backends() {
                    let what = format!(
                        "rope {level} {} n_rot {} n_head {n_head} n_tokens {n_tokens}",
                        p.style, p.n_rot
                    );
                    let (mut a, mut b) = (x.clone(), x.clone());
                    one.rope(&mut a, n_head, &positions, &p).unwrap();
                    two.rope(&mut b, n_head, &positions, &p).unwrap();
                    assert_close(&a, &want, 1e-12, &what);
                    assert_bits_eq(&a, &b, &what);
                    for (i, (&got, &orig)) in a.iter().zip(&x).enumerate() {
                        if i % 64 >= p.n_rot {
                            assert_eq!(
                                got.to_bits(),
                                orig.to_bits(),
                                "{what}: dim {} past n_rot changed",
                                i % 64
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn add_and_silu_mul_match_reference() {
    let mut rng = Rng(4);
    for n in [1, 7, 1536, 4864, 5 * 4864 + 3, 40_000] {
        let mut gate = rng.vec(n, 6.0);
        // The saturated ends of SiLU and the exp range limits.
        for (i, v) in [-100.0, 100.0, -88.5, 89.0, -87.5, 0.0, -0.0].into_iter().enumerate().take(n)
        {
            gate[i * (n / 7).max(1) % n] = v;
        }
        let up = rng.vec(n, 1.0);
        let mut want = gate.clone();
        reference::silu_mul(&mut want, &up).unwrap();
        let mut sum_want = gate.clone();
        reference::add(&mut sum_want, &up).unwrap();
        for (level, one, two) in backends() {
            let what = format!("silu_mul {level} n {n}");
            let (mut a, mut b) = (gate.clone(), gate.clone());
            one.silu_mul(&mut a, &up).unwrap();
            two.silu_mul(&mut b, &up).unwrap();
            assert_close(&a, &want, 1e-12, &what);
            assert_bits_eq(&a, &b, &what);
            let mut s = gate.clone();
            one.add(&mut s, &up).unwrap();
            assert_bits_eq(&s, &sum_want, &format!("add {level} n {n}"));
        }
    }
    // Bias broadcast: one row over 5 rows of 896.
    let mut a = rng.vec(5 * 896, 1.0);
    let bias = rng.vec(896, 1.0);
    let mut want = a.clone();
    reference::add(&mut want, &bias).unwrap();
    for (_, one, _) in backends() {
        let mut got = a.clone();
        one.add(&mut got, &bias).unwrap();
        assert_bits_eq(&got, &want, "add broadcast");
    }
    let cpu = Cpu::new(CpuConfig::default()).unwrap();
    assert!(cpu.add(&mut a, &bias[..895]).is_err());
    assert!(cpu.silu_mul(&mut a, &bias).is_err());
}

#[test]
fn softmax_matches_reference() {
    let mut rng = Rng(5);
    for n_cols in [1, 7, 64, 300, 49152] {
        for n_rows in [1, 3] {
            let mut x = rng.vec(n_rows * n_cols, 4.0);
            // Masked logits (-inf) and a large offset; the row max must still be subtracted.
            for (i, v) in x.iter_mut().enumerate() {
                if i % 5 == 3 {
                    *v = f32::NEG_INFINITY;
                } else if i % 11 == 2 {
                    *v += 500.0;
                }
            }
            let mut want = x.clone();
            reference::softmax_rows(&mut want, n_cols).unwrap();
            for (level, one, two) in backends() {
                let what = format!("softmax {level} n_cols {n_cols} n_rows {n_rows}");
                let (mut a, mut b) = (x.clone(), x.clone());
                one.softmax_rows(&mut a, n_cols).unwrap();
                two.softmax_rows(&mut b, n_cols).unwrap();
                assert_close(&a, &want, 1e-12, &what);
                assert_bits_eq(&a, &b, &what);
            }
        }
    }
}

#[test]
fn kv_store_is_bit_exact() {
    let mut rng = Rng(6);
    for row_len in [192, 128, 37] {
        // Magnitudes across f16's range: subnormals, normals, overflow to inf, and ties.
        let mut src: Vec<f32> =
            (0..5 * row_len).map(|i| rng.normal(1.0) * 10f32.powi(i as i32 % 13 - 8)).collect();
        src[0] = 1.0 + 1.0 / 2048.0; // tie between two f16 values: rounds to even
        src[1] = 70000.0; // past f16::MAX: inf
        let n_cells = 11;
        for (level, one, _) in backends() {
            let mut cache = vec![f16::from_f32(-7.0); n_cells * row_len];
            one.kv_store(&mut cache, 3, row_len, &src).unwrap();
            for (c, cell) in cache.chunks_exact(row_len).enumerate() {
                for (d, &h) in cell.iter().enumerate() {
                    let want = if (3..8).contains(&c) {
                        f16::from_f32(src[(c - 3) * row_len + d])
                    } else {
                        f16::from_f32(-7.0)
                    };
                    assert_eq!(
                        h.to_bits(),
                        want.to_bits(),
                        "kv_store {level} row_len {row_len} cell {c} dim {d}"
                    );
                }
            }
            assert!(one.kv_store(&mut cache, 7, row_len, &src).is_err(), "past the end");
            assert!(one.kv_store(&mut cache, 0, row_len, &src[1..]).is_err(), "partial row");
        }
    }
}

/// Runs attention at every level with 1 and 2 threads against the reference.
fn check_attention(
    p: &AttnParams,
    n_cells: usize,
    n_q: usize,
    mask: &AttnMask<'_>,
    seed: u64,
    what: &str,
) {
    let mut rng = Rng(seed);
    let q = rng.vec(n_q * p.n_head * p.head_dim, 1.0);
    let k = rng.vec_f16(n_cells * p.n_head_kv * p.head_dim, 1.0);
    let v = rng.vec_f16(n_cells * p.n_head_kv * p.head_dim, 1.0);
    let mut want = vec![0.0; q.len()];
    reference::attention(&q, &k, &v, p, mask, &mut want).unwrap();
    for (level, one, two) in backends() {
        let what = format!("{what} {level}");
        let (mut a, mut b) = (vec![f32::NAN; q.len()], vec![f32::NAN; q.len()]);
        one.attention(&q, &k, &v, p, mask, &mut a).unwrap();
        two.attention(&q, &k, &v, p, mask, &mut b).unwrap();
        // The f16 cache rounds the probabilities to f16 (`reference::ggml_f16`); a kernel and
        // the reference may round one near a boundary differently (2^-11 of that weight).
        assert_close(&a, &want, 1e-8, &what);
        assert_bits_eq(&a, &b, &what);
    }
}

const GEOMETRIES: [(usize, usize); 2] = [(9, 3), (14, 2)];

#[test]
fn attention_causal_matches_reference() {
    for (n_head, n_head_kv) in GEOMETRIES {
        for scale in [0.125, 1.0] {
            let p = AttnParams { n_head, n_head_kv, head_dim: 64, scale };
            for n_q in [1, 5, 33] {
                for n_cells in [1, 5, 7, 33, 63, 64, 65, 129, 300] {
                    if n_cells < n_q {
                        continue;
                    }
                    let mask = AttnMask::Causal { n_past: n_cells - n_q };
                    let what = format!("attention causal {n_head}/{n_head_kv} scale {scale} n_q {n_q} n_cells {n_cells}");
                    check_attention(&p, n_cells, n_q, &mask, (n_q * 1000 + n_cells) as u64, &what);
                }
            }
        }
    }
}

/// Long rows: past the sizes whose logits the two-pass (f16 cache) kernels keep on the
/// stack between passes (512 and 4096 keys), where they switch buffers or recompute.
#[test]
fn attention_long_rows_match_reference() {
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    for n_cells in [511, 513, 4095, 4097, 4500] {
        for n_q in [1, 2] {
            let mask = AttnMask::Causal { n_past: n_cells - n_q };
            let what = format!("attention long causal n_q {n_q} n_cells {n_cells}");
            check_attention(&p, n_cells, n_q, &mask, n_cells as u64, &what);
        }
    }
}

/// A parallel-encoding-like mask: every row sees a sink, some of `n_pieces` pieces (others
/// dropped), and a prefix of its own; ranges are sorted and disjoint with gaps between them.
fn random_ranges(rng: &mut Rng, n_q: usize, n_cells: usize) -> (Vec<usize>, Vec<Range<usize>>) {
    let mut offsets = vec![0];
    let mut ranges = Vec::new();
    for i in 0..n_q {
        let mut c = 0;
        let mut n = 0;
        while c < n_cells {
            let len = 1 + rng.below(90);
            let end = (c + len).min(n_cells);
            if rng.below(3) != 0 || (n == 0 && end == n_cells) {
                ranges.push(c..end);
                n += 1;
            }
            c = end + rng.below(40);
        }
        if n == 0 {
            ranges.push(i % n_cells..i % n_cells + 1);
        }
        offsets.push(ranges.len());
    }
    (offsets, ranges)
}

#[test]
fn attention_ranges_match_reference() {
    let mut rng = Rng(7);
    for (n_head, n_head_kv) in GEOMETRIES {
        let p = AttnParams { n_head, n_head_kv, head_dim: 64, scale: 0.125 };
        for n_q in [1, 5, 33] {
            for n_cells in [1, 17, 64, 130, 300] {
                let (offsets, ranges) = random_ranges(&mut rng, n_q, n_cells);
                let mask = AttnMask::Ranges { offsets: &offsets, ranges: &ranges };
                let what =
                    format!("attention ranges {n_head}/{n_head_kv} n_q {n_q} n_cells {n_cells}");
                check_attention(&p, n_cells, n_q, &mask, rng.next_u64(), &what);
            }
        }
    }
}

#[test]
fn attention_odd_head_dims() {
    for head_dim in [20, 40, 72, 128] {
        let p =
            AttnParams { n_head: 6, n_head_kv: 3, head_dim, scale: 1.0 / (head_dim as f32).sqrt() };
        for (n_q, n_cells) in [(1, 100), (5, 77)] {
            let mask = AttnMask::Causal { n_past: n_cells - n_q };
            check_attention(
                &p,
                n_cells,
                n_q,
                &mask,
                head_dim as u64,
                &format!("attention head_dim {head_dim}"),
            );
        }
    }
}

/// One range per row covering 0..=n_past+i is the causal mask: identical bits.
#[test]
fn attention_causal_equals_single_range() {
    let mut rng = Rng(8);
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let (n_q, n_cells) = (33, 200);
    let q = rng.vec(n_q * 9 * 64, 1.0);
    let k = rng.vec_f16(n_cells * 3 * 64, 1.0);
    let v = rng.vec_f16(n_cells * 3 * 64, 1.0);
    let n_past = n_cells - n_q;
    let offsets: Vec<usize> = (0..=n_q).collect();
    let ranges: Vec<Range<usize>> = (0..n_q).map(|i| 0..n_past + i + 1).collect();
    for (level, one, _) in backends() {
        let (mut a, mut b) = (vec![0.0; q.len()], vec![0.0; q.len()]);
        one.attention(&q, &k, &v, &p, &AttnMask::Causal { n_past }, &mut a).unwrap();
        one.attention(
            &q,
            &k,
            &v,
            &p,
            &AttnMask::Ranges { offsets: &offsets, ranges: &ranges },
            &mut b,
        )
        .unwrap();
        assert_bits_eq(&a, &b, &format!("causal vs ranges {level}"));
    }
}

/// Cells outside the mask (dropped pieces) are never read: NaN there changes nothing.
#[test]
fn attention_never_reads_masked_cells() {
    let mut rng = Rng(9);
    let p = AttnParams { n_head: 14, n_head_kv: 2, head_dim: 64, scale: 0.125 };
    let (n_q, n_cells) = (5, 150);
    let q = rng.vec(n_q * 14 * 64, 1.0);
    let mut k = rng.vec_f16(n_cells * 2 * 64, 1.0);
    let mut v = rng.vec_f16(n_cells * 2 * 64, 1.0);
    let offsets = [0, 2, 4, 5, 7, 9];
    let ranges = [0..4, 40..70, 0..4, 100..101, 0..150, 0..4, 70..100, 0..4, 130..150];
    let mask = AttnMask::Ranges { offsets: &offsets, ranges: &ranges };
    let mut want = vec![0.0; q.len()];
    reference::attention(&q, &k, &v, &p, &mask, &mut want).unwrap();
    // Row 2 sees every cell; poison K and V of the cells no other row sees: rows != 2 must
    // not change.
    let seen_by_others =
        |c: usize| (0..n_q).filter(|&i| i != 2).any(|i| mask.row(i).iter().any(|r| r.contains(&c)));
    for c in (0..n_cells).filter(|&c| !seen_by_others(c)) {
        for d in 0..2 * 64 {
            k[c * 128 + d] = f16::NAN;
            v[c * 128 + d] = f16::NAN;
        }
    }
    for (level, one, _) in backends() {
        let mut got = vec![0.0; q.len()];
        one.attention(&q, &k, &v, &p, &mask, &mut got).unwrap();
        for i in (0..n_q).filter(|&i| i != 2) {
            let row = i * 14 * 64..(i + 1) * 14 * 64;
            assert_close(
                &got[row.clone()],
                &want[row],
                1e-8,
                &format!("masked cells {level} row {i}"),
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let cpu = Cpu::new(CpuConfig { level: None, threads: 1 }).unwrap();
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125 };
    let (n_q, n_cells) = (2, 10);
    let q = vec![0.0; n_q * 9 * 64];
    let kv = vec![f16::ZERO; n_cells * 3 * 64];
    let mut out = vec![0.0; q.len()];
    let ok = AttnMask::Causal { n_past: 8 };
    assert!(cpu.attention(&q, &kv, &kv, &p, &ok, &mut out).is_ok());
    assert!(cpu.attention(&q, &kv, &kv, &p, &AttnMask::Causal { n_past: 9 }, &mut out).is_err());
    assert!(cpu.attention(&q[1..], &kv, &kv, &p, &ok, &mut out[1..]).is_err());
    assert!(cpu.attention(&q, &kv[64..], &kv[64..], &p, &ok, &mut out).is_err());
    assert!(cpu.attention(&q, &kv, &kv[192..], &p, &ok, &mut out).is_err());
    assert!(cpu.attention(&q, &kv, &kv, &p, &ok, &mut out[64..]).is_err());
    assert!(cpu.attention(&q, &kv, &kv, &AttnParams { n_head_kv: 2, ..p }, &ok, &mut out).is_err());
    let bad_masks: [(&[usize], &[Range<usize>]); 5] = [
        (&[0, 1, 2], &[0..5, 3..11]),      // past n_cells
        (&[0, 1], &[0..5]),                // offsets for one row, two rows
        (&[0, 2, 3], &[5..8, 0..2, 0..1]), // unsorted
        (&[0, 1, 1], &[0..5]),             // row 1 sees nothing
        (&[0, 1, 3], &[0..5, 1..1]),       // offsets past the ranges
    ];
    for (offsets, ranges) in bad_masks {
        let m = AttnMask::Ranges { offsets, ranges };
        assert!(cpu.attention(&q, &kv, &kv, &p, &m, &mut out).is_err(), "{offsets:?} {ranges:?}");
    }
    let rp = RopeParams {
        style: RopeStyle::Norm,
        head_dim: 64,
        n_rot: 64,
        freq_base: 1e4,
        freq_scale: 1.0,
        freq_factors: None,
    };
    let mut x = vec![0.0; 2 * 9 * 64];
    assert!(cpu.rope(&mut x, 9, &[0, 1], &rp).is_ok());
    assert!(cpu.rope(&mut x, 9, &[0], &rp).is_err());
    assert!(cpu.rope(&mut x, 9, &[0, 1], &RopeParams { n_rot: 66, ..rp.clone() }).is_err());
    assert!(cpu
        .rope(&mut x, 9, &[0, 1], &RopeParams { freq_factors: Some(vec![1.0; 3]), ..rp })
        .is_err());
    let w = vec![1.0; 576];
    assert!(cpu.rms_norm(&x[..576 * 2], &w, 1e-5, &mut vec![0.0; 576]).is_err());
    assert!(cpu.rms_norm(&x[..577], &w, 1e-5, &mut vec![0.0; 577]).is_err());
    assert!(cpu.rms_norm(&x[..576], &w, f32::NAN, &mut vec![0.0; 576]).is_err());
    assert!(cpu.softmax_rows(&mut x[..10], 3).is_err());
    assert!(cpu.softmax_rows(&mut x[..10], 0).is_err());
}

#[test]
fn get_rows_matches_reference() {
    use weft::quant::{can_quantize, dequantize_row, quantize_row};
    use weft::GgmlType;
    use weft_cpu::matmul::WeightRef;
    let mut rng = Rng(10);
    let types = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    for t in types {
        assert!(can_quantize(t), "{t:?}");
        for cols in [576, 896, 512] {
            if cols % t.block_size() != 0 {
                continue;
            }
            let rows = 13;
            let row_bytes = t.row_size(cols as u64).unwrap() as usize;
            let mut data = vec![0u8; rows * row_bytes];
            for r in data.chunks_exact_mut(row_bytes) {
                quantize_row(t, &rng.vec(cols, 1.0), r).unwrap();
            }
            let w = WeightRef { ggml_type: t, rows, cols, data: &data };
            let ids = [12u32, 0, 5, 5, 7];
            let mut want = vec![0.0; ids.len() * cols];
            for (&id, dst) in ids.iter().zip(want.chunks_exact_mut(cols)) {
                dequantize_row(t, &data[id as usize * row_bytes..][..row_bytes], dst).unwrap();
            }
            for (level, one, _) in backends() {
                let mut got = vec![f32::NAN; want.len()];
                one.get_rows(&w, &ids, &mut got).unwrap();
                assert_bits_eq(&got, &want, &format!("get_rows {level} {t:?} cols {cols}"));
                let mut out = vec![0.0; cols];
                assert!(one.get_rows(&w, &[13], &mut out).is_err(), "id out of range");
                assert!(one.get_rows(&w, &[u32::MAX], &mut out).is_err(), "id out of range");
                assert!(one.get_rows(&w, &[1, 2], &mut out).is_err(), "out too short");
                let short = WeightRef { data: &data[1..], ..w };
                assert!(one.get_rows(&short, &[1], &mut out).is_err(), "data length");
                let unsupported = WeightRef { ggml_type: GgmlType::IQ2_XXS, ..w };
                assert!(one.get_rows(&unsupported, &[1], &mut out).is_err(), "IQ2_XXS");
            }
        }
    }
}
