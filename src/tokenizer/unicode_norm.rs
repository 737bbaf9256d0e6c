//! Unicode normalization forms NFC, NFD, NFKC and NFKD (Unicode Annex #15): full canonical (or
//! compatibility) decomposition, Hangul algorithmically, canonical ordering of combining marks,
//! then, for the composed forms, canonical composition. The data comes from the generated
//! `nfc_table.rs` (canonical) and `nfkd_table.rs` (compatibility), both Unicode 14 like the rest
//! of the tokenizer's tables. ASCII text is returned unchanged without allocation, and for NFC so
//! is text that holds no character of the NFC quick-check set (most Latin, CJK).

use std::borrow::Cow;

use super::nfc_table::{COMBINING_CLASS, COMPOSITION, DECOMPOSITION, NFC_UNSTABLE};
use super::nfkd_table::{COMPAT_CHARS, COMPAT_DECOMPOSITION};

// Hangul syllable arithmetic (Unicode chapter 3.12).
const S_BASE: u32 = 0xAC00;
const L_BASE: u32 = 0x1100;
const V_BASE: u32 = 0x1161;
const T_BASE: u32 = 0x11A7;
const L_COUNT: u32 = 19;
const V_COUNT: u32 = 21;
const T_COUNT: u32 = 28;
const N_COUNT: u32 = V_COUNT * T_COUNT;
const S_COUNT: u32 = L_COUNT * N_COUNT;

/// Canonical combining class of `c` (0 for starters).
pub fn combining_class(c: char) -> u8 {
    let cp = c as u32;
    if cp < 0x300 {
        return 0;
    }
    let idx = COMBINING_CLASS.partition_point(|&(first, _, _)| first <= cp);
    match idx.checked_sub(1).map(|i| COMBINING_CLASS[i]) {
        Some((_, last, class)) if cp <= last => class,
        _ => 0,
    }
}

/// True when `c` may change under NFC or make a neighbour change.
fn is_nfc_unstable(c: char) -> bool {
    let cp = c as u32;
    if cp < 0x300 {
        return false;
    }
    let idx = NFC_UNSTABLE.partition_point(|&(first, _)| first <= cp);
    idx > 0 && cp <= NFC_UNSTABLE[idx - 1].1
}

/// Which decomposition to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// Canonical only (NFD, NFC).
    Canonical,
    /// Canonical and compatibility (NFKD, NFKC).
    Compatibility,
}

/// Appends the full decomposition of `c` to `out`, recursively (the tables are one level deep).
fn decompose_into(c: char, mapping: Mapping, out: &mut Vec<char>) {
    let cp = c as u32;
    if (S_BASE..S_BASE + S_COUNT).contains(&cp) {
        let s = cp - S_BASE;
        out.push(char_from(L_BASE + s / N_COUNT));
        out.push(char_from(V_BASE + (s % N_COUNT) / T_COUNT));
        if !s.is_multiple_of(T_COUNT) {
            out.push(char_from(T_BASE + s % T_COUNT));
        }
        return;
    }
    if let Ok(i) = DECOMPOSITION.binary_search_by_key(&cp, |&(code, _, _)| code) {
        let (_, first, second) = DECOMPOSITION[i];
        decompose_into(char_from(first), mapping, out);
        if second != 0 {
            decompose_into(char_from(second), mapping, out);
        }
        return;
    }
    if mapping == Mapping::Compatibility {
        if let Ok(i) = COMPAT_DECOMPOSITION.binary_search_by_key(&cp, |&(code, _, _)| code) {
            let (_, start, len) = COMPAT_DECOMPOSITION[i];
            let start = start as usize;
            for &part in &COMPAT_CHARS[start..start + len as usize] {
                decompose_into(char_from(part), mapping, out);
            }
            return;
        }
    }
    out.push(c);
}

/// The table only holds valid scalar values; a bad one would be a generator bug, so map it to
/// U+FFFD rather than panic.
fn char_from(cp: u32) -> char {
    char::from_u32(cp).unwrap_or('\u{FFFD}')
}

/// The primary composite of `first` + `second`, if there is one.
fn compose_pair(first: char, second: char) -> Option<char> {
    let (a, b) = (first as u32, second as u32);
    if (L_BASE..L_BASE + L_COUNT).contains(&a) && (V_BASE..V_BASE + V_COUNT).contains(&b) {
        return Some(char_from(
            S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT,
        ));
    }
    let is_lv = (S_BASE..S_BASE + S_COUNT).contains(&a) && (a - S_BASE).is_multiple_of(T_COUNT);
    if is_lv && (T_BASE + 1..T_BASE + T_COUNT).contains(&b) {
        return Some(char_from(a + (b - T_BASE)));
    }
    COMPOSITION
        .binary_search_by_key(&(a, b), |&(x, y, _)| (x, y))
        .ok()
        .map(|i| char_from(COMPOSITION[i].2))
}

/// Stable sort of each run of non-starters by combining class (canonical ordering).
fn canonical_order(chars: &mut [char]) {
    let mut start = 0;
    while start < chars.len() {
        if combining_class(chars[start]) == 0 {
            start += 1;
            continue;
        }
        let mut end = start;
        while end < chars.len() && combining_class(chars[end]) != 0 {
            end += 1;
        }
        chars[start..end].sort_by_key(|&c| combining_class(c)); // sort_by_key is stable
        start = end;
    }
}

