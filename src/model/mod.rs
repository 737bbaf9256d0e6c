//! Model files and the Llama-family decoder.
//!
//! - [`gguf`]        our own GGUF v2/v3 reader (header, metadata, tensor infos) on a memory map
//! - [`gguf_quant`]  ggml tensor types: block layouts and dequantisation to f32
//! - [`gguf_hf`]     llama.cpp conventions -> Hugging Face: tensor names, q/k row order,
//!   config.json and tokenizer.json as plain `serde_json::Value`s

pub mod gguf;
pub mod gguf_hf;
pub mod gguf_quant;
