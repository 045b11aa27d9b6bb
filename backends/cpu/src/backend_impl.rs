//! [`weft::backend::Backend`] for the CPU: buffers are host vectors; weights are borrowed
//! views of the memory-mapped GGUF file, or, for the types the level's decode kernels read
//! 8 rows at a time, a repacked copy (`Cpu::prepare_weight`) after which the loader releases
//! the file's pages; ops are the `Cpu` methods.

use crate::matmul::{CpuWeight, MatmulScratch, WeightRef};
use crate::{Cpu, CpuError};
use half::f16;
use weft::backend::Backend;
use weft::gguf::TensorView;
use weft::ops::{AttnExtras, AttnMask, AttnParams, RopeParams};
use weft::{GgmlType, KvElem, KvType};

/// One layer's K or V cache in host memory, of the [`KvType`] it was allocated with.
#[derive(Clone, Debug, PartialEq)]
pub enum KvBuf {
    /// f16 [n_cells, n_head_kv * head_dim]
    F16(Vec<f16>),
    /// f32 [n_cells, n_head_kv * head_dim]
    F32(Vec<f32>),
}

impl KvBuf {
    /// The element type.
    pub fn kv_type(&self) -> KvType {
        match self {
            KvBuf::F16(_) => KvType::F16,
            KvBuf::F32(_) => KvType::F32,
        }
    }

    /// Elements held.
    pub fn len(&self) -> usize {
        match self {
            KvBuf::F16(b) => b.len(),
            KvBuf::F32(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `dst` (little-endian bytes) = `src`.
fn to_le_bytes<T: KvElem>(src: &[T], dst: &mut [u8], enc: impl Fn(T) -> [u8; 4]) {
    let size = T::KV_TYPE.type_size();
    for (d, &x) in dst.chunks_exact_mut(size).zip(src) {
        d.copy_from_slice(&enc(x)[..size]);
    }
}

/// `dst` = `src` (little-endian bytes).
fn from_le_bytes<T: KvElem>(src: &[u8], dst: &mut [T], dec: impl Fn([u8; 4]) -> T) {
    let size = T::KV_TYPE.type_size();
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(size)) {
        let mut b = [0u8; 4];
        b[..size].copy_from_slice(s);
        *d = dec(b);
    }
}

/// The element range `offset..offset + n` of a KV buffer of `len` elements, where `n` is
/// `n_bytes` of type `ty`; a shape error when the bytes are no whole number of elements or
/// the range runs past the buffer.
fn kv_range(
    op: &'static str,
    ty: KvType,
    len: usize,
    offset: usize,
    n_bytes: usize,
) -> Result<std::ops::Range<usize>, CpuError> {
    let size = ty.type_size();
    if !n_bytes.is_multiple_of(size) {
        return Err(shape(op, format!("{n_bytes} bytes is no whole number of {ty} elements")));
    }
    let end = offset.checked_add(n_bytes / size).filter(|&e| e <= len).ok_or_else(|| {
        shape(op, format!("range {offset}..+{} past cache of {len}", n_bytes / size))
    })?;
    Ok(offset..end)
}

fn shape(op: &'static str, detail: String) -> CpuError {
    CpuError::Shape { op, detail }
}

/// `&buf[..n]`, or a shape error naming the op when the buffer is smaller.
fn head<'b, T>(op: &'static str, buf: &'b [T], n: usize) -> Result<&'b [T], CpuError> {
    buf.get(..n).ok_or_else(|| shape(op, format!("needs {n} elements, buffer has {}", buf.len())))
}

fn head_mut<'b, T>(op: &'static str, buf: &'b mut [T], n: usize) -> Result<&'b mut [T], CpuError> {
    let len = buf.len();
    buf.get_mut(..n).ok_or_else(|| shape(op, format!("needs {n} elements, buffer has {len}")))
}

/// The tensor's bytes as a weight, checked against its shape.
fn mapped<'a>(t: &TensorView<'a>) -> Result<WeightRef<'a>, CpuError> {
    let cols = t.cols() as usize;
    let rows = t.rows() as usize;
    let need =
        t.ggml_type.row_size(cols as u64).and_then(|r| r.checked_mul(rows as u64)).ok_or_else(
            || {
                shape(
                    "weight",
                    format!("{}: {rows} rows of {cols} is no whole number of blocks", t.name),
                )
            },
        )? as usize;
    if t.data.len() != need {
        return Err(shape(
            "weight",
            format!("{}: {} bytes, {rows} rows of {cols} need {need}", t.name, t.data.len()),
        ));
    }
    Ok(WeightRef { ggml_type: t.ggml_type, rows, cols, data: t.data })
}

impl Backend for Cpu {
    type Error = CpuError;
    /// f32, host memory.
    type Buf = Vec<f32>;
    /// f16 or f32, host memory.
    type KvBuf = KvBuf;
    /// Borrowed from the memory-mapped file, or repacked for decode (see `CpuWeight`).
    type Weight<'a> = CpuWeight<'a>;
    type Scratch = MatmulScratch;

