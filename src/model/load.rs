//! One entry point for every model file format we read: a Hugging Face directory
//! (`config.json` + safetensors, optionally `tokenizer.json`) or a llama.cpp GGUF file.
//!
//! Loading a GGUF goes straight to [`Params`], one tensor at a time: map the file, dequantise a
//! tensor to f32, put llama.cpp's q/k rows back in HF order, move it into the parameter set, and
//! only then touch the next. The peak is the f32 model plus one tensor, never the model twice
//! (as going through `gguf_hf::hf_tensors` and a conversion step would cost).

use super::config::LlamaConfig;
use super::gguf::GgufFile;
use super::gguf_hf::{hf_config, hf_tensor_name, hf_tokenizer_json, unpermute_qk_rows};
use super::llama::{check_layer_count, expected_tensors, Llama};
use crate::autograd::Params;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use crate::tokenizer::Tokenizer;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Loads `path`: a directory (HF layout) or a `.gguf` file. The tokenizer is the directory's
/// `tokenizer.json` (None if absent) or the one the GGUF metadata describes.
pub fn load_model(path: impl AsRef<Path>) -> Result<(Llama, Option<Tokenizer>)> {
    load_model_as(path, Some(DType::F32))
}

/// [`load_model`] with the weights' storage precision chosen: `Some(dtype)` converts every
/// tensor, None keeps an HF checkpoint's own (a GGUF, dequantised, is then f32).
pub fn load_model_as(
    path: impl AsRef<Path>,
    dtype: Option<DType>,
) -> Result<(Llama, Option<Tokenizer>)> {
    let path = path.as_ref();
    if path.is_dir() {
        if !path.join("config.json").is_file() {
            return Err(Error::io(
                path,
                "this directory has no config.json (expected a Hugging Face model directory: \
                 config.json + model.safetensors [+ tokenizer.json], or pass a .gguf file)",
            ));
        }
        let model = Llama::from_dir_as(path, dtype)?;
        let tokenizer_path = path.join("tokenizer.json");
        let tokenizer = if tokenizer_path.is_file() {
            Some(Tokenizer::from_file(&tokenizer_path)?)
        } else {
            None
        };
        return Ok((model, tokenizer));
    }
    if path.is_file() {
        let (model, tokenizer) = Llama::from_gguf_as(path, dtype.unwrap_or(DType::F32))?;
        return Ok((model, Some(tokenizer)));
    }
    Err(Error::io(
        path,
        "no such file or directory (expected a model directory with config.json + \
         model.safetensors, or a .gguf file; `bash scripts/get-smollm2.sh` fetches SmolLM2-135M)",
    ))
}

impl Llama {
    /// Loads a Llama-architecture GGUF file: the model (every tensor dequantised to f32, renamed
    /// to HF, q/k rows un-permuted) and the tokenizer built from its metadata.
    pub fn from_gguf(path: impl AsRef<Path>) -> Result<(Llama, Tokenizer)> {
        Llama::from_gguf_as(path, DType::F32)
    }

    /// [`Llama::from_gguf`] with every tensor stored as `dtype` once dequantised (one tensor
    /// at a time).
    pub fn from_gguf_as(path: impl AsRef<Path>, dtype: DType) -> Result<(Llama, Tokenizer)> {
        let path = path.as_ref();
        let gguf = GgufFile::open(path)?;
        let config = LlamaConfig::from_json(&hf_config(&gguf)?, path)?;
        let params = gguf_params(&gguf, &config, dtype)?;
        let model = Llama::from_params(config, params)?;
        let tokenizer =
            Tokenizer::from_json(&hf_tokenizer_json(&gguf)?, &path.display().to_string())?;
        Ok((model, tokenizer))
    }
}

