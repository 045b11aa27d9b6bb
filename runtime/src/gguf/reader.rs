//! Parsing and validation of the GGUF header, metadata and tensor infos.
//!
//! The parser treats every byte as hostile: each count is checked against the bytes that are
//! left before anything is allocated for it (every element needs at least one byte, a string
//! eight), nesting of arrays is bounded, and all offset arithmetic is checked. Tensor data is
//! never read here, only located and range-checked.

use std::collections::HashMap;

use super::error::GgufError;
use super::value::{min_encoded_size, type_id, MetaArray, MetaValue};
use super::TensorInfo;
use crate::GgmlType;

/// GGUF magic, the first four bytes of every file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The data section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest nesting of arrays accepted (an array of arrays is depth 2). Real files use 1.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a ggml tensor has (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Smallest tensor info record: name length (8), n_dims (4), one dim (8), type (4), offset (8).
const MIN_TENSOR_INFO: u64 = 32;
/// Smallest metadata record: key length (8), value type (4), one-byte value.
const MIN_KV: u64 = 13;

/// Everything the header describes, validated.
pub(crate) struct Parsed {
    pub version: u32,
    pub alignment: u64,
    pub data_offset: u64,
    pub metadata: Vec<(String, MetaValue)>,
    pub meta_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// A read position over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// The next `n` bytes; `field` names them in the error when the file ends first.
    fn take(&mut self, n: u64, field: impl FnOnce() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                field: field(),
                offset: self.offset(),
                needed: n,
                available: self.remaining(),
            });
        }
        let start = self.pos;
        // n <= remaining, so it fits in usize
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn array<const N: usize>(
        &mut self,
        field: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        let b = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, field: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(field).map(u64::from_le_bytes)
    }

    /// A count of elements that each need at least `min_size` bytes.
    fn count(&mut self, min_size: u64, field: impl Fn() -> String) -> Result<u64, GgufError> {
        let offset = self.offset();
        let count = self.u64(&field)?;
        let available = self.remaining();
        let max = available / min_size;
        if count > max {
            return Err(GgufError::AbsurdCount { field: field(), offset, count, available, max });
        }
        Ok(count)
    }

    /// A GGUF string: u64 length, then that many bytes of UTF-8.
    fn string(&mut self, field: impl Fn() -> String) -> Result<String, GgufError> {
        let offset = self.offset();
        let len = self.u64(&field)?;
        if len > self.remaining() {
            return Err(GgufError::StringPastEnd {
                field: field(),
                offset,
                len,
                available: self.remaining(),
            });
        }
        let bytes = self.take(len, &field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 { field: field(), offset: offset + 8 }),
        }
    }
}

/// Parse and validate everything but the tensor bytes.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array(|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: String::from_utf8_lossy(&magic).into_owned() });
    }
    let version = read_version(&mut c)?;
    let tensor_count_offset = c.offset();
    let tensor_count = c.u64(|| "tensor_count".into())?;
    let kv_count = c.count(MIN_KV, || "metadata kv_count".into())?;

    let (metadata, meta_index, meta_offsets) = read_metadata(&mut c, kv_count)?;
    let alignment = read_alignment(&metadata, &meta_index, &meta_offsets)?;

    // Checked only now: the tensor infos follow the metadata.
    let available = c.remaining();
    if tensor_count > available / MIN_TENSOR_INFO {
        return Err(GgufError::AbsurdCount {
            field: "tensor_count".into(),
            offset: tensor_count_offset,
            count: tensor_count,
            available,
            max: available / MIN_TENSOR_INFO,
        });
    }
    let (tensors, tensor_index, info_offsets) = read_tensor_infos(&mut c, tensor_count, alignment)?;

    let data_offset = c.offset().div_ceil(alignment) * alignment;
    check_tensor_ranges(&tensors, &info_offsets, data_offset, buf.len() as u64)?;

    Ok(Parsed { version, alignment, data_offset, metadata, meta_index, tensors, tensor_index })
}

