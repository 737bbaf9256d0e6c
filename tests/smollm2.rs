//! The real SmolLM2-135M-Instruct (Q4_1 GGUF, and the f32 HF directory converted from it) against
//! HF transformers: logit-lens top-10s of ../shared/fixtures/smollm2/reference.json through
//! `lens_top_k`, the tokenizer built from GGUF metadata against HF `tokenizers`, and a greedy
//! answer with the KV cache.
//!
//! The model files are git-ignored: `bash scripts/get-smollm2.sh` fetches and converts them (CI
//! runs it before the tests). When they are absent, each test prints a skip reason and returns.

mod common;

use ilrec::ilrec::lens_report::{lens_top_k, TopK};
use ilrec::model::generate::greedy;
use ilrec::model::gguf::GgufFile;
use ilrec::model::gguf_hf::hf_tokenizer_json;
use ilrec::model::llama::Llama;
use ilrec::model::load::load_model;
use ilrec::tokenizer::Tokenizer;
use serde_json::Value;

const GGUF: &str = "data/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";
const HF_DIR: &str = "data/models/smollm2-135m-hf";

/// Relative tolerance on logits (relative to max(|reference|, 1), so logits near zero are
/// compared absolutely).
const LOGIT_RTOL: f32 = 1e-3;

/// One prompt of reference.json.
struct Reference {
    text: String,
    ids: Vec<u32>,
    /// (layer, one top-10 per position)
    layers: Vec<(usize, Vec<TopK>)>,
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("an id array")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

fn floats_of(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a number array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn read_reference() -> Vec<Reference> {
    let path = common::fixture("smollm2/reference.json");
    let text = std::fs::read_to_string(&path).expect("reference.json readable");
    let json: Value = serde_json::from_str(&text).expect("reference.json is JSON");
    let prompts = json["prompts"].as_array().expect("prompts");
    prompts
        .iter()
        .map(|p| {
            let mut layers: Vec<(usize, Vec<TopK>)> = p["layers"]
                .as_object()
                .expect("layers")
                .iter()
                .map(|(layer, rows)| {
                    let per_position = rows
                        .as_array()
                        .expect("positions")
                        .iter()
                        .map(|r| (ids_of(&r[0]), floats_of(&r[1])))
                        .collect();
                    (layer.parse().expect("a layer number"), per_position)
                })
                .collect();
            layers.sort_by_key(|(l, _)| *l);
            Reference {
                text: p["text"].as_str().expect("text").to_string(),
                ids: ids_of(&p["ids"]),
                layers,
            }
        })
        .collect()
}

fn close(ours: f32, reference: f32) -> bool {
    (ours - reference).abs() <= LOGIT_RTOL * reference.abs().max(1.0)
}

/// Compares one position's top-k; returns the rank swaps it had to accept (entries whose
/// reference logits tie within the tolerance), and pushes failures.
fn compare_top_k(
    what: &str,
    ours: &TopK,
    reference: &TopK,
    failures: &mut Vec<String>,
) -> Vec<String> {
    let mut swaps = Vec::new();
    if ours.0.len() != reference.0.len() {
        failures.push(format!(
            "{what}: {} entries vs {}",
            ours.0.len(),
            reference.0.len()
        ));
        return swaps;
    }
    for rank in 0..ours.0.len() {
        let (id, z) = (ours.0[rank], ours.1[rank]);
        let (ref_id, ref_z) = (reference.0[rank], reference.1[rank]);
        // Sorted logits must agree rank by rank whatever the ids.
        if !close(z, ref_z) {
            failures.push(format!(
                "{what} rank {rank}: logit {z} vs reference {ref_z}"
            ));
        }
        if id == ref_id {
            continue;
        }
        // A different id is acceptable only if the reference ranks it with a tied logit.
        let tied = reference
            .0
            .iter()
            .position(|&r| r == id)
            .is_some_and(|j| close(reference.1[j], ref_z));
        if tied {
            swaps.push(format!("{what} rank {rank}: {id} <-> {ref_id}"));
        } else {
            failures.push(format!(
                "{what} rank {rank}: id {id} vs reference {ref_id} ({:?} vs {:?})",
                ours.0, reference.0
            ));
        }
    }
    swaps
}

/// Runs every reference prompt through `lens_top_k` and compares ids and logits.
fn check_against_reference(model: &Llama, tokenizer: &Tokenizer, source: &str) {
    let mut failures = Vec::new();
    let mut swaps = Vec::new();
    let mut worst_rel = 0.0f32;
    for prompt in read_reference() {
        assert_eq!(
            tokenizer.encode(&prompt.text),
            prompt.ids,
            "{source}: our encoding of {:?}",
            prompt.text
        );
        let layers: Vec<usize> = prompt.layers.iter().map(|(l, _)| *l).collect();
        let ours = lens_top_k(model, &prompt.ids, &layers, 10).expect("lens_top_k");
        for ((layer, our_rows), (_, ref_rows)) in ours.iter().zip(&prompt.layers) {
            assert_eq!(our_rows.len(), ref_rows.len(), "positions of layer {layer}");
            for (t, (o, r)) in our_rows.iter().zip(ref_rows).enumerate() {
                let what = format!("{source} {:?} layer {layer} position {t}", prompt.text);
                swaps.extend(compare_top_k(&what, o, r, &mut failures));
                for (z, rz) in o.1.iter().zip(&r.1) {
                    worst_rel = worst_rel.max((z - rz).abs() / rz.abs().max(1.0));
                }
            }
        }
    }
    eprintln!(
        "{source}: worst logit error {worst_rel:.2e} (relative to max(|ref|, 1)); {} tied swaps{}",
        swaps.len(),
        if swaps.is_empty() {
            String::new()
        } else {
            format!(":\n  {}", swaps.join("\n  "))
        }
    );
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn gguf_lens_matches_transformers() {
    let Some(path) = common::smollm2(GGUF) else {
        return;
    };
    let (model, tokenizer) = Llama::from_gguf(&path).expect("the GGUF loads");
    check_against_reference(&model, &tokenizer, "gguf");
}

#[test]
fn converted_hf_dir_lens_matches_transformers() {
    let Some(dir) = common::smollm2(HF_DIR) else {
        return;
    };
    let (model, tokenizer) = load_model(&dir).expect("the HF directory loads");
    let tokenizer = tokenizer.expect("the converted directory has a tokenizer.json");
    check_against_reference(&model, &tokenizer, "hf-dir");
}

/// Same semantics as tests/tokenizer.rs: cases with `added_tokens` first add them (non-special,
/// ids after the largest), on a fresh tokenizer.
#[test]
fn gguf_metadata_tokenizer_matches_hf_cases() {
    let Some(path) = common::smollm2(GGUF) else {
        return;
    };
    let gguf = GgufFile::open(&path).expect("the GGUF opens");
    let json = hf_tokenizer_json(&gguf).expect("tokenizer metadata");
    let origin = path.display().to_string();
    let make = || Tokenizer::from_json(&json, &origin).expect("tokenizer builds");
    let cases_path = common::fixture("tokenizers/smollm2/cases.jsonl");
    common::check_tokenizer_cases("gguf tokenizer", &make, &cases_path);
}

/// "The capital of France is" as the single user turn of SmolLM2's ChatML template (without
/// the default system message), answered greedily with the KV cache up to `<|im_end|>`.
#[test]
fn greedy_chatml_answer_names_paris() {
    let Some(path) = common::smollm2(GGUF) else {
        return;
    };
    let (model, tokenizer) = Llama::from_gguf(&path).expect("the GGUF loads");
    let prompt = "<|im_start|>user\nThe capital of France is<|im_end|>\n<|im_start|>assistant\n";
    let ids = tokenizer.encode(prompt);
    // The template's markers must be single special tokens, not spelled out in pieces.
    let im_start = tokenizer.token_to_id("<|im_start|>").expect("<|im_start|>");
    let im_end = tokenizer.token_to_id("<|im_end|>").expect("<|im_end|>");
    assert_eq!(ids.iter().filter(|&&t| t == im_start).count(), 2);
    assert_eq!(ids.iter().filter(|&&t| t == im_end).count(), 1);
    let answer_ids = greedy(&model, &ids, 24, &[im_end]).expect("greedy");
    let answer = tokenizer.decode(&answer_ids, true);
    eprintln!("answer: {answer:?}");
    assert!(answer.contains("Paris"), "answer {answer:?} lacks Paris");
}