/// Every tensor `config` needs, read from `gguf` into f32 parameters with HF names, in the
/// canonical order of [`expected_tensors`]. Tensors of the file the architecture lacks are refused.
fn gguf_params(gguf: &GgufFile, config: &LlamaConfig, dtype: DType) -> Result<Params> {
    // HF name -> GGUF name, for every tensor in the file.
    let mut gguf_name_of = HashMap::with_capacity(gguf.tensors().len());
    for info in gguf.tensors() {
        let hf = hf_tensor_name(&info.name).ok_or_else(|| {
            Error::format(
                gguf.path(),
                format!("tensor {:?} has no HF Llama counterpart", info.name),
            )
        })?;
        gguf_name_of.insert(hf, info.name.as_str());
    }
    check_layer_count(config, gguf_name_of.keys().map(String::as_str), gguf.path())?;
    let expected = expected_tensors(config);
    let expected_names: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(extra) = gguf_name_of
        .keys()
        .find(|hf| !expected_names.contains(hf.as_str()))
    {
        return Err(Error::format(
            gguf.path(),
            format!("tensor `{extra}` is not part of the architecture its metadata describes"),
        ));
    }
    let mut params = Params::new();
    for (hf_name, shape) in &expected {
        let gguf_name = gguf_name_of.get(hf_name).ok_or_else(|| {
            Error::format(
                gguf.path(),
                format!("tensor `{hf_name}` (expected shape {shape:?}) is missing"),
            )
        })?;
        let tensor = gguf_tensor(gguf, config, gguf_name, hf_name, shape)?;
        params.add(hf_name, tensor.to_dtype(dtype), true)?;
    }
    Ok(params)
}

/// One GGUF tensor as an f32 [`Tensor`] of the HF `shape`, q/k rows in HF order.
fn gguf_tensor(
    gguf: &GgufFile,
    config: &LlamaConfig,
    gguf_name: &str,
    hf_name: &str,
    shape: &[usize],
) -> Result<Tensor> {
    let (found_shape, values) = gguf.dequantize(gguf_name)?; // row-major, e.g. (out, in)
    if found_shape != shape {
        return Err(Error::format(
            gguf.path(),
            format!(
                "tensor {gguf_name} (`{hf_name}`): shape {found_shape:?}, but the metadata implies {shape:?}"
            ),
        ));
    }
    // llama.cpp interleaves the two RoPE halves of every q/k head (see `unpermute_qk_rows`).
    let heads = if hf_name.ends_with("self_attn.q_proj.weight") {
        Some(config.num_attention_heads)
    } else if hf_name.ends_with("self_attn.k_proj.weight") {
        Some(config.num_key_value_heads)
    } else {
        None
    };
    let values = match heads {
        Some(n_heads) => unpermute_qk_rows(&values, n_heads, shape[1])?,
        None => values,
    };
    Tensor::from_vec(values, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        crate::fixtures::root()
    }

    fn error_of(path: &Path) -> String {
        match load_model(path) {
            Ok(_) => panic!("{} should not load", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_directory_without_tokenizer_loads_the_model_alone() {
        let dir = fixtures().join("tiny-llama");
        let (model, tokenizer) =
            load_model(&dir).unwrap_or_else(|e| panic!("fixture {} must load: {e}", dir.display()));
        // The depth and width come from the fixture's own config.json, read independently.
        let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let field = |k: &str| {
            config[k]
                .as_u64()
                .unwrap_or_else(|| panic!("config.json: {k}")) as usize
        };
        assert_eq!(model.config.num_hidden_layers, field("num_hidden_layers"));
        assert_eq!(model.config.hidden_size, field("hidden_size"));
        assert_eq!(model.blocks().len(), field("num_hidden_layers"));
        assert!(tokenizer.is_none());
    }

    #[test]
    fn wrong_paths_say_what_a_model_is() {
        let missing = error_of(Path::new("/nonexistent/model.gguf"));
        assert!(missing.contains("get-smollm2.sh"), "{missing}");
        let not_a_model = error_of(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path());
        assert!(not_a_model.contains("no config.json"), "{not_a_model}");
        let not_gguf = error_of(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("Cargo.toml")
                .as_path(),
        );
        assert!(not_gguf.contains("GGUF"), "{not_gguf}");
    }
}
