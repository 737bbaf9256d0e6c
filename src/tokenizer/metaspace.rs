//! `Metaspace`, SentencePiece's way of keeping spaces inside tokens: every space becomes a visible
//! replacement character (`▁`, U+2581) and one may be put before the text, so "Hi you" is encoded
//! as "▁Hi▁you". The same component exists as a pre-tokenizer and as a decoder.
//!
//! Pre-tokenizer, per piece of text (as HF tokenizers does it):
//! 1. replace every ' ' by the replacement;
//! 2. prepend the replacement unless the piece already starts with it, depending on
//!    `prepend_scheme`: `always`; `first` = only for the piece that starts the input text (not
//!    one that follows an added token such as `<s>`); `never`;
//! 3. with `split: true`, cut before every replacement ("▁Hi▁you" -> "▁Hi", "▁you"; a run
//!    "▁▁a" -> "▁", "▁a").
//!
//! Decoder: each replacement becomes a space, except in the first token, where (unless the
//! scheme is `never`) they are dropped — HF drops all of them there, not only the leading one.
//!
//! Older files have `add_prefix_space` instead of `prepend_scheme`: true meant `always`, false
//! meant `never`. Current HF refuses `add_prefix_space: false` beside a scheme other than `never`,
//! and so do we.

use crate::{Error, Result};

/// When the replacement is put before a piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrependScheme {
    Always,
    First,
    Never,
}

/// The Metaspace settings, shared by the pre-tokenizer and the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metaspace {
    pub replacement: char,
    pub prepend_scheme: PrependScheme,
    /// Pre-tokenizer only: cut the text before each replacement.
    pub split: bool,
}

impl Metaspace {
    /// Parses a Metaspace object (pre-tokenizer or decoder); `what` names it in errors.
    pub fn from_json(value: &serde_json::Value, what: &str, origin: &str) -> Result<Metaspace> {
        let replacement = value
            .get("replacement")
            .and_then(|r| r.as_str())
            .and_then(|r| {
                let mut chars = r.chars();
                let c = chars.next()?;
                chars.next().is_none().then_some(c)
            })
            .ok_or_else(|| {
                Error::format(
                    origin,
                    format!("{what} Metaspace: `replacement` must be one character"),
                )
            })?;
        let add_prefix_space = value.get("add_prefix_space").and_then(|v| v.as_bool());
        let declared = match value.get("prepend_scheme").and_then(|v| v.as_str()) {
            None => None,
            Some("always") => Some(PrependScheme::Always),
            Some("first") => Some(PrependScheme::First),
            Some("never") => Some(PrependScheme::Never),
            Some(other) => {
                return Err(Error::format(
                    origin,
                    format!(
                    "{what} Metaspace: prepend_scheme `{other}` is not one of always, first, never"
                ),
                ))
            }
        };
        let prepend_scheme = match (declared, add_prefix_space) {
            (Some(scheme), None | Some(true)) => scheme,
            (Some(PrependScheme::Never), Some(false)) | (None, Some(false)) => PrependScheme::Never,
            (None, None | Some(true)) => PrependScheme::Always,
            (Some(_), Some(false)) => {
                return Err(Error::format(
                    origin,
                    format!("{what} Metaspace: add_prefix_space false contradicts prepend_scheme (use prepend_scheme never)"),
                ))
            }
        };
        let split = value.get("split").and_then(|v| v.as_bool()).unwrap_or(true);
        Ok(Metaspace {
            replacement,
            prepend_scheme,
            split,
        })
    }

