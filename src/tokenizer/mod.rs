//! Our own reader of HF `tokenizer.json` files: BPE that gives the same ids as HF `tokenizers`
//! for the byte-level families (Llama 3, Qwen, SmolLM) and the SentencePiece-style ones (Llama 2,
//! TinyLlama, Mistral v0.1: `▁` for spaces, byte fallback), without any tokenizer crate.
//!
//! Encoding, in HF's order:
//! 1. added tokens with `normalized: false` are cut out of the raw text ([`added_tokens`]);
//! 2. the rest is normalized ([`normalizer`]: Unicode forms, Prepend, Replace, ...) and added tokens with
//!    `normalized: true` are cut out of that;
//! 3. the remaining text is pre-tokenized into words ([`pretokenizer`], [`splitter`]);
//! 4. each word is encoded by BPE over its bytes ([`bpe`], [`byte_level`]) or its characters
//!    (with [`byte_fallback`] for characters missing from the vocab), with a per-word cache.
//!
//! Decoding maps ids to token strings and runs the file's decoder chain ([`decoder`]).
//! Anything a file asks for that is not implemented (another model type, normalizer,
//! pre-tokenizer, split pattern or decoder) is refused at load time with an error naming it.

pub mod added_tokens;
pub mod bpe;
pub mod byte_fallback;
pub mod byte_level;
pub mod char_class;
pub mod decoder;
pub mod metaspace;
pub mod nfc_table;
pub mod nfkd_table;
pub mod normalizer;
pub mod pretokenizer;
pub mod replace;
pub mod splitter;
pub mod unicode_class;
pub mod unicode_norm;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use added_tokens::{AddedToken, AddedVocabulary, Segment};
use bpe::{Bpe, MAX_TOKEN_ID};
use decoder::Decoder;
use normalizer::Normalizer;
use pretokenizer::PreTokenizer;

use crate::{Error, Result};

/// A loaded tokenizer.json.
#[derive(Debug)]
pub struct Tokenizer {
    model: Bpe,
    normalizer: Option<Normalizer>,
    pre_tokenizer: PreTokenizer,
    decoder: Decoder,
    added: AddedVocabulary,
    /// content -> index in `added.tokens`
    added_index: HashMap<String, usize>,
    special_ids: HashSet<u32>,
    /// id -> token (added tokens override the model's); length = largest id + 1
    id_to_token: Vec<Option<String>>,
}

