//! AVX-512 (F/BW/VL/DQ) kernels, 16 f32 lanes; tails use masked loads and stores instead of
//! scalar loops. Every function here requires those features plus AVX2/FMA/F16C: callers
//! reach them only through a [`crate::Cpu`] whose level is `Avx512`, which `Cpu::new`
//! verified the machine supports.

use super::avx2::{hsum, hsum4};
use super::extras::{BlockObserver, NoObserver, RowExtras};
use super::{blocks, ggml_f16, ggml_query, AttnHead, OnlineSoftmax, ATTN_BLOCK, MAX_ROUNDED_HD};
use half::f16;
use std::arch::x86_64::*;
use std::ops::Range;
use weft::KvElem;

const W: usize = 16;

/// Lane mask of the first `n` (< 16) lanes.
#[inline]
fn tail_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn load(x: &[f32; W]) -> __m512 {
    // SAFETY: `x` is 16 readable f32; unaligned load.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn store(x: &mut [f32; W], v: __m512) {
    // SAFETY: `x` is 16 writable f32; unaligned store.
    unsafe { _mm512_storeu_ps(x.as_mut_ptr(), v) }
}

/// The first `x.len()` (< 16) lanes loaded from `x`, the rest 0.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn load_tail(x: &[f32]) -> __m512 {
    debug_assert!(x.len() < W);
    // SAFETY: the mask enables only the x.len() readable lanes; masked-off lanes never fault.
    unsafe { _mm512_maskz_loadu_ps(tail_mask(x.len()), x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn store_tail(x: &mut [f32], v: __m512) {
    debug_assert!(x.len() < W);
    // SAFETY: the mask enables only the x.len() writable lanes.
    unsafe { _mm512_mask_storeu_ps(x.as_mut_ptr(), tail_mask(x.len()), v) }
}

/// Loads the first `n` (<= 16) f16 at `p` as f32, the other lanes 0.
///
/// # Safety
/// `p..p+n` must be readable.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn load_h(p: *const f16, n: usize) -> __m512 {
    let bits = if n == W {
        // SAFETY: the caller guarantees 16 readable f16 (32 bytes) at p.
        unsafe { _mm256_loadu_si256(p.cast()) }
    } else {
        // SAFETY: only the n readable lanes are enabled; masked-off lanes never fault.
        unsafe { _mm256_maskz_loadu_epi16(tail_mask(n), p.cast()) }
    };
    _mm512_cvtph_ps(bits)
}

/// A KV cache element loaded up to 16 at a time as f32 lanes.
pub(crate) trait Load16: KvElem {
    /// Loads the first `n` (<= 16) elements at `p` as f32 (exact), the other lanes 0.
    ///
    /// # Safety
    /// `p..p+n` must be readable and the CPU must have the AVX-512 features of this file.
    unsafe fn load16(p: *const Self, n: usize) -> __m512;
}

impl Load16 for f16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn load16(p: *const f16, n: usize) -> __m512 {
        // SAFETY: the caller guarantees n readable f16 at p.
        unsafe { load_h(p, n) }
    }
}

impl Load16 for f32 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn load16(p: *const f32, n: usize) -> __m512 {
        if n == W {
            // SAFETY: the caller guarantees 16 readable f32 at p; unaligned load.
            unsafe { _mm512_loadu_ps(p) }
        } else {
            // SAFETY: only the n readable lanes are enabled; masked-off lanes never fault.
            unsafe { _mm512_maskz_loadu_ps(tail_mask(n), p) }
        }
    }
}

/// Adds the two 256-bit halves (the first step of every horizontal reduction here).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn fold(v: __m512) -> __m256 {
    _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn hsum16(v: __m512) -> f32 {
    hsum(fold(v))
}

