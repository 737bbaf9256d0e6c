//! Trie-constrained beam search (ILREC.md section 7).
//!
//! Every beam is a prefix of some item's token sequence; a beam that appends EOS has spelled a
//! whole item and is finished. Because decoding can only follow trie edges, every finished beam is
//! a real, distinct item, so the invalid-item rate is 0 by construction (we still count it).
//!
//! Scores are sequence log-probabilities under the model's full-vocabulary softmax (as HF's
//! `prefix_allowed_tokens_fn` decoding does), ties broken by lower item id / token id, so the
//! search is deterministic. The model side is abstracted by [`PrefixScorer`], which owns the KV
//! cache: `start` encodes the prompt once, `step` reorders the cache to the surviving beams and
//! appends one token to each.
//!
//! Excluded items (the user's history under `--exclude-history`, `rec::protocol`): the search
//! runs as if they were not in the trie. A finished beam that spells an excluded item is
//! dropped before the beams are chosen, and so is any prefix below which every item is
//! excluded, so no beam slot is spent on them and the search still returns `num_beams` items
//! whenever the trie holds that many others. With nothing excluded the search is unchanged.

use crate::error::Result;
use crate::rec::trie::{ItemTrie, NodeId};

/// The model as beam search sees it.
pub trait PrefixScorer {
    /// Encodes the prompt; returns log-probabilities of the first response token (one per vocab id).
    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>>;
    /// Beam i of the new step continues beam `parents[i]` of the previous step with `tokens[i]`.
    /// Returns one row of next-token log-probabilities per new beam.
    fn step(&mut self, parents: &[usize], tokens: &[u32]) -> Result<Vec<Vec<f32>>>;
}

/// A finished beam: an item and its sequence log-probability.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoredItem {
    pub item: u32,
    pub log_prob: f32,
}

struct Beam {
    node: NodeId,
    log_prob: f32,
}

/// Runs constrained beam search with `num_beams` beams; returns up to `num_beams` items sorted by
/// descending log-probability (ties: lower item id first).
pub fn beam_search(
    scorer: &mut dyn PrefixScorer,
    trie: &ItemTrie,
    prompt: &[u32],
    num_beams: usize,
) -> Result<Vec<ScoredItem>> {
    beam_search_excluding(scorer, trie, prompt, num_beams, &[])
}

/// Whether some item below `node` is not `excluded` (sorted). Stops at the first such item,
/// which is almost always the first one looked at.
fn leads_to_rankable(trie: &ItemTrie, node: NodeId, excluded: &[u32]) -> bool {
    trie.items(node)
        .iter()
        .any(|item| excluded.binary_search(item).is_err())
}

/// [`beam_search`] over the trie without the `excluded` items (sorted ascending): none of them
/// is returned, and up to `num_beams` others are.
pub fn beam_search_excluding(
    scorer: &mut dyn PrefixScorer,
    trie: &ItemTrie,
    prompt: &[u32],
    num_beams: usize,
    excluded: &[u32],
) -> Result<Vec<ScoredItem>> {
    let mut rows = vec![scorer.start(prompt)?];
    let mut beams = vec![Beam {
        node: trie.root(),
        log_prob: 0.0,
    }];
    let mut finished: Vec<ScoredItem> = Vec::new();
    while !beams.is_empty() {
        // Expand every beam along its trie edges: (score, parent beam, token, child node).
        let mut cands: Vec<(f32, usize, u32, NodeId)> = Vec::new();
        for (b, beam) in beams.iter().enumerate() {
            for &(token, child) in trie.children(beam.node) {
                if excluded.is_empty() || leads_to_rankable(trie, child, excluded) {
                    cands.push((beam.log_prob + rows[b][token as usize], b, token, child));
                }
            }
        }
        // Best first; ties by parent beam then token, both of which are ordered deterministically.
        cands.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        cands.truncate(num_beams);
        let (mut parents, mut tokens, mut next) = (Vec::new(), Vec::new(), Vec::new());
        for (score, parent, token, child) in cands {
            match trie.item_at_leaf(child) {
                Some(item) => finished.push(ScoredItem {
                    item,
                    log_prob: score,
                }),
                None => {
                    parents.push(parent);
                    tokens.push(token);
                    next.push(Beam {
                        node: child,
                        log_prob: score,
                    });
                }
            }
        }
        // Log-probabilities only fall: once the best active beam cannot enter the top list, stop.
        finished.sort_by(|x, y| y.log_prob.total_cmp(&x.log_prob).then(x.item.cmp(&y.item)));
        finished.truncate(num_beams);
        let best_active = next
            .iter()
            .map(|b| b.log_prob)
            .fold(f32::NEG_INFINITY, f32::max);
        if next.is_empty()
            || (finished.len() == num_beams && best_active < finished[num_beams - 1].log_prob)
        {
            break;
        }
        rows = scorer.step(&parents, &tokens)?;
        beams = next;
    }
    Ok(finished)
}
