//! Writing GGUF v3 files: metadata, tensor infos, aligned data section.
//!
//! Used for synthetic test models and fixtures; what it writes always passes the reader's
//! validation (it refuses input the reader would reject).

use std::collections::HashMap;
use std::path::Path;

use super::error::GgufError;
use super::reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
use super::value::{MetaArray, MetaValue};
use crate::GgmlType;

/// Builds a GGUF v3 file in memory.
#[derive(Default, Debug)]
pub struct GgufWriter {
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<PendingTensor>,
    tensor_index: HashMap<String, usize>,
}

#[derive(Debug)]
struct PendingTensor {
    name: String,
    ggml_type: GgmlType,
    dims: Vec<u64>,
    data: Vec<u8>,
}

fn writer_err(what: impl Into<String>, reason: impl Into<String>) -> GgufError {
    GgufError::Writer { what: what.into(), reason: reason.into() }
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set metadata `key`. Keys keep the order of their first insertion; setting a key again
    /// replaces its value (GGUF forbids duplicate keys).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: MetaValue) {
        let key = key.into();
        match self.meta_index.get(&key) {
            Some(&i) => self.metadata[i].1 = value,
            None => {
                self.meta_index.insert(key.clone(), self.metadata.len());
                self.metadata.push((key, value));
            }
        }
    }

    /// Add a tensor. `dims` in ne order (`dims[0]` contiguous); `data` must be exactly
    /// `row_size(dims[0]) * product(dims[1..])` bytes.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        ggml_type: GgmlType,
        dims: &[u64],
        data: Vec<u8>,
    ) -> Result<(), GgufError> {
        let name = name.into();
        let what = || format!("tensor {name:?}");
        if name.is_empty() {
            return Err(writer_err("tensor", "empty name"));
        }
        if self.tensor_index.contains_key(&name) {
            return Err(writer_err(what(), "duplicate name"));
        }
        if dims.is_empty() || dims.len() > MAX_DIMS {
            return Err(writer_err(
                what(),
                format!("{} dimensions (1 to {MAX_DIMS} allowed)", dims.len()),
            ));
        }
        if dims.contains(&0) {
            return Err(writer_err(what(), format!("zero dimension in {dims:?}")));
        }
        let n_bytes = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .and_then(|_| {
                let rows: u64 = dims[1..].iter().product();
                ggml_type.row_size(dims[0])?.checked_mul(rows)
            })
            .ok_or_else(|| {
                writer_err(
                    what(),
                    format!("dims {dims:?} overflow or ne[0] is not a multiple of {ggml_type}'s block size"),
                )
            })?;
        if data.len() as u64 != n_bytes {
            return Err(writer_err(
                what(),
                format!("{} data bytes, expected {n_bytes}", data.len()),
            ));
        }
        self.tensor_index.insert(name.clone(), self.tensors.len());
        self.tensors.push(PendingTensor { name, ggml_type, dims: dims.to_vec(), data });
        Ok(())
    }

    /// The alignment the file will use: `general.alignment` when set (must be a u32 power of
    /// two), else 32.
    fn alignment(&self) -> Result<u64, GgufError> {
        match self.meta_index.get("general.alignment").map(|&i| &self.metadata[i].1) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(MetaValue::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
            Some(v) => {
                Err(writer_err("general.alignment", format!("{v} is not a u32 power of two")))
            }
        }
    }

    /// The complete file.
    pub fn to_bytes(&self) -> Result<Vec<u8>, GgufError> {
        let alignment = self.alignment()?;
        let data_bytes: u64 =
            self.tensors.iter().map(|t| (t.data.len() as u64).next_multiple_of(alignment)).sum();
        let mut out = Vec::with_capacity(4096 + data_bytes as usize);
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.metadata.len() as u64);
        for (key, value) in &self.metadata {
            if key.is_empty() {
                return Err(writer_err("metadata", "empty key"));
            }
            if key.contains("{arch}") {
                return Err(writer_err(
                    format!("metadata {key:?}"),
                    "{arch} is a lookup placeholder",
                ));
            }
            put_str(&mut out, key);
            out.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut out, value, 0)
                .map_err(|reason| writer_err(format!("metadata {key:?}"), reason))?;
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            put_u64(&mut out, offset);
            offset += (t.data.len() as u64).next_multiple_of(alignment);
        }
        pad_to(&mut out, alignment);
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            pad_to(&mut out, alignment);
        }
        Ok(out)
    }

    /// Write the file to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes)
            .map_err(|source| GgufError::Io { path: path.to_path_buf(), source })
    }
}

fn pad_to(out: &mut Vec<u8>, alignment: u64) {
    let len = (out.len() as u64).next_multiple_of(alignment) as usize;
    out.resize(len, 0);
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue, depth: usize) -> Result<(), String> {
    match v {
        MetaValue::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(a) => put_array(out, a, depth + 1)?,
    }
    Ok(())
}

fn put_array(out: &mut Vec<u8>, a: &MetaArray, depth: usize) -> Result<(), String> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH} levels"));
    }
    out.extend_from_slice(&a.elem_type_id().to_le_bytes());
    put_u64(out, a.len() as u64);
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        MetaArray::U8(v) => out.extend_from_slice(v),
        MetaArray::I8(v) => each!(v),
        MetaArray::U16(v) => each!(v),
        MetaArray::I16(v) => each!(v),
        MetaArray::U32(v) => each!(v),
        MetaArray::I32(v) => each!(v),
        MetaArray::U64(v) => each!(v),
        MetaArray::I64(v) => each!(v),
        MetaArray::F32(v) => each!(v),
        MetaArray::F64(v) => each!(v),
        MetaArray::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(out, s)),
        MetaArray::Array(v) => {
            for inner in v {
                put_array(out, inner, depth + 1)?;
            }
        }
    }
    Ok(())
}
