//! A tiny valid GGUF v3 file (a 2-block Llama with a byte-level BPE vocabulary in its metadata),
//! written byte by byte so the fuzzer has a seed whose every header field it can corrupt.

use super::bundle::Bundle;
use ilrec::rng::Rng;

const ALIGN: usize = 32;

/// GGUF metadata values used here.
enum Meta {
    U32(u32),
    F32(f32),
    Str(&'static str),
    Strs(Vec<&'static str>),
    I32s(Vec<i32>),
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_meta(out: &mut Vec<u8>, key: &str, value: &Meta) {
    put_str(out, key);
    match value {
        Meta::U32(v) => {
            out.extend_from_slice(&4u32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::F32(v) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        Meta::Str(s) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            put_str(out, s);
        }
        Meta::Strs(items) => {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&8u32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|s| put_str(out, s));
        }
        Meta::I32s(items) => {
            out.extend_from_slice(&9u32.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            items
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
    }
}

fn metadata(tokens: &[&'static str]) -> Vec<(&'static str, Meta)> {
    let mut types = vec![1i32; tokens.len()];
    types[tokens.len() - 2] = 3; // <|endoftext|>: control
    types[tokens.len() - 1] = 4; // <a_1>: user-defined
    vec![
        ("general.architecture", Meta::Str("llama")),
        ("llama.embedding_length", Meta::U32(8)),
        ("llama.feed_forward_length", Meta::U32(16)),
        ("llama.block_count", Meta::U32(2)),
        ("llama.attention.head_count", Meta::U32(2)),
        ("llama.attention.head_count_kv", Meta::U32(1)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5)),
        ("llama.rope.freq_base", Meta::F32(10000.0)),
        ("llama.context_length", Meta::U32(64)),
        ("tokenizer.ggml.model", Meta::Str("gpt2")),
        ("tokenizer.ggml.pre", Meta::Str("smollm")),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens.to_vec())),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.merges", Meta::Strs(vec!["h e", "l l"])),
    ]
}

/// (GGUF name, row-major (rows, cols)) of every tensor; F32 except `token_embd`, stored F16.
fn tensor_shapes(vocab: usize) -> Vec<(String, usize, usize)> {
    let mut out = vec![("token_embd.weight".to_string(), vocab, 8)];
    for l in 0..2 {
        let parts = [
            ("attn_norm.weight", 1, 8),
            ("attn_q.weight", 8, 8),
            ("attn_k.weight", 4, 8),
            ("attn_v.weight", 4, 8),
            ("attn_output.weight", 8, 8),
            ("ffn_norm.weight", 1, 8),
            ("ffn_gate.weight", 16, 8),
            ("ffn_up.weight", 16, 8),
            ("ffn_down.weight", 8, 16),
        ];
        for (part, rows, cols) in parts {
            out.push((format!("blk.{l}.{part}"), rows, cols));
        }
    }
    out.push(("output_norm.weight".to_string(), 1, 8));
    out
}

/// The whole file.
pub fn gguf_seeds() -> Vec<Bundle> {
    let tokens = vec![
        "h",
        "e",
        "l",
        "o",
        "Ġ",
        "w",
        "r",
        "d",
        "he",
        "ll",
        "<|endoftext|>",
        "<a_1>",
    ];
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    let shapes = tensor_shapes(tokens.len());
    let meta = metadata(&tokens);
    out.extend_from_slice(&(shapes.len() as u64).to_le_bytes());
    out.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    meta.iter().for_each(|(k, v)| put_meta(&mut out, k, v));
    let mut data = Vec::new();
    let mut rng = Rng::new(7);
    for (name, rows, cols) in &shapes {
        let f16 = name == "token_embd.weight";
        put_str(&mut out, name);
        let dims: Vec<u64> = if *rows == 1 {
            vec![*cols as u64]
        } else {
            vec![*cols as u64, *rows as u64]
        };
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        dims.iter()
            .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.extend_from_slice(&(if f16 { 1u32 } else { 0u32 }).to_le_bytes());
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        for _ in 0..rows * cols {
            let x = 0.02 * rng.normal();
            if f16 {
                data.extend_from_slice(&half::f16::from_f32(x).to_le_bytes());
            } else {
                data.extend_from_slice(&x.to_le_bytes());
            }
        }
        data.resize(data.len().div_ceil(ALIGN) * ALIGN, 0);
    }
    out.resize(out.len().div_ceil(ALIGN) * ALIGN, 0);
    out.extend_from_slice(&data);
    vec![Bundle::single("model.gguf", out)]
}
