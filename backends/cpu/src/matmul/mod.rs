//! Quantized matrix multiplication: `y[m, rows] = x[m, cols] * W^T` (ggml's `mul_mat`).
//!
//! - Activations are quantized once per row to the weight's dot type by the runtime's
//!   reference quantizers (so every level multiplies the very same codes as the reference
//!   `vec_dot`), then laid out for the SIMD kernels (see [`format`]).
//! - m == 1 (decode) is a GEMV: output rows are split over the pool. Weights of the types
//!   `packed.rs` covers are repacked at load, 8 rows interleaved, and read by the x8 kernels
//!   (`avx2_x8.rs` for AVX2/AVX-512, `neon_x8.rs` for NEON); other types are read in ggml's
//!   row-major blocks, one dot per output. It is bound by memory bandwidth.
//! - m > 1 (prefill) is a tiled GEMM: jobs of [`GEMM_JOB_ROWS`] weight rows are unpacked
//!   once into per-thread panels (one SIMD register's lanes of weight rows, 4 codes each
//!   per chunk: [`format::pack_panel`]), then multiplied with every activation row, several
//!   rows and panels per microkernel call, so each weight chunk loaded feeds several
//!   `vpdpbusd` and each activation broadcast feeds every panel.
//!
//! Determinism: every output element is computed by exactly one kernel call whose summation
//! order depends only on the shapes, never on the thread count or on which thread runs it.

// Elsewhere than x86-64 and aarch64 only the portable path runs: the SIMD drivers'
// shared helpers have no caller there.
#![cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code, unused_variables)
)]

mod arena;
mod format;
mod packed;
mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx2_gemm;
#[cfg(target_arch = "x86_64")]
mod avx2_k;
#[cfg(target_arch = "x86_64")]
mod avx2_quant;
#[cfg(target_arch = "x86_64")]
mod avx2_x8;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_gemm;
#[cfg(target_arch = "aarch64")]
mod neon_x8;

use crate::context::{Cpu, CpuError, SendPtr};
use crate::dispatch::CpuLevel;
use format::{ActKind, SubFormat};
use std::sync::Mutex;
use weft::GgmlType;

pub(crate) use arena::Arena;
pub use packed::PackedWeight;

/// A weight matrix in its GGUF storage: `rows` rows of `cols` elements, row-major blocks.
#[derive(Clone, Copy, Debug)]
pub struct WeightRef<'a> {
    pub ggml_type: GgmlType,
    /// Output features (GGUF `dims[1]`).
    pub rows: usize,
    /// Input features, the contiguous dimension (GGUF `dims[0]`).
    pub cols: usize,
    /// `rows * row_size(cols)` bytes.
    pub data: &'a [u8],
}

/// A weight as the CPU backend holds it.
#[derive(Debug)]
pub enum CpuWeight<'a> {
    /// ggml's row-major blocks, read in place (from the memory-mapped file).
    Mapped(WeightRef<'a>),
    /// Repacked 8 rows at a time for the GEMV kernels (`packed.rs`); GEMM and the embedding
    /// lookup rebuild native rows from it.
    Packed(PackedWeight),
}

impl CpuWeight<'_> {
    pub fn ggml_type(&self) -> GgmlType {
        match self {
            CpuWeight::Mapped(w) => w.ggml_type,
            CpuWeight::Packed(p) => p.ggml_type,
        }
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        match self {
            CpuWeight::Mapped(w) => w.rows,
            CpuWeight::Packed(p) => p.rows,
        }
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        match self {
            CpuWeight::Mapped(w) => w.cols,
            CpuWeight::Packed(p) => p.cols,
        }
    }

    /// Whether the weight is a copy (the file's pages are no longer read).
    pub fn is_packed(&self) -> bool {
        matches!(self, CpuWeight::Packed(_))
    }
}

/// Where a matmul reads weight rows in ggml's layout from.
#[derive(Clone, Copy)]
enum RowSrc<'w> {
    Native(&'w [u8]),
    Packed(&'w PackedWeight),
}

impl<'w> RowSrc<'w> {
    /// Row `r` (`row_bytes` bytes): borrowed, or rebuilt into `buf`.
    fn row<'b>(self, r: usize, row_bytes: usize, buf: &'b mut Vec<u8>) -> &'b [u8]
    where
        'w: 'b,
    {
        match self {
            RowSrc::Native(d) => &d[r * row_bytes..(r + 1) * row_bytes],
            RowSrc::Packed(p) => {
                let b = grow(buf, row_bytes);
                p.native_row(r, b);
                b
            }
        }
    }
}

