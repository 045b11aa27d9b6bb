//! Weights repacked for decode: 8 rows interleaved block by block ("x8"), the layout the
//! GEMV kernels of `avx2_x8.rs` read.
//!
//! Why: a GEMV over ggml's row-major blocks spends most of its time per block outside the
//! integer dot (scale loads, an int-to-float conversion and an FMA per 32 weights of one
//! row, plus a horizontal sum per row), which caps it below the memory bandwidth. With 8 rows
//! side by side, one 256-bit `vpdpbusd` multiplies 4 codes of each of the 8 rows by the same
//! 4 activation codes, so the 8 row sums land in the 8 lanes of one register: the scales of
//! a block are one 8 x f16 load, and the float work is shared by 8 rows.
//!
//! Sizes are unchanged (a block column of 8 rows takes 8 native blocks' bytes; Q4_K 2.8 %
//! more, its 6-bit scales and mins stored as bytes; Q6_K exactly 8 blocks' 1680 bytes), so
//! the packed copy, once the loader lets go of the file's pages, keeps resident memory at
//! about the model's size.
//!
//! Layout: groups of 8 rows (the last padded with zero rows), each `nb` block columns of
//! `8 * block_bytes`, one after the other. A block column holds, for rows r = 0..8:
//! - `d`: f16 [8] at 0 (row r's block scale);
//! - `m`: f16 [8] at 16, Q4_1/Q5_1 only (the block min);
//! - `qh`: u32 [8] after those, Q5_0/Q5_1 only: row r's fifth bits, bit `8e + k` = the bit
//!   of element `4k + e` (k < 8, e < 4), so group k's bits come out with one shift and mask;
//! - `qs`: 4-bit types: u8 [4][8][4]: chunk v, row r = native `qs[4v..4v + 4]` (low nibbles
//!   elements `4v..4v+4`, high nibbles elements `16+4v..`); Q8_0: u8 [8][8][4]: group k,
//!   row r = native codes `4k..4k + 4` plus 128 (unsigned, for `vpdpbusd`).
//!
//! Q4_K (256 values per block): `d` f16 [8] at 0, `dmin` f16 [8] at 16 (in `m`'s place),
//! 6-bit scales u8 [8 sub-blocks][8 rows] at 32, mins likewise at 96, then codes u8
//! [32 chunks][8 rows][4] at 160: chunk `8p + v` is native `qs[32p + 4v..]`, whose low
//! nibbles are sub-block 2p and high nibbles sub-block 2p + 1, elements `4v..4v + 4`.
//!
//! Q6_K (256 values, sub-blocks of 16; no overhead: 16 + 128 + 1024 + 512 = 8 x 210 bytes):
//! `d` f16 [8] at 0, the signed scales i8 [16 sub-blocks][8 rows] at 16, then the low
//! nibbles `ql` u8 [32 chunks][8 rows][4] at 144 (chunk c = native `ql[4c..4c + 4]`), then
//! the high bit pairs `qh` u8 [16 chunks][8 rows][4] at 1168 (chunk c = native
//! `qh[4c..4c + 4]`). Native chunks keep ggml's pairing: for half n and v < 8, ql chunks
//! `16n + v` and `16n + 8 + v` and qh chunk `8n + v` hold, for 4 codes of each of the 8 rows,
//! elements `128n + 32k + 4v..` (k < 4) as low nibble of the first, of the second, high
//! nibble of the first, of the second, with qh bits `2k..2k + 2`: three 256-bit loads and a
//! few shifts and masks give four `vpdpbusd` operands, each against one broadcast 4-byte
//! activation chunk.

use super::arena::{Arena, ArenaSlice};
use super::AlignedBuf;
use weft::GgmlType;

/// Rows per interleaved group.
pub(crate) const X8: usize = 8;

