//! Llama-family decoders from Hugging Face checkpoints.
//!
//! - [`config`]  `config.json` -> [`LlamaConfig`](config::LlamaConfig) (llama, qwen2, mistral)
//! - [`weights`] safetensors reading (single or sharded, memory-mapped) and writing
//! - [`llama`]   the decoder: embedding, blocks, final norm, LM head; logit lens; vocab resize
//! - [`speed`]   forward / forward+backward throughput on random weights (BENCHMARKS.md)

pub mod config;
pub mod llama;
pub mod speed;
pub mod weights;