/// Weight rows per GEMM job: 64 rows of a K = 4864 matrix unpack to 311 KB, which stays in
/// L2 while every activation row streams past it.
const GEMM_JOB_ROWS: usize = 64;

/// Bytes of a 64-byte aligned chunk; buffers SIMD kernels load from are made of these so
/// 512-bit loads never straddle cache lines.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A grow-only, 64-byte aligned byte buffer.
#[derive(Default)]
struct AlignedBuf(Vec<Line>);

impl AlignedBuf {
    /// The first `n` bytes, growing (never shrinking) the buffer as needed.
    fn bytes(&mut self, n: usize) -> &mut [u8] {
        let lines = n.div_ceil(64);
        if self.0.len() < lines {
            self.0.resize(lines, Line([0; 64]));
        }
        &mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.0)[..n]
    }
}

/// Grow `v` to at least `n` elements and return the first `n`.
fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::default());
    }
    &mut v[..n]
}

/// Per-thread working memory of the kernels (unpacked and repacked weights).
#[derive(Default)]
pub(crate) struct Work {
    /// u8 [GEMM_JOB_ROWS, cols]: unpacked weight codes of one job (GEMM) or one row (GEMV).
    q: Vec<u8>,
    /// f32 [GEMM_JOB_ROWS, n_sub]: unpacked sub-block scales and mins.
    d: Vec<f32>,
    m: Vec<f32>,
    /// u8 [GEMM_JOB_ROWS / W panels, n_sub, bs/4, W, 4]: GEMM panels of W rows.
    tq: AlignedBuf,
    /// f32 [GEMM_JOB_ROWS / W panels, n_sub, W]: panel scales and mins.
    td: Vec<f32>,
    tm: Vec<f32>,
}

/// Reusable buffers of [`Cpu::matmul`]: quantized activations and per-thread work memory.
/// Buffers only grow; once sized for the largest call, matmuls allocate nothing.
#[derive(Default)]
pub struct MatmulScratch {
    acts: ActBufs,
    /// One per team member, indexed by the member number.
    work: Vec<Mutex<Work>>,
}

/// The quantized activations of one call.
#[derive(Default)]
struct ActBufs {
    /// Reference dot-type blocks of every activation row, u8 [m, row_size(dot_type, cols)]
    /// (u32 storage keeps the 4-byte alignment of `BlockQ8K`).
    blocks: Vec<u32>,
    /// i8 [ceil(m / rb), n_sub_pad * bs / 4, rb, 4]: activation codes in blocks of `rb` rows
    /// (the SIMD view, [`format::ActBlockMut`]).
    qs: AlignedBuf,
    /// f32 [ceil(m / rb), n_sub_pad, rb]: activation scale per sub-block.
    d: Vec<f32>,
    /// f32 [ceil(m / rb), n_sub_pad, rb]: activation scale times code sum (the min term's
    /// partner).
    s: Vec<f32>,
    /// i32 [ceil(m / rb), n_sub_pad, rb]: -offset * code sum (the integer offset correction).
    corr: Vec<i32>,
}

impl MatmulScratch {
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MatmulScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatmulScratch").field("threads", &self.work.len()).finish()
    }
}

/// Quantized activations in blocks of `rb` rows (see [`format::ActBlockMut`]; the GEMV's
/// `rb == 1` is plain rows), with per-sub-block metadata. Rows past `m` in the last block
/// are zero.
#[derive(Clone, Copy)]
pub(crate) struct Acts<'a> {
    /// i8 [n_blocks, n_pad * bs / 4, rb, 4]
    pub qs: &'a [i8],
    /// f32 [n_blocks, n_pad, rb]
    pub d: &'a [f32],
    pub s: &'a [f32],
    /// i32 [n_blocks, n_pad, rb]
    pub corr: &'a [i32],
    /// Rows per block.
    pub rb: usize,
    /// Codes per row (padded sub-blocks included).
    pub q_row: usize,
    /// Sub-blocks per row (padded).
    pub n_pad: usize,
}

/// Block `b` of an [`Acts`] (the slices of its `rb` rows).
#[derive(Clone, Copy)]
pub(crate) struct ActBlock<'a> {
    /// i8 [n_pad * bs / 4, rb, 4]
    pub qs: &'a [i8],
    /// f32 [n_pad, rb]
    pub d: &'a [f32],
    pub s: &'a [f32],
    /// i32 [n_pad, rb]
    pub corr: &'a [i32],
}

