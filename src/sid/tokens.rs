//! SID tokens: level k, code c is the added token `<a_c>`, `<b_c>`, ... (LC-Rec's spelling), so
//! an item with codes (12, 3, 7) is written `<a_12><b_3><c_7>`.
//!
//! [`SidVocab::register`] adds every token of every level to a [`Tokenizer`] as an ordinary
//! (non-special) added token: prompts holding SIDs tokenise to exactly one id per code, and
//! decoding writes the tokens back. [`extend_model_vocab`] then gives the model the new rows
//! (mean of the existing rows plus small seeded noise, ILREC.md section 4).

use crate::model::llama::Llama;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// One letter per level.
pub const MAX_LEVELS: usize = 26;

/// The token of code `code` at level `level` (0-based): `<a_12>`.
pub fn sid_token(level: usize, code: u32) -> String {
    let letter = (b'a' + (level % MAX_LEVELS) as u8) as char;
    format!("<{letter}_{code}>")
}

/// Parses a SID token into (level, code); None if it is not of the form `<x_N>`.
pub fn parse_sid_token(token: &str) -> Option<(usize, u32)> {
    let inner = token.strip_prefix('<')?.strip_suffix('>')?;
    let (letter, code) = inner.split_once('_')?;
    let mut chars = letter.chars();
    let (Some(l @ 'a'..='z'), None) = (chars.next(), chars.next()) else {
        return None;
    };
    if code.is_empty()
        || !code.bytes().all(|b| b.is_ascii_digit())
        || (code.len() > 1 && code.starts_with('0'))
    {
        return None;
    }
    Some(((l as u8 - b'a') as usize, code.parse().ok()?))
}

/// The text of one SID: its tokens, concatenated.
pub fn sid_text(codes: &[u32]) -> String {
    codes
        .iter()
        .enumerate()
        .map(|(level, &c)| sid_token(level, c))
        .collect()
}

/// The token ids of the SID tokens in one tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct SidVocab {
    /// `ids[level][code]`.
    pub ids: Vec<Vec<u32>>,
}

impl SidVocab {
    /// Adds `<a_0>..<a_{n0-1}>, <b_0>.., ...` to `tokenizer` (level by level, code by code, so
    /// the ids are consecutive when the tokens are new) for `codes_per_level[level]` codes.
    pub fn register(tokenizer: &mut Tokenizer, codes_per_level: &[usize]) -> Result<SidVocab> {
        if codes_per_level.is_empty()
            || codes_per_level.len() > MAX_LEVELS
            || codes_per_level.contains(&0)
        {
            return Err(Error::config(
                format!("SID vocabulary with codes per level {codes_per_level:?}"),
                "1..=26 levels, each with >= 1 code",
            ));
        }
        let mut ids = Vec::with_capacity(codes_per_level.len());
        for (level, &n) in codes_per_level.iter().enumerate() {
            let tokens: Vec<String> = (0..n as u32).map(|c| sid_token(level, c)).collect();
            ids.push(tokenizer.add_tokens(&tokens, false));
        }
        Ok(SidVocab { ids })
    }

    pub fn levels(&self) -> usize {
        self.ids.len()
    }

    /// Every SID token id (CPD's item vocabulary), level by level.
    pub fn all_ids(&self) -> Vec<u32> {
        self.ids.iter().flatten().copied().collect()
    }

    /// Token ids of one item's SID (without EOS).
    pub fn item_tokens(&self, codes: &[u32]) -> Result<Vec<u32>> {
        codes
            .iter()
            .enumerate()
            .map(|(level, &c)| {
                self.ids
                    .get(level)
                    .and_then(|l| l.get(c as usize))
                    .copied()
                    .ok_or_else(|| {
                        Error::config(
                            format!(
                                "SID code {} has no token (level {level} of {})",
                                sid_token(level, c),
                                self.ids.len()
                            ),
                            "register the SID vocabulary with the codes per level of these SIDs",
                        )
                    })
            })
            .collect()
    }

    /// Every item's token sequence (the input of `rec::ItemTrie::build`, which appends EOS).
    pub fn item_sequences(&self, sids: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
        sids.iter().map(|c| self.item_tokens(c)).collect()
    }
}

/// Grows the model's embedding (and untied LM head) to the tokenizer's size, new rows = mean of
/// the existing rows plus small noise from `seed` ([`Llama::resize_vocab`]). A model whose
/// vocabulary is already at least that large (padded tables, e.g. Qwen) is left alone.
/// Returns the number of rows added.
pub fn extend_model_vocab(model: &mut Llama, tokenizer: &Tokenizer, seed: u64) -> Result<usize> {
    let (old, new) = (model.config.vocab_size, tokenizer.vocab_size());
    if new <= old {
        return Ok(0);
    }
    model.resize_vocab(new, seed)?;
    Ok(new - old)
}
