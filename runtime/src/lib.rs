//! weft runtime: GGUF files, quantized formats and their scalar reference, tokenizers,
//! models, the parallel-context layout and selection policy.
//!
//! This crate has no SIMD intrinsics and no GPU code: backends (`weft-cpu`, `weft-vulkan`)
//! depend on it, never the reverse.
//!
//! # Parallel context encoding
//!
//! [`parallel::ParallelEngine`] encodes a [`layout::Request`] — an optional shared sink,
//! documents encoded independently of each other, and a question — with the options of
//! [`parallel::ParallelConfig`]: position policy, BOS policy, selective attention (keep the K
//! most relevant documents in every layer), APE / PCW modes and the attention-entropy
//! observer. A [`doc_cache::DocCache`] keeps encoded documents (memory and disk) so that a
//! later request over the same documents encodes only its question. The example runs on any
//! [`backend::Backend`] (the CPU one is `weft_cpu::Cpu`):
//!
//! ```no_run
//! use weft::doc_cache::DocCache;
//! use weft::engine::{EngineConfig, GenerateParams};
//! use weft::layout::Request;
//! use weft::parallel::{ParallelConfig, ParallelEngine};
//! use weft::sampling::{Sampler, SamplerConfig};
//!
//! fn answer<B: weft::backend::Backend>(
//!     backend: &B,
//!     file: &weft::gguf::GgufFile,
//! ) -> Result<String, Box<dyn std::error::Error>> {
//!     let model = weft::model::Model::load(backend, file)?;
//!     let tok = weft::tokenizer::Tokenizer::from_gguf(file)?;
//!     let mut engine = ParallelEngine::new(&model, EngineConfig::default())?;
//!     engine.set_doc_cache(DocCache::new(DocCache::model_fingerprint(file), 256 << 20));
//!     let enc = |s: &str| tok.encode(s, false, false);
//!     let req = Request {
//!         sink: Some(enc("Given the following contexts, answer the final question accordingly:\n\n")?),
//!         pieces: vec![enc("Paris is the capital of France.\n\n")?, enc("Rome is the capital of Italy.\n\n")?],
//!         query: enc("Question: what is the capital of Italy?\nAnswer:")?,
//!     };
//!     // Keep the most relevant document in every layer; record attention entropy.
//!     let cfg = ParallelConfig { select_k: 1, observe: true, ..Default::default() };
//!     let stats = engine.encode(&req, &cfg)?;
//!     let entropy = engine.stats().map_or(0.0, |s| s.mean_entropy());
//!     eprintln!("{} document tokens encoded, mean query entropy {entropy:.3}", stats.n_context_eval);
//!     let mut sampler = Sampler::new(SamplerConfig::greedy());
//!     let params = GenerateParams { max_tokens: 16, stop: vec!["\n".into()] };
//!     let mut text = String::new();
//!     engine.decode(&tok, &mut sampler, &params, |t| {
//!         text.push_str(t);
//!         true
//!     })?;
//!     Ok(text)
//! }
//! ```
//!
//! `weft run --doc FILE... -p QUESTION` and `weft chat --doc FILE...` are the same from
//! the command line.

pub mod backend;
pub mod doc_cache;
pub mod engine;
pub mod ggml_type;
pub mod gguf;
pub mod kv_cache;
pub mod kv_type;
pub mod layout;
pub mod manifest;
pub mod model;
pub mod observer;
pub mod ops;
pub mod parallel;
pub mod perplexity;
pub mod quant;
pub mod sampling;
pub mod selection;
pub mod tokenizer;

pub use ggml_type::GgmlType;
pub use kv_type::{KvElem, KvType};
