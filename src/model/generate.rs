//! Greedy decoding with the KV cache: encode the prompt once, then feed back one token at a time,
//! always taking the most likely next token (ties: lowest id).
//!
//! Each step runs the decoder on the single new token against the cached keys/values of every
//! earlier position (`Llama::forward_cached`), so a step costs O(position) attention plus the
//! fixed per-token matmuls, instead of re-running the whole sequence.

use super::kv_cache::KvCache;
use super::llama::Llama;
use crate::autograd::Tape;
use crate::error::{Error, Result};

/// Up to `max_new` tokens continuing `prompt_ids`. Generation stops early after producing any id
/// in `stop_ids`; that stop token is not included in the result.
pub fn greedy(
    model: &Llama,
    prompt_ids: &[u32],
    max_new: usize,
    stop_ids: &[u32],
) -> Result<Vec<u32>> {
    let mut generated = Vec::with_capacity(max_new);
    if max_new == 0 {
        return Ok(generated);
    }
    let mut decoder = GreedyDecoder::new(model, prompt_ids)?;
    while !stop_ids.contains(&decoder.next_token()) {
        generated.push(decoder.next_token());
        if generated.len() == max_new {
            break;
        }
        decoder.accept()?;
    }
    Ok(generated)
}

/// Greedy decoding one step at a time, so a caller can time the prompt (prefill) and each new
/// token apart, or stop on its own condition.
pub struct GreedyDecoder<'a> {
    model: &'a Llama,
    cache: KvCache,
    /// The most likely token after everything fed so far.
    next: u32,
}

impl<'a> GreedyDecoder<'a> {
    /// Runs the prompt through the model once, filling the cache, and predicts the first token.
    pub fn new(model: &'a Llama, prompt_ids: &[u32]) -> Result<GreedyDecoder<'a>> {
        if prompt_ids.is_empty() {
            return Err(Error::config(
                "greedy decoding: the prompt is empty",
                "generation needs at least one token to condition on",
            ));
        }
        let mut cache = model.new_cache(1);
        let mut tape = Tape::inference();
        let logits = model.forward_cached(&mut tape, prompt_ids, prompt_ids.len(), &mut cache)?; // (1, V)
        let next = argmax(tape.value(logits).data()?);
        Ok(GreedyDecoder { model, cache, next })
    }

    /// The predicted next token (not yet fed back).
    pub fn next_token(&self) -> u32 {
        self.next
    }

    /// Positions encoded so far (prompt + accepted tokens).
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Feeds the predicted token back and predicts the one after it.
    pub fn accept(&mut self) -> Result<()> {
        // A fresh tape per step holds only this step's activations: memory stays flat.
        let mut tape = Tape::inference();
        let logits = self
            .model
            .forward_cached(&mut tape, &[self.next], 1, &mut self.cache)?; // (1, V)
        self.next = argmax(tape.value(logits).data()?);
        Ok(())
    }
}

/// Index of the largest entry; ties (and an all-NaN row) give the lowest index.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        // Strict `>`: an equal later value never wins; NaN compares false and never wins.
        if x > row[best] || row[best].is_nan() && !x.is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::llama::BatchInput;

    /// The tiny-llama fixture directory (env `ILREC_FIXTURES` or ../shared/fixtures).
    fn tiny_llama() -> Llama {
        let dir = crate::fixtures::root().join("tiny-llama");
        Llama::from_dir(&dir).unwrap_or_else(|e| panic!("fixture {} must load: {e}", dir.display()))
    }

    /// The reference: re-run the full forward on the whole sequence for every new token.
    fn greedy_without_cache(model: &Llama, prompt: &[u32], max_new: usize) -> Vec<u32> {
        let mut seq = prompt.to_vec();
        for _ in 0..max_new {
            let mut tape = Tape::inference();
            let input = BatchInput::new(seq.clone(), 1, seq.len()).unwrap();
            let last = [seq.len() - 1];
            let out = model.forward(&mut tape, &input, Some(&last)).unwrap();
            seq.push(argmax(tape.value(out.logits).data().unwrap()));
        }
        seq[prompt.len()..].to_vec()
    }

    #[test]
    fn cached_greedy_equals_greedy_by_full_forward() {
        let model = tiny_llama();
        for prompt in [vec![5u32], vec![5, 17, 99, 3, 250, 42]] {
            let expected = greedy_without_cache(&model, &prompt, 12);
            assert_eq!(greedy(&model, &prompt, 12, &[]).unwrap(), expected);
            // A stop id ends generation before it is emitted.
            let stop = expected[3];
            let cut = expected.iter().position(|&t| t == stop).unwrap();
            assert_eq!(
                greedy(&model, &prompt, 12, &[stop]).unwrap(),
                expected[..cut]
            );
        }
    }

    #[test]
    fn argmax_takes_the_lowest_id_on_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 0.5]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }
}
