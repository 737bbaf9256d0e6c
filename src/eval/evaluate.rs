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
//! Each sample may carry items its ranking leaves out (`rec::protocol`: none under the default
//! all-items protocol, the user's history under `--exclude-history` of `train`, `eval` and
//! `recommend`); the beam search skips them ([`rank_one`]), so the list holds none of them.

use super::beam::{beam_search_excluding, PrefixScorer, ScoredItem};
use crate::rec::metrics::{rank_of, RankingMetrics};
use crate::rec::trie::ItemTrie;
use crate::report::Progress;
use crate::Result;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Metrics plus the validity count of what the beams returned.
#[derive(Clone, Debug, Default)]
pub struct EvalOutcome {
    pub metrics: RankingMetrics,
    /// Returned entries that were not a real, distinct item.
    pub invalid: usize,
    /// All returned entries.
    pub returned: usize,
    /// Per sample, in sample order: the 0-based rank of its target in its list (None when the
    /// list does not hold it). The metrics are computed from exactly these, so anyone holding
    /// them can recompute the metrics, or resample users (`study`'s bootstrap).
    pub ranks: Vec<Option<usize>>,
}

impl EvalOutcome {
    pub fn invalid_rate(&self) -> f64 {
        if self.returned == 0 {
            return 0.0;
        }
        self.invalid as f64 / self.returned as f64
    }
}

/// The ranked list of one prompt: real, distinct items by descending sequence log-probability,
/// and how many returned entries were not (invalid).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ranked {
    pub items: Vec<ScoredItem>,
    pub invalid: usize,
}

/// What to rank: `prompts[i]`, and with `exclude` the items sample i must never get back
/// (its history, for `--exclude-history`); None ranks every item, as `train` evaluates.
#[derive(Clone, Copy, Debug)]
pub struct Queries<'a> {
    pub prompts: &'a [Vec<u32>],
    pub exclude: Option<&'a [Vec<u32>]>,
}

/// The ranked list of one prompt: beam search with `beams` beams, the best first, never
/// returning an item of `exclude` (the search itself treats them as absent: no beam is spent on
/// an excluded item or on a prefix that leads only to excluded items, so `beams` items come back
/// whenever that many others exist). With nothing excluded this is the plain search.
pub fn rank_one(
    scorer: &mut dyn PrefixScorer,
    trie: &ItemTrie,
    prompt: &[u32],
    beams: usize,
    exclude: &[u32],
) -> Result<Ranked> {
    let found = beam_search_excluding(scorer, trie, prompt, beams, exclude)?;
    let mut seen = HashSet::new();
    let mut ranked = Ranked::default();
    for f in found {
        if (f.item as usize) >= trie.num_items() || !seen.insert(f.item) {
            ranked.invalid += 1;
        } else {
            ranked.items.push(f);
        }
    }
    Ok(ranked)
}

/// Ranks every prompt of `queries` with scorers made by `make_scorer`, on `threads` threads;
/// the lists come back in prompt order. This is the evaluation's search (`evaluate`) and
/// `recommend --users all`'s, so both return the same lists.
pub fn rank_all<S, F>(
    make_scorer: F,
    trie: &ItemTrie,
    queries: Queries<'_>,
    beams: usize,
    threads: usize,
    progress: &mut Progress,
) -> Result<Vec<Ranked>>
where
    S: PrefixScorer,
    F: Fn() -> S + Sync,
{
    let prompts = queries.prompts;
    let threads = threads.clamp(1, prompts.len().max(1));
    let chunk = prompts.len().div_ceil(threads).max(1);
    let done = AtomicUsize::new(0);
    let results: Vec<Result<Vec<Ranked>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..prompts.len())
            .step_by(chunk)
            .map(|first| {
                let (make_scorer, done) = (&make_scorer, &done);
                let part = first..(first + chunk).min(prompts.len());
                scope.spawn(move || {
                    let mut scorer = make_scorer();
                    part.map(|i| {
                        let exclude = queries.exclude.map_or(&[][..], |e| &e[i]);
                        let r = rank_one(&mut scorer, trie, &prompts[i], beams, exclude);
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
    Ok(results.into_iter().collect::<Result<Vec<_>>>()?.concat())
}

/// Beam-searches every prompt (`queries.prompts[i]` predicts `targets[i]`) with scorers made by
/// `make_scorer`, on `threads` threads, and scores the ranked lists.
pub fn evaluate<S, F>(
    make_scorer: F,
    trie: &ItemTrie,
    queries: Queries<'_>,
    targets: &[u32],
    beams: usize,
    threads: usize,
    progress: &mut Progress,
) -> Result<EvalOutcome>
where
    S: PrefixScorer,
    F: Fn() -> S + Sync,
{
    let lists = rank_all(make_scorer, trie, queries, beams, threads, progress)?;
    let mut outcome = EvalOutcome::default();
    for (ranked, &target) in lists.iter().zip(targets) {
        let items: Vec<u32> = ranked.items.iter().map(|f| f.item).collect();
        let rank = rank_of(target, &items);
        outcome.metrics.add(rank);
        outcome.ranks.push(rank);
        outcome.invalid += ranked.invalid;
        outcome.returned += items.len() + ranked.invalid;
    }
    Ok(outcome)
}
