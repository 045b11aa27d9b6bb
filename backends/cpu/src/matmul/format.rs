//! The integer "sub-block" view of every quantized weight type, shared by all SIMD levels.
//!
//! Every supported quantized type is a sequence of sub-blocks of `bs` (16 or 32) elements,
//! each element an unsigned 8-bit code `q`, with a per-sub-block scale `dw` and either a
//! per-sub-block min `mw` or a fixed integer offset `off`:
//!
//!   x = dw * (q - off) + mw
//!
//! (Q4_1: dw = d, mw = m; Q4_K: dw = d * sc_j, mw = -dmin * m_j; Q5_0: off = 16; Q8_0: the
//! signed byte w is stored as q = w + 128 with off = 128 ...). Activations are quantized to
//! the weight's dot type by the runtime's reference quantizer and described the same way:
//! codes `a` (i8), a scale `da` per sub-block, `sa = da * sum(a)` (f32; for Q8_1 the block's
//! stored `s`) and `corr = -off * sum(a)` (i32). Then one sub-block contributes
//!
//!   dw * da * (sum(q * a) + corr) + mw * sa
//!
//! which is exactly the reference's integer dot per sub-block, scaled in f32. The unsigned
//! codes suit `vpdpbusd` (u8 x i8) and `vpmaddubsw` directly. The GEMM repacks weights into
//! this form once per tile and reuses them across activation rows; fused GEMV kernels read
//! the native blocks and only this module's activation side.

use weft::quant::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
use weft::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
use weft::GgmlType;

/// The activation (dot) format a weight type is multiplied with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActKind {
    Q8_0,
    Q8_1,
    Q8K,
    /// Float weights: activations stay f32.
    F32,
}

impl ActKind {
    /// The ggml type of the quantized activation blocks (None for f32).
    pub(crate) fn ggml_type(self) -> Option<GgmlType> {
        match self {
            Self::Q8_0 => Some(GgmlType::Q8_0),
            Self::Q8_1 => Some(GgmlType::Q8_1),
            Self::Q8K => Some(GgmlType::Q8_K),
            Self::F32 => None,
        }
    }
}

/// How a weight type maps onto sub-blocks (see the module comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SubFormat {
    pub act: ActKind,
    /// Elements per sub-block: 32 or 16 (0 for float weights).
    pub bs: usize,
    /// Integer offset subtracted from the u8 codes.
    pub off: i32,
    /// Whether sub-blocks carry a float min `mw`.
    pub has_min: bool,
    /// The largest unpacked code (before the offset): how many `vpmaddubsw` products an
    /// i16 lane can sum exactly ([`SubFormat::i16_chunks`]; only x86's `vpmaddubsw`
    /// kernels ask).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub code_max: u32,
}

impl SubFormat {
    /// How many 4-code chunks of `vpmaddubsw` pair sums (each at most 2 * code_max * 128 in
    /// magnitude, activations being i8) one i16 lane can add without overflow: 8 for 4-bit
    /// codes, 4 for 5-bit, 2 for 6-bit, 0 for 8-bit (not even one pair sum is safe).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn i16_chunks(&self) -> usize {
        if self.code_max == 0 {
            return 0;
        }
        (i16::MAX as u32 / (2 * self.code_max * 128)) as usize
    }
}

/// Activation rows are padded to a multiple of this many sub-blocks (zero codes and
/// metadata), so kernels may read sub-blocks in fours past the row's end.
pub(crate) const SUB_PAD: usize = 4;

/// The sub-block format of `t`, or `None` when the matmul does not support it.
pub(crate) fn sub_format(t: GgmlType) -> Option<SubFormat> {
    use GgmlType as G;
    let q = |act, bs, off, has_min, code_max| Some(SubFormat { act, bs, off, has_min, code_max });
    match t {
        G::Q4_0 => q(ActKind::Q8_0, 32, 8, false, 15),
        G::Q5_0 => q(ActKind::Q8_0, 32, 16, false, 31),
        G::Q8_0 => q(ActKind::Q8_0, 32, 128, false, 255),
        G::Q4_1 => q(ActKind::Q8_1, 32, 0, true, 15),
        G::Q5_1 => q(ActKind::Q8_1, 32, 0, true, 31),
        G::Q4_K => q(ActKind::Q8K, 32, 0, true, 15),
        G::Q5_K => q(ActKind::Q8K, 32, 0, true, 31),
        G::Q2_K => q(ActKind::Q8K, 16, 0, true, 3),
        G::Q3_K => q(ActKind::Q8K, 16, 4, false, 7),
        G::Q6_K => q(ActKind::Q8K, 16, 32, false, 63),
        G::F32 | G::F16 | G::BF16 => q(ActKind::F32, 0, 0, false, 0),
        _ => None,
    }
}

