//! ilrec: ILRec ("Improving LLM-based Recommendation with Self-Hard Negatives from Intermediate
//! Layers", arXiv 2602.17410) from scratch.
//!
//! Module map (data flows top to bottom):
//! - [`error`]      the project error type; [`files`] crash-safe (atomic, fsync'ed) writes;
//!   [`fingerprint`] the FNV-1a key of on-disk caches
//! - [`tensor`]     Tensor = shape + contiguous storage (f32 compute; bf16/f16 storage)
//! - [`cpu`]        CPU kernels: thread pool, blocked GEMM, attention, softmax / log-sum-exp,
//!   elementwise, one ISA detection (`ILREC_NO_AVX512`, `ILREC_NO_SIMD`)
//! - `cuda`         CUDA device, embedded PTX, launch wrappers (feature `cuda`)
//! - [`autograd`]   the tape: `Var`s, one file per op family with forward AND backward
//! - [`optim`]      AdamW, schedules, clipping
//! - [`tokenizer`]  tokenizer.json: byte-level BPE, pre-tokenizers, NFC, added tokens
//! - [`model`]      config.json, safetensors / GGUF loading, the Llama-family decoder
//! - [`lora`]       LoRA adapters: attach (frozen base), trainable token rows, PEFT's files,
//!   merge
//! - [`rec`]        data only: data sets (MovieLens, RecBole atomic files), filters, leave-one-out,
//!   prompts, item trie, metrics, the ranking protocols
//! - [`report`]     progress bars, the JSON-lines run log, SVG plots, the results table
//! - [`eval`]       trie-constrained beam search, the Llama scorer with its KV cache, evaluation
//! - [`sid`]        semantic item IDs: RQ-VAE, k-means, collision handling, sids.json
//! - [`cf`]         SASRec, the collaborative-filtering reward model
//! - [`ilrec`]      logit lens, self-hard negatives, CPO / CRR / CPD, the one training step
//! - [`speed`]      bench support: timed forward / training steps (`bench`)
//! - [`pipeline`]   the `train` stages: data, model, CF, resumable stages, evaluation, results;
//!   and back: a saved run loaded as a recommender (`recommend`, `eval`)
//! - [`study`]      the results study: a grid of data sets x methods x seeds through the
//!   pipeline, selection on validation, mean +- std, paired bootstrap, report (`study`)
//! - [`cli`]        the flag parser the binaries share; [`fixtures`] the test-fixture root

pub mod autograd;
pub mod cf;
pub mod cli;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod eval;
pub mod files;
pub mod fingerprint;
pub mod fixtures;
pub mod ilrec;
pub mod lora;
pub mod model;
pub mod optim;
pub mod pipeline;
pub mod rec;
pub mod report;
pub mod rng;
pub mod sid;
pub mod speed;
pub mod study;
pub mod tensor;
pub mod tokenizer;

pub use autograd::{ParamId, Params, Tape, Var};
pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
