//! Non-matmul CPU ops at every level this machine has: attention at decode (n_q = 1 over 512
//! and 4096 cells) and prefill (512 causal rows), rms_norm and rope at decode / prefill sizes,
//! on the default models' head geometries (SmolLM2 9/3 heads, Qwen2.5 14/2, head_dim 64).
//!
//! `cargo bench -p weft-benches --bench ops [-- filter]`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use std::hint::black_box;
use std::time::Duration;
use weft::ops::{AttnMask, AttnParams, RopeParams, RopeStyle};
use weft_cpu::{Cpu, CpuConfig, CpuLevel};

fn cpu(level: CpuLevel, threads: usize) -> Cpu {
    Cpu::new(CpuConfig { level: Some(level), threads }).expect("level listed as available")
}

/// Deterministic values in [-1, 1) (no RNG crate needed for timing).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn attention(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    // (model, n_head, n_head_kv, n_q, n_cells, threads)
    let cases = [
        ("smollm2", 9, 3, 1, 512, 1),
        ("smollm2", 9, 3, 1, 4096, 1),
        ("qwen2.5", 14, 2, 1, 4096, 1),
        ("smollm2", 9, 3, 512, 512, 1),
        ("smollm2", 9, 3, 512, 512, 2),
        ("qwen2.5", 14, 2, 512, 512, 1),
    ];
    for (model, n_head, n_head_kv, n_q, n_cells, threads) in cases {
        let p = AttnParams { n_head, n_head_kv, head_dim: 64, scale: 0.125 };
        let q = values(n_q * n_head * 64, 1);
        let k: Vec<f16> =
            values(n_cells * n_head_kv * 64, 2).into_iter().map(f16::from_f32).collect();
        let v: Vec<f16> =
            values(n_cells * n_head_kv * 64, 3).into_iter().map(f16::from_f32).collect();
        let mask = AttnMask::Causal { n_past: n_cells - n_q };
        let mut out = vec![0f32; q.len()];
        // Key visits (one q.k dot and one V row accumulate each) per call.
        let visits: usize = (0..n_q).map(|i| mask.visible(i)).sum::<usize>() * n_head;
        g.throughput(Throughput::Elements(visits as u64));
        for level in CpuLevel::available() {
            let cpu = cpu(level, threads);
            let id = format!("{model}/n_q{n_q}/n_cells{n_cells}/t{threads}");
            g.bench_with_input(BenchmarkId::new(level.name(), id), &(), |b, _| {
                b.iter(|| cpu.attention(black_box(&q), &k, &v, &p, &mask, &mut out).unwrap())
            });
        }
    }
    g.finish();
}

fn rms_norm(c: &mut Criterion) {
    let mut g = c.benchmark_group("rms_norm");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for (n_embd, n_rows) in [(576, 1), (896, 1), (576, 512)] {
        let x = values(n_embd * n_rows, 4);
        let w = values(n_embd, 5);
        let mut out = vec![0f32; x.len()];
        g.throughput(Throughput::Elements(x.len() as u64));
        for level in CpuLevel::available() {
            let cpu = cpu(level, 1);
            g.bench_with_input(
                BenchmarkId::new(level.name(), format!("{n_embd}x{n_rows}")),
                &(),
                |b, _| b.iter(|| cpu.rms_norm(black_box(&x), &w, 1e-5, &mut out).unwrap()),
            );
        }
    }
    g.finish();
}

fn rope(c: &mut Criterion) {
    let mut g = c.benchmark_group("rope");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    for (style, n_head, n_tokens) in
        [(RopeStyle::Norm, 9, 1), (RopeStyle::Neox, 14, 1), (RopeStyle::Norm, 9, 512)]
    {
        let p = RopeParams {
            style,
            head_dim: 64,
            n_rot: 64,
            freq_base: 1e5,
            freq_scale: 1.0,
            freq_factors: None,
        };
        let positions: Vec<i32> = (0..n_tokens as i32).map(|t| t + 100).collect();
        let mut x = values(n_tokens * n_head * 64, 6);
        g.throughput(Throughput::Elements(x.len() as u64));
        for level in CpuLevel::available() {
            let cpu = cpu(level, 1);
            g.bench_with_input(
                BenchmarkId::new(level.name(), format!("{style}/{n_head}h/{n_tokens}tok")),
                &(),
                |b, _| b.iter(|| cpu.rope(black_box(&mut x), n_head, &positions, &p).unwrap()),
            );
        }
    }
    g.finish();
}

criterion_group!(benches, attention, rms_norm, rope);
criterion_main!(benches);