/// Byte offsets inside one block column of a packed type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct X8Layout {
    /// Bytes of one native block.
    pub block: usize,
    /// Elements of one block (32, or 256 for Q4_K and Q6_K).
    pub elems: usize,
    /// Elements per sub-block, i.e. per entry of the activation metadata (`ActRow::d`,
    /// `corr`, `s`): 32, or 16 for Q6_K.
    pub bs: usize,
    /// Bytes of one block column (8 rows): 8 native blocks, plus 32 for Q4_K's unpacked
    /// 6-bit scales and mins.
    pub column: usize,
    /// K-quants: offset of the scales, u8 [8 sub-blocks][8 rows] followed by the mins
    /// (Q4_K), or i8 [16 sub-blocks][8 rows] (Q6_K).
    pub sc: Option<usize>,
    /// Offset of `m` (f16 [8]), if the type has mins.
    pub m: Option<usize>,
    /// Offset of `qh`: u32 [8] of fifth bits (Q5_0/Q5_1), or Q6_K's high bit pairs.
    pub qh: Option<usize>,
    /// Offset of the codes (Q6_K: their low nibbles).
    pub qs: usize,
}

impl X8Layout {
    /// The layout of a type that packs, or `None`.
    pub(crate) fn of(t: GgmlType) -> Option<Self> {
        use GgmlType as G;
        let l = |block, m, qh, qs| {
            Some(X8Layout { block, elems: 32, bs: 32, column: block * X8, sc: None, m, qh, qs })
        };
        match t {
            G::Q4_0 => l(18, None, None, 16),
            G::Q4_1 => l(20, Some(16), None, 32),
            G::Q5_0 => l(22, None, Some(16), 48),
            G::Q5_1 => l(24, Some(16), Some(32), 64),
            G::Q8_0 => l(34, None, None, 16),
            // d [8], dmin [8] (as `m`), scales [8][8], mins [8][8], codes [32 chunks][8][4].
            G::Q4_K => Some(X8Layout {
                block: 144,
                elems: 256,
                bs: 32,
                column: 1184,
                sc: Some(32),
                m: Some(16),
                qh: None,
                qs: 160,
            }),
            // d [8], scales [16][8], ql [32 chunks][8][4], qh [16 chunks][8][4].
            G::Q6_K => Some(X8Layout {
                block: 210,
                elems: 256,
                bs: 16,
                column: 1680,
                sc: Some(16),
                m: None,
                qh: Some(1168),
                qs: 144,
            }),
            _ => None,
        }
    }

    /// Bytes of one block column (8 rows).
    pub(crate) fn column(&self) -> usize {
        self.column
    }

    /// Offset of the codes inside a native block of a 32-element type (after d, m and qh).
    fn native_qs(&self) -> usize {
        2 + 2 * usize::from(self.m.is_some()) + 4 * usize::from(self.qh.is_some())
    }
}

/// A weight matrix in the x8 layout (owned: built once when the model loads).
pub struct PackedWeight {
    pub(crate) ggml_type: GgmlType,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) layout: X8Layout,
    /// u8 [ceil(rows / 8), cols / elems, column bytes]: see the module docs.
    data: Storage,
}

