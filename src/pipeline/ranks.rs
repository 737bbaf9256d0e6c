//! Per-user ranks: for every user of a split, the 0-based rank of the target in a method's
//! list, under an evaluation [`Protocol`]. Every metric of a table is a mean over these
//! ([`Ranks::metrics`] runs the same `RankingMetrics` as every table), so a rank list is all
//! anyone needs to recompute a row or to resample users (`study`'s paired bootstrap).
//!
//! The LLM rows get their ranks from beam search (`EvalOutcome::ranks`); the two baselines
//! rank every item here, with the history left out under [`Protocol::ExcludeHistory`].

use crate::cf::sasrec::EVAL_BATCH;
use crate::cf::{rank_in_row, SasRec};
use crate::rec::{MetricsMean, Popularity, RankingMetrics, Sample};
use crate::{Error, Result};

/// Which items compete with the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Every item, the user's own history included: the ILRec / LC-Rec protocol, `train`'s.
    AllItems,
    /// The items of the sample's history (as the split keeps it, at most 20) never come back:
    /// `eval --exclude-history`. The RecBole-compatibility work defines RecBole's full-sort
    /// protocol over the whole sequence before the target; until it lands this is the
    /// pipeline's exclusion, and the results say which one they used by this name.
    ExcludeHistory,
}

impl Protocol {
    pub const BOTH: [Protocol; 2] = [Protocol::AllItems, Protocol::ExcludeHistory];

    /// `all-items` or `exclude-history` (results files, flags).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::AllItems => "all-items",
            Protocol::ExcludeHistory => "exclude-history",
        }
    }

    pub fn parse(s: &str) -> Result<Protocol> {
        Protocol::BOTH
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::config(
                    format!("protocol `{s}`: unknown"),
                    "use all-items or exclude-history",
                )
            })
    }

    /// The items sample `s` must not get back under this protocol.
    pub fn excluded(self, s: &Sample) -> &[u32] {
        match self {
            Protocol::AllItems => &[],
            Protocol::ExcludeHistory => &s.history,
        }
    }
}

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

/// The popularity ranking's rank of each sample's target; under `ExcludeHistory` the history's
/// items are taken out of the one shared ranking first.
pub fn popularity_ranks(pop: &Popularity, samples: &[Sample], protocol: Protocol) -> Ranks {
    let ranks = samples
        .iter()
        .map(|s| {
            let excluded = protocol.excluded(s);
            if excluded.contains(&s.target) {
                return None;
            }
            let at = pop.ranking.iter().position(|&i| i == s.target)?;
            let skipped = pop.ranking[..at]
                .iter()
                .filter(|i| excluded.contains(i))
                .count();
            Some(at - skipped)
        })
        .collect();
    Ranks {
        ranks,
        invalid_rate: 0.0,
    }
}

/// SASRec's rank of each sample's target over every item (ties by lowest id, as
/// `SasRec::evaluate`), less the excluded items that beat it.
pub fn sasrec_ranks(sasrec: &SasRec, samples: &[Sample], protocol: Protocol) -> Result<Ranks> {
    let n = sasrec.config.num_items;
    let mut ranks = Vec::with_capacity(samples.len());
    for chunk in samples.chunks(EVAL_BATCH) {
        let histories: Vec<&[u32]> = chunk.iter().map(|s| s.history.as_slice()).collect();
        let scores = sasrec.scores(&histories)?;
        for (s, row) in chunk.iter().zip(scores.data()?.chunks_exact(n)) {
            let target = s.target as usize;
            if target >= n {
                return Err(Error::Index {
                    op: "sasrec_ranks",
                    index: s.target as i64,
                    bound: n,
                });
            }
            ranks.push(rank_excluding(row, target, protocol.excluded(s)));
        }
    }
    Ok(Ranks {
        ranks,
        invalid_rate: 0.0,
    })
}

/// [`rank_in_row`] without the `excluded` items (each counted once): None when the target is
/// one of them.
fn rank_excluding(row: &[f32], target: usize, excluded: &[u32]) -> Option<usize> {
    let mut seen = excluded.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.binary_search(&(target as u32)).is_ok() {
        return None;
    }
    let s = row[target];
    let beats = |&e: &u32| {
        let e = e as usize;
        e < row.len() && (row[e] > s || (row[e] == s && e < target))
    };
    Some(rank_in_row(row, target) - seen.iter().filter(|e| beats(e)).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(history: &[u32], target: u32) -> Sample {
        Sample {
            user: 0,
            history: history.to_vec(),
            target,
        }
    }

    #[test]
    fn excluded_items_ahead_of_the_target_move_it_up() {
        // Scores: item 2 best, then 0 and 3 tied, then 1. Target 3 is at rank 2 (2 and 0,
        // the lower id of the tie, come first).
        let row = [0.5, 0.1, 0.9, 0.5];
        assert_eq!(rank_in_row(&row, 3), 2);
        assert_eq!(rank_excluding(&row, 3, &[]), Some(2));
        assert_eq!(rank_excluding(&row, 3, &[2, 2]), Some(1));
        assert_eq!(rank_excluding(&row, 3, &[0, 1, 2]), Some(0));
        assert_eq!(rank_excluding(&row, 3, &[3]), None);
    }

    #[test]
    fn popularity_ranks_skip_the_history_under_exclude_history() {
        let pop = Popularity {
            counts: vec![1, 5, 3, 0],
            ranking: vec![1, 2, 0, 3],
        };
        let samples = [sample(&[1], 0), sample(&[2, 0], 0), sample(&[3], 3)];
        let all = popularity_ranks(&pop, &samples, Protocol::AllItems);
        assert_eq!(all.ranks, vec![Some(2), Some(2), Some(3)]);
        let ex = popularity_ranks(&pop, &samples, Protocol::ExcludeHistory);
        assert_eq!(ex.ranks, vec![Some(1), None, None]);
        // Hit@1 = 0, Hit@5 = 1 under all-items; NDCG@5 = mean of 1/log2(4), 1/log2(4), 1/log2(5).
        let m = all.metrics();
        assert_eq!((m.hit_at(1), m.hit_at(5)), (Some(0.0), Some(1.0)));
        let want = (2.0 / 4f64.log2() + 1.0 / 5f64.log2()) / 3.0;
        assert!((m.ndcg_at(5).unwrap() - want).abs() < 1e-12);
    }

    #[test]
    fn protocol_names_parse_back() {
        for p in Protocol::BOTH {
            assert_eq!(Protocol::parse(p.name()).unwrap(), p);
        }
        assert!(Protocol::parse("some").is_err());
    }
}
