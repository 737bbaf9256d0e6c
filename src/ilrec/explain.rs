//! Why the model spelled an item the way it did, seen through the logit lens (`recommend
//! --explain`). At every response position of the item (each token the model chose on the way
//! to it, EOS included) and for every lens layer plus the final one:
//!
//! - the chosen token's logit `z^l[y]` and its rank among the candidates `C` (the trie children
//!   of the prefix, or every token with `--negatives-scope vocab`, as in training);
//! - the candidates that layer ranks above the chosen token (best first, the first few);
//!
//! and, once per position, ILRec's self-hard negatives `N_t = {v in C, v != y : zM[v] >= z[y] -
//! margin}` with `zM` the lens layers' ensemble: the tokens this model would be trained against
//! there (the trainer's own `mine_negatives`, so the rule cannot drift from training).

use super::gradients::NegativesScope;
use super::negatives::{Ensemble, PositionNegatives};
use super::step::{mine_negatives, MiningRow, MiningSettings};
use crate::autograd::Tape;
use crate::cpu::softmax::log_sum_exp;
use crate::model::llama::{BatchInput, Llama};
use crate::rec::ItemTrie;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The run's mining settings (its `config.json`) and how much to show.
pub struct ExplainSettings<'a> {
    /// S: the lens blocks (1..=L) whose ensemble proposes negatives.
    pub lens_layers: &'a [usize],
    pub ensemble: Ensemble,
    pub margin: f32,
    pub tau: f32,
    pub scope: NegativesScope,
    /// How many higher-ranked candidates each layer lists.
    pub show: usize,
}

/// One layer's view of one position.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerView {
    pub layer: usize,
    /// `z^l[y]`, the chosen token's logit at this layer.
    pub chosen_logit: f32,
    /// 1 + the number of candidates with a strictly larger logit.
    pub rank: usize,
    /// The first `show` of those candidates with their logits, best first (ties: lower id).
    pub above: Vec<(u32, f32)>,
    /// How many candidates (not the chosen token) this layer alone would make self-hard
    /// negatives: `z^l[v] >= z^L[y] - margin`, the mining rule with S = {l}.
    pub self_hard: usize,
}

/// One response position: the chosen token, the layers' views (lens layers ascending, the
/// final layer last), and ILRec's self-hard negatives there.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionView {
    pub chosen: u32,
    /// log softmax of the final logits at the chosen token: the position's share of the item's
    /// sequence log-probability (the positions sum to the beam search's score).
    pub log_prob: f32,
    pub candidates: usize,
    pub layers: Vec<LayerView>,
    pub negatives: PositionNegatives,
}

/// The lens view of `response` (an item's model ids, EOS included: `trie.item_seq(item)`)
/// after `prompt`, one [`PositionView`] per response token.
pub fn explain_response(
    model: &Llama,
    trie: &ItemTrie,
    prompt: &[u32],
    response: &[u32],
    s: &ExplainSettings,
) -> Result<Vec<PositionView>> {
    if prompt.is_empty() || response.is_empty() {
        return Err(Error::config(
            "explain needs a prompt and a response",
            "pass an item's trie sequence after its prompt",
        ));
    }
    let top = model.config.num_hidden_layers;
    let mut layers: Vec<usize> = s.lens_layers.iter().copied().chain([top]).collect();
    layers.sort_unstable();
    layers.dedup();
    // Row p-1+j of the sequence predicts response[j].
    let rows: Vec<usize> = (prompt.len() - 1..prompt.len() - 1 + response.len()).collect();
    let ids: Vec<u32> = prompt.iter().chain(response).copied().collect();
    let mut tape = Tape::inference();
    let out = model.forward(
        &mut tape,
        &BatchInput::new(ids.clone(), 1, ids.len())?,
        Some(&rows),
    )?;
    let mut logits: Vec<Tensor> = Vec::with_capacity(layers.len()); // each (n, V)
    for &layer in &layers {
        let var = match layer == top {
            true => out.logits,
            false => model.lens(&mut tape, &out, layer, Some(&rows))?,
        };
        logits.push(tape.value(var).clone());
    }
    let candidates = candidate_sets(trie, response, s.scope)?;
    let negatives = position_negatives(&layers, &logits, s, response, &candidates)?;
    let vocab = model.config.vocab_size;
    let all: Vec<u32> = (0..vocab as u32).collect();
    let final_rows = logits.last().map_or(Ok(&[][..]), Tensor::data)?;
    let mut views = Vec::with_capacity(response.len());
    for (j, (&y, negatives)) in response.iter().zip(negatives).enumerate() {
        let cands = candidates[j].as_deref().unwrap_or(&all);
        let final_row = &final_rows[j * vocab..(j + 1) * vocab];
        let threshold = final_row[y as usize] - s.margin;
        let mut layer_views = Vec::with_capacity(layers.len());
        for (&layer, values) in layers.iter().zip(&logits) {
            let row = &values.data()?[j * vocab..(j + 1) * vocab];
            let mut view = layer_view(layer, row, y, cands, s.show);
            view.self_hard = count_at_least(row, threshold, y, cands);
            layer_views.push(view);
        }
        views.push(PositionView {
            chosen: y,
            log_prob: final_row[y as usize] - log_sum_exp(final_row),
            candidates: cands.len(),
            layers: layer_views,
            negatives,
        });
    }
    Ok(views)
}

