//! `weft bench`: llama-bench's protocol. pp<N>: one N-token prefill from an empty cache;
//! tg<N>: N single-token forwards from an empty cache. Random tokens; one warm-up run, then
//! `-r` timed repetitions, reported as tokens/s mean ± standard deviation.

use super::common::{self, CacheArgs};
use anyhow::{Context, Result};
use std::time::Instant;
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::model::Model;
use weft::sampling::Rng;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model: a manifest name or a GGUF path.
    #[arg(short, long, default_value = "smollm2-135m")]
    pub model: String,
    /// Prompt tokens of the pp test (0: skip).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens of the tg test (0: skip).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Thread counts to test, comma-separated.
    #[arg(short, long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Timed repetitions per test.
    #[arg(short, long = "repetitions", default_value_t = 5)]
    pub r: usize,
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Print JSON records instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Backend to measure: cpu (vulkan is not built yet).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "vulkan"])]
    pub backend: String,
}

struct Record {
    threads: usize,
    test: String,
    n_prompt: usize,
    n_gen: usize,
    samples: Vec<f64>,
}

/// Mean and sample standard deviation.
pub(crate) fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 {
        (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (mean, sd)
}

fn human_size(bytes: u64) -> String {
    let mib = bytes as f64 / (1024.0 * 1024.0);
    if mib >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else {
        format!("{mib:.2} MiB")
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.r > 0, "-r must be at least 1");
    anyhow::ensure!(
        args.backend == "cpu",
        "--backend {}: the Vulkan backend is not built yet (crate weft-vulkan is empty); use --backend cpu",
        args.backend
    );
    let path = common::model_path(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let size: u64 = file.tensors().iter().map(|t| t.n_bytes).sum();
    let params: u64 = file.tensors().iter().map(|t| t.dims.iter().product::<u64>()).sum();
    let desc = format!(
        "{} {}",
        file.architecture().unwrap_or("?"),
        file.str_opt("general.size_label").ok().flatten().unwrap_or("")
    );
    let mut records = Vec::new();
    let mut backend_name = String::from("CPU");
    for &threads in &args.threads {
        let cpu = common::cpu(threads)?;
        backend_name = format!("CPU {}", cpu.level());
        let model = Model::load(&cpu, &file)?;
        let n_vocab = model.n_vocab() as u64;
        let n_ctx = (args.n_prompt + args.n_gen).max(1);
        let mut engine = Engine::new(
            &model,
            EngineConfig { n_ctx, n_ubatch: 512, n_out: 1, kv_type: args.cache.cache_type },
        )?;
        let mut rng = Rng::new(1234);
        let mut tokens = vec![0u32; args.n_prompt.max(1)];
        let random = |rng: &mut Rng| (rng.next_u64() % n_vocab) as u32;
        if args.n_prompt > 0 {
            let mut samples = Vec::new();
            for rep in 0..=args.r {
                tokens.iter_mut().for_each(|t| *t = random(&mut rng));
                engine.clear();
                let t0 = Instant::now();
                engine.eval(&tokens[..args.n_prompt])?;
                let s = t0.elapsed().as_secs_f64();
                if rep > 0 {
                    samples.push(args.n_prompt as f64 / s);
                }
            }
            records.push(Record {
                threads,
                test: format!("pp{}", args.n_prompt),
                n_prompt: args.n_prompt,
                n_gen: 0,
                samples,
            });
        }
        if args.n_gen > 0 {
            let mut samples = Vec::new();
            for rep in 0..=args.r {
                engine.clear();
                let t0 = Instant::now();
                let mut tok = random(&mut rng);
                for _ in 0..args.n_gen {
                    engine.eval(&[tok])?;
                    tok = random(&mut rng);
                }
                let s = t0.elapsed().as_secs_f64();
                if rep > 0 {
                    samples.push(args.n_gen as f64 / s);
                }
            }
            records.push(Record {
                threads,
                test: format!("tg{}", args.n_gen),
                n_prompt: 0,
                n_gen: args.n_gen,
                samples,
            });
        }
    }
    if args.json {
        let v: Vec<_> = records
            .iter()
            .map(|r| {
                let (mean, sd) = mean_sd(&r.samples);
                serde_json::json!({
                    "model": path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "model_size": size,
                    "model_n_params": params,
                    "backend": backend_name,
                    "threads": r.threads,
                    "type_k": args.cache.cache_type.name(),
                    "type_v": args.cache.cache_type.name(),
                    "test": r.test,
                    "n_prompt": r.n_prompt,
                    "n_gen": r.n_gen,
                    "avg_ts": mean,
                    "stddev_ts": sd,
                    "samples_ts": r.samples,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    // As llama-bench: the type_k / type_v columns appear only when not the default (f16).
    let ty = args.cache.cache_type;
    let kv_cols = |k: &str, v: &str| {
        if ty == weft::KvType::default() {
            String::new()
        } else {
            format!(" {k:>6} | {v:>6} |")
        }
    };
    println!(
        "| {:<24} | {:>10} | {:>10} | {:<12} | {:>7} |{} {:>8} | {:>20} |",
        "model",
        "size",
        "params",
        "backend",
        "threads",
        kv_cols("type_k", "type_v"),
        "test",
        "t/s"
    );
    println!(
        "| {:-<24} | {:->10} | {:->10} | {:-<12} | {:->7} |{} {:->8} | {:->20} |",
        "",
        "",
        "",
        "",
        "",
        kv_cols("------", "------"),
        "",
        ""
    );
    for r in &records {
        let (mean, sd) = mean_sd(&r.samples);
        println!(
            "| {:<24} | {:>10} | {:>10} | {:<12} | {:>7} |{} {:>8} | {:>20} |",
            desc.trim(),
            human_size(size),
            format!("{:.2} M", params as f64 / 1e6),
            backend_name,
            r.threads,
            kv_cols(ty.name(), ty.name()),
            r.test,
            format!("{mean:.2} ± {sd:.2}")
        );
    }
    Ok(())
}
