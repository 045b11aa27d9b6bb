//! Tokenizers built from GGUF metadata, with llama.cpp's exact results, and chat templates.
//!
//! - byte-level BPE (`tokenizer.ggml.model = gpt2`) with the pre-tokenizer named by
//!   `tokenizer.ggml.pre` ([`pretok`]), merges by rank ([`bpe`]);
//! - SentencePiece-style BPE (`llama`) with byte fallback ([`spm`]);
//! - special tokens split out first ([`special`]), BOS/EOS as the metadata asks;
//! - detokenization ([`Tokenizer::decode`], [`StreamDecoder`]) and chat templates ([`ChatTemplate`]).
//!
//! The algorithms work on a plain [`Vocab`]; [`Tokenizer::from_gguf`] only reads one from a file.

mod bpe;
mod chat;
mod gguf_vocab;
mod pretok;
mod special;
mod spm;
mod stream;
mod unicode;
mod unicode_table;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

pub use chat::{ChatMessage, ChatTemplate};
pub use stream::StreamDecoder;

use bpe::{BpeModel, BpeWork};
use pretok::{Splitter, Stage};
use special::Frag;

/// Errors building a tokenizer or using one.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("unsupported tokenizer model '{0}' (tokenizer.ggml.model; supported: gpt2, llama)")]
    UnsupportedModel(String),
    #[error("unsupported BPE pre-tokenizer '{0}' (tokenizer.ggml.pre)")]
    UnsupportedPre(String),
    #[error("tokenizer metadata: {0}")]
    Metadata(String),
    #[error("the model asks for a {0} token but has none")]
    MissingSpecial(&'static str),
    #[error("chat template: {0}")]
    Template(String),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Undefined,
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// From the GGUF integer; unknown values are `Undefined`, as in llama.cpp.
    pub fn from_i32(v: i32) -> TokenType {
        match v {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }
}

/// A tokenizer's definition as plain data: what the `tokenizer.ggml.*` keys hold.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre` (BPE only); `None`: llama.cpp's "default" regexes.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// One per token; empty: all normal.
    pub token_types: Vec<TokenType>,
    /// One per token (SentencePiece merge priority); empty: all 0.
    pub scores: Vec<f32>,
    /// "left right" strings in rank order (BPE).
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub pad: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_space_prefix: Option<bool>,
}

enum Model {
    // boxed: the BPE model carries a 1 KB byte table
    Bpe { bpe: Box<BpeModel>, stages: &'static [Stage] },
    Spm,
}

/// A tokenizer: text <-> token ids with `llama_tokenize` / `llama_detokenize` semantics.
pub struct Tokenizer {
    model: Model,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    scores: Vec<f32>,
    token_to_id: HashMap<String, u32, FxBuild>,
    /// (id, text, type) of control, user-defined and unknown tokens, longest text first
    specials: Vec<(u32, String, TokenType)>,
    /// bytes of every token's piece, concatenated; `piece_offs[id]..piece_offs[id + 1]`
    pieces: Vec<u8>,
    piece_offs: Vec<usize>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    eog: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// llama.cpp's `clean_up_tokenization_spaces` passes in detokenize (pre-tokenizer dependent).
    clean_spaces: bool,
}

impl Tokenizer {
    /// Builds a tokenizer from plain vocabulary data, with llama.cpp's defaults and fix-ups.
    pub fn from_vocab(v: Vocab) -> Result<Tokenizer, TokenizerError> {
        let n = v.tokens.len();
        if n == 0 {
            return Err(TokenizerError::Metadata("empty token list".into()));
        }
        if n >= u32::MAX as usize - 2 {
            return Err(TokenizerError::Metadata(format!("{n} tokens")));
        }
        if !v.token_types.is_empty() && v.token_types.len() != n {
            return Err(TokenizerError::Metadata(format!(
                "{} token types for {n} tokens",
                v.token_types.len()
            )));
        }
        if !v.scores.is_empty() && v.scores.len() != n {
            return Err(TokenizerError::Metadata(format!(
                "{} scores for {n} tokens",
                v.scores.len()
            )));
        }
        let is_bpe = match v.model.as_str() {
            "gpt2" => true,
            "llama" => false,
            m => return Err(TokenizerError::UnsupportedModel(m.to_string())),
        };
        let mut tokens = v.tokens;
        for (i, t) in tokens.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }
        let mut types =
            if v.token_types.is_empty() { vec![TokenType::Normal; n] } else { v.token_types };
        let scores = if v.scores.is_empty() { vec![0.0; n] } else { v.scores };
        let mut token_to_id: HashMap<String, u32, FxBuild> =
            HashMap::with_capacity_and_hasher(n, FxBuild::default());
        for (i, t) in tokens.iter().enumerate() {
            // a duplicated text maps to its last id, as in llama.cpp
            token_to_id.insert(t.clone(), i as u32);
        }
        let valid = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        // llama.cpp's per-model defaults, then the metadata (ids out of range are ignored)
        let (def_bos, def_eos, def_unk) = if is_bpe { (11, 11, None) } else { (1, 2, Some(0)) };
        let bos = valid(v.bos).or(valid(Some(def_bos)));
        let eos = valid(v.eos).or(valid(Some(def_eos)));
        let unk = valid(v.unk).or(valid(def_unk));
        let pad = valid(v.pad);
        let pre = v.pre.unwrap_or_default();
        let mut add_bos = !is_bpe;
        let mut clean_spaces = is_bpe;
        let mut ignore_merges = false;
        let model_stages = if is_bpe {
            let stages = pretok::stages_for(&pre)
                .ok_or_else(|| TokenizerError::UnsupportedPre(pre.clone()))?;
            match pre.as_str() {
                "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => {
                    ignore_merges = true;
                    add_bos = true;
                }
                "qwen2" | "deepseek-r1-qwen" | "command-r" | "smollm" => clean_spaces = false,
                _ => {}
            }
            Some(stages)
        } else {
            None
        };
        let add_bos = v.add_bos.unwrap_or(add_bos);
        let add_eos = v.add_eos.unwrap_or(false);
        let add_space_prefix = v.add_space_prefix.unwrap_or(!is_bpe);

