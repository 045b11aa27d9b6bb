//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): merges by rank within each pre-tokenized word.
//!
//! llama.cpp merges strings; here every symbol is a token id and the merge table is keyed by
//! id pairs, which is equivalent whenever both halves and the result of a merge are tokens (true
//! of every real vocabulary; `BpeModel::new` counts the merges where it is not and skips them).
//! Order of merges: the lowest rank first, among equal ranks the leftmost (llama.cpp's queue
//! order), so results are identical.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::unicode::byte_to_char;
use super::FxBuild;

/// Token id of "no token": a symbol that never merges.
const NO_TOKEN: u32 = u32::MAX;

pub(crate) struct BpeModel {
    /// (left id, right id) -> (rank, merged id)
    merges: HashMap<(u32, u32), (u32, u32), FxBuild>,
    /// token id of each byte's GPT-2 character, or NO_TOKEN
    byte_ids: [u32; 256],
    /// llama3/tekken: a word that is itself a token is emitted whole, unmerged.
    ignore_merges: bool,
    /// merges skipped because a half or the result is not a token
    pub n_skipped_merges: usize,
}

impl BpeModel {
    pub fn new(
        merges: &[String],
        token_to_id: &HashMap<String, u32, FxBuild>,
        ignore_merges: bool,
    ) -> BpeModel {
        let mut table: HashMap<(u32, u32), (u32, u32), FxBuild> =
            HashMap::with_capacity_and_hasher(merges.len(), FxBuild::default());
        let mut n_skipped = 0;
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte (GPT-2 characters never
            // contain a raw space; a space byte is always a char boundary).
            let sp = m.as_bytes().iter().skip(1).position(|&b| b == b' ').map(|i| i + 1);
            let Some(sp) = sp else {
                n_skipped += 1;
                continue;
            };
            let (a, b) = (&m[..sp], &m[sp + 1..]);
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            match (token_to_id.get(a), token_to_id.get(b), token_to_id.get(joined.as_str())) {
                (Some(&ia), Some(&ib), Some(&iab)) => {
                    // the first rank of a duplicated merge wins, as with llama.cpp's emplace
                    table.entry((ia, ib)).or_insert((rank as u32, iab));
                }
                _ => n_skipped += 1,
            }
        }
        let mut byte_ids = [NO_TOKEN; 256];
        let mut buf = [0u8; 4];
        for (b, id) in byte_ids.iter_mut().enumerate() {
            let s = byte_to_char(b as u8).encode_utf8(&mut buf);
            if let Some(&t) = token_to_id.get(&*s) {
                *id = t;
            }
        }
        BpeModel { merges: table, byte_ids, ignore_merges, n_skipped_merges: n_skipped }
    }

    /// Appends the tokens of one word (raw bytes, before the byte -> character mapping).
    pub fn encode_word(
        &self,
        word: &[u8],
        token_to_id: &HashMap<String, u32, FxBuild>,
        ws: &mut BpeWork,
        out: &mut Vec<u32>,
    ) {
        if self.ignore_merges {
            ws.text.clear();
            ws.text.extend(word.iter().map(|&b| byte_to_char(b)));
            if let Some(&id) = token_to_id.get(ws.text.as_str()) {
                out.push(id);
                return;
            }
        }
        if word.len() == 1 {
            if self.byte_ids[word[0] as usize] != NO_TOKEN {
                out.push(self.byte_ids[word[0] as usize]);
            }
            return;
        }
        let syms = &mut ws.syms;
        syms.clear();
        let n = word.len();
        for (i, &b) in word.iter().enumerate() {
            syms.push(Sym {
                id: self.byte_ids[b as usize],
                prev: i.wrapping_sub(1) as u32,
                next: if i + 1 < n { i as u32 + 1 } else { NONE },
            });
        }
        let heap = &mut ws.heap;
        heap.clear();
        for i in 0..n - 1 {
            self.push_pair(syms, heap, i as u32, i as u32 + 1);
        }
        while let Some(Reverse((_, left, right, left_id, right_id))) = heap.pop() {
            let (l, r) = (left as usize, right as usize);
            // Stale entries: a half was merged away or changed since the pair was queued.
            if syms[l].id != left_id || syms[r].id != right_id || syms[l].next != right {
                continue;
            }
            let Some(&(_, merged)) = self.merges.get(&(left_id, right_id)) else {
                continue;
            };
            syms[l].id = merged;
            syms[r].id = DEAD;
            let next = syms[r].next;
            syms[l].next = next;
            if next != NONE {
                syms[next as usize].prev = left;
            }
            let prev = syms[l].prev;
            if prev != NONE {
                self.push_pair(syms, heap, prev, left);
            }
            if next != NONE {
                self.push_pair(syms, heap, left, next);
            }
        }
        let mut i = 0u32;
        while i != NONE {
            let s = syms[i as usize];
            // A byte without a token: llama.cpp looks its UTF-8 bytes up one by one and finds
            // none (single bytes of a multi-byte character are not tokens), so it is dropped.
            if s.id != NO_TOKEN {
                out.push(s.id);
            }
            i = s.next;
        }
    }

    fn push_pair(&self, syms: &[Sym], heap: &mut Heap, left: u32, right: u32) {
        let (a, b) = (syms[left as usize].id, syms[right as usize].id);
        if let Some(&(rank, _)) = self.merges.get(&(a, b)) {
            heap.push(Reverse((rank, left, right, a, b)));
        }
    }
}

const NONE: u32 = u32::MAX;
/// Id of a symbol merged into its left neighbour.
const DEAD: u32 = u32::MAX - 1;

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: u32,
    next: u32,
}

/// (rank, left index, right index, left id, right id): min-heap by rank, then leftmost.
type Heap = BinaryHeap<Reverse<(u32, u32, u32, u32, u32)>>;

/// Reusable buffers of one `encode` call.
#[derive(Default)]
pub(crate) struct BpeWork {
    syms: Vec<Sym>,
    heap: Heap,
    text: String,
}
