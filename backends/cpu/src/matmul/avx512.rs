//! AVX-512 (F/BW/VL/DQ + VNNI) kernels.
//!
//! GEMV reuses the 256-bit bodies of `avx2.rs` with the EVEX `vpdpbusd` (decode is bound by
//! memory bandwidth, and ymm ops issue on more ports). The GEMM microkernel is 512-bit: one
//! zmm holds a 64-byte panel chunk (4 codes of 16 weight rows), each activation chunk is a
//! 4-byte broadcast (a load, no shuffle), and one `vpdpbusd` does 64 multiply-adds.
//!
//! Unsafe: every raw load is within a slice whose length is asserted first; the intrinsics
//! need the features the entry points enable.

use super::avx2::{self, ActRow, Dot};
use super::avx2_gemm;
use super::format::SubFormat;
use super::{check_panels, ActBlock, Panel, Work};
use std::arch::x86_64::*;
use weft::GgmlType;

/// AVX-512 VNNI `vpdpbusd` on ymm (EVEX, needs AVX512VL).
pub(super) struct Avx512Vnni;

impl Dot for Avx512Vnni {
    const FULL_U8: bool = true;
    #[inline(always)]
    unsafe fn dot(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: AVX512-VNNI and AVX512VL are enabled in every caller.
        unsafe { _mm256_dpbusd_epi32(acc, u, s) }
    }
    #[inline(always)]
    unsafe fn bit4(qh: u32) -> __m256i {
        // SAFETY: AVX512BW and AVX512VL are enabled in every caller. One masked move from a
        // mask register replaces the AVX2 broadcast-shuffle-compare sequence.
        unsafe { _mm256_maskz_mov_epi8(qh, _mm256_set1_epi8(0x10)) }
    }
}

/// Weight rows per GEMM panel: one zmm of i32 lanes.
pub(super) const PANEL: usize = 16;
/// Panels and activation rows per microkernel call: 2 x 6 keeps 12 i32 and 12 f32
/// accumulators plus the two weight chunks in the 32 zmm registers, and loads 8 registers'
/// worth (2 chunks, 6 broadcasts) per 12 `vpdpbusd`.
pub(super) const PANELS: usize = 2;
pub(super) const TILE_ROWS: usize = 6;

/// R activation rows x P panels of 16 weight rows. Per sub-block: `vpdpbusd` of each 64-byte
/// panel chunk (4 codes of 16 rows) with a broadcast 4-byte activation chunk, then one
/// int-to-float conversion and FMA per accumulator with the scale product `dw * da`. Each
/// i32/f32 lane is one weight row: no horizontal sums.
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
    // SAFETY: sub-block j reads panel bytes [j*bs*16, (j+1)*bs*16) and metadata
    // [16j, 16j+16), activation codes [j*bs, (j+1)*bs) of rows r0..r0+R and their metadata
    // [j]: all within the lengths asserted above.
    unsafe {
        // Activation chunk k of row r is 4 bytes at (k * R + r) * 4; metadata of
        // sub-block j at j * R + r.
        let aq = a.qs.as_ptr().cast::<u8>();
        let mut facc = [[_mm512_setzero_ps(); P]; R];
        for j in 0..n {
            let mut iacc = [[_mm512_setzero_si512(); P]; R];
            if fmt.off != 0 {
                for r in 0..R {
                    let c = _mm512_set1_epi32(*a.corr.as_ptr().add(j * R + r));
                    iacc[r] = [c; P];
                }
            }
            for t in 0..CH {
                let mut w = [_mm512_setzero_si512(); P];
                for p in 0..P {
                    w[p] = _mm512_loadu_si512(panels[p].q.as_ptr().add((j * CH + t) * 64).cast());
                }
                for r in 0..R {
                    let x = _mm512_set1_epi32(
                        aq.add(((j * CH + t) * R + r) * 4).cast::<i32>().read_unaligned(),
                    );
                    for p in 0..P {
                        iacc[r][p] = _mm512_dpbusd_epi32(iacc[r][p], w[p], x);
                    }
                }
            }
            let mut dw = [_mm512_setzero_ps(); P];
            for p in 0..P {
                dw[p] = _mm512_loadu_ps(panels[p].d.as_ptr().add(j * PANEL));
            }
            for r in 0..R {
                let da = _mm512_set1_ps(*a.d.as_ptr().add(j * R + r));
                for p in 0..P {
                    facc[r][p] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(iacc[r][p]),
                        _mm512_mul_ps(dw[p], da),
                        facc[r][p],
                    );
                }
            }
            if fmt.has_min {
                let mut mw = [_mm512_setzero_ps(); P];
                for p in 0..P {
                    mw[p] = _mm512_loadu_ps(panels[p].m.as_ptr().add(j * PANEL));
                }
                for r in 0..R {
                    let sa = _mm512_set1_ps(*a.s.as_ptr().add(j * R + r));
                    for p in 0..P {
                        facc[r][p] = _mm512_fmadd_ps(mw[p], sa, facc[r][p]);
                    }
                }
            }
        }
        for r in 0..R {
            for p in 0..P {
                _mm512_storeu_ps(out[r].as_mut_ptr().add(PANEL * p), facc[r][p]);
            }
        }
    }
}

// Entry points: safe to call only where the features exist (the caller checks the `Cpu`'s
// level, verified supported when the `Cpu` was built).

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(super) fn gemv_avx512(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    rb: usize,
    a: ActRow,
    y: &mut [f32],
    work: &mut Work,
) {
    // SAFETY: this function's features are the ones the kernels need.
    unsafe { avx2::gemv_rows::<Avx512Vnni>(t, cols, w, rb, a, y, work) }
}

/// `out[r][..16 * panels.len()]` = row r of activation block `a` times the panels' rows.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(super) fn panels_avx512(fmt: SubFormat, a: &ActBlock, panels: &[Panel], out: &mut [[f32; 32]]) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe {
        match (panels.len(), fmt.bs) {
            (1, 32) => panel_kernel::<1, 8>(fmt, a, panels, out),
            (1, _) => panel_kernel::<1, 4>(fmt, a, panels, out),
            (_, 32) => panel_kernel::<2, 8>(fmt, a, panels, out),
            _ => panel_kernel::<2, 4>(fmt, a, panels, out),
        }
    }
}

/// Float weights: the AVX2 float tiles, 4 x 4 (AVX-512VL gives the 16 accumulators room).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(super) fn float_rows_avx512(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    x: &[f32],
    m: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { avx2_gemm::float_rows::<4, 4>(t, cols, w, x, m, y, y_stride) }
}
