//! Per-user ranks: for every user of a split, the 0-based rank of the target in a method's
//! list, under an evaluation protocol (`rec::Protocol`). Every metric of a table is a mean over these
//! ([`Ranks::metrics`] runs the same `RankingMetrics` as every table), so a rank list is all
//! anyone needs to recompute a row or to resample users (`study`'s paired bootstrap).
//!
//! The LLM rows get their ranks from beam search (`EvalOutcome::ranks`, the search itself
//! skipping the excluded items); the two baselines rank every item here, each sample's
//! [`Exclusions`] taken out (none under `Protocol::AllItems`; under `Protocol::ExcludeHistory`
//! every item of the user's sequence before the target, as `rec::protocol` defines it).

use crate::cf::sasrec::EVAL_BATCH;
use crate::cf::{rank_in_row_excluding, SasRec};
use crate::rec::protocol::rank_excluding;
use crate::rec::{Exclusions, MetricsMean, Popularity, RankingMetrics, Sample};
use crate::{Error, Result};

/// One method's ranks on one split, in the split's user order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranks {
    /// 0-based rank of each user's target; None when the method's list does not hold it (beam
    /// search returns `beams` items; an excluded target is never ranked).
    pub ranks: Vec<Option<usize>>,
    /// Returned entries that were not real, distinct items (0 for the baselines).
    pub invalid_rate: f64,
}

impl Ranks {
    /// Hit@K and NDCG@K means over the users, by the code every table uses.
    pub fn metrics(&self) -> MetricsMean {
        let mut m = RankingMetrics::new();
        for &r in &self.ranks {
            m.add(r);
        }
        m.mean()
    }
}

/// The popularity ranking's rank of each sample's target, sample i's excluded items
/// (`excluded.of(i)`) taken out of the one shared ranking first.
pub fn popularity_ranks(
    pop: &Popularity,
    samples: &[Sample],
    excluded: &Exclusions,
) -> Result<Ranks> {
    excluded.check_len(samples.len())?;
    let ranks = samples
        .iter()
        .enumerate()
        .map(|(i, s)| rank_excluding(s.target, &pop.ranking, excluded.of(i)))
        .collect();
    Ok(Ranks {
        ranks,
        invalid_rate: 0.0,
    })
}

/// SASRec's rank of each sample's target over every item (ties by lowest id, as
/// `SasRec::evaluate`), less the excluded items of the sample that beat it.
pub fn sasrec_ranks(sasrec: &SasRec, samples: &[Sample], excluded: &Exclusions) -> Result<Ranks> {
    excluded.check_len(samples.len())?;
    let n = sasrec.config.num_items;
    let mut ranks = Vec::with_capacity(samples.len());
    for (c, chunk) in samples.chunks(EVAL_BATCH).enumerate() {
        let histories: Vec<&[u32]> = chunk.iter().map(|s| s.history.as_slice()).collect();
        let scores = sasrec.scores(&histories)?;
        for (j, (s, row)) in chunk.iter().zip(scores.data()?.chunks_exact(n)).enumerate() {
            let target = s.target as usize;
            if target >= n {
                return Err(Error::Index {
                    op: "sasrec_ranks",
                    index: s.target as i64,
                    bound: n,
                });
            }
            let skip = excluded.of(c * EVAL_BATCH + j);
            ranks.push(rank_in_row_excluding(row, target, skip));
        }
    }
    Ok(Ranks {
        ranks,
        invalid_rate: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::Protocol;

    fn sample(history: &[u32], target: u32) -> Sample {
        Sample {
            user: 0,
            history: history.to_vec(),
            target,
        }
    }

    #[test]
    fn popularity_ranks_skip_the_excluded_items() {
        let pop = Popularity {
            counts: vec![1, 5, 3, 0],
            ranking: vec![1, 2, 0, 3],
        };
        let samples = [sample(&[1], 0), sample(&[2, 0], 0), sample(&[3], 3)];
        let all = popularity_ranks(&pop, &samples, &Exclusions::all_items(3)).unwrap();
        assert_eq!(all.ranks, vec![Some(2), Some(2), Some(3)]);
        let lists = vec![vec![1], vec![2], vec![3]];
        let excluded = Exclusions::from_lists(Protocol::ExcludeHistory, lists);
        let ex = popularity_ranks(&pop, &samples, &excluded).unwrap();
        assert_eq!(ex.ranks, vec![Some(1), Some(1), None]);
        // Hit@1 = 0, Hit@5 = 1 under all-items; NDCG@5 = mean of 1/log2(4), 1/log2(4), 1/log2(5).
        let m = all.metrics();
        assert_eq!((m.hit_at(1), m.hit_at(5)), (Some(0.0), Some(1.0)));
        let want = (2.0 / 4f64.log2() + 1.0 / 5f64.log2()) / 3.0;
        assert!((m.ndcg_at(5).unwrap() - want).abs() < 1e-12);
        assert!(popularity_ranks(&pop, &samples, &Exclusions::all_items(2)).is_err());
    }
}