impl<'a> Acts<'a> {
    /// Block `b`: rows `b * rb ..`.
    pub fn block(&self, b: usize) -> ActBlock<'a> {
        let (q, ms) = (self.q_row * self.rb, self.n_pad * self.rb);
        ActBlock {
            qs: &self.qs[b * q..(b + 1) * q],
            d: &self.d[b * ms..(b + 1) * ms],
            s: &self.s[b * ms..(b + 1) * ms],
            corr: &self.corr[b * ms..(b + 1) * ms],
        }
    }

    /// Row 0 of a one-row-per-block view: what the GEMV kernels read.
    pub fn row0(&self) -> ActRow<'a> {
        assert_eq!(self.rb, 1, "GEMV activations are plain rows");
        let b = self.block(0);
        ActRow { qs: b.qs, d: b.d, s: b.s, corr: b.corr }
    }
}

/// Activation row `0` of a natural-layout [`Acts`]: codes and per-sub-block metadata (what
/// the GEMV kernels read).
#[derive(Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub corr: &'a [i32],
}

/// One GEMM panel of `W` weight rows (see [`format::pack_panel`]; W is the level's i32
/// lane count).
#[derive(Clone, Copy)]
pub(crate) struct Panel<'a> {
    /// u8 [n_sub, bs/4, W, 4]
    pub q: &'a [u8],
    /// f32 [n_sub, W]
    pub d: &'a [f32],
    /// f32 [n_sub, W] (types with mins only)
    pub m: &'a [f32],
}

/// The bounds every level's panel microkernel relies on, asserted once: an activation
/// block of `rows` rows with sub-blocks of `bs` codes against `panels` of `w` weight rows.
/// Returns the panels' sub-block count.
#[inline(always)]
pub(crate) fn check_panels(
    fmt: SubFormat,
    a: &ActBlock,
    rows: usize,
    bs: usize,
    w: usize,
    panels: &[Panel],
) -> usize {
    let n = panels[0].d.len() / w;
    assert!(bs == fmt.bs && a.qs.len() >= n * bs * rows);
    assert!(a.d.len() >= n * rows && a.corr.len() >= n * rows && a.s.len() >= n * rows);
    for p in panels {
        assert!(p.q.len() >= n * bs * w && p.d.len() >= n * w);
        assert!(!fmt.has_min || p.m.len() >= n * w);
    }
    n
}

/// A forced SIMD kernel family (tests), or none: the `Cpu`'s level decides.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
type Forced = Option<Simd>;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
type Forced = Option<std::convert::Infallible>;

/// The SIMD kernel family a `Cpu` runs. The drivers (`gemv`, `gemm`, `matmul_float`: thread
/// partition, unpacking, tiling) are shared; only the per-block kernels differ by family.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    /// AVX2 + FMA + F16C; `vnni` adds AVX-VNNI `vpdpbusd` on ymm.
    #[cfg(target_arch = "x86_64")]
    Avx2 { vnni: bool },
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// NEON with the dot-product extension (`sdot`).
    #[cfg(target_arch = "aarch64")]
    Neon,
}

fn shape_err(detail: String) -> CpuError {
    CpuError::Shape { op: "matmul", detail }
}

impl Cpu {
    /// `y[m, rows] = x[m, cols] * W^T` (ggml `mul_mat`). `x` is f32 [m, cols], `y` is
    /// f32 [m, rows]. m == 1 takes the GEMV path, m > 1 the tiled GEMM.
    pub fn matmul(
        &self,
        w: &WeightRef,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), CpuError> {
        self.matmul_forced(&CpuWeight::Mapped(*w), x, m, y, scratch, None)
    }

    /// [`Self::matmul`] on a weight as the backend holds it (mapped or packed).
    pub fn matmul_weight(
        &self,
        w: &CpuWeight,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), CpuError> {
        self.matmul_forced(w, x, m, y, scratch, None)
    }

    /// Whether this `Cpu` repacks weights of type `t` (levels with x8 GEMV kernels, unless
    /// [`Cpu::with_repack`] turned it off).
    pub fn packs(&self, t: GgmlType) -> bool {
        let level_packs = match self.level() {
            CpuLevel::Avx2 | CpuLevel::Avx512 => cfg!(target_arch = "x86_64"),
            CpuLevel::Neon => cfg!(target_arch = "aarch64"),
            CpuLevel::Scalar => false,
        };
        self.repack && level_packs && packed::X8Layout::of(t).is_some()
    }

