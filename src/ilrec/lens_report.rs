//! What the logit lens predicts, as top-k lists: for chosen blocks l and every position of one
//! sequence, the k tokens with the largest lens logits `z^l = W N(h^l)`.
//!
//! This is the computation behind the `lens` binary (watch a prediction form across layers) and
//! the fixture test against HF transformers. It runs on an inference tape: no gradients, and the
//! final head is applied to exactly the hidden states that are asked for.

use crate::autograd::Tape;
use crate::error::{Error, Result};
use crate::model::llama::{BatchInput, Llama};

/// The top-k of one position: token ids and their logits, by descending logit (ties: lower id
/// first). Both vectors have length min(k, vocab).
pub type TopK = (Vec<u32>, Vec<f32>);

/// For each block of `layers` (1..=L, in the order given), the top-`k` lens tokens at every
/// position of `ids`: `result[i] = (layers[i], one TopK per position)`. Layer L is the model's own
/// logits. Memory: the tape keeps each requested layer's (T, V) f32 logits until the end, i.e.
/// 4 * T * V bytes per layer (0.8 MB per token per layer for a 49,152-token vocabulary).
pub fn lens_top_k(
    model: &Llama,
    ids: &[u32],
    layers: &[usize],
    k: usize,
) -> Result<Vec<(usize, Vec<TopK>)>> {
    check_request(model, ids, layers, k)?;
    let num_blocks = model.config.num_hidden_layers;
    let seq = ids.len();
    let all_rows: Vec<usize> = (0..seq).collect();
    // The forward always applies the head to the last block; when layer L is not requested,
    // one row is enough to keep that cheap.
    let final_rows: &[usize] = if layers.contains(&num_blocks) {
        &all_rows
    } else {
        &all_rows[seq - 1..]
    };
    let mut tape = Tape::inference();
    let input = BatchInput::new(ids.to_vec(), 1, seq)?;
    let out = model.forward(&mut tape, &input, Some(final_rows))?;
    let vocab = model.config.vocab_size;
    let mut report = Vec::with_capacity(layers.len());
    for &layer in layers {
        let logits = if layer == num_blocks {
            out.logits
        } else {
            model.lens(&mut tape, &out, layer, None)? // (T, V)
        };
        let values = tape.value(logits).data()?;
        let per_position = values.chunks(vocab).map(|row| top_k(row, k)).collect();
        report.push((layer, per_position));
    }
    Ok(report)
}

/// Refuses empty input, k = 0 and layers outside 1..=L, with a hint.
fn check_request(model: &Llama, ids: &[u32], layers: &[usize], k: usize) -> Result<()> {
    let num_blocks = model.config.num_hidden_layers;
    if ids.is_empty() {
        return Err(Error::config(
            "the logit lens needs at least one token",
            "give a non-empty text",
        ));
    }
    if k == 0 {
        return Err(Error::config(
            "top-k must be at least 1",
            "use e.g. --top-k 5",
        ));
    }
    if layers.is_empty() {
        return Err(Error::config(
            "no lens layer requested",
            format!("name blocks in 1..={num_blocks}"),
        ));
    }
    if let Some(&bad) = layers.iter().find(|&&l| l == 0 || l > num_blocks) {
        return Err(Error::config(
            format!("lens layer {bad} is outside the model's blocks 1..={num_blocks}"),
            "layers are block indices counted from 1; the final layer is the number of blocks",
        ));
    }
    Ok(())
}

/// The `k` largest entries of `row` as (ids, values), by descending value, ties by lower id.
/// NaN ranks below every number, so a broken logit never hides a real prediction.
pub fn top_k(row: &[f32], k: usize) -> TopK {
    let key = |x: f32| if x.is_nan() { f32::NEG_INFINITY } else { x };
    let better = |a: &u32, b: &u32| {
        key(row[*b as usize])
            .total_cmp(&key(row[*a as usize]))
            .then(a.cmp(b))
    };
    let mut order: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(row.len());
    if k < order.len() {
        // Partition so the k best come first (in any order), then sort only those.
        order.select_nth_unstable_by(k, better);
        order.truncate(k);
    }
    order.sort_unstable_by(better);
    let values = order.iter().map(|&i| row[i as usize]).collect();
    (order, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_sorts_by_value_then_lower_id() {
        let row = [1.0, 5.0, 3.0, 5.0, f32::NAN, -2.0];
        let (ids, values) = top_k(&row, 3);
        assert_eq!(ids, vec![1, 3, 2]);
        assert_eq!(values, vec![5.0, 5.0, 3.0]);
        // k larger than the row: every entry, NaN last.
        let (ids, _) = top_k(&row, 10);
        assert_eq!(ids, vec![1, 3, 2, 0, 5, 4]);
    }

    #[test]
    fn top_k_matches_a_full_sort_on_many_ties() {
        // Values in a handful of levels, so ties at the cut are certain.
        let row: Vec<f32> = (0..1000u32).map(|i| ((i * 7919) % 13) as f32).collect();
        let mut naive: Vec<u32> = (0..1000).collect();
        naive.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        for k in [1, 7, 76, 77, 78, 500] {
            assert_eq!(top_k(&row, k).0, naive[..k].to_vec(), "k = {k}");
        }
    }
}
