//! aarch64 NEON + dot-product GEMM kernels: the panel microkernel (every quantized type,
//! through the shared sub-block format) and the float-weight tiles.
//!
//! Unsafe: every raw load is within a slice whose length the kernel asserts first; `sdot`
//! needs the `dotprod` feature the entry points enable.

use super::format::SubFormat;
use super::neon::{f16_at, hsum, ld8, sdot};
use super::{check_panels, ActBlock, Panel};
use std::arch::aarch64::*;
use std::arch::asm;
use weft::GgmlType;

// ---------------------------------------------------------------------------------------
// GEMM microkernel: R activation rows x P panels of 4 weight rows (see `format::pack_panel`).
// Per sub-block, each 16-byte panel chunk (4 codes of 4 rows) goes through `sdot` with a
// broadcast 4-byte activation chunk, so each i32 lane is one weight row; then one
// int-to-float conversion and FMA per accumulator with `dw * da`: the same operations in the
// same order as the x86 levels, so every level gives bit-identical results.

/// Weight rows per GEMM panel: one register of i32 lanes.
pub(super) const PANEL: usize = 4;
/// Panels and activation rows per microkernel call: 2 x 6 keeps 12 i32 and 12 f32
/// accumulators, the two weight chunks and a broadcast in NEON's 32 vector registers.
pub(super) const PANELS: usize = 2;
pub(super) const TILE_ROWS: usize = 6;

#[inline(always)]
unsafe fn panel_kernel<const P: usize, const CH: usize>(
    fmt: SubFormat,
    a: &ActBlock,
    panels: &[Panel],
    out: &mut [[f32; 32]],
) {
    let bs = CH * 4;
    const R: usize = TILE_ROWS;
    assert!(panels.len() == P && out.len() >= R);
    let n = check_panels(fmt, a, R, bs, PANEL, panels);
    // Q8_0 codes are w ^ 0x80: flipping the bit back gives the signed weights `sdot` takes,
    // so no offset correction is needed. Other codes are below 128 and used as they are.
    let signed = fmt.off == 128;
    let use_corr = fmt.off != 0 && !signed;
    // SAFETY: sub-block j reads panel bytes [j*bs*4, (j+1)*bs*4) and metadata [4j, 4j+4),
    // activation codes [j*bs, (j+1)*bs) of rows r0..r0+R and their metadata [j]: all within
    // the lengths asserted above.
    unsafe {
        // Activation chunk k of row r is 4 bytes at (k * R + r) * 4; metadata of
        // sub-block j at j * R + r.
        let aq = a.qs.as_ptr().cast::<u8>();
        let flip = vdupq_n_s8(-128);
        let mut facc = [[vdupq_n_f32(0.0); P]; R];
        for j in 0..n {
            let mut iacc = [[vdupq_n_s32(0); P]; R];
            if use_corr {
                for r in 0..R {
                    iacc[r] = [vdupq_n_s32(*a.corr.as_ptr().add(j * R + r)); P];
                }
            }
            for t in 0..CH {
                let mut w = [vdupq_n_s8(0); P];
                for p in 0..P {
                    w[p] = ld8(panels[p].q.as_ptr().add((j * CH + t) * 16));
                    if signed {
                        w[p] = veorq_s8(w[p], flip);
                    }
                }
                for r in 0..R {
                    let x = vreinterpretq_s8_s32(vdupq_n_s32(
                        aq.add(((j * CH + t) * R + r) * 4).cast::<i32>().read_unaligned(),
                    ));
                    for p in 0..P {
                        iacc[r][p] = sdot(iacc[r][p], w[p], x);
                    }
                }
            }
            let mut dw = [vdupq_n_f32(0.0); P];
            for p in 0..P {
                dw[p] = vld1q_f32(panels[p].d.as_ptr().add(j * PANEL));
            }
            for r in 0..R {
                let da = vdupq_n_f32(*a.d.as_ptr().add(j * R + r));
                for p in 0..P {
                    facc[r][p] =
                        vfmaq_f32(facc[r][p], vcvtq_f32_s32(iacc[r][p]), vmulq_f32(dw[p], da));
                }
            }
            if fmt.has_min {
                let mut mw = [vdupq_n_f32(0.0); P];
                for p in 0..P {
                    mw[p] = vld1q_f32(panels[p].m.as_ptr().add(j * PANEL));
                }
                for r in 0..R {
                    let sa = vdupq_n_f32(*a.s.as_ptr().add(j * R + r));
                    for p in 0..P {
                        facc[r][p] = vfmaq_f32(facc[r][p], mw[p], sa);
                    }
                }
            }
        }
        for r in 0..R {
            for p in 0..P {
                vst1q_f32(out[r].as_mut_ptr().add(PANEL * p), facc[r][p]);
            }
        }
    }
}

/// `out[r][..4 * panels.len()]` = row r of activation block `a` times the panels' rows.
#[target_feature(enable = "neon,dotprod")]
pub(super) fn panels_neon(fmt: SubFormat, a: &ActBlock, panels: &[Panel], out: &mut [[f32; 32]]) {
    // SAFETY: this function enables the features the kernel needs; the kernel checks its
    // slice lengths.
    unsafe {
        match (panels.len(), fmt.bs) {
            (1, 32) => panel_kernel::<1, 8>(fmt, a, panels, out),
            (1, _) => panel_kernel::<1, 4>(fmt, a, panels, out),
            (_, 32) => panel_kernel::<2, 8>(fmt, a, panels, out),
            _ => panel_kernel::<2, 4>(fmt, a, panels, out),
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
