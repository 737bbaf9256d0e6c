//! One decoding step: the decoder on the new tokens alone, attending to the keys and values of
//! every earlier position held in a [`KvCache`] (`kv_cache.rs` says why), and appending the new
//! tokens' own. Greedy decoding (`generate.rs`) and beam search (`eval::beam`) run on it.

use super::kv_cache::KvCache;
use super::llama::{BlockInput, Llama};
use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};

impl Llama {
    /// An empty cache for `batch` sequences.
    pub fn new_cache(&self, batch: usize) -> KvCache {
        KvCache::new(self.blocks().len(), batch)
    }

    /// Runs the decoder on `ids` (batch x `seq` new tokens, at positions cache.len()..), appending
    /// their keys/values to the cache. Returns the logits at the last new position of each row,
    /// (batch, V). Use an inference tape.
    pub fn forward_cached(
        &self,
        tape: &mut Tape,
        ids: &[u32],
        seq: usize,
        cache: &mut KvCache,
    ) -> Result<Var> {
        let batch = cache.batch();
        if seq == 0 || ids.len() != batch * seq {
            return Err(Error::shape(
                "Llama::forward_cached",
                format!("{} ids for batch {batch} x {seq} new tokens", ids.len()),
            ));
        }
        let vocab = self.config.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Index {
                op: "Llama::forward_cached",
                index: bad as i64,
                bound: vocab,
            });
        }
        let positions: Vec<usize> = (cache.len()..cache.len() + seq).collect();
        let mut h = self.embed_ids(tape, ids, batch, seq)?; // (B,T,D)
        let ctx = BlockInput {
            positions: &positions,
            key_valid: None,
            dropout_seed: None, // decoding: no dropout
        };
        for (block, layer) in self.blocks().iter().zip(cache.advance(seq)) {
            h = self.block(tape, block, h, &ctx, Some(layer))?; // (B,T,D)
        }
        let last_rows: Vec<usize> = (0..batch).map(|b| b * seq + seq - 1).collect();
        self.head(tape, h, Some(&last_rows)) // (B,V)
    }
}
