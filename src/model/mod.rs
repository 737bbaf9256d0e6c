//! Model files and the Llama-family decoder.
//!
//! - [`config`]      `config.json` -> [`LlamaConfig`](config::LlamaConfig) (llama, qwen2, qwen3, mistral)
//! - [`rope_scaling`] RoPE inverse frequencies: default, `linear`, `llama3` (Llama 3.1 / 3.2)
//! - [`qk_norm`]     Qwen3's per-head RMSNorm of queries and keys
//! - [`weights`]     safetensors reading (single or sharded, memory-mapped) and writing
//! - [`llama`]       the decoder: embedding, blocks, final norm, LM head; logit lens; vocab resize
//! - [`adapter`]     what the decoder runs of an adapter: LoRA's low-rank update of a
//!   projection, trainable token rows of the embedding / head (created by `crate::lora`)
//! - [`gguf`]        our own GGUF v2/v3 reader (header, metadata, tensor infos) on a memory map
//! - [`gguf_quant`]  ggml tensor types: block layouts and dequantisation to f32
//! - [`gguf_kquant`] the 256-element k-quant blocks (Q2_K .. Q6_K) decoded to f32
//! - [`gguf_tokenizer`] tokenizer.json from GGUF metadata (gpt2 byte-level BPE, llama SentencePiece)
//! - [`load`]        one entry point: an HF directory or a GGUF file -> model (+ tokenizer)
//! - [`kv_cache`]    the keys and values of earlier positions, kept for decoding
//! - [`forward_cached`] one decoding step: the decoder on new tokens against the cache
//! - [`generate`]    greedy decoding with the KV cache
//! - [`gguf_hf`]     llama.cpp conventions -> Hugging Face: tensor names, q/k row order,
//!   config.json and tokenizer.json as plain `serde_json::Value`s

pub mod adapter;
pub mod config;
pub mod forward_cached;
pub mod generate;
pub mod gguf;
pub mod gguf_hf;
pub mod gguf_kquant;
pub mod gguf_quant;
pub mod gguf_tokenizer;
pub mod kv_cache;
pub mod llama;
pub mod load;
pub mod qk_norm;
pub mod rope_scaling;
pub mod weights;
