//! Rotary position embedding with per-token positions (ggml_rope_ext without YaRN).

use super::shape_err;
use super::simd::Kernels;
use crate::{Cpu, CpuError};
use weft::ops::{RopeParams, RopeStyle};

/// Largest rotated dimension count supported: the per-token cos/sin tables are
/// f32 [MAX_N_ROT] stack arrays (real models rotate at most 256 dims).
pub const MAX_N_ROT: usize = 1024;

impl Cpu {
    /// Rotates `x: f32 [n_tokens, n_head, head_dim]` in place; token t is at `positions[t]`.
    /// Angles are computed in f64 once per token (shared by its heads), so every level
    /// rotates by the same cos/sin values.
    pub fn rope(
        &self,
        x: &mut [f32],
        n_head: usize,
        positions: &[i32],
        p: &RopeParams,
    ) -> Result<(), CpuError> {
        p.check(x.len(), n_head, positions.len()).map_err(shape_err)?;
        if p.n_rot > MAX_N_ROT {
            return Err(CpuError::Shape {
                op: "rope",
                detail: format!("n_rot {} exceeds {MAX_N_ROT}", p.n_rot),
            });
        }
        let half = p.n_rot / 2;
        // f64 [n_rot/2]: the angle of each pair at position 1.
        let mut freq = [0f64; MAX_N_ROT / 2];
        for (i, f) in freq[..half].iter_mut().enumerate() {
            *f = p.theta(1, i);
        }
        let freq = &freq[..half];
        let k = Kernels::for_cpu(self);
        let tok_len = n_head * p.head_dim;
        self.for_each_chunk(x, tok_len, x.len() * 2, |t, tok| {
            let pos = positions[t] as f64;
            // f32 [n_rot] (Norm: cos per element, sin signed (-s, +s) per pair) or
            // f32 [n_rot/2] (NeoX: plain cos / sin per pair).
            let mut cos = [0f32; MAX_N_ROT];
            let mut sin = [0f32; MAX_N_ROT];
            for (i, &f) in freq.iter().enumerate() {
                let (s, c) = (pos * f).sin_cos();
                let (s, c) = (s as f32, c as f32);
                match p.style {
                    RopeStyle::Norm => {
                        cos[2 * i] = c;
                        cos[2 * i + 1] = c;
                        sin[2 * i] = -s;
                        sin[2 * i + 1] = s;
                    }
                    RopeStyle::Neox => {
                        cos[i] = c;
                        sin[i] = s;
                    }
                }
            }
            let (rot, n_tab) = match p.style {
                RopeStyle::Norm => (k.rope_norm, p.n_rot),
                RopeStyle::Neox => (k.rope_neox, half),
            };
            for head in tok.chunks_exact_mut(p.head_dim) {
                rot(head, &cos[..n_tab], &sin[..n_tab]);
            }
        });
        Ok(())
    }
}
