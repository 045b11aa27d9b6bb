//! Conformance of `Cpu::matmul` against the runtime's scalar reference: every supported
//! weight type x every CPU level this machine has x real, odd shapes of the default models.
//!
//! Two references per output: (a) the dequantized weight row times the f32 activations,
//! summed in f64 (the mathematical result; activation quantization error remains), and
//! (b) the reference `vec_dot` on the reference-quantized activations (what the kernels must
//! reproduce up to f32 summation order). Also: NaN/Inf checks, 1 vs 2 threads
//! bit-identical, one scratch reused across shapes, and bad shapes returning `Err`.

use weft::quant::{dequantize_row, quantize_row, vec_dot, vec_dot_type};
use weft::GgmlType;
use weft_cpu::{Cpu, CpuConfig, CpuLevel, MatmulScratch, WeightRef};
use weft_tests::Rng;

fn f16_bytes(v: f32) -> [u8; 2] {
    weft::quant::f32_to_f16(v).to_le_bytes()
}

/// A random weight matrix of type `t` as GGUF bytes: float and 32-wide types via the
/// reference quantizer, K-quants as random valid blocks with small f16 scales.
fn random_weights(t: GgmlType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = t.row_size(cols as u64).unwrap() as usize;
    let mut out = vec![0u8; rows * rb];
    let kquant = matches!(
        t,
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K
    );
    if !kquant {
        let mut src = vec![0f32; cols];
        for row in out.chunks_exact_mut(rb) {
            // Varying magnitudes and a per-row offset exercise scales and mins.
            let (amp, off) = (0.5 + rng.uniform().abs() * 2.0, rng.uniform() * 0.3);
            for v in src.iter_mut() {
                *v = rng.uniform() * amp + off;
            }
            quantize_row(t, &src, row).unwrap();
        }
        return out;
    }
    for b in out.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    let bsz = t.type_size();
    for blk in out.chunks_exact_mut(bsz) {
        let (d, dmin) = (
            f16_bytes(0.002 + 0.01 * rng.uniform().abs()),
            f16_bytes(0.001 + 0.01 * rng.uniform().abs()),
        );
        match t {
            GgmlType::Q2_K => {
                blk[80..82].copy_from_slice(&d);
                blk[82..84].copy_from_slice(&dmin);
            }
            GgmlType::Q3_K => blk[108..110].copy_from_slice(&d),
            GgmlType::Q4_K | GgmlType::Q5_K => {
                blk[0..2].copy_from_slice(&d);
                blk[2..4].copy_from_slice(&dmin);
            }
            GgmlType::Q6_K => blk[208..210].copy_from_slice(&d),
            _ => unreachable!(),
        }
    }
    out
}

/// Column counts per type family: the default models' real widths (K-quants need 256 | cols).
fn cols_for(t: GgmlType) -> [usize; 4] {
    match t {
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            [256, 1536, 4864, 768]
        }
        _ => [576, 896, 1536, 4864],
    }
}

/// (rows, cols index, m): odd row counts, every m of the brief.
const SHAPES: [(usize, usize, usize); 7] =
    [(151, 0, 1), (192, 1, 3), (128, 2, 17), (576, 0, 64), (151, 3, 1), (128, 1, 64), (192, 3, 3)];

const TYPES: [GgmlType; 13] = [
    GgmlType::Q8_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::Q4_0,
    GgmlType::Q5_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q5_K,
    GgmlType::BF16,
];

fn nmse(got: &[f32], want: &[f64]) -> f64 {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&g, &w) in got.iter().zip(want) {
        err += (g as f64 - w) * (g as f64 - w);
        norm += w * w;
    }
    err / norm.max(1e-30)
}

struct Case {
    t: GgmlType,
    rows: usize,
    cols: usize,
    m: usize,
    w: Vec<u8>,
    x: Vec<f32>,
    /// (a) f64 [m, rows]
    exact: Vec<f64>,
    /// (b) f64 [m, rows]
    refdot: Vec<f64>,
}

fn make_case(t: GgmlType, rows: usize, cols: usize, m: usize, rng: &mut Rng) -> Case {
    let w = random_weights(t, rows, cols, rng);
    let mut x: Vec<f32> = (0..m * cols).map(|_| rng.uniform()).collect();
    if m > 2 {
        // One all-zero activation row: zero scales must give zeros, not NaN.
        x[cols..2 * cols].fill(0.0);
    }
    let rb = w.len() / rows;
    let mut wf = vec![0f32; rows * cols];
    for (r, row) in w.chunks_exact(rb).enumerate() {
        dequantize_row(t, row, &mut wf[r * cols..(r + 1) * cols]).unwrap();
    }
    let dt = vec_dot_type(t).unwrap();
    // Float weights keep f32 activations in weft: reference (b) is then the f32 dot.
    let act_t = if t.is_quantized() { dt } else { GgmlType::F32 };
    let ab = act_t.row_size(cols as u64).unwrap() as usize;
    let mut exact = vec![0f64; m * rows];
    let mut refdot = vec![0f64; m * rows];
    let mut xq = vec![0u8; ab];
    for i in 0..m {
        let xr = &x[i * cols..(i + 1) * cols];
        quantize_row(act_t, xr, &mut xq).unwrap();
        for r in 0..rows {
            let wr = &wf[r * cols..(r + 1) * cols];
            exact[i * rows + r] = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
            refdot[i * rows + r] = if t.is_quantized() {
                vec_dot(t, cols, &w[r * rb..(r + 1) * rb], &xq).unwrap() as f64
            } else {
                exact[i * rows + r]
            };
        }
    }
    Case { t, rows, cols, m, w, x, exact, refdot }
}

