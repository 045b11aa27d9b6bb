//! AVX2 + FMA + F16C GEMM kernels (256-bit): the interleaved-tile microkernel, with
//! `vpmaddubsw` or AVX-VNNI `vpdpbusd` dots, and the float-weight tiles (also run by the
//! AVX-512 level with its wider register file).
//!
//! Unsafe: every raw load is within a slice whose length the kernel asserts first; the
//! intrinsics need the features the entry points enable.

use super::avx2::{bcast4, hsum, load, AvxVnni, Dot, Maddubs};
use super::format::{SubFormat, GROUP};
use super::{Acts, Tile};
use std::arch::x86_64::*;
use weft::GgmlType;

// ---------------------------------------------------------------------------------------
// GEMM microkernel: R activation rows x one interleaved tile of 4 weight rows. A tile chunk
// is 64 bytes ([weight row c][sub-block b][4 bytes]); a ymm holds two weight rows, so the
// kernel makes two passes (rows 0-1, rows 2-3) over R broadcast activation chunks. Each
// i32 lane ends a group as one (weight row, sub-block) integer dot, scaled once in f32.

/// Activation rows per GEMM microkernel call at this level.
pub(super) const TILE_ROWS: usize = 4;

#[inline(always)]
unsafe fn tile_kernel<D: Dot, const R: usize, const CH: usize>(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    let bs = CH * 4;
    let ng = tile.check(fmt, acts, r0, R, CH, TILE_ROWS);
    // Q8_0 codes (w + 128) overflow vpmaddubsw: that path recovers the signed weight and
    // uses |w| x sign(a, w) instead of the offset.
    let signed = fmt.off == 128 && !D::FULL_U8;
    let use_corr = fmt.off != 0 && !signed;
    // SAFETY: group g reads tile bytes [g*CH*64, (g+1)*CH*64) and tile metadata
    // [16g, 16g+16), activation bytes [g*GROUP*bs, (g+1)*GROUP*bs) of rows r0..r0+R and their
    // metadata [4g, 4g+4): all within the lengths asserted above.
    unsafe {
        let aq = |r: usize| acts.qs.as_ptr().add((r0 + r) * acts.q_stride);
        let am = |r: usize| (r0 + r) * acts.meta_stride;
        for h in 0..2 {
            let mut facc = [_mm256_setzero_ps(); R];
            for g in 0..ng {
                let mut iacc = [_mm256_setzero_si256(); R];
                if use_corr {
                    for r in 0..R {
                        let c = acts.corr.as_ptr().add(am(r) + g * GROUP);
                        iacc[r] = _mm256_broadcastsi128_si256(_mm_loadu_si128(c.cast()));
                    }
                }
                for t in 0..CH {
                    let w = load(tile.q.as_ptr().add((g * CH + t) * 64 + 32 * h).cast());
                    if signed {
                        let ws = _mm256_xor_si256(w, _mm256_set1_epi8(-128));
                        let wa = _mm256_sign_epi8(ws, ws);
                        for r in 0..R {
                            let x = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                aq(r).add(g * GROUP * bs + t * 16).cast(),
                            ));
                            iacc[r] = D::dot(iacc[r], wa, _mm256_sign_epi8(x, ws));
                        }
                    } else {
                        for r in 0..R {
                            let x = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                                aq(r).add(g * GROUP * bs + t * 16).cast(),
                            ));
                            iacc[r] = D::dot(iacc[r], w, x);
                        }
                    }
                }
                let dw = _mm256_loadu_ps(tile.d.as_ptr().add(g * 16 + 8 * h));
                for r in 0..R {
                    let da = bcast4(acts.d.as_ptr().add(am(r) + g * GROUP));
                    facc[r] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(iacc[r]),
                        _mm256_mul_ps(dw, da),
                        facc[r],
                    );
                }
                if fmt.has_min {
                    let mw = _mm256_loadu_ps(tile.m.as_ptr().add(g * 16 + 8 * h));
                    for r in 0..R {
                        let sa = bcast4(acts.s.as_ptr().add(am(r) + g * GROUP));
                        facc[r] = _mm256_fmadd_ps(mw, sa, facc[r]);
                    }
                }
            }
            for r in 0..R {
                // Lanes [row 2h: b0..b3 | row 2h+1: b0..b3] -> two sums, fixed order.
                let v = facc[r];
                let s = _mm_hadd_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let s = _mm_hadd_ps(s, s);
                out[r][2 * h] = _mm_cvtss_f32(s);
                out[r][2 * h + 1] = _mm_cvtss_f32(_mm_movehdup_ps(s));
            }
        }
    }
}

