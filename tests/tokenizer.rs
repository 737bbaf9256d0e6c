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

#[test]
fn llama2_cases_match_hf() {
    let n = check_cases("llama2");
    eprintln!("llama2: {n} cases");
}

/// Item titles of the real data sets (ml-latest-small, the two Amazon 2018 sets), encoded by HF
/// with the Llama 2-style fixture tokenizer; made by scripts/make_sentencepiece_cases.py.
#[test]
fn llama2_item_titles_match_hf() {
    let tokenizer_path = common::fixture("tokenizers/llama2/tokenizer.json");
    let cases =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama2_titles.jsonl");
    assert!(cases.is_file(), "{} is missing", cases.display());
    let make = || Tokenizer::from_file(&tokenizer_path).expect("fixture tokenizer loads");
    let n = common::check_tokenizer_cases("llama2 titles", &make, &cases);
    eprintln!("llama2 titles: {n} cases");
}

/// decode(encode(text)) gives the text back wherever HF's decode does (every fixture case of the
/// SentencePiece tokenizer, and every title).
#[test]
fn llama2_decode_round_trip() {
    let t = Tokenizer::from_file(common::fixture("tokenizers/llama2/tokenizer.json")).unwrap();
    let titles =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama2_titles.jsonl");
    let cases = std::fs::read_to_string(common::fixture("tokenizers/llama2/cases.jsonl")).unwrap()
        + &std::fs::read_to_string(&titles).unwrap();
    let mut checked = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let case: Value = serde_json::from_str(line).unwrap();
        let text = case["text"].as_str().unwrap();
        if case["decoded"] != case["text"]
            || !case["added_tokens"].as_array().is_none_or(|a| a.is_empty())
        {
            continue;
        }
        assert_eq!(t.decode(&t.encode(text), false), text);
        checked += 1;
    }
    assert!(checked > 100, "only {checked} round trips checked");
}

/// Variants of the Llama 2-style tokenizer.json with other SentencePiece-era components
/// (Metaspace pre-tokenizer and decoder in every prepend scheme, NFKC / NFD / NFKD, Lowercase,
/// Strip, regex Replace), each with HF's ids; made by scripts/make_sentencepiece_cases.py.
#[test]
fn sentencepiece_variants_match_hf() {
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixture("tokenizers/llama2/tokenizer.json")).unwrap(),
    )
    .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sentencepiece_variants.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut failures, mut count) = (Vec::new(), 0);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let variant: Value = serde_json::from_str(line).unwrap();
        let name = variant["variant"].as_str().unwrap();
        let mut json = base.clone();
        for key in ["normalizer", "pre_tokenizer", "decoder"] {
            json[key] = variant[key].clone();
        }
        let t = Tokenizer::from_json(&json, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for case in variant["cases"].as_array().unwrap() {
            count += 1;
            let text = case["text"].as_str().unwrap();
            let expected: Vec<u32> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let ids = t.encode(text);
            if ids != expected {
                failures.push(format!(
                    "{name}: {text:?}\n  ours {ids:?}\n  HF   {expected:?}"
                ));
            }
            let decoded = t.decode(&expected, false);
            if decoded != case["decoded"].as_str().unwrap() {
                failures.push(format!(
                    "{name}: {text:?} decodes to {decoded:?}, HF {:?}",
                    case["decoded"]
                ));
            }
        }
    }
    assert!(count > 0, "no variant cases");
    assert!(
        failures.is_empty(),
        "{} of {count} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn unsupported_components_are_one_line_errors() {
    let base = || {
        serde_json::from_str::<Value>(
            &std::fs::read_to_string(common::fixture("tokenizers/llama2/tokenizer.json")).unwrap(),
        )
        .unwrap()
    };
    let cases = [
        (
            "normalizer",
            serde_json::json!({"type": "Replace", "pattern": {"Regex": "[0-9]+"}, "content": ""}),
            "[0-9]+",
        ),
        (
            "normalizer",
            serde_json::json!({"type": "StripAccents"}),
            "StripAccents",
        ),
        (
            "pre_tokenizer",
            serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"}),
            "sometimes",
        ),
        ("decoder", serde_json::json!({"type": "CTC"}), "CTC"),
    ];
    for (key, component, needle) in cases {
        let mut json = base();
        json[key] = component;
        let err = load_error_named(&json, "llama2/tokenizer.json");
        assert!(
            err.contains(needle) && err.contains("llama2/tokenizer.json"),
            "{err}"
        );
        assert!(
            !err.contains('\n') && !err.contains("Some(") && !err.contains("None"),
            "{err}"
        );
    }
}

fn load_error_named(json: &Value, origin: &str) -> String {
    match Tokenizer::from_json(json, origin) {
        Ok(_) => panic!("unsupported component was accepted"),
        Err(e) => e.to_string(),
    }
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
    unknown_pre["pre_tokenizer"] = serde_json::json!({"type": "WhitespaceSplit"});
    assert!(load_error(&unknown_pre).contains("WhitespaceSplit"));

    let mut unknown_pattern = small_json();
    unknown_pattern["pre_tokenizer"] = serde_json::json!({"type": "Split",
        "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated", "invert": false});
    assert!(load_error(&unknown_pattern).contains("[a-z]+"));

    let mut unknown_model = small_json();
    unknown_model["model"]["type"] = serde_json::json!("Unigram");
    assert!(load_error(&unknown_model).contains("Unigram"));

    let mut unknown_normalizer = small_json();
    unknown_normalizer["normalizer"] = serde_json::json!({"type": "Precompiled"});
    assert!(load_error(&unknown_normalizer).contains("Precompiled"));

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
