//! The Llama as a [`PrefixScorer`] for constrained beam search, with a KV cache.
//!
//! `start` runs the prompt once (batch 1) and keeps every block's keys and values; each `step`
//! first reorders the cache to the surviving beams (beam i continues beam `parents[i]`), then runs
//! only the beams' one new token through the model (batch = beams, 1 position) against the cached
//! keys and values ([`Llama::forward_cached`]), so a step costs O(prompt length) per beam rather
//! than a full forward. Each call uses a fresh inference tape: nothing accumulates across steps.

use super::beam::PrefixScorer;
use crate::autograd::Tape;
use crate::model::kv_cache::KvCache;
use crate::model::llama::Llama;
use crate::{Error, Result};

/// A [`PrefixScorer`] over a Llama with a KV cache (one prompt at a time).
pub struct LlamaScorer<'a> {
    model: &'a Llama,
    cache: Option<KvCache>,
}

impl<'a> LlamaScorer<'a> {
    pub fn new(model: &'a Llama) -> LlamaScorer<'a> {
        LlamaScorer { model, cache: None }
    }

    /// Runs `ids` (rows x `seq` new tokens) after the cache; returns next-token log-probabilities
    /// after each row's last token, (rows, V) flattened.
    fn log_probs(&self, cache: &mut KvCache, ids: &[u32], seq: usize) -> Result<Vec<f32>> {
        let mut tape = Tape::inference();
        let logits = self.model.forward_cached(&mut tape, ids, seq, cache)?; // (rows, V)
        let log_probs = tape.log_softmax(logits)?;
        Ok(tape.value(log_probs).to_vec())
    }
}

impl PrefixScorer for LlamaScorer<'_> {
    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        let mut cache = self.model.new_cache(1);
        let row = self.log_probs(&mut cache, prompt, prompt.len())?;
        self.cache = Some(cache);
        Ok(row)
    }

    fn step(&mut self, parents: &[usize], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let mut cache = self.cache.take().ok_or_else(|| {
            Error::config("LlamaScorer::step before start", "call start(prompt) first")
        })?;
        cache.reorder(parents)?;
        let flat = self.log_probs(&mut cache, tokens, 1)?;
        self.cache = Some(cache);
        let vocab = self.model.config.vocab_size;
        Ok(flat.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }
}
