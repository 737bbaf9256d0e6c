//! Recommendation data side (ILREC.md sections 1-3 and 7): data sets, pre-processing,
//! leave-one-out split, prompts, the item trie, ranking metrics and the popularity baseline.
//!
//! Pipeline: [`load_dataset`] (detect format, read, dedup, k-core, chronological order, dense
//! ids) -> [`leave_one_out`] ([`Split`] of [`Sample`]s) -> [`seqrec_prompt`] / [`build_example`]
//! for training; [`ItemTrie`] for constrained decoding and the ILRec candidate sets;
//! [`RankingMetrics`] for evaluation.
//!
//! Files: `csv.rs` (quoted CSV reader), `movielens.rs` and `recbole.rs` (the two formats),
//! `loader.rs` (raw types and the readers' shared helpers), `dataset.rs` (detection, dispatch,
//! assembly), `preprocess.rs` (dedup, k-core), `split.rs`,
//! `prompt.rs`, `trie.rs`, `metrics.rs`, `popularity.rs`, `item_lookup.rs` (items by id or
//! title, as a person names them).

pub mod csv;
pub mod dataset;
pub mod item_lookup;
pub mod loader;
pub mod metrics;
pub mod movielens;
pub mod popularity;
pub mod preprocess;
pub mod prompt;
pub mod recbole;
pub mod split;
pub mod trie;
pub mod vocab_map;

pub use dataset::{load_dataset, Dataset, Format, LoadOptions};
pub use loader::{Interaction, Item, RawData};
pub use metrics::{rank_of, MetricsMean, RankingMetrics, KS};
pub use popularity::Popularity;
pub use prompt::{
    build_example, encode_sample, sample_prompt, seqrec_prompt, Example, IGNORE_INDEX,
};
pub use split::{leave_one_out, Sample, Split, DEFAULT_MAX_HISTORY};
pub use trie::{ItemTrie, NodeId};
