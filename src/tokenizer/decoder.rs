//! Decoders of tokenizer.json: `ByteLevel` (GPT-2 characters back to bytes, then UTF-8), or none
//! (tokens joined by spaces, as HF does without a decoder).

use super::byte_level::char_to_byte;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoder {
    ByteLevel,
    /// No decoder in the file.
    JoinWithSpaces,
}

impl Decoder {
    pub fn from_json(value: Option<&serde_json::Value>, origin: &str) -> Result<Decoder> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Decoder::JoinWithSpaces);
        };
        match value.get("type").and_then(|t| t.as_str()) {
            Some("ByteLevel") => Ok(Decoder::ByteLevel),
            other => Err(Error::format(
                origin,
                format!("decoder type {other:?} is not supported (supported: ByteLevel, null)"),
            )),
        }
    }

    /// Turns token strings back into text.
    pub fn decode(self, tokens: &[&str]) -> String {
        match self {
            Decoder::JoinWithSpaces => tokens.join(" "),
            Decoder::ByteLevel => {
                let mut bytes = Vec::with_capacity(tokens.iter().map(|t| t.len()).sum());
                for token in tokens {
                    // A token whose characters are not all byte-mapped (an added token such as
                    // "日本") goes through as its own UTF-8, as in HF.
                    let mapped: Option<Vec<u8>> = token.chars().map(char_to_byte).collect();
                    match mapped {
                        Some(mapped) => bytes.extend_from_slice(&mapped),
                        None => bytes.extend_from_slice(token.as_bytes()),
                    }
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_round_trip() {
        // "Ġcaf" + "Ã©" = " café"; "日本" is not byte-mapped and passes through.
        assert_eq!(
            Decoder::ByteLevel.decode(&["Ġcaf", "Ã©", "日本"]),
            " café日本"
        );
        // A lone continuation byte decodes to U+FFFD, like Python's errors="replace".
        assert_eq!(Decoder::ByteLevel.decode(&["Ã"]), "\u{FFFD}");
        assert_eq!(Decoder::JoinWithSpaces.decode(&["a", "b"]), "a b");
    }
}
