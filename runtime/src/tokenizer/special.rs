//! Splitting special tokens out of the text before the tokenizer model sees it (llama.cpp's
//! `tokenizer_st_partition`).
//!
//! Special tokens are tried longest first; each one is cut out of every text fragment left by the
//! longer ones, at every (non-overlapping, leftmost-first) occurrence. Control and unknown tokens
//! take part only with `parse_special`; user-defined tokens always do (as in Hugging Face
//! tokenizers: `<tool_call>` in Qwen2.5 is one token even in plain text).

use std::ops::Range;

use super::TokenType;

/// A piece of the input: text still to tokenize (byte range) or an already chosen token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frag {
    Text(Range<usize>),
    Token(u32),
}

/// `specials`: (id, text, type), sorted by text length, longest first.
pub(crate) fn partition(
    text: &str,
    specials: &[(u32, String, TokenType)],
    parse_special: bool,
) -> Vec<Frag> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Frag::Text(0..text.len()));
    let mut next = Vec::new();
    for (id, tok, ty) in specials {
        if !parse_special && matches!(ty, TokenType::Control | TokenType::Unknown) {
            continue;
        }
        if tok.is_empty() || !text.contains(tok.as_str()) {
            continue;
        }
        next.clear();
        for f in &frags {
            let Frag::Text(r) = f else {
                next.push(f.clone());
                continue;
            };
            let mut start = r.start;
            for (i, _) in text[r.clone()].match_indices(tok.as_str()) {
                let at = r.start + i;
                if at > start {
                    next.push(Frag::Text(start..at));
                }
                next.push(Frag::Token(*id));
                start = at + tok.len();
            }
            if start < r.end {
                next.push(Frag::Text(start..r.end));
            }
        }
        std::mem::swap(&mut frags, &mut next);
    }
    frags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_and_user_defined_always() {
        let sp = vec![
            (7, "<|im_start|>".to_string(), TokenType::Control),
            (8, "<tool>".to_string(), TokenType::UserDefined),
            (9, "<|im".to_string(), TokenType::Control),
        ];
        let t = "a<|im_start|>b<tool><|im";
        assert_eq!(
            partition(t, &sp, true),
            [Frag::Text(0..1), Frag::Token(7), Frag::Text(13..14), Frag::Token(8), Frag::Token(9)]
        );
        assert_eq!(
            partition(t, &sp, false),
            [Frag::Text(0..14), Frag::Token(8), Frag::Text(20..24)]
        );
        assert!(partition("", &sp, true).is_empty());
    }
}
