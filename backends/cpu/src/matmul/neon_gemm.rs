//! aarch64 NEON + dot-product GEMM kernels: the interleaved-tile microkernel (every
//! quantized type, through the shared sub-block format) and the float-weight tiles.
//!
//! Unsafe: every raw load is within a slice whose length the kernel asserts first; `sdot`
//! needs the `dotprod` feature the entry points enable.

use super::format::{SubFormat, GROUP};
use super::neon::{f16_at, hsum, ld8, sdot};
use super::{Acts, Tile};
use std::arch::aarch64::*;
use std::arch::asm;
use weft::GgmlType;

// ---------------------------------------------------------------------------------------
// GEMM microkernel: R activation rows x one interleaved tile of 4 weight rows. A tile chunk
// is 64 bytes ([weight row c][sub-block b][4 bytes]): one 16-byte register per weight row,
// so one `sdot` with a 16-byte activation chunk ([sub-block b][4 bytes]) gives the four
// sub-blocks' partial dots of one (activation row, weight row) pair. After each group the
// four sub-block lanes are scaled in f32 and reduced pairwise, so a row's accumulator holds
// the four weight rows' outputs in its lanes.

/// Activation rows per GEMM microkernel call at this level: 4 x 4 i32 accumulators, 4 f32
/// accumulators and the 4 weight registers fit NEON's 32 vector registers.
pub(super) const TILE_ROWS: usize = 4;

#[inline(always)]
unsafe fn tile_kernel<const R: usize, const CH: usize>(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    let bs = CH * 4;
    let ng = tile.check(fmt, acts, r0, R, CH, TILE_ROWS);
    // Q8_0 codes are w ^ 0x80: flipping the bit back gives the signed weights `sdot` takes,
    // so no offset correction is needed. Other codes are below 128 and used as they are.
    let signed = fmt.off == 128;
    let use_corr = fmt.off != 0 && !signed;
    // SAFETY: group g reads tile bytes [g*CH*64, (g+1)*CH*64) and tile metadata
    // [16g, 16g+16), activation bytes [g*GROUP*bs, (g+1)*GROUP*bs) of rows r0..r0+R and
    // their metadata [4g, 4g+4): all within the lengths asserted above.
    unsafe {
        let aq = |r: usize| acts.qs.as_ptr().add((r0 + r) * acts.q_stride).cast::<u8>();
        let am = |r: usize| (r0 + r) * acts.meta_stride;
        let flip = vdupq_n_s8(-128);
        let mut facc = [vdupq_n_f32(0.0); R];
        for g in 0..ng {
            let mut iacc = [[vdupq_n_s32(0); 4]; R];
            if use_corr {
                for r in 0..R {
                    let c = vld1q_s32(acts.corr.as_ptr().add(am(r) + g * GROUP));
                    iacc[r] = [c; 4];
                }
            }
            for t in 0..CH {
                let wp = tile.q.as_ptr().add((g * CH + t) * 64);
                let mut w = [ld8(wp), ld8(wp.add(16)), ld8(wp.add(32)), ld8(wp.add(48))];
                if signed {
                    w = w.map(|v| veorq_s8(v, flip));
                }
                for r in 0..R {
                    let x = ld8(aq(r).add(g * GROUP * bs + t * 16));
                    for c in 0..4 {
                        iacc[r][c] = sdot(iacc[r][c], w[c], x);
                    }
                }
            }
            let td = tile.d.as_ptr().add(g * 16);
            let dw =
                [vld1q_f32(td), vld1q_f32(td.add(4)), vld1q_f32(td.add(8)), vld1q_f32(td.add(12))];
            let tm = tile.m.as_ptr().add(g * 16);
            for r in 0..R {
                let da = vld1q_f32(acts.d.as_ptr().add(am(r) + g * GROUP));
                let mut v = [vdupq_n_f32(0.0); 4];
                for c in 0..4 {
                    v[c] = vmulq_f32(vcvtq_f32_s32(iacc[r][c]), vmulq_f32(dw[c], da));
                }
                if fmt.has_min {
                    let sa = vld1q_f32(acts.s.as_ptr().add(am(r) + g * GROUP));
                    for c in 0..4 {
                        v[c] = vfmaq_f32(v[c], vld1q_f32(tm.add(4 * c)), sa);
                    }
                }
                // Lane c of the sum: weight row c's four sub-blocks, pairwise.
                let s = vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
                facc[r] = vaddq_f32(facc[r], s);
            }
        }
        for r in 0..R {
            vst1q_f32(out[r].as_mut_ptr(), facc[r]);
        }
    }
}

