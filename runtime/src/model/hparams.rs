//! Model hyper-parameters read from GGUF metadata (`{arch}.*` keys, ggml names).

use super::ModelError;
use crate::gguf::GgufFile;

/// The architectures weft can run. qwen2 is llama's graph plus Q/K/V biases and NeoX RoPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    /// The architecture named by `general.architecture`, or an error naming it.
    pub fn parse(name: &str) -> Result<Arch, ModelError> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            other => Err(ModelError::UnsupportedArch(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// Hyper-parameters of a decoder-only transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    pub arch: Arch,
    /// `{arch}.block_count`
    pub n_layer: usize,
    /// `{arch}.embedding_length`
    pub n_embd: usize,
    /// `{arch}.feed_forward_length`
    pub n_ff: usize,
    /// `{arch}.attention.head_count`
    pub n_head: usize,
    /// `{arch}.attention.head_count_kv` (defaults to n_head: no GQA)
    pub n_head_kv: usize,
    /// `{arch}.attention.key_length` (defaults to n_embd / n_head)
    pub head_dim: usize,
    /// `{arch}.rope.dimension_count` (defaults to head_dim)
    pub n_rot: usize,
    /// `{arch}.rope.freq_base` (defaults to 10000)
    pub rope_freq_base: f32,
    /// 1 / `{arch}.rope.scaling.factor` for linear scaling, else 1
    pub rope_freq_scale: f32,
    /// `{arch}.attention.layer_norm_rms_epsilon`
    pub norm_eps: f32,
    /// `{arch}.context_length`: the context the model was trained for
    pub n_ctx_train: usize,
    /// `{arch}.vocab_size`, else the tokenizer's token count, else token_embd's rows
    pub n_vocab: usize,
}

impl HParams {
    pub fn from_gguf(f: &GgufFile) -> Result<HParams, ModelError> {
        let arch_name = f.architecture().ok_or(ModelError::NoArch)?;
        let arch = Arch::parse(arch_name)?;
        let n_layer = f.u32("{arch}.block_count")? as usize;
        let n_embd = f.u32("{arch}.embedding_length")? as usize;
        let n_ff = f.u32("{arch}.feed_forward_length")? as usize;
        let n_head = f.u32("{arch}.attention.head_count")? as usize;
        let n_head_kv = f.u32_opt("{arch}.attention.head_count_kv")?.map_or(n_head, |v| v as usize);
        if n_head == 0 || n_head_kv == 0 || !n_head.is_multiple_of(n_head_kv) {
            return Err(ModelError::BadHParams(format!(
                "head_count {n_head} is not a positive multiple of head_count_kv {n_head_kv}"
            )));
        }
        let head_dim = match f.u32_opt("{arch}.attention.key_length")? {
            Some(v) => v as usize,
            None => n_embd / n_head,
        };
        if let Some(vl) = f.u32_opt("{arch}.attention.value_length")? {
            if vl as usize != head_dim {
                return Err(ModelError::BadHParams(format!(
                    "value_length {vl} differs from key_length {head_dim}"
                )));
            }
        }
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(ModelError::BadHParams(format!("head dim {head_dim} is not even")));
        }
        let n_rot = f.u32_opt("{arch}.rope.dimension_count")?.map_or(head_dim, |v| v as usize);
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(ModelError::BadHParams(format!(
                "rope.dimension_count {n_rot} invalid for head dim {head_dim}"
            )));
        }
        let rope_freq_base = f.f32_opt("{arch}.rope.freq_base")?.unwrap_or(10000.0);
        let rope_freq_scale = match f.str_opt("{arch}.rope.scaling.type")? {
            None | Some("none") => 1.0,
            Some("linear") => {
                let factor = f.f32_opt("{arch}.rope.scaling.factor")?.unwrap_or(1.0);
                if factor > 0.0 {
                    1.0 / factor
                } else {
                    1.0
                }
            }
            Some(other) => {
                return Err(ModelError::BadHParams(format!(
                    "rope scaling type '{other}' is not supported"
                )))
            }
        };
        let norm_eps = f.f32("{arch}.attention.layer_norm_rms_epsilon")?;
        let n_ctx_train = f.u32_opt("{arch}.context_length")?.map_or(2048, |v| v as usize);
        let n_vocab = match f.u32_opt("{arch}.vocab_size")? {
            Some(v) => v as usize,
            None => match f.str_array("tokenizer.ggml.tokens") {
                Ok(t) => t.len(),
                Err(_) => f
                    .tensor("token_embd.weight")
                    .map(|t| t.rows() as usize)
                    .ok_or_else(|| ModelError::MissingTensor("token_embd.weight".into()))?,
            },
        };
        if n_layer == 0 || n_embd == 0 || n_ff == 0 || n_vocab == 0 {
            return Err(ModelError::BadHParams(format!(
                "zero size: n_layer {n_layer}, n_embd {n_embd}, n_ff {n_ff}, n_vocab {n_vocab}"
            )));
        }
        Ok(HParams {
            arch,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rope_freq_base,
            rope_freq_scale,
            norm_eps,
            n_ctx_train,
            n_vocab,
        })
    }

    /// Width of one token's K (or V) row across KV heads.
    pub fn n_embd_kv(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Width of one token's Q row (and of the attention output) across heads.
    pub fn n_embd_q(&self) -> usize {
        self.n_head * self.head_dim
    }
}
