//! `weft bench-parallel`: the speed claims of parallel context encoding, measured end to end
//! on a model (random tokens; one warm-up, then `-r` timed repetitions, mean ± sd; the two
//! sides of each comparison run alternately, so a shared machine's load hits both alike):
//!
//! - `encode`: a context of `-c` tokens (sink + P pieces + a 32-token question) encoded with
//!   full causal attention and with parallel encoding for each P of `--pieces`. Parallel
//!   encoding must not be slower, and gets cheaper as P grows (attention shrinks by ~P).
//! - `cache`: time to first token for `--cache-docs` documents of `--cache-len` tokens and a
//!   32-token question, cold (every document encoded) and on a document-cache hit.
//! - `select`: the query's encode time with selective attention (K = 2, heads+tokens) over
//!   16 pieces against no selection, on the same context.

use super::bench::mean_sd;
use super::common;
use anyhow::{Context, Result};
use std::time::Instant;
use weft::doc_cache::DocCache;
use weft::engine::{Engine, EngineConfig};
use weft::gguf::GgufFile;
use weft::layout::Request;
use weft::model::Model;
use weft::parallel::{ParallelConfig, ParallelEngine};
use weft::sampling::Rng;
use weft_cpu::Cpu;

#[derive(clap::Args, Debug)]
pub struct BenchParallelArgs {
    /// Model: a manifest name or a GGUF path.
    #[arg(short, long, default_value = "qwen2.5-0.5b")]
    pub model: String,
    /// Total context of the encode test, in tokens.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    /// Piece counts of the encode test.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    pub pieces: Vec<usize>,
    /// Documents and tokens per document of the cache test.
    #[arg(long, default_value_t = 8)]
    pub cache_docs: usize,
    #[arg(long, default_value_t = 512)]
    pub cache_len: usize,
    /// Worker threads (0: one per core).
    #[arg(short, long, default_value_t = 0)]
    pub threads: usize,
    /// Timed repetitions per test.
    #[arg(short, long = "repetitions", default_value_t = 3)]
    pub r: usize,
    /// Tests to run: encode, cache, select.
    #[arg(long, value_delimiter = ',', default_value = "encode,cache,select")]
    pub tests: Vec<String>,
}

const SINK: usize = 16;
const QUERY: usize = 32;

struct Bench<'m, 'a> {
    model: &'m Model<'a, Cpu>,
    rng: Rng,
    r: usize,
}

impl Bench<'_, '_> {
    fn tokens(&mut self, n: usize) -> Vec<u32> {
        let v = self.model.n_vocab() as u64;
        (0..n).map(|_| (self.rng.next_u64() % v) as u32).collect()
    }

    /// A request of `n_ctx` tokens in all: sink, `p` pieces of equal length, query.
    fn request(&mut self, n_ctx: usize, p: usize) -> Request {
        let per = (n_ctx - SINK - QUERY) / p;
        Request {
            sink: Some(self.tokens(SINK)),
            pieces: (0..p).map(|_| self.tokens(per)).collect(),
            query: self.tokens(QUERY),
        }
    }

    /// Seconds of `a` and of `b` (mean, sd), one warm-up each, then `r` timed runs of
    /// each, alternating, so that a shared machine's changing load hits both alike.
    fn time_pair(
        &self,
        mut a: impl FnMut() -> Result<()>,
        mut b: impl FnMut() -> Result<()>,
    ) -> Result<((f64, f64), (f64, f64))> {
        a()?;
        b()?;
        let (mut sa, mut sb) = (Vec::with_capacity(self.r), Vec::with_capacity(self.r));
        for _ in 0..self.r {
            let t0 = Instant::now();
            a()?;
            sa.push(t0.elapsed().as_secs_f64());
            let t0 = Instant::now();
            b()?;
            sb.push(t0.elapsed().as_secs_f64());
        }
        Ok((mean_sd(&sa), mean_sd(&sb)))
    }
}

