//! LoRA properties that need no PEFT reference: a fresh adapter on a subset of projections and
//! blocks leaves the model's outputs unchanged and makes exactly its own matrices trainable;
//! trainable token rows get exactly the gradient the full embedding / head would give those
//! rows, and nothing else of either matrix trains; adapters with token rows save, load and
//! merge; and every kind of bad adapter fails with one line naming the file and the field.

mod common;

use common::fixture;
use ilrec::autograd::weight_gradient_products;
use ilrec::lora::files::{CONFIG_FILE, WEIGHTS_FILE};
use ilrec::lora::init::kaiming_bound;
use ilrec::lora::{adapter_params, attach, load_adapter, merged, save_adapter};
use ilrec::lora::{LoraConfig, TrainableTokens};
use ilrec::model::adapter::Proj;
use ilrec::model::llama::{BatchInput, Llama};
use ilrec::model::weights::{save_params, SafetensorsFile};
use ilrec::{Params, Tape, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn base() -> Llama {
    Llama::from_dir(fixture("lora/base")).unwrap()
}

/// A batch of ids below `vocab` that includes `tokens`.
fn batch(vocab: usize, tokens: &[usize]) -> (BatchInput, Vec<i64>) {
    let mut ids: Vec<u32> = (0..16).map(|i| ((i * 37 + 3) % vocab) as u32).collect();
    for (k, &t) in tokens.iter().enumerate() {
        ids[2 * k + 1] = t as u32;
    }
    let labels = ids.iter().map(|&x| x as i64).collect();
    (BatchInput::new(ids, 2, 8).unwrap(), labels)
}

fn logits_of(model: &Llama, input: &BatchInput) -> Vec<f32> {
    let mut tape = Tape::inference();
    let out = model.forward(&mut tape, input, None).unwrap();
    tape.value(out.logits).to_vec()
}

/// One backward of the LM loss, gradients accumulated into the model's parameters; returns
/// the weight-gradient GEMMs it ran.
fn backward(model: &mut Llama, input: &BatchInput, labels: &[i64]) -> u64 {
    let mut tape = Tape::new();
    let (loss, _) = model.lm_loss(&mut tape, input, labels).unwrap();
    let before = weight_gradient_products();
    let grads = tape.backward(loss).unwrap();
    let products = weight_gradient_products() - before;
    drop(tape);
    model.params.accumulate(&grads).unwrap();
    products
}

#[test]
fn a_fresh_adapter_on_some_projections_of_one_block_changes_nothing_and_trains_alone() {
    let plain = base();
    let mut model = plain.clone();
    let cfg = LoraConfig::parse("r=3,alpha=6,targets=q,v,down,layers=1").unwrap();
    let added = attach(&mut model, &cfg, 9).unwrap();
    assert_eq!(added.len(), 2 * 3);
    let (input, labels) = batch(model.config.vocab_size, &[]);
    // B = 0: the adapted model starts exactly where the base is.
    assert_eq!(logits_of(&model, &input), logits_of(&plain, &input));
    for (name, id) in adapter_params(&model) {
        let v = model.params.value(id);
        if name.contains("lora_A") {
            let bound = kaiming_bound(v.shape()[1]);
            assert!(v.to_vec().iter().all(|x| x.abs() <= bound) && v.shape()[0] == 3);
            assert!(name.starts_with("model.layers.1."), "{name}");
        } else {
            assert!(v.to_vec().iter().all(|&x| x == 0.0), "{name}");
        }
    }
    let products = backward(&mut model, &input, &labels);
    let mut names: Vec<String> = adapter_params(&model).into_iter().map(|(n, _)| n).collect();
    names.sort();
    let mut with_grad = model.params.params_with_gradient();
    with_grad.sort();
    assert_eq!(with_grad, names);
    assert_eq!(
        products as usize,
        names.len(),
        "one dW GEMM per LoRA factor, none for the base"
    );
    assert_eq!(
        model
            .params
            .ids()
            .filter(|&id| model.params.is_trainable(id))
            .count(),
        added.len()
    );
}

#[test]
fn an_attached_adapter_is_seeded_and_refuses_a_second_one() {
    let cfg = LoraConfig::parse("r=2,targets=all").unwrap();
    let (mut a, mut b, mut c) = (base(), base(), base());
    attach(&mut a, &cfg, 1).unwrap();
    attach(&mut b, &cfg, 1).unwrap();
    attach(&mut c, &cfg, 2).unwrap();
    let values = |m: &Llama| -> Vec<Vec<f32>> {
        adapter_params(m)
            .iter()
            .map(|(_, id)| m.params.value(*id).to_vec())
            .collect()
    };
    assert_eq!(values(&a), values(&b));
    assert_ne!(values(&a), values(&c));
    let again = attach(&mut a, &cfg, 1).unwrap_err().to_string();
    assert!(again.contains("already"), "{again}");
    // Saving the base alone would drop the adapter: refused, with the two ways that keep it.
    let refused = a.save(scratch("base-only")).unwrap_err().to_string();
    assert!(
        refused.contains("save_adapter") && refused.contains("merged"),
        "{refused}"
    );
}

/// Gradients of the same loss on a fully trainable copy (no adapter): the reference for rows.
fn full_gradients(model: &Llama, input: &BatchInput, labels: &[i64]) -> Params {
    let mut full = model.clone();
    backward(&mut full, input, labels);
    full.params
}

fn rows(t: &Tensor, idx: &[usize]) -> Vec<f32> {
    let d = t.last_dim();
    let v = t.to_vec();
    idx.iter()
        .flat_map(|&i| v[i * d..(i + 1) * d].to_vec())
        .collect()
}

fn assert_near(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

#[test]
fn token_rows_train_alone_with_the_gradient_the_full_matrices_give_them() {
    let plain = base(); // untied head
    let full = full_gradients(
        &plain,
        &batch(plain.config.vocab_size, &[5, 9, 40]).0,
        &batch(plain.config.vocab_size, &[5, 9, 40]).1,
    );
    let (input, labels) = batch(plain.config.vocab_size, &[5, 9, 40]);
    let mut model = plain.clone();
    let tokens = TrainableTokens {
        embed: vec![40, 5, 9],
        head: vec![9, 200],
    };
    let cfg = LoraConfig {
        r: 2,
        targets: vec![Proj::O],
        tokens: tokens.clone(),
        ..LoraConfig::default()
    };
    attach(&mut model, &cfg, 3).unwrap();
    assert_eq!(logits_of(&model, &input), logits_of(&plain, &input));
    backward(&mut model, &input, &labels);
    let with_grad = model.params.params_with_gradient();
    assert!(
        with_grad.contains(&"model.embed_tokens.token_adapter.trainable_tokens_delta".to_string())
    );
    assert!(with_grad.contains(&"lm_head.token_adapter.trainable_tokens_delta".to_string()));
    assert_eq!(
        with_grad.len(),
        2 * model.blocks().len() + 2,
        "{with_grad:?}"
    );
    let grad_of = |name: &str| {
        model
            .params
            .grad(model.params.id(name).unwrap())
            .unwrap()
            .to_vec()
    };
    let full_rows =
        |name: &str, idx: &[usize]| rows(full.grad(full.id(name).unwrap()).unwrap(), idx);
    assert_near(
        "embedding rows",
        &grad_of("model.embed_tokens.token_adapter.trainable_tokens_delta"),
        &full_rows("model.embed_tokens.weight", &tokens.embed),
    );
    assert_near(
        "head rows",
        &grad_of("lm_head.token_adapter.trainable_tokens_delta"),
        &full_rows("lm_head.weight", &tokens.head),
    );
}

#[test]
fn a_tied_head_reads_the_embedding_rows() {
    let plain = Llama::from_dir(fixture("tiny-qwen2")).unwrap();
    assert!(plain.config.tie_word_embeddings);
    let vocab = plain.config.vocab_size;
    let (input, labels) = batch(vocab, &[7, 11]);
    let full = full_gradients(&plain, &input, &labels);
    let mut model = plain.clone();
    let cfg = LoraConfig {
        r: 2,
        targets: vec![Proj::Q],
        tokens: TrainableTokens {
            embed: vec![7, 11],
            head: Vec::new(),
        },
        ..LoraConfig::default()
    };
    attach(&mut model, &cfg, 3).unwrap();
    assert!(model.head_rows().is_none());
    backward(&mut model, &input, &labels);
    // The tied matrix's gradient rows sum both uses (embedding and head), and so do ours.
    let delta = model
        .params
        .id("model.embed_tokens.token_adapter.trainable_tokens_delta")
        .unwrap();
    let full_rows = rows(
        full.grad(full.id("model.embed_tokens.weight").unwrap())
            .unwrap(),
        &[7, 11],
    );
    assert_near(
        "tied rows",
        &model.params.grad(delta).unwrap().to_vec(),
        &full_rows,
    );
    // Moving a row moves that token's embedding and its logit column.
    model.params.zero_grad();
    let moved = Tensor::from_vec(
        vec![0.5; 2 * model.config.hidden_size],
        &[2, model.config.hidden_size],
    )
    .unwrap();
    model.params.set_value(delta, moved).unwrap();
    let (x, y) = (logits_of(&plain, &input), logits_of(&model, &input));
    let changed: Vec<usize> = (0..vocab).filter(|&c| x[c] != y[c]).collect();
    assert!(changed.contains(&7) && changed.contains(&11));
    let folded = merged(&model).unwrap();
    assert_near("merged tied", &logits_of(&folded, &input), &y);
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("lora-adapters", name)
}

#[test]
fn token_rows_save_as_peft_does_and_come_back() {
    let mut model = base();
    let cfg = LoraConfig {
        r: 2,
        alpha: 5.0,
        targets: vec![Proj::K, Proj::Up],
        layers: Some(vec![0, 2]),
        rslora: true,
        tokens: TrainableTokens {
            embed: vec![9, 4],
            head: vec![4],
        },
        ..LoraConfig::default()
    };
    attach(&mut model, &cfg, 4).unwrap();
    // Make every adapter tensor matter.
    for (i, (_, id)) in adapter_params(&model).into_iter().enumerate() {
        let v = model.params.value(id);
        let noisy = common::randn(v.shape(), i as u64)
            .to_vec()
            .iter()
            .map(|x| 0.1 * x)
            .collect();
        let t = Tensor::from_vec(noisy, v.shape()).unwrap();
        model.params.set_value(id, t).unwrap();
    }
    let dir = scratch("tokens");
    save_adapter(&model, &cfg, &dir, Some("lora/base")).unwrap();
    let file = SafetensorsFile::open(dir.join(WEIGHTS_FILE)).unwrap();
    let names = file.names();
    assert!(names.contains(
        &"base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta".into()
    ));
    assert!(names.contains(&"base_model.model.lm_head.token_adapter.trainable_tokens_delta".into()));
    assert!(names.contains(&"base_model.model.model.layers.2.mlp.up_proj.lora_B.weight".into()));
    assert_eq!(names.len(), 2 * 2 * 2 + 2);
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(
        config["trainable_token_indices"],
        serde_json::json!({"embed_tokens": [9, 4], "lm_head": [4]})
    );
    assert_eq!(config["layers_to_transform"], serde_json::json!([0, 2]));
    assert_eq!(config["use_rslora"], true);
    assert_eq!(config["base_model_name_or_path"], "lora/base");
    let mut back = base();
    let read = load_adapter(&mut back, &dir).unwrap();
    assert_eq!(read, cfg);
    let (input, _) = batch(model.config.vocab_size, &[9, 4]);
    assert_eq!(logits_of(&back, &input), logits_of(&model, &input));
    assert_near(
        "merged",
        &logits_of(&merged(&model).unwrap(), &input),
        &logits_of(&model, &input),
    );
    // A config that does not describe the adapter is not written.
    let other = LoraConfig { r: 3, ..cfg };
    assert!(save_adapter(&model, &other, &scratch("mismatch"), None).is_err());
    let _ = std::fs::remove_dir_all(dir);
}

/// A copy of the fixture adapter with `edit` applied to its config.
fn edited_adapter(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = scratch(name);
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("lora/adapter");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join(CONFIG_FILE)).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join(CONFIG_FILE), config.to_string()).unwrap();
    std::fs::copy(src.join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).unwrap();
    dir
}

