//! The scalar quant reference (`weft::quant`) against ggml, via fixtures made by
//! `tests/data/gen_quant_fixtures.py` with the `gguf` package (see that script for the format):
//! dequantization must be bit-exact, quantization byte-exact. Also vec_dot accuracy against
//! f64 dots of the dequantized operands, quantize -> dequantize error bounds, and error cases.

use half::f16;
use std::path::{Path, PathBuf};
use weft::quant::{self, QuantError};
use weft::GgmlType;

struct Fixture {
    name: String,
    kind: u32,
    ggml_type: GgmlType,
    n: usize,
    payload: Vec<u8>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("quant")
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn load_fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir())
        .expect("tests/data/quant exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    paths.sort();
    for p in paths {
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[0..4], b"WQFX", "{}: bad magic", p.display());
        assert_eq!(read_u32(&b, 4), 1, "{}: version", p.display());
        let ggml_type = GgmlType::from_id(read_u32(&b, 12)).expect("known type id");
        out.push(Fixture {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            kind: read_u32(&b, 8),
            ggml_type,
            n: read_u32(&b, 16) as usize,
            payload: b[20..].to_vec(),
        });
    }
    out
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn row_size(t: GgmlType, n: usize) -> usize {
    t.row_size(n as u64).unwrap() as usize
}

#[test]
fn fixtures_cover_every_type() {
    let fx = load_fixtures();
    let has = |kind: u32, t: GgmlType| fx.iter().any(|f| f.kind == kind && f.ggml_type == t);
    use GgmlType::*;
    for t in [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        assert!(has(0, t), "no dequant fixture for {t}");
    }
    for t in [F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        assert!(has(1, t), "no quant fixture for {t}");
    }
    for t in [Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K] {
        assert!(has(2, t), "no vec_dot fixture for {t}");
    }
}

#[test]
fn dequantize_matches_ggml_bit_exactly() {
    let mut checked = 0;
    for f in load_fixtures().iter().filter(|f| f.kind == 0) {
        let rs = row_size(f.ggml_type, f.n);
        let (blocks, expected) = f.payload.split_at(rs);
        let expected = f32s(expected);
        assert_eq!(expected.len(), f.n, "{}", f.name);
        let mut got = vec![0.0f32; f.n];
        quant::dequantize_row(f.ggml_type, blocks, &mut got).unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.to_bits(), e.to_bits(), "{}: element {i}: got {g:e}, ggml {e:e}", f.name);
        }
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} dequant fixtures");
}

#[test]
fn quantize_matches_ggml_byte_exactly() {
    let mut checked = 0;
    for f in load_fixtures().iter().filter(|f| f.kind == 1) {
        let (input, expected) = f.payload.split_at(4 * f.n);
        let input = f32s(input);
        let mut got = vec![0u8; row_size(f.ggml_type, f.n)];
        quant::quantize_row(f.ggml_type, &input, &mut got).unwrap();
        assert_eq!(got.len(), expected.len(), "{}", f.name);
        let bs = f.ggml_type.type_size();
        for (b, (g, e)) in got.chunks(bs).zip(expected.chunks(bs)).enumerate() {
            assert_eq!(g, e, "{}: block {b} differs", f.name);
        }
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} quant fixtures");
}

#[test]
fn vec_dot_matches_ggml_generic_path() {
    let mut checked = 0;
    for f in load_fixtures().iter().filter(|f| f.kind == 2) {
        let ty = quant::vec_dot_type(f.ggml_type).unwrap();
        let (x, rest) = f.payload.split_at(row_size(f.ggml_type, f.n));
        let (y, expected) = rest.split_at(row_size(ty, f.n));
        let expected = f32s(expected)[0];
        let got = quant::vec_dot(f.ggml_type, f.n, x, y).unwrap();
        // Same integer sums, same f32 operations in the same order as ggml's scalar code.
        assert_eq!(got.to_bits(), expected.to_bits(), "{}: got {got:e}, ggml {expected:e}", f.name);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} vec_dot fixtures");
}

/// Deterministic pseudo-random f32s in [-1, 1) scaled by a slowly varying envelope, so
/// blocks differ in scale (xorshift; no rand dependency).
fn test_row(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            u * (1.0 + 0.9 * ((i as f32) * 0.013).sin())
        })
        .collect()
}

fn quantize(t: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; row_size(t, x.len())];
    quant::quantize_row(t, x, &mut q).unwrap();
    q
}

fn dequantize(t: GgmlType, q: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0.0f32; n];
    quant::dequantize_row(t, q, &mut y).unwrap();
    y
}

