//! Tensor lookup by ggml names, with shape and type checks, made resident on a backend.
//!
//! GGUF dims are in ggml order (`dims[0]` contiguous), so a matmul weight `[cols, rows]` in
//! GGUF is row-major `[rows = n_out, cols = n_in]` here: `y = x * W^T`.

use super::hparams::{Arch, HParams};
use super::ModelError;
use crate::backend::Backend;
use crate::gguf::{GgufFile, TensorView};
use crate::GgmlType;

/// One transformer block's tensors (`blk.{i}.*`).
pub struct LayerWeights<'a, B: Backend> {
    /// f32 [n_embd]
    pub attn_norm: B::Buf,
    /// [n_head * head_dim, n_embd] (rows, cols)
    pub attn_q: B::Weight<'a>,
    /// [n_head_kv * head_dim, n_embd]
    pub attn_k: B::Weight<'a>,
    /// [n_head_kv * head_dim, n_embd]
    pub attn_v: B::Weight<'a>,
    /// [n_embd, n_head * head_dim]
    pub attn_output: B::Weight<'a>,
    /// f32 [n_head * head_dim] (qwen2)
    pub attn_q_bias: Option<B::Buf>,
    /// f32 [n_head_kv * head_dim] (qwen2)
    pub attn_k_bias: Option<B::Buf>,
    /// f32 [n_head_kv * head_dim] (qwen2)
    pub attn_v_bias: Option<B::Buf>,
    /// f32 [n_embd]
    pub ffn_norm: B::Buf,
    /// [n_ff, n_embd]
    pub ffn_gate: B::Weight<'a>,
    /// [n_ff, n_embd]
    pub ffn_up: B::Weight<'a>,
    /// [n_embd, n_ff]
    pub ffn_down: B::Weight<'a>,
}

/// All tensors of a llama-family model.
pub struct Weights<'a, B: Backend> {
    /// [n_vocab, n_embd], gathered by token id
    pub token_embd: B::Weight<'a>,
    pub layers: Vec<LayerWeights<'a, B>>,
    /// f32 [n_embd]
    pub output_norm: B::Buf,
    /// [n_vocab, n_embd]; `None` when tied to `token_embd` (no `output.weight` in the file)
    pub output: Option<B::Weight<'a>>,
    /// Llama-3 `rope_freqs.weight`: f32 [n_rot / 2] frequency divisors
    pub rope_freqs: Option<Vec<f32>>,
}

struct Loader<'f, 'a, B: Backend> {
    file: &'a GgufFile,
    backend: &'f B,
}

fn backend_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> ModelError {
    ModelError::Backend(Box::new(e))
}

impl<'f, 'a, B: Backend> Loader<'f, 'a, B> {
    fn view(&self, name: &str, dims: &[usize]) -> Result<TensorView<'a>, ModelError> {
        let t = self.file.tensor(name).ok_or_else(|| ModelError::MissingTensor(name.into()))?;
        let got: Vec<u64> = t.dims.to_vec();
        let want: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        // Trailing 1s are insignificant in ggml shapes.
        let trim = |v: &[u64]| {
            let mut v = v.to_vec();
            while v.len() > 1 && v.last() == Some(&1) {
                v.pop();
            }
            v
        };
        if trim(&got) != trim(&want) {
            return Err(ModelError::TensorShape { name: name.into(), expected: want, got });
        }
        Ok(t)
    }

    /// A matmul (or embedding) weight with ggml dims `[cols, rows]`.
    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<B::Weight<'a>, ModelError> {
        let t = self.view(name, &[cols, rows])?;
        let ty = t.ggml_type;
        if !self.backend.supports_matmul(ty) || !cols.is_multiple_of(ty.block_size()) {
            return Err(ModelError::UnsupportedTensorType { name: name.into(), ty });
        }
        self.resident(&t)
    }

    /// The backend's copy of `t`; the file's pages of a copied tensor are let go.
    fn resident(&self, t: &TensorView<'a>) -> Result<B::Weight<'a>, ModelError> {
        let w = self.backend.weight(t).map_err(backend_err)?;
        if self.backend.weight_is_copy(&w) {
            self.file.release(t.data);
        }
        Ok(w)
    }

    fn embedding(&self, name: &str, cols: usize, rows: usize) -> Result<B::Weight<'a>, ModelError> {
        let t = self.view(name, &[cols, rows])?;
        if !self.backend.supports_get_rows(t.ggml_type) {
            return Err(ModelError::UnsupportedTensorType { name: name.into(), ty: t.ggml_type });
        }
        self.backend.embedding_weight(&t).map_err(backend_err)
    }

    /// A small f32 vector (norm weight, bias) stored as F32, F16 or BF16.
    fn vector(&self, name: &str, n: usize) -> Result<B::Buf, ModelError> {
        let t = self.view(name, &[n])?;
        if !matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
            return Err(ModelError::UnsupportedTensorType { name: name.into(), ty: t.ggml_type });
        }
        self.backend.upload_tensor_f32(&t).map_err(backend_err)
    }

    fn host_vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.view(name, &[n])?;
        let mut out = vec![0.0f32; n];
        match t.ggml_type {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                crate::quant::dequantize_row(t.ggml_type, t.data, &mut out).map_err(|e| {
                    ModelError::BadTensor { name: name.into(), detail: e.to_string() }
                })?;
            }
            ty => return Err(ModelError::UnsupportedTensorType { name: name.into(), ty }),
        }
        Ok(out)
    }
}