        // End-of-generation tokens, found by text as llama.cpp does; those found get the
        // control type (some converters mark them normal), which also makes them special.
        let find = |names: &[&str]| names.iter().filter_map(|s| token_to_id.get(*s).copied()).min();
        let eot = valid(v.eot).or_else(|| {
            find(&[
                "<|eot_id|>",
                "<|im_end|>",
                "<|end|>",
                "<end_of_turn>",
                "<|endoftext|>",
                "<EOT>",
                "<｜end▁of▁sentence｜>",
            ])
        });
        let eom = valid(v.eom).or_else(|| find(&["<|eom_id|>"]));
        let fim_pad = valid(v.fim_pad).or_else(|| find(&["<|fim_pad|>", "<fim-pad>", "<PAD>"]));
        let fim_rep = valid(v.fim_rep)
            .or_else(|| find(&["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"]));
        let fim_sep = valid(v.fim_sep).or_else(|| find(&["<|file_sep|>"]));
        let fim_others = [
            find(&["<|fim_prefix|>", "<fim-prefix>", "<｜fim▁begin｜>", "<PRE>"]),
            find(&["<|fim_suffix|>", "<fim-suffix>", "<｜fim▁hole｜>", "<SUF>"]),
            find(&["<|fim_middle|>", "<fim-middle>", "<｜fim▁end｜>", "<MID>"]),
        ];
        let mut eog: Vec<u32> = Vec::new();
        for name in [
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|eom_id|>",
            "<EOT>",
        ] {
            if let Some(&id) = token_to_id.get(name) {
                eog.push(id);
            }
        }
        // ids given by the metadata keep their type; llama.cpp retypes only the ones it found
        let found = [
            eot.filter(|_| valid(v.eot).is_none()),
            eom.filter(|_| valid(v.eom).is_none()),
            fim_pad.filter(|_| valid(v.fim_pad).is_none()),
            fim_rep.filter(|_| valid(v.fim_rep).is_none()),
            fim_sep.filter(|_| valid(v.fim_sep).is_none()),
        ];
        for id in found.into_iter().chain(fim_others).flatten().chain(eog.iter().copied()) {
            types[id as usize] = TokenType::Control;
        }
        eog.extend([fim_pad, fim_rep, fim_sep, eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        let mut specials: Vec<(u32, String, TokenType)> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                matches!(t, TokenType::Control | TokenType::UserDefined | TokenType::Unknown)
            })
            .map(|(i, &t)| (i as u32, tokens[i].clone(), t))
            .collect();
        specials.sort_by_key(|s| std::cmp::Reverse(s.1.len()));

