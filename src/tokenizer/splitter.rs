//! The split patterns of GPT-2, Llama-3, Qwen2/3 and SmolLM, matched by hand (no regex engine).
//!
//! tokenizer.json stores these as Oniguruma regexes. Rather than interpret arbitrary regexes we
//! recognise the known pattern strings and run a hand-written matcher that implements their exact
//! leftmost-first, greedy-with-backtracking semantics. Every pattern here matches at every position
//! (each character is a letter, a number, a space or "other"), so splitting is a single left-to-right
//! scan. An unknown pattern is refused with an error that names it.
//!
//! The two pattern families, alternative by alternative:
//! - GPT-2:  `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
//! - Llama-3 (also Qwen2/3, SmolLM3, cl100k):
//!   `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
//!   with `\p{N}` instead of `\p{N}{1,3}` for Qwen.

use super::char_class::{class_of, CharClass};

/// The GPT-2 pattern, also used by the ByteLevel pre-tokenizer when `use_regex` is true.
pub const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama-3 (and SmolLM3, cl100k): numbers in groups of at most three digits.
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2 / Qwen3: every digit on its own.
pub const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One of the known split patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPattern {
    Gpt2,
    /// The Llama-3 family; `max_digits` is 3 for Llama-3 and 1 for Qwen.
    Llama3 {
        max_digits: usize,
    },
}

impl SplitPattern {
    /// Recognises a pattern string from tokenizer.json; None if it is not one we implement.
    pub fn from_regex(pattern: &str) -> Option<SplitPattern> {
        match pattern {
            GPT2_PATTERN => Some(SplitPattern::Gpt2),
            LLAMA3_PATTERN => Some(SplitPattern::Llama3 { max_digits: 3 }),
            QWEN2_PATTERN => Some(SplitPattern::Llama3 { max_digits: 1 }),
            _ => None,
        }
    }

    /// Appends the byte ranges of the pieces of `text[start..end]` to `out` ("Isolated": every
    /// match is a piece; the gaps between matches, which these patterns never leave, too).
    pub fn split(self, text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
        let piece = &text[start..end];
        let mut pos = 0;
        while pos < piece.len() {
            let len = match self {
                SplitPattern::Gpt2 => gpt2_match(piece, pos),
                SplitPattern::Llama3 { max_digits } => llama3_match(piece, pos, max_digits),
            };
            // A zero-length answer cannot happen for these patterns; take one character so the
            // scan always advances.
            let len = if len == 0 {
                char_len_at(piece, pos)
            } else {
                len
            };
            out.push((start + pos, start + pos + len));
            pos += len;
        }
    }
}

/// Byte length of the character at `pos` (which must be a char boundary before the end).
fn char_len_at(s: &str, pos: usize) -> usize {
    s[pos..].chars().next().map_or(1, char::len_utf8)
}

/// Bytes taken by the longest run starting at `pos` of characters with class `class`, at most
/// `max_chars` characters.
fn run_len(s: &str, pos: usize, class: CharClass, max_chars: usize) -> usize {
    let mut len = 0;
    for c in s[pos..].chars().take(max_chars) {
        if class_of(c) != class {
            break;
        }
        len += c.len_utf8();
    }
    len
}

/// `'s|'t|'re|'ve|'m|'ll|'d` at `pos` (which holds an apostrophe): the match length, or 0.
/// Case-insensitive for Llama-3, where Oniguruma also lets `ſ` (U+017F) fold to `s`.
fn contraction_len(s: &str, pos: usize, case_insensitive: bool) -> usize {
    let rest = &s[pos + 1..];
    let mut chars = rest.chars();
    let fold = |c: Option<char>| -> Option<char> {
        let c = c?;
        if !case_insensitive {
            return Some(c);
        }
        Some(if c == '\u{17f}' {
            's'
        } else {
            c.to_ascii_lowercase()
        })
    };
    let first = fold(chars.next());
    let second = fold(chars.next());
    let one_char = |c: char| 1 + c.len_utf8();
    match first {
        Some('s') | Some('t') | Some('m') | Some('d') => {
            one_char(rest.chars().next().unwrap_or(' '))
        }
        Some('r') | Some('v') if second == Some('e') => 3,
        Some('l') if second == Some('l') => 3,
        _ => 0,
    }
}