pub fn run(args: BenchParallelArgs) -> Result<()> {
    anyhow::ensure!(args.r > 0, "-r must be at least 1");
    anyhow::ensure!(
        args.pieces.iter().all(|&p| p > 0 && p * 2 <= args.ctx_size.saturating_sub(SINK + QUERY)),
        "--pieces must be positive and leave at least 2 tokens per piece of -c {}",
        args.ctx_size
    );
    let path = common::model_path(&args.model)?;
    let file = GgufFile::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let cpu = common::cpu(args.threads)?;
    let model = Model::load(&cpu, &file)?;
    println!(
        "model {} | CPU {} x{} | {} repetitions, seconds mean ± sd",
        args.model,
        cpu.level(),
        cpu.threads(),
        args.r
    );
    let mut b = Bench { model: &model, rng: Rng::new(42), r: args.r };
    let want = |t: &str| args.tests.iter().any(|x| x == t);
    let cfg =
        |n_ctx: usize| EngineConfig { n_ctx, n_ubatch: 512, n_out: 1, ..EngineConfig::default() };

    if want("encode") {
        let n = args.ctx_size;
        println!("\nencode: {n} tokens (sink {SINK}, question {QUERY})");
        println!("| P | full attention (s) | parallel (s) | parallel / full |");
        println!("|---|---|---|---|");
        let mut full = Engine::new(&model, cfg(n))?;
        let mut par = ParallelEngine::new(&model, cfg(n))?;
        for &p in &args.pieces {
            let req = b.request(n, p);
            let all: Vec<u32> = req
                .sink
                .iter()
                .flatten()
                .chain(req.pieces.iter().flatten())
                .chain(&req.query)
                .copied()
                .collect();
            let ((tf, sf), (tp, sp)) = b.time_pair(
                || {
                    full.clear();
                    full.eval(&all)?;
                    Ok(())
                },
                || {
                    par.clear();
                    par.encode(&req, &ParallelConfig::default())?;
                    Ok(())
                },
            )?;
            println!("| {p} | {tf:.3} ± {sf:.3} | {tp:.3} ± {sp:.3} | {:.3} |", tp / tf);
        }
    }

    if want("cache") {
        let (d, len) = (args.cache_docs, args.cache_len);
        let n = SINK + d * len + QUERY;
        let req = b.request(n, d);
        println!(
            "\ncache: time to first token, {d} documents x {len} tokens + {QUERY}-token question"
        );
        // Cold: a fresh cache each time, every document encoded. Hit: the cache filled
        // once, so each run copies the sink and documents and encodes the question only.
        let c = ParallelConfig::default();
        let mut cold = ParallelEngine::new(&model, cfg(n))?;
        let mut hit = ParallelEngine::new(&model, cfg(n))?;
        hit.set_doc_cache(DocCache::new("bench", 1 << 30));
        hit.encode(&req, &c)?;
        let ((tc, sc), (th, sh)) = b.time_pair(
            || {
                cold.clear();
                cold.set_doc_cache(DocCache::new("bench", 1 << 30));
                cold.encode(&req, &c)?;
                Ok(())
            },
            || {
                hit.clear();
                let s = hit.encode(&req, &c)?;
                anyhow::ensure!(s.n_context_eval == 0, "the cache missed");
                Ok(())
            },
        )?;
        println!("| cold (s) | cache hit (s) | speed-up |");
        println!("|---|---|---|");
        println!("| {tc:.3} ± {sc:.3} | {th:.4} ± {sh:.4} | {:.1}x |", tc / th);
    }

    if want("select") {
        let n = args.ctx_size;
        let req = b.request(n, 16);
        println!("\nselect: question of {QUERY} tokens over 16 pieces, {n} tokens; only the question is timed");
        // Two engines hold the same encoded documents; each run re-encodes only the question.
        let off = ParallelConfig::default();
        let on = ParallelConfig { select_k: 2, ..ParallelConfig::default() };
        let mut e0 = ParallelEngine::new(&model, cfg(n))?;
        let mut e1 = ParallelEngine::new(&model, cfg(n))?;
        e0.encode(&req, &off)?;
        e1.encode(&req, &on)?;
        let query_only = |e: &mut ParallelEngine<'_, '_, Cpu>, c: &ParallelConfig| -> Result<()> {
            let s = e.encode(&req, c)?;
            anyhow::ensure!(s.n_context_eval == 0, "documents were encoded again");
            Ok(())
        };
        let ((t0, s0), (t1, s1)) =
            b.time_pair(|| query_only(&mut e0, &off), || query_only(&mut e1, &on))?;
        println!("| no selection (s) | K = 2 (s) | with / without |");
        println!("|---|---|---|");
        println!("| {t0:.4} ± {s0:.4} | {t1:.4} ± {s1:.4} | {:.3} |", t1 / t0);
    }
    Ok(())
}
