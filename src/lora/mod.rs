//! LoRA fine-tuning with adapters PEFT can read and write (Hu et al. 2021; PEFT 0.21's files).
//!
//! A LoRA adapter leaves a pretrained projection `W` (out, in) frozen and learns a low-rank
//! update beside it:
//! ```text
//! y = x W^T + (alpha / r) * dropout(x) A^T B^T        A (r, in), B (out, r), r << in, out
//! ```
//! Only A and B train, so the backward computes the input gradient through W but never W's own
//! gradient (no weight-gradient GEMM, no gradient buffer, no optimizer state for the base).
//! The decoder runs the update itself (`model::adapter`); this module creates, saves, loads and
//! merges adapters:
//!
//! - [`config`]      [`LoraConfig`]: r, alpha, dropout, targets, blocks, rsLoRA, token rows;
//!   the `--lora` flag; checks against a model
//! - [`init`]        PEFT's initialisation: A Kaiming-uniform (bound 1 / sqrt(in)), B zero
//! - [`attach`](mod@attach) freeze the base, add a fresh adapter; the adapter's parameters by name
//! - [`tokens`]      trainable token rows of the embedding / head (PEFT's
//!   `trainable_token_indices`): how added tokens (SIDs) train on a frozen base
//! - [`peft_config`] `adapter_config.json` in and out; unsupported PEFT options refused
//! - [`files`]       the adapter folder (config + `adapter_model.safetensors`) in and out
//! - [`merge`]       the adapter folded into the weights: a plain model (decoding, export)

pub mod attach;
pub mod config;
pub mod files;
pub mod init;
pub mod merge;
pub mod peft_config;
pub mod tokens;

pub use attach::{adapter_params, attach, has_adapter};
pub use config::{LoraConfig, TrainableTokens};
pub use files::{load_adapter, save_adapter};
pub use merge::merged;
