//! Broken checkpoints give errors that name the file and the tensor or field: a truncated
//! safetensors file, a missing tensor, a wrong shape, a tensor the architecture lacks, a config
//! with a missing field, an unsupported option. Each case copies tiny-llama into a temp dir and
//! breaks one thing.

mod common;

use common::fixture;
use ilrec::model::llama::Llama;
use ilrec::model::weights::SafetensorsFile;
use std::path::{Path, PathBuf};

/// A field of the tiny-llama fixture's config.json (sizes are read, never assumed).
fn fixture_size(key: &str) -> usize {
    let text = std::fs::read_to_string(fixture("tiny-llama/config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config[key]
        .as_u64()
        .unwrap_or_else(|| panic!("tiny-llama/config.json has no {key}")) as usize
}

/// A fresh copy of the tiny-llama fixture dir.
fn copy_of_tiny_llama(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-model-errors-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture(&format!("tiny-llama/{f}")), dir.join(f)).unwrap();
    }
    dir
}

fn load_error(dir: &Path) -> String {
    match Llama::from_dir(dir) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// (name, dtype, shape, data start, data end) of one tensor in a safetensors header.
type HeaderEntry = (String, String, Vec<usize>, usize, usize);

/// Header entries of a safetensors file, parsed here
/// independently of the crate under test.
fn header_of(bytes: &[u8]) -> (usize, Vec<HeaderEntry>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut entries = Vec::new();
    for (name, info) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let shape = info["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let offs = info["data_offsets"].as_array().unwrap();
        entries.push((
            name.clone(),
            info["dtype"].as_str().unwrap().to_string(),
            shape,
            offs[0].as_u64().unwrap() as usize,
            offs[1].as_u64().unwrap() as usize,
        ));
    }
    (8 + n, entries)
}

/// Rewrites `dir/model.safetensors` through `edit`, which may drop or reshape entries.
fn rewrite_checkpoint(
    dir: &Path,
    edit: impl Fn(&str, Vec<usize>, &[u8]) -> Option<(Vec<usize>, Vec<u8>)>,
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (data_start, entries) = header_of(&bytes);
    let kept: Vec<(String, Vec<usize>, Vec<u8>)> = entries
        .into_iter()
        .filter_map(|(name, dtype, shape, s, e)| {
            assert_eq!(dtype, "F32");
            let (shape, data) = edit(&name, shape, &bytes[data_start + s..data_start + e])?;
            Some((name, shape, data))
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = kept
        .iter()
        .map(|(n, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (n.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &path).unwrap();
}

#[test]
fn truncated_file_names_file_and_first_cut_tensor() {
    let dir = copy_of_tiny_llama("truncated");
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (data_start, entries) = header_of(&bytes);
    // Cut 100 bytes off: the tensor stored last in the file is the one that is incomplete.
    let last = entries.iter().max_by_key(|e| e.4).unwrap();
    assert!(
        data_start + last.3 < bytes.len() - 100,
        "the last tensor must be longer than the cut"
    );
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_error(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    assert!(
        e.contains(&format!("`{}`", last.0)) && e.contains("truncated"),
        "{e}"
    );
    // Cut inside the header: still names the file.
    std::fs::write(&path, &bytes[..20]).unwrap();
    let e = load_error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("truncated"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_of_tiny_llama("missing");
    let victim = "model.layers.1.mlp.up_proj.weight";
    rewrite_checkpoint(&dir, |name, shape, data| {
        (name != victim).then(|| (shape, data.to_vec()))
    });
    let e = load_error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains(victim) && e.contains("missing"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let dir = copy_of_tiny_llama("shape");
    let victim = "model.layers.0.self_attn.q_proj.weight";
    rewrite_checkpoint(&dir, |name, shape, data| {
        if name == victim {
            // (Hq*hd, D) -> (Hq*hd, D/2): keep half the data so the file itself stays valid.
            Some((
                vec![shape[0], shape[1] / 2],
                data[..data.len() / 2].to_vec(),
            ))
        } else {
            Some((shape, data.to_vec()))
        }
    });
    let e = load_error(&dir);
    assert!(e.contains("model.safetensors") && e.contains(victim), "{e}");
    // q_proj is (num_attention_heads * head_dim, hidden_size), read from the fixture's config.
    let d = fixture_size("hidden_size");
    let heads = fixture_size("num_attention_heads");
    let head_dim = std::fs::read_to_string(fixture("tiny-llama/config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|c| c["head_dim"].as_u64())
        .map_or(d / heads, |h| h as usize);
    let (found, expected) = (
        format!("[{}, {}]", heads * head_dim, d / 2),
        format!("[{}, {d}]", heads * head_dim),
    );
    assert!(e.contains(&found) && e.contains(&expected), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tensor_outside_the_architecture_is_refused() {
    let dir = copy_of_tiny_llama("extra");
    // Add Qwen3's q_norm: a different architecture than config.json says.
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (data_start, entries) = header_of(&bytes);
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = entries
        .iter()
        .map(|(n, _, shape, s, e)| {
            (
                n.clone(),
                shape.clone(),
                bytes[data_start + s..data_start + e].to_vec(),
            )
        })
        .collect();
    owned.push((
        "model.layers.0.self_attn.q_norm.weight".into(),
        vec![16],
        vec![0u8; 64],
    ));
    let views: Vec<_> = owned
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, &path).unwrap();
    let e = load_error(&dir);
    assert!(
        e.contains("model.safetensors") && e.contains("q_norm"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn edit_config(dir: &Path, edit: impl Fn(&mut serde_json::Map<String, serde_json::Value>)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(&path, v.to_string()).unwrap();
}

#[test]
fn config_with_a_missing_field_is_named() {
    let dir = copy_of_tiny_llama("config");
    for field in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "vocab_size",
        "rms_norm_eps",
    ] {
        std::fs::copy(fixture("tiny-llama/config.json"), dir.join("config.json")).unwrap();
        edit_config(&dir, |o| {
            o.remove(field);
        });
        let e = load_error(&dir);
        assert!(
            e.contains("config.json") && e.contains(field) && e.contains("missing"),
            "{field}: {e}"
        );
    }
    // A config that disagrees with the weights: the shape error names the tensor.
    std::fs::copy(fixture("tiny-llama/config.json"), dir.join("config.json")).unwrap();
    // Double the FFN width: gate_proj is then expected as (2F, D).
    let (ffn, d) = (
        fixture_size("intermediate_size"),
        fixture_size("hidden_size"),
    );
    edit_config(&dir, |o| {
        o.insert("intermediate_size".into(), serde_json::json!(2 * ffn));
    });
    let e = load_error(&dir);
    let expected = format!("[{}, {d}]", 2 * ffn);
    assert!(
        e.contains("mlp.gate_proj.weight") && e.contains(&expected),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_options_are_refused_not_ignored() {
    let dir = copy_of_tiny_llama("options");
    let cases: [(&str, serde_json::Value, &str); 5] = [
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "yarn", "factor": 8.0}),
            "yarn",
        ),
        (
            // llama3 scaling without its band limits cannot be computed
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
            "rope_scaling.low_freq_factor",
        ),
        ("model_type", serde_json::json!("gemma2"), "gemma2"),
        ("hidden_act", serde_json::json!("gelu"), "hidden_act"),
        ("mlp_bias", serde_json::json!(true), "mlp_bias"),
    ];
    for (field, value, expect) in cases {
        std::fs::copy(fixture("tiny-llama/config.json"), dir.join("config.json")).unwrap();
        edit_config(&dir, |o| {
            o.insert(field.into(), value.clone());
        });
        let e = load_error(&dir);
        assert!(
            e.contains("config.json") && e.contains(expect),
            "{field}: {e}"
        );
    }
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::copy(fixture("tiny-llama/config.json"), dir.join("config.json")).unwrap();
    let e = load_error(&dir);
    assert!(e.contains("model.safetensors"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A corrupt layer count is refused against the blocks the weights hold, before any per-layer
/// work (fuzz finding: 65,535 layers built half a million expected names and took seconds
/// before failing on a missing tensor; 10^6 took 1.4 GB).
#[test]
fn a_layer_count_beyond_the_weights_is_refused_first() {
    let dir = copy_of_tiny_llama("layer-count");
    let real = read_config_usize(&dir, "num_hidden_layers");
    for claimed in [real + 1, 65_535, 1_000_000] {
        edit_config(&dir, |c| {
            c.insert("num_hidden_layers".into(), claimed.into());
        });
        let msg = load_error(&dir);
        assert!(
            msg.contains(&format!("says {claimed} layers"))
                && msg.contains(&format!("{real} blocks")),
            "{msg}"
        );
    }
}

fn read_config_usize(dir: &Path, field: &str) -> usize {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config[field].as_u64().unwrap() as usize
}

/// A safetensors file: the 8-byte header length, the header, then `data` zero bytes.
fn safetensors_bytes(header: &[u8], data: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.resize(bytes.len() + data, 0);
    bytes
}

/// A header the safetensors crate refuses is described in words, never by the crate's enum
/// variant (fuzz finding, `peft` and `safetensors` targets: "not a valid safetensors file:
/// InvalidHeaderDeserialization", as the crate's Display is its Debug). The inputs are the
/// fuzzer's cases, minimised: a bit flip in a tensor name, a header cut short or of another
/// layout, a LoRA factor's shape overwritten, a header length of 2^31.
#[test]
fn a_refused_header_is_a_sentence_not_an_enum_name() {
    let lora_b = "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight";
    let mis_sized =
        format!(r#"{{"{lora_b}":{{"dtype":"F32","shape":[4096,2],"data_offsets":[0,64]}}}}"#);
    let mut too_large = (1u64 << 31).to_le_bytes().to_vec();
    too_large.extend_from_slice(b"{}");
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "not-utf8",
            safetensors_bytes(b"{\"\xa4\":{}}", 0),
            "not UTF-8".into(),
        ),
        (
            "cut",
            safetensors_bytes(b"{\"t\":", 0),
            "not a JSON object of tensors".into(),
        ),
        (
            "layout",
            safetensors_bytes(b"{\"t\":1}", 0),
            "not a JSON object of tensors".into(),
        ),
        (
            "mis-sized",
            safetensors_bytes(mis_sized.as_bytes(), 64),
            format!(
                "`{lora_b}`: shape [4096, 2] of F32 needs 32768 bytes, its data_offsets span 64"
            ),
        ),
        ("too-large", too_large, "says 2147483648 bytes".into()),
    ];
    let dir = common::scratch("model-errors", "headers");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes, needle) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let e = match SafetensorsFile::open(&path) {
            Ok(_) => panic!("{name}: the broken header was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.contains(&format!("{name}.safetensors")) && e.contains(&needle),
            "{name}: {e}"
        );
        for variant in ["InvalidHeader", "TensorInvalidInfo", "HeaderTooLarge"] {
            assert!(!e.contains(variant), "{name}: {e}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A safetensors write that fails (here: the folder does not exist) reads as the OS's words with
/// the path, never as the crate's Debug form (`IoError(Os { code: 2, kind: NotFound, .. })`).
#[test]
fn a_failed_safetensors_write_is_one_line_in_words() {
    let missing = std::env::temp_dir().join(format!("ilrec-no-such-dir-{}", std::process::id()));
    let mut params = ilrec::autograd::Params::new();
    let id = params
        .add("w", ilrec::Tensor::zeros(&[2, 2]), true)
        .unwrap();
    let path = missing.join("model.safetensors");
    let sasrec = ilrec::cf::SasRec::new(ilrec::cf::SasRecConfig::new(4), 0).unwrap();
    let errors = [
        ilrec::model::weights::save_params(&params, &[id], &path).unwrap_err(),
        sasrec.save(&path).unwrap_err(),
    ];
    for e in errors {
        let msg = e.to_string();
        assert!(!msg.contains("Os {") && !msg.contains("IoError"), "{msg}");
        assert!(
            msg.contains("ilrec-no-such-dir") && msg.lines().count() == 1,
            "{msg}"
        );
    }
}
