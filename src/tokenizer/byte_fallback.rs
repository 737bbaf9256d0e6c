//! Byte fallback, SentencePiece's answer to characters missing from the vocab: the character is
//! encoded as one `<0xXX>` token per UTF-8 byte (e.g. "😀" as `<0xF0><0x9F><0x98><0x80>`), so no
//! text ever needs an unknown token. Encoding is done by the BPE model ([`super::bpe`]) with
//! [`byte_token`]; decoding (the `ByteFallback` decoder) turns runs of byte tokens back into text.

/// The vocab entry that stands for byte `b`: `<0x0A>` (upper-case hex digits, as HF writes them).
pub fn byte_token(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// The byte a `<0xXX>` token stands for. HF parses the two characters with Rust's
/// `u8::from_str_radix`, so we do too (which accepts lower-case digits and, oddly, `+A`).
fn byte_of(token: &str) -> Option<u8> {
    let digits = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if token.len() != 6 {
        return None;
    }
    u8::from_str_radix(digits, 16).ok()
}

/// The `ByteFallback` decoder step: each maximal run of byte tokens becomes one token holding
/// the run's UTF-8 text, or, when the bytes are not valid UTF-8, one U+FFFD per byte (as HF).
/// Other tokens pass through unchanged.
pub fn decode_chain(tokens: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut Vec<String>| {
        if run.is_empty() {
            return;
        }
        match String::from_utf8(std::mem::take(run)) {
            Ok(text) => out.push(text),
            Err(e) => out.extend(std::iter::repeat_n(
                "\u{FFFD}".to_string(),
                e.as_bytes().len(),
            )),
        }
    };
    for token in tokens {
        match byte_of(&token) {
            Some(b) => run.push(b),
            None => {
                flush(&mut run, &mut out);
                out.push(token);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(tokens: &[&str]) -> Vec<String> {
        tokens.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn runs_of_bytes_become_text() {
        assert_eq!(byte_token(10), "<0x0A>");
        // Values from HF tokenizers 0.23's decoders.ByteFallback().decode.
        let tokens = strings(&[
            "<0xE6>", "<0x97>", "a", "<0xE6>", "<0x97>", "<0xA5>", "<0x+A>", "<0xzz>",
        ]);
        assert_eq!(decode_chain(tokens).concat(), "\u{FFFD}\u{FFFD}a日\n<0xzz>");
        assert_eq!(
            decode_chain(strings(&["▁hi", "<0x21>"])),
            strings(&["▁hi", "!"])
        );
    }
}
