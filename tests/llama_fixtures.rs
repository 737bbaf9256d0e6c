//! The Llama-family decoder against HF transformers' numbers (../shared/fixtures, see its README):
//! logits, every hidden state, every logit-lens output, the loss, every parameter gradient, and
//! 5 AdamW steps. Dimensions come from each fixture's config.json, so another fixture set in the
//! same layout (env ILREC_FIXTURES) is checked the same way. Plus properties that need no
//! reference: gradient reachability, right padding, selected logit rows, vocabulary resize,
//! save/load round trips (single file, sharded, bf16).

mod common;

use common::{assert_tensors_close, fixture};
use ilrec::model::config::LlamaConfig;
use ilrec::model::llama::{causal_lm_loss, BatchInput, Llama};
use ilrec::model::weights::SafetensorsFile;
use ilrec::optim::{AdamW, AdamWConfig};
use ilrec::{Tape, Tensor};
use std::path::{Path, PathBuf};

const ABS_TOL: f32 = 1e-4;
const GRAD_REL_TOL: f32 = 1e-3;

/// Every model fixture: Llama, Qwen2 (q/k/v biases), Llama 3.1 (llama3 RoPE scaling) and Qwen3
/// (per-head q/k norms, head_dim != hidden / heads).
const FAMILIES: [&str; 4] = ["tiny-llama", "tiny-qwen2", "tiny-llama31", "tiny-qwen3"];

/// The fixture's model, its reference file, input batch and labels.
struct Case {
    dir: PathBuf,
    model: Llama,
    reference: SafetensorsFile,
    input: BatchInput,
    labels: Vec<i64>,
}

fn load_case(name: &str) -> Case {
    let dir = fixture(name);
    let model = Llama::from_dir(&dir).unwrap_or_else(|e| panic!("loading {name}: {e}"));
    let reference =
        SafetensorsFile::open(fixture(&format!("{name}/reference.safetensors"))).unwrap();
    let (input, labels) = common::reference_batch(&reference);
    Case {
        dir,
        model,
        reference,
        input,
        labels,
    }
}

fn check_against_reference(name: &str) {
    let case = load_case(name);
    let cfg = LlamaConfig::from_file(case.dir.join("config.json")).unwrap();
    let (b, t, v) = (case.input.batch, case.input.seq, cfg.vocab_size);
    let mut tape = Tape::new();
    let out = case.model.forward(&mut tape, &case.input, None).unwrap();
    assert_eq!(tape.shape(out.logits), &[b * t, v]);
    let want_logits = case.reference.tensor_f32("logits").unwrap();
    assert_eq!(want_logits.shape(), &[b, t, v]);
    assert_tensors_close("logits", tape.value(out.logits), &want_logits, ABS_TOL, 0.0);

    // hidden.0 = embedding output, hidden.l = raw output of block l (HF stores up to L-1).
    let layers = cfg.num_hidden_layers;
    assert_eq!(out.hidden.len(), layers + 1);
    for l in 0..layers {
        let want = case.reference.tensor_f32(&format!("hidden.{l}")).unwrap();
        assert_eq!(tape.shape(out.hidden[l]), want.shape(), "hidden.{l}");
        assert_tensors_close(
            &format!("hidden.{l}"),
            tape.value(out.hidden[l]),
            &want,
            ABS_TOL,
            0.0,
        );
    }
    for l in 1..layers {
        let lens = case.model.lens(&mut tape, &out, l, None).unwrap();
        let want = case.reference.tensor_f32(&format!("lens.{l}")).unwrap();
        assert_tensors_close(&format!("lens.{l}"), tape.value(lens), &want, ABS_TOL, 0.0);
    }

    let loss = causal_lm_loss(&mut tape, out.logits, &case.labels, b, t).unwrap();
    let want_loss = case.reference.tensor_f32("loss").unwrap();
    assert_tensors_close("loss", tape.value(loss), &want_loss, ABS_TOL, 0.0);

    let grads = tape.backward(loss).unwrap();
    let mut params = case.model.params.clone();
    params.accumulate(&grads).unwrap();
    let reference_grads: Vec<String> = case
        .reference
        .names()
        .into_iter()
        .filter(|n| n.starts_with("grad."))
        .collect();
    assert_eq!(
        reference_grads.len(),
        params.len(),
        "one reference gradient per parameter"
    );
    for id in params.ids() {
        let pname = params.name(id).to_string();
        let want = case.reference.tensor_f32(&format!("grad.{pname}")).unwrap();
        let got = params
            .grad(id)
            .unwrap_or_else(|| panic!("{pname} got no gradient"));
        assert_eq!(got.shape(), want.shape(), "grad.{pname}");
        assert_tensors_close(&format!("grad.{pname}"), got, &want, ABS_TOL, GRAD_REL_TOL);
    }
}

