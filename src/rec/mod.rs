//! Recommendation data side (ILREC.md sections 1-3 and 7): data sets, pre-processing,
//! leave-one-out split, prompts, the item trie, ranking metrics, the evaluation protocol and the
//! popularity baseline.
//!
//! Pipeline: [`load_dataset`] (detect format, read, dedup, rating threshold, k-core /
//! interaction-count filter, chronological order, dense ids) -> [`leave_one_out`] ([`Split`] of
//! [`Sample`]s) -> [`seqrec_prompt`] / [`build_example`] for training; [`ItemTrie`] for
//! constrained decoding and the ILRec candidate sets; [`RankingMetrics`] and [`Exclusions`]
//! (which items a ranking leaves out, [`Protocol`]) for evaluation.
//!
//! Files: `csv.rs` (delimited-text reader), `atomic.rs` (RecBole's typed header and field
//! names), `movielens.rs` and `recbole.rs` (the two formats), `loader.rs` (raw types and the
//! readers' shared helpers), `dataset.rs` (detection, dispatch, assembly), `interval.rs`
//! (RecBole's `[lo,hi)` syntax), `preprocess.rs` (dedup, rating threshold, k-core), `split.rs`,
//! `stats.rs` (counts under our names and RecBole's), `export.rs` (a loaded set written back
//! as RecBole atomic files), `protocol.rs`, `prompt.rs`, `trie.rs`,
//! `metrics.rs`, `popularity.rs`, `item_lookup.rs` (items by id or title, as a person names
//! them).

pub mod atomic;
pub mod csv;
pub mod dataset;
pub mod export;
pub mod interval;
pub mod item_lookup;
pub mod loader;
pub mod metrics;
pub mod movielens;
pub mod options;
pub mod popularity;
pub mod preprocess;
pub mod prompt;
pub mod protocol;
pub mod recbole;
pub mod split;
pub mod stats;
pub mod trie;
pub mod vocab_map;

pub use atomic::FieldNames;
pub use dataset::{load_dataset, Dataset, Format};
pub use export::{export_atomic, ExportedFiles};
pub use interval::Intervals;
pub use loader::{Interaction, Item, RawData};
pub use metrics::{rank_of, MetricsMean, RankingMetrics, KS};
pub use options::LoadOptions;
pub use popularity::Popularity;
pub use preprocess::KeepDuplicate;
pub use prompt::{
    build_example, encode_sample, sample_prompt, seqrec_prompt, Example, IGNORE_INDEX,
};
pub use protocol::{rank_excluding, Exclusions, Protocol};
pub use split::{leave_one_out, Sample, Split, DEFAULT_MAX_HISTORY};
pub use stats::Stats;
pub use trie::{ItemTrie, NodeId};
