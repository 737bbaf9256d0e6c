//! LoRA against PEFT 0.21 (../shared/fixtures/lora, made by make_more_fixtures.py): PEFT's own
//! adapter folder loaded onto the HF base gives PEFT's logits and loss, the gradient of every
//! LoRA matrix (and no base parameter gets one, nor costs a weight-gradient GEMM), the losses
//! of 3 AdamW steps on the LoRA parameters alone, the logits after them and after merging.
//! r, alpha and the targets are read from the fixture (lora.json), never assumed; saving writes
//! the same files PEFT wrote (names, shapes, dtypes, metadata, config fields).

mod common;

use common::{assert_tensors_close, fixture};
use ilrec::autograd::weight_gradient_products;
use ilrec::lora::{adapter_params, load_adapter, merged, save_adapter, LoraConfig};
use ilrec::model::adapter::Proj;
use ilrec::model::llama::{causal_lm_loss, BatchInput, Llama};
use ilrec::model::weights::SafetensorsFile;
use ilrec::optim::{AdamW, AdamWConfig};
use ilrec::{Tape, Tensor};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ABS_TOL: f32 = 1e-4;
const GRAD_REL_TOL: f32 = 1e-3;
const LOSS_TOL: f32 = 1e-3;

struct Case {
    model: Llama,
    cfg: LoraConfig,
    reference: SafetensorsFile,
    input: BatchInput,
    labels: Vec<i64>,
}

/// The base with PEFT's adapter attached, the reference and the batch.
fn load_case() -> Case {
    let mut model = Llama::from_dir(fixture("lora/base")).unwrap();
    let cfg = load_adapter(&mut model, &fixture("lora/adapter")).unwrap();
    let reference = SafetensorsFile::open(fixture("lora/reference.safetensors")).unwrap();
    let (input, labels) = common::reference_batch(&reference);
    Case {
        model,
        cfg,
        reference,
        input,
        labels,
    }
}

fn logits_of(model: &Llama, input: &BatchInput) -> Tensor {
    let mut tape = Tape::inference();
    let out = model.forward(&mut tape, input, None).unwrap();
    tape.value(out.logits).clone()
}

/// lora.json (written by the fixture script) agrees with what we read from adapter_config.json.
#[test]
fn the_adapter_config_is_read_as_the_fixture_describes_it() {
    let case = load_case();
    let text = std::fs::read_to_string(fixture("lora/lora.json")).unwrap();
    let meta: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(case.cfg.r as u64, meta["r"].as_u64().unwrap());
    assert_eq!(case.cfg.alpha as f64, meta["lora_alpha"].as_f64().unwrap());
    let want: BTreeSet<Proj> = meta["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Proj::parse(t.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        case.cfg.targets.iter().copied().collect::<BTreeSet<_>>(),
        want
    );
    let blocks = case.model.blocks().len();
    assert_eq!(adapter_params(&case.model).len(), 2 * want.len() * blocks);
    let scale = case.cfg.alpha / case.cfg.r as f32;
    for block in case.model.blocks() {
        for &p in &want {
            assert_eq!(block.adapter(p).unwrap().scale, scale);
        }
    }
}

#[test]
fn logits_loss_and_every_lora_gradient_match_peft() {
    let mut case = load_case();
    let (b, t) = (case.input.batch, case.input.seq);
    let mut tape = Tape::new();
    let out = case.model.forward(&mut tape, &case.input, None).unwrap();
    let want_logits = case.reference.tensor_f32("logits").unwrap();
    assert_tensors_close("logits", tape.value(out.logits), &want_logits, ABS_TOL, 0.0);
    let loss = causal_lm_loss(&mut tape, out.logits, &case.labels, b, t).unwrap();
    let want_loss = case.reference.tensor_f32("loss").unwrap();
    assert_tensors_close("loss", tape.value(loss), &want_loss, ABS_TOL, 0.0);

    let products_before = weight_gradient_products();
    let grads = tape.backward(loss).unwrap();
    let products = weight_gradient_products() - products_before;
    drop(tape);
    case.model.params.accumulate(&grads).unwrap();

    // Exactly the LoRA matrices hold a gradient: the base has none (no buffer either) ...
    let lora: Vec<(String, _)> = adapter_params(&case.model);
    let mut with_grad = case.model.params.params_with_gradient();
    let mut names: Vec<String> = lora.iter().map(|(n, _)| n.clone()).collect();
    with_grad.sort();
    names.sort();
    assert_eq!(with_grad, names);
    // ... and the backward ran one weight-gradient GEMM per LoRA factor (A and B of each
    // adapter), none for a frozen projection or the frozen head.
    assert_eq!(products as usize, lora.len());

    let reference_grads: Vec<String> = case
        .reference
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad."))
        .collect();
    assert_eq!(
        reference_grads.len(),
        lora.len(),
        "one reference gradient per LoRA matrix"
    );
    for (name, id) in &lora {
        let want = case
            .reference
            .tensor_f32(&format!("grad.base_model.model.{name}"))
            .unwrap();
        let got = case.model.params.grad(*id).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}");
        assert_tensors_close(&format!("grad.{name}"), got, &want, ABS_TOL, GRAD_REL_TOL);
    }
}

