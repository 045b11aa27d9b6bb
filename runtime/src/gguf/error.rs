//! The one error type of the GGUF module.
//!
//! Every variant that comes from parsing names the field and the byte offset where the problem
//! was found, and displays as one line, so `weft inspect broken.gguf` can print it as is.

use std::path::PathBuf;

/// Why a GGUF file could not be read, a metadata lookup failed, or the writer refused input.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("bad magic {found:?} at byte 0: not a GGUF file (expected \"GGUF\")")]
    BadMagic { found: String },

    #[error("big-endian GGUF file (version field at byte 4 reads {raw:#010x}, byte-swapped {swapped}): only little-endian files are supported")]
    BigEndian { raw: u32, swapped: u32 },

    #[error("unsupported GGUF version {version} at byte 4: weft reads versions 2 and 3{hint}")]
    UnsupportedVersion { version: u32, hint: &'static str },

    #[error(
        "truncated file: {field} at byte {offset} needs {needed} bytes but only {available} remain"
    )]
    Truncated { field: String, offset: u64, needed: u64, available: u64 },

    #[error("absurd count: {field} at byte {offset} is {count}, but the {available} remaining bytes hold at most {max}")]
    AbsurdCount { field: String, offset: u64, count: u64, available: u64, max: u64 },

    #[error("string length past the end: {field} at byte {offset} has length {len} but only {available} bytes remain")]
    StringPastEnd { field: String, offset: u64, len: u64, available: u64 },

    #[error("invalid UTF-8 in string: {field} at byte {offset}")]
    InvalidUtf8 { field: String, offset: u64 },

    #[error("invalid bool: {field} at byte {offset} is {value} (expected 0 or 1)")]
    InvalidBool { field: String, offset: u64, value: u8 },

    #[error("unknown value type {type_id}: {field} at byte {offset}")]
    UnknownValueType { field: String, offset: u64, type_id: u32 },

    #[error("arrays nested too deep: {field} at byte {offset} is nested deeper than {max} levels")]
    NestingTooDeep { field: String, offset: u64, max: usize },

    #[error("empty metadata key: metadata[{index}] at byte {offset}")]
    EmptyKey { index: u64, offset: u64 },

    #[error("bad metadata key {key:?} at byte {offset}: {{arch}} is a lookup placeholder, not part of a key")]
    PlaceholderInKey { key: String, offset: u64 },

    #[error("duplicate metadata key {key:?} at byte {offset}")]
    DuplicateKey { key: String, offset: u64 },

    #[error("bad general.alignment at byte {offset}: {reason}")]
    BadAlignment { offset: u64, reason: String },

    #[error("empty tensor name: tensor[{index}] at byte {offset}")]
    EmptyTensorName { index: u64, offset: u64 },

    #[error("duplicate tensor name {name:?} at byte {offset}")]
    DuplicateTensor { name: String, offset: u64 },

    #[error(
        "bad n_dims: tensor {name:?} at byte {offset} has {n_dims} dimensions (1 to 4 allowed)"
    )]
    BadDimCount { name: String, offset: u64, n_dims: u32 },

    #[error("zero dimension: tensor {name:?} ne[{index}] at byte {offset} is 0")]
    ZeroDim { name: String, offset: u64, index: usize },

    #[error("dimension overflow: tensor {name:?} at byte {offset} has dims {dims:?} whose element count or byte size overflows")]
    DimOverflow { name: String, offset: u64, dims: Vec<u64> },

    #[error("unknown tensor type id {type_id}: tensor {name:?} at byte {offset}")]
    UnknownTensorType { name: String, offset: u64, type_id: u32 },

    #[error("row size not a multiple of the block size: tensor {name:?} at byte {offset} has ne[0] = {ne0}, not a multiple of {ggml_type}'s block of {block_size}")]
    BadRowSize {
        name: String,
        offset: u64,
        ggml_type: crate::GgmlType,
        ne0: u64,
        block_size: usize,
    },

    #[error("misaligned tensor offset: tensor {name:?} at byte {offset} has data offset {data_offset}, not a multiple of the alignment {alignment}")]
    MisalignedTensor { name: String, offset: u64, data_offset: u64, alignment: u64 },

    #[error("tensor data out of range: tensor {name:?} at byte {offset} spans data bytes {start}..{end} but the data section (from byte {data_section}) holds {data_len} bytes")]
    TensorOutOfRange {
        name: String,
        offset: u64,
        start: u64,
        end: u64,
        data_section: u64,
        data_len: u64,
    },

    #[error("overlapping tensor data: tensor {name:?} (data bytes {start}..{end}) overlaps tensor {other:?} (data bytes {other_start}..{other_end})")]
    OverlappingTensors {
        name: String,
        start: u64,
        end: u64,
        other: String,
        other_start: u64,
        other_end: u64,
    },

    #[error("missing metadata key {key:?}")]
    MissingKey { key: String },

    #[error("wrong type for metadata key {key:?}: expected {expected}, found {found}")]
    WrongType { key: String, expected: &'static str, found: String },

    #[error("GGUF writer: {what}: {reason}")]
    Writer { what: String, reason: String },
}