/// e^x per lane: x = n ln2 + r, |r| <= ln2/2, Cephes' degree-5 polynomial for e^r (about
/// 1 ulp), scaled by 2^n with `vscalefps` (exact, subnormals included). x < -103.97 (where
/// e^x rounds to 0; -inf included) gives 0, x > 88.72 gives +inf, NaN stays NaN.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn exp(x: __m512) -> __m512 {
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693_359_4), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm512_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let y = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
    let e = _mm512_scalef_ps(y, n);
    let hi = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(88.722_84));
    let lo = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-103.972_08));
    let e = _mm512_mask_blend_ps(hi, e, _mm512_set1_ps(f32::INFINITY));
    _mm512_mask_blend_ps(lo, e, _mm512_setzero_ps())
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let (xc, xt) = x.as_chunks::<W>();
    let mut acc = [_mm512_setzero_ps(); 4];
    let (x4, x1) = xc.as_chunks::<4>();
    for c in x4 {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = _mm512_fmadd_ps(load(v), load(v), *a);
        }
    }
    for v in x1 {
        acc[0] = _mm512_fmadd_ps(load(v), load(v), acc[0]);
    }
    let t = load_tail(xt);
    acc[1] = _mm512_fmadd_ps(t, t, acc[1]);
    let sum = hsum16(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    let scale = (1.0 / (sum as f64 / x.len() as f64 + eps as f64).sqrt()) as f32;
    let sv = _mm512_set1_ps(scale);
    let (oc, ot) = out.as_chunks_mut::<W>();
    let (wc, wt) = w.as_chunks::<W>();
    for ((o, v), wv) in oc.iter_mut().zip(xc).zip(wc) {
        store(o, _mm512_mul_ps(_mm512_mul_ps(load(v), sv), load(wv)));
    }
    store_tail(ot, _mm512_mul_ps(_mm512_mul_ps(t, sv), load_tail(wt)));
}

/// RoPE Norm style on one head; tables as in `scalar::rope_norm`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn rope_norm(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let n_rot = cos.len();
    let (hc, ht) = head[..n_rot].as_chunks_mut::<W>();
    let (cc, ct) = cos.as_chunks::<W>();
    let (sc, st) = sin.as_chunks::<W>();
    let rot = |v: __m512, c: __m512, s: __m512| {
        _mm512_fmadd_ps(v, c, _mm512_mul_ps(_mm512_permute_ps::<0b10_11_00_01>(v), s))
    };
    for ((x, c), s) in hc.iter_mut().zip(cc).zip(sc) {
        store(x, rot(load(x), load(c), load(s)));
    }
    let v = rot(load_tail(ht), load_tail(ct), load_tail(st));
    store_tail(ht, v);
}

/// RoPE NeoX style on one head; tables as in `scalar::rope_neox`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (lo, hi) = head[..2 * half].split_at_mut(half);
    let (lc, lt) = lo.as_chunks_mut::<W>();
    let (hc, ht) = hi.as_chunks_mut::<W>();
    let (cc, ct) = cos.as_chunks::<W>();
    let (sc, st) = sin.as_chunks::<W>();
    for (((a, b), c), s) in lc.iter_mut().zip(hc.iter_mut()).zip(cc).zip(sc) {
        let (x0, x1, c, s) = (load(a), load(b), load(c), load(s));
        store(a, _mm512_fmsub_ps(x0, c, _mm512_mul_ps(x1, s)));
        store(b, _mm512_fmadd_ps(x0, s, _mm512_mul_ps(x1, c)));
    }
    let (x0, x1, c, s) = (load_tail(lt), load_tail(ht), load_tail(ct), load_tail(st));
    store_tail(lt, _mm512_fmsub_ps(x0, c, _mm512_mul_ps(x1, s)));
    store_tail(ht, _mm512_fmadd_ps(x0, s, _mm512_mul_ps(x1, c)));
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn silu_mul16(g: __m512, u: __m512) -> __m512 {
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0), e)), u)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let (gc, gt) = gate.as_chunks_mut::<W>();
    let (uc, ut) = up.as_chunks::<W>();
    for (g, u) in gc.iter_mut().zip(uc) {
        store(g, silu_mul16(load(g), load(u)));
    }
    let v = silu_mul16(load_tail(gt), load_tail(ut));
    store_tail(gt, v);
}

