//! The `lens` binary as a user runs it: the --json output's structure on the converted SmolLM2
//! directory (skipped with a reason when absent), and bad input -> one line, exit status 2.

mod common;

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

const HF_DIR: &str = "data/models/smollm2-135m-hf";

fn lens(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lens"))
        .args(args)
        .output()
        .expect("the lens binary runs")
}

/// Asserts a bad-input failure: status 2, nothing on stdout, one stderr line holding `needle`.
fn assert_bad_input(args: &[&str], needle: &str) {
    let out = lens(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr:?}");
    assert!(out.stdout.is_empty(), "{args:?}: printed to stdout");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr:?}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
}

#[test]
fn bad_arguments_fail_with_one_line_and_status_2() {
    let missing = "/nonexistent/model.gguf";
    assert_bad_input(&["--model", missing, "--text", "hi"], "get-smollm2.sh");
    assert_bad_input(&["--model", missing, "--text", ""], "--text is empty");
    assert_bad_input(
        &["--model", missing, "--text", "hi", "--top-k", "0"],
        "--top-k",
    );
    assert_bad_input(
        &["--model", missing, "--text", "hi", "--layers", "x"],
        "bad lens layers",
    );
    assert_bad_input(&["--model", missing], "--text is required");
    assert_bad_input(&["--text", "hi"], "--model is required");
    assert_bad_input(
        &["--model", missing, "--text", "hi", "--bogus"],
        "unknown argument",
    );
}

#[test]
fn help_names_the_default_layers() {
    let out = lens(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("every 10th block"), "{help}");
}

/// The converted SmolLM2 HF folder, or None (skipped) before `scripts/get-smollm2.sh`.
fn hf_dir() -> Option<PathBuf> {
    common::smollm2(HF_DIR).filter(|p| p.join("model.safetensors").exists())
}

#[test]
fn layer_out_of_range_fails_with_status_2() {
    let Some(dir) = hf_dir() else { return };
    let dir = dir.to_str().expect("a UTF-8 path");
    assert_bad_input(
        &["--model", dir, "--text", "hi", "--layers", "31"],
        "1..=30",
    );
    assert_bad_input(&["--model", dir, "--text", "hi", "--layers", "0"], "1..=30");
}

