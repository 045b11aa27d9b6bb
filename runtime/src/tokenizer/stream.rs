//! Incremental detokenization for streaming output: a token may end in the middle of a UTF-8
//! character (byte tokens, or BPE tokens that split a CJK character or an emoji), so bytes are
//! held back until the character is complete.

use super::Tokenizer;

/// Turns generated token ids into text pieces that are always whole UTF-8 characters.
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    // u8 [pending]: bytes of an incomplete UTF-8 character
    pending: Vec<u8>,
    first: bool,
    skip_control: bool,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder that renders every token, control tokens as their text (like `decode`).
    pub fn new(tok: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder { tok, pending: Vec::new(), first: true, skip_control: false }
    }

    /// Leave control tokens (`<|im_end|>` ...) out of the text, as a chat front end does.
    pub fn skip_control(mut self, skip: bool) -> StreamDecoder<'a> {
        self.skip_control = skip;
        self
    }

    /// Text completed by token `id`: whole characters only (possibly empty). Bytes that can
    /// never become valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, id: u32) -> String {
        if self.skip_control && self.tok.is_control(id) {
            return String::new();
        }
        let mut piece = self.tok.token_to_piece(id);
        // the SentencePiece space prefix of the first token, as `decode` drops it
        if self.first && self.tok.add_space_prefix && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        self.first = false;
        self.pending.extend_from_slice(piece);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // valid_up_to bytes are valid UTF-8 by definition
                    out.push_str(&String::from_utf8_lossy(&rest[..good]));
                    match e.error_len() {
                        // an incomplete character at the end: wait for more bytes
                        None => {
                            rest = &rest[good..];
                            break;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &rest[good + n..];
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }

    /// What is still held back (an incomplete character at the end of the stream), lossily.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}
