//! Decoders of tokenizer.json: they turn the token strings of some ids back into text.
//!
//! As in HF tokenizers, a decoder is a chain of steps over the list of token strings, and the
//! final list is concatenated:
//! - `ByteLevel`: GPT-2 characters back to bytes, then UTF-8 (one string);
//! - `Replace`: a pattern replaced in every token (Llama 2: `▁` -> ` `);
//! - `ByteFallback`: runs of `<0xXX>` tokens back to text ([`super::byte_fallback`]);
//! - `Fuse`: all tokens joined into one;
//! - `Strip`: up to `start` / `stop` copies of a character cut from each token's ends;
//! - `Metaspace`: `▁` back to spaces ([`super::metaspace`]);
//! - `Sequence` of these.
//!
//! Without a decoder, HF joins the tokens with spaces.

use super::byte_fallback;
use super::byte_level::char_to_byte;
use super::metaspace::Metaspace;
use super::replace::Pattern;
use crate::{Error, Result};

/// One decoding step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    ByteLevel,
    Replace {
        pattern: Pattern,
        content: String,
    },
    ByteFallback,
    Fuse,
    Strip {
        content: char,
        start: usize,
        stop: usize,
    },
    Metaspace(Metaspace),
}

/// A whole decoder: its steps, or none (tokens joined with spaces).
#[derive(Debug, Clone, PartialEq)]
pub enum Decoder {
    Steps(Vec<Step>),
    /// No decoder in the file.
    JoinWithSpaces,
}

const SUPPORTED: &str = "ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence, null";

impl Decoder {
    pub fn from_json(value: Option<&serde_json::Value>, origin: &str) -> Result<Decoder> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Decoder::JoinWithSpaces);
        };
        let mut steps = Vec::new();
        parse_into(value, origin, &mut steps)?;
        Ok(Decoder::Steps(steps))
    }

    /// Turns token strings back into text.
    pub fn decode(&self, tokens: &[&str]) -> String {
        let steps = match self {
            Decoder::JoinWithSpaces => return tokens.join(" "),
            Decoder::Steps(steps) => steps,
        };
        let mut current: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        for step in steps {
            current = step.decode_chain(current);
        }
        current.concat()
    }
}

/// Appends the steps of `value` (flattening nested Sequences) to `steps`.
fn parse_into(value: &serde_json::Value, origin: &str, steps: &mut Vec<Step>) -> Result<()> {
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("<missing type>");
    let count = |key: &str| value.get(key).and_then(|v| v.as_u64()).unwrap_or(0) as usize;
    let step = match kind {
        "Sequence" => {
            let items = value
                .get("decoders")
                .and_then(|d| d.as_array())
                .ok_or_else(|| {
                    Error::format(origin, "decoder Sequence: `decoders` is not an array")
                })?;
            for item in items {
                parse_into(item, origin, steps)?;
            }
            return Ok(());
        }
        "ByteLevel" => Step::ByteLevel,
        "ByteFallback" => Step::ByteFallback,
        "Fuse" => Step::Fuse,
        "Replace" => Step::Replace {
            pattern: Pattern::from_json(value.get("pattern"), "decoder Replace", origin)?,
            content: value
                .get("content")
                .and_then(|c| c.as_str())
                .ok_or_else(|| Error::format(origin, "decoder Replace: `content` is not a string"))?
                .to_string(),
        },
        "Strip" => {
            let content = value.get("content").and_then(|c| c.as_str()).and_then(|c| {
                let mut chars = c.chars();
                chars.next().filter(|_| chars.next().is_none())
            });
            Step::Strip {
                content: content.ok_or_else(|| {
                    Error::format(origin, "decoder Strip: `content` must be one character")
                })?,
                start: count("start"),
                stop: count("stop"),
            }
        }
        "Metaspace" => Step::Metaspace(Metaspace::from_json(value, "decoder", origin)?),
        other => {
            return Err(Error::format(
                origin,
                format!("decoder type `{other}` is not supported (supported: {SUPPORTED})"),
            ))
        }
    };
    steps.push(step);
    Ok(())
}

impl Step {
    fn decode_chain(&self, tokens: Vec<String>) -> Vec<String> {
        match self {
            Step::ByteLevel => vec![byte_level_text(&tokens)],
            Step::ByteFallback => byte_fallback::decode_chain(tokens),
            Step::Fuse => vec![tokens.concat()],
            Step::Replace { pattern, content } => tokens
                .into_iter()
                .map(|t| pattern.replace_all(&t, content).unwrap_or(t))
                .collect(),
            Step::Strip {
                content,
                start,
                stop,
            } => tokens
                .iter()
                .map(|t| strip(t, *content, *start, *stop))
                .collect(),
            Step::Metaspace(metaspace) => metaspace.decode_chain(tokens),
        }
    }
}

/// All tokens' GPT-2 characters back to bytes, decoded as UTF-8 (invalid bytes -> U+FFFD).
fn byte_level_text(tokens: &[String]) -> String {
    let mut bytes = Vec::with_capacity(tokens.iter().map(|t| t.len()).sum());
    for token in tokens {
        // A token whose characters are not all byte-mapped (an added token such as "日本")
        // goes through as its own UTF-8, as in HF.
        let mapped: Option<Vec<u8>> = token.chars().map(char_to_byte).collect();
        match mapped {
            Some(mapped) => bytes.extend_from_slice(&mapped),
            None => bytes.extend_from_slice(token.as_bytes()),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `token` without up to `start` leading and `stop` trailing copies of `content`.
fn strip(token: &str, content: char, start: usize, stop: usize) -> String {
    let chars: Vec<char> = token.chars().collect();
    let lead = chars
        .iter()
        .take(start)
        .take_while(|&&c| c == content)
        .count();
    let rest = &chars[lead..];
    let trail = rest
        .iter()
        .rev()
        .take(stop)
        .take_while(|&&c| c == content)
        .count();
    rest[..rest.len() - trail].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(json: serde_json::Value) -> Decoder {
        Decoder::from_json(Some(&json), "t.json").unwrap()
    }

    #[test]
    fn byte_level_round_trip() {
        let d = decoder(serde_json::json!({"type": "ByteLevel"}));
        // "Ġcaf" + "Ã©" = " café"; "日本" is not byte-mapped and passes through.
        assert_eq!(d.decode(&["Ġcaf", "Ã©", "日本"]), " café日本");
        // A lone continuation byte decodes to U+FFFD, like Python's errors="replace".
        assert_eq!(d.decode(&["Ã"]), "\u{FFFD}");
        assert_eq!(Decoder::JoinWithSpaces.decode(&["a", "b"]), "a b");
    }

    #[test]
    fn llama2_chain() {
        let d = decoder(serde_json::json!({"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}));
        assert_eq!(
            d.decode(&["▁Hello", "▁world", "<0x21>", "▁", "<0xE6>", "<0x97>", "<0xA5>"]),
            "Hello world! 日"
        );
        assert_eq!(d.decode(&["▁▁x"]), " x");
    }

    #[test]
    fn strip_counts() {
        // HF tokenizers 0.23: decoders.Strip(" ", 1, 2).decode([" a  ", "  b "]) == "a b".
        assert_eq!(strip(" a  ", ' ', 1, 2), "a");
        assert_eq!(strip("  b ", ' ', 1, 2), " b");
        assert_eq!(strip("   ", ' ', 5, 5), "");
    }

    #[test]
    fn unknown_steps_are_named() {
        let err = Decoder::from_json(Some(&serde_json::json!({"type": "WordPiece"})), "t.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.json") && err.contains("WordPiece") && err.contains("Fuse"),
            "{err}"
        );
    }
}