/// `\s+(?!\S)|\s+` at `pos` (a space character): the whole run if it ends the text or is one
/// character long, else the run minus its last character (which the next piece takes along).
fn whitespace_len(s: &str, pos: usize) -> usize {
    let mut len = 0;
    let mut last_len = 0;
    let mut count = 0;
    for c in s[pos..].chars() {
        if class_of(c) != CharClass::Space {
            break;
        }
        len += c.len_utf8();
        last_len = c.len_utf8();
        count += 1;
    }
    let at_end = pos + len == s.len();
    if at_end || count == 1 {
        len
    } else {
        len - last_len
    }
}

/// The char at `pos` and the one after it (if any).
fn two_chars(s: &str, pos: usize) -> (char, Option<char>) {
    let mut chars = s[pos..].chars();
    let first = chars.next().unwrap_or('\0');
    (first, chars.next())
}

/// Length of the GPT-2 match at `pos`.
fn gpt2_match(s: &str, pos: usize) -> usize {
    let (c0, c1) = two_chars(s, pos);
    if c0 == '\'' {
        let n = contraction_len(s, pos, false);
        if n > 0 {
            return n;
        }
    }
    let class0 = class_of(c0);
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
    for class in [CharClass::Letter, CharClass::Number, CharClass::Other] {
        if class0 == class {
            return run_len(s, pos, class, usize::MAX);
        }
        if c0 == ' ' && c1.map(class_of) == Some(class) {
            return 1 + run_len(s, pos + 1, class, usize::MAX);
        }
    }
    whitespace_len(s, pos)
}

