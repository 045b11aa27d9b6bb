//! AVX2 + FMA + F16C GEMM kernels (256-bit): the panel microkernel, with `vpmaddubsw` or
//! AVX-VNNI `vpdpbusd` dots, and the float-weight tiles (also run by the
//! AVX-512 level with its wider register file).
//!
//! Unsafe: every raw load is within a slice whose length the kernel asserts first; the
//! intrinsics need the features the entry points enable.

use super::avx2::{hsum, load, AvxVnni, Dot, Maddubs};
use super::format::SubFormat;
use super::{check_panels, ActBlock, Panel};
use std::arch::x86_64::*;
use weft::GgmlType;

// ---------------------------------------------------------------------------------------
// GEMM microkernel: R activation rows x P panels of 8 weight rows (see `format::pack_panel`).
// Per sub-block, each 32-byte panel chunk (4 codes of 8 rows) is multiplied with a broadcast
// 4-byte activation chunk, so each i32 lane is one weight row; then one int-to-float
// conversion and FMA per accumulator with `dw * da`, in the same order as every other level.

/// Weight rows per GEMM panel: one ymm of i32 lanes.
pub(super) const PANEL: usize = 8;
/// Panels and activation rows per microkernel call: 2 x 3 keeps 6 i32 and 6 f32
/// accumulators, the two weight chunks and a broadcast in the 16 ymm registers.
pub(super) const PANELS: usize = 2;
pub(super) const TILE_ROWS: usize = 3;

/// `G` > 0 (the `vpmaddubsw` path, codes small enough: [`SubFormat::i16_chunks`]) adds
/// `G` chunks' pair sums in i16 before one widening to i32; 0 widens every chunk.
#[inline(always)]
unsafe fn panel_kernel<D: Dot, const P: usize, const CH: usize, const G: usize>(
    fmt: SubFormat,
    a: &ActBlock,
    panels: &[Panel],
    out: &mut [[f32; 32]],
) {
    let bs = CH * 4;
    const R: usize = TILE_ROWS;
    assert!(panels.len() == P && out.len() >= R);
    assert!(G == 0 || (D::I16 && CH.is_multiple_of(G) && G <= fmt.i16_chunks()));
    let n = check_panels(fmt, a, R, bs, PANEL, panels);
    // Q8_0 codes (w + 128) overflow vpmaddubsw: that path recovers the signed weight and
    // uses |w| x sign(a, w) instead of the offset.
    let signed = fmt.off == 128 && !D::FULL_U8;
    assert!(G == 0 || !signed);
    let use_corr = fmt.off != 0 && !signed;
    // SAFETY: sub-block j reads panel bytes [j*bs*8, (j+1)*bs*8) and metadata [8j, 8j+8),
    // activation codes [j*bs, (j+1)*bs) of rows r0..r0+R and their metadata [j]: all within
    // the lengths asserted above.
    unsafe {
        // Activation chunk k of row r is 4 bytes at (k * R + r) * 4; metadata of
        // sub-block j at j * R + r.
        let aq = a.qs.as_ptr().cast::<u8>();
        let bcast = |k: usize, r: usize| {
            _mm256_set1_epi32(aq.add((k * R + r) * 4).cast::<i32>().read_unaligned())
        };
        let mut facc = [[_mm256_setzero_ps(); P]; R];
        for j in 0..n {
            let mut iacc = [[_mm256_setzero_si256(); P]; R];
            if let Some(groups) = CH.checked_div(G) {
                // Group h of the sub-block's chunks (G of them) in i16, widened once (the
                // i32 sums stay out of registers until the first group is done).
                for h in 0..groups {
                    let mut acc16 = [[_mm256_setzero_si256(); P]; R];
                    for u in 0..G {
                        let t = h * G + u;
                        let mut w = [_mm256_setzero_si256(); P];
                        for p in 0..P {
                            w[p] = load(panels[p].q.as_ptr().add((j * CH + t) * 32).cast());
                        }
                        for r in 0..R {
                            let x = bcast(j * CH + t, r);
                            for p in 0..P {
                                acc16[r][p] = _mm256_add_epi16(acc16[r][p], D::mul16(w[p], x));
                            }
                        }
                    }
                    for r in 0..R {
                        for p in 0..P {
                            let wide = D::widen(acc16[r][p]);
                            iacc[r][p] =
                                if h == 0 { wide } else { _mm256_add_epi32(iacc[r][p], wide) };
                        }
                    }
                }
                if use_corr {
                    for r in 0..R {
                        let c = _mm256_set1_epi32(*a.corr.as_ptr().add(j * R + r));
                        for p in 0..P {
                            iacc[r][p] = _mm256_add_epi32(iacc[r][p], c);
                        }
                    }
                }
            } else if use_corr {
                for r in 0..R {
                    iacc[r] = [_mm256_set1_epi32(*a.corr.as_ptr().add(j * R + r)); P];
                }
            }
            for t in 0..if G > 0 { 0 } else { CH } {
                let mut w = [_mm256_setzero_si256(); P];
                for p in 0..P {
                    w[p] = load(panels[p].q.as_ptr().add((j * CH + t) * 32).cast());
                }
                if signed {
                    let mut ws = [_mm256_setzero_si256(); P];
                    for p in 0..P {
                        ws[p] = _mm256_xor_si256(w[p], _mm256_set1_epi8(-128));
                        w[p] = _mm256_sign_epi8(ws[p], ws[p]);
                    }
                    for r in 0..R {
                        let x = bcast(j * CH + t, r);
                        for p in 0..P {
                            iacc[r][p] = D::dot(iacc[r][p], w[p], _mm256_sign_epi8(x, ws[p]));
                        }
                    }
                } else {
                    for r in 0..R {
                        let x = bcast(j * CH + t, r);
                        for p in 0..P {
                            iacc[r][p] = D::dot(iacc[r][p], w[p], x);
                        }
                    }
                }
            }
            let mut dw = [_mm256_setzero_ps(); P];
            for p in 0..P {
                dw[p] = _mm256_loadu_ps(panels[p].d.as_ptr().add(j * PANEL));
            }
            for r in 0..R {
                let da = _mm256_set1_ps(*a.d.as_ptr().add(j * R + r));
                for p in 0..P {
                    facc[r][p] = _mm256_fmadd_ps(
                        _mm256_cvtepi32_ps(iacc[r][p]),
                        _mm256_mul_ps(dw[p], da),
                        facc[r][p],
                    );
                }
            }
            if fmt.has_min {
                let mut mw = [_mm256_setzero_ps(); P];
                for p in 0..P {
                    mw[p] = _mm256_loadu_ps(panels[p].m.as_ptr().add(j * PANEL));
                }
                for r in 0..R {
                    let sa = _mm256_set1_ps(*a.s.as_ptr().add(j * R + r));
                    for p in 0..P {
                        facc[r][p] = _mm256_fmadd_ps(mw[p], sa, facc[r][p]);
                    }
                }
            }
        }
        for r in 0..R {
            for p in 0..P {
                _mm256_storeu_ps(out[r].as_mut_ptr().add(PANEL * p), facc[r][p]);
            }
        }
    }
}

