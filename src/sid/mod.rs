//! Semantic IDs (ILREC.md section 2): every item becomes a short code of added tokens, `levels`
//! codes from a residual-quantised VAE over item embeddings, `<a_12><b_3><c_7>`.
//!
//! Data flow: [`embeddings`] (SASRec table, LLM text states, or a file) -> [`build`]
//! ([`train`]: [`kmeans`]-initialised [`rqvae`] trained with AdamW; [`collisions`] makes the codes
//! unique; [`stats`] measures code usage) -> [`index_json`] (`sids.json`, LC-Rec's shape) ->
//! [`tokens`] (the added tokens, their ids, new embedding rows) -> the item trie
//! (`rec::ItemTrie::build(&vocab.item_sequences(&codes)?, eos)`).

pub mod build;
pub mod collisions;
pub mod embeddings;
pub mod index_json;
pub mod kmeans;
pub mod rqvae;
pub mod stats;
pub mod tokens;
pub mod train;

pub use build::{build_sids, SidBuild, SidSizes};
pub use collisions::{collision_rate, resolve_collisions, Resolution};
pub use index_json::{codes_per_level, read_sids, write_sids};
pub use rqvae::{RqVae, RqVaeConfig};
pub use tokens::{sid_text, sid_token, SidVocab};
pub use train::{EpochStats, SidTrainOptions};
