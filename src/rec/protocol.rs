//! Which items a test user's ranking competes over: the evaluation protocol.
//!
//! - [`Protocol::AllItems`] (the default): every item is ranked, the user's own history
//!   included. This is the LC-Rec / ILRec protocol, and also what RecBole does for its
//!   *sequential* models (SASRec, GRU4Rec, ...: its full-sort loader passes no history mask
//!   for them).
//! - [`Protocol::ExcludeHistory`] (`--exclude-history`): every item the user interacted with
//!   before the target is removed from the ranking, so the target competes only with items
//!   the user has not seen. This is RecBole's full-sort protocol for its *general* models (Pop,
//!   BPR, ...), whose test ranking masks the training and validation items of the user.
//!
//! "Before the target" is the user's whole chronological sequence up to the target, not the
//! (possibly truncated) history a model reads: a test sample excludes every earlier item.
//! Repeated (user, item) pairs are removed at loading, so the target is never among them.
//!
//! [`Exclusions`] holds the excluded items of each sample of a list; every ranker (popularity,
//! SASRec, the LLM's beam search) takes one, so all methods are ranked alike.

use super::dataset::Dataset;
use super::split::Sample;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Protocol {
    #[default]
    AllItems,
    ExcludeHistory,
}

impl Protocol {
    /// Both protocols, all-items first.
    pub const BOTH: [Protocol; 2] = [Protocol::AllItems, Protocol::ExcludeHistory];

    /// [`Protocol::from_name`], an error naming the choices for anything else (flags, files).
    pub fn parse(s: &str) -> Result<Protocol> {
        Protocol::from_name(s).ok_or_else(|| {
            Error::config(
                format!("protocol `{s}`: unknown"),
                "use all-items or exclude-history",
            )
        })
    }

    /// The short name recorded in `config.json` and `results.json`.
    /// The protocol named by [`Protocol::name`] (`config.json`).
    pub fn from_name(name: &str) -> Option<Protocol> {
        [Protocol::AllItems, Protocol::ExcludeHistory]
            .into_iter()
            .find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::AllItems => "all-items",
            Protocol::ExcludeHistory => "exclude-history",
        }
    }

    /// One line for the results table.
    pub fn describe(self) -> &'static str {
        match self {
            Protocol::AllItems => {
                "ranking protocol: all-items (every item ranked, the user's history included: \
                 LC-Rec / ILRec, and RecBole's sequential models)"
            }
            Protocol::ExcludeHistory => {
                "ranking protocol: exclude-history (items the user interacted with before the \
                 target are not ranked: RecBole's general models, --exclude-history)"
            }
        }
    }
}

/// Per sample, the item ids its ranking leaves out (sorted ascending; empty under
/// [`Protocol::AllItems`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Exclusions {
    pub protocol: Protocol,
    lists: Vec<Vec<u32>>,
}

impl Exclusions {
    /// Nothing excluded, for `n` samples.
    pub fn all_items(n: usize) -> Exclusions {
        Exclusions {
            protocol: Protocol::AllItems,
            lists: vec![Vec::new(); n],
        }
    }

    /// The exclusions of `samples` under `protocol`, from each user's sequence in `dataset`.
    /// A sample whose target is not in its user's sequence is an error (it did not come from
    /// this data set's split).
    pub fn build(protocol: Protocol, dataset: &Dataset, samples: &[Sample]) -> Result<Exclusions> {
        if protocol == Protocol::AllItems {
            return Ok(Exclusions::all_items(samples.len()));
        }
        let lists = samples
            .iter()
            .map(|s| {
                let seq = dataset.sequences.get(s.user as usize).ok_or_else(|| {
                    Error::config(
                        format!("sample of user {} outside the data set", s.user),
                        "build exclusions from the data set the samples were split from",
                    )
                })?;
                let at = seq.iter().position(|&i| i == s.target).ok_or_else(|| {
                    Error::config(
                        format!("user {}'s sequence lacks the target {}", s.user, s.target),
                        "build exclusions from the data set the samples were split from",
                    )
                })?;
                let mut before = seq[..at].to_vec();
                before.sort_unstable();
                before.dedup();
                Ok(before)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Exclusions { protocol, lists })
    }

    /// Exclusions given as one list per sample (each sorted and deduplicated here).
    pub fn from_lists(protocol: Protocol, mut lists: Vec<Vec<u32>>) -> Exclusions {
        for l in &mut lists {
            l.sort_unstable();
            l.dedup();
        }
        Exclusions { protocol, lists }
    }

    /// The excluded items of sample `i`, sorted.
    pub fn of(&self, i: usize) -> &[u32] {
        &self.lists[i]
    }

    pub fn len(&self) -> usize {
        self.lists.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    /// The per-sample lists (for splitting across threads alongside the samples).
    pub fn lists(&self) -> &[Vec<u32>] {
        &self.lists
    }

    /// An error unless there is one list per sample.
    pub fn check_len(&self, samples: usize) -> Result<()> {
        if self.lists.len() != samples {
            return Err(Error::config(
                format!("{} exclusion lists for {samples} samples", self.lists.len()),
                "build the exclusions from the same samples that are evaluated",
            ));
        }
        Ok(())
    }
}

/// 0-based rank of `target` in `ranked` once the `excluded` items (sorted) are taken out, or
/// None if the target is absent or itself excluded.
pub fn rank_excluding(target: u32, ranked: &[u32], excluded: &[u32]) -> Option<usize> {
    if excluded.binary_search(&target).is_ok() {
        return None;
    }
    let mut rank = 0;
    for &item in ranked {
        if item == target {
            return Some(rank);
        }
        if excluded.binary_search(&item).is_err() {
            rank += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_parse_back() {
        for p in Protocol::BOTH {
            assert_eq!(Protocol::parse(p.name()).unwrap(), p);
        }
        assert!(Protocol::parse("some").is_err());
    }

    #[test]
    fn rank_skips_excluded_items_only() {
        let ranked = [4, 9, 2, 7, 1];
        assert_eq!(rank_excluding(7, &ranked, &[]), Some(3));
        assert_eq!(rank_excluding(7, &ranked, &[2, 9]), Some(1));
        assert_eq!(rank_excluding(7, &ranked, &[1, 3, 5]), Some(3)); // after or absent: no effect
        assert_eq!(rank_excluding(7, &ranked, &[7]), None);
        assert_eq!(rank_excluding(8, &ranked, &[]), None);
    }
}
