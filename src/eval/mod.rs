//! Decoding and evaluation, the layer above the model: trie-constrained beam search over any
//! [`PrefixScorer`](beam::PrefixScorer), the Llama as such a scorer with its KV cache, and the evaluator that turns the
//! returned item lists into ranking metrics (ILREC.md section 7).
//!
//! Files: `beam.rs` (the search, model-agnostic), `decode.rs` (`LlamaScorer`), `evaluate.rs`
//! (per-sample search on the thread pool, metrics, the invalid-item rate).

pub mod beam;
pub mod decode;
pub mod evaluate;