    /// The weight as this `Cpu` runs it fastest: repacked when [`Self::packs`] its type
    /// (decode then reads 8 rows per register), else borrowed as it is.
    pub fn prepare_weight<'a>(&self, w: WeightRef<'a>) -> Result<CpuWeight<'a>, CpuError> {
        check_weight(&w)?;
        if !self.packs(w.ggml_type) {
            return Ok(CpuWeight::Mapped(w));
        }
        Ok(PackedWeight::pack(w.ggml_type, w.rows, w.cols, w.data, Some(&self.arena), Some(self))
            .map_or(CpuWeight::Mapped(w), CpuWeight::Packed))
    }

    /// [`Self::matmul`] with the SIMD kernel family optionally forced (unit tests reach the
    /// plain-AVX2 kernels on machines that also have AVX-VNNI).
    fn matmul_forced(
        &self,
        w: &CpuWeight,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        scratch: &mut MatmulScratch,
        forced: Forced,
    ) -> Result<(), CpuError> {
        let (t, rows, cols) = (w.ggml_type(), w.rows(), w.cols());
        let fmt = format::sub_format(t).ok_or(CpuError::UnsupportedType { op: "matmul", ty: t })?;
        let src = match w {
            CpuWeight::Mapped(wr) => {
                check_weight(wr)?;
                RowSrc::Native(wr.data)
            }
            CpuWeight::Packed(p) => RowSrc::Packed(p),
        };
        let row_bytes = t.row_size(cols as u64).expect("checked when the weight was made") as usize;
        if m.checked_mul(cols) != Some(x.len()) {
            return Err(shape_err(format!(
                "x has {} values, expected m {m} x cols {cols}",
                x.len()
            )));
        }
        if m.checked_mul(rows) != Some(y.len()) {
            return Err(shape_err(format!(
                "y has {} values, expected m {m} x rows {rows}",
                y.len()
            )));
        }
        if m == 0 || rows == 0 {
            return Ok(());
        }
        if cols == 0 {
            y.fill(0.0);
            return Ok(());
        }
        if scratch.work.len() < self.threads() {
            scratch.work.resize_with(self.threads(), Mutex::default);
        }
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            let simd = forced.or(match self.level() {
                #[cfg(target_arch = "x86_64")]
                CpuLevel::Avx2 => Some(Simd::Avx2 { vnni: self.extras().avx_vnni }),
                #[cfg(target_arch = "x86_64")]
                CpuLevel::Avx512 => Some(Simd::Avx512),
                #[cfg(target_arch = "aarch64")]
                CpuLevel::Neon => Some(Simd::Neon),
                _ => None,
            });
            if let Some(simd) = simd {
                if fmt.act == ActKind::F32 {
                    if let CpuWeight::Mapped(wr) = w {
                        self.matmul_float(simd, wr, x, m, y);
                        return Ok(());
                    }
                    return self.matmul_scalar(src, t, rows, cols, fmt, x, m, y, scratch);
                }
                let rb = if m == 1 { 1 } else { simd.tile_rows() };
                let (_, _, acts) =
                    self.quantize_acts(Some(simd), fmt, Some(rb), cols, x, m, &mut scratch.acts)?;
                let work = &scratch.work;
                match (m, w) {
                    (1, CpuWeight::Mapped(wr)) => self.gemv(simd, wr, row_bytes, acts, y, work),
                    (1, CpuWeight::Packed(p)) => {
                        self.gemv_packed(p, acts, y, |p, r0, a, y| simd.gemv_x8(p, r0, a, y))
                    }
                    _ => self.gemm(simd, src, t, rows, cols, fmt, row_bytes, acts, m, y, work),
                }
                return Ok(());
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = forced;
        self.matmul_scalar(src, t, rows, cols, fmt, x, m, y, scratch)
    }

    /// Quantize every row of `x` with the reference quantizer into `scratch.blocks` (u8
    /// [m, blk_bytes]) and, with `view = Some(rb)`, derive the SIMD view in blocks of `rb`
    /// rows ([`format::act_from_blocks`]). Each block of rows is done whole by one thread,
    /// and rows are independent, so the result never depends on the partition.
    #[allow(clippy::too_many_arguments)]
    fn quantize_acts<'s>(
        &self,
        simd: Forced,
        fmt: SubFormat,
        view: Option<usize>,
        cols: usize,
        x: &[f32],
        m: usize,
        scratch: &'s mut ActBufs,
    ) -> Result<(&'s [u8], usize, Acts<'s>), CpuError> {
        let act_t = fmt.act.ggml_type().expect("quantized weights have a dot type");
        let blk_bytes =
            act_t.row_size(cols as u64).expect("cols checked against the weight's block") as usize;
        let words = grow(&mut scratch.blocks, (m * blk_bytes).div_ceil(4));
        let blocks = &mut bytemuck::cast_slice_mut::<u32, u8>(words)[..m * blk_bytes];
        let (_, n_pad) = format::n_sub(cols, fmt.bs);
        let rb = view.unwrap_or(1);
        let n_blocks = m.div_ceil(rb);
        let n_view = if view.is_some() { n_blocks } else { 0 };
        let (q_blk, meta_blk) = (n_pad * fmt.bs * rb, n_pad * rb);
        let qs: &mut [i8] = bytemuck::cast_slice_mut(scratch.qs.bytes(n_view * q_blk));
        let d = grow(&mut scratch.d, n_view * meta_blk);
        let s = grow(&mut scratch.s, n_view * meta_blk);
        let corr = grow(&mut scratch.corr, n_view * meta_blk);
        // aarch64 quantizes activations with the reference quantizer (no NEON one yet).
        #[cfg(not(target_arch = "x86_64"))]
        let _ = simd;
        let quantize = |xr: &[f32], br: &mut [u8]| {
            #[cfg(target_arch = "x86_64")]
            if simd.is_some() {
                // SAFETY: a `Cpu` only runs a SIMD family its machine supports, and every
                // family includes AVX2 + FMA + F16C.
                if unsafe { avx2_quant::quantize_row_q8(act_t, xr, br) } {
                    return Ok(());
                }
            }
            weft::quant::quantize_row(act_t, xr, br)
                .map_err(|e| shape_err(format!("quantize activations: {e}")))
        };
        // Block b: rows b*rb .. (its reference blocks `br`, u8 [live, blk_bytes]) and, with
        // a view, its SIMD view.
        let do_block = |b: usize, br: &mut [u8], v: Option<format::ActBlockMut>| {
            let live = rb.min(m - b * rb);
            for k in 0..live {
                let r = b * rb + k;
                quantize(&x[r * cols..(r + 1) * cols], &mut br[k * blk_bytes..][..blk_bytes])?;
            }
            if let Some(mut v) = v {
                for k in 0..rb {
                    let bk = (k < live).then(|| &br[k * blk_bytes..][..blk_bytes]);
                    format::act_from_blocks(fmt, bk, cols, k, rb, &mut v);
                }
            }
            Ok::<(), CpuError>(())
        };
        let (pb, pq, pd) = (
            SendPtr::new(blocks.as_mut_ptr()),
            SendPtr::new(qs.as_mut_ptr()),
            SendPtr::new(d.as_mut_ptr()),
        );
        let (ps, pc) = (SendPtr::new(s.as_mut_ptr()), SendPtr::new(corr.as_mut_ptr()));
        let first_err = Mutex::new(None);
        let item = |_, b: usize| {
            let live = rb.min(m - b * rb);
            // SAFETY: block b's parts of each buffer are disjoint from every other block's
            // and in bounds (`blocks` holds m rows; the view buffers n_view blocks), and each
            // block runs exactly once while the buffers are borrowed.
            let (br, v) = unsafe {
                let br = std::slice::from_raw_parts_mut(
                    pb.get().add(b * rb * blk_bytes),
                    live * blk_bytes,
                );
                let v = (b < n_view).then(|| format::ActBlockMut {
                    qs: std::slice::from_raw_parts_mut(pq.get().add(b * q_blk), q_blk),
                    d: std::slice::from_raw_parts_mut(pd.get().add(b * meta_blk), meta_blk),
                    s: std::slice::from_raw_parts_mut(ps.get().add(b * meta_blk), meta_blk),
                    corr: std::slice::from_raw_parts_mut(pc.get().add(b * meta_blk), meta_blk),
                });
                (br, v)
            };
            if let Err(e) = do_block(b, br, v) {
                first_err.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        };
        if n_blocks == 1 {
            item(0, 0);
        } else {
            self.par_items(n_blocks, item);
        }
        if let Some(e) = first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let acts = Acts { qs, d, s, corr, rb, q_row: n_pad * fmt.bs, n_pad };
        Ok((blocks, blk_bytes, acts))
    }

    /// The scalar level: the runtime's reference `vec_dot` per output on the reference
    /// activation blocks (float weights: [`scalar::dot_float`] on f32 activations).
    #[allow(clippy::too_many_arguments)]
    fn matmul_scalar(
        &self,
        src: RowSrc,
        t: GgmlType,
        rows: usize,
        cols: usize,
        fmt: SubFormat,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        scratch: &mut MatmulScratch,
    ) -> Result<(), CpuError> {
        let row_bytes = t.row_size(cols as u64).expect("checked by matmul") as usize;
        if fmt.act == ActKind::F32 {
            return self.for_chunks(y, rows, |_, i, yr| {
                let xr = &x[i * cols..(i + 1) * cols];
                let mut buf = Vec::new();
                for (r, o) in yr.iter_mut().enumerate() {
                    *o = scalar::dot_float(t, src.row(r, row_bytes, &mut buf), xr);
                }
                Ok(())
            });
        }
        let (blocks, blk_bytes, _) =
            self.quantize_acts(None, fmt, None, cols, x, m, &mut scratch.acts)?;
        self.for_chunks(y, rows, |_, i, yr| {
            let br = &blocks[i * blk_bytes..(i + 1) * blk_bytes];
            let mut buf = Vec::new();
            for (r, o) in yr.iter_mut().enumerate() {
                *o = weft::quant::vec_dot(t, cols, src.row(r, row_bytes, &mut buf), br)
                    .map_err(|e| shape_err(format!("reference vec_dot: {e}")))?;
            }
            Ok(())
        })
    }

    /// Run `f(member, i, chunk i of y)` for every `chunk`-sized piece of `y` on the thread
    /// team (on the calling thread alone when there is one piece); the first error wins.
    fn for_chunks<F>(&self, y: &mut [f32], chunk: usize, f: F) -> Result<(), CpuError>
    where
        F: Fn(usize, usize, &mut [f32]) -> Result<(), CpuError> + Sync,
    {
        if y.len() <= chunk {
            return f(0, 0, y);
        }
        let first_err = Mutex::new(None);
        self.par_chunks_mut(y, chunk, |member, i, c| {
            if let Err(e) = f(member, i, c) {
                first_err.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
            }
        });
        match first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Float weights on a SIMD level: f32 activations, weight-row jobs split over the pool
    /// (every output's summation order is fixed by the kernel, whatever the job).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn matmul_float(&self, simd: Simd, w: &WeightRef, x: &[f32], m: usize, y: &mut [f32]) {
        const R: usize = 4;
        let (t, rows, cols) = (w.ggml_type, w.rows, w.cols);
        let row_bytes = w.data.len() / rows;
        let out = SyncPtr(y.as_mut_ptr());
        let y_len = y.len();
        self.par_items(rows.div_ceil(GEMM_JOB_ROWS), |_, j| {
            let c0 = j * GEMM_JOB_ROWS;
            let nc = GEMM_JOB_ROWS.min(rows - c0);
            let wj = &w.data[c0 * row_bytes..(c0 + nc) * row_bytes];
            // f32 [R, nc]: this job's outputs for R activation rows.
            let mut tmp = [0.0f32; R * GEMM_JOB_ROWS];
            let mut r0 = 0;
            while r0 < m {
                let nr = R.min(m - r0);
                let xr = &x[r0 * cols..(r0 + nr) * cols];
                simd.float_rows(t, cols, wj, xr, nr, &mut tmp[..nr * nc], nc);
                for r in 0..nr {
                    // SAFETY: job j alone writes columns c0..c0+nc of each output row, and
                    // (r0 + r) * rows + c0 + nc <= m * rows == y_len; `y` outlives the scope.
                    unsafe { out.write((r0 + r) * rows + c0, &tmp[r * nc..(r + 1) * nc], y_len) };
                }
                r0 += R;
            }
        });
    }

    /// GEMV: output rows split over the pool; each output is one dot.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn gemv(
        &self,
        simd: Simd,
        w: &WeightRef,
        row_bytes: usize,
        acts: Acts,
        y: &mut [f32],
        work: &[Mutex<Work>],
    ) {
        let a = acts.row0();
        // Enough chunks to balance threads; the result does not depend on the chunking.
        let chunk = w.rows.div_ceil(self.threads() * 8).max(16);
        let _ = self.for_chunks(y, chunk, |member, i, yc| {
            let wc = &w.data[i * chunk * row_bytes..(i * chunk + yc.len()) * row_bytes];
            let mut wk = lock_work(work, member);
            simd.gemv(w.ggml_type, w.cols, wc, row_bytes, a, yc, &mut wk);
            Ok(())
        });
    }

    /// GEMV over a packed weight: groups of 8 rows split over the pool; `kernel(p, r0, a,
    /// y)` computes rows r0 .. r0 + y.len().
    fn gemv_packed<K>(&self, p: &PackedWeight, acts: Acts, y: &mut [f32], kernel: K)
    where
        K: Fn(&PackedWeight, usize, ActRow, &mut [f32]) + Sync,
    {
        let a = acts.row0();
        let groups = p.rows.div_ceil(packed::X8);
        let chunk = groups.div_ceil(self.threads() * 8).max(2) * packed::X8;
        let _ = self.for_chunks(y, chunk, |_, i, yc| {
            kernel(p, i * chunk, a, yc);
            Ok(())
        });
    }

    /// GEMM: jobs of GEMM_JOB_ROWS weight rows, each unpacked and interleaved once into the
    /// running thread's tile buffer, then multiplied with all m activation rows.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        simd: Simd,
        src: RowSrc,
        t: GgmlType,
        rows: usize,
        cols: usize,
        fmt: SubFormat,
        row_bytes: usize,
        acts: Acts,
        m: usize,
        y: &mut [f32],
        work: &[Mutex<Work>],
    ) {
        let (n, _) = format::n_sub(cols, fmt.bs);
        let out = SyncPtr(y.as_mut_ptr());
        let y_len = y.len();
        let tr = simd.tile_rows();
        self.par_items(rows.div_ceil(GEMM_JOB_ROWS), |member, j| {
            let c0 = j * GEMM_JOB_ROWS;
            let nc = GEMM_JOB_ROWS.min(rows - c0);
            let mut wk = lock_work(work, member);
            let wk = &mut *wk;
            let q = grow(&mut wk.q, GEMM_JOB_ROWS * cols);
            let d = grow(&mut wk.d, GEMM_JOB_ROWS * n);
            let mm = grow(&mut wk.m, GEMM_JOB_ROWS * n);
            for c in 0..nc {
                let (qr, dr, mr) =
                    (&mut q[c * cols..][..cols], &mut d[c * n..][..n], &mut mm[c * n..][..n]);
                match src {
                    RowSrc::Native(data) => {
                        let row = &data[(c0 + c) * row_bytes..][..row_bytes];
                        format::unpack_row(t, row, qr, dr, mr)
                    }
                    RowSrc::Packed(p) => p.unpack_row(c0 + c, qr, dr, mr),
                }
            }
            let (pw, pp) = simd.panels();
            let panel_q = n * fmt.bs * pw; // u8 per panel
            let panel_meta = n * pw; // f32 per panel
            let n_panels = nc.div_ceil(pw);
            let pq = wk.tq.bytes(n_panels * panel_q);
            let pd = grow(&mut wk.td, n_panels * panel_meta);
            let pm = grow(&mut wk.tm, n_panels * panel_meta);
            for i in 0..n_panels {
                let live = pw.min(nc - pw * i);
                format::pack_panel(
                    fmt,
                    cols,
                    pw,
                    live,
                    &q[pw * i * cols..][..live * cols],
                    &d[pw * i * n..][..live * n],
                    &mm[pw * i * n..][..live * n],
                    &mut pq[i * panel_q..][..panel_q],
                    &mut pd[i * panel_meta..][..panel_meta],
                    &mut pm[i * panel_meta..][..panel_meta],
                );
            }
            let panel = |i: usize| Panel {
                q: &pq[i * panel_q..][..panel_q],
                d: &pd[i * panel_meta..][..panel_meta],
                m: &pm[i * panel_meta..][..panel_meta],
            };
            let mut res = [[0.0f32; 32]; MAX_TILE_ROWS];
            let mut r0 = 0;
            while r0 < m {
                let nr = tr.min(m - r0);
                for i in (0..n_panels).step_by(pp) {
                    let np = pp.min(n_panels - i);
                    let ps: [Panel; MAX_PANELS] =
                        std::array::from_fn(|k| panel((i + k).min(n_panels - 1)));
                    simd.panels_call(fmt, &acts.block(r0 / tr), &ps[..np], &mut res);
                    let live = (pw * np).min(nc - pw * i);
                    for r in 0..nr {
                        // SAFETY: job j alone writes columns c0..c0+nc of each output
                        // row; (r0 + r) * rows + c0 + pw*i + live <= m * rows == y_len;
                        // `y` outlives the pool scope.
                        unsafe { out.write((r0 + r) * rows + c0 + pw * i, &res[r][..live], y_len) };
                    }
                }
                r0 += tr;
            }
        });
    }
}