/// Where the packed bytes live: huge-page memory from the `Cpu`'s arena, or the heap (no
/// arena given, or mapping failed).
enum Storage {
    Arena(ArenaSlice),
    Heap(AlignedBuf),
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeight")
            .field("ggml_type", &self.ggml_type)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

/// The fifth bits of a native Q5 block (`qh`, bit i = element i) in the packed order: byte
/// e gathers bits e, e + 4, ..., e + 28 (every fourth bit, compressed in three steps).
fn qh_to_x8(qh: u32) -> u32 {
    let mut out = 0;
    for e in 0..4 {
        let x = (qh >> e) & 0x1111_1111;
        let x = (x | (x >> 3)) & 0x0303_0303;
        let x = (x | (x >> 6)) & 0x000F_000F;
        let x = (x | (x >> 12)) & 0xFF;
        out |= x << (8 * e);
    }
    out
}

fn qh_from_x8(p: u32) -> u32 {
    let mut out = 0;
    for k in 0..8 {
        for e in 0..4 {
            out |= ((p >> (8 * e + k)) & 1) << (4 * k + e);
        }
    }
    out
}

impl PackedWeight {
    /// Repack `rows` native rows of `cols` values (`data`: `rows * row_size` bytes, checked by
    /// the caller) into memory from `arena` (else the heap). `None` when the type has no x8
    /// layout.
    pub(crate) fn pack(
        t: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
        arena: Option<&Arena>,
        cpu: Option<&crate::Cpu>,
    ) -> Option<Self> {
        let layout = X8Layout::of(t)?;
        let group_bytes = (cols / layout.elems) * layout.column();
        let size = rows.div_ceil(X8) * group_bytes;
        // Groups are independent: the thread team packs them (and so first-touches, i.e.
        // zeroes, the new pages) in parallel.
        let fill = |out: &mut [u8]| match cpu {
            Some(cpu) => cpu.par_chunks_mut(out, group_bytes, |_, g, o| {
                Self::fill_group(t, layout, rows, cols, data, g, o)
            }),
            None => out
                .chunks_exact_mut(group_bytes.max(1))
                .enumerate()
                .for_each(|(g, o)| Self::fill_group(t, layout, rows, cols, data, g, o)),
        };
        let from_arena = arena.and_then(|a| a.alloc(size, fill).ok());
        let data = match from_arena {
            Some(slice) => Storage::Arena(slice),
            None => {
                let mut buf = AlignedBuf::default();
                // Freshly grown, so zeroed like the arena's memory.
                fill(buf.bytes(size));
                Storage::Heap(buf)
            }
        };
        Some(PackedWeight { ggml_type: t, rows, cols, layout, data })
    }

