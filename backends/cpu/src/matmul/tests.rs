//! Unit tests of the SIMD kernel families and activation quantizers against the scalar
//! reference (the public path is covered by tests/cpu_matmul.rs).

use super::*;
use crate::context::CpuConfig;
#[cfg(target_arch = "x86_64")]
use crate::dispatch::CpuExtras;

/// Random valid weights: 32-wide and float types through the reference quantizer,
/// K-quants as random bytes with small finite f16 scales.
fn weights(t: GgmlType, rows: usize, cols: usize, seed: &mut u64) -> Vec<u8> {
    let mut next = || {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    };
    let rb = t.row_size(cols as u64).unwrap() as usize;
    let mut w: Vec<u8> = (0..rows * rb).map(|_| next() as u8).collect();
    let scale_at: &[usize] = match t {
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => {
            // A different source row per weight row: a kernel that mixes up weight rows
            // (tile lanes, row offsets) must not pass by accident.
            for row in w.chunks_exact_mut(rb) {
                let src: Vec<f32> =
                    (0..cols).map(|_| (next() % 2000) as f32 / 1000.0 - 1.0).collect();
                weft::quant::quantize_row(t, &src, row).unwrap();
            }
            return w;
        }
    };
    for blk in w.chunks_exact_mut(t.type_size()) {
        for &o in scale_at {
            blk[o..o + 2].copy_from_slice(&half::f16::from_f32(0.004).to_le_bytes());
        }
    }
    w
}

/// Normalised mean squared error of `got` against `want`.
fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let (mut err, mut norm) = (0f64, 0f64);
    for (&g, &r) in got.iter().zip(want) {
        err += (g as f64 - r as f64).powi(2);
        norm += (r as f64).powi(2);
    }
    err / norm
}

/// Every SIMD kernel family this machine has (plain AVX2 too where the CPU also has
/// AVX-VNNI), with the level a `Cpu` needs to run it.
fn families() -> Vec<(CpuLevel, Simd)> {
    let mut families = Vec::new();
    #[cfg(target_arch = "aarch64")]
    if CpuLevel::Neon.is_supported() {
        families.push((CpuLevel::Neon, Simd::Neon));
    }
    #[cfg(target_arch = "x86_64")]
    if CpuLevel::Avx2.is_supported() {
        families.push((CpuLevel::Avx2, Simd::Avx2 { vnni: false }));
        if CpuExtras::detect().avx_vnni {
            families.push((CpuLevel::Avx2, Simd::Avx2 { vnni: true }));
        }
    }
    #[cfg(target_arch = "x86_64")]
    if CpuLevel::Avx512.is_supported() {
        families.push((CpuLevel::Avx512, Simd::Avx512));
    }
    families
}

/// Every SIMD kernel family this machine has, including plain AVX2 (vpmaddubsw) where
/// the CPU also has AVX-VNNI, against the scalar level; and all SIMD families agree bit
/// for bit (same integer sums, same f32 operation order by construction). On aarch64 the
/// one family is NEON.
#[test]
fn every_simd_family_matches_scalar_and_each_other() {
    let families = families();
    assert!(!families.is_empty() || CpuLevel::detect() == CpuLevel::Scalar);
    let scalar = Cpu::new(CpuConfig { level: Some(CpuLevel::Scalar), threads: 1 }).unwrap();
    let mut scratch = MatmulScratch::new();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let types = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
    ];
    for t in types {
        let (rows, cols) = if t.block_size() == 256 { (37, 768) } else { (37, 576) };
        let w = weights(t, rows, cols, &mut seed);
        let wr = WeightRef { ggml_type: t, rows, cols, data: &w };
        for m in [1, 6, 13] {
            let x: Vec<f32> =
                (0..m * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
            let mut want = vec![0f32; m * rows];
            scalar.matmul(&wr, &x, m, &mut want, &mut scratch).unwrap();
            let mut first: Option<Vec<f32>> = None;
            for &(level, simd) in &families {
                let cpu = Cpu::new(CpuConfig { level: Some(level), threads: 1 }).unwrap();
                let mut got = vec![f32::NAN; m * rows];
                let mapped = CpuWeight::Mapped(wr);
                cpu.matmul_forced(&mapped, &x, m, &mut got, &mut scratch, Some(simd)).unwrap();
                let e = nmse(&got, &want);
                assert!(e < 1e-9, "{t} m={m} {simd:?}: nmse {e:e}");
                match &first {
                    None => first = Some(got),
                    Some(f) => assert!(
                        f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{t} m={m} {simd:?} differs from {:?}",
                        families[0].1
                    ),
                }
            }
        }
    }
}

