//! AVX2 + FMA + F16C kernels (8 f32 lanes). Every function here requires those features:
//! callers reach them only through a [`crate::Cpu`] whose level is `Avx2` or `Avx512`, which
//! `Cpu::new` verified the machine supports.

use super::extras::{BlockObserver, NoObserver, RowExtras};
use super::{
    blocks, ggml_f16, ggml_query, AttnHead, OnlineSoftmax, ATTN_BLOCK, LOGITS_KEPT, MAX_ROUNDED_HD,
};
use half::f16;
use std::arch::x86_64::*;
use std::ops::Range;
use weft::KvElem;

const W: usize = 8;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load(x: &[f32; W]) -> __m256 {
    // SAFETY: `x` is 8 readable f32; unaligned load.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store(x: &mut [f32; W], v: __m256) {
    // SAFETY: `x` is 8 writable f32; unaligned store.
    unsafe { _mm256_storeu_ps(x.as_mut_ptr(), v) }
}

/// Loads 8 f16 at `p` as f32.
///
/// # Safety
/// `p..p+8` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_h(p: *const f16) -> __m256 {
    // SAFETY: the caller guarantees 8 readable f16 (16 bytes) at p; unaligned load.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// A KV cache element loaded 8 at a time as f32 lanes.
pub(crate) trait Load8: KvElem {
    /// Loads 8 elements at `p` as f32 (exact).
    ///
    /// # Safety
    /// `p..p+8` must be readable and the CPU must have AVX2, FMA and F16C.
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Load8 for f16 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const f16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f16 at p.
        unsafe { load_h(p) }
    }
}

impl Load8 for f32 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f32 at p; unaligned load.
        unsafe { _mm256_loadu_ps(p) }
    }
}

/// Sum of the 8 lanes, in a fixed order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum(v: __m256) -> f32 {
    let x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

/// Lane sums of four vectors: `[sum a, sum b, sum c, sum d]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
    let abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps::<1>(abcd))
}

/// Max of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax(v: __m256) -> f32 {
    let x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)))
}

/// e^x per lane: x = n ln2 + r, |r| <= ln2/2, Cephes' degree-5 polynomial for e^r (about
/// 1 ulp), times 2^n built in the exponent bits. x < -87.33 gives 0 (true values are below
/// f32's normal range, -inf included); x > 88.37 gives +inf; NaN stays NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn exp(x: __m256) -> __m256 {
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let bits =
        _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
    let e = _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
    let hi = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(88.37626));
    let lo = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.33654));
    let e = _mm256_blendv_ps(e, _mm256_set1_ps(f32::INFINITY), hi);
    _mm256_andnot_ps(lo, e)
}

/// `exp` on a short tail (< 8 values), padded: the same function as the full lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp_tail(x: &mut [f32]) {
    let mut t = [f32::NEG_INFINITY; W];
    t[..x.len()].copy_from_slice(x);
    let v = exp(load(&t));
    store(&mut t, v);
    x.copy_from_slice(&t[..x.len()]);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rms_norm_row(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let (xc, xt) = x.as_chunks::<W>();
    let mut acc = [_mm256_setzero_ps(); 4];
    let (x4, x1) = xc.as_chunks::<4>();
    for c in x4 {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = _mm256_fmadd_ps(load(v), load(v), *a);
        }
    }
    for v in x1 {
        acc[0] = _mm256_fmadd_ps(load(v), load(v), acc[0]);
    }
    let all = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let sum = hsum(all) + xt.iter().map(|v| v * v).sum::<f32>();
    let scale = (1.0 / (sum as f64 / x.len() as f64 + eps as f64).sqrt()) as f32;
    let sv = _mm256_set1_ps(scale);
    let (oc, ot) = out.as_chunks_mut::<W>();
    let (wc, wt) = w.as_chunks::<W>();
    for ((o, v), wv) in oc.iter_mut().zip(xc).zip(wc) {
        store(o, _mm256_mul_ps(_mm256_mul_ps(load(v), sv), load(wv)));
    }
    for ((o, &v), &wv) in ot.iter_mut().zip(xt).zip(wt) {
        *o = v * scale * wv;
    }
}