fn load_error(model: &mut Llama, dir: &Path) -> String {
    let e = load_adapter(model, dir).unwrap_err().to_string();
    assert_eq!(e.lines().count(), 1, "{e}");
    e
}

/// A change to an adapter_config.json.
type ConfigEdit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn bad_adapter_configs_name_the_file_the_field_and_what_is_supported() {
    let cases: Vec<(&str, ConfigEdit, &str)> = vec![
        ("r0", Box::new(|c| c["r"] = 0.into()), "`r`"),
        ("r-large", Box::new(|c| c["r"] = 100.into()), "`r`"),
        (
            "target",
            Box::new(|c| c["target_modules"] = serde_json::json!(["q_proj", "lm_head"])),
            "`target_modules`",
        ),
        (
            "regex",
            Box::new(|c| c["target_modules"] = ".*proj".into()),
            "regular expressions",
        ),
        ("dora", Box::new(|c| c["use_dora"] = true.into()), "DoRA"),
        ("bias", Box::new(|c| c["bias"] = "all".into()), "`bias`"),
        (
            "peft-type",
            Box::new(|c| c["peft_type"] = "IA3".into()),
            "`peft_type`",
        ),
        (
            "rank-pattern",
            Box::new(|c| c["rank_pattern"] = serde_json::json!({"q_proj": 8})),
            "`rank_pattern`",
        ),
        (
            "unknown-on",
            Box::new(|c| c["use_bdlora"] = true.into()),
            "use_bdlora",
        ),
        (
            "layers",
            Box::new(|c| c["layers_to_transform"] = serde_json::json!([7])),
            "`layers_to_transform`",
        ),
        // Not read as false: PEFT tests the value's truth, so the string "false" is rsLoRA there.
        (
            "rslora-string",
            Box::new(|c| c["use_rslora"] = "false".into()),
            "`use_rslora`",
        ),
        (
            "pissa",
            Box::new(|c| c["init_lora_weights"] = "pissa".into()),
            "`init_lora_weights`",
        ),
    ];
    for (name, edit, needle) in cases {
        let dir = edited_adapter(name, edit);
        let mut model = base();
        let e = load_error(&mut model, &dir);
        assert!(
            e.contains("adapter_config.json") && e.contains(needle) && e.contains("supported"),
            "{name}: {e}"
        );
        assert!(
            adapter_params(&model).is_empty(),
            "{name}: a failed load must leave the model alone"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
    // rsLoRA is implemented: alpha / sqrt(r).
    let dir = edited_adapter("rslora", |c| c["use_rslora"] = true.into());
    let mut model = base();
    let cfg = load_adapter(&mut model, &dir).unwrap();
    let scale = model.blocks()[0].adapter(Proj::Q).unwrap().scale;
    assert_eq!(scale, cfg.alpha / (cfg.r as f32).sqrt());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn adapter_weights_that_do_not_fit_the_base_are_refused() {
    // Another base: other widths, so the shapes differ (names the tensor and both shapes).
    let mut other = Llama::from_dir(fixture("tiny-qwen2")).unwrap();
    let e = load_error(&mut other, &fixture("lora/adapter"));
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("shape"),
        "{e}"
    );
    // A DoRA magnitude vector in the file, and a tensor missing from it.
    let src = SafetensorsFile::open(fixture("lora/adapter").join(WEIGHTS_FILE)).unwrap();
    for (name, extra) in [("dora-vector", true), ("missing", false)] {
        let dir = edited_adapter(name, |_| {});
        let mut params = Params::new();
        for (i, n) in src.names().into_iter().enumerate() {
            if extra || i > 0 {
                params.add(&n, src.tensor_f32(&n).unwrap(), false).unwrap();
            }
        }
        if extra {
            let v = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector";
            params.add(v, Tensor::zeros(&[64]), false).unwrap();
        }
        let ids: Vec<_> = params.ids().collect();
        save_params(&params, &ids, dir.join(WEIGHTS_FILE)).unwrap();
        let e = load_error(&mut base(), &dir);
        let needle = if extra { "DoRA" } else { "missing" };
        assert!(
            e.contains("adapter_model.safetensors") && e.contains(needle),
            "{name}: {e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The lens head on a few columns (`Llama::apply_head_columns`, SID mode) equals those columns
/// of the full head, with and without trainable token rows overwriting head columns.
#[test]
fn the_head_on_columns_equals_those_columns_of_the_full_head() {
    let plain = base();
    let mut with_rows = plain.clone();
    let cfg = LoraConfig {
        r: 2,
        targets: vec![Proj::O],
        tokens: TrainableTokens {
            embed: vec![9],
            head: vec![9, 17],
        },
        ..LoraConfig::default()
    };
    attach(&mut with_rows, &cfg, 3).unwrap();
    // Make the head's token rows differ from the base rows they replace.
    let id = with_rows
        .params
        .id("lm_head.token_adapter.trainable_tokens_delta")
        .unwrap();
    let shape = with_rows.params.value(id).shape().to_vec();
    let mut rng = ilrec::rng::Rng::new(4);
    with_rows
        .params
        .set_value(id, Tensor::randn(&shape, 1.0, &mut rng))
        .unwrap();
    let (input, _) = batch(plain.config.vocab_size, &[9, 17]);
    let columns = [3usize, 9, 17, 40];
    for model in [&plain, &with_rows] {
        let mut tape = Tape::inference();
        let out = model.forward(&mut tape, &input, None).unwrap();
        let d = model.config.hidden_size;
        let last = *out.hidden.last().unwrap();
        let flat = tape.reshape(last, &[input.batch * input.seq, d]).unwrap();
        let full = model.apply_head(&mut tape, out.head, flat, None).unwrap();
        let narrow = model
            .apply_head_columns(&mut tape, out.head, flat, &columns)
            .unwrap();
        let (v, full, narrow) = (
            model.config.vocab_size,
            tape.value(full).to_vec(),
            tape.value(narrow).to_vec(),
        );
        for (r, row) in narrow.chunks(columns.len()).enumerate() {
            for (j, &c) in columns.iter().enumerate() {
                assert!(
                    (row[j] - full[r * v + c]).abs() < 1e-5,
                    "row {r} column {c}"
                );
            }
        }
    }
    assert_ne!(
        logits_of(&plain, &input),
        logits_of(&with_rows, &input),
        "the token rows must change the head for this test to mean anything"
    );
}