fn read_version(c: &mut Cursor<'_>) -> Result<u32, GgufError> {
    let version = c.u32(|| "version".into())?;
    match version {
        2 | 3 => Ok(version),
        1 => Err(GgufError::UnsupportedVersion {
            version,
            hint: " (version 1 is obsolete; re-convert the model with a current llama.cpp)",
        }),
        // A big-endian writer stores the same magic bytes but a byte-swapped version.
        v if (1..=3).contains(&v.swap_bytes()) => {
            Err(GgufError::BigEndian { raw: v, swapped: v.swap_bytes() })
        }
        _ => Err(GgufError::UnsupportedVersion { version, hint: "" }),
    }
}

/// Metadata in file order, key -> index, and each record's byte offset.
type MetaList = (Vec<(String, MetaValue)>, HashMap<String, usize>, Vec<u64>);

fn read_metadata(c: &mut Cursor<'_>, kv_count: u64) -> Result<MetaList, GgufError> {
    // kv_count was bounded by the remaining bytes, so this allocation is justified by them.
    let mut metadata = Vec::with_capacity(kv_count as usize);
    let mut index = HashMap::with_capacity(kv_count as usize);
    let mut offsets = Vec::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let key_offset = c.offset();
        let key = c.string(|| format!("metadata[{i}] key"))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { index: i, offset: key_offset });
        }
        // Lookups replace "{arch}" with the architecture, so such a key could never be found.
        if key.contains("{arch}") {
            return Err(GgufError::PlaceholderInKey { key, offset: key_offset });
        }
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key, offset: key_offset });
        }
        let field = || format!("metadata {key:?} value");
        let ty = c.u32(|| format!("metadata {key:?} value type"))?;
        let value = read_value(c, ty, 0, &field)?;
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
        offsets.push(key_offset);
    }
    Ok((metadata, index, offsets))
}

/// One value of wire type `ty`; `depth` counts enclosing arrays.
fn read_value(
    c: &mut Cursor<'_>,
    ty: u32,
    depth: usize,
    field: &dyn Fn() -> String,
) -> Result<MetaValue, GgufError> {
    let offset = c.offset();
    Ok(match ty {
        type_id::U8 => MetaValue::U8(u8::from_le_bytes(c.array(field)?)),
        type_id::I8 => MetaValue::I8(i8::from_le_bytes(c.array(field)?)),
        type_id::U16 => MetaValue::U16(u16::from_le_bytes(c.array(field)?)),
        type_id::I16 => MetaValue::I16(i16::from_le_bytes(c.array(field)?)),
        type_id::U32 => MetaValue::U32(u32::from_le_bytes(c.array(field)?)),
        type_id::I32 => MetaValue::I32(i32::from_le_bytes(c.array(field)?)),
        type_id::U64 => MetaValue::U64(u64::from_le_bytes(c.array(field)?)),
        type_id::I64 => MetaValue::I64(i64::from_le_bytes(c.array(field)?)),
        type_id::F32 => MetaValue::F32(f32::from_le_bytes(c.array(field)?)),
        type_id::F64 => MetaValue::F64(f64::from_le_bytes(c.array(field)?)),
        type_id::BOOL => MetaValue::Bool(to_bool(c.array::<1>(field)?[0], offset, field)?),
        type_id::STRING => MetaValue::String(c.string(field)?),
        type_id::ARRAY => MetaValue::Array(read_array(c, depth + 1, field)?),
        _ => {
            return Err(GgufError::UnknownValueType {
                field: field(),
                offset: offset - 4,
                type_id: ty,
            })
        }
    })
}

fn to_bool(b: u8, offset: u64, field: &dyn Fn() -> String) -> Result<bool, GgufError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::InvalidBool { field: field(), offset, value }),
    }
}