/// RoPE Norm style on one head; tables as in `scalar::rope_norm`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rope_norm(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let n_rot = cos.len();
    let (hc, ht) = head[..n_rot].as_chunks_mut::<W>();
    let (cc, ct) = cos.as_chunks::<W>();
    let (sc, st) = sin.as_chunks::<W>();
    for ((x, c), s) in hc.iter_mut().zip(cc).zip(sc) {
        let v = load(x);
        let swapped = _mm256_permute_ps::<0b10_11_00_01>(v);
        store(x, _mm256_fmadd_ps(v, load(c), _mm256_mul_ps(swapped, load(s))));
    }
    super::scalar::rope_norm(ht, ct, st);
}

/// RoPE NeoX style on one head; tables as in `scalar::rope_neox`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn rope_neox(head: &mut [f32], cos: &[f32], sin: &[f32]) {
    let half = cos.len();
    let (lo, hi) = head[..2 * half].split_at_mut(half);
    let (lc, lt) = lo.as_chunks_mut::<W>();
    let (hc, ht) = hi.as_chunks_mut::<W>();
    let (cc, ct) = cos.as_chunks::<W>();
    let (sc, st) = sin.as_chunks::<W>();
    for (((a, b), c), s) in lc.iter_mut().zip(hc.iter_mut()).zip(cc).zip(sc) {
        let (x0, x1, c, s) = (load(a), load(b), load(c), load(s));
        store(a, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
        store(b, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
    }
    for (((a, b), &c), &s) in lt.iter_mut().zip(ht.iter_mut()).zip(ct).zip(st) {
        let (x0, x1) = (*a, *b);
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn silu_mul8(g: __m256, u: __m256) -> __m256 {
    let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0), e)), u)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn silu_mul(gate: &mut [f32], up: &[f32]) {
    let (gc, gt) = gate.as_chunks_mut::<W>();
    let (uc, ut) = up.as_chunks::<W>();
    for (g, u) in gc.iter_mut().zip(uc) {
        store(g, silu_mul8(load(g), load(u)));
    }
    if !gt.is_empty() {
        let (mut g, mut u) = ([0f32; W], [0f32; W]);
        g[..gt.len()].copy_from_slice(gt);
        u[..ut.len()].copy_from_slice(ut);
        let r = silu_mul8(load(&g), load(&u));
        store(&mut g, r);
        gt.copy_from_slice(&g[..gt.len()]);
    }
}

/// Max of a slice (-inf when empty).
#[target_feature(enable = "avx2,fma,f16c")]
fn max_slice(x: &[f32]) -> f32 {
    let (xc, xt) = x.as_chunks::<W>();
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for v in xc {
        m = _mm256_max_ps(m, load(v));
    }
    xt.iter().fold(hmax(m), |a, &b| a.max(b))
}

/// x = exp(x - max) in place; returns the sum of the new values (fixed order).
#[target_feature(enable = "avx2,fma,f16c")]
fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    let mv = _mm256_set1_ps(max);
    let mut acc = _mm256_setzero_ps();
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        let e = exp(_mm256_sub_ps(load(v), mv));
        acc = _mm256_add_ps(acc, e);
        store(v, e);
    }
    xt.iter_mut().for_each(|v| *v -= max);
    exp_tail(xt);
    hsum(acc) + xt.iter().sum::<f32>()
}

/// x = f16(exp(x - max) * inv) in place (as f32): ggml's normalised probabilities, rounded
/// to f16 (see `ggml_f16`).
#[target_feature(enable = "avx2,fma,f16c")]
fn exp_scale_f16(x: &mut [f32], max: f32, inv: f32) {
    let (mv, iv) = (_mm256_set1_ps(max), _mm256_set1_ps(inv));
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        let p = _mm256_mul_ps(exp(_mm256_sub_ps(load(v), mv)), iv);
        store(v, _mm256_cvtph_ps(_mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(p)));
    }
    xt.iter_mut().for_each(|v| *v -= max);
    exp_tail(xt);
    xt.iter_mut().for_each(|v| *v = f16::from_f32(*v * inv).to_f32());
}