/// Canonical composition of decomposed, canonically ordered `chars`.
fn compose(chars: &[char]) -> String {
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut starter: Option<usize> = None;
    // Class of the last character kept after the starter; None = the starter is the last kept.
    let mut last_class: Option<u8> = None;
    for &c in chars {
        let class = combining_class(c);
        if let Some(s) = starter {
            let blocked = matches!(last_class, Some(l) if l == 0 || l >= class);
            if !blocked {
                if let Some(composite) = compose_pair(out[s], c) {
                    out[s] = composite;
                    continue;
                }
            }
        }
        if class == 0 {
            starter = Some(out.len());
            last_class = None;
        } else {
            last_class = Some(class);
        }
        out.push(c);
    }
    out.into_iter().collect()
}

/// The four Unicode normalization forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
}

impl Form {
    /// HF's name of the normalizer.
    pub fn name(self) -> &'static str {
        match self {
            Form::Nfc => "NFC",
            Form::Nfd => "NFD",
            Form::Nfkc => "NFKC",
            Form::Nfkd => "NFKD",
        }
    }
}

/// `text` in normalization form `form`; borrowed when it is ASCII (every form leaves ASCII
/// alone) or, for NFC, when it holds no character of the NFC quick-check set.
pub fn normalize(text: &str, form: Form) -> Cow<'_, str> {
    if text.is_ascii() || (form == Form::Nfc && !text.chars().any(is_nfc_unstable)) {
        return Cow::Borrowed(text);
    }
    let mapping = match form {
        Form::Nfc | Form::Nfd => Mapping::Canonical,
        Form::Nfkc | Form::Nfkd => Mapping::Compatibility,
    };
    let mut decomposed = Vec::with_capacity(text.len());
    for c in text.chars() {
        decompose_into(c, mapping, &mut decomposed);
    }
    canonical_order(&mut decomposed);
    let out: String = match form {
        Form::Nfc | Form::Nfkc => compose(&decomposed),
        Form::Nfd | Form::Nfkd => decomposed.into_iter().collect(),
    };
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Unicode Normalization Form C.
pub fn nfc(text: &str) -> Cow<'_, str> {
    normalize(text, Form::Nfc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_combining_sequences() {
        // e + COMBINING ACUTE -> é (U+00E9)
        assert_eq!(nfc("cafe\u{301}"), "caf\u{e9}");
        // A + ring above + acute -> Ǻ (U+01FA), through Å.
        assert_eq!(nfc("A\u{30a}\u{301}"), "\u{1fa}");
        // Marks out of canonical order: dot below (220) must come before acute (230), then
        // ṣ (U+1E63) composes and the acute stays: ṣ́
        assert_eq!(nfc("s\u{301}\u{323}"), "\u{1e63}\u{301}");
        // Hangul jamo L V T -> one syllable 한 (U+D55C).
        assert_eq!(nfc("\u{1112}\u{1161}\u{11ab}"), "\u{d55c}");
        // Singleton decomposition: ANGSTROM SIGN -> Å (U+00C5); OHM SIGN -> Ω (U+03A9).
        assert_eq!(nfc("\u{212b}\u{2126}"), "\u{c5}\u{3a9}");
        // Composition exclusion: U+0958 (DEVANAGARI QA) stays decomposed.
        assert_eq!(nfc("\u{958}"), "\u{915}\u{93c}");
        // A blocked mark: a second acute after an acute cannot compose with the starter.
        assert_eq!(nfc("e\u{301}\u{301}"), "\u{e9}\u{301}");
    }

    #[test]
    fn compatibility_forms() {
        // ﬁ ligature -> "fi"; full-width Ａ -> A; ① -> 1; ㍿ -> 株式会社; ½ -> 1⁄2.
        assert_eq!(normalize("\u{fb01}\u{ff21}\u{2460}", Form::Nfkc), "fiA1");
        assert_eq!(
            normalize("\u{337f}\u{bd}", Form::Nfkd),
            "株式会社1\u{2044}2"
        );
        // NFKD and NFD split é; NFKC recomposes the decomposed ẛ̣ (U+1E9B U+0323) to ṩ.
        assert_eq!(normalize("caf\u{e9}", Form::Nfd), "cafe\u{301}");
        assert_eq!(normalize("\u{1e9b}\u{323}", Form::Nfkc), "\u{1e69}");
        assert_eq!(
            normalize("\u{1e9b}\u{323}", Form::Nfd),
            "\u{17f}\u{323}\u{307}"
        );
        // Hangul: NFD splits a syllable into jamo, NFKC keeps it.
        assert_eq!(normalize("\u{d55c}", Form::Nfd), "\u{1112}\u{1161}\u{11ab}");
        assert_eq!(normalize("\u{d55c}", Form::Nfkc), "\u{d55c}");
    }

    #[test]
    fn stable_text_is_borrowed() {
        for text in [
            "plain ascii",
            "café déjà",
            "日本語のテキスト",
            "한국어",
            "🙂",
        ] {
            assert!(matches!(nfc(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn combining_classes() {
        assert_eq!(combining_class('a'), 0);
        assert_eq!(combining_class('\u{301}'), 230);
        assert_eq!(combining_class('\u{323}'), 220);
        assert_eq!(combining_class('\u{5b0}'), 10);
    }
}
