//! ilrec: ILRec ("Improving LLM-based Recommendation with Self-Hard Negatives from Intermediate
//! Layers", arXiv 2602.17410) from scratch.
//!
//! Module map (data flows top to bottom):
//! - [`error`]      the project error type
//! - [`tensor`]     Tensor = shape + contiguous storage (f32 compute; bf16/f16 storage)
//! - [`cpu`]        CPU kernels: thread pool, blocked AVX2/FMA GEMM, elementwise, reductions
//! - [`cuda`]       CUDA device, embedded PTX, launch wrappers (feature `cuda`)
//! - [`autograd`]   the tape: `Var`s, one file per op family with forward AND backward
//! - [`optim`]      AdamW, schedules, clipping
//! - [`tokenizer`]  tokenizer.json: byte-level BPE, pre-tokenizers, NFC, added tokens
//! - [`model`]      config.json, safetensors / GGUF loading, the Llama-family decoder
//! - [`rec`]        data sets, k-core, leave-one-out, prompts, item trie, beam search, metrics
//! - [`cf`]         SASRec, the collaborative-filtering reward model
//! - [`sid`]        RQ-VAE semantic item IDs
//! - [`ilrec`]      logit lens, self-hard negatives, CPO / CRR / CPD, the trainer
//! - [`report`]     progress bars, the JSON-lines run log, SVG plots, the results table

pub mod autograd;
pub mod cf;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod error;
pub mod ilrec;
pub mod model;
pub mod optim;
pub mod rec;
pub mod report;
pub mod rng;
pub mod sid;
pub mod tensor;
pub mod tokenizer;

pub use autograd::{ParamId, Params, Tape, Var};
pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