impl<'a, B: Backend> Weights<'a, B> {
    pub fn load(backend: &B, file: &'a GgufFile, hp: &HParams) -> Result<Self, ModelError> {
        let l = Loader { file, backend };
        let (n_embd, n_q, n_kv, n_ff) = (hp.n_embd, hp.n_embd_q(), hp.n_embd_kv(), hp.n_ff);
        let has_bias = hp.arch == Arch::Qwen2;
        let mut layers = Vec::with_capacity(hp.n_layer);
        for i in 0..hp.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}");
            let bias = |s: &str, len: usize| -> Result<Option<B::Buf>, ModelError> {
                if has_bias {
                    l.vector(&n(s), len).map(Some)
                } else if file.tensor(&n(s)).is_some() {
                    // llama files may carry biases too (some converters emit them).
                    l.vector(&n(s), len).map(Some)
                } else {
                    Ok(None)
                }
            };
            layers.push(LayerWeights {
                attn_norm: l.vector(&n("attn_norm.weight"), n_embd)?,
                attn_q: l.matrix(&n("attn_q.weight"), n_embd, n_q)?,
                attn_k: l.matrix(&n("attn_k.weight"), n_embd, n_kv)?,
                attn_v: l.matrix(&n("attn_v.weight"), n_embd, n_kv)?,
                attn_output: l.matrix(&n("attn_output.weight"), n_q, n_embd)?,
                attn_q_bias: bias("attn_q.bias", n_q)?,
                attn_k_bias: bias("attn_k.bias", n_kv)?,
                attn_v_bias: bias("attn_v.bias", n_kv)?,
                ffn_norm: l.vector(&n("ffn_norm.weight"), n_embd)?,
                ffn_gate: l.matrix(&n("ffn_gate.weight"), n_embd, n_ff)?,
                ffn_up: l.matrix(&n("ffn_up.weight"), n_embd, n_ff)?,
                ffn_down: l.matrix(&n("ffn_down.weight"), n_ff, n_embd)?,
            });
        }
        let output = if file.tensor("output.weight").is_some() {
            Some(l.matrix("output.weight", n_embd, hp.n_vocab)?)
        } else {
            None
        };
        let token_embd = if output.is_none() {
            // Tied: token_embd is also the output projection, so it must support matmul too.
            l.matrix("token_embd.weight", n_embd, hp.n_vocab)?
        } else {
            l.embedding("token_embd.weight", n_embd, hp.n_vocab)?
        };
        let rope_freqs = if file.tensor("rope_freqs.weight").is_some() {
            Some(l.host_vector("rope_freqs.weight", hp.n_rot / 2)?)
        } else {
            None
        };
        Ok(Weights {
            token_embd,
            layers,
            output_norm: l.vector("output_norm.weight", n_embd)?,
            output,
            rope_freqs,
        })
    }

    /// The output projection (`output.weight`, or `token_embd.weight` when tied).
    pub fn output(&self) -> &B::Weight<'a> {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }
}
