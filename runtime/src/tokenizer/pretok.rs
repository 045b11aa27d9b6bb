//! BPE pre-tokenizers: split text into the words that BPE merges within, exactly as llama.cpp's
//! `unicode_regex_split` does for each `tokenizer.ggml.pre`, without a regex engine.
//!
//! llama.cpp runs a list of regexes per pre-tokenizer type; each regex re-splits every piece the
//! previous one produced (the text between two matches stays one piece). Two regexes have
//! hand-written matchers there (GPT-2's and Llama 3's); the others go through `std::regex` on a
//! "collapsed" text where every non-ASCII code point is replaced by one byte per class. Each
//! [`Stage`] below reproduces one of those regexes with the same class definitions
//! ([`CpFlags`]), including the quirks: piece ends act as end of input (`\s+(?!\S)` takes the
//! whole trailing run), and contractions are case-sensitive for GPT-2.

use std::ops::Range;

use super::unicode::{CpClass, CpFlags};

/// One regex of a pre-tokenizer's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)` (GPT-2).
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,max_digits}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` (Llama 3: 3 digits; Qwen2: 1).
    Llama3 { max_digits: usize },
    /// `\p{N}`: every number code point alone.
    EachNumber,
    /// `\p{N}+`.
    NumberRuns,
    /// `[0-9][0-9][0-9]`.
    AsciiDigits3,
    /// `[\p{P}\$\+<=>\^~\|]+` (default), with `` ` `` too for Falcon.
    PunctRuns { backtick: bool },
}

/// The regex list of a `tokenizer.ggml.pre` value, as llama.cpp maps it; `None` if unsupported.
pub(crate) fn stages_for(pre: &str) -> Option<&'static [Stage]> {
    use Stage::*;
    const GPT2: &[Stage] = &[Gpt2];
    const STARCODER: &[Stage] = &[EachNumber, Gpt2];
    const LLAMA3: &[Stage] = &[Llama3 { max_digits: 3 }];
    const QWEN2: &[Stage] = &[Llama3 { max_digits: 1 }];
    const FALCON: &[Stage] = &[PunctRuns { backtick: true }, Gpt2, AsciiDigits3];
    const DEFAULT: &[Stage] = &[PunctRuns { backtick: false }, Gpt2, NumberRuns, AsciiDigits3];
    Some(match pre {
        "" | "default" => DEFAULT,
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" | "chatglm-bpe" => {
            LLAMA3
        }
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => QWEN2,
        "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone" | "minerva-7b" => {
            STARCODER
        }
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v1-en" | "jina-v2-es"
        | "jina-v2-de" | "jina-v2-code" | "roberta-bpe" | "mpt" | "olmo" | "jais" => GPT2,
        "falcon" => FALCON,
        _ => return None,
    })
}

/// Reusable buffers for splitting: the text's code points, their classes and byte offsets.
#[derive(Default)]
pub(crate) struct Splitter {
    cps: Vec<char>,
    flags: Vec<CpFlags>,
    // byte offset of each code point, plus the text length at the end: [n_cps + 1]
    offs: Vec<usize>,
    a: Vec<Range<usize>>,
    b: Vec<Range<usize>>,
}

impl Splitter {
    /// Splits `text` by `stages`; appends the words as byte ranges of `text` to `words`.
    pub fn split(&mut self, text: &str, stages: &[Stage], words: &mut Vec<Range<usize>>) {
        self.cps.clear();
        self.flags.clear();
        self.offs.clear();
        for (i, c) in text.char_indices() {
            self.cps.push(c);
            self.flags.push(CpFlags::of(c));
            self.offs.push(i);
        }
        self.offs.push(text.len());
        if self.cps.is_empty() {
            return;
        }
        self.a.clear();
        self.a.push(0..self.cps.len());
        for &stage in stages {
            self.b.clear();
            let mut cx = Cx { cps: &self.cps, flags: &self.flags, out: &mut self.b };
            for seg in &self.a {
                cx.stage(stage, seg.clone());
            }
            std::mem::swap(&mut self.a, &mut self.b);
        }
        words.extend(self.a.iter().map(|r| self.offs[r.start]..self.offs[r.end]));
    }
}

struct Cx<'a> {
    cps: &'a [char],
    flags: &'a [CpFlags],
    out: &'a mut Vec<Range<usize>>,
}

/// Flags of a position outside the current piece: no class, not whitespace (llama.cpp's
/// all-zero flags), so no rule continues across a piece end.
const NONE: Option<CpFlags> = None;

