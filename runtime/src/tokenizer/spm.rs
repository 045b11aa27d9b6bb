//! SentencePiece-style BPE (`tokenizer.ggml.model = llama`): Llama 2, Mistral, Gemma vocabularies.
//!
//! llama.cpp's algorithm: spaces become "▁", the text is split into UTF-8 characters, and the
//! adjacent pair whose concatenation is the token with the highest score is merged (leftmost on
//! ties) until no pair forms a token. A symbol that is not a token falls back to its bytes as
//! `<0xNN>` tokens.

use std::collections::{BinaryHeap, HashMap};

use super::FxBuild;

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Sym {
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

/// A candidate merge, ordered so that the max-heap pops the best score, then the leftmost.
#[derive(PartialEq)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl Eq for Bigram {}
impl Ord for Bigram {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&o.score).then(o.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// Tokenizes `text` (whitespace already escaped to "▁"); appends ids to `out`.
/// `byte_token(b)` gives the fallback token of a byte (`None`: the byte is dropped).
pub(crate) fn encode(
    text: &str,
    token_to_id: &HashMap<String, u32, FxBuild>,
    scores: &[f32],
    byte_token: impl Fn(u8) -> Option<u32>,
    out: &mut Vec<u32>,
) {
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    let n_chars = text.chars().count();
    for (i, (off, c)) in text.char_indices().enumerate() {
        syms.push(Sym {
            start: off as u32,
            len: c.len_utf8() as u32,
            prev: (i as u32).wrapping_sub(1),
            next: if i + 1 < n_chars { i as u32 + 1 } else { NONE },
        });
    }
    if syms.is_empty() {
        return;
    }
    let lookup = |syms: &[Sym], l: u32, r: u32| -> Option<(u32, u32)> {
        let (a, b) = (syms[l as usize], syms[r as usize]);
        let s = &text[a.start as usize..(a.start + a.len + b.len) as usize];
        token_to_id.get(s).map(|&id| (id, a.len + b.len))
    };
    let mut heap = BinaryHeap::new();
    let push = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: u32, r: u32| {
        if l == NONE || r == NONE {
            return;
        }
        if let Some((id, size)) = lookup(syms, l, r) {
            let score = scores.get(id as usize).copied().unwrap_or(0.0);
            heap.push(Bigram { score, left: l, right: r, size });
        }
    };
    for i in 1..syms.len() as u32 {
        push(&mut heap, &syms, i - 1, i);
    }
    while let Some(bg) = heap.pop() {
        let (l, r) = (bg.left as usize, bg.right as usize);
        // Stale: a half was merged away or grew since the pair was queued.
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != bg.size {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        let next = syms[r].next;
        syms[l].next = next;
        if next != NONE {
            syms[next as usize].prev = bg.left;
        }
        push(&mut heap, &syms, syms[l].prev, bg.left);
        push(&mut heap, &syms, bg.left, next);
    }
    let mut i = 0u32;
    while i != NONE {
        let s = syms[i as usize];
        let piece = &text[s.start as usize..(s.start + s.len) as usize];
        match token_to_id.get(piece) {
            Some(&id) => out.push(id),
            None => out.extend(piece.bytes().filter_map(&byte_token)),
        }
        i = s.next;
    }
}
