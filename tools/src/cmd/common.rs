//! Pieces the model commands share: model resolution, the CPU backend, sampling flags.

use anyhow::{Context, Result};
use std::path::PathBuf;
use weft::sampling::SamplerConfig;
use weft::KvType;
use weft_cpu::{Cpu, CpuConfig, CpuLevel};

/// Build the CPU backend with `threads` workers (0: one per core). `WEFT_CPU=scalar|avx2|avx512`
/// forces a kernel level.
pub fn cpu(threads: usize) -> Result<Cpu> {
    let level = match std::env::var("WEFT_CPU") {
        Ok(s) if !s.is_empty() => {
            Some(CpuLevel::parse(&s).with_context(|| format!("WEFT_CPU={s}: unknown CPU level"))?)
        }
        _ => None,
    };
    Ok(Cpu::new(CpuConfig { level, threads })?.with_repack(!crate::global::get().no_repack))
}

/// A model name from the manifest or a path to a GGUF file; a manifest model missing from the
/// cache is fetched first.
pub fn model_path(name_or_path: &str) -> Result<PathBuf> {
    crate::fetch::ensure_model(name_or_path)
}

/// The KV cache type flag of the commands that build an engine.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct CacheArgs {
    /// KV cache element type, K and V together: f16 (default, as llama.cpp) or f32 (twice
    /// the memory, no rounding of K and V). The idea of llama.cpp's -ctk/-ctv
    /// (--cache-type-k/--cache-type-v), one value for both; quantized types are not supported.
    #[arg(long = "cache-type", value_name = "TYPE", default_value = "f16", value_parser = parse_kv_type)]
    pub cache_type: KvType,
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    s.parse::<KvType>().map_err(|e| e.to_string())
}

/// Sampling flags (llama.cpp's names and defaults).
#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 40)]
    pub top_k: i32,
    /// Keep the most likely tokens up to this total probability (1 = off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0 = off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n tokens (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Random seed (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    pub fn config(&self) -> SamplerConfig {
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        SamplerConfig {
            temp: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            penalty_last_n: self.repeat_last_n,
            seed,
            ..SamplerConfig::default()
        }
    }
}

/// Resident and peak resident memory of this process in bytes (`VmRSS`, `VmHWM` of
/// /proc/self/status), where the OS reports them.
pub fn resident_memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// One stderr line on memory: the model file, the KV cache, and what the process holds
/// (issue #5's budget: resident <= file + KV cache + 100 MiB).
pub fn memory_line(file_bytes: u64, kv_bytes: u64) -> String {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let mut s = format!(
        "weft: memory: model file {:.1} MiB, KV cache {:.1} MiB",
        mib(file_bytes),
        mib(kv_bytes)
    );
    if let Some((rss, peak)) = resident_memory() {
        s += &format!(", resident {:.1} MiB (peak {:.1} MiB)", mib(rss), mib(peak));
    }
    s
}
