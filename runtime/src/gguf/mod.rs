//! GGUF files: reading (memory-mapped, validated, zero-copy tensor data) and writing.
//!
//! Layout of a GGUF file (all little-endian):
//! magic "GGUF", u32 version, u64 tensor_count, u64 kv_count, kv_count metadata records
//! (string key, u32 value type, value), tensor_count tensor infos (string name, u32 n_dims,
//! u64 ne[n_dims], u32 ggml type, u64 offset into the data section), padding to
//! `general.alignment`, then the data section.
//!
//! Dimensions are kept in ggml's `ne` order: `dims[0]` is the contiguous one, so a weight
//! matrix with `dims = [n_embd, n_ff]` is `n_ff` rows of `n_embd` elements.

mod error;
mod reader;
mod value;
mod writer;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

pub use error::GgufError;
pub use reader::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{min_encoded_size, type_id, type_id_name, MetaArray, MetaValue};
pub use writer::GgufWriter;

use crate::GgmlType;

/// Where a tensor's bytes are, as the tensor info describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    pub ggml_type: GgmlType,
    /// ne order: `dims[0]` is contiguous. 1 to 4 entries, none zero.
    pub dims: Vec<u64>,
    /// Byte offset from the start of the data section.
    pub offset: u64,
    /// Bytes of data: `row_size(dims[0]) * product(dims[1..])`.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Total elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A tensor with its bytes, borrowed from the file (never copied).
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub name: &'a str,
    pub ggml_type: GgmlType,
    pub dims: &'a [u64],
    pub data: &'a [u8],
}

impl TensorView<'_> {
    /// Total elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (`ne[0]`).
    pub fn cols(&self) -> u64 {
        self.dims[0]
    }

    /// Number of rows: the product of `ne[1..]` (1 for a vector).
    pub fn rows(&self) -> u64 {
        self.dims[1..].iter().product()
    }
}

/// A parsed GGUF file. Owns the bytes (a read-only mapping, or a buffer for `from_bytes`);
/// tensor views borrow them.
pub struct GgufFile {
    backing: Backing,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, MetaValue)>,
    meta_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// A 32-byte aligned chunk, so that `from_bytes` data has the same alignment guarantees as a
/// page-aligned mapping: tensor offsets that are multiples of the file alignment (32) are
/// aligned in memory too, and block structs can be cast from them.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(32))]
struct Chunk32([u8; 32]);

enum Backing {
    Mmap(memmap2::Mmap),
    Owned { chunks: Vec<Chunk32>, len: usize },
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned { chunks, len } => &bytemuck::cast_slice(chunks)[..*len],
        }
    }
}

