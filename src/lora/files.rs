//! An adapter on disk, exactly as PEFT writes it: a folder with `adapter_config.json` and
//! `adapter_model.safetensors` (f32 tensors, `{"format": "pt"}` metadata) whose names are the
//! model's parameter names behind PEFT's wrapper prefix `base_model.model.`:
//! `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, ...,
//! `base_model.model.model.embed_tokens.token_adapter.trainable_tokens_delta`.
//!
//! Loading checks the adapter against the base model before anything is attached: every
//! tensor the config implies is present with the shape the base implies, and the file holds
//! nothing else (a `lora_magnitude_vector` is DoRA, a `lora_embedding_A` an embedding adapter:
//! neither is implemented, and neither may be silently dropped).

use super::attach::{adapter_params, attach};
use super::config::LoraConfig;
use super::peft_config::{read_config, write_config};
use crate::autograd::Params;
use crate::error::{Error, Result};
use crate::model::adapter::Proj;
use crate::model::llama::Llama;
use crate::model::weights::{save_params, SafetensorsFile};
use std::collections::HashSet;
use std::path::Path;

/// PEFT's prefix in front of the model's own parameter names.
pub const PEFT_PREFIX: &str = "base_model.model.";
/// The two files of an adapter folder.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Writes `model`'s adapter to `dir` (created): `adapter_config.json` from `cfg` (which must
/// describe the attached adapter) and the adapter tensors. `base_model` is recorded as
/// `base_model_name_or_path`.
pub fn save_adapter(
    model: &Llama,
    cfg: &LoraConfig,
    dir: &Path,
    base_model: Option<&str>,
) -> Result<()> {
    check_describes(model, cfg)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut renamed = Params::new();
    for (name, id) in adapter_params(model) {
        let value = model.params.value(id).clone(); // shares the storage
        renamed.add(&format!("{PEFT_PREFIX}{name}"), value, false)?;
    }
    let ids: Vec<_> = renamed.ids().collect();
    save_params(&renamed, &ids, dir.join(WEIGHTS_FILE))?;
    write_config(&dir.join(CONFIG_FILE), cfg, base_model)
}

/// Refuses to save a config that does not describe the attached adapter (r, scale, targets,
/// blocks, token rows), which would make a file pair PEFT reads differently.
fn check_describes(model: &Llama, cfg: &LoraConfig) -> Result<()> {
    let mismatch = |what: &str| {
        Error::config(
            format!("the LoRA config does not describe the model's adapter: {what}"),
            "save with the config the adapter was attached or loaded with",
        )
    };
    for (layer, block) in model.blocks().iter().enumerate() {
        for proj in Proj::ALL {
            let wanted = cfg.covers(layer) && cfg.targets.contains(&proj);
            match (block.adapter(proj), wanted) {
                (None, false) => {}
                (Some(a), true) => {
                    let r = model.params.value(a.a).shape()[0];
                    if r != cfg.r || a.scale != cfg.scale() || a.dropout != cfg.dropout {
                        return Err(mismatch(&format!("block {layer} {}", proj.hf_name())));
                    }
                }
                _ => return Err(mismatch(&format!("targets of block {layer}"))),
            }
        }
    }
    let rows = |r: Option<&crate::model::adapter::TokenRows>| r.map(|r| r.indices.clone());
    let tied = model.lm_head_id() == model.embed_id();
    let want_head = (!tied && !cfg.tokens.head.is_empty()).then(|| cfg.tokens.head.clone());
    let want_embed = (!cfg.tokens.embed.is_empty()).then(|| cfg.tokens.embed.clone());
    if rows(model.embed_rows()) != want_embed || rows(model.head_rows()) != want_head {
        return Err(mismatch("trainable token rows"));
    }
    Ok(())
}

/// Reads the adapter folder `dir`, checks it against `model` and attaches it (the base frozen,
/// the adapter trainable). Returns its config.
pub fn load_adapter(model: &mut Llama, dir: &Path) -> Result<LoraConfig> {
    let config_path = dir.join(CONFIG_FILE);
    let cfg = read_config(&config_path)?;
    cfg.check_against(&model.config)
        .map_err(|e| e.in_file(&config_path))?;
    let file = SafetensorsFile::open(dir.join(WEIGHTS_FILE))?;
    let mut attached = model.clone();
    attach(&mut attached, &cfg, 0)?; // structure; the values come from the file
    let expected = adapter_params(&attached);
    let expected_names: HashSet<String> = expected
        .iter()
        .map(|(n, _)| format!("{PEFT_PREFIX}{n}"))
        .collect();
    if let Some(extra) = file
        .names()
        .into_iter()
        .find(|n| !expected_names.contains(n))
    {
        return Err(Error::format(
            file.path(),
            format!("tensor `{extra}` {}", explain_extra(&extra)),
        ));
    }
    for (name, id) in expected {
        let full = format!("{PEFT_PREFIX}{name}");
        let want = attached.params.value(id).shape().to_vec();
        let (_, shape) = file.describe(&full).ok_or_else(|| {
            Error::format(
                file.path(),
                format!("tensor `{full}` is missing (the config implies shape {want:?})"),
            )
        })?;
        if shape != want {
            return Err(Error::format(
                file.path(),
                format!("tensor `{full}`: shape {shape:?} does not match the base model, which implies {want:?}"),
            ));
        }
        attached.params.set_value(id, file.tensor_f32(&full)?)?;
    }
    *model = attached;
    Ok(cfg)
}

/// Why a tensor of an adapter file is not one the config implies.
fn explain_extra(name: &str) -> String {
    if name.contains("lora_magnitude_vector") {
        "is DoRA's magnitude vector; DoRA is not implemented (supported: plain LoRA)".into()
    } else if name.contains("lora_embedding") {
        "is an embedding LoRA; not implemented (supported: LoRA on q/k/v/o/gate/up/down_proj)"
            .into()
    } else if !name.starts_with(PEFT_PREFIX) {
        format!(
            "lacks PEFT's prefix `{PEFT_PREFIX}` (supported: files PEFT's save_pretrained writes)"
        )
    } else {
        "is not implied by adapter_config.json (its target_modules, layers_to_transform and \
         trainable_token_indices)"
            .into()
    }
}
