//! The tokenizer against HF `tokenizers`: every case of the fixture sets (ids exact, decode equal
//! to HF's decode), and malformed tokenizer.json files (errors, no panics).

mod common;

use ilrec::tokenizer::Tokenizer;
use serde_json::Value;

/// Runs every line of `<set>/cases.jsonl` against `<set>/tokenizer.json`; returns the case count.
fn check_cases(set: &str) -> usize {
    let tokenizer_path = common::fixture(&format!("tokenizers/{set}/tokenizer.json"));
    let cases_path = common::fixture(&format!("tokenizers/{set}/cases.jsonl"));
    let make = || Tokenizer::from_file(&tokenizer_path).expect("fixture tokenizer loads");
    common::check_tokenizer_cases(set, &make, &cases_path)
}

#[test]
fn smollm2_cases_match_hf() {
    let n = check_cases("smollm2");
    eprintln!("smollm2: {n} cases");
}

#[test]
fn qwen3_cases_match_hf() {
    let n = check_cases("qwen3");
    eprintln!("qwen3: {n} cases");
}

#[test]
fn qwen3_special_tokens_and_skip() {
    let t = Tokenizer::from_file(common::fixture("tokenizers/qwen3/tokenizer.json")).unwrap();
    let im_start = t.token_to_id("<|im_start|>").unwrap();
    assert_eq!(im_start, 151644); // from the file's added_tokens
    assert_eq!(t.id_to_token(im_start), Some("<|im_start|>"));
    let ids = t.encode("<|im_start|>hi");
    assert_eq!(ids[0], im_start);
    assert_eq!(t.decode(&ids, true), "hi");
    assert_eq!(t.decode(&ids, false), "<|im_start|>hi");
    // Adding an existing token keeps its id; a new one takes largest + 1.
    let mut t = t;
    let largest = t.vocab_size() as u32 - 1;
    let ids = t.add_tokens(&["<|im_start|>".to_string(), "<x_1>".to_string()], false);
    assert_eq!(ids, [im_start, largest + 1]);
    assert_eq!(t.vocab_size() as u32, largest + 2);
}

/// A small valid tokenizer.json to corrupt.
fn small_json() -> Value {
    serde_json::json!({
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
    })
}

fn load_error(json: &Value) -> String {
    match Tokenizer::from_json(json, "bad.json") {
        Ok(_) => panic!("malformed tokenizer.json was accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn small_valid_file_loads() {
    let t = Tokenizer::from_json(&small_json(), "small.json").unwrap();
    assert_eq!(t.encode("abab"), [2, 2]);
}

#[test]
fn malformed_files_are_errors() {
    let mut missing_model = small_json();
    missing_model.as_object_mut().unwrap().remove("model");
    assert!(load_error(&missing_model).contains("model"));

    for bad in [
        serde_json::json!("a b c"),
        serde_json::json!(["a"]),
        serde_json::json!(7),
        serde_json::json!("a z"),
    ] {
        let mut bad_merge = small_json();
        bad_merge["model"]["merges"] = serde_json::json!([bad]);
        let err = load_error(&bad_merge);
        assert!(
            err.contains("merges[0]") && err.contains("bad.json"),
            "{err}"
        );
    }

    let mut unknown_pre = small_json();
    unknown_pre["pre_tokenizer"] = serde_json::json!({"type": "Metaspace", "replacement": "▁"});
    assert!(load_error(&unknown_pre).contains("Metaspace"));

    let mut unknown_pattern = small_json();
    unknown_pattern["pre_tokenizer"] = serde_json::json!({"type": "Split",
        "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated", "invert": false});
    assert!(load_error(&unknown_pattern).contains("[a-z]+"));

    let mut unknown_model = small_json();
    unknown_model["model"]["type"] = serde_json::json!("Unigram");
    assert!(load_error(&unknown_model).contains("Unigram"));

    let mut unknown_normalizer = small_json();
    unknown_normalizer["normalizer"] = serde_json::json!({"type": "NFKC"});
    assert!(load_error(&unknown_normalizer).contains("NFKC"));

    let mut bad_id = small_json();
    bad_id["model"]["vocab"]["a"] = serde_json::json!(-3);
    assert!(load_error(&bad_id).contains("vocab"));

    let mut huge_id = small_json();
    huge_id["model"]["vocab"]["a"] = serde_json::json!(4_000_000_000u64);
    assert!(load_error(&huge_id).contains("vocab"));

    let mut bad_added = small_json();
    bad_added["added_tokens"] = serde_json::json!([{"content": "<x>"}]);
    assert!(load_error(&bad_added).contains("added_tokens[0]"));
}

#[test]
fn unreadable_files_are_errors() {
    let dir = std::env::temp_dir().join(format!("ilrec-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, "{ not json").unwrap();
    let err = Tokenizer::from_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("JSON"),
        "{err}"
    );
    assert!(Tokenizer::from_file(dir.join("absent.json")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