        let model = match model_stages {
            Some(stages) => Model::Bpe {
                bpe: Box::new(BpeModel::new(&v.merges, &token_to_id, ignore_merges)),
                stages,
            },
            None => Model::Spm,
        };
        let mut tok = Tokenizer {
            model,
            tokens,
            types,
            scores,
            token_to_id,
            specials,
            pieces: Vec::new(),
            piece_offs: Vec::new(),
            bos,
            eos,
            unk,
            pad,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces,
        };
        tok.build_pieces();
        Ok(tok)
    }

    /// Detokenized bytes of every token, with special tokens rendered as their text
    /// (llama.cpp's `token_to_piece(special = true)` cache).
    fn build_pieces(&mut self) {
        let mut pieces = Vec::new();
        let mut offs = Vec::with_capacity(self.tokens.len() + 1);
        offs.push(0);
        let is_bpe = matches!(self.model, Model::Bpe { .. });
        for (text, &ty) in self.tokens.iter().zip(&self.types) {
            match ty {
                TokenType::Control | TokenType::Unknown | TokenType::UserDefined => {
                    pieces.extend_from_slice(text.as_bytes())
                }
                TokenType::Normal if is_bpe => {
                    for c in text.chars() {
                        match unicode::char_to_byte(c) {
                            Some(b) => pieces.push(b),
                            None => {
                                // llama.cpp's marker for a character outside GPT-2's byte map
                                pieces.extend_from_slice(b"[UNK_BYTE_0x");
                                let mut buf = [0u8; 4];
                                for b in c.encode_utf8(&mut buf).bytes() {
                                    pieces.extend_from_slice(format!("{b:02x}").as_bytes());
                                }
                                pieces.extend_from_slice(text.as_bytes());
                                pieces.push(b']');
                            }
                        }
                    }
                }
                TokenType::Normal => pieces.extend_from_slice(text.replace('▁', " ").as_bytes()),
                TokenType::Byte if !is_bpe => {
                    // "<0xNN>"; llama.cpp parses characters 3..5 with strtol (0 if not hex)
                    let b = text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok());
                    pieces.push(b.unwrap_or(0));
                }
                _ => {}
            }
            offs.push(pieces.len());
        }
        self.pieces = pieces;
        self.piece_offs = offs;
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    /// The unknown token (SentencePiece vocabularies; llama.cpp's default id 0 there).
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    /// The padding token, when the metadata names one.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    /// End of generation: EOS, end-of-turn and the like (`<|im_end|>`, `<|endoftext|>` ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
    /// The end-of-generation tokens, ascending.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }
    /// Control or unknown token: what a chat front end hides when printing.
    pub fn is_control(&self, id: u32) -> bool {
        matches!(self.token_type(id), Some(TokenType::Control | TokenType::Unknown))
    }
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }
    /// The vocabulary string of a token (GPT-2 byte characters / "▁" as stored).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }
    /// Id of an exact vocabulary string.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }
    /// Merges of `tokenizer.ggml.merges` left out because a half or the result is not a token
    /// (0 for sound vocabularies; such merges could only produce non-tokens in llama.cpp).
    pub fn n_skipped_merges(&self) -> usize {
        match &self.model {
            Model::Bpe { bpe, .. } => bpe.n_skipped_merges,
            Model::Spm => 0,
        }
    }
    /// SentencePiece score of a token (0 for BPE vocabularies).
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// Bytes of one token (special tokens as their text); empty for unknown ids.
    pub fn token_to_piece(&self, id: u32) -> &[u8] {
        let i = id as usize;
        if i >= self.tokens.len() {
            return &[];
        }
        &self.pieces[self.piece_offs[i]..self.piece_offs[i + 1]]
    }

    /// Text of `ids` (special tokens rendered), with llama.cpp's `llama_detokenize` rules: the
    /// SentencePiece leading space removed, and for some BPE pre-tokenizers the
    /// `clean_up_tokenization_spaces` passes. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            let mut p = self.token_to_piece(id);
            if k == 0 && self.add_space_prefix && p.first() == Some(&b' ') {
                p = &p[1..];
            }
            bytes.extend_from_slice(p);
        }
        if self.clean_spaces {
            clean_up_spaces(&mut bytes);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// Token ids of `text`, as `llama_tokenize(text, add_special, parse_special)`.
    ///
    /// `add_special`: BOS/EOS where the model asks for them. `parse_special`: text spelling a
    /// control token becomes that token (else it is plain text; user-defined tokens are split
    /// out either way).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let frags = special::partition(text, &self.specials, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.add_bos {
            out.push(self.bos.ok_or(TokenizerError::MissingSpecial("BOS"))?);
        }
        match &self.model {
            Model::Bpe { bpe, stages } => self.encode_bpe(text, &frags, bpe, stages, &mut out),
            Model::Spm => self.encode_spm(text, &frags, &mut out),
        }
        if add_special && self.add_eos {
            out.push(self.eos.ok_or(TokenizerError::MissingSpecial("EOS"))?);
        }
        Ok(out)
    }

    fn encode_bpe(
        &self,
        text: &str,
        frags: &[Frag],
        bpe: &BpeModel,
        stages: &[Stage],
        out: &mut Vec<u32>,
    ) {
        let mut splitter = Splitter::default();
        let mut work = BpeWork::default();
        let mut words: Vec<Range<usize>> = Vec::new();
        // Words repeat a lot in real text: (word bytes) -> range of `cached` holding its ids.
        let mut cache: HashMap<&[u8], (u32, u32), FxBuild> = HashMap::default();
        let mut cached: Vec<u32> = Vec::new();
        for f in frags {
            let r = match f {
                Frag::Token(id) => {
                    out.push(*id);
                    continue;
                }
                Frag::Text(r) => r.clone(),
            };
            let frag = &text[r.clone()];
            words.clear();
            splitter.split(frag, stages, &mut words);
            for w in &words {
                let word = &frag.as_bytes()[w.clone()];
                if let Some(&(s, e)) = cache.get(word) {
                    out.extend_from_slice(&cached[s as usize..e as usize]);
                    continue;
                }
                let s = out.len();
                bpe.encode_word(word, &self.token_to_id, &mut work, out);
                if word.len() > 1 && cached.len() < u32::MAX as usize / 2 {
                    let cs = cached.len() as u32;
                    cached.extend_from_slice(&out[s..]);
                    cache.insert(word, (cs, cached.len() as u32));
                }
            }
        }
    }

    fn encode_spm(&self, text: &str, frags: &[Frag], out: &mut Vec<u32>) {
        let byte_token = |b: u8| {
            let hex = format!("<0x{b:02X}>");
            self.token_to_id
                .get(hex.as_str())
                .or_else(|| std::str::from_utf8(&[b]).ok().and_then(|s| self.token_to_id.get(s)))
                .copied()
        };
        // a space is prefixed to the first text and to text right after a special token
        let mut prev_special = true;
        for f in frags {
            match f {
                Frag::Token(id) => {
                    out.push(*id);
                    prev_special = true;
                }
                Frag::Text(r) => {
                    let mut s = String::with_capacity(r.len() + 3);
                    if self.add_space_prefix && prev_special {
                        s.push('▁');
                    }
                    for c in text[r.clone()].chars() {
                        s.push(if c == ' ' { '▁' } else { c });
                    }
                    spm::encode(&s, &self.token_to_id, &self.scores, byte_token, out);
                    prev_special = false;
                }
            }
        }
    }
}

