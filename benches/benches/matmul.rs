//! Quantized matmul of the CPU backend, single thread, with a memory-bandwidth baseline in the
//! same run so every figure reads as a fraction of what the machine can do.
//!
//! - `read_bandwidth/1thread`: sum of a 512 MiB u64 array (larger than any LLC), bytes/s;
//!   `read_bandwidth/1thread_avx2_prefetch`: the same with 256-bit loads and software
//!   prefetch, the fastest reader we have and so the baseline (x86 with AVX2);
//!   `read_bandwidth/2threads_avx2_prefetch`: two cores reading one half each.
//! - `gemv/<level>/<type>/<rows>x<cols>`: decode (m = 1) at model shapes (4.5 MB or less:
//!   the matrix stays in the cache between iterations) over ggml's row-major blocks,
//!   throughput in weight bytes/s; `gemv_x8/...`: the same matrix repacked 8 rows at a time
//!   (what the model runs for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0/Q4_K/Q6_K at the AVX2 and AVX-512
//!   levels).
//! - `gemv_dram[_x8]/<level>/<type>/<rows>x<cols>`: decode over one matrix of at least 512
//!   MiB and twice the last-level cache (printed at start), so every iteration streams the
//!   weights from DRAM: the figure to compare with `read_bandwidth`.
//! - `gemm/<type>/<rows>x<cols>/m512`: prefill, "elements" = 2 * m * rows * cols (FLOP/s).
//!
//! Levels: the best this machine has, plus AVX2 for the default models' types. Set
//! `WEFT_BENCH_QUICK=1` to run only the default models' types.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use weft::GgmlType;
use weft_cpu::{Cpu, CpuConfig, CpuLevel, MatmulScratch, WeightRef};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Offsets of the f16 scale fields of one block (random codes elsewhere are valid data).
fn scale_fields(t: GgmlType) -> &'static [usize] {
    match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

/// Valid random weights: random codes, small finite scales; floats in [-1, 1).
fn weights(t: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut rng = Rng(rows as u64 ^ (cols as u64) << 20);
    let n = rows * t.row_size(cols as u64).unwrap() as usize;
    let mut w: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    match t {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            let src: Vec<f32> = (0..rows * cols).map(|_| rng.f()).collect();
            weft::quant::quantize_row(t, &src, &mut w).unwrap();
        }
        _ => {
            for blk in w.chunks_exact_mut(t.type_size()) {
                for &o in scale_fields(t) {
                    let d = weft::quant::f32_to_f16(0.001 + 0.01 * rng.f().abs());
                    blk[o..o + 2].copy_from_slice(&d.to_le_bytes());
                }
            }
        }
    }
    w
}

fn config(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

fn read_bandwidth(c: &mut Criterion) {
    // u64 [64 Mi] = 512 MiB: far past the LLC, so this is DRAM read bandwidth, one core.
    let data: Vec<u64> = (0..64u64 << 20).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
    let mut g = config(c);
    g.throughput(Throughput::Bytes((data.len() * 8) as u64));
    g.bench_function("read_bandwidth/1thread", |b| {
        b.iter(|| {
            // Eight independent sums so the adds never limit the loads.
            let mut acc = [0u64; 8];
            for ch in black_box(&data).chunks_exact(8) {
                for k in 0..8 {
                    acc[k] = acc[k].wrapping_add(ch[k]);
                }
            }
            black_box(acc)
        })
    });
    // The strongest single-core reader we know: 256-bit loads into four sums, each line
    // prefetched 2 KB ahead (what the GEMV kernels do). The baseline to compare with.
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        g.bench_function("read_bandwidth/1thread_avx2_prefetch", |b| {
            // SAFETY: AVX2 was detected just above.
            b.iter(|| unsafe { sum_avx2_prefetch(black_box(&data)) })
        });
        // Two cores, each reading its half: the ceiling of 2-thread decode.
        g.bench_function("read_bandwidth/2threads_avx2_prefetch", |b| {
            b.iter(|| {
                let (lo, hi) = data.split_at(data.len() / 2);
                std::thread::scope(|s| {
                    // SAFETY: AVX2 was detected above.
                    let t = s.spawn(|| unsafe { sum_avx2_prefetch(black_box(hi)) });
                    // SAFETY: as above.
                    let a = unsafe { sum_avx2_prefetch(black_box(lo)) };
                    a.wrapping_add(t.join().unwrap())
                })
            })
        });
    }
    g.finish();
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_avx2_prefetch(d: &[u64]) -> u64 {
    use std::arch::x86_64::*;
    let n = d.len() / 16 * 16;
    // SAFETY: every load reads 4 u64 inside d[..n]; prefetches never fault.
    unsafe {
        let p = d.as_ptr();
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut i = 0;
        while i < n {
            let line = p.add(i).cast::<i8>();
            _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(2048));
            _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(2048 + 64));
            for (k, a) in acc.iter_mut().enumerate() {
                *a = _mm256_add_epi64(*a, _mm256_loadu_si256(p.add(i + 4 * k).cast()));
            }
            i += 16;
        }
        let s =
            _mm256_add_epi64(_mm256_add_epi64(acc[0], acc[1]), _mm256_add_epi64(acc[2], acc[3]));
        let mut out = [0u64; 4];
        _mm256_storeu_si256(out.as_mut_ptr().cast(), s);
        out.iter().fold(0u64, |a, &b| a.wrapping_add(b))
    }
}

/// Types in priority order; the K-quants use the ffn_down shape (cols a multiple of 256).
fn types() -> Vec<GgmlType> {
    let main = [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K];
    let rest = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q5_K,
        GgmlType::BF16,
    ];
    let quick = std::env::var("WEFT_BENCH_QUICK").as_deref() == Ok("1");
    main.into_iter().chain(rest.into_iter().filter(|_| !quick)).collect()
}