/// C at each position: the trie children of the prefix (None = every token, vocab scope).
fn candidate_sets(
    trie: &ItemTrie,
    response: &[u32],
    scope: NegativesScope,
) -> Result<Vec<Option<Vec<u32>>>> {
    (0..response.len())
        .map(|j| match scope {
            NegativesScope::Vocab => Ok(None),
            NegativesScope::Trie => match trie.walk(&response[..j]) {
                Some(node) => Ok(Some(trie.children(node).iter().map(|&(t, _)| t).collect())),
                None => Err(Error::config(
                    "the response is not a path of the item trie",
                    "explain an item's trie.item_seq",
                )),
            },
        })
        .collect()
}

/// ILRec's negatives at every position, mined from the lens layers (`layers` without the final
/// one unless it is itself a lens layer, as in the S = {L} ablation) against the final logits.
fn position_negatives(
    layers: &[usize],
    logits: &[Tensor],
    s: &ExplainSettings,
    response: &[u32],
    candidates: &[Option<Vec<u32>>],
) -> Result<Vec<PositionNegatives>> {
    let lens: Vec<&Tensor> = layers
        .iter()
        .zip(logits)
        .filter(|(l, _)| s.lens_layers.contains(l))
        .map(|(_, t)| t)
        .collect();
    let final_logits = logits.last().ok_or_else(|| Error::config("no layer", ""))?;
    let rows: Vec<MiningRow> = response
        .iter()
        .zip(candidates)
        .map(|(&target, c)| MiningRow {
            target,
            candidates: c.clone(),
        })
        .collect();
    // The explanation reads the full-vocabulary lens, so no column restriction.
    let settings = MiningSettings {
        ensemble: s.ensemble,
        margin: s.margin,
        tau: s.tau,
        columns: None,
    };
    mine_negatives(final_logits, &lens, &rows, settings)
}

/// The chosen token's logit and rank in `row` among `candidates`, and who ranks above it.
fn layer_view(layer: usize, row: &[f32], y: u32, candidates: &[u32], show: usize) -> LayerView {
    let chosen_logit = row[y as usize];
    let mut above: Vec<(u32, f32)> = candidates
        .iter()
        .filter(|&&c| c != y && row[c as usize] > chosen_logit)
        .map(|&c| (c, row[c as usize]))
        .collect();
    let rank = above.len() + 1;
    above.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    above.truncate(show);
    LayerView {
        layer,
        chosen_logit,
        rank,
        above,
        self_hard: 0, // set by the caller, which knows the final layer's logit of y
    }
}

/// Candidates other than `y` whose logit in `row` is at least `threshold`.
fn count_at_least(row: &[f32], threshold: f32, y: u32, candidates: &[u32]) -> usize {
    candidates
        .iter()
        .filter(|&&c| c != y && row[c as usize] >= threshold)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_view_ranks_the_chosen_token_among_the_candidates() {
        //          token:  0    1    2    3    4
        let row = [5.0f32, 1.0, 3.0, 4.0, 3.5];
        // Token 0 is not a candidate: it cannot rank above the chosen token 2.
        let v = layer_view(7, &row, 2, &[1, 2, 3, 4], 1);
        assert_eq!((v.layer, v.chosen_logit, v.rank), (7, 3.0, 3));
        assert_eq!(v.above, vec![(3, 4.0)]);
        let v = layer_view(7, &row, 3, &[1, 2, 3, 4], 5);
        assert_eq!((v.rank, v.above.len()), (1, 0));
    }

    #[test]
    fn self_hard_counts_candidates_at_or_above_the_threshold_but_not_the_target() {
        //          token:  0    1    2    3    4
        let row = [5.0f32, 1.0, 3.0, 4.0, 3.5];
        // Threshold 3.5 (= z^L[y] - margin): tokens 3 (4.0) and 4 (3.5, equal counts);
        // token 0 is above but not a candidate; the target 2 never counts.
        assert_eq!(count_at_least(&row, 3.5, 2, &[1, 2, 3, 4]), 2);
        assert_eq!(count_at_least(&row, 3.5, 3, &[1, 2, 3, 4]), 1);
        assert_eq!(count_at_least(&row, 9.0, 2, &[0, 1, 2, 3, 4]), 0);
    }
}
