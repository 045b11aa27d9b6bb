//! Quantized block formats and their scalar reference implementation.
//!
//! The reference (dequantize, quantize, vec_dot) is the definition backends are tested
//! against; it favours clarity over speed. It is bit-exact with ggml where ggml is
//! deterministic: dequantization and the `*_ref` quantizers reproduce ggml's f32 operations in
//! ggml's order (checked against `gguf.quants` fixtures in `tests/quant_reference.rs`). Dots
//! follow ggml's generic (non-SIMD) path and its summation order: integer sums per block,
//! times the block scales, accumulated in f32 (f64 for the float formats; 8 f32 lanes for
//! Q3_K..Q6_K, see klanes.rs), so they too match ggml's scalar build bit for bit.
//!
//! Typed per-format functions take block slices and panic on length mismatches (a programming
//! error); the dynamic entry points [`dequantize_row`], [`quantize_row`], [`vec_dot`] take
//! bytes and return [`QuantError`] instead.

pub mod blocks;
mod float;
mod k2_3;
mod k4_5;
mod k6;
mod klanes;
mod kquant_ref;
mod q4;
mod q5;
mod q8;

pub use blocks::*;
pub use float::*;
pub use k2_3::*;
pub use k4_5::*;
pub use k6::*;
pub use kquant_ref::*;
pub use q4::*;
pub use q5::*;
pub use q8::*;

use crate::ggml_type::GgmlType;
use bytemuck::Pod;
use half::{bf16, f16};
use std::borrow::Cow;

/// Why a dynamic quant entry point refused its arguments.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    /// The reference has no such operation for this type.
    #[error("{op} is not supported for type {ggml_type}")]
    Unsupported { op: &'static str, ggml_type: GgmlType },
    /// The element count is not a whole number of blocks.
    #[error("{ggml_type}: {n} elements is not a multiple of the block size {block_size}")]
    NotBlockMultiple { ggml_type: GgmlType, n: usize, block_size: usize },
    /// The byte size of `n` elements does not fit in memory.
    #[error("{ggml_type}: {n} elements is too large a row")]
    TooLarge { ggml_type: GgmlType, n: usize },
    /// A buffer's length does not match the element count.
    #[error("{ggml_type}: {what} has length {actual}, expected {expected}")]
    BufferSize { ggml_type: GgmlType, what: &'static str, expected: usize, actual: usize },
}

/// The activation format a weight type's dot product takes, as ggml's `vec_dot_type`:
/// Q4_0/Q5_0/Q8_0 -> Q8_0, Q4_1/Q5_1 -> Q8_1, Q2_K..Q6_K -> Q8_K, and the float types dot
/// with themselves. `None` for types without a reference dot (Q8_1, Q8_K, IQ*, ...).
pub fn vec_dot_type(t: GgmlType) -> Option<GgmlType> {
    use GgmlType::*;
    match t {
        Q4_0 | Q5_0 | Q8_0 => Some(Q8_0),
        Q4_1 | Q5_1 => Some(Q8_1),
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Some(Q8_K),
        F32 | F16 | BF16 => Some(t),
        _ => None,
    }
}

/// Whether [`dequantize_row`] supports `t`.
pub fn can_dequantize(t: GgmlType) -> bool {
    use GgmlType::*;
    matches!(t, F32 | F16 | BF16 | Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1)
        || matches!(t, Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K)
}

/// Whether [`quantize_row`] supports `t`.
pub fn can_quantize(t: GgmlType) -> bool {
    can_dequantize(t)
}

/// Bytes of `n` elements of `t`, checking that `n` is a whole number of blocks.
fn row_bytes(t: GgmlType, n: usize) -> Result<usize, QuantError> {
    let block_size = t.block_size();
    if !n.is_multiple_of(block_size) {
        return Err(QuantError::NotBlockMultiple { ggml_type: t, n, block_size });
    }
    // `n` comes from the caller in vec_dot, not from a slice length: it may be absurd.
    (n / block_size).checked_mul(t.type_size()).ok_or(QuantError::TooLarge { ggml_type: t, n })
}

fn check_len(
    t: GgmlType,
    what: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), QuantError> {
    if expected == actual {
        Ok(())
    } else {
        Err(QuantError::BufferSize { ggml_type: t, what, expected, actual })
    }
}

/// `bytes` as a slice of `B`, copied only when it is not suitably aligned (the caller has
/// checked that the length is a multiple of `size_of::<B>()`).
fn view<B: Pod>(bytes: &[u8]) -> Cow<'_, [B]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => {
            let mut v = vec![B::zeroed(); bytes.len() / std::mem::size_of::<B>()];
            bytemuck::cast_slice_mut(&mut v).copy_from_slice(bytes);
            Cow::Owned(v)
        }
    }
}

/// Runs `f` on `bytes` viewed as `&mut [B]`, through an aligned copy when needed.
fn with_mut<B: Pod>(bytes: &mut [u8], f: impl FnOnce(&mut [B])) {
    if bytes.as_ptr().align_offset(std::mem::align_of::<B>()) == 0 {
        f(bytemuck::cast_slice_mut(bytes));
    } else {
        let mut tmp = vec![B::zeroed(); bytes.len() / std::mem::size_of::<B>()];
        f(&mut tmp);
        bytes.copy_from_slice(bytemuck::cast_slice(&tmp));
    }
}