    /// Write group `g` (rows 8g .. 8g + 8) of the packing of `data` into the zeroed `out`
    /// (padding rows stay zero: scale 0, codes 0).
    fn fill_group(
        t: GgmlType,
        layout: X8Layout,
        rows: usize,
        cols: usize,
        data: &[u8],
        g: usize,
        out: &mut [u8],
    ) {
        let nb = cols / layout.elems;
        let row_bytes = nb * layout.block;
        debug_assert_eq!(data.len(), rows * row_bytes);
        let nq = layout.native_qs();
        // Q8_0 codes are stored plus 128 (the xor flips the sign bit of each byte).
        let flip = if t == GgmlType::Q8_0 { 0x8080_8080u32 } else { 0 };
        let u32_at = |b: &[u8], o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let r_end = rows.min(X8 * (g + 1));
        for (lane, row) in
            data[X8 * g * row_bytes..r_end * row_bytes].chunks_exact(row_bytes).enumerate()
        {
            for (blk, col) in
                row.chunks_exact(layout.block).zip(out.chunks_exact_mut(layout.column()))
            {
                // The K-quants have layouts of their own.
                match t {
                    GgmlType::Q4_K => pack_q4k(blk, col, lane),
                    GgmlType::Q6_K => pack_q6k(blk, col, lane),
                    _ => {}
                }
                if layout.elems != 32 {
                    continue;
                }
                col[2 * lane..2 * lane + 2].copy_from_slice(&blk[..2]);
                if let Some(mo) = layout.m {
                    col[mo + 2 * lane..mo + 2 * lane + 2].copy_from_slice(&blk[2..4]);
                }
                if let Some(ho) = layout.qh {
                    let qh = qh_to_x8(u32_at(blk, nq - 4));
                    col[ho + 4 * lane..ho + 4 * lane + 4].copy_from_slice(&qh.to_le_bytes());
                }
                for c in 0..(layout.block - nq) / 4 {
                    let v = u32_at(blk, nq + 4 * c) ^ flip;
                    let o = layout.qs + c * 32 + 4 * lane;
                    col[o..o + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }

    /// The packed bytes (`ceil(rows / 8)` groups).
    pub(crate) fn bytes(&self) -> &[u8] {
        let n = self.rows.div_ceil(X8) * self.nb() * self.layout.column();
        match &self.data {
            Storage::Arena(s) => &s.bytes()[..n],
            Storage::Heap(b) => &bytemuck::cast_slice(&b.0)[..n],
        }
    }

    /// Bytes of one native row.
    pub(crate) fn row_bytes(&self) -> usize {
        self.nb() * self.layout.block
    }

    /// Block columns per group (blocks per row).
    pub(crate) fn nb(&self) -> usize {
        self.cols / self.layout.elems
    }

    /// Row `r` rebuilt in ggml's native layout into `out` (`row_bytes()` bytes): what the
    /// GEMM's unpacker and the embedding lookup read.
    pub(crate) fn native_row(&self, r: usize, out: &mut [u8]) {
        let l = self.layout;
        let nb = self.nb();
        let (g, lane) = (r / X8, r % X8);
        let nq = l.native_qs();
        let data = self.bytes();
        for (j, blk) in out[..nb * l.block].chunks_exact_mut(l.block).enumerate() {
            let col = &data[(g * nb + j) * l.column()..][..l.column()];
            // The K-quants have layouts of their own.
            match self.ggml_type {
                GgmlType::Q4_K => native_q4k(col, lane, blk),
                GgmlType::Q6_K => native_q6k(col, lane, blk),
                _ => {}
            }
            if l.elems != 32 {
                continue;
            }
            blk[..2].copy_from_slice(&col[2 * lane..2 * lane + 2]);
            if let Some(mo) = l.m {
                blk[2..4].copy_from_slice(&col[mo + 2 * lane..mo + 2 * lane + 2]);
            }
            if let Some(ho) = l.qh {
                let p = &col[ho + 4 * lane..ho + 4 * lane + 4];
                let qh = qh_from_x8(u32::from_le_bytes([p[0], p[1], p[2], p[3]]));
                blk[nq - 4..nq].copy_from_slice(&qh.to_le_bytes());
            }
            let n_chunks = (l.block - nq) / 4;
            for c in 0..n_chunks {
                let o = l.qs + c * 32 + 4 * lane;
                for (dst, &src) in blk[nq + 4 * c..nq + 4 * c + 4].iter_mut().zip(&col[o..o + 4]) {
                    *dst = if self.ggml_type == GgmlType::Q8_0 { src ^ 0x80 } else { src };
                }
            }
        }
    }
}

impl PackedWeight {
    /// Row `r` unpacked the way `format::unpack_row` unpacks a native row (u8 codes [cols]
    /// with the format's offset, f32 scales and mins per sub-block of `bs` values), straight
    /// from the packing: the GEMM's unpacker for packed weights.
    pub(crate) fn unpack_row(&self, r: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
        let l = self.layout;
        let nb = self.nb();
        let (g, lane) = (r / X8, r % X8);
        let data = self.bytes();
        let f16_at = |b: &[u8], o: usize| half::f16::from_le_bytes([b[o], b[o + 1]]).to_f32();
        for j in 0..nb {
            let col = &data[(g * nb + j) * l.column()..][..l.column()];
            match self.ggml_type {
                GgmlType::Q4_K => {
                    let (qj, mj) = (&mut q[256 * j..256 * j + 256], &mut m[8 * j..8 * j + 8]);
                    unpack_q4k(col, lane, qj, &mut d[8 * j..8 * j + 8], mj);
                    continue;
                }
                GgmlType::Q6_K => {
                    unpack_q6k(
                        col,
                        lane,
                        &mut q[256 * j..256 * j + 256],
                        &mut d[16 * j..16 * j + 16],
                    );
                    continue;
                }
                _ => {}
            }
            d[j] = f16_at(col, 2 * lane);
            if let Some(mo) = l.m {
                m[j] = f16_at(col, mo + 2 * lane);
            }
            let o = &mut q[32 * j..32 * j + 32];
            if self.ggml_type == GgmlType::Q8_0 {
                for c in 0..8 {
                    o[4 * c..4 * c + 4].copy_from_slice(&col[l.qs + 32 * c + 4 * lane..][..4]);
                }
                continue;
            }
            let qh = l.qh.map_or(0, |ho| {
                let p = &col[ho + 4 * lane..ho + 4 * lane + 4];
                u32::from_le_bytes([p[0], p[1], p[2], p[3]])
            });
            for c in 0..4 {
                let p = &col[l.qs + 32 * c + 4 * lane..][..4];
                let w = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                // Four codes at once: nibbles, and the fifth bits of elements 4k + e, at bit
                // 8e + k (k = c for the low chunk, 4 + c for the high), moved to bit 4.
                let lo = (w & 0x0F0F_0F0F) | (((qh >> c) & 0x0101_0101) << 4);
                let hi = ((w >> 4) & 0x0F0F_0F0F) | (((qh >> (c + 4)) & 0x0101_0101) << 4);
                o[4 * c..4 * c + 4].copy_from_slice(&lo.to_le_bytes());
                o[16 + 4 * c..16 + 4 * c + 4].copy_from_slice(&hi.to_le_bytes());
            }
        }
    }
}

/// One Q4_K super-block (d, dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles)
/// into row `lane` of its block column.
fn pack_q4k(blk: &[u8], col: &mut [u8], lane: usize) {
    col[2 * lane..2 * lane + 2].copy_from_slice(&blk[..2]);
    col[16 + 2 * lane..16 + 2 * lane + 2].copy_from_slice(&blk[2..4]);
    let scales: &[u8; 12] = blk[4..16].try_into().expect("12 bytes");
    for s in 0..8 {
        let (sc, mn) = super::format::scale_min_k4(s, scales);
        col[32 + 8 * s + lane] = sc;
        col[96 + 8 * s + lane] = mn;
    }
    for c in 0..32 {
        let o = 160 + 32 * c + 4 * lane;
        col[o..o + 4].copy_from_slice(&blk[16 + 4 * c..16 + 4 * c + 4]);
    }
}

/// Row `lane` of a Q4_K block column back to ggml's super-block (the 6-bit packing of
/// `scale_min_k4` inverted: every one of its 96 bits is restored).
fn native_q4k(col: &[u8], lane: usize, blk: &mut [u8]) {
    blk[..2].copy_from_slice(&col[2 * lane..2 * lane + 2]);
    blk[2..4].copy_from_slice(&col[16 + 2 * lane..16 + 2 * lane + 2]);
    let sc = |s: usize| col[32 + 8 * s + lane];
    let mn = |s: usize| col[96 + 8 * s + lane];
    for j in 0..4 {
        blk[4 + j] = sc(j) | ((sc(j + 4) >> 4) << 6);
        blk[4 + j + 4] = mn(j) | ((mn(j + 4) >> 4) << 6);
        blk[4 + j + 8] = (sc(j + 4) & 0xF) | ((mn(j + 4) & 0xF) << 4);
    }
    for c in 0..32 {
        let o = 160 + 32 * c + 4 * lane;
        blk[16 + 4 * c..16 + 4 * c + 4].copy_from_slice(&col[o..o + 4]);
    }
}

/// Row `lane` of a Q4_K block column as `format::unpack_row` gives it: 256 codes, and per
/// 32 values `d * scale` and `-dmin * min`.
fn unpack_q4k(col: &[u8], lane: usize, q: &mut [u8], d: &mut [f32], m: &mut [f32]) {
    let f16_at = |o: usize| half::f16::from_le_bytes([col[o], col[o + 1]]).to_f32();
    let (dd, dmin) = (f16_at(2 * lane), f16_at(16 + 2 * lane));
    for s in 0..8 {
        d[s] = dd * col[32 + 8 * s + lane] as f32;
        m[s] = -dmin * col[96 + 8 * s + lane] as f32;
    }
    for c in 0..32 {
        // Chunk c = 8 pair + v: native bytes 32 pair + 4v; low nibbles are sub-block
        // 2 pair, high nibbles sub-block 2 pair + 1, elements 4v.. of each.
        let (pair, v) = (c / 8, c % 8);
        let o = 160 + 32 * c + 4 * lane;
        let w = u32::from_le_bytes([col[o], col[o + 1], col[o + 2], col[o + 3]]);
        let lo = (w & 0x0F0F_0F0F).to_le_bytes();
        let hi = ((w >> 4) & 0x0F0F_0F0F).to_le_bytes();
        q[64 * pair + 4 * v..64 * pair + 4 * v + 4].copy_from_slice(&lo);
        q[64 * pair + 32 + 4 * v..64 * pair + 32 + 4 * v + 4].copy_from_slice(&hi);
    }
}

/// One Q6_K super-block (ql[128], qh[64], scales[16], d) into row `lane` of its block
/// column: native 4-byte chunks copied whole (see the module docs).
fn pack_q6k(blk: &[u8], col: &mut [u8], lane: usize) {
    col[2 * lane..2 * lane + 2].copy_from_slice(&blk[208..210]);
    for s in 0..16 {
        col[16 + 8 * s + lane] = blk[192 + s];
    }
    for c in 0..32 {
        let o = 144 + 32 * c + 4 * lane;
        col[o..o + 4].copy_from_slice(&blk[4 * c..4 * c + 4]);
    }
    for c in 0..16 {
        let o = 1168 + 32 * c + 4 * lane;
        col[o..o + 4].copy_from_slice(&blk[128 + 4 * c..128 + 4 * c + 4]);
    }
}

/// Row `lane` of a Q6_K block column back to ggml's super-block.
fn native_q6k(col: &[u8], lane: usize, blk: &mut [u8]) {
    blk[208..210].copy_from_slice(&col[2 * lane..2 * lane + 2]);
    for s in 0..16 {
        blk[192 + s] = col[16 + 8 * s + lane];
    }
    for c in 0..32 {
        let o = 144 + 32 * c + 4 * lane;
        blk[4 * c..4 * c + 4].copy_from_slice(&col[o..o + 4]);
    }
    for c in 0..16 {
        let o = 1168 + 32 * c + 4 * lane;
        blk[128 + 4 * c..128 + 4 * c + 4].copy_from_slice(&col[o..o + 4]);
    }
}

/// Row `lane` of a Q6_K block column as `format::unpack_row` gives it: 256 codes 0..63
/// (offset 32) and per 16 values `d * scale`. Four codes at a time, as the kernels build them.
fn unpack_q6k(col: &[u8], lane: usize, q: &mut [u8], d: &mut [f32]) {
    let dd = half::f16::from_le_bytes([col[2 * lane], col[2 * lane + 1]]).to_f32();
    for s in 0..16 {
        d[s] = dd * col[16 + 8 * s + lane] as i8 as f32;
    }
    let u32_at = |o: usize| u32::from_le_bytes([col[o], col[o + 1], col[o + 2], col[o + 3]]);
    for n in 0..2 {
        for v in 0..8 {
            let l0 = u32_at(144 + 32 * (16 * n + v) + 4 * lane);
            let l1 = u32_at(144 + 32 * (16 * n + 8 + v) + 4 * lane);
            let h = u32_at(1168 + 32 * (8 * n + v) + 4 * lane);
            // Elements 128n + 32k + 4v.. for k = 0..4: low nibbles of l0, of l1, high
            // nibbles of l0, of l1, with bits 2k..2k + 2 of h as bits 4 and 5.
            let codes = [
                (l0 & 0x0F0F_0F0F) | ((h & 0x0303_0303) << 4),
                (l1 & 0x0F0F_0F0F) | ((h & 0x0C0C_0C0C) << 2),
                ((l0 >> 4) & 0x0F0F_0F0F) | (h & 0x3030_3030),
                ((l1 >> 4) & 0x0F0F_0F0F) | ((h >> 2) & 0x3030_3030),
            ];
            for (k, c) in codes.iter().enumerate() {
                let o = 128 * n + 32 * k + 4 * v;
                q[o..o + 4].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qh_permutation_round_trips() {
        for qh in [0u32, 1, 0x8000_0000, 0xDEAD_BEEF, 0x1234_5678, u32::MAX] {
            assert_eq!(qh_from_x8(qh_to_x8(qh)), qh);
        }
        // Element 4k + e lands on bit 8e + k.
        assert_eq!(qh_to_x8(1 << (4 * 3 + 2)), 1 << (8 * 2 + 3));
    }

    #[test]
    fn native_rows_round_trip() {
        let mut seed = 0x1234_5678_u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        for t in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0]
            .into_iter()
            .chain([GgmlType::Q4_K, GgmlType::Q6_K])
        {
            let k = t.block_size();
            for (rows, cols) in [(1, k), (7, 2 * k), (8, 3 * k), (13, 18 * k)] {
                let rb = t.row_size(cols as u64).unwrap() as usize;
                let data: Vec<u8> = (0..rows * rb).map(|_| next()).collect();
                let p = PackedWeight::pack(t, rows, cols, &data, None, None).unwrap();
                assert_eq!(p.row_bytes(), rb);
                let size = rows.div_ceil(8) * (cols / k) * p.layout.column();
                assert_eq!(p.bytes().len(), size);
                let mut row = vec![0u8; rb];
                for r in 0..rows {
                    p.native_row(r, &mut row);
                    assert_eq!(row, &data[r * rb..(r + 1) * rb], "{t} {rows}x{cols} row {r}");
                }
            }
        }
        assert!(PackedWeight::pack(GgmlType::Q5_K, 1, 256, &[0; 176], None, None).is_none());
    }

    #[test]
    fn unpack_matches_the_native_unpacker() {
        let mut seed = 0x9876_5432_u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 24) as u8
        };
        for t in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q5_0, GgmlType::Q5_1, GgmlType::Q8_0]
            .into_iter()
            .chain([GgmlType::Q4_K, GgmlType::Q6_K])
        {
            let (rows, cols) = (11, 3 * t.block_size());
            let rb = t.row_size(cols as u64).unwrap() as usize;
            let mut data: Vec<u8> = (0..rows * rb).map(|_| next()).collect();
            // Finite scales, so that the f32 comparison below means something (Q6_K's d is
            // its last two bytes).
            for b in data.chunks_exact_mut(t.type_size()) {
                b[if t == GgmlType::Q6_K { 209 } else { 1 }] &= 0x3B;
                if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K) {
                    b[3] &= 0x3B;
                }
            }
            let p = PackedWeight::pack(t, rows, cols, &data, None, None).unwrap();
            let n = cols / p.layout.bs;
            let (mut q0, mut d0, mut m0) = (vec![0u8; cols], vec![0f32; n], vec![0f32; n]);
            let (mut q1, mut d1, mut m1) = (vec![1u8; cols], vec![1f32; n], vec![1f32; n]);
            for r in 0..rows {
                super::super::format::unpack_row(
                    t,
                    &data[r * rb..][..rb],
                    &mut q0,
                    &mut d0,
                    &mut m0,
                );
                p.unpack_row(r, &mut q1, &mut d1, &mut m1);
                assert_eq!((&q0, &d0), (&q1, &d1), "{t} row {r}");
                if matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K) {
                    assert_eq!(m0, m1, "{t} row {r} mins");
                }
            }
        }
    }
}
