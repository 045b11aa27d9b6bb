//! AVX-512 (F/BW/VL/DQ + VNNI) kernels.
//!
//! GEMV reuses the 256-bit bodies of `avx2.rs` with the EVEX `vpdpbusd` (decode is bound by
//! memory bandwidth, and ymm ops issue on more ports). The GEMM microkernel is 512-bit: one
//! zmm holds a whole 64-byte tile chunk (4 weight rows x 4 sub-blocks x 4 bytes), each
//! activation chunk is a 16-byte broadcast, and one `vpdpbusd` does 64 multiply-adds.
//!
//! Unsafe: every raw load is within a slice whose length is asserted first; the intrinsics
//! need the features the entry points enable.

use super::avx2::{self, ActRow, Dot};
use super::avx2_gemm;
use super::format::{SubFormat, GROUP};
use super::{Acts, Tile, Work};
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

/// Activation rows per GEMM microkernel call at this level: 8 i32 and 8 f32 accumulators
/// plus the weight chunk fit the 32 zmm registers.
pub(super) const TILE_ROWS: usize = 8;

/// 16 bytes at `p` broadcast to the four 128-bit lanes.
#[inline(always)]
unsafe fn bcast_i(p: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes and AVX512F.
    unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(p.cast())) }
}

#[inline(always)]
unsafe fn bcast_f(p: *const f32) -> __m512 {
    // SAFETY: the caller guarantees 16 readable bytes and AVX512F.
    unsafe { _mm512_broadcast_f32x4(_mm_loadu_ps(p)) }
}

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
    // SAFETY: group g reads tile bytes [g*CH*64, (g+1)*CH*64), tile metadata [16g, 16g+16),
    // activation bytes [g*GROUP*bs, (g+1)*GROUP*bs) of rows r0..r0+R and their metadata
    // [4g, 4g+4): all within the lengths asserted above.
    unsafe {
        let aq = |r: usize| acts.qs.as_ptr().add((r0 + r) * acts.q_stride).cast::<u8>();
        let am = |r: usize| (r0 + r) * acts.meta_stride;
        let mut facc = [_mm512_setzero_ps(); R];
        for g in 0..ng {
            let mut iacc = [_mm512_setzero_si512(); R];
            if fmt.off != 0 {
                for r in 0..R {
                    iacc[r] = bcast_i(acts.corr.as_ptr().add(am(r) + g * GROUP).cast());
                }
            }
            for t in 0..CH {
                let w = _mm512_loadu_si512(tile.q.as_ptr().add((g * CH + t) * 64).cast());
                for r in 0..R {
                    let x = bcast_i(aq(r).add(g * GROUP * bs + t * 16));
                    iacc[r] = _mm512_dpbusd_epi32(iacc[r], w, x);
                }
            }
            let dw = _mm512_loadu_ps(tile.d.as_ptr().add(g * 16));
            for r in 0..R {
                let da = bcast_f(acts.d.as_ptr().add(am(r) + g * GROUP));
                facc[r] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[r]), _mm512_mul_ps(dw, da), facc[r]);
            }
            if fmt.has_min {
                let mw = _mm512_loadu_ps(tile.m.as_ptr().add(g * 16));
                for r in 0..R {
                    facc[r] = _mm512_fmadd_ps(
                        mw,
                        bcast_f(acts.s.as_ptr().add(am(r) + g * GROUP)),
                        facc[r],
                    );
                }
            }
        }
        for r in 0..R {
            // 128-bit lane c holds weight row c's 4 sub-block sums: ((b0+b1)+(b2+b3)), the
            // same order as the AVX2 kernel.
            let v = facc[r];
            let l0 = _mm512_castps512_ps128(v);
            let l1 = _mm512_extractf32x4_ps(v, 1);
            let l2 = _mm512_extractf32x4_ps(v, 2);
            let l3 = _mm512_extractf32x4_ps(v, 3);
            let s = _mm_hadd_ps(_mm_hadd_ps(l0, l1), _mm_hadd_ps(l2, l3));
            _mm_storeu_ps(out[r].as_mut_ptr(), s);
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

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")]
pub(super) fn tile_avx512(
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
                4 => tile_kernel::<4, $ch>(fmt, acts, r0, tile, out),
                5 => tile_kernel::<5, $ch>(fmt, acts, r0, tile, out),
                6 => tile_kernel::<6, $ch>(fmt, acts, r0, tile, out),
                7 => tile_kernel::<7, $ch>(fmt, acts, r0, tile, out),
                _ => tile_kernel::<8, $ch>(fmt, acts, r0, tile, out),
            }
        };
    }
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe {
        if fmt.bs == 32 {
            go!(8)
        } else {
            go!(4)
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