#[target_feature(enable = "avx2,fma,f16c")]
fn scale_slice(x: &mut [f32], f: f32) {
    let fv = _mm256_set1_ps(f);
    let (xc, xt) = x.as_chunks_mut::<W>();
    for v in xc.iter_mut() {
        store(v, _mm256_mul_ps(load(v), fv));
    }
    xt.iter_mut().for_each(|v| *v *= f);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn softmax_row(x: &mut [f32]) {
    let max = max_slice(x);
    let sum = exp_sub_sum(x, max);
    scale_slice(x, 1.0 / sum);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f32_to_f16(src: &[f32], dst: &mut [f16]) {
    let (sc, st) = src.as_chunks::<W>();
    let (dc, dt) = dst.as_chunks_mut::<W>();
    for (s, d) in sc.iter().zip(dc.iter_mut()) {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(load(s));
        // SAFETY: `d` is 8 writable f16 = 16 bytes; unaligned store.
        unsafe { _mm_storeu_si128(d.as_mut_ptr().cast(), h) };
    }
    super::scalar::f32_to_f16(st, dt);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    let (sc, st) = src.as_chunks::<W>();
    let (dc, dt) = dst.as_chunks_mut::<W>();
    for (s, d) in sc.iter().zip(dc.iter_mut()) {
        // SAFETY: `s` is 8 readable f16.
        store(d, unsafe { load_h(s.as_ptr()) });
    }
    super::scalar::f16_to_f32(st, dt);
}

/// Logits of keys `0..n` of a block: s[j] = scale * q . k_j. Four keys at a time, each with
/// its own accumulator, reduced in a fixed order.
#[target_feature(enable = "avx2,fma,f16c")]
fn block_logits<T: Load8>(h: &AttnHead<'_, T>, kb: &[T], n: usize, s: &mut [f32; ATTN_BLOCK]) {
    let hd = h.q.len();
    let (qc, qt) = h.q.as_chunks::<W>();
    let row = |j: usize| &kb[j * h.kv_row + h.kv_off..][..hd];
    let tail_dot = |kr: &[T]| -> f32 {
        qt.iter().zip(&kr[hd - qt.len()..]).map(|(&a, &b)| a * b.to_f32()).sum()
    };
    let mut j = 0;
    while j + 4 <= n {
        let rows = [row(j), row(j + 1), row(j + 2), row(j + 3)];
        let mut acc = [_mm256_setzero_ps(); 4];
        for (t, qv) in qc.iter().enumerate() {
            let qv = load(qv);
            for (a, kr) in acc.iter_mut().zip(&rows) {
                // SAFETY: t * 8 + 8 <= hd = kr.len().
                *a = _mm256_fmadd_ps(qv, unsafe { T::load8(kr.as_ptr().add(t * W)) }, *a);
            }
        }
        let tails = [tail_dot(rows[0]), tail_dot(rows[1]), tail_dot(rows[2]), tail_dot(rows[3])];
        // SAFETY: `tails` is 4 readable f32.
        let sums = _mm_add_ps(hsum4(acc[0], acc[1], acc[2], acc[3]), unsafe {
            _mm_loadu_ps(tails.as_ptr())
        });
        let sums = _mm_mul_ps(sums, _mm_set1_ps(h.scale));
        // SAFETY: j + 4 <= n <= ATTN_BLOCK: 4 writable f32.
        unsafe { _mm_storeu_ps(s.as_mut_ptr().add(j), sums) };
        j += 4;
    }
    for j in j..n {
        let kr = row(j);
        let mut acc = _mm256_setzero_ps();
        for (t, qv) in qc.iter().enumerate() {
            // SAFETY: t * 8 + 8 <= hd = kr.len().
            acc = _mm256_fmadd_ps(load(qv), unsafe { T::load8(kr.as_ptr().add(t * W)) }, acc);
        }
        s[j] = (hsum(acc) + tail_dot(kr)) * h.scale;
    }
}

/// out[d] += sum_j p[j] * v_j[d] over keys `0..p.len()` of a block, 8 dims at a time with
/// four accumulators (keys j mod 4) combined in a fixed order.
#[target_feature(enable = "avx2,fma,f16c")]
fn block_accumulate<T: Load8>(h: &AttnHead<'_, T>, vb: &[T], p: &[f32], out: &mut [f32]) {
    let hd = h.q.len();
    let n = p.len();
    assert!(n > 0 && vb.len() >= (n - 1) * h.kv_row + h.kv_off + hd);
    let base = h.kv_off;
    let (oc, ot) = out.as_chunks_mut::<W>();
    for (t, o) in oc.iter_mut().enumerate() {
        let d = base + t * W;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut j = 0;
        while j + 4 <= n {
            for (i, a) in acc.iter_mut().enumerate() {
                // SAFETY: (j + i) < n and t * 8 + 8 <= hd, so the 8 values end inside `vb`
                // (asserted above).
                let vv = unsafe { T::load8(vb.as_ptr().add((j + i) * h.kv_row + d)) };
                *a = _mm256_fmadd_ps(_mm256_set1_ps(p[j + i]), vv, *a);
            }
            j += 4;
        }
        for j in j..n {
            // SAFETY: as above, j < n.
            let vv = unsafe { T::load8(vb.as_ptr().add(j * h.kv_row + d)) };
            acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), vv, acc[0]);
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        store(o, _mm256_add_ps(load(o), sum));
    }
    let d0 = hd - ot.len();
    for (i, o) in ot.iter_mut().enumerate() {
        for (j, &pj) in p.iter().enumerate() {
            *o += pj * vb[j * h.kv_row + base + d0 + i].to_f32();
        }
    }
}

/// One (query row, head) of attention over `ranges`; writes f32 [head_dim] into `out`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn attend<T: Load8>(h: &AttnHead<'_, T>, ranges: &[Range<usize>], out: &mut [f32]) {
    attend_obs::<T, _, true>(h, ranges, out, &mut NoObserver);
}