/// Dispatch on the row count (R) and chunks per group (sub-block size / 4).
#[target_feature(enable = "neon,dotprod")]
pub(super) fn tile_neon(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    nr: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    macro_rules! go {
        ($ch:literal) => {
            match nr {
                1 => tile_kernel::<1, $ch>(fmt, acts, r0, tile, out),
                2 => tile_kernel::<2, $ch>(fmt, acts, r0, tile, out),
                3 => tile_kernel::<3, $ch>(fmt, acts, r0, tile, out),
                _ => tile_kernel::<4, $ch>(fmt, acts, r0, tile, out),
            }
        };
    }
    // SAFETY: this function enables the features the kernel needs; the kernel checks its
    // slice lengths.
    unsafe {
        if fmt.bs == 32 {
            go!(8)
        } else {
            go!(4)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Float weights (F32, F16, BF16) with f32 activations.

/// 4 f16 at `p` widened to f32 (`fcvtl`, base AArch64 SIMD: no FP16 arithmetic needed; its
/// intrinsic is not stable Rust yet).
///
/// # Safety
/// 8 readable bytes at `p`.
#[inline(always)]
pub(super) unsafe fn f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: the caller guarantees 8 readable bytes; the conversion is register-only.
    unsafe {
        let h = vld1_u16(p.cast());
        let r: float32x4_t;
        asm!(
            "fcvtl {r:v}.4s, {h:v}.4h",
            r = lateout(vreg) r,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
        r
    }
}

/// 4 weights at element `k` of a float row, widened to f32.
#[inline(always)]
unsafe fn load_w4(t: GgmlType, row: *const u8, k: usize) -> float32x4_t {
    // SAFETY: the caller guarantees elements k..k+4 exist.
    unsafe {
        match t {
            GgmlType::F32 => vld1q_f32(row.cast::<f32>().add(k)),
            GgmlType::F16 => f16x4(row.add(2 * k)),
            _ => vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(row.add(2 * k).cast()))),
        }
    }
}

/// One weight element as f32 (scalar tails).
#[inline(always)]
fn load_w1(t: GgmlType, row: &[u8], k: usize) -> f32 {
    match t {
        GgmlType::F32 => {
            f32::from_le_bytes([row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3]])
        }
        // SAFETY: 2 bytes at 2k exist (the slice index checks it).
        GgmlType::F16 => unsafe { f16_at(row[2 * k..2 * k + 2].as_ptr()) },
        _ => half::bf16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32(),
    }
}

/// Float tile: R activation rows x C weight rows; lanes hold k mod 4, the tail
/// k >= cols/4*4 is added in scalar afterwards: a fixed order for every output.
#[inline(always)]
unsafe fn float_tile<const R: usize, const C: usize>(
    t: GgmlType,
    cols: usize,
    w: &[&[u8]; C],
    x: &[&[f32]; R],
    out: &mut [[f32; C]; R],
) {
    let esz = t.type_size();
    for c in 0..C {
        assert!(w[c].len() >= cols * esz);
    }
    for r in 0..R {
        assert!(x[r].len() >= cols);
    }
    let k4 = cols / 4 * 4;
    // SAFETY: elements k < k4 <= cols are read from rows asserted to hold cols elements.
    unsafe {
        let mut acc = [[vdupq_n_f32(0.0); C]; R];
        let mut k = 0;
        while k < k4 {
            let mut xv = [vdupq_n_f32(0.0); R];
            for r in 0..R {
                xv[r] = vld1q_f32(x[r].as_ptr().add(k));
            }
            for c in 0..C {
                let wv = load_w4(t, w[c].as_ptr(), k);
                for r in 0..R {
                    acc[r][c] = vfmaq_f32(acc[r][c], wv, xv[r]);
                }
            }
            k += 4;
        }
        for r in 0..R {
            for c in 0..C {
                let mut s = hsum(acc[r][c]);
                for k in k4..cols {
                    s += load_w1(t, w[c], k) * x[r][k];
                }
                out[r][c] = s;
            }
        }
    }
}

/// Float matmul block: outputs `y[r][c]` (f32 [m, y_stride]) for activation rows
/// `x` (f32 [m, cols]) and the weight rows in `w` (whole rows), 4 x 4 at a time.
#[target_feature(enable = "neon")]
pub(super) fn float_rows_neon(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    x: &[f32],
    m: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    const R: usize = 4;
    const C: usize = 4;
    let rb = cols * t.type_size();
    let n = w.len() / rb;
    let mut c0 = 0;
    // SAFETY: the tiles check their slice lengths; NEON is baseline on aarch64.
    unsafe {
        while c0 < n {
            let nc = C.min(n - c0);
            let wr: [&[u8]; C] = std::array::from_fn(|c| &w[(c0 + c.min(nc - 1)) * rb..][..rb]);
            let mut r0 = 0;
            while r0 < m {
                let nr = R.min(m - r0);
                let xr: [&[f32]; R] =
                    std::array::from_fn(|r| &x[(r0 + r.min(nr - 1)) * cols..][..cols]);
                let mut out = [[0.0f32; C]; R];
                if nr == R {
                    float_tile::<R, C>(t, cols, &wr, &xr, &mut out);
                } else {
                    // Row tail: one row at a time (same per-output order as the full tile).
                    for r in 0..nr {
                        let mut o1 = [[0.0f32; C]; 1];
                        float_tile::<1, C>(t, cols, &wr, &[xr[r]], &mut o1);
                        out[r] = o1[0];
                    }
                }
                for r in 0..nr {
                    y[(r0 + r) * y_stride + c0..][..nc].copy_from_slice(&out[r][..nc]);
                }
                r0 += R;
            }
            c0 += C;
        }
    }
}
