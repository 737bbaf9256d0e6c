//! Character classes used by the pre-tokenizers: `\p{L}` (letters), `\p{N}` (numbers) and `\s`.
//!
//! `\p{L}` / `\p{N}` come from the generated table in `unicode_class.rs` (Unicode 14, the version of
//! the Oniguruma engine inside HF tokenizers). `\s` is Unicode `White_Space`, which is what both
//! Oniguruma's `\s` and Rust's `char::is_whitespace` mean (checked against HF on every candidate).

use super::unicode_class::{CLASS_RANGES, LETTER, NUMBER};

/// The class of one character, as the split patterns see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `\p{L}`
    Letter,
    /// `\p{N}`
    Number,
    /// `\s`
    Space,
    /// `[^\s\p{L}\p{N}]`: punctuation, symbols, emoji, controls...
    Other,
}

/// ASCII fast path: most text is ASCII, so a 128-entry table avoids the binary search.
const fn ascii_class(b: u8) -> CharClass {
    match b {
        b'a'..=b'z' | b'A'..=b'Z' => CharClass::Letter,
        b'0'..=b'9' => CharClass::Number,
        b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ' => CharClass::Space,
        _ => CharClass::Other,
    }
}

static ASCII_CLASS: [CharClass; 128] = {
    let mut table = [CharClass::Other; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = ascii_class(b as u8);
        b += 1;
    }
    table
};

/// General-category lookup in the generated ranges: LETTER, NUMBER or 0.
fn unicode_category(c: char) -> u8 {
    let cp = c as u32;
    // Binary search for the last range starting at or before cp.
    let idx = CLASS_RANGES.partition_point(|&(first, _, _)| first <= cp);
    if idx == 0 {
        return 0;
    }
    let (_, last, class) = CLASS_RANGES[idx - 1];
    if cp <= last {
        class
    } else {
        0
    }
}

/// The class of `c`.
#[inline]
pub fn class_of(c: char) -> CharClass {
    if c.is_ascii() {
        return ASCII_CLASS[c as usize];
    }
    if c.is_whitespace() {
        return CharClass::Space;
    }
    match unicode_category(c) {
        LETTER => CharClass::Letter,
        NUMBER => CharClass::Number,
        _ => CharClass::Other,
    }
}

/// `\p{N}`: used by the Digits pre-tokenizer (HF uses `char::is_numeric`, the same categories).
#[inline]
pub fn is_number(c: char) -> bool {
    class_of(c) == CharClass::Number
}

/// Rust-regex `\w` approximated as letter, number, combining mark or `_`; used only by the
/// `single_word` flag of added tokens.
pub fn is_word_char(c: char) -> bool {
    c == '_'
        || matches!(class_of(c), CharClass::Letter | CharClass::Number)
        || super::normalizer::combining_class(c) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_scripts() {
        for c in ['a', 'Z', 'é', 'Ω', 'ж', '日', 'の', 'ſ'] {
            assert_eq!(class_of(c), CharClass::Letter, "{c:?}");
        }
        for c in ['0', '9', '½', '²', 'Ⅻ', '٣'] {
            assert_eq!(class_of(c), CharClass::Number, "{c:?}");
        }
        for c in [
            ' ', '\t', '\n', '\r', '\u{85}', '\u{a0}', '\u{3000}', '\u{2029}',
        ] {
            assert_eq!(class_of(c), CharClass::Space, "{c:?}");
        }
        // U+1C..U+1F are spaces for Python's str.isspace but not for \s; U+200B is not White_Space.
        for c in ['!', '\'', '🙂', '\u{1c}', '\u{200b}', '\u{301}', '€'] {
            assert_eq!(class_of(c), CharClass::Other, "{c:?}");
        }
    }
}