/// Weight rows of type `t` to test dots with: one quantized from random data, plus for the
/// K-quants one of random valid blocks (random bytes, moderate f16 scales), which reaches
/// scale and level patterns a quantizer rarely produces (6-bit scales at 63, Q6_K scale -128).
fn weight_rows(t: GgmlType, n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rows = vec![quantize(t, &test_row(n, seed))];
    let f16_offsets: &[usize] = match t {
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => return rows,
    };
    let mut bytes: Vec<u8> =
        test_row(row_size(t, n), seed).iter().map(|v| (v.to_bits() >> 7) as u8).collect();
    let scales = test_row(bytes.len(), seed + 1);
    for (b, block) in bytes.chunks_mut(t.type_size()).enumerate() {
        for (k, &off) in f16_offsets.iter().enumerate() {
            let d = f16::from_f32(0.01 * (scales[2 * b + k] + 1.5));
            block[off..off + 2].copy_from_slice(&d.to_le_bytes());
        }
    }
    rows.push(bytes);
    rows
}

#[test]
fn vec_dot_matches_f64_dot_of_dequantized_operands() {
    use GgmlType::*;
    let types = [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K];
    // Real row lengths of the default models; K-quants need multiples of 256.
    for t in types {
        let ty = quant::vec_dot_type(t).unwrap();
        for (k, n) in [576usize, 896, 1536, 4864, 32, 256].into_iter().enumerate() {
            if n % t.block_size() != 0 || n % ty.block_size() != 0 {
                continue;
            }
            let yq = quantize(ty, &test_row(n, 101 + k as u64));
            let yd = dequantize(ty, &yq, n);
            for (r, xq) in weight_rows(t, n, 11 + k as u64).iter().enumerate() {
                let got = f64::from(quant::vec_dot(t, n, xq, &yq).unwrap());
                let xd = dequantize(t, xq, n);
                let exact: f64 =
                    xd.iter().zip(&yd).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                let scale: f64 =
                    xd.iter().zip(&yd).map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs()).sum();
                // f32 accumulation over n/32 block terms; Q8_1's `s` is rounded to f16, which
                // perturbs the Q4_1/Q5_1 min term by up to 2^-11 relative per block.
                let tol = if ty == Q8_1 { 2e-3 } else { 1e-5 } * scale.max(1e-30);
                assert!(
                    (got - exact).abs() <= tol,
                    "{t} n={n} row {r}: vec_dot {got} vs f64 {exact} (sum|xy| {scale})"
                );
            }
        }
    }
}

#[test]
fn quantize_dequantize_error_is_bounded() {
    use GgmlType::*;
    // (type, bound on |x - dq(q(x))| relative to the block's max |x|; per element for the
    // float types). Half a step of rounding, plus f16 rounding of the scale; Q4_0/Q5_0 clamp
    // the side opposite the extreme one level short (+7/+15 vs -8/-16), so a full step there.
    let bounds = [
        (F16, 1.0 / 2048.0),
        (BF16, 1.0 / 256.0),
        (Q8_0, 0.5 / 127.0 + 1e-3),
        (Q8_1, 0.5 / 127.0 + 1e-3),
        (Q8_K, 0.5 / 127.0 + 1e-6),
        (Q5_0, 1.0 / 16.0 + 1e-3),
        (Q5_1, 0.5 * 2.0 / 31.0 + 2e-3),
        (Q4_0, 1.0 / 8.0 + 1e-3),
        (Q4_1, 0.5 * 2.0 / 15.0 + 2e-3),
    ];
    let n = 4864;
    let x = test_row(n, 7);
    for (t, bound) in bounds {
        let y = dequantize(t, &quantize(t, &x), n);
        let bs = if t.block_size() == 1 { 32 } else { t.block_size() };
        for (b, (xb, yb)) in x.chunks(bs).zip(y.chunks(bs)).enumerate() {
            let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            for (&a, &c) in xb.iter().zip(yb) {
                let err = (a - c).abs();
                let lim = if t.block_size() == 1 { bound * a.abs() } else { bound * amax };
                assert!(err <= lim, "{t} block {b}: {a} -> {c} (err {err}, limit {lim})");
            }
        }
    }
}

