//! Attention over the f16 KV cache with a causal or ranges mask (flash-style: no
//! [n_q, n_cells] probability matrix; see `simd::OnlineSoftmax` for the per-row loop).

use super::shape_err;
use super::simd::{AttnHead, Kernels};
use crate::{Cpu, CpuError};
use half::f16;
use weft::ops::{AttnMask, AttnParams};

impl Cpu {
    /// `out = softmax(scale * q . k over the visible cells) . v` for each query row and head;
    /// query head h reads KV head h / (n_head / n_head_kv).
    ///
    /// q: f32 [n_q, n_head, head_dim]; k, v: f16 [n_cells, n_head_kv, head_dim];
    /// out: f32 [n_q, n_head * head_dim]. The mask must give every row at least one cell.
    ///
    /// Work items are (query row, head) pairs, each computed alone over its visible ranges in
    /// a fixed order with stack temporaries only (an f32 [ATTN_BLOCK] score block; the
    /// output row is the accumulator).
    pub fn attention(
        &self,
        q: &[f32],
        k: &[f16],
        v: &[f16],
        p: &AttnParams,
        mask: &AttnMask<'_>,
        out: &mut [f32],
    ) -> Result<(), CpuError> {
        let (n_q, _n_cells) =
            p.check(q.len(), k.len(), v.len(), out.len(), mask).map_err(shape_err)?;
        let hd = p.head_dim;
        let kern = Kernels::for_cpu(self);
        let visible: usize = (0..n_q).map(|i| mask.visible(i)).sum();
        let work = visible.saturating_mul(p.n_head * hd * 2);
        self.for_each_chunk(out, hd, work, |idx, o| {
            let (i, h) = (idx / p.n_head, idx % p.n_head);
            let head = AttnHead {
                q: &q[idx * hd..][..hd],
                k,
                v,
                kv_row: p.n_head_kv * hd,
                kv_off: p.kv_head(h) * hd,
                scale: p.scale,
            };
            (kern.attend)(&head, &mask.row(i), o);
        });
        Ok(())
    }
}
