//! `adapter_config.json`, as PEFT 0.21 reads and writes it.
//!
//! Reading maps the fields we implement (r, lora_alpha, lora_dropout, target_modules,
//! layers_to_transform, use_rslora, trainable_token_indices) onto [`LoraConfig`] and refuses,
//! with a one-line error naming the file, the field and what is supported, every option that
//! would change the adapter's meaning and that we do not implement (DoRA, bias other than
//! "none", per-module ranks, regex targets, initialisations that rewrite the base weights,
//! ...). A field we do not know is accepted only when it is switched off (null, false, empty):
//! PEFT adds options over time and an unknown one in use must not be silently ignored.
//!
//! Writing produces every field PEFT 0.21.2 writes (so PEFT reads it without complaint), with
//! our values; keys come out sorted, as in PEFT's files.

use super::config::{Invalid, LoraConfig, TrainableTokens};
use crate::error::{Error, Result};
use crate::model::adapter::Proj;
use serde_json::{json, Map, Value};
use std::path::Path;

/// The PEFT modules names every target may be written as.
const PEFT_TARGETS: &str =
    "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (a list), or \"all-linear\"";

/// Fields that describe the adapter's provenance or runtime mode, not its maths.
const METADATA: [&str; 9] = [
    "base_model_name_or_path",
    "revision",
    "task_type",
    "inference_mode",
    "peft_version",
    "auto_mapping",
    "megatron_core",
    "qalora_group_size",
    "layers_pattern",
];

/// Options that must be off, with what they are (for the error message).
const MUST_BE_OFF: [(&str, &str); 11] = [
    ("use_dora", "DoRA"),
    ("fan_in_fan_out", "transposed (Conv1D) base weights"),
    ("lora_bias", "a trainable bias on lora_B"),
    ("modules_to_save", "fully trained extra modules"),
    ("rank_pattern", "per-module ranks"),
    ("alpha_pattern", "per-module alphas"),
    ("use_qalora", "QA-LoRA"),
    ("layer_replication", "layer replication"),
    ("target_parameters", "LoRA on raw parameters"),
    ("exclude_modules", "excluded modules"),
    ("loftq_config", "LoftQ (rewrites the base weights)"),
];

/// Whether a JSON value is "switched off": null, false, 0-free empties.
fn is_off(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// Reads and checks `path` (an adapter_config.json).
pub fn read_config(path: &Path) -> Result<LoraConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| Error::format(path, "expected a JSON object"))?;
    config_from_json(obj).map_err(|e| e.in_file(path))
}

/// The [`LoraConfig`] an adapter_config object describes.
pub fn config_from_json(obj: &Map<String, Value>) -> std::result::Result<LoraConfig, Invalid> {
    check_switches(obj)?;
    let number = |field: &'static str| -> std::result::Result<Option<f64>, Invalid> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Invalid::new(field, format!("{v} is not a number"), "a number")),
        }
    };
    let r = match obj.get("r").and_then(Value::as_u64) {
        Some(r) => r as usize,
        None => return Err(Invalid::new("r", "missing or not a whole number", "r >= 1")),
    };
    let alpha = number("lora_alpha")?
        .ok_or_else(|| Invalid::new("lora_alpha", "missing", "a number > 0"))?;
    let cfg = LoraConfig {
        r,
        alpha: alpha as f32,
        dropout: number("lora_dropout")?.unwrap_or(0.0) as f32,
        targets: targets(obj.get("target_modules"))?,
        layers: layers(obj.get("layers_to_transform"))?,
        rslora: switch(obj, "use_rslora")?,
        tokens: trainable_tokens(obj.get("trainable_token_indices"))?,
    };
    cfg.check()?;
    Ok(cfg)
}

/// A boolean option: true, or false / null / absent. Anything else is refused rather than read
/// as false: PEFT tests the value's truth, so a string "false" or a 1 switches it on there.
fn switch(obj: &Map<String, Value>, field: &'static str) -> std::result::Result<bool, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(on)) => Ok(*on),
        Some(v) => Err(Invalid::new(
            field,
            format!("{v} is not true or false"),
            "true or false",
        )),
    }
}