/// Dispatch on the panel count (P), chunks per sub-block (CH) and, on the `vpmaddubsw`
/// path, the chunks summed in i16 (G: as many as the codes allow, a divisor of CH).
#[inline(always)]
unsafe fn panel_rows<D: Dot>(
    fmt: SubFormat,
    a: &ActBlock,
    panels: &[Panel],
    out: &mut [[f32; 32]],
) {
    let ch = fmt.bs / 4;
    // Q8_0 (whose `vpmaddubsw` path recovers signed weights) has i16_chunks() == 0.
    let g = if D::I16 { fmt.i16_chunks().min(ch) } else { 0 };
    let g =
        [8, 4, 2, 0].into_iter().find(|&c| c <= g && (c == 0 || ch.is_multiple_of(c))).unwrap_or(0);
    // SAFETY: the entry point enabled AVX2/FMA/F16C and D's instruction.
    unsafe {
        macro_rules! call {
            ($p:literal, $ch:literal) => {
                match g {
                    8 => panel_kernel::<D, $p, $ch, 8>(fmt, a, panels, out),
                    4 => panel_kernel::<D, $p, $ch, 4>(fmt, a, panels, out),
                    2 => panel_kernel::<D, $p, $ch, 2>(fmt, a, panels, out),
                    _ => panel_kernel::<D, $p, $ch, 0>(fmt, a, panels, out),
                }
            };
        }
        match (panels.len(), fmt.bs) {
            (1, 32) => call!(1, 8),
            (1, _) => call!(1, 4),
            (_, 32) => call!(2, 8),
            _ => call!(2, 4),
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

/// `out[r][..8 * panels.len()]` = row r of activation block `a` times the panels' rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn panels_avx2(fmt: SubFormat, a: &ActBlock, panels: &[Panel], out: &mut [[f32; 32]]) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { panel_rows::<Maddubs>(fmt, a, panels, out) }
}

#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) fn panels_avxvnni(
    fmt: SubFormat,
    a: &ActBlock,
    panels: &[Panel],
    out: &mut [[f32; 32]],
) {
    // SAFETY: this function's features are the ones the kernel needs.
    unsafe { panel_rows::<AvxVnni>(fmt, a, panels, out) }
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
