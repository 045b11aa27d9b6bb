//! Code point classes for the pre-tokenizers and GPT-2's byte <-> unicode mapping.
//!
//! The classes are the Unicode general categories collapsed the way llama.cpp's `unicode_cpt_flags`
//! collapses them (`\p{L}`, `\p{N}`, `\p{P}` ...), from the same Unicode version (15.1), plus
//! llama.cpp's fixed whitespace set (which is not `char::is_whitespace`: U+001C..U+001F are not in
//! it, U+0085 is).

use super::unicode_table::CLASS_RANGES;

/// General-category class of a code point. The numbers are those `gen_unicode_table.py` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CpClass {
    /// Unassigned (Cn).
    Undefined = 0,
    /// \p{L}
    Letter = 1,
    /// \p{N}
    Number = 2,
    /// \p{P}
    Punctuation = 3,
    /// \p{M}
    Mark = 4,
    /// \p{S}
    Symbol = 5,
    /// \p{Z}
    Separator = 6,
    /// \p{C} less Cn
    Control = 7,
}

impl CpClass {
    fn from_bits(b: u32) -> CpClass {
        match b & 0xF {
            1 => CpClass::Letter,
            2 => CpClass::Number,
            3 => CpClass::Punctuation,
            4 => CpClass::Mark,
            5 => CpClass::Symbol,
            6 => CpClass::Separator,
            7 => CpClass::Control,
            _ => CpClass::Undefined,
        }
    }
}

/// Classes of the ASCII range, looked up directly (the hot path for English and code).
static ASCII_CLASS: [CpClass; 128] = {
    let mut t = [CpClass::Control; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = if c.is_ascii_alphabetic() {
            CpClass::Letter
        } else if c.is_ascii_digit() {
            CpClass::Number
        } else if c == b' ' {
            CpClass::Separator
        } else if c < 0x20 || c == 0x7F {
            CpClass::Control
        } else if matches!(c, b'$' | b'+' | b'<' | b'=' | b'>' | b'^' | b'`' | b'|' | b'~') {
            CpClass::Symbol
        } else {
            CpClass::Punctuation
        };
        i += 1;
    }
    t
};

/// Class of one code point.
#[inline]
pub(crate) fn class_of(c: char) -> CpClass {
    let cp = c as u32;
    if cp < 128 {
        return ASCII_CLASS[cp as usize];
    }
    // Last range whose start is <= cp; the table starts at 0, so there always is one.
    let i = CLASS_RANGES.partition_point(|&r| (r >> 4) <= cp);
    CpClass::from_bits(CLASS_RANGES[i.saturating_sub(1)])
}

/// llama.cpp's whitespace set (Unicode White_Space): `\s` in every pre-tokenizer regex.
#[inline]
pub(crate) fn is_whitespace(c: char) -> bool {
    matches!(
        c as u32,
        0x09..=0x0D
            | 0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// The three properties every split rule asks about, computed once per code point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpFlags {
    pub class: CpClass,
    pub whitespace: bool,
}

impl CpFlags {
    #[inline]
    pub fn of(c: char) -> CpFlags {
        CpFlags { class: class_of(c), whitespace: is_whitespace(c) }
    }
    #[inline]
    pub fn letter(self) -> bool {
        self.class == CpClass::Letter
    }
    #[inline]
    pub fn number(self) -> bool {
        self.class == CpClass::Number
    }
}

/// GPT-2's byte -> code point mapping: printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100.. in byte order, so every byte string becomes printable text.
pub(crate) fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR[b as usize]
}

static BYTE_TO_CHAR: [char; 256] = {
    let mut t = ['\0'; 256];
    let mut n = 0u32;
    let mut b = 0usize;
    while b < 256 {
        let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        let cp = if printable {
            b as u32
        } else {
            n += 1;
            256 + n - 1
        };
        // All values are below U+0144: valid scalar values.
        t[b] = match char::from_u32(cp) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    t
};

/// Inverse of [`byte_to_char`]; `None` for code points outside the mapping.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let v = *CHAR_TO_BYTE.get(c as usize)?;
    u8::try_from(v).ok()
}

/// `CHAR_TO_BYTE[cp]` = the byte mapped to code point cp, or -1. The mapping's image is below U+0144.
static CHAR_TO_BYTE: [i16; 0x144] = {
    let mut t = [-1i16; 0x144];
    let mut b = 0usize;
    while b < 256 {
        t[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_classes_match_the_table() {
        for b in 0u8..128 {
            let c = b as char;
            let i = CLASS_RANGES.partition_point(|&r| (r >> 4) <= b as u32);
            assert_eq!(class_of(c), CpClass::from_bits(CLASS_RANGES[i - 1]), "{b:#x}");
        }
    }

    #[test]
    fn classes_of_some_code_points() {
        assert_eq!(class_of('é'), CpClass::Letter);
        assert_eq!(class_of('Ω'), CpClass::Letter);
        assert_eq!(class_of('界'), CpClass::Letter);
        assert_eq!(class_of('한'), CpClass::Letter);
        assert_eq!(class_of('²'), CpClass::Number);
        assert_eq!(class_of('٣'), CpClass::Number);
        assert_eq!(class_of('∑'), CpClass::Symbol);
        assert_eq!(class_of('🙂'), CpClass::Symbol);
        assert_eq!(class_of('\u{0301}'), CpClass::Mark);
        assert_eq!(class_of('«'), CpClass::Punctuation);
        assert_eq!(class_of('\u{200B}'), CpClass::Control);
        assert_eq!(class_of('\u{A0}'), CpClass::Separator);
        assert_eq!(class_of('\u{0378}'), CpClass::Undefined);
        // Added in Unicode 15.1 (IDS characters): Python 3.11's own tables say Cn.
        assert_eq!(class_of('\u{2FFC}'), CpClass::Symbol);
        assert_eq!(class_of('\u{10FFFF}'), CpClass::Undefined);
        assert!(is_whitespace('\u{85}') && is_whitespace('\u{3000}') && !is_whitespace('\u{1C}'));
        assert!(!is_whitespace('\u{200B}'));
    }

    #[test]
    fn byte_mapping_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for b in 0u8..=255 {
            let c = byte_to_char(b);
            assert!(seen.insert(c));
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'A'), 'A');
        assert_eq!(char_to_byte('ń'), None);
    }
}