/// x8-packed weights (every packable type, rows that leave a partial group) through every
/// SIMD family: GEMV against the scalar reference, all families bit-identical, 1 and 3
/// threads bit-identical, GEMM (rows rebuilt from the packing) bit-identical to GEMM on
/// the mapped weight, and the embedding lookup identical to the mapped one.
#[test]
fn packed_weights_match_scalar_and_mapped() {
    let families = families();
    let scalar = Cpu::new(CpuConfig { level: Some(CpuLevel::Scalar), threads: 1 }).unwrap();
    let mut scratch = MatmulScratch::new();
    let mut seed = 0x0bad_cafe_1234_5678u64;
    let types = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q5_0,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    for t in types {
        let k = t.block_size();
        for (rows, cols) in [(37, 18 * k), (8, k), (1, 28 * k), (203, 48 * k)] {
            let w = weights(t, rows, cols, &mut seed);
            let wr = WeightRef { ggml_type: t, rows, cols, data: &w };
            let packed =
                CpuWeight::Packed(PackedWeight::pack(t, rows, cols, &w, None, None).unwrap());
            let mapped = CpuWeight::Mapped(wr);
            for m in [1, 5] {
                let x: Vec<f32> =
                    (0..m * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                let mut want = vec![0f32; m * rows];
                scalar.matmul(&wr, &x, m, &mut want, &mut scratch).unwrap();
                let mut first: Option<Vec<f32>> = None;
                for &(level, simd) in &families {
                    for threads in [1, 3] {
                        let cpu = Cpu::new(CpuConfig { level: Some(level), threads }).unwrap();
                        let mut got = vec![f32::NAN; m * rows];
                        cpu.matmul_forced(&packed, &x, m, &mut got, &mut scratch, Some(simd))
                            .unwrap();
                        let e = nmse(&got, &want);
                        let what = format!("{t} {rows}x{cols} m={m} {simd:?} x{threads}");
                        assert!(e < 1e-9, "{what}: nmse {e:e}");
                        // The Cpu's own packing (parallel, into its huge-page arena) is the
                        // same weight.
                        let own = cpu.prepare_weight(wr).unwrap();
                        assert!(own.is_packed(), "{what}");
                        let unpacked = Cpu::new(CpuConfig { level: Some(level), threads })
                            .unwrap()
                            .with_repack(false)
                            .prepare_weight(wr)
                            .unwrap();
                        assert!(!unpacked.is_packed(), "{what}: with_repack(false) packed");
                        let mut again = vec![f32::NAN; m * rows];
                        cpu.matmul_forced(&own, &x, m, &mut again, &mut scratch, Some(simd))
                            .unwrap();
                        assert!(again == got, "{what}: the Cpu's packing differs");
                        if m > 1 {
                            let mut on_mapped = vec![f32::NAN; m * rows];
                            cpu.matmul_forced(&mapped, &x, m, &mut on_mapped, &mut scratch, None)
                                .unwrap();
                            let same = on_mapped.iter().zip(&got).all(|(a, b)| a == b);
                            assert!(same, "{what}: GEMM differs from the mapped weight");
                        }
                        match &first {
                            None => first = Some(got),
                            Some(f) => assert!(
                                f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                                "{what} differs from {:?} x1",
                                families[0].1
                            ),
                        }
                    }
                }
            }
            let ids: Vec<u32> = (0..rows as u32).rev().step_by(3).collect();
            let mut a = vec![0f32; ids.len() * cols];
            let mut b = vec![1f32; ids.len() * cols];
            scalar.get_rows_weight(&mapped, &ids, &mut a).unwrap();
            scalar.get_rows_weight(&packed, &ids, &mut b).unwrap();
            assert_eq!(a, b, "{t} get_rows");
            assert!(scalar.get_rows_weight(&packed, &[rows as u32], &mut b[..cols]).is_err());
        }
    }
}

/// The SIMD activation quantizers write the reference's bytes exactly: random rows,
/// exact rounding ties, zero blocks, magnitude ties, and rows the reference must take
/// (non-finite values) are reported as such.
#[cfg(target_arch = "x86_64")]
#[test]
fn simd_quantizers_are_bit_exact() {
    if !CpuLevel::Avx2.is_supported() {
        return;
    }
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    for act_t in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        let n = 1024;
        let bytes = act_t.row_size(n as u64).unwrap() as usize;
        for case in 0..200 {
            let mut x: Vec<f32> = (0..n).map(|_| rnd() * 3.0).collect();
            match case % 5 {
                // Values on exact .5 steps of the block scale: rounding ties everywhere.
                1 => x
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, v)| *v = ((i % 255) as f32 - 127.0) * 0.5),
                // Zero blocks and a block of equal magnitudes with mixed signs.
                2 => {
                    x[..256].fill(0.0);
                    x[256..512]
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v = if i % 3 == 0 { -2.0 } else { 2.0 });
                }
                // Tiny and huge magnitudes.
                3 => x.iter_mut().for_each(|v| *v *= 1e-30),
                4 => x.iter_mut().for_each(|v| *v *= 1e30),
                _ => {}
            }
            let mut want = vec![0u8; bytes];
            let mut got = vec![0u8; bytes];
            weft::quant::quantize_row(act_t, &x, &mut want).unwrap();
            // SAFETY: AVX2 support checked above (and FMA/F16C with it).
            assert!(unsafe { avx2_quant::quantize_row_q8(act_t, &x, &mut got) });
            assert!(want == got, "{act_t} case {case}");
        }
        let mut x = vec![1.0f32; n];
        x[77] = f32::NAN;
        let mut out = vec![0u8; bytes];
        // SAFETY: as above.
        assert!(!unsafe { avx2_quant::quantize_row_q8(act_t, &x, &mut out) }, "{act_t} NaN");
        x[77] = f32::INFINITY;
        // SAFETY: as above.
        assert!(!unsafe { avx2_quant::quantize_row_q8(act_t, &x, &mut out) }, "{act_t} inf");
    }
}