/// An array body: element type, count, elements. `depth` is this array's nesting level (1 for
/// a top-level array).
fn read_array(
    c: &mut Cursor<'_>,
    depth: usize,
    field: &dyn Fn() -> String,
) -> Result<MetaArray, GgufError> {
    let offset = c.offset();
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep { field: field(), offset, max: MAX_ARRAY_DEPTH });
    }
    let elem = c.u32(|| format!("{} array element type", field()))?;
    let Some(min_size) = min_encoded_size(elem) else {
        return Err(GgufError::UnknownValueType {
            field: format!("{} array element type", field()),
            offset,
            type_id: elem,
        });
    };
    let n = c.count(min_size, || format!("{} array length", field()))?;
    // n * min_size <= remaining bytes, so neither the byte count nor the allocation can
    // exceed what the file justifies.
    let n_usize = n as usize;
    macro_rules! numeric {
        ($variant:ident, $t:ty) => {{
            let bytes = c.take(n * min_size, || format!("{} array data", field()))?;
            MetaArray::$variant(
                bytes
                    .chunks_exact(std::mem::size_of::<$t>())
                    .map(|b| {
                        <$t>::from_le_bytes(b.try_into().expect("chunk size is the element size"))
                    })
                    .collect(),
            )
        }};
    }
    Ok(match elem {
        type_id::U8 => numeric!(U8, u8),
        type_id::I8 => numeric!(I8, i8),
        type_id::U16 => numeric!(U16, u16),
        type_id::I16 => numeric!(I16, i16),
        type_id::U32 => numeric!(U32, u32),
        type_id::I32 => numeric!(I32, i32),
        type_id::U64 => numeric!(U64, u64),
        type_id::I64 => numeric!(I64, i64),
        type_id::F32 => numeric!(F32, f32),
        type_id::F64 => numeric!(F64, f64),
        type_id::BOOL => {
            let start = c.offset();
            let bytes = c.take(n, || format!("{} array data", field()))?;
            let mut v = Vec::with_capacity(n_usize);
            for (i, &b) in bytes.iter().enumerate() {
                v.push(to_bool(b, start + i as u64, &|| format!("{}[{i}]", field()))?);
            }
            MetaArray::Bool(v)
        }
        type_id::STRING => {
            let mut v = Vec::with_capacity(n_usize);
            for i in 0..n {
                v.push(c.string(|| format!("{}[{i}]", field()))?);
            }
            MetaArray::String(v)
        }
        _ => {
            // type_id::ARRAY, the only id left that min_encoded_size knows
            let mut v = Vec::with_capacity(n_usize);
            for i in 0..n {
                let inner = || format!("{}[{i}]", field());
                v.push(read_array(c, depth + 1, &inner)?);
            }
            MetaArray::Array(v)
        }
    })
}

/// `general.alignment`: a u32 that is a nonzero power of two, else the default.
fn read_alignment(
    metadata: &[(String, MetaValue)],
    index: &HashMap<String, usize>,
    offsets: &[u64],
) -> Result<u64, GgufError> {
    let Some(&i) = index.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let offset = offsets[i];
    match &metadata[i].1 {
        MetaValue::U32(a) if a.is_power_of_two() => Ok(u64::from(*a)),
        MetaValue::U32(a) => Err(GgufError::BadAlignment {
            offset,
            reason: format!("{a} is not a nonzero power of two"),
        }),
        other => Err(GgufError::BadAlignment {
            offset,
            reason: format!("expected u32, found {}", other.type_name()),
        }),
    }
}

type TensorList = (Vec<TensorInfo>, HashMap<String, usize>, Vec<u64>);