/// `attend`, reporting every block's logits to `obs`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn attend_extras<T: Load8>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut RowExtras<'_>,
) -> OnlineSoftmax {
    attend_obs::<T, _, true>(h, ranges, out, obs)
}

/// `attend_extras` without the V pass: only the observer's outputs and the softmax state;
/// `out` is not touched (the scoring pass of selective attention).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn score_extras<T: Load8>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut RowExtras<'_>,
) -> OnlineSoftmax {
    attend_obs::<T, _, false>(h, ranges, out, obs)
}

/// The two passes of ggml's precision over an f16 cache (see `ggml_f16`): the max and
/// sum, then the V rows weighted by the normalised probabilities rounded to f16. With
/// `N` >= the visible keys the first pass's logits are kept (f32 [N] on the stack) for the
/// second; with `N` = 0 they are computed again (the same values: the same code on the
/// same data).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn two_pass<T: Load8, O: BlockObserver, const N: usize>(
    h: &AttnHead<'_, T>,
    ranges: &[Range<usize>],
    out: &mut [f32],
    obs: &mut O,
) -> OnlineSoftmax {
    let mut st = OnlineSoftmax::new();
    // f32 [ATTN_BLOCK]: the block's logits, then its unnormalised probabilities.
    let mut s = [0f32; ATTN_BLOCK];
    // f32 [N]: every visible key's logit, in visiting order.
    let mut kept = [0f32; N];
    let mut at = 0;
    for r in ranges {
        for (c, n) in blocks(r) {
            block_logits(h, h.block(h.k, c, n), n, &mut s);
            if N > 0 {
                kept[at..at + n].copy_from_slice(&s[..n]);
                at += n;
            }
            let prev = st;
            st.update(max_slice(&s[..n]));
            obs.block(c, &s[..n], prev, st.max);
            st.sum += exp_sub_sum(&mut s[..n], st.max);
        }
    }
    out.fill(0.0);
    let inv = 1.0 / st.sum;
    at = 0;
    for r in ranges {
        for (c, n) in blocks(r) {
            if N > 0 {
                s[..n].copy_from_slice(&kept[at..at + n]);
                at += n;
            } else {
                block_logits(h, h.block(h.k, c, n), n, &mut s);
            }
            exp_scale_f16(&mut s[..n], st.max, inv);
            block_accumulate(h, h.block(h.v, c, n), &s[..n], out);
        }
    }
    st
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn attend_obs<T: Load8, O: BlockObserver, const V: bool>(
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
        // Two passes (see `ggml_f16`), keeping the logits between them where they fit.
        let visible: usize = ranges.iter().map(|r| r.len()).sum();
        return match visible {
            0..=512 => two_pass::<T, O, 512>(h, ranges, out, obs),
            513..=LOGITS_KEPT => two_pass::<T, O, LOGITS_KEPT>(h, ranges, out, obs),
            _ => two_pass::<T, O, 0>(h, ranges, out, obs),
        };
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
