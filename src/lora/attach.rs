//! Attaching a fresh LoRA adapter to a model: every base parameter is frozen (no gradient, no
//! gradient buffer, no optimizer state: the tape never asks for its gradient), and each target
//! projection of each covered block gets A (r, in) Kaiming-uniform and B (out, r) zero, as
//! trainable parameters of the model's own [`Params`](crate::Params) under the names PEFT
//! uses inside the model (`model.layers.N.self_attn.q_proj.lora_A.weight`; the adapter file
//! adds PEFT's `base_model.model.` in front).

use super::config::LoraConfig;
use super::init::{lora_a, lora_b};
use super::tokens::attach_token_rows;
use crate::autograd::ParamId;
use crate::error::{Error, Result};
use crate::model::adapter::{LowRank, Proj};
use crate::model::llama::Llama;
use crate::rng::Rng;

/// Which factor of an adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    /// A (r, in), applied first.
    A,
    /// B (out, r).
    B,
}

/// The parameter name of factor `f` on projection `proj` of block `layer`.
pub fn lora_param_name(layer: usize, proj: Proj, f: Factor) -> String {
    let f = match f {
        Factor::A => "lora_A",
        Factor::B => "lora_B",
    };
    format!("model.layers.{layer}.{}.{f}.weight", proj.module_path())
}

/// Whether the model carries any adapter (LoRA factors or trainable token rows).
pub fn has_adapter(model: &Llama) -> bool {
    model.has_adapters()
}

/// Freezes `model`'s parameters and attaches a fresh adapter of `cfg` (initialised from
/// `seed`, blocks then projections in order). Returns the new trainable parameters.
pub fn attach(model: &mut Llama, cfg: &LoraConfig, seed: u64) -> Result<Vec<ParamId>> {
    cfg.check_against(&model.config)
        .map_err(|e| e.into_error())?;
    if has_adapter(model) {
        return Err(Error::config(
            "this model already carries an adapter",
            "merge it first (lora::merged) or start from the base model",
        ));
    }
    for id in model.params.ids().collect::<Vec<_>>() {
        model.params.set_trainable(id, false);
    }
    let mut rng = Rng::new(seed);
    let mut added = Vec::new();
    for layer in (0..model.blocks().len()).filter(|&l| cfg.covers(l)) {
        for &proj in &cfg.targets {
            let w = model.blocks()[layer].weight(proj);
            let (out, fan_in) = (
                model.params.value(w).shape()[0],
                model.params.value(w).shape()[1],
            );
            let a_name = lora_param_name(layer, proj, Factor::A);
            let b_name = lora_param_name(layer, proj, Factor::B);
            let a = model
                .params
                .add(&a_name, lora_a(cfg.r, fan_in, &mut rng), true)?;
            let b = model.params.add(&b_name, lora_b(out, cfg.r), true)?;
            let adapter = LowRank {
                a,
                b,
                scale: cfg.scale(),
                dropout: cfg.dropout,
            };
            model.set_adapter(layer, proj, Some(adapter))?;
            added.extend([a, b]);
        }
    }
    added.extend(attach_token_rows(model, &cfg.tokens)?);
    Ok(added)
}

/// Every adapter parameter of `model` with its name, in canonical order: blocks, then
/// projections in block order, A before B; then the embedding's and the head's token rows.
pub fn adapter_params(model: &Llama) -> Vec<(String, ParamId)> {
    let mut out = Vec::new();
    for (layer, block) in model.blocks().iter().enumerate() {
        for proj in Proj::ALL {
            if let Some(a) = block.adapter(proj) {
                out.push((lora_param_name(layer, proj, Factor::A), a.a));
                out.push((lora_param_name(layer, proj, Factor::B), a.b));
            }
        }
    }
    for rows in [model.embed_rows(), model.head_rows()]
        .into_iter()
        .flatten()
    {
        out.push((model.params.name(rows.delta).to_string(), rows.delta));
    }
    out
}