/// Max of a slice (-inf when empty).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn max_slice(x: &[f32]) -> f32 {
    let (xc, xt) = x.as_chunks::<W>();
    let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
    for v in xc {
        m = _mm512_max_ps(m, load(v));
    }
    let m = _mm512_mask_max_ps(m, tail_mask(xt.len()), m, load_tail(xt));
    _mm512_reduce_max_ps(m)
}

/// x = exp(x - max) in place; returns the sum of the new values (fixed order).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    let mv = _mm512_set1_ps(max);
    let mut acc = _mm512_setzero_ps();
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        let e = exp(_mm512_sub_ps(load(v), mv));
        acc = _mm512_add_ps(acc, e);
        store(v, e);
    }
    let k = tail_mask(xt.len());
    let e = _mm512_maskz_mov_ps(k, exp(_mm512_sub_ps(load_tail(xt), mv)));
    store_tail(xt, e);
    hsum16(_mm512_add_ps(acc, e))
}

/// `p` rounded to f16 (to nearest even) and back.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn round(p: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p))
}

/// x = f16(exp(x - max) * inv) in place (as f32): ggml's normalised probabilities, rounded
/// to f16 (see `ggml_f16`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn exp_scale_f16(x: &mut [f32], max: f32, inv: f32) {
    let (mv, iv) = (_mm512_set1_ps(max), _mm512_set1_ps(inv));
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        store(v, round(_mm512_mul_ps(exp(_mm512_sub_ps(load(v), mv)), iv)));
    }
    let t = round(_mm512_mul_ps(exp(_mm512_sub_ps(load_tail(xt), mv)), iv));
    store_tail(xt, t);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn scale_slice(x: &mut [f32], f: f32) {
    let fv = _mm512_set1_ps(f);
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        store(v, _mm512_mul_ps(load(v), fv));
    }
    let t = _mm512_mul_ps(load_tail(xt), fv);
    store_tail(xt, t);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn softmax_row(x: &mut [f32]) {
    let max = max_slice(x);
    let sum = exp_sub_sum(x, max);
    scale_slice(x, 1.0 / sum);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let (sc, st) = src.as_chunks::<W>();
    let (dc, dt) = dst.as_chunks_mut::<W>();
    for (s, d) in sc.iter().zip(dc.iter_mut()) {
        let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(load(s));
        // SAFETY: `d` is 16 writable f16 = 32 bytes; unaligned store.
        unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), h) };
    }
    let n = st.len().min(dt.len());
    let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(load_tail(&st[..n]));
    // SAFETY: the mask enables only the n writable lanes of `dt`.
    unsafe { _mm256_mask_storeu_epi16(dt.as_mut_ptr().cast(), tail_mask(n), h) };
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let (sc, st) = src.as_chunks::<W>();
    let (dc, dt) = dst.as_chunks_mut::<W>();
    for (s, d) in sc.iter().zip(dc.iter_mut()) {
        // SAFETY: `s` is 16 readable f16.
        store(d, unsafe { load_h(s.as_ptr(), W) });
    }
    let n = st.len().min(dt.len());
    // SAFETY: `st` has n readable f16.
    let v = unsafe { load_h(st.as_ptr(), n) };
    store_tail(&mut dt[..n], v);
}