fn shape(t: GgmlType) -> (usize, usize) {
    match t {
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => {
            (896, 4864)
        }
        _ => (4864, 896),
    }
}

fn levels() -> Vec<CpuLevel> {
    let best = CpuLevel::detect();
    let mut l = vec![best];
    if best == CpuLevel::Avx512 {
        l.push(CpuLevel::Avx2);
    }
    l
}

fn gemv(c: &mut Criterion) {
    let mut g = config(c);
    let mut cases: Vec<(GgmlType, usize, usize)> =
        types().into_iter().map(|t| (t, shape(t).0, shape(t).1)).collect();
    // Qwen2.5-0.5B's output matrix: 145 MB of Q8_0, the largest read per decoded token.
    cases.push((GgmlType::Q8_0, 151_936, 896));
    for level in levels() {
        let cpu = Cpu::new(CpuConfig { level: Some(level), threads: 1 }).unwrap();
        let mut scratch = MatmulScratch::new();
        for &(t, rows, cols) in &cases {
            if level != CpuLevel::detect() && rows > 10_000 {
                continue;
            }
            let data = weights(t, rows, cols);
            let w = WeightRef { ggml_type: t, rows, cols, data: &data };
            let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut y = vec![0f32; rows];
            g.throughput(Throughput::Bytes(data.len() as u64));
            // What the model runs (x8-packed where the level packs the type), then the
            // row-major kernels on the same matrix.
            let prepared = cpu.prepare_weight(w).unwrap();
            let name = if prepared.is_packed() { "gemv_x8" } else { "gemv" };
            g.bench_function(
                BenchmarkId::new(format!("{name}/{level}/{t}"), format!("{rows}x{cols}")),
                |b| {
                    b.iter(|| {
                        cpu.matmul_weight(&prepared, black_box(&x), 1, &mut y, &mut scratch)
                            .unwrap()
                    })
                },
            );
            if prepared.is_packed() {
                g.bench_function(
                    BenchmarkId::new(format!("gemv/{level}/{t}"), format!("{rows}x{cols}")),
                    |b| b.iter(|| cpu.matmul(&w, black_box(&x), 1, &mut y, &mut scratch).unwrap()),
                );
            }
        }
    }
    g.finish();
}

fn gemm(c: &mut Criterion) {
    let mut g = config(c);
    let m = 512;
    for level in levels() {
        let cpu = Cpu::new(CpuConfig { level: Some(level), threads: 1 }).unwrap();
        let mut scratch = MatmulScratch::new();
        for t in types() {
            let (rows, cols) = shape(t);
            let data = weights(t, rows, cols);
            let w = WeightRef { ggml_type: t, rows, cols, data: &data };
            let x: Vec<f32> = (0..m * cols).map(|i| (i as f32 * 0.37).sin()).collect();
            let mut y = vec![0f32; m * rows];
            g.throughput(Throughput::Elements((2 * m * rows * cols) as u64));
            // What the model runs: panels built from the x8 packing where the level packs
            // the type.
            let prepared = cpu.prepare_weight(w).unwrap();
            g.bench_function(
                BenchmarkId::new(format!("gemm/{level}/{t}"), format!("{rows}x{cols}/m{m}")),
                |b| {
                    b.iter(|| {
                        cpu.matmul_weight(&prepared, black_box(&x), m, &mut y, &mut scratch)
                            .unwrap()
                    })
                },
            );
        }
    }
    g.finish();
}

/// The last-level cache size in bytes, from sysfs (Linux), if known.
fn llc_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut best = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(size) = std::fs::read_to_string(e.path().join("size")) else { continue };
        let size = size.trim();
        let (num, mul) = match size.strip_suffix('K') {
            Some(n) => (n, 1 << 10),
            None => match size.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (size, 1),
            },
        };
        if let Ok(n) = num.parse::<usize>() {
            best = best.max(Some(n * mul));
        }
    }
    best
}

fn gemv_dram(c: &mut Criterion) {
    let llc = llc_bytes();
    let target = (512usize << 20).max(2 * llc.unwrap_or(0));
    eprintln!(
        "gemv_dram: last-level cache {} MiB, matrices of about {} MiB",
        llc.map_or("unknown".to_string(), |b| (b >> 20).to_string()),
        target >> 20
    );
    let mut g = config(c);
    let cols = 4096;
    for t in [GgmlType::Q8_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q6_K] {
        let rows = target.div_ceil(t.row_size(cols as u64).unwrap() as usize);
        let data = weights(t, rows, cols);
        let w = WeightRef { ggml_type: t, rows, cols, data: &data };
        let x: Vec<f32> = (0..cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut y = vec![0f32; rows];
        g.throughput(Throughput::Bytes(data.len() as u64));
        for level in levels() {
            let cpu = Cpu::new(CpuConfig { level: Some(level), threads: 1 }).unwrap();
            let mut scratch = MatmulScratch::new();
            let prepared = cpu.prepare_weight(w).unwrap();
            if prepared.is_packed() {
                g.bench_function(
                    BenchmarkId::new(format!("gemv_dram_x8/{level}/{t}"), format!("{rows}x{cols}")),
                    |b| {
                        b.iter(|| {
                            cpu.matmul_weight(&prepared, black_box(&x), 1, &mut y, &mut scratch)
                                .unwrap()
                        })
                    },
                );
            }
            drop(prepared);
            g.bench_function(
                BenchmarkId::new(format!("gemv_dram/{level}/{t}"), format!("{rows}x{cols}")),
                |b| b.iter(|| cpu.matmul(&w, black_box(&x), 1, &mut y, &mut scratch).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, read_bandwidth, gemv_dram, gemv, gemm);
criterion_main!(benches);
