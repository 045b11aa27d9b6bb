//! Selective attention's cost on the query side (issue #6 target: selection adds at most
//! 10 % to query-side attention time). Qwen2.5 geometry (14 query / 2 KV heads, head_dim
//! 64), a 32-token question over 16 pieces in 4096 cells, 1 thread, at every CPU level:
//!
//! - `plain`: attention over sink + all pieces + question (no selection);
//! - `select_k2`: the scoring pass (logits and log-sum-exp only, no V), pooling over heads
//!   and tokens, the mask without the dropped pieces, then attention over the 2 kept pieces;
//! - `observe`: plain attention plus the entropy and mean |logit| outputs.
//!
//! `cargo bench -p weft-benches --bench selection`

use criterion::{criterion_group, criterion_main, Criterion};
use half::f16;
use std::hint::black_box;
use std::time::Duration;
use weft::layout::{Layout, LayoutConfig, Request};
use weft::ops::{AttnExtras, AttnParams};
use weft::selection::{mask_without_dropped, select_pieces, Pooling};
use weft_cpu::{Cpu, CpuConfig, CpuLevel};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn selection(c: &mut Criterion) {
    let mut g = c.benchmark_group("selection");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let p = AttnParams { n_head: 14, n_head_kv: 2, head_dim: 64, scale: 0.125 };
    let (n_pieces, n_q) = (16, 32);
    let per = (4096 - 16 - n_q) / n_pieces;
    let req = Request {
        sink: Some(vec![1; 16]),
        pieces: vec![vec![2; per]; n_pieces],
        query: vec![3; n_q],
    };
    let layout = Layout::build(&req, &LayoutConfig::new(4096)).expect("layout");
    let n_cells = layout.n_cells();
    let q = values(n_q * p.n_head * 64, 1);
    let k: Vec<f16> =
        values(n_cells * p.n_head_kv * 64, 2).into_iter().map(f16::from_f32).collect();
    let v: Vec<f16> =
        values(n_cells * p.n_head_kv * 64, 3).into_iter().map(f16::from_f32).collect();
    let base = layout.attn_mask_for_query(None).expect("mask");
    let mut out = vec![0f32; n_q * p.n_head * 64];
    // f32 [n_q, n_head, n_pieces]
    let mut scores = vec![0f32; n_q * p.n_head * n_pieces];
    let mut ent = vec![0f32; n_q * p.n_head];
    let mut abs = vec![0f32; n_q * p.n_head];
    for level in CpuLevel::available() {
        let cpu = Cpu::new(CpuConfig { level: Some(level), threads: 1 }).expect("level");
        let mask = base.as_mask();
        g.bench_function(format!("plain/{level:?}"), |b| {
            b.iter(|| cpu.attention(black_box(&q), &k, &v, &p, &mask, &mut out).unwrap())
        });
        g.bench_function(format!("select_k2/{level:?}"), |b| {
            b.iter(|| {
                let mut ex = AttnExtras {
                    group_scores: Some((layout.pieces(), &mut scores)),
                    scores_only: true,
                    ..Default::default()
                };
                cpu.attention_ext(black_box(&q), &k, &v, &p, &mask, &mut ex, &mut out).unwrap();
                let keep = select_pieces(&scores, n_q, p.n_head, n_pieces, Pooling::HeadsTokens, 2)
                    .unwrap();
                let kept = mask_without_dropped(&mask, n_q, layout.pieces(), &keep);
                cpu.attention(&q, &k, &v, &p, &kept.as_mask(), &mut out).unwrap();
            })
        });
        g.bench_function(format!("observe/{level:?}"), |b| {
            b.iter(|| {
                let mut ex = AttnExtras {
                    entropy: Some(&mut ent),
                    mean_abs_logit: Some(&mut abs),
                    ..Default::default()
                };
                cpu.attention_ext(black_box(&q), &k, &v, &p, &mask, &mut ex, &mut out).unwrap();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, selection);
criterion_main!(benches);