impl Tokenizer {
    /// Reads and parses a tokenizer.json file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        Tokenizer::from_json(&value, &path.display().to_string())
    }

    /// Builds a tokenizer from a parsed tokenizer.json; `origin` names the source in errors.
    pub fn from_json(value: &serde_json::Value, origin: &str) -> Result<Tokenizer> {
        let model_json = value
            .get("model")
            .filter(|m| m.is_object())
            .ok_or_else(|| {
                Error::format(origin, "missing field `model` (the BPE vocab and merges)")
            })?;
        let normalizer = match value.get("normalizer").filter(|n| !n.is_null()) {
            Some(n) => Some(Normalizer::from_json(n, origin)?),
            None => None,
        };
        let pre_tokenizer = PreTokenizer::from_json(value.get("pre_tokenizer"), origin)?;
        let decoder = Decoder::from_json(value.get("decoder"), origin)?;
        let model = Bpe::from_json(model_json, pre_tokenizer.is_byte_level(), origin)?;
        let added_list = parse_added_tokens(value.get("added_tokens"), origin)?;

        let largest = model
            .vocab
            .values()
            .chain(added_list.iter().map(|t| &t.id))
            .max();
        let table_len = largest.map_or(0, |&id| id as usize + 1);
        check_ids_dense(table_len, model.vocab.len() + added_list.len(), origin)?;
        let mut id_to_token = vec![None; table_len];
        for (token, &id) in &model.vocab {
            id_to_token[id as usize] = Some(token.clone());
        }
        let mut tokenizer = Tokenizer {
            added: AddedVocabulary::new(Vec::new(), None),
            added_index: HashMap::new(),
            special_ids: HashSet::new(),
            id_to_token,
            model,
            normalizer,
            pre_tokenizer,
            decoder,
        };
        for token in added_list {
            tokenizer.register(token);
        }
        tokenizer.added.rebuild(tokenizer.normalizer.as_ref());
        Ok(tokenizer)
    }

    /// Records an added token in the lookup tables (the tries are rebuilt by the caller).
    ///
    /// The id's token string is the content as the normalizer sees it when the token is
    /// `normalized`, as in HF: with a SentencePiece normalizer, `<a_1>` is `▁<a_1>`, so that
    /// decoding gives back the space the match swallowed.
    fn register(&mut self, token: AddedToken) {
        let id = token.id as usize;
        if id >= self.id_to_token.len() {
            self.id_to_token.resize(id + 1, None);
        }
        let as_seen = match (&self.normalizer, token.normalized) {
            (Some(n), true) => n.normalize(&token.content).into_owned(),
            _ => token.content.clone(),
        };
        self.id_to_token[id] = Some(as_seen);
        if token.special {
            self.special_ids.insert(token.id);
        }
        self.added_index
            .insert(token.content.clone(), self.added.tokens.len());
        self.added.tokens.push(token);
    }

    /// Token ids of `text`, without BOS/EOS.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        for segment in self.added.split_raw(text) {
            match segment {
                Segment::Token(id) => ids.push(id),
                Segment::Text(a, b) => self.encode_normalized(&text[a..b], a == 0, &mut ids),
            }
        }
        ids
    }

    /// Steps 2-4 of the module docs for text free of raw added tokens; `starts_input` tells
    /// whether `text` begins the input (Metaspace's `first` scheme prepends `▁` only there).
    ///
    /// HF decides "begins the input" by the original offset of each piece. We take "nothing
    /// before it, in the raw or the normalized text"; the two differ only when a normalizer
    /// deletes leading characters (a left Strip) before a Metaspace `first`, which no known
    /// tokenizer combines.
    fn encode_normalized(&self, text: &str, starts_input: bool, ids: &mut Vec<u32>) {
        let normalized = match &self.normalizer {
            Some(n) => n.normalize(text),
            None => Cow::Borrowed(text),
        };
        for segment in self.added.split_normalized(&normalized) {
            match segment {
                Segment::Token(id) => ids.push(id),
                Segment::Text(a, b) => {
                    let first = starts_input && a == 0;
                    let pieces = self.pre_tokenizer.split(&normalized[a..b], first);
                    for &(start, end) in &pieces.ranges {
                        self.model.encode_word(&pieces.text[start..end], ids);
                    }
                }
            }
        }
    }

    /// Text of `ids`; unknown ids are skipped, special tokens too when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let tokens: Vec<&str> = ids
            .iter()
            .filter(|id| !(skip_special && self.special_ids.contains(id)))
            .filter_map(|&id| self.id_to_token(id))
            .collect();
        self.decoder.decode(&tokens)
    }

    /// Adds tokens matched before pre-tokenization (e.g. item tokens `<a_12>`) and returns their
    /// ids. A token already known keeps its id (an added token as it is; a vocab token becomes
    /// an added token with its vocab id); a new one takes the id after the largest. Empty strings
    /// are ignored (and get no id), as in HF. Special tokens are searched in raw text and can be
    /// skipped in decoding; the others are searched in normalized text.
    pub fn add_tokens(&mut self, tokens: &[String], special: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(tokens.len());
        for content in tokens.iter().filter(|t| !t.is_empty()) {
            if let Some(&index) = self.added_index.get(content) {
                ids.push(self.added.tokens[index].id);
                continue;
            }
            let id = self
                .model
                .vocab
                .get(content)
                .copied()
                .unwrap_or(self.vocab_size() as u32);
            self.register(AddedToken {
                content: content.clone(),
                id,
                special,
                normalized: !special,
                lstrip: false,
                rstrip: false,
                single_word: false,
            });
            ids.push(id);
        }
        self.added.rebuild(self.normalizer.as_ref());
        ids
    }

    /// Id of a token string (added tokens first, then the model's vocab).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match self.added_index.get(token) {
            Some(&index) => Some(self.added.tokens[index].id),
            None => self.model.vocab.get(token).copied(),
        }
    }

    /// Token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.id_to_token.get(id as usize)?.as_deref()
    }

    /// Largest id + 1.
    pub fn vocab_size(&self) -> usize {
        self.id_to_token.len()
    }

    /// The added tokens, in the order they were added.
    pub fn added_tokens(&self) -> &[AddedToken] {
        &self.added.tokens
    }
}