#[test]
fn tiny_llama_matches_transformers() {
    check_against_reference("tiny-llama");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check_against_reference("tiny-qwen2");
}

#[test]
fn tiny_llama31_matches_transformers() {
    check_against_reference("tiny-llama31");
}

#[test]
fn tiny_qwen3_matches_transformers() {
    check_against_reference("tiny-qwen3");
}

/// The loss computed on response rows only (Llama::lm_loss) equals the full-logits loss.
#[test]
fn loss_on_selected_rows_equals_reference_loss() {
    for name in FAMILIES {
        let case = load_case(name);
        let mut tape = Tape::new();
        let (loss, _) = case
            .model
            .lm_loss(&mut tape, &case.input, &case.labels)
            .unwrap();
        let want = case.reference.tensor_f32("loss").unwrap();
        assert_tensors_close(
            &format!("{name} loss"),
            tape.value(loss),
            &want,
            ABS_TOL,
            0.0,
        );
    }
}

#[test]
fn five_adamw_steps_reproduce_pytorch_losses() {
    let mut case = load_case("tiny-llama");
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
    for (step, want_loss) in want.iter().enumerate() {
        let mut tape = Tape::new();
        let out = case.model.forward(&mut tape, &case.input, None).unwrap();
        let loss = causal_lm_loss(&mut tape, out.logits, &case.labels, b, t).unwrap();
        let got = tape.value(loss).item().unwrap();
        assert!(
            (got - want_loss).abs() <= 1e-3,
            "step {step}: loss {got}, PyTorch {want_loss}"
        );
        let grads = tape.backward(loss).unwrap();
        drop(tape); // release the tape's references so the update is in place
        case.model.params.accumulate(&grads).unwrap();
        opt.step(&mut case.model.params, lr).unwrap();
        case.model.params.zero_grad();
    }
}

/// tiny-llama's shapes with a smaller vocabulary; `qwen2` switches to q/k/v biases.
fn tiny_random_config(tied: bool, qwen2: bool) -> LlamaConfig {
    let mut cfg = LlamaConfig::from_file(fixture("tiny-llama/config.json")).unwrap();
    cfg.tie_word_embeddings = tied;
    if qwen2 {
        cfg.model_type = "qwen2".into();
        cfg.qkv_bias = true;
    }
    cfg.vocab_size = 96;
    cfg
}

/// After one LM backward every trainable tensor has a finite, non-zero gradient.
#[test]
fn every_parameter_receives_a_gradient() {
    let mut models: Vec<Llama> = FAMILIES.iter().map(|n| load_case(n).model).collect();
    models.push(Llama::from_config(tiny_random_config(true, true), 3).unwrap());
    models.push(Llama::from_config(tiny_random_config(false, false), 4).unwrap());
    let mut qwen3 = LlamaConfig::from_file(fixture("tiny-qwen3/config.json")).unwrap();
    qwen3.vocab_size = 96;
    models.push(Llama::from_config(qwen3, 5).unwrap());
    for mut model in models {
        let (b, t) = (2, 7);
        let ids: Vec<u32> = (0..b * t).map(|i| (i * 13 % 90 + 3) as u32).collect();
        let labels: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
        let input = BatchInput::new(ids, b, t).unwrap();
        let mut tape = Tape::new();
        let (loss, _) = model.lm_loss(&mut tape, &input, &labels).unwrap();
        let grads = tape.backward(loss).unwrap();
        model.params.accumulate(&grads).unwrap();
        let missing = model.params.params_without_gradient();
        assert!(
            missing.is_empty(),
            "{}: no gradient for {missing:?}",
            model.config.model_type
        );
    }
}

