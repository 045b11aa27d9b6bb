//! Tokenizer throughput on Pride and Prejudice (~700 KB of English prose, from the reference
//! outputs; `WEFT_REFS` overrides `../shared/refs`), for both default models (`WEFT_MODELS`
//! overrides the model cache). Missing files are skipped with a note.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weft::gguf::GgufFile;
use weft::tokenizer::Tokenizer;

fn refs_dir() -> PathBuf {
    match std::env::var_os("WEFT_REFS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/refs"),
    }
}

fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WEFT_MODELS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("weft").join("models")
}

fn bench_tokenizer(c: &mut Criterion) {
    let text_path = refs_dir().join("pride-and-prejudice.txt");
    let Ok(text) = std::fs::read_to_string(&text_path) else {
        eprintln!("note: {} not found; skipping tokenizer benches", text_path.display());
        return;
    };
    let mut g = c.benchmark_group("tokenize_pride_and_prejudice");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(text.len() as u64));
    for (name, file) in [
        ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ("qwen2.5", "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
    ] {
        let path = models_dir().join(file);
        let tok = match GgufFile::open(&path).map(|f| Tokenizer::from_gguf(&f)) {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => panic!("{}: {e}", path.display()),
            Err(e) => {
                eprintln!("note: {e}; skipping {name}");
                continue;
            }
        };
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| tok.encode(std::hint::black_box(&text), false, false).expect("encode"))
        });
        let ids = tok.encode(&text, false, false).expect("encode");
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| tok.decode(std::hint::black_box(&ids)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_tokenizer);
criterion_main!(benches);
