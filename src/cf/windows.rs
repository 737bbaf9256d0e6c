//! Which parts of a user's training sequence one SASRec epoch reads.
//!
//! The model reads at most `max_len` items, so a training row is a window of at most
//! `max_len + 1` items: inputs are all but its last item, and the target at each position is the
//! next item (`batch.rs`). A user longer than that cannot fit one row, and there are two ways to
//! treat the rest:
//! - [`TrainOn::LastWindow`]: one row per user, the last `max_len + 1` items (the SASRec paper's
//!   training). Everything older is never trained on: on ml-latest-small, where a user's
//!   training sequence averages 132 items, that leaves out 68% of the (history, next item)
//!   pairs (60,250 of 88,059);
//! - [`TrainOn::AllWindows`] (default): the sequence is cut into consecutive windows from its
//!   end backwards, each starting at the previous one's first item, so every target of the user
//!   is trained on exactly once per epoch, as in RecBole (which makes every prefix a sample):
//!
//! ```text
//! items        0 1 2 3 4 5 6 7 8 9        max_len = 4
//! windows      0 1 | 1 2 3 4 5 | 5 6 7 8 9     -> targets 1, 2-5, 6-9 (full windows at the end)
//! ```
//!
//! A target early in a window sees fewer than `max_len` items of context (RecBole gives every
//! target its full `max_len` items); that is the price of one forward pass per window instead of
//! one per target (`max_len` times fewer).

/// The windows an epoch trains on (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainOn {
    LastWindow,
    AllWindows,
}

impl TrainOn {
    /// `last` or `all`, as the `cf` binary and `train` spell it.
    pub fn parse(text: &str) -> Option<TrainOn> {
        match text {
            "last" => Some(TrainOn::LastWindow),
            "all" => Some(TrainOn::AllWindows),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TrainOn::LastWindow => "last",
            TrainOn::AllWindows => "all",
        }
    }

    /// The training rows of every sequence (each >= 2 items, at most `max_len + 1`), in
    /// sequence order and, within a sequence, oldest window first. Sequences shorter than 2
    /// items give none.
    pub fn windows(self, seqs: &[Vec<u32>], max_len: usize) -> Vec<Vec<u32>> {
        let mut rows = Vec::new();
        for seq in seqs.iter().filter(|s| s.len() >= 2) {
            match self {
                TrainOn::LastWindow => {
                    rows.push(seq[seq.len().saturating_sub(max_len + 1)..].to_vec())
                }
                TrainOn::AllWindows => rows.extend(all_windows(seq, max_len)),
            }
        }
        rows
    }
}

/// Consecutive windows of `seq` (>= 2 items) ending at its end, each sharing its first item
/// with the end of the window before it, so every item but the first is a target once.
fn all_windows(seq: &[u32], max_len: usize) -> Vec<Vec<u32>> {
    let mut windows = Vec::new();
    let mut end = seq.len();
    while end >= 2 {
        let start = end.saturating_sub(max_len + 1);
        windows.push(seq[start..end].to_vec());
        end = start + 1;
    }
    windows.reverse();
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_windows_cover_every_target_once() {
        let seq: Vec<u32> = (0..10).collect();
        let got = TrainOn::AllWindows.windows(std::slice::from_ref(&seq), 4);
        assert_eq!(
            got,
            vec![vec![0, 1], vec![1, 2, 3, 4, 5], vec![5, 6, 7, 8, 9]]
        );
        for max_len in 1..12 {
            let windows = TrainOn::AllWindows.windows(std::slice::from_ref(&seq), max_len);
            let targets: Vec<u32> = windows.iter().flat_map(|w| w[1..].to_vec()).collect();
            assert_eq!(targets, (1..10).collect::<Vec<u32>>(), "max_len {max_len}");
            assert!(windows
                .iter()
                .all(|w| w.len() >= 2 && w.len() <= max_len + 1));
        }
    }

    #[test]
    fn last_window_is_the_most_recent_items_and_short_sequences_give_none() {
        let seqs = vec![(0..10).collect::<Vec<u32>>(), vec![7], vec![3, 4]];
        assert_eq!(
            TrainOn::LastWindow.windows(&seqs, 4),
            vec![vec![5, 6, 7, 8, 9], vec![3, 4]]
        );
        assert_eq!(TrainOn::AllWindows.windows(&seqs[1..], 4), vec![vec![3, 4]]);
        assert_eq!(TrainOn::parse("all"), Some(TrainOn::AllWindows));
        assert_eq!(TrainOn::parse("last").map(TrainOn::name), Some("last"));
        assert_eq!(TrainOn::parse("every"), None);
    }
}
