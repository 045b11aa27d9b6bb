//! Elementwise ops: residual / bias add and the SwiGLU combine.

use super::shape_err;
use super::simd::Kernels;
use crate::{Cpu, CpuError};
use weft::ops::check_broadcast;

/// Elements per parallel item of the elementwise ops.
const CHUNK: usize = 1 << 14;

impl Cpu {
    /// `a += b`; `b` is as long as `a` or one row broadcast over `a`'s rows (a bias).
    /// Plain Rust: the compiler vectorises it and it is bound by memory, not arithmetic.
    pub fn add(&self, a: &mut [f32], b: &[f32]) -> Result<(), CpuError> {
        check_broadcast("add", a.len(), b.len()).map_err(shape_err)?;
        for row in a.chunks_exact_mut(b.len()) {
            for (x, &y) in row.iter_mut().zip(b) {
                *x += y;
            }
        }
        Ok(())
    }

    /// `gate = silu(gate) * up` with silu(x) = x / (1 + e^-x); gate, up: f32 [n_tokens, n_ff].
    pub fn silu_mul(&self, gate: &mut [f32], up: &[f32]) -> Result<(), CpuError> {
        if gate.len() != up.len() {
            return Err(CpuError::Shape {
                op: "silu_mul",
                detail: format!("gate has {} values, up has {}", gate.len(), up.len()),
            });
        }
        let k = Kernels::for_cpu(self);
        let work = gate.len() * 8;
        self.for_each_chunk(gate, CHUNK, work, |i, g| (k.silu_mul)(g, &up[i * CHUNK..][..g.len()]));
        Ok(())
    }
}