fn read_tensor_infos(
    c: &mut Cursor<'_>,
    count: u64,
    alignment: u64,
) -> Result<TensorList, GgufError> {
    // count was bounded by the remaining bytes / MIN_TENSOR_INFO.
    let mut tensors = Vec::with_capacity(count as usize);
    let mut index = HashMap::with_capacity(count as usize);
    let mut info_offsets = Vec::with_capacity(count as usize);
    for i in 0..count {
        let offset = c.offset();
        let name = c.string(|| format!("tensor[{i}] name"))?;
        if name.is_empty() {
            return Err(GgufError::EmptyTensorName { index: i, offset });
        }
        if index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor { name, offset });
        }
        let n_dims_offset = c.offset();
        let n_dims = c.u32(|| format!("tensor {name:?} n_dims"))?;
        if n_dims == 0 || n_dims as usize > MAX_DIMS {
            return Err(GgufError::BadDimCount { name, offset: n_dims_offset, n_dims });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims as usize {
            let dim_offset = c.offset();
            let ne = c.u64(|| format!("tensor {name:?} ne[{d}]"))?;
            if ne == 0 {
                return Err(GgufError::ZeroDim { name, offset: dim_offset, index: d });
            }
            dims.push(ne);
        }
        let type_offset = c.offset();
        let type_id = c.u32(|| format!("tensor {name:?} type"))?;
        let Some(ggml_type) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownTensorType { name, offset: type_offset, type_id });
        };
        let data_offset_at = c.offset();
        let data_offset = c.u64(|| format!("tensor {name:?} offset"))?;

        let n_bytes = tensor_n_bytes(&name, offset, ggml_type, &dims)?;
        if data_offset % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                name,
                offset: data_offset_at,
                data_offset,
                alignment,
            });
        }
        index.insert(name.clone(), tensors.len());
        info_offsets.push(offset);
        tensors.push(TensorInfo { name, ggml_type, dims, offset: data_offset, n_bytes });
    }
    Ok((tensors, index, info_offsets))
}

/// Bytes of a tensor: whole blocks per row times rows, every step checked. ggml counts
/// elements in `int64_t`, so the element count must also fit in i64.
fn tensor_n_bytes(name: &str, offset: u64, t: GgmlType, dims: &[u64]) -> Result<u64, GgufError> {
    let overflow =
        || GgufError::DimOverflow { name: name.to_string(), offset, dims: dims.to_vec() };
    let mut n_elements: u64 = 1;
    for &ne in dims {
        n_elements = n_elements.checked_mul(ne).ok_or_else(overflow)?;
    }
    if n_elements > i64::MAX as u64 {
        return Err(overflow());
    }
    let ne0 = dims[0];
    let row = t.row_size(ne0).ok_or_else(|| {
        if !ne0.is_multiple_of(t.block_size() as u64) {
            GgufError::BadRowSize {
                name: name.to_string(),
                offset,
                ggml_type: t,
                ne0,
                block_size: t.block_size(),
            }
        } else {
            overflow()
        }
    })?;
    let rows = n_elements / ne0;
    row.checked_mul(rows).ok_or_else(overflow)
}

/// Every tensor's bytes lie inside the data section and no two tensors share a byte.
fn check_tensor_ranges(
    tensors: &[TensorInfo],
    info_offsets: &[u64],
    data_offset: u64,
    file_len: u64,
) -> Result<(), GgufError> {
    let data_len = file_len.saturating_sub(data_offset);
    for (t, &info_at) in tensors.iter().zip(info_offsets) {
        let end = t.offset.checked_add(t.n_bytes);
        if end.is_none_or(|e| e > data_len) {
            return Err(GgufError::TensorOutOfRange {
                name: t.name.clone(),
                offset: info_at,
                start: t.offset,
                end: end.unwrap_or(u64::MAX),
                data_section: data_offset,
                data_len,
            });
        }
    }
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| (tensors[i].offset, tensors[i].n_bytes));
    for w in order.windows(2) {
        let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
        // ranges are in bounds, so these sums cannot overflow
        if a.offset + a.n_bytes > b.offset {
            return Err(GgufError::OverlappingTensors {
                name: b.name.clone(),
                start: b.offset,
                end: b.offset + b.n_bytes,
                other: a.name.clone(),
                other_start: a.offset,
                other_end: a.offset + a.n_bytes,
            });
        }
    }
    Ok(())
}