/// PEFT type, bias, init and every option that must be off; unknown fields only when off.
fn check_switches(obj: &Map<String, Value>) -> std::result::Result<(), Invalid> {
    match obj.get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            let found = other.map_or("missing".to_string(), |t| format!("`{t}`"));
            return Err(Invalid::new(
                "peft_type",
                format!("{found} is not implemented"),
                "\"LORA\"",
            ));
        }
    }
    match obj.get("bias") {
        None | Some(Value::Null) => {}
        Some(Value::String(b)) if b == "none" => {}
        Some(b) => {
            return Err(Invalid::new(
                "bias",
                format!("{b} trains the base biases"),
                "\"none\"",
            ))
        }
    }
    match obj.get("init_lora_weights") {
        None | Some(Value::Null | Value::Bool(_)) => {}
        Some(Value::String(s)) if s == "gaussian" => {}
        Some(v) => {
            return Err(Invalid::new(
                "init_lora_weights",
                format!("{v} rewrites the base weights"),
                "true, false or \"gaussian\"",
            ))
        }
    }
    for (field, what) in MUST_BE_OFF {
        if let Some(v) = obj.get(field).filter(|v| !is_off(v)) {
            return Err(Invalid::new(
                field,
                format!("{v}: {what} is not implemented"),
                "null / false / empty",
            ));
        }
    }
    let handled = [
        "peft_type",
        "bias",
        "init_lora_weights",
        "r",
        "lora_alpha",
        "lora_dropout",
        "target_modules",
        "layers_to_transform",
        "use_rslora",
        "trainable_token_indices",
    ];
    for (field, v) in obj {
        let known = handled.contains(&field.as_str())
            || METADATA.contains(&field.as_str())
            || MUST_BE_OFF.iter().any(|(f, _)| f == field);
        if !known && !is_off(v) {
            return Err(Invalid::new(
                "(unknown option)",
                format!("`{field}` = {v} is not implemented"),
                "options of PEFT's LoraConfig that we implement, others null / false / empty",
            ));
        }
    }
    Ok(())
}