/// Logits of keys `0..n` of a block: s[j] = scale * q . k_j. Four keys at a time, each with
/// its own accumulator, reduced in a fixed order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn block_logits<T: Load16>(h: &AttnHead<'_, T>, kb: &[T], n: usize, s: &mut [f32; ATTN_BLOCK]) {
    let hd = h.q.len();
    let (qc, qt) = h.q.as_chunks::<W>();
    let qtail = load_tail(qt);
    let full = hd - qt.len();
    let row = |j: usize| &kb[j * h.kv_row + h.kv_off..][..hd];
    let mut j = 0;
    while j + 4 <= n {
        let rows = [row(j), row(j + 1), row(j + 2), row(j + 3)];
        let mut acc = [_mm512_setzero_ps(); 4];
        for (t, qv) in qc.iter().enumerate() {
            let qv = load(qv);
            for (a, kr) in acc.iter_mut().zip(&rows) {
                // SAFETY: t * 16 + 16 <= hd = kr.len().
                *a = _mm512_fmadd_ps(qv, unsafe { T::load16(kr.as_ptr().add(t * W), W) }, *a);
            }
        }
        for (a, kr) in acc.iter_mut().zip(&rows) {
            // SAFETY: kr[full..] holds qt.len() readable values.
            *a = _mm512_fmadd_ps(qtail, unsafe { T::load16(kr.as_ptr().add(full), qt.len()) }, *a);
        }
        let sums = hsum4(fold(acc[0]), fold(acc[1]), fold(acc[2]), fold(acc[3]));
        let sums = _mm_mul_ps(sums, _mm_set1_ps(h.scale));
        // SAFETY: j + 4 <= n <= ATTN_BLOCK: 4 writable f32.
        unsafe { _mm_storeu_ps(s.as_mut_ptr().add(j), sums) };
        j += 4;
    }
    for j in j..n {
        let kr = row(j);
        let mut acc = _mm512_setzero_ps();
        for (t, qv) in qc.iter().enumerate() {
            // SAFETY: t * 16 + 16 <= hd = kr.len().
            acc = _mm512_fmadd_ps(load(qv), unsafe { T::load16(kr.as_ptr().add(t * W), W) }, acc);
        }
        // SAFETY: kr[full..] holds qt.len() readable values.
        acc = _mm512_fmadd_ps(qtail, unsafe { T::load16(kr.as_ptr().add(full), qt.len()) }, acc);
        s[j] = hsum16(acc) * h.scale;
    }
}

/// out[d] += sum_j p[j] * v_j[d] over keys `0..p.len()` of a block, 16 dims at a time (the
/// last chunk masked) with four accumulators (keys j mod 4) combined in a fixed order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn block_accumulate<T: Load16>(h: &AttnHead<'_, T>, vb: &[T], p: &[f32], out: &mut [f32]) {
    let hd = h.q.len();
    let n = p.len();
    assert!(n > 0 && vb.len() >= (n - 1) * h.kv_row + h.kv_off + hd);
    for d0 in (0..hd).step_by(W) {
        let w = W.min(hd - d0);
        let d = h.kv_off + d0;
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut j = 0;
        while j + 4 <= n {
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: (j + i) < n and d0 + w <= hd, so the w values end inside `vb`
                // (asserted above).
                let vv = unsafe { T::load16(vb.as_ptr().add((j + i) * h.kv_row + d), w) };
                *a = _mm512_fmadd_ps(_mm512_set1_ps(p[j + i]), vv, *a);
            }
            j += 4;
        }
        for j in j..n {
            // SAFETY: as above, j < n.
            let vv = unsafe { T::load16(vb.as_ptr().add(j * h.kv_row + d), w) };
            acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), vv, acc[0]);
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        if let Ok(o) = <&mut [f32; W]>::try_from(&mut out[d0..d0 + w]) {
            store(o, _mm512_add_ps(load(o), sum));
        } else {
            let o = &mut out[d0..d0 + w];
            let v = _mm512_add_ps(load_tail(o), sum);
            store_tail(o, v);
        }
    }
}

/// One (query row, head) of attention over `ranges`; writes f32 [head_dim] into `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn attend<T: Load16>(h: &AttnHead<'_, T>, ranges: &[Range<usize>], out: &mut [f32]) {
    attend_obs::<T, _, true>(h, ranges, out, &mut NoObserver);
}

/// `attend`, reporting every block's logits to `obs`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn attend_extras<T: Load16>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut RowExtras<'_>,
) -> OnlineSoftmax {
    attend_obs::<T, _, true>(h, ranges, out, obs)
}

