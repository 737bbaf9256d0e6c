//! The collaborative-filtering side (ILREC.md sections 4 and 5.3): SASRec, trained on the
//! training split, gives `p_CF(item | history)`; through the item trie that becomes a reward for
//! every candidate next token of the LLM (CRR), and SASRec is a baseline of its own.
//!
//! Files: `batch.rs` (right-padded id batches), `sasrec.rs` (the model, scores, evaluation),
//! `train.rs` (sequences, epochs, early stopping), `windows.rs` (which windows of a long
//! sequence an epoch trains on), `checkpoint.rs` (save / load),
//! `rewards.rs` (token rewards through the trie).

pub mod batch;
pub mod checkpoint;
pub mod rewards;
pub mod sasrec;
pub mod train;
pub mod windows;

pub use batch::PaddedBatch;
pub use rewards::{token_log_rewards, token_log_rewards_for_positions};
pub use sasrec::{rank_in_row, rank_in_row_excluding, SasRec, SasRecConfig};
pub use train::{training_sequences, EpochReport, SasRecTrainOptions, TrainSummary};
pub use windows::TrainOn;
