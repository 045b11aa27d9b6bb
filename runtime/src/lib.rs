//! weft runtime: GGUF files, quantized formats and their scalar reference, tokenizers,
//! models, the parallel-context layout and selection policy.
//!
//! This crate has no SIMD intrinsics and no GPU code: backends (`weft-cpu`, `weft-vulkan`)
//! depend on it, never the reverse.

pub mod backend;
pub mod doc_cache;
pub mod engine;
pub mod ggml_type;
pub mod gguf;
pub mod kv_cache;
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
