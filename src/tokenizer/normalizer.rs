//! Normalizers of tokenizer.json, applied to the text between added tokens before
//! pre-tokenization: the Unicode forms (`NFC`, `NFD`, `NFKC`, `NFKD`), the SentencePiece-style
//! `Prepend` and `Replace` (Llama 2, Mistral v0.1: `Prepend "▁"` then `Replace " " -> "▁"`),
//! `Strip`, `Lowercase`, and `Sequence` of these. Anything else is refused at load time with an
//! error naming it.
//!
//! Each step borrows its input when it changes nothing, so the common case allocates nothing.

use std::borrow::Cow;

use super::replace::Pattern;
use super::unicode_norm::{normalize, Form};
use crate::{Error, Result};

pub use super::unicode_norm::combining_class;

/// A text normalizer.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalizer {
    Unicode(Form),
    /// Puts a string before any non-empty text.
    Prepend(String),
    /// Replaces every match of the pattern by `content`.
    Replace {
        pattern: Pattern,
        content: String,
    },
    /// Removes white space at the start (`left`) and / or the end (`right`).
    Strip {
        left: bool,
        right: bool,
    },
    /// Lower-cases character by character (as HF: a final Σ becomes σ, not ς).
    Lowercase,
    Sequence(Vec<Normalizer>),
}

/// The normalizer types we implement, for messages.
const SUPPORTED: &str = "NFC, NFD, NFKC, NFKD, Prepend, Replace, Strip, Lowercase, Sequence, null";

fn string_field<'a>(
    value: &'a serde_json::Value,
    key: &str,
    kind: &str,
    origin: &str,
) -> Result<&'a str> {
    value.get(key).and_then(|v| v.as_str()).ok_or_else(|| {
        Error::format(
            origin,
            format!("normalizer {kind}: field `{key}` is not a string"),
        )
    })
}

impl Normalizer {
    /// Parses the `normalizer` object; `origin` names the file in errors.
    pub fn from_json(value: &serde_json::Value, origin: &str) -> Result<Normalizer> {
        let kind = value
            .get("type")
            .and_then(|t| t.as_str())
            .unwrap_or("<missing type>");
        let flag =
            |key: &str, default: bool| value.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
        Ok(match kind {
            "NFC" => Normalizer::Unicode(Form::Nfc),
            "NFD" => Normalizer::Unicode(Form::Nfd),
            "NFKC" => Normalizer::Unicode(Form::Nfkc),
            "NFKD" => Normalizer::Unicode(Form::Nfkd),
            "Prepend" => {
                Normalizer::Prepend(string_field(value, "prepend", kind, origin)?.to_string())
            }
            "Replace" => Normalizer::Replace {
                pattern: Pattern::from_json(value.get("pattern"), "normalizer Replace", origin)?,
                content: string_field(value, "content", kind, origin)?.to_string(),
            },
            "Strip" => Normalizer::Strip {
                left: flag("strip_left", true),
                right: flag("strip_right", true),
            },
            "Lowercase" => Normalizer::Lowercase,
            "Sequence" => {
                let items = value
                    .get("normalizers")
                    .and_then(|n| n.as_array())
                    .ok_or_else(|| {
                        Error::format(
                            origin,
                            "normalizer Sequence: field `normalizers` is not an array",
                        )
                    })?;
                let parts = items.iter().map(|n| Normalizer::from_json(n, origin));
                Normalizer::Sequence(parts.collect::<Result<_>>()?)
            }
            other => {
                return Err(Error::format(
                    origin,
                    format!("normalizer type `{other}` is not supported (supported: {SUPPORTED})"),
                ))
            }
        })
    }

    /// Normalizes `text`; borrows it when nothing changes.
    pub fn normalize<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self {
            Normalizer::Unicode(form) => normalize(text, *form),
            Normalizer::Prepend(prefix) if !text.is_empty() => {
                Cow::Owned(format!("{prefix}{text}"))
            }
            Normalizer::Prepend(_) => Cow::Borrowed(text),
            Normalizer::Replace { pattern, content } => match pattern.replace_all(text, content) {
                Some(replaced) => Cow::Owned(replaced),
                None => Cow::Borrowed(text),
            },
            Normalizer::Strip { left, right } => {
                let mut s = text;
                if *left {
                    s = s.trim_start_matches(char::is_whitespace);
                }
                if *right {
                    s = s.trim_end_matches(char::is_whitespace);
                }
                Cow::Borrowed(s)
            }
            Normalizer::Lowercase => lowercase(text),
            Normalizer::Sequence(parts) => {
                let mut current: Cow<'a, str> = Cow::Borrowed(text);
                for part in parts {
                    current = match current {
                        Cow::Borrowed(s) => part.normalize(s),
                        Cow::Owned(s) => Cow::Owned(part.normalize(&s).into_owned()),
                    };
                }
                current
            }
        }
    }
}

/// Per-character lower case (Rust's `str::to_lowercase` would apply the final-sigma rule, which
/// HF does not).
fn lowercase(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c.to_lowercase().ne(std::iter::once(c)))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().flat_map(char::to_lowercase).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Normalizer {
        Normalizer::from_json(&json, "t.json").unwrap()
    }

    #[test]
    fn sentencepiece_sequence() {
        let n = parse(serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}));
        assert_eq!(n.normalize("Hello  world"), "▁Hello▁▁world");
        assert_eq!(n.normalize(""), "");
    }

    #[test]
    fn strip_and_lowercase() {
        let strip =
            parse(serde_json::json!({"type": "Strip", "strip_left": false, "strip_right": true}));
        assert_eq!(strip.normalize("  a b \n"), "  a b");
        let lower = parse(serde_json::json!({"type": "Lowercase"}));
        assert_eq!(lower.normalize("ΟΔΟΣ İx"), "οδοσ i\u{307}x");
        assert!(matches!(lower.normalize("lower"), Cow::Borrowed(_)));
    }

    #[test]
    fn unknown_types_are_named() {
        let err = Normalizer::from_json(&serde_json::json!({"type": "Precompiled"}), "t.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json") && err.contains("Precompiled") && err.contains("NFKC"),
            "{err}"
        );
        let err = Normalizer::from_json(&serde_json::json!({"type": "Prepend"}), "t.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("prepend"), "{err}");
    }
}
