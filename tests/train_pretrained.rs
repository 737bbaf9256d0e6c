//! `train --model DIR` on a pretrained-style HF checkpoint in SID mode with LLM item embeddings
//! (`--sid-embeddings llm`): the model keeps the tokenizer's full vocabulary (identity map), the
//! SID tokens are added to the tokenizer and the model grows their embedding rows, and the item
//! embeddings are the model's mean-pooled text states, cached in the run folder. The "pretrained"
//! model is a tiny random Llama with SmolLM2's 49,152-token vocabulary written here, so the test
//! runs in seconds; `scripts/get-smollm2.sh` + `--model data/models/smollm2-135m-hf` is the same
//! path with the real model.

mod common;

use ilrec::model::config::LlamaConfig;
use ilrec::model::llama::Llama;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    common::scratch("pre", name)
}

/// An HF folder: the `tiny` preset's shape with its full 49,152-token vocabulary, random weights
/// (seed 7), and the shipped SmolLM2 tokenizer.json.
fn write_tiny_pretrained(dir: &Path) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = LlamaConfig::from_file(root.join("data/presets/tiny.json")).unwrap();
    let vocab = config.vocab_size;
    Llama::from_config(config, 7).unwrap().save(dir).unwrap();
    let tokenizer = root.join("data/tokenizer/smollm2/tokenizer.json");
    std::fs::copy(tokenizer, dir.join("tokenizer.json")).unwrap();
    vocab
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn sid_mode_with_llm_embeddings_on_a_pretrained_checkpoint() {
    let (data, model, run) = (scratch("data"), scratch("model"), scratch("run"));
    common::write_tiny_movielens(&data);
    let base_vocab = write_tiny_pretrained(&model);
    let args = [
        "--data",
        data.to_str().unwrap(),
        "--kcore",
        "0",
        "--model",
        model.to_str().unwrap(),
        "--sid-embeddings",
        "llm",
        "--epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--batch",
        "8",
        "--sasrec-epochs",
        "2",
        "--valid-users",
        "8",
        "--beams",
        "4",
        "--out",
        run.to_str().unwrap(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train failed: {stderr}");

    // SIDs were built from the model's text states, cached in the run folder.
    let sids = read_json(&run.join("sids.json"));
    let levels = sids["0"].as_array().unwrap().len();
    assert_eq!(sids.as_object().unwrap().len(), 12);
    let cached = std::fs::read_dir(run.join("cache")).unwrap().count();
    assert_eq!(cached, 1, "one cached embeddings file expected");
    assert!(stderr.contains("embedding 12 item texts"), "{stderr}");

    // The trained model keeps every tokenizer id and has grown rows for the SID tokens: at
    // least one code per level, at most the vocabulary size asked for (256 per level).
    let trained = read_json(&run.join("checkpoints/ilrec/config.json"));
    let grown = trained["vocab_size"].as_u64().unwrap() as usize - base_vocab;
    assert!(
        grown >= levels && grown <= levels * 256,
        "{grown} rows added"
    );
    assert_eq!(read_json(&run.join("config.json"))["item_repr"], "sid");
    let summary: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["rows"].as_array().unwrap().len(), 4);
    for dir in [data, model, run] {
        let _ = std::fs::remove_dir_all(dir);
    }
}
