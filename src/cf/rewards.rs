//! Collaborative token rewards (ILREC.md sections 4 and 5.3).
//!
//! The CF model scores whole items, the LLM emits tokens. At a response position with
//! ground-truth prefix `prefix` (the item tokens emitted so far), a candidate next token `v` is
//! rewarded by the CF probability mass of the items whose token sequence starts with
//! `(prefix, v)`:
//!
//! ```text
//! r[v] = ln sum_{i below (prefix, v)} p_CF(i | history)
//! ```
//!
//! which is the CF model's conditional probability of token `v` after `prefix`, up to the
//! constant `ln P(prefix)` (the softmax over K_t that consumes it cancels that constant).
//!
//! The items below a trie node are one contiguous slice ([`ItemTrie::items`]), so the rewards of
//! all children of a node cost one pass over the items below that node: nothing dense (no
//! token x item matrix) is ever built, and the CF probabilities can come straight from the
//! current batch's forward pass.

use crate::rec::ItemTrie;
use crate::{Error, Result};

/// For each token `v` of `tokens`, `ln(sum of p_item[i] over the items i below (prefix, v))`,
/// or `-inf` when `(prefix, v)` is not a path of the trie (no item there).
///
/// `prefix` = the ground-truth response tokens so far (empty at the first position); it must be
/// a path of the trie. `p_item` = `p_CF(i | history)` for every item id `0..trie.num_items()`.
/// `tokens` may be in any order; the result follows it (ILRec passes K_t ascending).
///
/// Masses are summed in f64: a node near the root holds thousands of items, and summing their
/// small probabilities in f32 would lose digits the logarithm then exposes.
pub fn token_log_rewards(
    trie: &ItemTrie,
    prefix: &[u32],
    tokens: &[u32],
    p_item: &[f32],
) -> Result<Vec<f32>> {
    if p_item.len() != trie.num_items() {
        return Err(Error::shape(
            "token_log_rewards",
            format!(
                "p_item has {} entries, the trie has {} items",
                p_item.len(),
                trie.num_items()
            ),
        ));
    }
    let node = trie.walk(prefix).ok_or_else(|| {
        Error::config(
            format!("token_log_rewards: prefix {prefix:?} is not a path of the item trie"),
            "the prefix must be the ground-truth item's tokens emitted so far",
        )
    })?;
    Ok(tokens
        .iter()
        .map(|&token| match trie.child(node, token) {
            Some(child) => log_mass(trie.items(child), p_item),
            None => f32::NEG_INFINITY,
        })
        .collect())
}

/// ln of the summed probability of `items` (ids checked by the trie's construction).
fn log_mass(items: &[u32], p_item: &[f32]) -> f32 {
    let mass: f64 = items.iter().map(|&i| p_item[i as usize] as f64).sum();
    mass.ln() as f32
}

/// The rewards of several response positions that share one probability row (the positions of
/// one training example: same history, growing prefix). `positions[j] = (prefix, tokens)`.
pub fn token_log_rewards_for_positions(
    trie: &ItemTrie,
    positions: &[(&[u32], &[u32])],
    p_item: &[f32],
) -> Result<Vec<Vec<f32>>> {
    positions
        .iter()
        .map(|&(prefix, tokens)| token_log_rewards(trie, prefix, tokens, p_item))
        .collect()
}