#[test]
fn k_quant_round_trip_error_is_bounded() {
    use GgmlType::*;
    // Normalised RMS error of quantize -> dequantize on smooth random data; each format must
    // stay well below its neighbour with one bit less.
    let n = 4864;
    let x = test_row(n, 5);
    let rms = |v: &[f32]| {
        (v.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>() / v.len() as f64).sqrt()
    };
    for (t, bound) in
        [(Q2_K, 0.3), (Q3_K, 0.16), (Q4_K, 0.08), (Q5_K, 0.04), (Q6_K, 0.02), (Q8_K, 0.008)]
    {
        let y = dequantize(t, &quantize(t, &x), n);
        let diff: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a - b).collect();
        let nrmse = rms(&diff) / rms(&x);
        eprintln!("{t}: normalised rmse {nrmse:.4}");
        assert!(nrmse < bound, "{t}: normalised rmse {nrmse} >= {bound}");
    }
}

#[test]
fn bad_sizes_and_types_are_errors() {
    use GgmlType::*;
    let mut out = vec![0.0f32; 33];
    assert!(matches!(
        quant::dequantize_row(Q4_0, &[0u8; 36], &mut out),
        Err(QuantError::NotBlockMultiple { n: 33, block_size: 32, .. })
    ));
    let mut out = vec![0.0f32; 32];
    assert!(matches!(
        quant::dequantize_row(Q4_0, &[0u8; 17], &mut out),
        Err(QuantError::BufferSize { expected: 18, actual: 17, .. })
    ));
    assert!(matches!(
        quant::dequantize_row(IQ2_XXS, &[0u8; 66], &mut vec![0.0; 256]),
        Err(QuantError::Unsupported { .. })
    ));
    assert!(quant::quantize_row(Q8_K, &[0.0; 255], &mut [0u8; 292]).is_err());
    assert!(quant::quantize_row(Q8_0, &[0.0; 64], &mut [0u8; 67]).is_err());
    assert!(quant::quantize_row(I32, &[0.0; 4], &mut [0u8; 16]).is_err());
    // vec_dot: the y operand must be in vec_dot_type(t) and sized for n.
    let x = vec![0u8; row_size(Q4_1, 64)];
    assert!(quant::vec_dot(Q4_1, 64, &x, &vec![0u8; row_size(Q8_0, 64)]).is_err());
    assert!(quant::vec_dot(Q4_1, 64, &x, &vec![0u8; row_size(Q8_1, 64)]).is_ok());
    assert!(quant::vec_dot(Q4_1, 63, &x, &x).is_err());
    assert!(quant::vec_dot(Q4_K, 576, &[0u8; 0], &[0u8; 0]).is_err());
    assert!(quant::vec_dot(Q8_K, 256, &[0u8; 292], &[0u8; 292]).is_err());
    assert!(matches!(
        quant::vec_dot(F32, usize::MAX / 2, &[], &[]),
        Err(QuantError::TooLarge { .. })
    ));
    assert!(quant::vec_dot(Q8_0, usize::MAX - 31, &[], &[]).is_err());
    // Error messages are one line and name the type.
    let e = quant::dequantize_row(Q6_K, &[0u8; 10], &mut vec![0.0; 256]).unwrap_err();
    assert!(e.to_string().contains("q6_K") && !e.to_string().contains('\n'), "{e}");
}

#[test]
fn misaligned_buffers_give_the_same_results() {
    use GgmlType::*;
    for t in [F32, F16, Q4_K, Q8_K, Q5_1] {
        let n = 512;
        let x = test_row(n, 3);
        let q = quantize(t, &x);
        // Same bytes at an odd address: the dynamic entry points must copy, not fail or panic.
        let mut shifted = vec![0u8; q.len() + 1];
        quant::quantize_row(t, &x, &mut shifted[1..]).unwrap();
        assert_eq!(&shifted[1..], &q[..], "{t}: quantize into a misaligned buffer");
        let a = dequantize(t, &q, n);
        let b = dequantize(t, &shifted[1..], n);
        assert_eq!(a, b, "{t}: dequantize from a misaligned buffer");
    }
}

#[test]
fn non_finite_and_huge_inputs_do_not_panic() {
    use GgmlType::*;
    // Tests run with overflow checks: any overflowing integer conversion would panic here.
    let mut x = test_row(512, 9);
    x[3] = f32::NAN;
    x[40] = f32::INFINITY;
    x[77] = f32::NEG_INFINITY;
    x[300] = 3e38;
    x[301] = -3e38;
    x[400] = 1e-40; // subnormal
    for t in
        [F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q8_K, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K]
    {
        let q = quantize(t, &x);
        let _ = dequantize(t, &q, x.len());
        if let Some(ty) = quant::vec_dot_type(t) {
            let _ = quant::vec_dot(t, x.len(), &q, &quantize(ty, &x)).unwrap();
        }
    }
}