/// Length of the Llama-3 / Qwen match at `pos`.
fn llama3_match(s: &str, pos: usize, max_digits: usize) -> usize {
    let (c0, c1) = two_chars(s, pos);
    if c0 == '\'' {
        let n = contraction_len(s, pos, true);
        if n > 0 {
            return n;
        }
    }
    let class0 = class_of(c0);
    let class1 = c1.map(class_of);
    // `[^\r\n\p{L}\p{N}]?\p{L}+`
    if class0 == CharClass::Letter {
        return run_len(s, pos, CharClass::Letter, usize::MAX);
    }
    let may_lead = class0 != CharClass::Number && c0 != '\r' && c0 != '\n';
    if may_lead && class1 == Some(CharClass::Letter) {
        let lead = c0.len_utf8();
        return lead + run_len(s, pos + lead, CharClass::Letter, usize::MAX);
    }
    // `\p{N}{1,max_digits}`
    if class0 == CharClass::Number {
        return run_len(s, pos, CharClass::Number, max_digits);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let other_start = if class0 == CharClass::Other {
        Some(pos)
    } else if c0 == ' ' && class1 == Some(CharClass::Other) {
        Some(pos + 1)
    } else {
        None
    };
    if let Some(start) = other_start {
        let end = start + run_len(s, start, CharClass::Other, usize::MAX);
        let newlines = s[end..]
            .bytes()
            .take_while(|&b| b == b'\r' || b == b'\n')
            .count();
        return end + newlines - pos;
    }
    // `\s*[\r\n]+`: the space run up to and including its last \r or \n, if it has one.
    let run = whitespace_run(s, pos);
    if let Some(last_newline) = run.rfind(['\r', '\n']) {
        return last_newline + 1;
    }
    whitespace_len(s, pos)
}

/// The run of space characters starting at `pos`.
fn whitespace_run(s: &str, pos: usize) -> &str {
    let len: usize = s[pos..]
        .chars()
        .take_while(|&c| class_of(c) == CharClass::Space)
        .map(char::len_utf8)
        .sum();
    &s[pos..pos + len]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pattern: SplitPattern, text: &str) -> Vec<&str> {
        let mut ranges = Vec::new();
        pattern.split(text, 0, text.len(), &mut ranges);
        ranges.iter().map(|&(a, b)| &text[a..b]).collect()
    }

    const GPT2: SplitPattern = SplitPattern::Gpt2;
    const LLAMA3: SplitPattern = SplitPattern::Llama3 { max_digits: 3 };
    const QWEN: SplitPattern = SplitPattern::Llama3 { max_digits: 1 };

    // Expected pieces below were worked out by hand from the regexes and confirmed with HF
    // tokenizers' `pre_tokenizers.Split(Regex(p), "isolated").pre_tokenize_str`.

    #[test]
    fn gpt2_contractions_are_case_sensitive() {
        assert_eq!(
            pieces(GPT2, "Don't I'M we'll"),
            ["Don", "'t", " I", "'", "M", " we", "'ll"]
        );
        assert_eq!(pieces(GPT2, "'sa"), ["'s", "a"]);
    }

    #[test]
    fn llama3_contractions_ignore_case() {
        assert_eq!(
            pieces(LLAMA3, "Don'T I'M we'LL x'ſa"),
            ["Don", "'T", " I", "'M", " we", "'LL", " x", "'ſ", "a"]
        );
    }

    #[test]
    fn digits() {
        assert_eq!(
            pieces(GPT2, "in 2026 or 12345"),
            ["in", " 2026", " or", " 12345"]
        );
        assert_eq!(
            pieces(LLAMA3, "in 2026 or 12345"),
            ["in", " ", "202", "6", " or", " ", "123", "45"]
        );
        assert_eq!(pieces(QWEN, "x 3.14"), ["x", " ", "3", ".", "1", "4"]);
    }

    #[test]
    fn whitespace_runs() {
        // The last space of a run is left to the word that follows it.
        assert_eq!(pieces(GPT2, "a   b  "), ["a", "  ", " b", "  "]);
        assert_eq!(pieces(LLAMA3, "a   b  "), ["a", "  ", " b", "  "]);
        // A single space before punctuation joins it; a tab before a letter joins it in Llama-3.
        assert_eq!(pieces(GPT2, "a\tb !"), ["a", "\t", "b", " !"]);
        assert_eq!(pieces(LLAMA3, "a\tb !"), ["a", "\tb", " !"]);
    }

    #[test]
    fn newlines() {
        assert_eq!(pieces(GPT2, "a\n\n  b"), ["a", "\n\n ", " b"]);
        assert_eq!(pieces(LLAMA3, "a\n\n  b"), ["a", "\n\n", " ", " b"]);
        assert_eq!(pieces(LLAMA3, "x:\r\n\ny"), ["x", ":\r\n\n", "y"]);
        assert_eq!(pieces(LLAMA3, "a \n b"), ["a", " \n", " b"]);
    }

    #[test]
    fn mixed_scripts_and_emoji() {
        assert_eq!(pieces(GPT2, "日本語 café!"), ["日本語", " café", "!"]);
        assert_eq!(pieces(LLAMA3, "(日本語)"), ["(日本語", ")"]);
        assert_eq!(pieces(LLAMA3, "hi 🙂🚀 ok"), ["hi", " 🙂🚀", " ok"]);
        assert_eq!(pieces(GPT2, "hi 🙂🚀 ok"), ["hi", " 🙂🚀", " ok"]);
    }

    #[test]
    fn recognises_only_known_patterns() {
        assert_eq!(SplitPattern::from_regex(GPT2_PATTERN), Some(GPT2));
        assert_eq!(SplitPattern::from_regex(QWEN2_PATTERN), Some(QWEN));
        assert_eq!(SplitPattern::from_regex(r"\w+|\s+"), None);
    }
}
