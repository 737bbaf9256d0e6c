//! A frozen base held in bf16 (LoRA on a half-precision checkpoint): loaded without an f32
//! detour, fetched onto the tape as stored (linear and embedding convert one matrix, or the rows
//! they gather, at a time), and computing exactly what the same weights in f32 compute: logits,
//! loss, every LoRA gradient and the merged logits, bit for bit (bf16 -> f32 is exact, so both
//! runs feed the same numbers to the same kernels).

mod common;

use common::fixture;
use ilrec::lora::{adapter_params, load_adapter, merged};
use ilrec::model::llama::{BatchInput, Llama};
use ilrec::model::weights::SafetensorsFile;
use ilrec::{DType, Tape};
use std::path::{Path, PathBuf};

/// The lora fixture's base written as a bf16 checkpoint in a scratch folder.
fn bf16_base() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-bf16-base-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("lora/base");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let original = SafetensorsFile::open(src.join("model.safetensors")).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = original
        .names()
        .into_iter()
        .map(|n| {
            let t = original.tensor_f32(&n).unwrap();
            let bytes = t
                .to_vec()
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect();
            (n, t.shape().to_vec(), bytes)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, shape, bytes)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::BF16,
                shape.clone(),
                bytes,
            );
            (n.clone(), view.unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &dir.join("model.safetensors")).unwrap();
    dir
}

fn input() -> (BatchInput, Vec<i64>) {
    let reference = SafetensorsFile::open(fixture("lora/reference.safetensors")).unwrap();
    let (ids, shape) = reference.tensor_i64("input_ids").unwrap();
    let (labels, _) = reference.tensor_i64("labels").unwrap();
    let ids = ids.iter().map(|&x| x as u32).collect();
    (BatchInput::new(ids, shape[0], shape[1]).unwrap(), labels)
}

/// Logits and the gradient of every adapter parameter (by name) of one LM backward.
fn run(
    model: &mut Llama,
    input: &BatchInput,
    labels: &[i64],
) -> (Vec<f32>, Vec<(String, Vec<f32>)>) {
    let mut tape = Tape::new();
    let out = model.forward(&mut tape, input, None).unwrap();
    let logits = tape.value(out.logits).to_vec();
    let loss =
        ilrec::model::llama::causal_lm_loss(&mut tape, out.logits, labels, input.batch, input.seq)
            .unwrap();
    let grads = tape.backward(loss).unwrap();
    drop(tape);
    model.params.zero_grad();
    model.params.accumulate(&grads).unwrap();
    let named = adapter_params(model)
        .into_iter()
        .map(|(n, id)| (n, model.params.grad(id).unwrap().to_vec()))
        .collect();
    (logits, named)
}

fn logits_of(model: &Llama, input: &BatchInput) -> Vec<f32> {
    let mut tape = Tape::inference();
    let out = model.forward(&mut tape, input, None).unwrap();
    tape.value(out.logits).to_vec()
}

fn with_adapter(dir: &Path, dtype: Option<DType>) -> Llama {
    let mut model = Llama::from_dir_as(dir, dtype).unwrap();
    load_adapter(&mut model, &fixture("lora/adapter")).unwrap();
    model
}

#[test]
fn a_bf16_frozen_base_computes_what_its_f32_values_compute() {
    let dir = bf16_base();
    let mut half = with_adapter(&dir, None); // the file's precision: bf16
    let mut full = with_adapter(&dir, Some(DType::F32)); // the same values, converted at load
    let q = half.blocks()[0].q_proj;
    assert_eq!(half.params.value(q).dtype(), DType::BF16);
    assert_eq!(half.params.value(half.embed_id()).dtype(), DType::BF16);
    assert_eq!(full.params.value(q).dtype(), DType::F32);
    // On the tape a frozen bf16 weight stays bf16 (no f32 copy); the adapter is f32.
    let mut tape = Tape::new();
    let w = tape.weight(&half.params, q);
    assert_eq!(tape.value(w).dtype(), DType::BF16);
    let a = half.blocks()[0]
        .adapter(ilrec::model::adapter::Proj::Q)
        .unwrap()
        .a;
    let a = tape.weight(&half.params, a);
    assert_eq!(tape.value(a).dtype(), DType::F32);
    assert!(tape.requires_grad(a));

    let (input, labels) = input();
    let (half_logits, half_grads) = run(&mut half, &input, &labels);
    let (full_logits, full_grads) = run(&mut full, &input, &labels);
    assert_eq!(half_logits, full_logits);
    assert_eq!(half_grads, full_grads);
    let merged_half = merged(&half).unwrap();
    assert_eq!(
        logits_of(&merged_half, &input),
        logits_of(&merged(&full).unwrap(), &input)
    );
    assert_eq!(
        merged_half.params.value(merged_half.embed_id()).dtype(),
        DType::F32
    );
    // A vocabulary grown for added tokens keeps the table's precision.
    let n = half.config.vocab_size + 3;
    half.resize_vocab(n, 1).unwrap();
    assert_eq!(half.params.value(half.embed_id()).dtype(), DType::BF16);
    let _ = std::fs::remove_dir_all(dir);
}