/// `attend_extras` without the V pass: only the observer's outputs and the softmax state;
/// `out` is not touched (the scoring pass of selective attention).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn score_extras<T: Load16>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut RowExtras<'_>,
) -> OnlineSoftmax {
    attend_obs::<T, _, false>(h, ranges, out, obs)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn attend_obs<T: Load16, O: BlockObserver, const V: bool>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut O,
) -> OnlineSoftmax {
    let mut qbuf = [0f32; MAX_ROUNDED_HD];
    let h = &ggml_query(h, &mut qbuf);
    let mut st = OnlineSoftmax::new();
    // f32 [ATTN_BLOCK]: the block's logits, then its unnormalised probabilities.
    let mut s = [0f32; ATTN_BLOCK];
    if V && ggml_f16::<T>() {
        // Two passes (see `ggml_f16`): the max and sum, then the V rows weighted by the
        // normalised probabilities rounded to f16.
        for r in ranges {
            for (c, n) in blocks(r) {
                block_logits(h, h.block(h.k, c, n), n, &mut s);
                let prev = st;
                st.update(max_slice(&s[..n]));
                obs.block(c, &s[..n], prev, st.max);
                st.sum += exp_sub_sum(&mut s[..n], st.max);
            }
        }
        out.fill(0.0);
        let inv = 1.0 / st.sum;
        for r in ranges {
            for (c, n) in blocks(r) {
                block_logits(h, h.block(h.k, c, n), n, &mut s);
                exp_scale_f16(&mut s[..n], st.max, inv);
                block_accumulate(h, h.block(h.v, c, n), &s[..n], out);
            }
        }
        return st;
    }
    if V {
        out.fill(0.0);
    }
    for r in ranges {
        for (c, n) in blocks(r) {
            block_logits(h, h.block(h.k, c, n), n, &mut s);
            let prev = st;
            if let Some(f) = st.update(max_slice(&s[..n])) {
                if V {
                    scale_slice(out, f);
                }
            }
            obs.block(c, &s[..n], prev, st.max);
            st.sum += exp_sub_sum(&mut s[..n], st.max);
            if V {
                block_accumulate(h, h.block(h.v, c, n), &s[..n], out);
            }
        }
    }
    if V {
        scale_slice(out, 1.0 / st.sum);
    }
    st
}

// SAFETY (every entry): this table is only reached through `Kernels::for_cpu` for a `Cpu`
// whose level `Cpu::new` verified this machine supports, which implies every feature the
// functions below are compiled for.
pub(crate) static KERNELS: super::Kernels = super::Kernels {
    // SAFETY: see KERNELS.
    rms_norm_row: |x, w, eps, out| unsafe { rms_norm_row(x, w, eps, out) },
    // SAFETY: see KERNELS.
    rope_norm: |head, cos, sin| unsafe { rope_norm(head, cos, sin) },
    // SAFETY: see KERNELS.
    rope_neox: |head, cos, sin| unsafe { rope_neox(head, cos, sin) },
    // SAFETY: see KERNELS.
    silu_mul: |gate, up| unsafe { silu_mul(gate, up) },
    // SAFETY: see KERNELS.
    softmax_row: |x| unsafe { softmax_row(x) },
    // SAFETY: see KERNELS.
    f32_to_f16: |src, dst| unsafe { f32_to_f16(src, dst) },
    // SAFETY: see KERNELS.
    f16_to_f32: |src, dst| unsafe { f16_to_f32(src, dst) },
    // SAFETY: see KERNELS.
    attend: |h, ranges, out| unsafe { attend(h, ranges, out) },
    // SAFETY: see KERNELS.
    attend_extras: |h, ranges, out, obs| unsafe { attend_extras(h, ranges, out, obs) },
    // SAFETY: see KERNELS.
    score_extras: |h, ranges, out, obs| unsafe { score_extras(h, ranges, out, obs) },
    // SAFETY: see KERNELS.
    attend_f32: |h, ranges, out| unsafe { attend(h, ranges, out) },
    // SAFETY: see KERNELS.
    attend_extras_f32: |h, ranges, out, obs| unsafe { attend_extras(h, ranges, out, obs) },
    // SAFETY: see KERNELS.
    score_extras_f32: |h, ranges, out, obs| unsafe { score_extras(h, ranges, out, obs) },
};
