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
    /// items give none. With `AllWindows`, every target has at least `min_context` items before
    /// it in its window (or every item the sequence has before it, if fewer).
    pub fn windows(self, seqs: &[Vec<u32>], max_len: usize, min_context: usize) -> Vec<Window> {
        let mut rows = Vec::new();
        for seq in seqs.iter().filter(|s| s.len() >= 2) {
            match self {
                TrainOn::LastWindow => rows.push(Window {
                    items: seq[seq.len().saturating_sub(max_len + 1)..].to_vec(),
                    first_target: 1,
                }),
                TrainOn::AllWindows => rows.extend(all_windows(seq, max_len, min_context)),
            }
        }
        rows
    }
}

/// One training row: `items` (at most `max_len + 1`), of which `items[first_target..]` are
/// targets (each predicted from the items before it); earlier items are context only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub items: Vec<u32>,
    pub first_target: usize,
}

/// Windows of `seq` (>= 2 items) ending at its end and walking back, so that every item but
/// the first is a target exactly once, with at least `min_context` items (capped at `max_len`)
/// before it in its window unless the window starts the sequence.
fn all_windows(seq: &[u32], max_len: usize, min_context: usize) -> Vec<Window> {
    let min_context = min_context.clamp(1, max_len);
    let mut windows = Vec::new();
    // Targets still to place: seq[1..end].
    let mut end = seq.len();
    while end >= 2 {
        let start = end.saturating_sub(max_len + 1);
        let first = if start == 0 { 1 } else { start + min_context };
        windows.push(Window {
            items: seq[start..end].to_vec(),
            first_target: first - start,
        });
        end = first;
    }
    windows.reverse();
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(windows: &[Window]) -> Vec<Vec<u32>> {
        windows.iter().map(|w| w.items.clone()).collect()
    }

    /// Every target of `seq` (items 1..) once, in order, with its context in the window.
    fn targets_with_context(windows: &[Window]) -> Vec<(u32, usize)> {
        windows
            .iter()
            .flat_map(|w| (w.first_target..w.items.len()).map(move |j| (w.items[j], j)))
            .collect()
    }

    #[test]
    fn all_windows_cover_every_target_once() {
        let seq: Vec<u32> = (0..10).collect();
        let got = TrainOn::AllWindows.windows(std::slice::from_ref(&seq), 4, 1);
        assert_eq!(
            items(&got),
            vec![vec![0, 1], vec![1, 2, 3, 4, 5], vec![5, 6, 7, 8, 9]]
        );
        assert!(got.iter().all(|w| w.first_target == 1));
        for max_len in 1..12 {
            for min_context in 0..=max_len + 1 {
                let windows =
                    TrainOn::AllWindows.windows(std::slice::from_ref(&seq), max_len, min_context);
                let found = targets_with_context(&windows);
                let targets: Vec<u32> = found.iter().map(|&(t, _)| t).collect();
                assert_eq!(
                    targets,
                    (1..10).collect::<Vec<u32>>(),
                    "{max_len} {min_context}"
                );
                assert!(windows.iter().all(|w| w.items.len() <= max_len + 1));
                // Context: min_context (capped at max_len), or all the sequence has.
                let want = min_context.clamp(1, max_len);
                assert!(found.iter().all(|&(t, c)| c >= want.min(t as usize)));
            }
        }
    }

    #[test]
    fn min_context_overlaps_the_windows() {
        let seq: Vec<u32> = (0..10).collect();
        let got = TrainOn::AllWindows.windows(std::slice::from_ref(&seq), 4, 3);
        // Last window 5..=9 trains 8, 9 (at least 3 items before each); then 3..=7 trains 6, 7;
        // 1..=5 trains 4, 5; the first window 0..=3 trains 1, 2, 3 with what there is.
        let rows: Vec<(Vec<u32>, usize)> = got
            .iter()
            .map(|w| (w.items.clone(), w.first_target))
            .collect();
        assert_eq!(
            rows,
            vec![
                (vec![0, 1, 2, 3], 1),
                (vec![1, 2, 3, 4, 5], 3),
                (vec![3, 4, 5, 6, 7], 3),
                (vec![5, 6, 7, 8, 9], 3),
            ]
        );
    }

    #[test]
    fn last_window_is_the_most_recent_items_and_short_sequences_give_none() {
        let seqs = vec![(0..10).collect::<Vec<u32>>(), vec![7], vec![3, 4]];
        assert_eq!(
            items(&TrainOn::LastWindow.windows(&seqs, 4, 1)),
            vec![vec![5, 6, 7, 8, 9], vec![3, 4]]
        );
        assert_eq!(
            items(&TrainOn::AllWindows.windows(&seqs[1..], 4, 1)),
            vec![vec![3, 4]]
        );
        assert_eq!(TrainOn::parse("all"), Some(TrainOn::AllWindows));
        assert_eq!(TrainOn::parse("last").map(TrainOn::name), Some("last"));
        assert_eq!(TrainOn::parse("every"), None);
    }
}