/// The id table is sized by the largest id, so ids must be (nearly) dense: a few holes are
/// fine (some tokenizers have them), a largest id far beyond the token count is a corrupt file
/// that would otherwise allocate a table of up to 16.7M entries (fuzz finding: 4 s and 387 MB
/// for one id of 16,777,215 in a 300-token file).
fn check_ids_dense(table_len: usize, tokens: usize, origin: &str) -> Result<()> {
    let allowed = 2 * tokens + 1024;
    if table_len > allowed {
        return Err(Error::format(
            origin,
            format!(
                "the largest token id is {} but there are only {tokens} tokens (model.vocab + \
                 added_tokens); ids that sparse mean a corrupt file",
                table_len - 1
            ),
        ));
    }
    Ok(())
}

/// Parses `added_tokens`: [{id, content, special, normalized, lstrip, rstrip, single_word}].
fn parse_added_tokens(value: Option<&serde_json::Value>, origin: &str) -> Result<Vec<AddedToken>> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = value
        .as_array()
        .ok_or_else(|| Error::format(origin, "`added_tokens` is not an array"))?;
    let mut tokens = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let content = item
            .get("content")
            .and_then(|c| c.as_str())
            .filter(|c| !c.is_empty());
        let content = content.ok_or_else(|| {
            Error::format(
                origin,
                format!("added_tokens[{i}]: `content` must be a non-empty string"),
            )
        })?;
        let id = item
            .get("id")
            .and_then(|v| v.as_u64())
            .filter(|&id| id < u64::from(MAX_TOKEN_ID));
        let id = id.ok_or_else(|| {
            Error::format(
                origin,
                format!("added_tokens[{i}] ({content:?}): `id` must be in 0..{MAX_TOKEN_ID}"),
            )
        })?;
        let flag =
            |key: &str, default: bool| item.get(key).and_then(|v| v.as_bool()).unwrap_or(default);
        let special = flag("special", false);
        tokens.push(AddedToken {
            content: content.to_string(),
            id: id as u32,
            special,
            normalized: flag("normalized", !special),
            lstrip: flag("lstrip", false),
            rstrip: flag("rstrip", false),
            single_word: flag("single_word", false),
        });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::Tokenizer;
    use serde_json::json;

    fn tiny(ids: [u64; 3]) -> serde_json::Value {
        json!({"model": {"type": "BPE", "vocab": {"a": ids[0], "b": ids[1], "ab": ids[2]}, "merges": ["a b"]}})
    }

    /// One id near the 2^24 limit in a three-token file is refused instead of sizing a 16.7M
    /// entry id table (fuzz finding); a few holes are still accepted.
    #[test]
    fn sparse_ids_are_refused_small_holes_are_not() {
        let err = Tokenizer::from_json(&tiny([0, 1, 16_777_215]), "t.json")
            .expect_err("a sparse id table is refused")
            .to_string();
        assert!(
            err.contains("t.json") && err.contains("largest token id is 16777215"),
            "{err}"
        );
        let ok = Tokenizer::from_json(&tiny([0, 1, 40]), "t.json").expect("small holes load");
        assert_eq!(ok.token_to_id("ab"), Some(40));
    }
}
