//! Reading a [`Vocab`] and the chat template from GGUF metadata (`tokenizer.ggml.*`).

use super::{ChatTemplate, TokenType, Tokenizer, TokenizerError, Vocab};
use crate::gguf::{GgufFile, MetaArray, MetaValue};

impl Vocab {
    /// The vocabulary of a GGUF file. Missing optional keys stay `None`/empty (llama.cpp's
    /// defaults apply in [`Tokenizer::from_vocab`]); present keys of the wrong type are errors.
    pub fn from_gguf(f: &GgufFile) -> Result<Vocab, TokenizerError> {
        let id = |key: &str| f.u32_opt(key);
        let token_types = match f.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(MetaValue::Array(a)) => int_array(a)
                .ok_or_else(|| {
                    TokenizerError::Metadata(format!(
                        "tokenizer.ggml.token_type: expected an integer array, found {}",
                        a.type_name()
                    ))
                })?
                .into_iter()
                .map(TokenType::from_i32)
                .collect(),
            Some(v) => {
                return Err(TokenizerError::Metadata(format!(
                    "tokenizer.ggml.token_type: expected an array, found {}",
                    v.type_name()
                )))
            }
        };
        let scores = match f.get("tokenizer.ggml.scores") {
            None => Vec::new(),
            Some(_) => f.f32_array("tokenizer.ggml.scores")?.to_vec(),
        };
        let merges = match f.get("tokenizer.ggml.merges") {
            None => Vec::new(),
            Some(_) => f.str_array("tokenizer.ggml.merges")?.to_vec(),
        };
        let model = f.str("tokenizer.ggml.model")?.to_string();
        if model == "gpt2" && merges.is_empty() {
            return Err(TokenizerError::Metadata(
                "gpt2 tokenizer without tokenizer.ggml.merges".into(),
            ));
        }
        Ok(Vocab {
            model,
            pre: f.str_opt("tokenizer.ggml.pre")?.map(str::to_string),
            tokens: f.str_array("tokenizer.ggml.tokens")?.to_vec(),
            token_types,
            scores,
            merges,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            fim_pad: id("tokenizer.ggml.fim_pad_token_id")?,
            fim_rep: id("tokenizer.ggml.fim_rep_token_id")?,
            fim_sep: id("tokenizer.ggml.fim_sep_token_id")?,
            add_bos: f.bool_opt("tokenizer.ggml.add_bos_token")?,
            add_eos: f.bool_opt("tokenizer.ggml.add_eos_token")?,
            add_space_prefix: f.bool_opt("tokenizer.ggml.add_space_prefix")?,
        })
    }
}

/// Token types are i32 in files written by llama.cpp's converter; accept any integer array.
fn int_array(a: &MetaArray) -> Option<Vec<i32>> {
    fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> i64) -> Vec<i32> {
        v.iter().map(|&x| i32::try_from(f(x)).unwrap_or(0)).collect()
    }
    Some(match a {
        MetaArray::I32(v) => v.clone(),
        MetaArray::U32(v) => conv(v, i64::from),
        MetaArray::I8(v) => conv(v, i64::from),
        MetaArray::U8(v) => conv(v, i64::from),
        MetaArray::I16(v) => conv(v, i64::from),
        MetaArray::U16(v) => conv(v, i64::from),
        MetaArray::I64(v) => conv(v, |x| x),
        MetaArray::U64(v) => conv(v, |x| i64::try_from(x).unwrap_or(0)),
        _ => return None,
    })
}

impl Tokenizer {
    /// The tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_vocab(Vocab::from_gguf(f)?)
    }
}

impl ChatTemplate {
    /// The file's `tokenizer.chat_template`, with BOS/EOS texts from `tok`; `Ok(None)` when the
    /// file has no template.
    pub fn from_gguf(
        f: &GgufFile,
        tok: &Tokenizer,
    ) -> Result<Option<ChatTemplate>, TokenizerError> {
        let Some(src) = f.str_opt("tokenizer.chat_template")? else {
            return Ok(None);
        };
        let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or("").to_string();
        ChatTemplate::new(src, &text(tok.bos()), &text(tok.eos())).map(Some)
    }
}
