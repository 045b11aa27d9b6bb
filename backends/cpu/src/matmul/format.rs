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
}

/// Sub-blocks per interleaved group: a group holds, per 16-byte chunk, 4 bytes of each of its
/// `GROUP` sub-blocks, so one 128-bit lane of `vpdpbusd` output is one sub-block per i32.
pub(crate) const GROUP: usize = 4;

/// The sub-block format of `t`, or `None` when the matmul does not support it.
pub(crate) fn sub_format(t: GgmlType) -> Option<SubFormat> {
    use GgmlType as G;
    let q = |act, bs, off, has_min| Some(SubFormat { act, bs, off, has_min });
    match t {
        G::Q4_0 => q(ActKind::Q8_0, 32, 8, false),
        G::Q5_0 => q(ActKind::Q8_0, 32, 16, false),
        G::Q8_0 => q(ActKind::Q8_0, 32, 128, false),
        G::Q4_1 | G::Q5_1 => q(ActKind::Q8_1, 32, 0, true),
        G::Q4_K | G::Q5_K => q(ActKind::Q8K, 32, 0, true),
        G::Q2_K => q(ActKind::Q8K, 16, 0, true),
        G::Q3_K => q(ActKind::Q8K, 16, 4, false),
        G::Q6_K => q(ActKind::Q8K, 16, 32, false),
        G::F32 | G::F16 | G::BF16 => q(ActKind::F32, 0, 0, false),
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

/// Activation layout in the scratch: natural (GEMV) or interleaved per group (GEMM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// i8 [k]: element order, sub-block metadata [n_sub].
    Natural,
    /// i8 [n_group, bs/4 chunks, GROUP sub-blocks, 4]: chunk t of group g holds bytes
    /// 4t..4t+4 of each of the group's sub-blocks; metadata [n_group * GROUP], padded
    /// sub-blocks zero.
    Interleaved,
}

/// Number of sub-blocks and of padded sub-blocks (a whole number of groups) of a row.
pub(crate) fn n_sub(cols: usize, bs: usize) -> (usize, usize) {
    let n = cols / bs;
    (n, n.div_ceil(GROUP) * GROUP)
}

/// Derive the SIMD activation view of one row from its reference dot-type blocks.
/// `qs`: i8 [n_sub_pad * bs]; `d`, `s`: f32 [n_sub_pad]; `corr`: i32 [n_sub_pad].
pub(crate) fn act_from_blocks(
    fmt: SubFormat,
    layout: Layout,
    blocks: &[u8],
    cols: usize,
    qs: &mut [i8],
    d: &mut [f32],
    s: &mut [f32],
    corr: &mut [i32],
) {
    let bs = fmt.bs;
    let (n, n_pad) = n_sub(cols, bs);
    // Zero the padding sub-blocks' codes first (in the interleaved layout they share the
    // last group's chunks with live sub-blocks, written below).
    let pad_from = match layout {
        Layout::Natural => n * bs,
        Layout::Interleaved => n / GROUP * GROUP * bs,
    };
    qs[pad_from..n_pad * bs].fill(0);
    // Per sub-block: codes, scale, and the stored Q8_1 sum where the reference uses it.
    let mut put = |j: usize, codes: &[i8], da: f32, stored_s: Option<f32>| {
        let sum: i32 = codes.iter().map(|&c| c as i32).sum();
        d[j] = da;
        s[j] = stored_s.unwrap_or(da * sum as f32);
        corr[j] = -fmt.off * sum;
        match layout {
            Layout::Natural => qs[j * bs..j * bs + bs].copy_from_slice(codes),
            Layout::Interleaved => {
                let (g, b) = (j / GROUP, j % GROUP);
                let base = g * GROUP * bs;
                for t in 0..bs / 4 {
                    let o = base + t * 4 * GROUP + b * 4;
                    qs[o..o + 4].copy_from_slice(&codes[t * 4..t * 4 + 4]);
                }
            }
        }
    };
    match fmt.act {
        ActKind::Q8_0 => {
            for (j, b) in bytemuck::cast_slice::<u8, BlockQ8_0>(blocks).iter().enumerate() {
                put(j, &b.qs, f16(b.d), None);
            }
        }
        ActKind::Q8_1 => {
            for (j, b) in bytemuck::cast_slice::<u8, BlockQ8_1>(blocks).iter().enumerate() {
                put(j, &b.qs, f16(b.d), Some(f16(b.s)));
            }
        }
        ActKind::Q8K => {
            let per = 256 / bs;
            for (i, b) in bytemuck::cast_slice::<u8, BlockQ8K>(blocks).iter().enumerate() {
                for k in 0..per {
                    put(i * per + k, &b.qs[k * bs..k * bs + bs], b.d, None);
                }
            }
        }
        ActKind::F32 => unreachable!("act_from_blocks: float weights keep f32 activations"),
    }
    // Zero the padding sub-blocks so they contribute nothing.
    for j in n..n_pad {
        d[j] = 0.0;
        s[j] = 0.0;
        corr[j] = 0;
    }
}

/// Repack up to 4 weight rows (already unpacked: `q` u8 [4, cols], `d`/`m` f32 [4, n_sub])
/// into one interleaved tile: `tq` u8 [n_group, bs/4, 4 rows, GROUP, 4] and `td`/`tm`
/// f32 [n_group, 4 rows, GROUP]. Rows past `n_rows` and padded sub-blocks are zero.
pub(crate) fn interleave_tile(
    fmt: SubFormat,
    cols: usize,
    n_rows: usize,
    q: &[u8],
    d: &[f32],
    m: &[f32],
    tq: &mut [u8],
    td: &mut [f32],
    tm: &mut [f32],
) {
    let bs = fmt.bs;
    let (n, n_pad) = n_sub(cols, bs);
    let chunks = bs / 4;
    for g in 0..n_pad / GROUP {
        for c in 0..4 {
            for b in 0..GROUP {
                let j = g * GROUP + b;
                let meta = g * 16 + c * GROUP + b;
                let live = c < n_rows && j < n;
                td[meta] = if live { d[c * n + j] } else { 0.0 };
                if fmt.has_min {
                    tm[meta] = if live { m[c * n + j] } else { 0.0 };
                }
                for t in 0..chunks {
                    let o = ((g * chunks + t) * 4 + c) * 16 + b * 4;
                    if live {
                        let src = c * cols + j * bs + t * 4;
                        tq[o..o + 4].copy_from_slice(&q[src..src + 4]);
                    } else {
                        tq[o..o + 4].fill(0);
                    }
                }
            }
        }
    }
}
