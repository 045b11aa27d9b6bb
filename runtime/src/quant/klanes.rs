//! The summation order of ggml's generic Q3_K..Q6_K dots, so the reference reproduces them
//! bit for bit.
//!
//! Per super-block, ggml spreads the integer products over 8 lanes (element `e` goes to lane
//! `e % 8`), each lane an exact integer sum of `scale(e) * q(e) * q8(e)`. Each lane then
//! accumulates `d * lane` in its own f32 across super-blocks, and the 8 lane totals are added
//! to the result last, in lane order.

use crate::ggml_type::QK_K;

/// Eight f32 accumulators, one per lane.
#[derive(Default)]
pub(crate) struct KLanes {
    sums: [f32; 8],
}

impl KLanes {
    /// Adds one super-block: `d` is the combined f32 scale (weight d times Q8_K d),
    /// `q`/`q8` the integer values, `scale(e)` the integer sub-block scale of element `e`.
    pub(crate) fn add_block(
        &mut self,
        d: f32,
        q: &[i8; QK_K],
        q8: &[i8; QK_K],
        scale: impl Fn(usize) -> i32,
    ) {
        let mut lanes = [0i32; 8];
        for e in 0..QK_K {
            lanes[e % 8] += scale(e) * i32::from(q[e]) * i32::from(q8[e]);
        }
        for (s, &l) in self.sums.iter_mut().zip(&lanes) {
            *s += d * l as f32;
        }
    }

    /// `init + lane 0 + lane 1 + ... + lane 7`, left to right.
    pub(crate) fn finish(&self, init: f32) -> f32 {
        self.sums.iter().fold(init, |acc, &s| acc + s)
    }
}
