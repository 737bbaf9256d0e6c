//! A HF `tokenizer.json` built from a GGUF file's `tokenizer.ggml.*` metadata, for the two
//! tokenizer models llama.cpp calls `gpt2` (byte-level BPE: SmolLM2, Llama 3, Qwen) and `llama`
//! (SentencePiece BPE: Llama 2, TinyLlama, Mistral v0.1).
//!
//! Metadata used: `tokens` (id order), `token_type` (1 normal, 2 unknown, 3 control, 4 user
//! defined, 5 unused, 6 byte), `merges` (gpt2; llama files usually have none), `scores`
//! (llama: SentencePiece piece scores), `add_space_prefix`, `add_bos_token` / `add_eos_token`
//! with `bos_token_id` / `eos_token_id`, `unknown_token_id`, `pre` (gpt2).
//!
//! A SentencePiece file without merges gets them from the scores, as HF transformers does when it
//! converts a SentencePiece model: every split of a token into two tokens is a merge, ranked by
//! the score of the token it makes (highest first; for one token, by the ids of the parts).
//! Encoding then prefers the merges that make high-score pieces, which is SentencePiece's BPE.

use super::gguf::{GgufFile, GgufValue};
use super::gguf_hf::{opt_usize, req_str, string_array, wrong_type};
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
mod token_type {
    pub const NORMAL: i64 = 1;
    pub const UNKNOWN: i64 = 2;
    pub const CONTROL: i64 = 3;
    pub const USER_DEFINED: i64 = 4;
    pub const BYTE: i64 = 6;
}

/// The SentencePiece space marker.
const SPACE_MARK: &str = "\u{2581}";

/// A HF `tokenizer.json` for the GGUF's vocabulary (see the module docs).
pub fn hf_tokenizer_json(gguf: &GgufFile) -> Result<Value> {
    match req_str(gguf, "tokenizer.ggml.model")? {
        "gpt2" => gpt2_tokenizer_json(gguf),
        "llama" => llama_tokenizer_json(gguf),
        other => Err(Error::format(
            gguf.path(),
            format!(
                "tokenizer.ggml.model is {other:?}, which is not supported \
                 (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece BPE)"
            ),
        )),
    }
}

/// Byte-level BPE. Control tokens (type 3) become special added tokens, user-defined ones (type
/// 4) plain added tokens. The pre-tokenizer follows `tokenizer.ggml.pre`; we know `smollm`
/// (digits split one by one, then GPT-2's byte-level regex) and `gpt-2`/`default` (byte-level
/// only). No BOS/EOS is added on encode, as in SmolLM2's own tokenizer.json.
fn gpt2_tokenizer_json(gguf: &GgufFile) -> Result<Value> {
    let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
    let merges = string_array(gguf, "tokenizer.ggml.merges")?;
    let types = token_types(gguf, tokens.len())?;
    let pre_tokenizer = gpt2_pre_tokenizer(gguf)?;
    let vocab = vocab_map(gguf, &tokens)?;
    let added_tokens: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter(|(_, (_, &ty))| ty == token_type::CONTROL || ty == token_type::USER_DEFINED)
        .map(|(id, (content, &ty))| {
            let special = ty == token_type::CONTROL;
            added_token(id, content, special, !special)
        })
        .collect();

    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": bpe_model(vocab, merges.into_iter().map(Value::from).collect(), None, false),
    }))
}

