//! Leave-one-out split (ILREC.md section 1).
//!
//! For a user with chronological items `s[0..n]`, `n >= 3`:
//! - test: target `s[n-1]`, history `s[..n-1]`;
//! - validation: target `s[n-2]`, history `s[..n-2]`;
//! - training: for every `t` in `1..n-2`, target `s[t]`, history `s[..t]` (every prefix with at
//!   least one history item, before the validation item), so `n - 3` samples.
//!
//! Every history keeps only its most recent `max_history` items. Truncation never removes a
//! sample: a user's training samples are counted before it.
//!
//! Users with fewer than 3 interactions cannot give both a validation and a test sample; they
//! are left out of the split (their interactions still count in the data set, and their items
//! keep their ids). This is the convention behind the counts in `../shared/data/README.md`
//! (e.g. 3,231 loaded users, 3,228 split users for amazon18-office-products).

use super::dataset::Dataset;
use crate::{Error, Result};

/// One next-item example; ids are dense (see [`Dataset`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub user: u32,
    /// Oldest first, at most `max_history` items.
    pub history: Vec<u32>,
    pub target: u32,
}

/// The three splits. `valid` and `test` hold one sample per split user, in user order;
/// `train` holds each user's samples in time order, users in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<Sample>,
    pub valid: Vec<Sample>,
    pub test: Vec<Sample>,
    /// Users with fewer than 3 interactions, left out.
    pub skipped_users: usize,
}

/// The default history length (LC-Rec).
pub const DEFAULT_MAX_HISTORY: usize = 20;

/// Leave-one-out split of every user's sequence; `max_history >= 1`. An empty split (no user
/// with 3 interactions) is an error naming the interaction file.
pub fn leave_one_out(dataset: &Dataset, max_history: usize) -> Result<Split> {
    if max_history == 0 {
        return Err(Error::config(
            "max_history is 0",
            "use at least 1 (default 20)",
        ));
    }
    let mut split = Split {
        train: Vec::new(),
        valid: Vec::new(),
        test: Vec::new(),
        skipped_users: 0,
    };
    for (user, seq) in dataset.sequences.iter().enumerate() {
        let n = seq.len();
        if n < 3 {
            split.skipped_users += 1;
            continue;
        }
        let user = user as u32;
        for t in 1..n - 2 {
            split.train.push(sample(user, seq, t, max_history));
        }
        split.valid.push(sample(user, seq, n - 2, max_history));
        split.test.push(sample(user, seq, n - 1, max_history));
    }
    if split.test.is_empty() {
        return Err(Error::format(
            &dataset.interactions_path,
            format!(
                "no user has the 3 interactions a leave-one-out split needs ({} users, {} \
                 interactions after filtering)",
                dataset.num_users(),
                dataset.num_interactions()
            ),
        ));
    }
    Ok(split)
}

/// Target `seq[t]` with the at most `max_history` items before it.
fn sample(user: u32, seq: &[u32], t: usize, max_history: usize) -> Sample {
    let start = t.saturating_sub(max_history);
    Sample {
        user,
        history: seq[start..t].to_vec(),
        target: seq[t],
    }
}

impl Split {
    /// Mean history length of the training samples (after truncation); 0 when there are none.
    pub fn avg_train_history(&self) -> f64 {
        if self.train.is_empty() {
            return 0.0;
        }
        let total: usize = self.train.iter().map(|s| s.history.len()).sum();
        total as f64 / self.train.len() as f64
    }
}