/// A mapped weight's bytes against its shape and type.
fn check_weight(w: &WeightRef) -> Result<(), CpuError> {
    let t = w.ggml_type;
    let row_bytes = t
        .row_size(w.cols as u64)
        .ok_or_else(|| shape_err(format!("cols {} is not a multiple of {t}'s block", w.cols)))?
        as usize;
    let need = row_bytes.checked_mul(w.rows);
    if need != Some(w.data.len()) {
        return Err(shape_err(format!(
            "weight {t} [{}, {}] needs {need:?} bytes, got {}",
            w.rows,
            w.cols,
            w.data.len()
        )));
    }
    Ok(())
}

/// The most activation rows any level's GEMM microkernel takes per call.
const MAX_TILE_ROWS: usize = 8;
/// The most panels any level's GEMM microkernel takes per call (at most 32 outputs per
/// activation row: the microkernels' output rows are f32 [32]).
const MAX_PANELS: usize = 2;

/// Team member `member`'s work buffers (uncontended: one per member).
fn lock_work(work: &[Mutex<Work>], member: usize) -> std::sync::MutexGuard<'_, Work> {
    work[member % work.len()].lock().unwrap_or_else(|e| e.into_inner())
}

/// The output pointer shared by GEMM jobs, which write disjoint column ranges.
#[derive(Clone, Copy)]
struct SyncPtr(*mut f32);