/// SentencePiece BPE, laid out as HF's Llama 2 tokenizer.json: normalizer `Prepend "▁"` (when
/// `add_space_prefix`, default true) then `Replace " " -> "▁"`, no pre-tokenizer, byte fallback,
/// decoder `Replace "▁" -> " "`, `ByteFallback`, `Fuse`, `Strip` (of the prefix space). Control and
/// unknown tokens are special added tokens, user-defined ones plain added tokens; all are matched
/// in the raw text, as HF's converter does. The post-processor adds BOS / EOS as
/// `add_bos_token` (default true) / `add_eos_token` (default false) say.
fn llama_tokenizer_json(gguf: &GgufFile) -> Result<Value> {
    let tokens = string_array(gguf, "tokenizer.ggml.tokens")?;
    let types = token_types(gguf, tokens.len())?;
    let vocab = vocab_map(gguf, &tokens)?;
    let merges = match gguf.get("tokenizer.ggml.merges") {
        Some(GgufValue::Array(m)) if !m.is_empty() => string_array(gguf, "tokenizer.ggml.merges")?
            .into_iter()
            .map(Value::from)
            .collect(),
        _ => merges_from_scores(&tokens, &scores(gguf, tokens.len())?)?,
    };
    let unk_id = match opt_usize(gguf, "tokenizer.ggml.unknown_token_id")? {
        Some(id) => Some(checked_id(
            gguf,
            "tokenizer.ggml.unknown_token_id",
            id,
            tokens.len(),
        )?),
        None => types.iter().position(|&t| t == token_type::UNKNOWN),
    };
    let byte_fallback = types.contains(&token_type::BYTE) || vocab.contains_key("<0x00>");
    let add_space_prefix = opt_bool(gguf, "tokenizer.ggml.add_space_prefix")?.unwrap_or(true);

    let added_tokens: Vec<Value> = tokens
        .iter()
        .zip(&types)
        .enumerate()
        .filter_map(|(id, (content, &ty))| match ty {
            token_type::CONTROL | token_type::UNKNOWN => {
                Some(added_token(id, content, true, false))
            }
            token_type::USER_DEFINED => Some(added_token(id, content, false, false)),
            _ => None,
        })
        .collect();
    let mut normalizers = Vec::new();
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPACE_MARK}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        normalizers.push(json!({"type": "Prepend", "prepend": SPACE_MARK}));
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    normalizers.push(json!({"type": "Replace", "pattern": {"String": " "}, "content": SPACE_MARK}));
    let unk_token = unk_id.map(|id| tokens[id]);

    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": null,
        "post_processor": bos_eos_post_processor(gguf, &tokens)?,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": bpe_model(vocab, merges, unk_token, byte_fallback),
    }))
}

/// The `model` object of tokenizer.json.
fn bpe_model(
    vocab: Map<String, Value>,
    merges: Vec<Value>,
    unk: Option<&str>,
    byte_fallback: bool,
) -> Value {
    json!({
        "type": "BPE",
        "dropout": null,
        "unk_token": unk,
        "continuing_subword_prefix": null,
        "end_of_word_suffix": null,
        "fuse_unk": byte_fallback,
        "byte_fallback": byte_fallback,
        "ignore_merges": false,
        "vocab": vocab,
        "merges": merges,
    })
}

/// token -> id; a repeated token is an error (ids would be ambiguous).
fn vocab_map(gguf: &GgufFile, tokens: &[&str]) -> Result<Map<String, Value>> {
    let mut vocab = Map::new();
    for (id, token) in tokens.iter().enumerate() {
        if vocab.insert(token.to_string(), json!(id)).is_some() {
            return Err(Error::format(
                gguf.path(),
                format!("token {token:?} appears twice in tokenizer.ggml.tokens"),
            ));
        }
    }
    Ok(vocab)
}

/// Merges "a b" from SentencePiece scores (see the module docs): for each token in id order,
/// every split into two vocab tokens, ordered by the ids of the parts; then all of them
/// stably sorted by the made token's score, highest first.
fn merges_from_scores(tokens: &[&str], scores: &[f32]) -> Result<Vec<Value>> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(id, &t)| (t, id)).collect();
    // (made token id, left id, right id, split byte offset)
    let mut merges: Vec<(usize, usize, usize, usize)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let start = merges.len();
        for (at, _) in token.char_indices().skip(1) {
            if let (Some(&left), Some(&right)) = (ids.get(&token[..at]), ids.get(&token[at..])) {
                merges.push((id, left, right, at));
            }
        }
        merges[start..].sort_by_key(|&(_, left, right, _)| (left, right));
    }
    // Scores were checked finite, so the comparison is a total order; the sort is stable.
    merges.sort_by(|a, b| scores[b.0].total_cmp(&scores[a.0]));
    Ok(merges
        .into_iter()
        .map(|(id, _, _, at)| Value::from(format!("{} {}", &tokens[id][..at], &tokens[id][at..])))
        .collect())
}

