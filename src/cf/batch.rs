//! Right-padded id batches for SASRec: training sequences (inputs and next-item targets at every
//! position) and scoring histories (inputs only).
//!
//! Ids inside the model are dataset item ids + 1; id 0 is padding. Sequences are **right**
//! padded: real items sit at positions `0..len`, padding after them. Under the causal mask a real
//! position only sees positions before it, so padding can never reach a real position and the
//! attention needs no key mask; padding positions compute garbage that no loss and no score
//! reads. Position ids count from the oldest item of the window (0 = oldest), as in RecBole, so a
//! training position t (which predicts item t+1 from items 0..=t) looks exactly like scoring a
//! history of t+1 items.

use crate::rec::IGNORE_INDEX;
use crate::{Error, Result};

/// Model id of padding.
pub const PAD: u32 = 0;

/// A (B, T) batch of model ids with position ids and, for training, targets.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    /// B.
    pub rows: usize,
    /// T = the longest row.
    pub len: usize,
    /// (B*T) model ids (item + 1, [`PAD`] after each row's end).
    pub ids: Vec<u32>,
    /// (B*T) position ids: 0..len_b in each row, 0 on padding.
    pub positions: Vec<u32>,
    /// Real length of each row (>= 1).
    pub lengths: Vec<usize>,
    /// (B*T) next-item targets as model ids, `IGNORE_INDEX` on padding (training only;
    /// empty for scoring batches).
    pub targets: Vec<i64>,
}

impl PaddedBatch {
    /// Training batch: each sequence (dataset ids, oldest first, >= 2 items) keeps its last
    /// `max_len + 1` items; the inputs are all but the last, the target at position t is item
    /// t + 1, so every one of the up to `max_len` positions carries a loss.
    pub fn training(seqs: &[&[u32]], max_len: usize, num_items: usize) -> Result<PaddedBatch> {
        let windows: Vec<&[u32]> = seqs
            .iter()
            .map(|s| &s[s.len().saturating_sub(max_len + 1)..])
            .collect();
        if let Some(b) = windows.iter().position(|w| w.len() < 2) {
            return Err(Error::config(
                format!("training sequence {b} has {} items", windows[b].len()),
                "a training sequence needs at least 2 items (one input, one target)",
            ));
        }
        let inputs: Vec<&[u32]> = windows.iter().map(|w| &w[..w.len() - 1]).collect();
        let mut batch = PaddedBatch::inputs(&inputs, num_items)?;
        batch.targets = vec![IGNORE_INDEX; batch.rows * batch.len];
        for (b, w) in windows.iter().enumerate() {
            let row = &mut batch.targets[b * batch.len..];
            for (t, &item) in w[1..].iter().enumerate() {
                row[t] = item as i64 + 1;
            }
        }
        Ok(batch)
    }

    /// Drops the loss of row `row`'s first positions, so that only items from its index
    /// `first_target` on are targets (the ones before are context only: `cf::windows`).
    pub fn context_only_before(&mut self, row: usize, first_target: usize) {
        let start = row * self.len;
        // Position t predicts item t + 1 of the row.
        let t_end = first_target.saturating_sub(1).min(self.len);
        self.targets[start..start + t_end].fill(IGNORE_INDEX);
    }

    /// Scoring batch: each history (dataset ids, oldest first, non-empty) keeps its last
    /// `max_len` items.
    pub fn histories(
        histories: &[&[u32]],
        max_len: usize,
        num_items: usize,
    ) -> Result<PaddedBatch> {
        if let Some(b) = histories.iter().position(|h| h.is_empty()) {
            return Err(Error::config(
                format!("history {b} of the batch is empty"),
                "SASRec scores the next item after at least one item",
            ));
        }
        let windows: Vec<&[u32]> = histories
            .iter()
            .map(|h| &h[h.len().saturating_sub(max_len)..])
            .collect();
        PaddedBatch::inputs(&windows, num_items)
    }

    /// Pads non-empty rows of dataset ids; checks every id against `num_items`.
    fn inputs(rows: &[&[u32]], num_items: usize) -> Result<PaddedBatch> {
        if rows.is_empty() {
            return Err(Error::config(
                "an empty batch",
                "pass at least one sequence",
            ));
        }
        let len = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        // (B*T) ids and positions, padding where a row is shorter than T.
        let mut ids = vec![PAD; rows.len() * len];
        let mut positions = vec![0u32; rows.len() * len];
        for (b, row) in rows.iter().enumerate() {
            for (t, &item) in row.iter().enumerate() {
                if item as usize >= num_items {
                    return Err(Error::Index {
                        op: "SASRec batch",
                        index: item as i64,
                        bound: num_items,
                    });
                }
                ids[b * len + t] = item + 1;
                positions[b * len + t] = t as u32;
            }
        }
        Ok(PaddedBatch {
            rows: rows.len(),
            len,
            ids,
            positions,
            lengths: rows.iter().map(|r| r.len()).collect(),
            targets: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_rows_are_truncated_shifted_and_right_padded() {
        let a: &[u32] = &[4, 5, 6, 7, 8];
        let b: &[u32] = &[1, 2];
        let batch = PaddedBatch::training(&[a, b], 3, 10).unwrap();
        // a keeps its last 4 items [5,6,7,8]: inputs 5,6,7 -> targets 6,7,8 (model ids +1).
        assert_eq!((batch.rows, batch.len), (2, 3));
        assert_eq!(batch.ids, vec![6, 7, 8, 2, 0, 0]);
        assert_eq!(batch.positions, vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(batch.targets, vec![7, 8, 9, 3, -100, -100]);
        assert_eq!(batch.lengths, vec![3, 1]);
    }

    #[test]
    fn context_only_positions_carry_no_target() {
        let a: &[u32] = &[1, 2, 3, 4];
        let mut batch = PaddedBatch::training(&[a, a], 3, 10).unwrap();
        // Row 0: items 3 and 4 are targets (from index 2), so position 0 (-> item 2) is context.
        batch.context_only_before(0, 2);
        batch.context_only_before(1, 1);
        assert_eq!(batch.targets, vec![-100, 4, 5, 3, 4, 5]);
    }

    #[test]
    fn histories_keep_the_most_recent_items() {
        let batch = PaddedBatch::histories(&[&[1, 2, 3], &[0]], 2, 4).unwrap();
        assert_eq!(batch.ids, vec![3, 4, 1, 0]);
        assert_eq!(batch.lengths, vec![2, 1]);
        assert!(batch.targets.is_empty());
        assert!(PaddedBatch::histories(&[&[]], 2, 4).is_err());
        assert!(PaddedBatch::histories(&[&[4]], 2, 4).is_err());
        assert!(PaddedBatch::training(&[&[1]], 2, 4).is_err());
    }
}