    /// Pre-tokenizes `text[a..b]` into `out_text`, pushing the byte ranges of the new pieces
    /// (into `out_text`) on `out_ranges`. `starts_input` tells whether the piece begins the
    /// input text (for the `first` scheme).
    pub fn pre_tokenize(
        &self,
        piece: &str,
        starts_input: bool,
        out_text: &mut String,
        out_ranges: &mut Vec<(usize, usize)>,
    ) {
        if piece.is_empty() {
            return;
        }
        let start = out_text.len();
        let prepend = match self.prepend_scheme {
            PrependScheme::Always => true,
            PrependScheme::First => starts_input,
            PrependScheme::Never => false,
        };
        // A piece starting with a space starts with the replacement after step 1.
        if prepend && !piece.starts_with([' ', self.replacement]) {
            out_text.push(self.replacement);
        }
        for c in piece.chars() {
            out_text.push(if c == ' ' { self.replacement } else { c });
        }
        if !self.split {
            out_ranges.push((start, out_text.len()));
            return;
        }
        // Cut before every replacement ("merged with next"): a piece ends where the next
        // replacement begins.
        let mut piece_start = start;
        for (offset, c) in out_text[start..].char_indices() {
            let at = start + offset;
            if c == self.replacement && at > piece_start {
                out_ranges.push((piece_start, at));
                piece_start = at;
            }
        }
        out_ranges.push((piece_start, out_text.len()));
    }

    /// Decoder step: replacements back to spaces (dropped in the first token unless `never`).
    pub fn decode_chain(&self, tokens: Vec<String>) -> Vec<String> {
        let drop_in_first = self.prepend_scheme != PrependScheme::Never;
        tokens
            .into_iter()
            .enumerate()
            .map(|(i, token)| {
                token
                    .chars()
                    .filter_map(|c| match c {
                        c if c != self.replacement => Some(c),
                        _ if i == 0 && drop_in_first => None,
                        _ => Some(' '),
                    })
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metaspace(json: serde_json::Value) -> Metaspace {
        Metaspace::from_json(&json, "pre_tokenizer", "t.json").unwrap()
    }

    fn pieces(m: &Metaspace, text: &str, starts_input: bool) -> Vec<String> {
        let (mut out, mut ranges) = (String::new(), Vec::new());
        m.pre_tokenize(text, starts_input, &mut out, &mut ranges);
        ranges.iter().map(|&(a, b)| out[a..b].to_string()).collect()
    }

    // Expected values below are HF tokenizers 0.23's `pre_tokenize_str` / `decode` outputs.

    #[test]
    fn pre_tokenizer_schemes_and_split() {
        let always = metaspace(serde_json::json!({"type": "Metaspace", "replacement": "▁"}));
        assert_eq!(
            pieces(&always, "hello  world ", true),
            ["▁hello", "▁", "▁world", "▁"]
        );
        assert_eq!(pieces(&always, " x", false), ["▁x"]);
        let first = metaspace(
            serde_json::json!({"replacement": "▁", "prepend_scheme": "first", "split": false}),
        );
        assert_eq!(pieces(&first, "a b", true), ["▁a▁b"]);
        assert_eq!(pieces(&first, "a b", false), ["a▁b"]);
        let never = metaspace(serde_json::json!({"replacement": "▁", "prepend_scheme": "never"}));
        assert_eq!(
            pieces(&never, "hello  world", true),
            ["hello", "▁", "▁world"]
        );
    }

    #[test]
    fn legacy_add_prefix_space() {
        let on = metaspace(serde_json::json!({"replacement": "▁", "add_prefix_space": true}));
        assert_eq!(on.prepend_scheme, PrependScheme::Always);
        let off = metaspace(serde_json::json!({"replacement": "▁", "add_prefix_space": false}));
        assert_eq!(off.prepend_scheme, PrependScheme::Never);
        let conflict = serde_json::json!({"replacement": "▁", "add_prefix_space": false, "prepend_scheme": "first"});
        assert!(Metaspace::from_json(&conflict, "pre_tokenizer", "t.json").is_err());
        let bad = serde_json::json!({"replacement": "▁", "prepend_scheme": "sometimes"});
        let err = Metaspace::from_json(&bad, "pre_tokenizer", "t.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sometimes") && err.contains("t.json"), "{err}");
    }

    #[test]
    fn decoder_drops_first_token_replacements() {
        let tokens = || vec!["▁a▁b".to_string(), "▁c".to_string(), "x▁".to_string()];
        let always = metaspace(serde_json::json!({"replacement": "▁"}));
        assert_eq!(always.decode_chain(tokens()).concat(), "ab cx ");
        let never = metaspace(serde_json::json!({"replacement": "▁", "prepend_scheme": "never"}));
        assert_eq!(never.decode_chain(tokens()).concat(), " a b cx ");
    }
}