/// Dispatch on the row count (R) and chunks per group (sub-block size / 4).
#[inline(always)]
pub(super) unsafe fn tile_rows<D: Dot>(
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
                1 => tile_kernel::<D, 1, $ch>(fmt, acts, r0, tile, out),
                2 => tile_kernel::<D, 2, $ch>(fmt, acts, r0, tile, out),
                3 => tile_kernel::<D, 3, $ch>(fmt, acts, r0, tile, out),
                _ => tile_kernel::<D, 4, $ch>(fmt, acts, r0, tile, out),
            }
        };
    }
    // SAFETY: the entry point enabled AVX2/FMA/F16C and D's instruction.
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

/// 8 weights at element `k` of a float row, widened to f32.
#[inline(always)]
unsafe fn load_w8(t: GgmlType, row: *const u8, k: usize) -> __m256 {
    // SAFETY: the caller guarantees elements k..k+8 exist and AVX2/F16C.
    unsafe {
        match t {
            GgmlType::F32 => _mm256_loadu_ps(row.cast::<f32>().add(k)),
            GgmlType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(row.add(2 * k).cast())),
            _ => {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(row.add(2 * k).cast()));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            }
        }
    }
}

/// One weight element as f32 (scalar tails).
#[inline(always)]
pub(super) fn load_w1(t: GgmlType, row: &[u8], k: usize) -> f32 {
    match t {
        GgmlType::F32 => {
            f32::from_le_bytes([row[4 * k], row[4 * k + 1], row[4 * k + 2], row[4 * k + 3]])
        }
        GgmlType::F16 => half::f16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32(),
        _ => half::bf16::from_le_bytes([row[2 * k], row[2 * k + 1]]).to_f32(),
    }
}

/// Float tile: R activation rows x C weight rows; lanes hold k mod 8, the tail k >= cols/8*8
/// is added in scalar afterwards: a fixed order for every output.
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
    let k8 = cols / 8 * 8;
    // SAFETY: elements k < k8 <= cols are read from rows asserted to hold cols elements.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        let mut k = 0;
        while k < k8 {
            let mut xv = [_mm256_setzero_ps(); R];
            for r in 0..R {
                xv[r] = _mm256_loadu_ps(x[r].as_ptr().add(k));
            }
            for c in 0..C {
                let wv = load_w8(t, w[c].as_ptr(), k);
                for r in 0..R {
                    acc[r][c] = _mm256_fmadd_ps(wv, xv[r], acc[r][c]);
                }
            }
            k += 8;
        }
        for r in 0..R {
            for c in 0..C {
                let mut s = hsum(acc[r][c]);
                for k in k8..cols {
                    s += load_w1(t, w[c], k) * x[r][k];
                }
                out[r][c] = s;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entry points. Safe to call only where the named features exist (the caller checks the
// `Cpu`'s level, which was verified supported when the `Cpu` was built).

#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn tile_avx2(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    nr: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { tile_rows::<Maddubs>(fmt, acts, r0, nr, tile, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn tile_avxvnni(
    fmt: SubFormat,
    acts: &Acts,
    r0: usize,
    nr: usize,
    tile: &Tile,
    out: &mut [[f32; 4]; TILE_ROWS],
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { tile_rows::<AvxVnni>(fmt, acts, r0, nr, tile, out) }
}

/// Float matmul block: outputs `y[r][c]` (f32 [m, y_stride]) for activation rows
/// `x` (f32 [m, cols]) and the weight rows in `w` (whole rows), 2 x 4 at a time.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn float_rows_avx2(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    x: &[f32],
    m: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { float_rows::<2, 4>(t, cols, w, x, m, y, y_stride) }
}

/// Shared driver of the float tiles (also used by the AVX-512 level with its own features).
#[inline(always)]
pub(super) unsafe fn float_rows<const R: usize, const C: usize>(
    t: GgmlType,
    cols: usize,
    w: &[u8],
    x: &[f32],
    m: usize,
    y: &mut [f32],
    y_stride: usize,
) {
    let rb = cols * t.type_size();
    let n = w.len() / rb;
    let mut c0 = 0;
    // SAFETY: the caller enabled AVX2/FMA/F16C.
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