// SAFETY: jobs write disjoint elements through it (see `write`'s callers).
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}

impl SyncPtr {
    /// Copy `v` to elements `at..at + v.len()`.
    ///
    /// # Safety
    /// `at + v.len() <= len` of the allocation, and no other thread touches those elements.
    unsafe fn write(&self, at: usize, v: &[f32], len: usize) {
        assert!(at + v.len() <= len);
        // SAFETY: in bounds (asserted) and exclusively ours (the caller's contract).
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), self.0.add(at), v.len()) };
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
impl Simd {
    fn tile_rows(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 { .. } => avx2_gemm::TILE_ROWS,
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => avx512::TILE_ROWS,
            #[cfg(target_arch = "aarch64")]
            Simd::Neon => neon_gemm::TILE_ROWS,
        }
    }

    /// The GEMM panel width (weight rows, [`format::pack_panel`]) and the panels per
    /// microkernel call.
    fn panels(self) -> (usize, usize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 { .. } => (avx2_gemm::PANEL, avx2_gemm::PANELS),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => (avx512::PANEL, avx512::PANELS),
            #[cfg(target_arch = "aarch64")]
            Simd::Neon => (neon_gemm::PANEL, neon_gemm::PANELS),
        }
    }

    /// One panel microkernel call (see [`Simd::panels`]).
    fn panels_call(self, fmt: SubFormat, a: &ActBlock, panels: &[Panel], out: &mut [[f32; 32]]) {
        // SAFETY: a `Cpu` only holds a level its machine supports.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { vnni: false } => avx2_gemm::panels_avx2(fmt, a, panels, out),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { vnni: true } => avx2_gemm::panels_avxvnni(fmt, a, panels, out),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx512 => avx512::panels_avx512(fmt, a, panels, out),
                #[cfg(target_arch = "aarch64")]
                Simd::Neon => neon_gemm::panels_neon(fmt, a, panels, out),
            }
        }
    }

    fn gemv(
        self,
        t: GgmlType,
        cols: usize,
        w: &[u8],
        rb: usize,
        a: ActRow,
        y: &mut [f32],
        wk: &mut Work,
    ) {
        // SAFETY: a `Cpu` only holds a level (and AVX-VNNI flag) its machine supports.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { vnni: false } => avx2::gemv_avx2(t, cols, w, rb, a, y, wk),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { vnni: true } => avx2::gemv_avxvnni(t, cols, w, rb, a, y, wk),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx512 => avx512::gemv_avx512(t, cols, w, rb, a, y, wk),
                #[cfg(target_arch = "aarch64")]
                Simd::Neon => neon::gemv_neon(t, cols, w, rb, a, y, wk),
            }
        }
    }

    fn gemv_x8(self, p: &PackedWeight, r0: usize, a: ActRow, y: &mut [f32]) {
        // SAFETY: a `Cpu` only holds a level (and AVX-VNNI flag) its machine supports.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { vnni: false } => avx2_x8::gemv_x8_avx2(p, r0, a, y),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { vnni: true } => avx2_x8::gemv_x8_avxvnni(p, r0, a, y),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx512 => avx2_x8::gemv_x8_avx512(p, r0, a, y),
                #[cfg(target_arch = "aarch64")]
                Simd::Neon => neon_x8::gemv_x8_neon(p, r0, a, y),
            }
        }
    }

    fn float_rows(
        self,
        t: GgmlType,
        cols: usize,
        w: &[u8],
        x: &[f32],
        m: usize,
        y: &mut [f32],
        ys: usize,
    ) {
        // SAFETY: a `Cpu` only holds a level its machine supports.
        unsafe {
            match self {
                #[cfg(target_arch = "x86_64")]
                Simd::Avx2 { .. } => avx2_gemm::float_rows_avx2(t, cols, w, x, m, y, ys),
                #[cfg(target_arch = "x86_64")]
                Simd::Avx512 => avx512::float_rows_avx512(t, cols, w, x, m, y, ys),
                #[cfg(target_arch = "aarch64")]
                Simd::Neon => neon_gemm::float_rows_neon(t, cols, w, x, m, y, ys),
            }
        }
    }
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests;