fn f16(h: half::f16) -> f32 {
    h.to_f32()
}

/// The 6-bit scale and min `j` (0..8) of a Q4_K/Q5_K super-block (ggml's packing).
pub(crate) fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The 16 signed 6-bit scales of a Q3_K super-block (already minus 32).
pub(crate) fn scales_q3k(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for j in 0..16 {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = ((low | (high << 4)) as i8).wrapping_sub(32);
    }
    out
}

/// Call `f(i, block i)` for every block of `row`, viewing the bytes in place when they are
/// aligned for `B` and reading each block unaligned otherwise (GGUF data is normally
/// aligned, but a `WeightRef` may point anywhere).
fn for_blocks<B: bytemuck::Pod>(row: &[u8], mut f: impl FnMut(usize, &B)) {
    match bytemuck::try_cast_slice::<u8, B>(row) {
        Ok(blocks) => blocks.iter().enumerate().for_each(|(i, b)| f(i, b)),
        Err(_) => {
            for (i, c) in row.chunks_exact(std::mem::size_of::<B>()).enumerate() {
                f(i, &bytemuck::pod_read_unaligned(c));
            }
        }
    }
}

/// Unpack one weight row (native blocks, `row.len() == row_size(cols)`) into u8 codes
/// `q` (u8 [cols]), sub-block scales `d` (f32 [cols / bs]) and mins `m` (f32 [cols / bs],
/// left untouched for types without mins). Scalar; the GEMM calls it once per weight row.
pub(crate) fn unpack_row(t: GgmlType, row: &[u8], q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
    use GgmlType as G;
    match t {
        G::Q4_0 => {
            for_blocks::<BlockQ4_0>(row, |i, b| {
                let o = &mut q[i * 32..i * 32 + 32];
                for j in 0..16 {
                    o[j] = b.qs[j] & 0xF;
                    o[j + 16] = b.qs[j] >> 4;
                }
                d[i] = f16(b.d);
            });
        }
        G::Q4_1 => {
            for_blocks::<BlockQ4_1>(row, |i, b| {
                let o = &mut q[i * 32..i * 32 + 32];
                for j in 0..16 {
                    o[j] = b.qs[j] & 0xF;
                    o[j + 16] = b.qs[j] >> 4;
                }
                d[i] = f16(b.d);
                m[i] = f16(b.m);
            });
        }
        G::Q5_0 => {
            for_blocks::<BlockQ5_0>(row, |i, b| {
                let qh = u32::from_le_bytes(b.qh);
                let o = &mut q[i * 32..i * 32 + 32];
                for j in 0..16 {
                    o[j] = (b.qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
                    o[j + 16] = (b.qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                }
                d[i] = f16(b.d);
            });
        }
        G::Q5_1 => {
            for_blocks::<BlockQ5_1>(row, |i, b| {
                let qh = u32::from_le_bytes(b.qh);
                let o = &mut q[i * 32..i * 32 + 32];
                for j in 0..16 {
                    o[j] = (b.qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
                    o[j + 16] = (b.qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                }
                d[i] = f16(b.d);
                m[i] = f16(b.m);
            });
        }
        G::Q8_0 => {
            for_blocks::<BlockQ8_0>(row, |i, b| {
                for j in 0..32 {
                    q[i * 32 + j] = (b.qs[j] as u8) ^ 0x80;
                }
                d[i] = f16(b.d);
            });
        }
        G::Q4_K => {
            for_blocks::<BlockQ4K>(row, |i, b| {
                let (dd, dmin) = (f16(b.d), f16(b.dmin));
                for j in 0..4 {
                    let o = &mut q[i * 256 + j * 64..i * 256 + j * 64 + 64];
                    for l in 0..32 {
                        o[l] = b.qs[j * 32 + l] & 0xF;
                        o[l + 32] = b.qs[j * 32 + l] >> 4;
                    }
                }
                for j in 0..8 {
                    let (sc, mn) = scale_min_k4(j, &b.scales);
                    d[i * 8 + j] = dd * sc as f32;
                    m[i * 8 + j] = -dmin * mn as f32;
                }
            });
        }
        G::Q5_K => {
            for_blocks::<BlockQ5K>(row, |i, b| {
                let (dd, dmin) = (f16(b.d), f16(b.dmin));
                for j in 0..4 {
                    let o = &mut q[i * 256 + j * 64..i * 256 + j * 64 + 64];
                    for l in 0..32 {
                        let h = b.qh[l] >> (2 * j);
                        o[l] = (b.qs[j * 32 + l] & 0xF) | ((h & 1) << 4);
                        o[l + 32] = (b.qs[j * 32 + l] >> 4) | (((h >> 1) & 1) << 4);
                    }
                }
                for j in 0..8 {
                    let (sc, mn) = scale_min_k4(j, &b.scales);
                    d[i * 8 + j] = dd * sc as f32;
                    m[i * 8 + j] = -dmin * mn as f32;
                }
            });
        }
        G::Q6_K => {
            for_blocks::<BlockQ6K>(row, |i, b| {
                let dd = f16(b.d);
                for n in 0..2 {
                    let (ql, qh) = (&b.ql[n * 64..n * 64 + 64], &b.qh[n * 32..n * 32 + 32]);
                    let o = &mut q[i * 256 + n * 128..i * 256 + n * 128 + 128];
                    for l in 0..32 {
                        o[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
                        o[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
                        o[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
                        o[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
                    }
                }
                for j in 0..16 {
                    d[i * 16 + j] = dd * b.scales[j] as f32;
                }
            });
        }
        G::Q2_K => {
            for_blocks::<BlockQ2K>(row, |i, b| {
                let (dd, dmin) = (f16(b.d), f16(b.dmin));
                // Element n*128 + j*32 + l is bits 2j..2j+2 of qs[n*32 + l].
                for n in 0..2 {
                    for j in 0..4 {
                        let o: &mut [u8; 32] =
                            (&mut q[i * 256 + n * 128 + j * 32..][..32]).try_into().unwrap();
                        let qs: &[u8; 32] = b.qs[n * 32..n * 32 + 32].try_into().unwrap();
                        for l in 0..32 {
                            o[l] = (qs[l] >> (2 * j)) & 3;
                        }
                    }
                }
                for j in 0..16 {
                    d[i * 16 + j] = dd * (b.scales[j] & 0xF) as f32;
                    m[i * 16 + j] = -dmin * (b.scales[j] >> 4) as f32;
                }
            });
        }
        G::Q3_K => {
            for_blocks::<BlockQ3K>(row, |i, b| {
                let dd = f16(b.d);
                // As Q2_K, plus bit n*4 + j of hmask[l] as the code's third bit.
                for n in 0..2 {
                    for j in 0..4 {
                        let o: &mut [u8; 32] =
                            (&mut q[i * 256 + n * 128 + j * 32..][..32]).try_into().unwrap();
                        let qs: &[u8; 32] = b.qs[n * 32..n * 32 + 32].try_into().unwrap();
                        let bit = 1u8 << (n * 4 + j);
                        for l in 0..32 {
                            let low = (qs[l] >> (2 * j)) & 3;
                            o[l] = low | if b.hmask[l] & bit != 0 { 4 } else { 0 };
                        }
                    }
                }
                let sc = scales_q3k(&b.scales);
                for j in 0..16 {
                    d[i * 16 + j] = dd * sc[j] as f32;
                }
            });
        }
        _ => unreachable!("unpack_row: {t} has no sub-block format (checked by the caller)"),
    }
}

/// Number of sub-blocks and of padded sub-blocks (a multiple of [`SUB_PAD`]) of a row.
pub(crate) fn n_sub(cols: usize, bs: usize) -> (usize, usize) {
    let n = cols / bs;
    (n, n.div_ceil(SUB_PAD) * SUB_PAD)
}

/// The SIMD view of a block of `rb` activation rows: codes i8 [n_sub_pad * bs / 4, rb, 4]
/// (4-byte chunk k of every row side by side, so a microkernel reaches all its rows from one
/// pointer; with `rb == 1` this is the row in element order), and per sub-block `d`, `s`
/// f32 [n_sub_pad, rb] and `corr` i32 [n_sub_pad, rb].
pub(crate) struct ActBlockMut<'a> {
    pub qs: &'a mut [i8],
    pub d: &'a mut [f32],
    pub s: &'a mut [f32],
    pub corr: &'a mut [i32],
}

/// Derive row `slot` (of `rb`) of an activation block's SIMD view (see [`ActBlockMut`]) from
/// the row's reference dot-type blocks; `blocks == None` zeroes the slot (rows past `m`).
/// Every element of the slot is written, padding sub-blocks with zeros.
pub(crate) fn act_from_blocks(
    fmt: SubFormat,
    blocks: Option<&[u8]>,
    cols: usize,
    slot: usize,
    rb: usize,
    v: &mut ActBlockMut,
) {
    let bs = fmt.bs;
    let (n, n_pad) = n_sub(cols, bs);
    assert!(slot < rb && v.qs.len() >= n_pad * bs * rb && v.d.len() >= n_pad * rb);
    assert!(v.s.len() >= n_pad * rb && v.corr.len() >= n_pad * rb);
    let mut put = |j: usize, codes: &[i8], da: f32, stored_s: Option<f32>| {
        let sum: i32 = codes.iter().map(|&c| c as i32).sum();
        let m = j * rb + slot;
        v.d[m] = da;
        v.s[m] = stored_s.unwrap_or(da * sum as f32);
        v.corr[m] = -fmt.off * sum;
        for (t, c) in codes.chunks_exact(4).enumerate() {
            let o = ((j * bs / 4 + t) * rb + slot) * 4;
            v.qs[o..o + 4].copy_from_slice(c);
        }
    };
    let zeros = [0i8; 32];
    match (fmt.act, blocks) {
        (_, None) => (0..n).for_each(|j| put(j, &zeros[..bs], 0.0, None)),
        (ActKind::Q8_0, Some(b)) => {
            for (j, b) in bytemuck::cast_slice::<u8, BlockQ8_0>(b).iter().enumerate() {
                put(j, &b.qs, f16(b.d), None);
            }
        }
        (ActKind::Q8_1, Some(b)) => {
            for (j, b) in bytemuck::cast_slice::<u8, BlockQ8_1>(b).iter().enumerate() {
                put(j, &b.qs, f16(b.d), Some(f16(b.s)));
            }
        }
        (ActKind::Q8K, Some(b)) => {
            let per = 256 / bs;
            for (i, b) in bytemuck::cast_slice::<u8, BlockQ8K>(b).iter().enumerate() {
                for k in 0..per {
                    put(i * per + k, &b.qs[k * bs..k * bs + bs], b.d, None);
                }
            }
        }
        (ActKind::F32, _) => unreachable!("act_from_blocks: float weights keep f32 activations"),
    }
    // Padding sub-blocks contribute nothing.
    for j in n..n_pad {
        put(j, &zeros[..bs], 0.0, Some(0.0));
    }
}

/// Repack up to `w` weight rows (already unpacked: `q` u8 [n_rows, cols], `d`/`m` f32
/// [n_rows, n_sub]) into one GEMM panel of `w` rows: `pq` u8 [n_sub, bs/4, w, 4] (chunk t of
/// sub-block j holds codes 4t..4t+4 of every row, so one load gives a `vpdpbusd` operand
/// whose i32 lanes are the panel's rows) and `pd`/`pm` f32 [n_sub, w]. Rows past `n_rows`
/// are zero.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_panel(
    fmt: SubFormat,
    cols: usize,
    w: usize,
    n_rows: usize,
    q: &[u8],
    d: &[f32],
    m: &[f32],
    pq: &mut [u8],
    pd: &mut [f32],
    pm: &mut [f32],
) {
    let n = cols / fmt.bs;
    let chunks = cols / 4;
    assert!(n_rows <= w && q.len() >= n_rows * cols && pq.len() >= chunks * w * 4);
    assert!(d.len() >= n_rows * n && pd.len() >= n * w);
    for j in 0..n {
        for c in 0..w {
            pd[j * w + c] = if c < n_rows { d[c * n + j] } else { 0.0 };
            if fmt.has_min {
                pm[j * w + c] = if c < n_rows { m[c * n + j] } else { 0.0 };
            }
        }
    }
    // A transpose of 4-byte words: word k of row c goes to word (k * w + c).
    let words: &mut [u32] = bytemuck::cast_slice_mut(&mut pq[..chunks * w * 4]);
    for c in 0..w {
        if c < n_rows {
            let row = &q[c * cols..(c + 1) * cols];
            for (k, word) in row.chunks_exact(4).enumerate() {
                words[k * w + c] = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
            }
        } else {
            for k in 0..chunks {
                words[k * w + c] = 0;
            }
        }
    }
}