/// `tokenizer.ggml.scores`: one finite float per token.
fn scores(gguf: &GgufFile, n_tokens: usize) -> Result<Vec<f32>> {
    let key = "tokenizer.ggml.scores";
    let value = gguf.get(key).ok_or_else(|| {
        Error::format(
            gguf.path(),
            format!("{key} is missing; a SentencePiece (llama) vocabulary without merges needs its scores"),
        )
    })?;
    let scores: Option<Vec<f32>> = value
        .as_array()
        .and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect());
    match scores {
        Some(s) if s.len() == n_tokens && s.iter().all(|x| x.is_finite()) => Ok(s),
        _ => Err(Error::format(
            gguf.path(),
            format!("{key} must be an array of {n_tokens} finite numbers (one per token)"),
        )),
    }
}

/// HF's TemplateProcessing that puts BOS (and EOS) around a sequence, as the file asks.
fn bos_eos_post_processor(gguf: &GgufFile, tokens: &[&str]) -> Result<Value> {
    let mut single = Vec::new();
    let mut specials = Map::new();
    let wants = [
        (
            "tokenizer.ggml.add_bos_token",
            "tokenizer.ggml.bos_token_id",
            true,
        ),
        (
            "tokenizer.ggml.add_eos_token",
            "tokenizer.ggml.eos_token_id",
            false,
        ),
    ];
    for (i, (flag_key, id_key, default)) in wants.into_iter().enumerate() {
        if !opt_bool(gguf, flag_key)?.unwrap_or(default) {
            continue;
        }
        let Some(id) = opt_usize(gguf, id_key)? else {
            continue;
        };
        let token = tokens[checked_id(gguf, id_key, id, tokens.len())?];
        specials.insert(
            token.to_string(),
            json!({"id": token, "ids": [id], "tokens": [token]}),
        );
        let item = json!({"SpecialToken": {"id": token, "type_id": 0}});
        if i == 0 {
            single.push(item);
            single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
        } else {
            if single.is_empty() {
                single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
            }
            single.push(item);
        }
    }
    if single.is_empty() {
        return Ok(Value::Null);
    }
    Ok(json!({"type": "TemplateProcessing", "single": single, "special_tokens": specials}))
}

/// One entry of tokenizer.json's `added_tokens`.
fn added_token(id: usize, content: &str, special: bool, normalized: bool) -> Value {
    json!({
        "id": id,
        "content": content,
        "single_word": false,
        "lstrip": false,
        "rstrip": false,
        "normalized": normalized,
        "special": special,
    })
}

/// The pre-tokenizer named by `tokenizer.ggml.pre` (absent means llama.cpp's "default").
fn gpt2_pre_tokenizer(gguf: &GgufFile) -> Result<Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let pre = gguf
        .get("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    match pre {
        "smollm" => Ok(json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level],
        })),
        "gpt-2" | "default" => Ok(byte_level),
        other => Err(Error::config(
            format!(
                "{}: tokenizer.ggml.pre {other:?} is not a pre-tokenizer we know",
                gguf.path().display()
            ),
            "supported: smollm, gpt-2, default",
        )),
    }
}

/// `tokenizer.ggml.token_type` as integers (all normal when absent); one per token.
fn token_types(gguf: &GgufFile, n_tokens: usize) -> Result<Vec<i64>> {
    let Some(value) = gguf.get("tokenizer.ggml.token_type") else {
        return Ok(vec![token_type::NORMAL; n_tokens]);
    };
    let types: Option<Vec<i64>> = value
        .as_array()
        .and_then(|a| a.iter().map(GgufValue::as_i64).collect());
    match types {
        Some(t) if t.len() == n_tokens => Ok(t),
        _ => Err(Error::format(
            gguf.path(),
            format!("tokenizer.ggml.token_type must be an integer array of {n_tokens} entries"),
        )),
    }
}

/// A token id from metadata `key`, checked against the vocabulary.
fn checked_id(gguf: &GgufFile, key: &str, id: usize, n_tokens: usize) -> Result<usize> {
    if id < n_tokens {
        Ok(id)
    } else {
        Err(Error::format(
            gguf.path(),
            format!("{key} is {id}, beyond the {n_tokens} tokens of tokenizer.ggml.tokens"),
        ))
    }
}

fn opt_bool(gguf: &GgufFile, key: &str) -> Result<Option<bool>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| wrong_type(gguf, key, "bool", v)),
    }
}