/// `target_modules`: a list of projection names or "all-linear" (a regex string is refused).
fn targets(v: Option<&Value>) -> std::result::Result<Vec<Proj>, Invalid> {
    let bad = |what: String| Invalid::new("target_modules", what, PEFT_TARGETS);
    let names: Vec<&str> = match v {
        Some(Value::String(s)) if s == "all-linear" => return Ok(Proj::ALL.to_vec()),
        Some(Value::String(s)) => {
            return Err(bad(format!(
                "the pattern `{s}` (regular expressions are not implemented)"
            )))
        }
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().ok_or_else(|| bad(format!("{x} is not a name"))))
            .collect::<std::result::Result<_, _>>()?,
        _ => return Err(bad("missing".into())),
    };
    let mut out = Vec::new();
    for n in names {
        let p = Proj::ALL.into_iter().find(|p| p.hf_name() == n);
        out.push(p.ok_or_else(|| bad(format!("unknown module `{n}`")))?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `layers_to_transform`: null (every block), one index or a list of indices.
fn layers(v: Option<&Value>) -> std::result::Result<Option<Vec<usize>>, Invalid> {
    let bad = |v: &Value| {
        Invalid::new(
            "layers_to_transform",
            format!("{v} is not a block index"),
            "null, an index or a list of indices",
        )
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|l| Some(vec![l as usize]))
            .ok_or_else(|| bad(v.unwrap_or(&Value::Null))),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().map(|l| l as usize).ok_or_else(|| bad(x)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(bad(other)),
    }
}

/// `trainable_token_indices`: null, a list (the embedding's rows) or
/// `{"embed_tokens": [...], "lm_head": [...]}`.
fn trainable_tokens(v: Option<&Value>) -> std::result::Result<TrainableTokens, Invalid> {
    let field = "trainable_token_indices";
    let supported = "null, a list of token ids, or {\"embed_tokens\": [...], \"lm_head\": [...]}";
    let list = |v: &Value| -> std::result::Result<Vec<usize>, Invalid> {
        let ids = v.as_array().map(|a| {
            a.iter()
                .map(|x| x.as_u64().map(|i| i as usize))
                .collect::<Option<Vec<_>>>()
        });
        ids.flatten().ok_or_else(|| {
            Invalid::new(field, format!("{v} is not a list of token ids"), supported)
        })
    };
    match v {
        None | Some(Value::Null) => Ok(TrainableTokens::default()),
        Some(v @ Value::Array(_)) => Ok(TrainableTokens {
            embed: list(v)?,
            head: Vec::new(),
        }),
        Some(Value::Object(o)) => {
            let mut t = TrainableTokens::default();
            for (module, ids) in o {
                match module.as_str() {
                    "embed_tokens" => t.embed = list(ids)?,
                    "lm_head" => t.head = list(ids)?,
                    other => {
                        return Err(Invalid::new(field, format!("module `{other}`"), supported))
                    }
                }
            }
            Ok(t)
        }
        Some(other) => Err(Invalid::new(field, format!("{other}"), supported)),
    }
}

/// An f32 as the f64 its shortest decimal spells (0.05, not 0.05000000074505806).
fn shortest_f64(x: f32) -> Value {
    json!(x.to_string().parse::<f64>().unwrap_or(x as f64))
}

/// Like [`shortest_f64`], but an integer when it is one (PEFT writes `lora_alpha: 8`).
fn short_number(x: f32) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e9 {
        return json!(x as i64);
    }
    shortest_f64(x)
}

/// The adapter_config.json object of `cfg`, with every field PEFT 0.21.2 writes.
pub fn config_to_json(cfg: &LoraConfig, base_model: Option<&str>) -> Value {
    let targets: Vec<&str> = cfg.targets.iter().map(|p| p.hf_name()).collect();
    let t = &cfg.tokens;
    let tokens = match (t.embed.is_empty(), t.head.is_empty()) {
        (true, true) => Value::Null,
        (_, true) => json!(t.embed),
        _ => json!({"embed_tokens": t.embed, "lm_head": t.head}),
    };
    json!({
        "alora_invocation_tokens": null, "alpha_pattern": {}, "arrow_config": null,
        "auto_mapping": null, "base_model_name_or_path": base_model, "bias": "none",
        "corda_config": null, "ensure_weight_tying": false, "eva_config": null,
        "exclude_modules": null, "fan_in_fan_out": false, "inference_mode": true,
        "init_lora_weights": true, "kasa_config": null, "layer_replication": null,
        "layers_pattern": null, "layers_to_transform": cfg.layers, "loftq_config": {},
        "lora_alpha": short_number(cfg.alpha), "lora_bias": false,
        "lora_dropout": shortest_f64(cfg.dropout), "lora_ga_config": null,
        "megatron_config": null, "megatron_core": "megatron.core", "modules_to_save": null,
        "monteclora_config": null, "peft_type": "LORA", "peft_version": "0.21.2",
        "qalora_group_size": 16, "r": cfg.r, "rank_pattern": {}, "revision": null,
        "target_modules": targets, "target_parameters": null, "task_type": "CAUSAL_LM",
        "trainable_token_indices": tokens, "use_bdlora": null, "use_dora": false,
        "use_qalora": false, "use_rslora": cfg.rslora, "velora_config": null,
    })
}

/// Writes `cfg` as `path` (pretty-printed, like PEFT).
pub fn write_config(path: &Path, cfg: &LoraConfig, base_model: Option<&str>) -> Result<()> {
    let text = serde_json::to_string_pretty(&config_to_json(cfg, base_model))
        .map_err(|e| Error::format(path, e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(path, e))
}
