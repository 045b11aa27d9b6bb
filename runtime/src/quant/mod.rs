//! Quantized block formats and their scalar reference implementation.
//!
//! The reference (dequantize, quantize, vec_dot) is the definition backends are tested
//! against; it favours clarity over speed.

pub mod blocks;

pub use blocks::*;
