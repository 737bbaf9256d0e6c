//! `convert`: a Llama GGUF file -> a Hugging Face model directory.
//!
//! Writes config.json, model.safetensors (f32, or bf16 with `--dtype bf16`), tokenizer.json and
//! generation_config.json, readable by HF transformers and by our own loader. Every tensor is
//! dequantised to f32 first; q_proj / k_proj rows are put back in HF's order.
//!
//! Usage: convert IN.gguf OUT_DIR [--dtype f32|bf16]

use ilrec::cli::Flags;
use ilrec::model::gguf::GgufFile;
use ilrec::model::gguf_hf::{self, HfTensor};
use ilrec::model::weights::write_error;
use ilrec::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const USAGE: &str = "usage: convert IN.gguf OUT_DIR [--dtype f32|bf16]";

/// Storage dtype of model.safetensors.
#[derive(Clone, Copy, PartialEq)]
enum OutDtype {
    F32,
    Bf16,
}

struct Args {
    gguf: PathBuf,
    out_dir: PathBuf,
    dtype: OutDtype,
}

fn main() {
    if let Err(e) = parse_args(std::env::args().skip(1).collect()).and_then(|args| run(&args)) {
        eprintln!("convert: {e}");
        std::process::exit(1);
    }
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut positional = Vec::new();
    let mut dtype = OutDtype::F32;
    let mut f = Flags::new(USAGE, args);
    while let Some(arg) = f.next_flag() {
        match arg.as_str() {
            "--dtype" => {
                dtype = match f.value("--dtype")?.as_str() {
                    "f32" => OutDtype::F32,
                    "bf16" => OutDtype::Bf16,
                    other => {
                        return Err(Error::config(format!("--dtype {other:?}"), "f32 or bf16"))
                    }
                }
            }
            "-h" | "--help" => return Err(f.error("help requested")),
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    match <[PathBuf; 2]>::try_from(positional) {
        Ok([gguf, out_dir]) => Ok(Args {
            gguf,
            out_dir,
            dtype,
        }),
        Err(p) => Err(f.error(format!("expected 2 paths, got {}", p.len()))),
    }
}

fn run(args: &Args) -> Result<()> {
    let t0 = Instant::now();
    let gguf = GgufFile::open(&args.gguf)?;
    let t_open = t0.elapsed();
    let mut config = gguf_hf::hf_config(&gguf)?;
    let tokenizer = gguf_hf::hf_tokenizer_json(&gguf)?;
    let t1 = Instant::now();
    let tensors = gguf_hf::hf_tensors(&gguf)?;
    let t_dequant = t1.elapsed();

    std::fs::create_dir_all(&args.out_dir).map_err(|e| Error::io(&args.out_dir, e))?;
    if args.dtype == OutDtype::Bf16 {
        config["torch_dtype"] = json!("bfloat16");
    }
    write_json(&args.out_dir.join("config.json"), &config)?;
    write_json(
        &args.out_dir.join("generation_config.json"),
        &generation_config(&config),
    )?;
    write_json(&args.out_dir.join("tokenizer.json"), &tokenizer)?;
    let t2 = Instant::now();
    write_safetensors(
        &args.out_dir.join("model.safetensors"),
        &tensors,
        args.dtype,
    )?;
    let t_write = t2.elapsed();

    let n_params: usize = tensors.iter().map(|(_, _, v)| v.len()).sum();
    eprintln!(
        "convert: {} tensors, {n_params} parameters -> {}\n  open+validate {:.3}s, dequantise {:.3}s, write {:.3}s, total {:.3}s",
        tensors.len(),
        args.out_dir.display(),
        t_open.as_secs_f64(),
        t_dequant.as_secs_f64(),
        t_write.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// generation_config.json: the special token ids, so `generate` knows when to stop.
fn generation_config(config: &Value) -> Value {
    let mut gen = json!({"_from_model_config": true});
    for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(id) = config.get(key) {
            gen[key] = id.clone();
        }
    }
    gen
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::io(path, e))?;
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes all tensors to one safetensors file with `{"format": "pt"}` metadata
/// (transformers refuses files without it).
fn write_safetensors(path: &Path, tensors: &[HfTensor], dtype: OutDtype) -> Result<()> {
    // The bytes must outlive the views: for bf16 they are a converted copy.
    let bf16_copies: Vec<Vec<half::bf16>> = match dtype {
        OutDtype::F32 => Vec::new(),
        OutDtype::Bf16 => tensors
            .iter()
            .map(|(_, _, v)| v.iter().map(|&x| half::bf16::from_f32(x)).collect())
            .collect(),
    };
    // bytemuck casts keep host byte order; safetensors is little-endian, like every target we
    // build for (x86-64, aarch64).
    let mut views = Vec::with_capacity(tensors.len());
    for (i, (name, shape, values)) in tensors.iter().enumerate() {
        let view = match dtype {
            OutDtype::F32 => {
                TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(values))
            }
            OutDtype::Bf16 => TensorView::new(
                Dtype::BF16,
                shape.clone(),
                bytemuck::cast_slice(&bf16_copies[i]),
            ),
        }
        .map_err(|e| Error::format(path, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::tensor::serialize_to_file(views, &metadata, path).map_err(|e| write_error(path, e))
}