#[test]
fn three_adamw_steps_on_the_lora_parameters_and_the_merged_logits_match_peft() {
    let mut case = load_case();
    let h = case.reference.tensor_f32("adamw_hparams").unwrap().to_vec();
    let want = case.reference.tensor_f32("adamw_losses").unwrap().to_vec();
    let (lr, beta1, beta2, eps, weight_decay) = (h[0], h[1], h[2], h[3], h[4]);
    let mut opt = AdamW::new(AdamWConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
    });
    let (b, t) = (case.input.batch, case.input.seq);
    let base_before: Vec<Vec<f32>> = case
        .model
        .params
        .ids()
        .filter(|&id| !case.model.params.is_trainable(id))
        .map(|id| case.model.params.value(id).to_vec())
        .collect();
    for (step, want_loss) in want.iter().enumerate() {
        let mut tape = Tape::new();
        let out = case.model.forward(&mut tape, &case.input, None).unwrap();
        let loss = causal_lm_loss(&mut tape, out.logits, &case.labels, b, t).unwrap();
        let got = tape.value(loss).item().unwrap();
        assert!(
            (got - want_loss).abs() <= LOSS_TOL,
            "step {step}: loss {got}, PEFT {want_loss}"
        );
        let grads = tape.backward(loss).unwrap();
        drop(tape);
        case.model.params.accumulate(&grads).unwrap();
        opt.step(&mut case.model.params, lr).unwrap();
        case.model.params.zero_grad();
    }
    // The base did not move; only the adapter has optimizer state.
    let base_after: Vec<Vec<f32>> = case
        .model
        .params
        .ids()
        .filter(|&id| !case.model.params.is_trainable(id))
        .map(|id| case.model.params.value(id).to_vec())
        .collect();
    assert!(base_before == base_after, "a frozen parameter changed");
    let state = opt.state_to_tensors(&case.model.params).unwrap();
    assert_eq!(state.len(), 1 + 3 * adapter_params(&case.model).len());

    let after = logits_of(&case.model, &case.input);
    let want_after = case.reference.tensor_f32("logits_after_adamw").unwrap();
    assert_tensors_close("logits after AdamW", &after, &want_after, ABS_TOL, 0.0);
    let folded = merged(&case.model).unwrap();
    assert!(adapter_params(&folded).is_empty());
    let want_merged = case
        .reference
        .tensor_f32("merged_logits_after_adamw")
        .unwrap();
    assert_tensors_close(
        "merged logits",
        &logits_of(&folded, &case.input),
        &want_merged,
        ABS_TOL,
        0.0,
    );
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("lora", name)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `target_modules` as a sorted list (PEFT writes a set, in no fixed order).
fn with_sorted_targets(mut v: Value) -> Value {
    let mut t: Vec<String> = v["target_modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    t.sort();
    v["target_modules"] = serde_json::json!(t);
    v
}

#[test]
fn saving_writes_peft_files_and_loading_them_back_gives_identical_logits() {
    let case = load_case();
    let dir = scratch("save");
    save_adapter(&case.model, &case.cfg, &dir, None).unwrap();
    // The config: every field PEFT wrote, with the same values.
    let ours = with_sorted_targets(json(&dir.join("adapter_config.json")));
    let peft = with_sorted_targets(json(&fixture("lora/adapter/adapter_config.json")));
    assert_eq!(ours, peft);
    // The weights: same names, dtypes, shapes and metadata, same values bit for bit.
    let (a, b) = (
        SafetensorsFile::open(dir.join("adapter_model.safetensors")).unwrap(),
        SafetensorsFile::open(fixture("lora/adapter/adapter_model.safetensors")).unwrap(),
    );
    assert_eq!(a.names(), b.names());
    for name in a.names() {
        assert_eq!(a.describe(&name), b.describe(&name), "{name}");
        assert_eq!(
            a.tensor_f32(&name).unwrap().to_vec(),
            b.tensor_f32(&name).unwrap().to_vec()
        );
    }
    let header = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let h: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        h["__metadata__"].clone()
    };
    assert_eq!(
        header(&dir.join("adapter_model.safetensors")),
        header(&fixture("lora/adapter/adapter_model.safetensors"))
    );

    let mut reloaded = Llama::from_dir(fixture("lora/base")).unwrap();
    let cfg = load_adapter(&mut reloaded, &dir).unwrap();
    assert_eq!(cfg, case.cfg);
    let (x, y) = (
        logits_of(&case.model, &case.input),
        logits_of(&reloaded, &case.input),
    );
    assert_eq!(
        x.to_vec(),
        y.to_vec(),
        "save -> load must give identical logits"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_merged_model_saves_as_a_plain_hf_checkpoint_with_the_same_logits() {
    let case = load_case();
    let dir = scratch("merged");
    let folded = merged(&case.model).unwrap();
    folded.save(&dir).unwrap();
    let loaded = Llama::from_dir(&dir).unwrap();
    let (x, y) = (
        logits_of(&case.model, &case.input),
        logits_of(&loaded, &case.input),
    );
    for (i, (a, b)) in x.to_vec().iter().zip(y.to_vec()).enumerate() {
        assert!(
            (a - b).abs() <= ABS_TOL,
            "logit {i}: adapted {a}, merged {b}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The `merge` binary writes the HF checkpoint of base + PEFT's adapter: PEFT's logits.
#[test]
fn the_merge_binary_writes_the_adapted_model_as_one_checkpoint() {
    let case = load_case();
    let out = scratch("merge-cli");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_merge"))
        .args(["--model", fixture("lora/base").to_str().unwrap()])
        .args(["--adapter", fixture("lora/adapter").to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let loaded = Llama::from_dir(&out).unwrap();
    let want = case.reference.tensor_f32("logits").unwrap();
    assert_tensors_close(
        "merged checkpoint logits",
        &logits_of(&loaded, &case.input),
        &want,
        ABS_TOL,
        0.0,
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_merge"))
        .args(["--model", fixture("lora/base").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(out);
}
