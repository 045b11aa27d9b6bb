//! The element type of the KV cache: f16 (the default, as in llama.cpp) or f32 (llama.cpp's
//! `--cache-type-k f32 --cache-type-v f32`: twice the memory and bandwidth, no rounding of
//! K and V). K and V always share one type here.
//!
//! [`KvType`] is the run-time choice (configuration, file headers); [`KvElem`] is the
//! compile-time one, implemented by `half::f16` and `f32` only, for code that is generic over
//! the element (the reference attention, the CPU kernels).

use crate::GgmlType;
use half::f16;

/// Storage type of the K and V cache (ggml's `type_k` / `type_v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// IEEE half precision (`GGML_TYPE_F16`), llama.cpp's default.
    #[default]
    F16,
    /// IEEE single precision (`GGML_TYPE_F32`).
    F32,
}

/// A KV type name that is neither `f16` nor `f32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported KV cache type {0:?}: expected f16 or f32")]
pub struct ParseKvTypeError(pub String);

impl KvType {
    /// Every supported type, the default first.
    pub const ALL: [KvType; 2] = [KvType::F16, KvType::F32];

    /// The ggml type of the stored elements.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::F32 => GgmlType::F32,
        }
    }

    /// The KV type storing `t`, when there is one.
    pub fn from_ggml_type(t: GgmlType) -> Option<KvType> {
        match t {
            GgmlType::F16 => Some(KvType::F16),
            GgmlType::F32 => Some(KvType::F32),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn type_size(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }

    /// ggml's lower-case name (`f16`, `f32`), as llama.cpp's `-ctk` takes it.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::F32 => "f32",
        }
    }

    /// Widens little-endian elements of this type (`bytes.len() == out.len() * type_size`)
    /// to f32, exactly. Extra bytes or elements past the shorter of the two are ignored.
    pub fn decode_f32(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            KvType::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            KvType::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
        }
    }
}

impl std::fmt::Display for KvType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KvType {
    type Err = ParseKvTypeError;

    /// `f16` or `f32` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ParseKvTypeError(s.to_string()))
    }
}

/// A borrowed KV slice of either element type (how a generic caller reaches code that
/// dispatches on the type at run time).
#[derive(Clone, Copy, Debug)]
pub enum KvSlice<'a> {
    F16(&'a [f16]),
    F32(&'a [f32]),
}

/// A mutable KV slice of either element type.
#[derive(Debug)]
pub enum KvSliceMut<'a> {
    F16(&'a mut [f16]),
    F32(&'a mut [f32]),
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for half::f16 {}
    impl Sealed for f32 {}
}

/// A KV cache element: `half::f16` or `f32` (sealed).
pub trait KvElem:
    sealed::Sealed + Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static
{
    /// The run-time name of this element type.
    const KV_TYPE: KvType;
    /// Rounds (f16: to nearest even) or copies an f32 into the cache element.
    fn from_f32(x: f32) -> Self;
    /// Widens the element to f32 (exact for both types).
    fn to_f32(self) -> f32;
    /// Widens the element to f64 (exact for both types).
    #[inline]
    fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
    /// The slice as a [`KvSlice`].
    fn as_kv_slice(s: &[Self]) -> KvSlice<'_>;
    /// The slice as a [`KvSliceMut`].
    fn as_kv_slice_mut(s: &mut [Self]) -> KvSliceMut<'_>;
}

impl KvElem for f16 {
    const KV_TYPE: KvType = KvType::F16;
    #[inline]
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn as_kv_slice(s: &[Self]) -> KvSlice<'_> {
        KvSlice::F16(s)
    }
    fn as_kv_slice_mut(s: &mut [Self]) -> KvSliceMut<'_> {
        KvSliceMut::F16(s)
    }
}

impl KvElem for f32 {
    const KV_TYPE: KvType = KvType::F32;
    #[inline]
    fn from_f32(x: f32) -> Self {
        x
    }
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    fn as_kv_slice(s: &[Self]) -> KvSlice<'_> {
        KvSlice::F32(s)
    }
    fn as_kv_slice_mut(s: &mut [Self]) -> KvSliceMut<'_> {
        KvSliceMut::F32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_sizes() {
        assert_eq!("f16".parse::<KvType>(), Ok(KvType::F16));
        assert_eq!("F32".parse::<KvType>(), Ok(KvType::F32));
        assert_eq!("q8_0".parse::<KvType>(), Err(ParseKvTypeError("q8_0".into())));
        assert_eq!(KvType::default(), KvType::F16);
        assert_eq!(KvType::F32.type_size(), 4);
        assert_eq!(KvType::F16.ggml_type(), GgmlType::F16);
        assert_eq!(KvType::from_ggml_type(GgmlType::Q8_0), None);
        assert_eq!(KvType::F32.to_string(), "f32");
    }

    #[test]
    fn decode_both_types() {
        let mut out = [0f32; 2];
        let h: Vec<u8> =
            [1.5f32, -2.0].iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect();
        KvType::F16.decode_f32(&h, &mut out);
        assert_eq!(out, [1.5, -2.0]);
        let f: Vec<u8> = [0.1f32, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        KvType::F32.decode_f32(&f, &mut out);
        assert_eq!(out, [0.1, 3.0]);
    }
}