impl GgufFile {
    /// Map and validate the file at `path`. Tensor data is not read.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let len = meta.len();
        if len == 0 {
            // An empty mapping is an error on some platforms; parse the empty buffer instead.
            return Self::from_bytes(Vec::new());
        }
        // SAFETY: the mapping is read-only and private to this process. Like every mmap-based
        // loader (llama.cpp included) we rely on nobody truncating or rewriting the model file
        // while it is open; that would be undefined behaviour for any reader of the mapping.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_backing(Backing::Mmap(mmap))
    }

    /// Tell the OS that the pages lying wholly inside `bytes` (a tensor's data, borrowed
    /// from this file) are not needed now: a backend that copied the tensor lets go of the
    /// file's copy, so resident memory counts those weights once. The contents never change
    /// (a read-only file mapping): a later read faults the pages back in from the file. A
    /// no-op for in-memory files, for bytes not from this file, and where the OS declines.
    pub fn release(&self, bytes: &[u8]) {
        let Backing::Mmap(m) = &self.backing else { return };
        const PAGE: usize = 4096;
        let base = m.as_ptr() as usize;
        let Some(off) = (bytes.as_ptr() as usize).checked_sub(base) else { return };
        if off + bytes.len() > m.len() {
            return;
        }
        let start = off.next_multiple_of(PAGE);
        let end = (off + bytes.len()) / PAGE * PAGE;
        #[cfg(not(unix))]
        let _ = (start, end);
        #[cfg(unix)]
        if end > start {
            // SAFETY: MADV_DONTNEED on a read-only shared file mapping only drops page-table
            // entries: the bytes seen through the mapping stay the file's, so the slices that
            // borrow it remain valid. An error (e.g. a larger page size) just means no release.
            let _ = unsafe {
                m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    /// Validate a file held in memory (tests, fuzzing). The bytes are copied once into a
    /// 32-byte aligned buffer.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        let len = bytes.len();
        let mut chunks = vec![Chunk32([0; 32]); len.div_ceil(32)];
        bytemuck::cast_slice_mut::<Chunk32, u8>(&mut chunks)[..len].copy_from_slice(&bytes);
        drop(bytes);
        Self::from_backing(Backing::Owned { chunks, len })
    }

    fn from_backing(backing: Backing) -> Result<GgufFile, GgufError> {
        let p = reader::parse(backing.bytes())?;
        Ok(GgufFile {
            backing,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            metadata: p.metadata,
            meta_index: p.meta_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
        })
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data section alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Byte offset of the data section from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.backing.bytes()
    }

    /// `general.architecture`, when present and a string.
    pub fn architecture(&self) -> Option<&str> {
        match self.get_exact("general.architecture") {
            Some(MetaValue::String(s)) => Some(s),
            _ => None,
        }
    }

    /// All metadata in file order.
    pub fn metadata(&self) -> &[(String, MetaValue)] {
        &self.metadata
    }

    /// The value of `key`; `{arch}` in the key stands for `general.architecture`.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.get_exact(&self.resolve_key(key)?)
    }

    fn get_exact(&self, key: &str) -> Option<&MetaValue> {
        self.meta_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `key` with `{arch}` replaced; `None` when it needs an architecture the file lacks.
    fn resolve_key<'k>(&self, key: &'k str) -> Option<Cow<'k, str>> {
        if key.contains("{arch}") {
            Some(Cow::Owned(key.replace("{arch}", self.architecture()?)))
        } else {
            Some(Cow::Borrowed(key))
        }
    }

    /// The value of `key` (resolved), or MissingKey naming the resolved key.
    fn require<'k>(&self, key: &'k str) -> Result<(Cow<'k, str>, &MetaValue), GgufError> {
        match self.lookup(key) {
            (k, Some(v)) => Ok((k, v)),
            (k, None) => Err(GgufError::MissingKey { key: k.into_owned() }),
        }
    }

    /// The resolved key (as written when it needs a missing architecture) and its value.
    fn lookup<'k>(&self, key: &'k str) -> (Cow<'k, str>, Option<&MetaValue>) {
        match self.resolve_key(key) {
            Some(k) => {
                let v = self.get_exact(&k);
                (k, v)
            }
            None => (Cow::Borrowed(key), None),
        }
    }

    fn wrong(key: &str, expected: &'static str, found: &MetaValue) -> GgufError {
        let found = match found.as_i128() {
            Some(v) => format!("{} {v}", found.type_name()),
            None => found.type_name(),
        };
        GgufError::WrongType { key: key.to_string(), expected, found }
    }

    /// An integer value of any integer type that fits in u32.
    pub fn u32(&self, key: &str) -> Result<u32, GgufError> {
        let (k, v) = self.require(key)?;
        v.as_i128().and_then(|x| u32::try_from(x).ok()).ok_or_else(|| Self::wrong(&k, "u32", v))
    }

    /// An integer value of any integer type that fits in u64.
    pub fn u64(&self, key: &str) -> Result<u64, GgufError> {
        let (k, v) = self.require(key)?;
        v.as_i128().and_then(|x| u64::try_from(x).ok()).ok_or_else(|| Self::wrong(&k, "u64", v))
    }

    /// An f32 or f64 value (f64 rounded to f32).
    pub fn f32(&self, key: &str) -> Result<f32, GgufError> {
        let (k, v) = self.require(key)?;
        match *v {
            MetaValue::F32(x) => Ok(x),
            MetaValue::F64(x) => Ok(x as f32),
            _ => Err(Self::wrong(&k, "f32", v)),
        }
    }

    /// A bool value.
    pub fn bool(&self, key: &str) -> Result<bool, GgufError> {
        let (k, v) = self.require(key)?;
        match *v {
            MetaValue::Bool(x) => Ok(x),
            _ => Err(Self::wrong(&k, "bool", v)),
        }
    }

    /// A string value.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        let (k, v) = self.require(key)?;
        match v {
            MetaValue::String(s) => Ok(s),
            _ => Err(Self::wrong(&k, "string", v)),
        }
    }

    fn optional<T>(
        &self,
        key: &str,
        get: impl FnOnce(&Self, &str) -> Result<T, GgufError>,
    ) -> Result<Option<T>, GgufError> {
        match get(self, key) {
            Ok(v) => Ok(Some(v)),
            Err(GgufError::MissingKey { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Like [`GgufFile::u32`], `None` when absent.
    pub fn u32_opt(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.optional(key, Self::u32)
    }

    /// Like [`GgufFile::u64`], `None` when absent.
    pub fn u64_opt(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.optional(key, Self::u64)
    }

    /// Like [`GgufFile::f32`], `None` when absent.
    pub fn f32_opt(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.optional(key, Self::f32)
    }

    /// Like [`GgufFile::bool`], `None` when absent.
    pub fn bool_opt(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.optional(key, Self::bool)
    }

    /// Like [`GgufFile::str`], `None` when absent.
    pub fn str_opt(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.lookup(key) {
            (_, None) => Ok(None),
            (_, Some(MetaValue::String(s))) => Ok(Some(s)),
            (k, Some(v)) => Err(Self::wrong(&k, "string", v)),
        }
    }

    /// The array value of `key`.
    pub fn array(&self, key: &str) -> Result<&MetaArray, GgufError> {
        let (k, v) = self.require(key)?;
        match v {
            MetaValue::Array(a) => Ok(a),
            _ => Err(Self::wrong(&k, "array", v)),
        }
    }

    /// An array of strings.
    pub fn str_array(&self, key: &str) -> Result<&[String], GgufError> {
        let (k, v) = self.require(key)?;
        match v {
            MetaValue::Array(MetaArray::String(a)) => Ok(a),
            _ => Err(Self::wrong(&k, "array[string]", v)),
        }
    }

    /// An array of f32.
    pub fn f32_array(&self, key: &str) -> Result<&[f32], GgufError> {
        let (k, v) = self.require(key)?;
        match v {
            MetaValue::Array(MetaArray::F32(a)) => Ok(a),
            _ => Err(Self::wrong(&k, "array[f32]", v)),
        }
    }

    /// An array of i32.
    pub fn i32_array(&self, key: &str) -> Result<&[i32], GgufError> {
        let (k, v) = self.require(key)?;
        match v {
            MetaValue::Array(MetaArray::I32(a)) => Ok(a),
            _ => Err(Self::wrong(&k, "array[i32]", v)),
        }
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`, with its bytes.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'_>> {
        self.tensor_index.get(name).map(|&i| self.view(&self.tensors[i]))
    }

    /// The `index`-th tensor in file order, with its bytes.
    pub fn tensor_at(&self, index: usize) -> Option<TensorView<'_>> {
        self.tensors.get(index).map(|t| self.view(t))
    }

    fn view<'a>(&'a self, info: &'a TensorInfo) -> TensorView<'a> {
        // Validated at parse time: data_offset + offset + n_bytes <= file size.
        let start = (self.data_offset + info.offset) as usize;
        TensorView {
            name: &info.name,
            ggml_type: info.ggml_type,
            dims: &info.dims,
            data: &self.backing.bytes()[start..start + info.n_bytes as usize],
        }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("file_size", &self.file_size())
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;
