//! Evaluation of a generative recommender: trie-constrained beam search per sample, then the
//! ranking metrics of the returned item list (ILREC.md section 7).
//!
//! The invalid-item rate counts returned entries that are not real items or repeat an item
//! already returned for the same sample; constrained decoding makes it 0 by construction, and
//! measuring it checks that claim on every run.
//!
//! Samples are split into contiguous chunks, one per thread, each thread with its own scorer
//! (its own KV cache); results are merged in sample order, so the metrics do not depend on the
//! number of threads.
//!
//! Each sample carries the items its ranking leaves out (`rec::protocol`: empty under the
//! default all-items protocol, the user's history under `--exclude-history`); the beam search
//! skips them, so the returned list holds none of them.

use super::beam::{beam_search_excluding, PrefixScorer};
use crate::rec::metrics::{rank_of, RankingMetrics};
use crate::rec::protocol::Exclusions;
use crate::rec::trie::ItemTrie;
use crate::report::Progress;
use crate::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One sample's outcome inside a thread's chunk: (returned items, invalid count).
type ChunkResult = (Vec<u32>, usize);

/// Metrics plus the validity count of what the beams returned.
#[derive(Clone, Debug, Default)]
pub struct EvalOutcome {
    pub metrics: RankingMetrics,
    /// Returned entries that were not a real, distinct item.
    pub invalid: usize,
    /// All returned entries.
    pub returned: usize,
}

impl EvalOutcome {
    pub fn invalid_rate(&self) -> f64 {
        if self.returned == 0 {
            return 0.0;
        }
        self.invalid as f64 / self.returned as f64
    }
}

/// What the model is asked: `prompts[i]` predicts `targets[i]`, ranking every item but
/// `excluded.of(i)`.
pub struct EvalQueries<'a> {
    pub prompts: &'a [Vec<u32>],
    pub targets: &'a [u32],
    pub excluded: &'a Exclusions,
}

/// The ranked items of one sample and how many returned entries were invalid.
fn rank_one(
    scorer: &mut dyn PrefixScorer,
    trie: &ItemTrie,
    (prompt, excluded): (&[u32], &[u32]),
    beams: usize,
) -> Result<(Vec<u32>, usize)> {
    let found = beam_search_excluding(scorer, trie, prompt, beams, excluded)?;
    let mut seen = std::collections::HashSet::new();
    let mut ranked = Vec::with_capacity(found.len());
    let mut invalid = 0;
    for f in found {
        if (f.item as usize) < trie.num_items() && seen.insert(f.item) {
            ranked.push(f.item);
        } else {
            invalid += 1;
        }
    }
    Ok((ranked, invalid))
}

/// Beam-searches every query with scorers made by `make_scorer`, on `threads` threads.
pub fn evaluate<S, F>(
    make_scorer: F,
    trie: &ItemTrie,
    queries: &EvalQueries,
    beams: usize,
    threads: usize,
    progress: &mut Progress,
) -> Result<EvalOutcome>
where
    S: PrefixScorer,
    F: Fn() -> S + Sync,
{
    let (prompts, targets) = (queries.prompts, queries.targets);
    queries.excluded.check_len(prompts.len())?;
    let threads = threads.clamp(1, prompts.len().max(1));
    let chunk = prompts.len().div_ceil(threads).max(1);
    let done = AtomicUsize::new(0);
    let results: Vec<Result<Vec<ChunkResult>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .chunks(chunk)
            .zip(queries.excluded.lists().chunks(chunk))
            .map(|(part, excluded)| {
                let (make_scorer, done) = (&make_scorer, &done);
                scope.spawn(move || {
                    let mut scorer = make_scorer();
                    part.iter()
                        .zip(excluded)
                        .map(|(p, x)| {
                            let r = rank_one(&mut scorer, trie, (p, x), beams);
                            done.fetch_add(1, Ordering::Relaxed);
                            r
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut shown = 0;
        while handles.iter().any(|h| !h.is_finished()) {
            let now = done.load(Ordering::Relaxed);
            progress.inc(now - shown);
            shown = now;
            std::thread::sleep(Duration::from_millis(50));
        }
        progress.inc(done.load(Ordering::Relaxed) - shown);
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(crate::Error::Autograd(
                        "an evaluation thread panicked".into(),
                    ))
                })
            })
            .collect()
    });
    progress.finish();
    let mut outcome = EvalOutcome::default();
    let mut i = 0;
    for part in results {
        for (ranked, invalid) in part? {
            outcome.metrics.add(rank_of(targets[i], &ranked));
            outcome.invalid += invalid;
            outcome.returned += ranked.len() + invalid;
            i += 1;
        }
    }
    Ok(outcome)
}
