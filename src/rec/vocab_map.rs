//! A compact model vocabulary for a model trained from scratch in title mode.
//!
//! SmolLM2's tokenizer has 49,152 tokens, but the prompts and titles of a data set use only a
//! few thousand. A from-scratch model does not need rows for the others: its embedding and LM
//! head cover only the tokens that occur, which makes the head (the largest matmul of a small
//! model, and the one the ILRec lens layers repeat) about 10x cheaper. `VocabMap` renumbers
//! tokenizer ids to dense model ids and back. Model id order = ascending tokenizer id, so the
//! map is fixed by the set of tokens alone (deterministic across runs and resumes).
//!
//! A pretrained model keeps its full vocabulary: [`VocabMap::identity`].

use crate::{Error, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct VocabMap {
    /// model id -> tokenizer id (ascending).
    to_tokenizer: Vec<u32>,
    /// tokenizer id -> model id; empty for the identity map.
    to_model: HashMap<u32, u32>,
    identity: bool,
}

impl VocabMap {
    /// The map over exactly the tokens of `streams` plus `always` (EOS, pad).
    pub fn from_tokens<'a>(
        streams: impl IntoIterator<Item = &'a [u32]>,
        always: &[u32],
    ) -> VocabMap {
        let mut set: BTreeSet<u32> = always.iter().copied().collect();
        for s in streams {
            set.extend(s.iter().copied());
        }
        let to_tokenizer: Vec<u32> = set.into_iter().collect();
        let to_model = to_tokenizer
            .iter()
            .enumerate()
            .map(|(m, &t)| (t, m as u32))
            .collect();
        VocabMap {
            to_tokenizer,
            to_model,
            identity: false,
        }
    }

    /// Model ids = tokenizer ids (a pretrained model's full vocabulary).
    pub fn identity(vocab_size: usize) -> VocabMap {
        VocabMap {
            to_tokenizer: (0..vocab_size as u32).collect(),
            to_model: HashMap::new(),
            identity: true,
        }
    }

    /// Number of model ids.
    pub fn len(&self) -> usize {
        self.to_tokenizer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.to_tokenizer.is_empty()
    }

    /// The model id of a tokenizer id, if the model has it.
    pub fn model_id(&self, token: u32) -> Option<u32> {
        if self.identity {
            return ((token as usize) < self.len()).then_some(token);
        }
        self.to_model.get(&token).copied()
    }

    /// The tokenizer id of a model id.
    pub fn tokenizer_id(&self, model_id: u32) -> Option<u32> {
        self.to_tokenizer.get(model_id as usize).copied()
    }

    /// Maps a tokenizer id sequence to model ids; a token the model lacks is an error.
    pub fn to_model_ids(&self, tokens: &[u32]) -> Result<Vec<u32>> {
        tokens
            .iter()
            .map(|&t| {
                self.model_id(t).ok_or_else(|| {
                    Error::config(
                        format!("token id {t} is not in the model's vocabulary"),
                        "the compact vocabulary is built from the data set's prompts and titles; \
                         rebuild it for new text",
                    )
                })
            })
            .collect()
    }

    /// Maps model ids back to tokenizer ids (for decoding text).
    pub fn to_tokenizer_ids(&self, ids: &[u32]) -> Vec<u32> {
        ids.iter().filter_map(|&m| self.tokenizer_id(m)).collect()
    }

    /// `{"identity": bool, "tokenizer_ids": [..]}` (model id = position).
    pub fn save(&self, path: &Path) -> Result<()> {
        let value = serde_json::json!({
            "identity": self.identity,
            "tokenizer_ids": if self.identity { serde_json::json!(self.len()) } else { serde_json::json!(self.to_tokenizer) },
        });
        crate::files::write_atomic(path, (value.to_string() + "\n").as_bytes())
    }

    pub fn load(path: &Path) -> Result<VocabMap> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        let bad = || {
            Error::format(
                path,
                "expected {\"identity\": bool, \"tokenizer_ids\": ...}",
            )
        };
        let ids = &value["tokenizer_ids"];
        if value["identity"].as_bool().ok_or_else(bad)? {
            return Ok(VocabMap::identity(ids.as_u64().ok_or_else(bad)? as usize));
        }
        let tokens: Vec<u32> = ids
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|v| {
                v.as_u64()
                    .filter(|&x| x <= u32::MAX as u64)
                    .map(|x| x as u32)
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        Ok(VocabMap::from_tokens([tokens.as_slice()], &[]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_ids_follow_tokenizer_order_and_round_trip() {
        let map = VocabMap::from_tokens([&[900u32, 5, 77][..], &[5, 12][..]], &[0]);
        assert_eq!(map.len(), 5); // {0, 5, 12, 77, 900}
        assert_eq!(
            map.to_model_ids(&[0, 5, 12, 77, 900]).unwrap(),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(map.to_tokenizer_ids(&[4, 2]), vec![900, 12]);
        assert!(map.to_model_ids(&[6]).is_err());
        let path = std::env::temp_dir().join(format!("ilrec-vocab-{}.json", std::process::id()));
        map.save(&path).unwrap();
        assert_eq!(VocabMap::load(&path).unwrap(), map);
        let id = VocabMap::identity(10);
        id.save(&path).unwrap();
        assert_eq!(VocabMap::load(&path).unwrap(), id);
        assert_eq!(id.model_id(9), Some(9));
        assert_eq!(id.model_id(10), None);
        std::fs::remove_file(&path).unwrap();
    }
}
