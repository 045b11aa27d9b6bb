//! End-to-end forward passes on the default models (CPU, best level): one decode step at a
//! short context (tg) and a 64-token prefill from an empty cache (pp64), at 1 and 2 threads.
//! Models come from `WEFT_MODELS` or the default cache; a missing model is skipped with a note.
//!
//! `cargo bench -p weft-benches --bench model [-- filter]`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::path::PathBuf;
use std::time::Duration;
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::model::Model;
use weft_cpu::{Cpu, CpuConfig};

fn model_path(file: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("WEFT_MODELS").map(PathBuf::from).or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(cache.join("weft").join("models"))
    })?;
    let p = dir.join(file);
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("note: {} not found; skipping", p.display());
        None
    }
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("model");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let models = [
        ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("qwen2.5", "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
    ];
    for (name, file) in models {
        let Some(path) = model_path(file) else { continue };
        let gguf = GgufFile::open(&path).expect("open model");
        for threads in [1, 2] {
            let cpu = Cpu::new(CpuConfig { level: None, threads }).expect("cpu");
            let model = Model::load(&cpu, &gguf).expect("load");
            let cfg =
                EngineConfig { n_ctx: 256, n_ubatch: 64, n_out: 1, ..EngineConfig::default() };
            let mut engine = Engine::new(&model, cfg).expect("engine");
            let prompt: Vec<u32> = (0..64u32).map(|i| (i * 7919) % 1000 + 100).collect();
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/tg"), threads),
                &threads,
                |b, _| {
                    engine.clear();
                    engine.eval(&prompt[..16]).expect("prefill");
                    b.iter(|| {
                        if engine.tokens().len() >= 250 {
                            engine.truncate(16);
                        }
                        engine.eval(&[42]).expect("decode");
                    })
                },
            );
            g.throughput(Throughput::Elements(prompt.len() as u64));
            g.bench_with_input(
                BenchmarkId::new(format!("{name}/pp64"), threads),
                &threads,
                |b, _| {
                    b.iter(|| {
                        engine.clear();
                        engine.eval(&prompt).expect("prefill");
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, forward);
criterion_main!(benches);