    fn describe(&self) -> String {
        format!("cpu {} x{}", self.level(), self.threads())
    }

    fn supports_matmul(&self, t: GgmlType) -> bool {
        weft::quant::vec_dot_type(t).is_some()
    }

    fn supports_get_rows(&self, t: GgmlType) -> bool {
        weft::quant::vec_dot_type(t).is_some()
    }

    fn alloc(&self, n: usize) -> Result<Vec<f32>, CpuError> {
        Ok(vec![0.0; n])
    }

    fn alloc_kv(&self, ty: KvType, n: usize) -> Result<KvBuf, CpuError> {
        Ok(match ty {
            KvType::F16 => KvBuf::F16(vec![f16::ZERO; n]),
            KvType::F32 => KvBuf::F32(vec![0.0; n]),
        })
    }

    fn alloc_scratch(&self, _max_rows: usize, _max_cols: usize) -> Result<MatmulScratch, CpuError> {
        // The scratch grows to the largest batch on first use and is reused afterwards.
        Ok(MatmulScratch::default())
    }

    fn weight<'a>(&self, t: &TensorView<'a>) -> Result<CpuWeight<'a>, CpuError> {
        self.prepare_weight(mapped(t)?)
    }

    fn embedding_weight<'a>(&self, t: &TensorView<'a>) -> Result<CpuWeight<'a>, CpuError> {
        // Lookups read a few rows per token: the mapped rows serve, and a copy would only
        // add the whole table to resident memory.
        Ok(CpuWeight::Mapped(mapped(t)?))
    }

    fn weight_is_copy(&self, w: &CpuWeight<'_>) -> bool {
        w.is_packed()
    }

    fn upload_tensor_f32(&self, t: &TensorView<'_>) -> Result<Vec<f32>, CpuError> {
        if !matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(CpuError::UnsupportedType { op: "upload_tensor_f32", ty: t.ggml_type });
        }
        let n = t.n_elements() as usize;
        let mut out = vec![0.0f32; n];
        weft::quant::dequantize_row(t.ggml_type, t.data, &mut out)
            .map_err(|e| shape("upload_tensor_f32", format!("{}: {e}", t.name)))?;
        Ok(out)
    }

    fn upload(&self, src: &[f32], dst: &mut Vec<f32>) -> Result<(), CpuError> {
        head_mut("upload", dst, src.len())?.copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &Vec<f32>, offset: usize, dst: &mut [f32]) -> Result<(), CpuError> {
        let end = offset + dst.len();
        let s = src.get(offset..end).ok_or_else(|| {
            shape("download", format!("range {offset}..{end} past buffer of {}", src.len()))
        })?;
        dst.copy_from_slice(s);
        Ok(())
    }

    fn copy(
        &self,
        src: &Vec<f32>,
        src_off: usize,
        dst: &mut Vec<f32>,
        dst_off: usize,
        n: usize,
    ) -> Result<(), CpuError> {
        let s = src
            .get(src_off..src_off + n)
            .ok_or_else(|| shape("copy", format!("source range past {}", src.len())))?;
        let dlen = dst.len();
        let d = dst
            .get_mut(dst_off..dst_off + n)
            .ok_or_else(|| shape("copy", format!("destination range past {dlen}")))?;
        d.copy_from_slice(s);
        Ok(())
    }

    fn matmul(
        &self,
        w: &CpuWeight<'_>,
        x: &Vec<f32>,
        m: usize,
        y: &mut Vec<f32>,
        scratch: &mut MatmulScratch,
    ) -> Result<(), CpuError> {
        let x = head("matmul", x, m * w.cols())?;
        let y = head_mut("matmul", y, m * w.rows())?;
        Cpu::matmul_weight(self, w, x, m, y, scratch)
    }

    fn get_rows(&self, w: &CpuWeight<'_>, ids: &[u32], out: &mut Vec<f32>) -> Result<(), CpuError> {
        let out = head_mut("get_rows", out, ids.len() * w.cols())?;
        Cpu::get_rows_weight(self, w, ids, out)
    }

    fn rms_norm(
        &self,
        x: &Vec<f32>,
        weight: &Vec<f32>,
        n_rows: usize,
        eps: f32,
        out: &mut Vec<f32>,
    ) -> Result<(), CpuError> {
        let n = n_rows * weight.len();
        let x = head("rms_norm", x, n)?;
        let out = head_mut("rms_norm", out, n)?;
        Cpu::rms_norm(self, x, weight, eps, out)
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        n_head: usize,
        positions: &[i32],
        p: &RopeParams,
    ) -> Result<(), CpuError> {
        let x = head_mut("rope", x, positions.len() * n_head * p.head_dim)?;
        Cpu::rope(self, x, n_head, positions, p)
    }

    fn add(&self, a: &mut Vec<f32>, n: usize, b: &Vec<f32>, b_len: usize) -> Result<(), CpuError> {
        let a = head_mut("add", a, n)?;
        let b = head("add", b, b_len)?;
        Cpu::add(self, a, b)
    }

    fn silu_mul(&self, gate: &mut Vec<f32>, up: &Vec<f32>, n: usize) -> Result<(), CpuError> {
        let gate = head_mut("silu_mul", gate, n)?;
        let up = head("silu_mul", up, n)?;
        Cpu::silu_mul(self, gate, up)
    }

    fn kv_store(
        &self,
        cache: &mut KvBuf,
        cell0: usize,
        row_len: usize,
        src: &Vec<f32>,
        n_rows: usize,
    ) -> Result<(), CpuError> {
        let src = head("kv_store", src, n_rows * row_len)?;
        match cache {
            KvBuf::F16(c) => Cpu::kv_store(self, c, cell0, row_len, src),
            KvBuf::F32(c) => Cpu::kv_store(self, c, cell0, row_len, src),
        }
    }

    fn attention(
        &self,
        q: &Vec<f32>,
        n_q: usize,
        k: &KvBuf,
        v: &KvBuf,
        n_kv: usize,
        p: &AttnParams,
        mask: &AttnMask<'_>,
        out: &mut Vec<f32>,
    ) -> Result<(), CpuError> {
        // With no extras requested, `Cpu::attention_ext` is exactly `Cpu::attention`.
        let none = &mut AttnExtras::default();
        Backend::attention_ext(self, q, n_q, k, v, n_kv, p, mask, none, out)
    }

    fn attention_ext(
        &self,
        q: &Vec<f32>,
        n_q: usize,
        k: &KvBuf,
        v: &KvBuf,
        n_kv: usize,
        p: &AttnParams,
        mask: &AttnMask<'_>,
        extras: &mut AttnExtras<'_>,
        out: &mut Vec<f32>,
    ) -> Result<(), CpuError> {
        let q_len = n_q * p.n_head * p.head_dim;
        let kv_len = n_kv * p.n_head_kv * p.head_dim;
        let q = head("attention", q, q_len)?;
        let out = head_mut("attention", out, q_len)?;
        match (k, v) {
            (KvBuf::F16(k), KvBuf::F16(v)) => {
                let (k, v) = (head("attention", k, kv_len)?, head("attention", v, kv_len)?);
                Cpu::attention_ext(self, q, k, v, p, mask, extras, out)
            }
            (KvBuf::F32(k), KvBuf::F32(v)) => {
                let (k, v) = (head("attention", k, kv_len)?, head("attention", v, kv_len)?);
                Cpu::attention_ext(self, q, k, v, p, mask, extras, out)
            }
            _ => Err(shape(
                "attention",
                format!("k is {}, v is {}: one KV type expected", k.kv_type(), v.kv_type()),
            )),
        }
    }

    fn kv_type(&self, cache: &KvBuf) -> KvType {
        cache.kv_type()
    }

    fn kv_read(&self, cache: &KvBuf, offset: usize, dst: &mut [u8]) -> Result<(), CpuError> {
        let r = kv_range("kv_read", cache.kv_type(), cache.len(), offset, dst.len())?;
        match cache {
            KvBuf::F16(c) => to_le_bytes(&c[r], dst, |x| {
                let [a, b] = x.to_le_bytes();
                [a, b, 0, 0]
            }),
            KvBuf::F32(c) => to_le_bytes(&c[r], dst, f32::to_le_bytes),
        }
        Ok(())
    }

    fn kv_write(&self, src: &[u8], cache: &mut KvBuf, offset: usize) -> Result<(), CpuError> {
        let r = kv_range("kv_write", cache.kv_type(), cache.len(), offset, src.len())?;
        match cache {
            KvBuf::F16(c) => from_le_bytes(src, &mut c[r], |b| f16::from_le_bytes([b[0], b[1]])),
            KvBuf::F32(c) => from_le_bytes(src, &mut c[r], f32::from_le_bytes),
        }
        Ok(())
    }
}