fn logits_of(model: &Llama, input: &BatchInput, rows: Option<&[usize]>) -> Tensor {
    let mut tape = Tape::inference();
    let out = model.forward(&mut tape, input, rows).unwrap();
    tape.value(out.logits).clone()
}

fn row(t: &Tensor, r: usize) -> Vec<f32> {
    let v = t.last_dim();
    t.to_vec()[r * v..(r + 1) * v].to_vec()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A right-padded row gives the same logits on its real positions as the same sequence alone.
#[test]
fn right_padding_does_not_change_real_positions() {
    for name in FAMILIES {
        let case = load_case(name);
        let t = case.input.seq;
        let long: Vec<u32> = case.input.ids[..t].to_vec();
        let short: Vec<u32> = case.input.ids[t..t + t / 2].to_vec();
        let padded = BatchInput::right_padded(&[long.clone(), short.clone()], 0);
        assert_eq!(padded.seq, t);
        let both = logits_of(&case.model, &padded, None);
        let alone_short = logits_of(
            &case.model,
            &BatchInput::new(short.clone(), 1, short.len()).unwrap(),
            None,
        );
        let alone_long = logits_of(&case.model, &BatchInput::new(long, 1, t).unwrap(), None);
        for p in 0..short.len() {
            let d = max_diff(&row(&both, t + p), &row(&alone_short, p));
            assert!(d < 1e-5, "{name}: padded row, position {p}: differs by {d}");
        }
        for p in 0..t {
            let d = max_diff(&row(&both, p), &row(&alone_long, p));
            assert!(d < 1e-5, "{name}: full row, position {p}: differs by {d}");
        }
    }
}

/// Logits of selected rows equal the same rows of the full logits.
#[test]
fn selected_logit_rows_equal_full_rows() {
    let case = load_case("tiny-qwen2");
    let full = logits_of(&case.model, &case.input, None);
    let rows = [0usize, 5, 12, case.input.batch * case.input.seq - 1];
    let some = logits_of(&case.model, &case.input, Some(&rows));
    assert_eq!(some.shape(), &[rows.len(), full.last_dim()]);
    for (i, &r) in rows.iter().enumerate() {
        let d = max_diff(&row(&some, i), &row(&full, r));
        assert!(d < 1e-5, "row {r}: differs by {d}");
    }
}

/// Old rows unchanged, new rows at the mean of the old rows (up to small noise), for tied
/// (qwen2) and untied (llama) heads; the grown model runs on the new ids.
#[test]
fn resize_vocab_keeps_old_rows_and_puts_new_rows_at_the_mean() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let mut model = load_case(name).model;
        let old_v = model.config.vocab_size;
        let d = model.config.hidden_size;
        let before: Vec<Vec<f32>> = [model.embed_id(), model.lm_head_id()]
            .iter()
            .map(|&id| model.params.value(id).to_vec())
            .collect();
        let new_v = old_v + 10;
        model.resize_vocab(new_v, 7).unwrap();
        assert_eq!(model.config.vocab_size, new_v);
        for (k, &id) in [model.embed_id(), model.lm_head_id()].iter().enumerate() {
            let w = model.params.value(id);
            assert_eq!(w.shape(), &[new_v, d]);
            let w = w.to_vec();
            assert_eq!(&w[..old_v * d], &before[k][..], "{name}: old rows changed");
            // The mean row, computed here independently in f64.
            let mean: Vec<f64> = (0..d)
                .map(|j| {
                    (0..old_v).map(|r| before[k][r * d + j] as f64).sum::<f64>() / old_v as f64
                })
                .collect();
            let rms = (before[k].iter().map(|&x| (x as f64).powi(2)).sum::<f64>()
                / before[k].len() as f64)
                .sqrt();
            for r in old_v..new_v {
                for j in 0..d {
                    let dev = (w[r * d + j] as f64 - mean[j]).abs();
                    assert!(
                        dev < 0.06 * rms,
                        "{name}: new row {r} col {j} is {dev} from the mean"
                    );
                }
            }
            // New rows differ from each other (seeded noise).
            assert_ne!(
                &w[old_v * d..(old_v + 1) * d],
                &w[(old_v + 1) * d..(old_v + 2) * d]
            );
        }
        let ids = vec![3, (new_v - 1) as u32, (new_v - 5) as u32];
        let logits = logits_of(&model, &BatchInput::new(ids, 1, 3).unwrap(), None);
        assert_eq!(logits.shape(), &[3, new_v]);
        assert!(logits.to_vec().iter().all(|x| x.is_finite()));
        assert!(
            model.resize_vocab(new_v - 1, 0).is_err(),
            "shrinking must be refused"
        );
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-llama-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_same_params(a: &Llama, b: &Llama) {
    assert_eq!(a.config, b.config);
    assert_eq!(a.params.len(), b.params.len());
    for id in a.params.ids() {
        let name = a.params.name(id);
        let other = b.params.id(name).unwrap_or_else(|| panic!("{name} lost"));
        assert_eq!(
            a.params.value(id).shape(),
            b.params.value(other).shape(),
            "{name}"
        );
        assert_eq!(
            a.params.value(id).to_vec(),
            b.params.value(other).to_vec(),
            "{name}"
        );
    }
}

#[test]
fn save_then_load_round_trips_bit_for_bit() {
    for name in FAMILIES {
        let model = load_case(name).model;
        let dir = temp_dir(&format!("save-{name}"));
        model.save(&dir).unwrap();
        let back = Llama::from_dir(&dir).unwrap();
        assert_same_params(&model, &back);
        let file = SafetensorsFile::open(dir.join("model.safetensors")).unwrap();
        assert_eq!(
            file.contains("lm_head.weight"),
            !model.config.tie_word_embeddings
        );
        // Same names and shapes as the transformers-written original.
        let original =
            SafetensorsFile::open(fixture(&format!("{name}/model.safetensors"))).unwrap();
        assert_eq!(file.names(), original.names());
        let _ = std::fs::remove_dir_all(&dir);
    }
    // A randomly initialised model too (seeded: the same seed gives the same weights).
    let a = Llama::from_config(tiny_random_config(false, true), 11).unwrap();
    let b = Llama::from_config(tiny_random_config(false, true), 11).unwrap();
    assert_same_params(&a, &b);
    let dir = temp_dir("save-random");
    a.save(&dir).unwrap();
    assert_same_params(&a, &Llama::from_dir(&dir).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `tensors` (name, dtype, shape, little-endian bytes) as a safetensors file.
/// One tensor to write: name, dtype, shape and its raw little-endian bytes.
type RawTensor = (String, safetensors::Dtype, Vec<usize>, Vec<u8>);

fn write_safetensors(path: &Path, tensors: &[RawTensor]) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, dt, shape, bytes)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*dt, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &None, path).unwrap();
}