/// llama.cpp's three clean-up passes over detokenized text: drop the space before `?!.,`, around
/// a lone `'`, and before the contractions `'s 'm 're 've`.
fn clean_up_spaces(t: &mut Vec<u8>) {
    if t.is_empty() {
        return;
    }
    let mut o = 1;
    for i in 1..t.len() {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            o -= 1;
        }
        t[o] = x;
        o += 1;
    }
    t.truncate(o);
    let mut o = 1;
    let mut i = 1;
    while i < t.len() {
        let x = t[i];
        if x == b'\'' && i + 1 < t.len() && t[i - 1] == b' ' && t[i + 1] == b' ' {
            o -= 1;
            t[o] = x;
            o += 1;
            // the space after is dropped too; llama.cpp zeroes it, which the next step reads
            t[i + 1] = 0;
            i += 2;
            continue;
        }
        t[o] = x;
        o += 1;
        i += 1;
    }
    t.truncate(o);
    let mut o = 1;
    for i in 1..t.len() {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < t.len() {
            let x1 = t[i + 1];
            let x2 = t.get(i + 2).copied();
            if matches!(x1, b's' | b'm')
                || (i + 2 < t.len() && matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))))
            {
                o -= 1;
            }
        }
        t[o] = x;
        o += 1;
    }
    t.truncate(o);
}

/// FxHash (rustc's hasher): token ids and short strings hash several times faster than with
/// SipHash, and the keys are not attacker-chosen in a way that matters for a local tokenizer.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut c = bytes.chunks_exact(8);
        for w in &mut c {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            self.add(u64::from_le_bytes(a));
        }
        let r = c.remainder();
        if !r.is_empty() {
            let mut a = [0u8; 8];
            a[..r.len()].copy_from_slice(r);
            self.add(u64::from_le_bytes(a) ^ ((r.len() as u64) << 59));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

#[cfg(test)]
mod tests;