#[test]
fn json_output_has_every_layer_position_and_sorted_top_k() {
    let Some(dir) = hf_dir() else { return };
    let dir = dir.to_str().expect("a UTF-8 path");
    // Text, ids, depth and the reference top-1 all come from the fixture.
    let reference = first_reference_prompt();
    let text = reference["text"].as_str().expect("reference text");
    let want_ids: Vec<u64> = reference["ids"]
        .as_array()
        .expect("reference ids")
        .iter()
        .map(|v| v.as_u64().expect("an id"))
        .collect();
    let top = reference["layers"]
        .as_object()
        .expect("reference layers")
        .keys()
        .filter_map(|k| k.parse::<usize>().ok())
        .max()
        .expect("a layer")
        .to_string();
    let out = lens(&[
        "--model", dir, "--text", text, "--layers", "5", "--top-k", "3", "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    // Exactly one JSON object and nothing else.
    let report: Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON value");
    let ids: Vec<u64> = report["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("an id"))
        .collect();
    // HF tokenizers' ids for this text (../shared/fixtures/smollm2/reference.json).
    assert_eq!(ids, want_ids);
    let layers = report["layers"].as_object().expect("layers");
    let mut names: Vec<&str> = layers.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut want_names = vec![top.as_str(), "5"];
    want_names.sort_unstable();
    assert_eq!(names, want_names, "the final layer is always added");
    for (layer, positions) in layers {
        let positions = positions.as_array().expect("positions");
        assert_eq!(positions.len(), ids.len(), "layer {layer}");
        for pair in positions {
            let top_ids = pair[0].as_array().expect("ids");
            let logits: Vec<f64> = pair[1]
                .as_array()
                .expect("logits")
                .iter()
                .map(|v| v.as_f64().expect("a logit"))
                .collect();
            assert_eq!(top_ids.len(), 3);
            assert_eq!(logits.len(), 3);
            assert!(logits.windows(2).all(|w| w[0] >= w[1]), "{logits:?}");
        }
    }
    // The model's own top-1 at the prompt's last position is transformers' (the values
    // themselves are checked in tests/smollm2.rs).
    let last_pos = ids.len() - 1;
    let last = &layers[top.as_str()][last_pos][0][0];
    let want = reference["layers"][top.as_str()][last_pos][0][0].as_u64();
    assert!(
        want.is_some(),
        "reference.json: layer {top} position {last_pos}"
    );
    assert_eq!(last.as_u64(), want);
}

/// The first prompt of the SmolLM2 reference (text, ids, per-layer top-k).
fn first_reference_prompt() -> Value {
    let path = common::fixture("smollm2/reference.json");
    let text = std::fs::read_to_string(&path).expect("reference.json readable");
    let json: Value = serde_json::from_str(&text).expect("reference.json is JSON");
    json["prompts"][0].clone()
}

/// `--adapter DIR`: a LoRA adapter (made here on SmolLM2, B non-zero) changes the lens, and the
/// lens then shows exactly the merged model's final logits.
#[test]
fn an_adapter_changes_the_lens_to_the_merged_models() {
    use ilrec::lora::{adapter_params, attach, merged, save_adapter, LoraConfig};
    let Some(dir) = hf_dir() else { return };
    let mut model = ilrec::model::llama::Llama::from_dir(&dir).unwrap();
    let cfg = LoraConfig::parse("r=2,alpha=4,targets=q,v,down").unwrap();
    attach(&mut model, &cfg, 7).unwrap();
    for (i, (name, id)) in adapter_params(&model).into_iter().enumerate() {
        if name.contains("lora_B") {
            let shape = model.params.value(id).shape().to_vec();
            let value = common::randn(&shape, i as u64)
                .to_vec()
                .iter()
                .map(|x| 0.05 * x)
                .collect();
            let t = ilrec::Tensor::from_vec(value, &shape).unwrap();
            model.params.set_value(id, t).unwrap();
        }
    }
    let adapter = std::env::temp_dir().join(format!("ilrec-lens-adapter-{}", std::process::id()));
    save_adapter(&model, &cfg, &adapter, None).unwrap();
    let dir = dir.to_str().unwrap();
    let top_layer = model.config.num_hidden_layers.to_string();
    let args = [
        "--model",
        dir,
        "--text",
        "The movie was",
        "--top-k",
        "3",
        "--json",
        "--layers",
        &top_layer,
    ];
    let report = |extra: &[&str]| -> Value {
        let out = lens(&[&args[..], extra].concat());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let plain = report(&[]);
    let adapted = report(&["--adapter", adapter.to_str().unwrap()]);
    assert_ne!(
        plain["layers"], adapted["layers"],
        "the adapter must change the lens"
    );
    // The last position's top logits are the merged model's.
    let folded = merged(&model).unwrap();
    let ids: Vec<u32> = adapted["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let mut tape = ilrec::Tape::inference();
    let input = ilrec::model::llama::BatchInput::new(ids.clone(), 1, ids.len()).unwrap();
    let out = folded
        .forward(&mut tape, &input, Some(&[ids.len() - 1]))
        .unwrap();
    let logits = tape.value(out.logits).to_vec();
    let last = &adapted["layers"][&top_layer].as_array().unwrap()[ids.len() - 1];
    let top = last[0][0].as_u64().unwrap() as usize;
    let top_logit = last[1][0].as_f64().unwrap();
    assert!(
        (logits[top] as f64 - top_logit).abs() < 1e-3,
        "{} vs {top_logit}",
        logits[top]
    );
    assert!(logits.iter().all(|&l| l as f64 <= top_logit + 1e-3));
    let _ = std::fs::remove_dir_all(adapter);
}
