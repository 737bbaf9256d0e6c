//! llama.cpp's conventions mapped back to Hugging Face's, for a Llama-architecture GGUF:
//! tensor names, the q/k row order, `config.json` and (in [`super::gguf_tokenizer`])
//! `tokenizer.json`.
//!
//! Everything here returns plain data (f32 vectors with row-major shapes, `serde_json::Value`s)
//! so that the safetensors writer, our Llama model and our tokenizer can consume it without
//! knowing about GGUF.

use super::gguf::{GgufFile, GgufValue};
use crate::{Error, Result};
use serde_json::{json, Value};

pub use super::gguf_tokenizer::hf_tokenizer_json;

/// One HF tensor: name, row-major shape, f32 values.
pub type HfTensor = (String, Vec<usize>, Vec<f32>);

/// The HF name of a llama.cpp tensor name, or None for names we do not know.
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    let global = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = global {
        return Some(name.to_string());
    }
    // "blk.{i}.{part}.weight"
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf_part = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}"))
}

/// Undoes the row permutation llama.cpp's converter applies to q_proj and k_proj.
///
/// Why it exists: HF's Llama applies RoPE by rotating the pair `(x[i], x[i + head_dim/2])` of each
/// head ("rotate_half": the first half of a head's dims against the second half), while ggml's
/// default (LLAMA) RoPE rotates adjacent pairs `(x[2i], x[2i + 1])`, as Meta's original code did.
/// So the converter reorders each head's output rows to interleave the two halves: HF row
/// `half * head_dim/2 + i` of a head becomes GGUF row `2 * i + half`. Since q and k both get the
/// same reorder, q·k is unchanged and llama.cpp computes the same attention.
///
/// Here we invert it: for every head h, i in 0..head_dim/2 and half in {0, 1},
/// `hf[h, half, i, :] = gguf[h, i, half, :]`. `rows_gguf` is [n_heads * head_dim, cols]
/// row-major; `n_heads` is the query head count for q and the KV head count for k.
pub fn unpermute_qk_rows(rows_gguf: &[f32], n_heads: usize, cols: usize) -> Result<Vec<f32>> {
    let rows = rows_gguf.len().checked_div(cols).unwrap_or(0);
    if n_heads == 0 || rows * cols != rows_gguf.len() || !rows.is_multiple_of(2 * n_heads) {
        return Err(Error::shape(
            "unpermute_qk_rows",
            format!(
                "{} values with {cols} columns cannot split into {n_heads} heads of an even size",
                rows_gguf.len()
            ),
        ));
    }
    let half_dim = rows / n_heads / 2;
    // out: [n_heads, 2, half_dim, cols] = [rows, cols]
    let mut out = vec![0f32; rows_gguf.len()];
    for h in 0..n_heads {
        for half in 0..2 {
            for i in 0..half_dim {
                let src = h * 2 * half_dim + 2 * i + half;
                let dst = h * 2 * half_dim + half * half_dim + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&rows_gguf[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// The Llama hyper-parameters read from the `llama.*` metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaHparams {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
}

/// Reads and checks the Llama hyper-parameters of `gguf`.
pub fn llama_hparams(gguf: &GgufFile) -> Result<LlamaHparams> {
    let arch = req_str(gguf, "general.architecture")?;
    if arch != "llama" {
        return Err(Error::format(
            gguf.path(),
            format!("general.architecture is {arch:?}; only \"llama\" is supported"),
        ));
    }
    let hidden_size = req_usize(gguf, "llama.embedding_length")?;
    let num_attention_heads = req_usize(gguf, "llama.attention.head_count")?;
    let num_key_value_heads =
        opt_usize(gguf, "llama.attention.head_count_kv")?.unwrap_or(num_attention_heads);
    if num_attention_heads == 0 || num_key_value_heads == 0 {
        return Err(Error::format(
            gguf.path(),
            "attention head counts must be positive",
        ));
    }
    let head_dim = match opt_usize(gguf, "llama.attention.key_length")? {
        Some(d) => d,
        None => hidden_size / num_attention_heads,
    };
    check_rope(gguf, head_dim)?;
    Ok(LlamaHparams {
        hidden_size,
        intermediate_size: req_usize(gguf, "llama.feed_forward_length")?,
        num_hidden_layers: req_usize(gguf, "llama.block_count")?,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps: req_f64(gguf, "llama.attention.layer_norm_rms_epsilon")?,
        // llama.cpp's default when the key is absent.
        rope_theta: opt_f64(gguf, "llama.rope.freq_base")?.unwrap_or(10000.0),
        max_position_embeddings: req_usize(gguf, "llama.context_length")?,
        vocab_size: vocab_size(gguf)?,
    })
}

/// HF's Llama rotates the whole head with plain RoPE: refuse partial rotary and rope scaling.
fn check_rope(gguf: &GgufFile, head_dim: usize) -> Result<()> {
    if let Some(rot) = opt_usize(gguf, "llama.rope.dimension_count")? {
        if rot != head_dim {
            return Err(Error::format(
                gguf.path(),
                format!("llama.rope.dimension_count is {rot} but head_dim is {head_dim}; partial rotary is not supported"),
            ));
        }
    }
    match gguf
        .get("llama.rope.scaling.type")
        .and_then(GgufValue::as_str)
    {
        None | Some("none") => Ok(()),
        Some(other) => Err(Error::format(
            gguf.path(),
            format!("llama.rope.scaling.type {other:?} is not supported"),
        )),
    }
}

/// `llama.vocab_size`, else the length of `tokenizer.ggml.tokens`, else token_embd's rows.
fn vocab_size(gguf: &GgufFile) -> Result<usize> {
    if let Some(n) = opt_usize(gguf, "llama.vocab_size")? {
        return Ok(n);
    }
    if let Some(tokens) = gguf
        .get("tokenizer.ggml.tokens")
        .and_then(GgufValue::as_array)
    {
        return Ok(tokens.len());
    }
    match gguf.tensor("token_embd.weight") {
        Some(t) if t.dims.len() == 2 => Ok(t.dims[1] as usize),
        _ => Err(Error::format(gguf.path(), "cannot tell the vocabulary size: no llama.vocab_size, tokenizer.ggml.tokens or 2-D token_embd.weight")),
    }
}

/// A HF `LlamaForCausalLM` config.json. Embeddings are tied when there is no `output.weight`.
pub fn hf_config(gguf: &GgufFile) -> Result<Value> {
    let hp = llama_hparams(gguf)?;
    let mut config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": hp.hidden_size,
        "intermediate_size": hp.intermediate_size,
        "num_hidden_layers": hp.num_hidden_layers,
        "num_attention_heads": hp.num_attention_heads,
        "num_key_value_heads": hp.num_key_value_heads,
        "head_dim": hp.head_dim,
        "rms_norm_eps": hp.rms_norm_eps,
        "rope_theta": hp.rope_theta,
        "rope_scaling": null,
        "max_position_embeddings": hp.max_position_embeddings,
        "vocab_size": hp.vocab_size,
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(),
        "attention_bias": false,
        "attention_dropout": 0.0,
        "mlp_bias": false,
        "initializer_range": 0.02,
        "use_cache": true,
        "torch_dtype": "float32",
    });
    for (gguf_key, hf_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(id) = opt_usize(gguf, gguf_key)? {
            config[hf_key] = json!(id);
        }
    }
    Ok(config)
}

/// Every tensor of a Llama GGUF, dequantised to f32, renamed to HF, shapes row-major
/// ([out, in] for linear weights), q_proj / k_proj rows un-permuted. File order is kept.
pub fn hf_tensors(gguf: &GgufFile) -> Result<Vec<HfTensor>> {
    let hp = llama_hparams(gguf)?;
    let mut out = Vec::with_capacity(gguf.tensors().len());
    for info in gguf.tensors() {
        // Unknown names (e.g. llama3's rope_freqs.weight) would need model changes: refuse them.
        let hf_name = hf_tensor_name(&info.name).ok_or_else(|| {
            Error::format(
                gguf.path(),
                format!("tensor {:?} has no HF Llama counterpart", info.name),
            )
        })?;
        let (shape, values) = gguf.dequantize(&info.name)?;
        let heads = if info.name.ends_with(".attn_q.weight") {
            Some(hp.num_attention_heads)
        } else if info.name.ends_with(".attn_k.weight") {
            Some(hp.num_key_value_heads)
        } else {
            None
        };
        let values = match heads {
            Some(n_heads) => {
                unpermute_attention(gguf, &info.name, &shape, &values, n_heads, hp.head_dim)?
            }
            None => values,
        };
        out.push((hf_name, shape, values));
    }
    Ok(out)
}

/// Checks a q/k weight's shape ([n_heads * head_dim, hidden]) and un-permutes its rows.
fn unpermute_attention(
    gguf: &GgufFile,
    name: &str,
    shape: &[usize],
    values: &[f32],
    n_heads: usize,
    head_dim: usize,
) -> Result<Vec<f32>> {
    if shape.len() != 2 || Some(shape[0]) != n_heads.checked_mul(head_dim) {
        return Err(Error::format(
            gguf.path(),
            format!(
                "tensor {name}: shape {shape:?}, expected [{n_heads} heads x {head_dim}, hidden]"
            ),
        ));
    }
    unpermute_qk_rows(values, n_heads, shape[1])
}

/// A metadata array of strings.
pub(super) fn string_array<'a>(gguf: &'a GgufFile, key: &str) -> Result<Vec<&'a str>> {
    let value = gguf.get(key).ok_or_else(|| missing(gguf, key))?;
    value
        .as_array()
        .and_then(|a| a.iter().map(GgufValue::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| wrong_type(gguf, key, "array of strings", value))
}

pub(super) fn missing(gguf: &GgufFile, key: &str) -> Error {
    Error::format(gguf.path(), format!("metadata key {key} is missing"))
}

pub(super) fn wrong_type(gguf: &GgufFile, key: &str, expected: &str, found: &GgufValue) -> Error {
    Error::format(
        gguf.path(),
        format!(
            "metadata {key}: expected {expected}, found {}",
            found.type_name()
        ),
    )
}

pub(super) fn req_str<'a>(gguf: &'a GgufFile, key: &str) -> Result<&'a str> {
    let value = gguf.get(key).ok_or_else(|| missing(gguf, key))?;
    value
        .as_str()
        .ok_or_else(|| wrong_type(gguf, key, "string", value))
}

pub(super) fn opt_usize(gguf: &GgufFile, key: &str) -> Result<Option<usize>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(wrong_type(gguf, key, "non-negative integer", v)),
        },
    }
}

fn req_usize(gguf: &GgufFile, key: &str) -> Result<usize> {
    opt_usize(gguf, key)?.ok_or_else(|| missing(gguf, key))
}

/// A number as f64. An f32 is widened through its shortest decimal form, so that the 1e-5
/// llama.cpp stored as f32 reads 1e-5 in config.json rather than 9.999999747378752e-6.
fn opt_f64(gguf: &GgufFile, key: &str) -> Result<Option<f64>> {
    match gguf.get(key) {
        None => Ok(None),
        Some(GgufValue::F32(x)) => Ok(Some(x.to_string().parse().unwrap_or(*x as f64))),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| wrong_type(gguf, key, "number", v)),
    }
}

fn req_f64(gguf: &GgufFile, key: &str) -> Result<f64> {
    opt_f64(gguf, key)?.ok_or_else(|| missing(gguf, key))
}