/// Dequantize `dst.len()` elements of type `t` from `src` (`src.len()` must be their row size).
pub fn dequantize_row(t: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    use GgmlType::*;
    if !can_dequantize(t) {
        return Err(QuantError::Unsupported { op: "dequantize", ggml_type: t });
    }
    let bytes = row_bytes(t, dst.len())?;
    check_len(t, "source bytes", bytes, src.len())?;
    match t {
        F32 => dst.copy_from_slice(&view::<f32>(src)),
        F16 => dequantize_row_f16(&view::<f16>(src), dst),
        BF16 => dequantize_row_bf16(&view::<bf16>(src), dst),
        Q4_0 => dequantize_row_q4_0(&view(src), dst),
        Q4_1 => dequantize_row_q4_1(&view(src), dst),
        Q5_0 => dequantize_row_q5_0(&view(src), dst),
        Q5_1 => dequantize_row_q5_1(&view(src), dst),
        Q8_0 => dequantize_row_q8_0(&view(src), dst),
        Q8_1 => dequantize_row_q8_1(&view(src), dst),
        Q2_K => dequantize_row_q2_k(&view(src), dst),
        Q3_K => dequantize_row_q3_k(&view(src), dst),
        Q4_K => dequantize_row_q4_k(&view(src), dst),
        Q5_K => dequantize_row_q5_k(&view(src), dst),
        Q6_K => dequantize_row_q6_k(&view(src), dst),
        Q8_K => dequantize_row_q8_k(&view(src), dst),
        _ => return Err(QuantError::Unsupported { op: "dequantize", ggml_type: t }),
    }
    Ok(())
}

/// Quantize `src` to type `t` into `dst` (`dst.len()` must be the row size of `src.len()`).
pub fn quantize_row(t: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    use GgmlType::*;
    if !can_quantize(t) {
        return Err(QuantError::Unsupported { op: "quantize", ggml_type: t });
    }
    let bytes = row_bytes(t, src.len())?;
    check_len(t, "destination bytes", bytes, dst.len())?;
    match t {
        F32 => with_mut(dst, |d: &mut [f32]| d.copy_from_slice(src)),
        F16 => with_mut(dst, |d| quantize_row_f16(src, d)),
        BF16 => with_mut(dst, |d| quantize_row_bf16(src, d)),
        Q4_0 => with_mut(dst, |d| quantize_row_q4_0(src, d)),
        Q4_1 => with_mut(dst, |d| quantize_row_q4_1(src, d)),
        Q5_0 => with_mut(dst, |d| quantize_row_q5_0(src, d)),
        Q5_1 => with_mut(dst, |d| quantize_row_q5_1(src, d)),
        Q8_0 => with_mut(dst, |d| quantize_row_q8_0(src, d)),
        Q8_1 => with_mut(dst, |d| quantize_row_q8_1(src, d)),
        Q2_K => with_mut(dst, |d| quantize_row_q2_k(src, d)),
        Q3_K => with_mut(dst, |d| quantize_row_q3_k(src, d)),
        Q4_K => with_mut(dst, |d| quantize_row_q4_k(src, d)),
        Q5_K => with_mut(dst, |d| quantize_row_q5_k(src, d)),
        Q6_K => with_mut(dst, |d| quantize_row_q6_k(src, d)),
        Q8_K => with_mut(dst, |d| quantize_row_q8_k(src, d)),
        _ => return Err(QuantError::Unsupported { op: "quantize", ggml_type: t }),
    }
    Ok(())
}

/// Dot product of `n` elements: `x` in type `t`, `y` in [`vec_dot_type`]`(t)`, both as bytes.
pub fn vec_dot(t: GgmlType, n: usize, x: &[u8], y: &[u8]) -> Result<f32, QuantError> {
    use GgmlType::*;
    let Some(ty) = vec_dot_type(t) else {
        return Err(QuantError::Unsupported { op: "vec_dot", ggml_type: t });
    };
    check_len(t, "x bytes", row_bytes(t, n)?, x.len())?;
    check_len(ty, "y bytes", row_bytes(ty, n)?, y.len())?;
    let r = match t {
        F32 => vec_dot_f32(&view(x), &view(y)),
        F16 => vec_dot_f16(&view(x), &view(y)),
        BF16 => vec_dot_bf16(&view(x), &view(y)),
        Q4_0 => vec_dot_q4_0_q8_0(&view(x), &view(y)),
        Q4_1 => vec_dot_q4_1_q8_1(&view(x), &view(y)),
        Q5_0 => vec_dot_q5_0_q8_0(&view(x), &view(y)),
        Q5_1 => vec_dot_q5_1_q8_1(&view(x), &view(y)),
        Q8_0 => vec_dot_q8_0_q8_0(&view(x), &view(y)),
        Q2_K => vec_dot_q2_k_q8_k(&view(x), &view(y)),
        Q3_K => vec_dot_q3_k_q8_k(&view(x), &view(y)),
        Q4_K => vec_dot_q4_k_q8_k(&view(x), &view(y)),
        Q5_K => vec_dot_q5_k_q8_k(&view(x), &view(y)),
        Q6_K => vec_dot_q6_k_q8_k(&view(x), &view(y)),
        _ => return Err(QuantError::Unsupported { op: "vec_dot", ggml_type: t }),
    };
    Ok(r)
}

/// ggml's `nearest_int`: round half to even (ggml adds 1.5 * 2^23 and reads the mantissa,
/// which rounds in the FPU's default mode) for the |x| < 2^22 range ggml asserts.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}