/// Two shards plus an index load to the same parameters as the single file.
#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dir = temp_dir("sharded");
    let src = fixture("tiny-llama");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let original = SafetensorsFile::open(src.join("model.safetensors")).unwrap();
    let names = original.names();
    let mut shards: [Vec<RawTensor>; 2] = [vec![], vec![]];
    let mut weight_map = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        let t = original.tensor_f32(n).unwrap();
        let bytes = t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
        let shard = i % 2;
        shards[shard].push((
            n.clone(),
            safetensors::Dtype::F32,
            t.shape().to_vec(),
            bytes,
        ));
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        weight_map.insert(n.clone(), serde_json::Value::String(file));
    }
    for (s, tensors) in shards.iter().enumerate() {
        write_safetensors(
            &dir.join(format!("model-0000{}-of-00002.safetensors", s + 1)),
            tensors,
        );
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = Llama::from_dir(&dir).unwrap();
    assert_same_params(&load_case("tiny-llama").model, &sharded);
    let _ = std::fs::remove_dir_all(&dir);
}

/// bf16 and f16 checkpoints load, each value equal to the f32 original rounded to that type.
#[test]
fn half_precision_checkpoints_load_as_rounded_f32() {
    let src = fixture("tiny-qwen2");
    let original = SafetensorsFile::open(src.join("model.safetensors")).unwrap();
    let reference = load_case("tiny-qwen2").model;
    for (dtype, round) in [
        (
            safetensors::Dtype::BF16,
            (|x: f32| half::bf16::from_f32(x).to_le_bytes()) as fn(f32) -> [u8; 2],
        ),
        (safetensors::Dtype::F16, |x: f32| {
            half::f16::from_f32(x).to_le_bytes()
        }),
    ] {
        let dir = temp_dir(&format!("{dtype:?}"));
        std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
        let tensors: Vec<_> = original
            .names()
            .iter()
            .map(|n| {
                let t = original.tensor_f32(n).unwrap();
                let bytes = t.to_vec().iter().flat_map(|&x| round(x)).collect();
                (n.clone(), dtype, t.shape().to_vec(), bytes)
            })
            .collect();
        write_safetensors(&dir.join("model.safetensors"), &tensors);
        let model = Llama::from_dir(&dir).unwrap();
        for id in reference.params.ids() {
            let name = reference.params.name(id);
            let want: Vec<f32> = reference
                .params
                .value(id)
                .to_vec()
                .iter()
                .map(|&x| {
                    let b = round(x);
                    match dtype {
                        safetensors::Dtype::BF16 => half::bf16::from_le_bytes(b).to_f32(),
                        _ => half::f16::from_le_bytes(b).to_f32(),
                    }
                })
                .collect();
            let got = model.params.value(model.params.id(name).unwrap()).to_vec();
            assert_eq!(got, want, "{dtype:?} {name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Keys of a transformers-written config.json that do not change the model's maths (training
/// and bookkeeping options); every other key of the original must come back from `save`.
const BOOKKEEPING_KEYS: [&str; 7] = [
    "attention_dropout",
    "initializer_range",
    "pad_token_id",
    "pretraining_tp",
    "transformers_version",
    "use_cache",
    "layer_types",
];

/// `save` writes a config.json that says what transformers' own says: for Llama 3.1 and Qwen3,
/// every key of the fixture's config (written by transformers 5) that shapes the model is present
/// with the same value (rope_parameters included, field by field), and Llama 3.1's scaling is
/// also written in transformers 4's `rope_scaling` spelling.
#[test]
fn saved_config_json_agrees_with_the_transformers_written_one() {
    for name in ["tiny-llama31", "tiny-qwen3"] {
        let model = load_case(name).model;
        let dir = temp_dir(&format!("config-{name}"));
        model.save(&dir).unwrap();
        let read = |p: PathBuf| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
        };
        let original = read(fixture(&format!("{name}/config.json")));
        let saved = read(dir.join("config.json"));
        for (key, want) in original.as_object().unwrap() {
            if BOOKKEEPING_KEYS.contains(&key.as_str()) {
                continue;
            }
            assert_eq!(saved.get(key), Some(want), "{name}: config key `{key}`");
        }
        let params = &original["rope_parameters"];
        if params["rope_type"] == "llama3" {
            let mut v4 = params.clone();
            v4.as_object_mut().unwrap().remove("rope_theta");
            assert_eq!(saved["rope_scaling"], v4, "{name}: transformers 4 spelling");
            assert_eq!(saved["rope_theta"], params["rope_theta"]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A copy of a fixture directory with its config.json replaced by `edit(config)`.
fn fixture_with_config(name: &str, tag: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = fixture(name);
    let dir = temp_dir(tag);
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_diff(&a.to_vec(), &b.to_vec())
}

/// The Llama 3.1 fixture's config rewritten in transformers 4's spelling (rope_scaling plus a
/// top-level rope_theta) gives the reference logits; without the scaling it does not, so the
/// fixture really pins the llama3 frequencies down.
#[test]
fn llama31_in_the_transformers_4_spelling_gives_the_same_logits() {
    let case = load_case("tiny-llama31");
    let want = case.reference.tensor_f32("logits").unwrap();
    let v4 = fixture_with_config("tiny-llama31", "llama31-v4", |c| {
        let mut params = c["rope_parameters"].take();
        let theta = params
            .as_object_mut()
            .unwrap()
            .remove("rope_theta")
            .unwrap();
        let o = c.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.insert("rope_theta".into(), theta);
        o.insert("rope_scaling".into(), params);
    });
    let model = Llama::from_dir(&v4).unwrap();
    assert_eq!(model.config, case.model.config);
    let got = logits_of(&model, &case.input, None);
    assert!(max_abs_diff(&got, &want) <= ABS_TOL);

    let plain = fixture_with_config("tiny-llama31", "llama31-plain", |c| {
        c["rope_parameters"]["rope_type"] = "default".into();
    });
    let unscaled = logits_of(&Llama::from_dir(&plain).unwrap(), &case.input, None);
    let d = max_abs_diff(&unscaled, &want);
    assert!(
        d > 100.0 * ABS_TOL,
        "plain RoPE is only {d} from the llama3 reference"
    );
    for dir in [v4, plain] {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A qwen3 checkpoint without its q_norm scales is refused, naming the file and the tensor.
#[test]
fn qwen3_checkpoint_without_q_norm_is_refused() {
    let src = fixture("tiny-qwen3");
    let dir = temp_dir("qwen3-no-qnorm");
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let original = SafetensorsFile::open(src.join("model.safetensors")).unwrap();
    let victim = "model.layers.0.self_attn.q_norm.weight";
    assert!(original.contains(victim), "the fixture has {victim}");
    let tensors: Vec<_> = original
        .names()
        .into_iter()
        .filter(|n| n != victim)
        .map(|n| {
            let t = original.tensor_f32(&n).unwrap();
            let bytes = t.to_vec().iter().flat_map(|x| x.to_le_bytes()).collect();
            (n, safetensors::Dtype::F32, t.shape().to_vec(), bytes)
        })
        .collect();
    write_safetensors(&dir.join("model.safetensors"), &tensors);
    let e = match Llama::from_dir(&dir) {
        Ok(_) => panic!("a qwen3 checkpoint without {victim} must not load"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("model.safetensors") && e.contains(victim), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Qwen2 config with its sliding window switched on keeps it through save and load.
#[test]
fn qwen2_sliding_window_survives_save_and_load() {
    let dir = fixture_with_config("tiny-qwen2", "qwen2-window", |c| {
        c["use_sliding_window"] = true.into();
        c["sliding_window"] = 64.into();
        c["max_window_layers"] = 1.into();
    });
    let model = Llama::from_dir(&dir).unwrap();
    assert_eq!(model.config.sliding_window, Some(64));
    let saved = temp_dir("qwen2-window-saved");
    model.save(&saved).unwrap();
    let back = Llama::from_dir(&saved).unwrap();
    assert_same_params(&model, &back);
    assert_eq!(back.config.sliding_window, Some(64));
    assert_eq!(back.config.max_window_layers, Some(1));
    for d in [dir, saved] {
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// `linear` RoPE scaling with factor 2 divides every frequency by 2, so positions 0, 2, 4, ...
/// must give exactly the logits plain RoPE gives at 0, 1, 2, ... (both products are exact in f32).
#[test]
fn linear_rope_scaling_interpolates_positions() {
    use ilrec::model::rope_scaling::RopeScaling;
    let case = load_case("tiny-llama");
    let mut config = case.model.config.clone();
    config.rope_scaling = RopeScaling::Linear { factor: 2.0 };
    let linear = Llama::from_params(config, case.model.params.clone()).unwrap();
    let mut doubled = case.input.clone();
    doubled.positions = Some((0..case.input.seq).map(|t| 2 * t).collect());
    let want = logits_of(&case.model, &case.input, None);
    assert_eq!(logits_of(&linear, &doubled, None).to_vec(), want.to_vec());
    // ...and differ from plain RoPE at the same positions.
    assert!(max_abs_diff(&logits_of(&linear, &case.input, None), &want) > 1e-3);
}