fn run(cpu: &Cpu, c: &Case, scratch: &mut MatmulScratch) -> Vec<f32> {
    let w = WeightRef { ggml_type: c.t, rows: c.rows, cols: c.cols, data: &c.w };
    let mut y = vec![f32::NAN; c.m * c.rows];
    cpu.matmul(&w, &c.x, c.m, &mut y, scratch).unwrap();
    y
}

#[test]
fn matmul_matches_reference_every_type_level_shape() {
    let mut rng = Rng(0x5EED);
    let levels = CpuLevel::available();
    eprintln!("levels: {levels:?}");
    let cpus: Vec<(Cpu, Cpu)> = levels
        .iter()
        .map(|&l| {
            let one = Cpu::new(CpuConfig { level: Some(l), threads: 1 }).unwrap();
            let two = Cpu::new(CpuConfig { level: Some(l), threads: 2 }).unwrap();
            (one, two)
        })
        .collect();
    // One scratch for everything: it must stay correct as it grows and shapes shrink.
    let mut scratch = MatmulScratch::new();
    for t in TYPES {
        for &(rows, ci, m) in &SHAPES {
            let cols = cols_for(t)[ci];
            let c = make_case(t, rows, cols, m, &mut rng);
            let (bound_exact, bound_ref) =
                if t.is_quantized() { (2e-3, 1e-9) } else { (1e-9, 1e-9) };
            for (l, (one, two)) in levels.iter().zip(&cpus) {
                let y1 = run(one, &c, &mut scratch);
                let y2 = run(two, &c, &mut scratch);
                let what = format!("{t} [{rows}, {cols}] m={m} level={l}");
                assert!(y1.iter().all(|v| v.is_finite()), "{what}: NaN/Inf in output");
                assert!(
                    y1.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{what}: 1 and 2 threads differ"
                );
                let (e_exact, e_ref) = (nmse(&y1, &c.exact), nmse(&y1, &c.refdot));
                assert!(e_exact < bound_exact, "{what}: nmse vs f64 dequantized {e_exact:e}");
                assert!(e_ref < bound_ref, "{what}: nmse vs reference vec_dot {e_ref:e}");
                if m > 2 {
                    assert!(y1[c.rows..2 * c.rows].iter().all(|&v| v == 0.0), "{what}: zero row");
                }
            }
        }
    }
}

#[test]
fn matmul_bad_shapes_are_errors() {
    let cpu = Cpu::new(CpuConfig { level: None, threads: 2 }).unwrap();
    let mut s = MatmulScratch::new();
    let mut rng = Rng(7);
    let w = random_weights(GgmlType::Q4_1, 8, 64, &mut rng);
    let x = vec![0.5f32; 2 * 64];
    let mut y = vec![0f32; 2 * 8];
    let ok = WeightRef { ggml_type: GgmlType::Q4_1, rows: 8, cols: 64, data: &w };
    cpu.matmul(&ok, &x, 2, &mut y, &mut s).unwrap();
    // Weight bytes short by one.
    let short = WeightRef { data: &w[..w.len() - 1], ..ok };
    assert!(cpu.matmul(&short, &x, 2, &mut y, &mut s).is_err());
    // cols not a multiple of the block.
    let odd = WeightRef { cols: 48, ..ok };
    assert!(cpu.matmul(&odd, &x[..96], 2, &mut y, &mut s).is_err());
    // x or y of the wrong length.
    assert!(cpu.matmul(&ok, &x[..127], 2, &mut y, &mut s).is_err());
    assert!(cpu.matmul(&ok, &x, 2, &mut y[..15], &mut s).is_err());
    assert!(cpu.matmul(&ok, &x, 3, &mut y, &mut s).is_err());
    // Overflowing sizes.
    let huge = WeightRef { rows: usize::MAX / 2, ..ok };
    assert!(cpu.matmul(&huge, &x, 2, &mut y, &mut s).is_err());
    assert!(cpu.matmul(&ok, &x, usize::MAX, &mut y, &mut s).is_err());
    // Types the matmul cannot compute.
    for t in [GgmlType::Q8_1, GgmlType::Q8_K, GgmlType::IQ4_NL, GgmlType::I32] {
        let bad = WeightRef { ggml_type: t, ..ok };
        assert!(cpu.matmul(&bad, &x, 2, &mut y, &mut s).is_err(), "{t}");
    }
    // Empty shapes are fine and touch nothing.
    let empty = WeightRef { rows: 0, data: &[], ..ok };
    cpu.matmul(&empty, &x, 2, &mut [], &mut s).unwrap();
}

#[test]
fn matmul_unaligned_weight_bytes_give_the_same_result() {
    let mut rng = Rng(99);
    let mut scratch = MatmulScratch::new();
    for t in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::F16] {
        let (rows, cols) = (21, 512);
        let w = random_weights(t, rows, cols, &mut rng);
        // The same bytes one past an aligned address.
        let mut shifted = vec![0u8; w.len() + 1];
        shifted[1..].copy_from_slice(&w);
        for level in CpuLevel::available() {
            let cpu = Cpu::new(CpuConfig { level: Some(level), threads: 2 }).unwrap();
            for m in [1, 5] {
                let x: Vec<f32> = (0..m * cols).map(|_| rng.uniform()).collect();
                let mut y0 = vec![0f32; m * rows];
                let mut y1 = vec![0f32; m * rows];
                let a = WeightRef { ggml_type: t, rows, cols, data: &w };
                let b = WeightRef { data: &shifted[1..], ..a };
                cpu.matmul(&a, &x, m, &mut y0, &mut scratch).unwrap();
                cpu.matmul(&b, &x, m, &mut y1, &mut scratch).unwrap();
                assert_eq!(y0, y1, "{t} m={m} level={level}");
            }
        }
    }
}
