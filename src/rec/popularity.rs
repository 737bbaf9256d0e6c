//! The popularity baseline: every user gets the same ranking, items by how often they occur in
//! the training split (most frequent first, ties by lowest id). [`Popularity::evaluate`] ranks
//! every item (the user's own history included); [`Popularity::evaluate_excluding`] takes the
//! protocol's exclusions out of each user's ranking first (`protocol.rs`). Scored through the
//! same [`rank_of`] / [`RankingMetrics`] code as every other model, so it is also a check of
//! that code.
//!
//! "Training split" = for each user in the split (at least 3 interactions), every interaction
//! before the validation item: exactly the items that the training samples' histories and
//! targets cover, counted once per interaction, before history truncation.

use super::dataset::Dataset;
use super::metrics::{rank_of, RankingMetrics};
use super::protocol::{rank_excluding, Exclusions};
use super::split::Sample;
use crate::Result;

#[derive(Debug, Clone)]
pub struct Popularity {
    /// `counts[item]` = occurrences in the training split.
    pub counts: Vec<u64>,
    /// All items, most popular first.
    pub ranking: Vec<u32>,
}

impl Popularity {
    pub fn from_dataset(dataset: &Dataset) -> Popularity {
        let mut counts = vec![0u64; dataset.num_items()];
        for seq in dataset.sequences.iter().filter(|s| s.len() >= 3) {
            for &item in &seq[..seq.len() - 2] {
                counts[item as usize] += 1;
            }
        }
        let mut ranking: Vec<u32> = (0..counts.len() as u32).collect();
        // Stable sort keeps ties in id order.
        ranking.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]));
        Popularity { counts, ranking }
    }

    /// Hit/NDCG of the popularity ranking on `samples` (one per user).
    pub fn evaluate(&self, samples: &[Sample]) -> RankingMetrics {
        let mut metrics = RankingMetrics::new();
        for s in samples {
            metrics.add(rank_of(s.target, &self.ranking));
        }
        metrics
    }

    /// Hit/NDCG with `excluded.of(i)` taken out of sample i's ranking.
    pub fn evaluate_excluding(
        &self,
        samples: &[Sample],
        excluded: &Exclusions,
    ) -> Result<RankingMetrics> {
        excluded.check_len(samples.len())?;
        let mut metrics = RankingMetrics::new();
        for (i, s) in samples.iter().enumerate() {
            metrics.add(rank_excluding(s.target, &self.ranking, excluded.of(i)));
        }
        Ok(metrics)
    }
}