impl Cx<'_> {
    fn stage(&mut self, stage: Stage, seg: Range<usize>) {
        match stage {
            Stage::Gpt2 => self.gpt2(seg),
            Stage::Llama3 { max_digits } => self.llama3(seg, max_digits),
            Stage::EachNumber => self.class_runs(seg, |f, _| f.number(), Some(1)),
            Stage::NumberRuns => self.class_runs(seg, |f, _| f.number(), None),
            Stage::AsciiDigits3 => self.class_runs(seg, |_, c| c.is_ascii_digit(), Some(3)),
            Stage::PunctRuns { backtick } => self.class_runs(
                seg,
                |f, c| {
                    f.class == CpClass::Punctuation
                        || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                        || (backtick && c == '`')
                },
                None,
            ),
        }
    }

    /// A regex that is one character class repeated (`X+`, or exactly `n` times): matches become
    /// pieces, and so does the text between matches (as one piece).
    fn class_runs(
        &mut self,
        seg: Range<usize>,
        pred: impl Fn(CpFlags, char) -> bool,
        exact: Option<usize>,
    ) {
        let m = |p: usize| pred(self.flags[p], self.cps[p]);
        let mut gap_start = seg.start;
        let mut pos = seg.start;
        while pos < seg.end {
            let len = match exact {
                Some(n) => {
                    if pos + n <= seg.end && (pos..pos + n).all(m) {
                        n
                    } else {
                        0
                    }
                }
                None => (pos..seg.end).take_while(|&p| m(p)).count(),
            };
            if len == 0 {
                pos += 1;
                continue;
            }
            if gap_start < pos {
                self.out.push(gap_start..pos);
            }
            self.out.push(pos..pos + len);
            pos += len;
            gap_start = pos;
        }
        if gap_start < seg.end {
            self.out.push(gap_start..seg.end);
        }
    }

    fn gpt2(&mut self, seg: Range<usize>) {
        let (cps, flags) = (self.cps, self.flags);
        let end = seg.end;
        let f = |p: usize| if p < end { Some(flags[p]) } else { NONE };
        let letter = |x: Option<CpFlags>| x.is_some_and(|x| x.letter());
        let number = |x: Option<CpFlags>| x.is_some_and(|x| x.number());
        let other =
            |x: Option<CpFlags>| x.is_some_and(|x| !(x.whitespace || x.letter() || x.number()));
        let ws = |x: Option<CpFlags>| x.is_some_and(|x| x.whitespace);
        let mut pos = seg.start;
        while pos < end {
            let start = pos;
            let c = cps[pos];
            // 's|'t|'re|'ve|'m|'ll|'d
            if c == '\'' && pos + 1 < end {
                let n1 = cps[pos + 1];
                if matches!(n1, 's' | 't' | 'm' | 'd') {
                    self.out.push(start..pos + 2);
                    pos += 2;
                    continue;
                }
                if pos + 2 < end {
                    let n2 = cps[pos + 2];
                    if matches!((n1, n2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        self.out.push(start..pos + 3);
                        pos += 3;
                        continue;
                    }
                }
            }
            // " ?X+" rules look at the code point after an ASCII space.
            let sp = usize::from(c == ' ');
            let f2 = f(pos + sp);
            if letter(f2) || number(f2) || other(f2) {
                let class = |x| {
                    if letter(x) {
                        0
                    } else if number(x) {
                        1
                    } else if other(x) {
                        2
                    } else {
                        3
                    }
                };
                let k = class(f2);
                pos += sp;
                while class(f(pos)) == k {
                    pos += 1;
                }
                self.out.push(start..pos);
                continue;
            }
            let n_ws = (pos..end).take_while(|&p| ws(f(p))).count();
            if n_ws > 1 && pos + n_ws < end {
                // \s+(?!\S): leave the last whitespace to prefix the next word
                pos += n_ws - 1;
            } else if n_ws > 0 {
                pos += n_ws;
            } else {
                pos += 1;
            }
            self.out.push(start..pos);
        }
    }

    fn llama3(&mut self, seg: Range<usize>, max_digits: usize) {
        let (cps, flags) = (self.cps, self.flags);
        let end = seg.end;
        let f = |p: usize| if p < end { Some(flags[p]) } else { NONE };
        let letter = |x: Option<CpFlags>| x.is_some_and(|x| x.letter());
        let number = |x: Option<CpFlags>| x.is_some_and(|x| x.number());
        let other =
            |x: Option<CpFlags>| x.is_some_and(|x| !(x.whitespace || x.letter() || x.number()));
        let ws = |x: Option<CpFlags>| x.is_some_and(|x| x.whitespace);
        let cr_lf = |p: usize| p < end && matches!(cps[p], '\r' | '\n');
        let mut pos = seg.start;
        while pos < end {
            let start = pos;
            let c = cps[pos];
            let fc = flags[pos];
            // (?i:'s|'t|'re|'ve|'m|'ll|'d): no code point outside ASCII lower-cases to these
            // letters (checked by gen_unicode_table.py), so ASCII lower-casing is exact.
            if c == '\'' && pos + 1 < end {
                let n1 = cps[pos + 1].to_ascii_lowercase();
                if matches!(n1, 's' | 't' | 'm' | 'd') {
                    self.out.push(start..pos + 2);
                    pos += 2;
                    continue;
                }
                if pos + 2 < end {
                    let n2 = cps[pos + 2].to_ascii_lowercase();
                    if matches!((n1, n2), ('r', 'e') | ('v', 'e') | ('l', 'l')) {
                        self.out.push(start..pos + 3);
                        pos += 3;
                        continue;
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !(c == '\r' || c == '\n' || fc.number()) && (fc.letter() || letter(f(pos + 1))) {
                pos += 1;
                while letter(f(pos)) {
                    pos += 1;
                }
                self.out.push(start..pos);
                continue;
            }
            // \p{N}{1,max_digits}
            if fc.number() {
                let mut group = pos;
                while number(f(pos)) {
                    pos += 1;
                    if pos - group >= max_digits {
                        self.out.push(group..pos);
                        group = pos;
                    }
                }
                if group < pos {
                    self.out.push(group..pos);
                }
                continue;
            }
            // " ?[^\s\p{L}\p{N}]+[\r\n]*"; a lone space at the piece end also lands here, and
            // becomes the one-space word that `\s+(?!\S)` would give.
            let sp = usize::from(c == ' ');
            let f2 = f(pos + sp);
            if other(f2) || (sp == 1 && f2.is_none()) {
                pos += sp;
                while other(f(pos)) {
                    pos += 1;
                }
                while cr_lf(pos) {
                    pos += 1;
                }
                self.out.push(start..pos);
                continue;
            }
            let mut n_ws = 0;
            let mut last_cr_lf_end = None;
            while ws(f(pos + n_ws)) {
                if cr_lf(pos + n_ws) {
                    last_cr_lf_end = Some(pos + n_ws + 1);
                }
                n_ws += 1;
            }
            if let Some(e) = last_cr_lf_end {
                // \s*[\r\n]+
                pos = e;
            } else if n_ws > 1 && pos + n_ws < end {
                // \s+(?!\S)
                pos += n_ws - 1;
            } else if n_ws > 0 {
                pos += n_ws;
            } else {
                pos += 1;
            }
            self.out.push(start..pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split<'a>(text: &'a str, pre: &str) -> Vec<&'a str> {
        let mut s = Splitter::default();
        let mut words = Vec::new();
        s.split(text, stages_for(pre).expect("known pre"), &mut words);
        words.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn gpt2_words() {
        assert_eq!(split("Hello, world!", "gpt-2"), ["Hello", ",", " world", "!"]);
        assert_eq!(split("I'm you're", "gpt-2"), ["I", "'m", " you", "'re"]);
        assert_eq!(split("I'M", "gpt-2"), ["I", "'", "M"]);
        assert_eq!(split("a   b  ", "gpt-2"), ["a", "  ", " b", "  "]);
        assert_eq!(split(" 123abc", "gpt-2"), [" 123", "abc"]);
        assert_eq!(split("\t\tx\n", "gpt-2"), ["\t", "\t", "x", "\n"]);
        assert_eq!(split("", "gpt-2"), Vec::<&str>::new());
    }

    #[test]
    fn smollm_splits_every_digit_first() {
        assert_eq!(split("ab12 3", "smollm"), ["ab", "1", "2", " ", "3"]);
        assert_eq!(split("x  1", "smollm"), ["x", "  ", "1"]);
    }

    #[test]
    fn llama3_and_qwen2_words() {
        assert_eq!(split("1234567", "llama-bpe"), ["123", "456", "7"]);
        assert_eq!(split("1234", "qwen2"), ["1", "2", "3", "4"]);
        assert_eq!(split("I'M here", "llama-bpe"), ["I", "'M", " here"]);
        assert_eq!(split("a\n\nb", "qwen2"), ["a", "\n\n", "b"]);
        assert_eq!(split("a  \n  b", "qwen2"), ["a", "  \n", " ", " b"]);
        assert_eq!(split("x = (y);\n", "qwen2"), ["x", " =", " (", "y", ");\n"]);
        assert_eq!(split("$99", "qwen2"), ["$", "9", "9"]);
        assert_eq!(split("a ", "qwen2"), ["a", " "]);
        assert_eq!(split(".hello", "qwen2"), [".hello"]);
    }

    #[test]
    fn default_regex_list() {
        assert_eq!(split("a+b 12345", "default"), ["a", "+", "b", " ", "123", "45"]);
    }
}
