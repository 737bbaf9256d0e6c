//! Merging: the adapter folded into the base weights, giving a plain model with the adapted
//! model's outputs and no adapter (what decoding runs, and what people deploy as a full HF
//! checkpoint: `merged(&model)?.save(dir)`).
//!
//! Each adapted projection becomes `W + scale * B A` ((out, r) x (r, in) -> (out, in), as PEFT's
//! `merge_and_unload`); each trainable token row replaces its row of the embedding / head. The
//! unadapted f32 parameters are shared with the original model (tensors are reference-counted),
//! so merging an f32 model costs memory only for the matrices it changes; a half-precision base
//! is converted to f32 (the merged model is what decoding runs).

use super::attach::has_adapter;
use crate::autograd::Params;
use crate::cpu::gemm::sgemm;
use crate::error::Result;
use crate::model::adapter::{LowRank, Proj, TokenRows};
use crate::model::llama::{expected_tensors, Llama};
use crate::tensor::Tensor;

/// `model` with its adapter merged into the weights (a clone when it has none).
pub fn merged(model: &Llama) -> Result<Llama> {
    if !has_adapter(model) {
        return Ok(model.clone());
    }
    let mut params = Params::new();
    for (name, _) in expected_tensors(&model.config) {
        let id = model
            .params
            .id(&name)
            .ok_or_else(|| crate::Error::config(format!("parameter `{name}` is missing"), ""))?;
        // f32 throughout (a shared clone for f32 weights): decoding runs the merged model, and a
        // half-precision matrix would be converted again at every decoding step.
        params.add(&name, model.params.value(id).to_f32(), true)?;
    }
    for block in model.blocks() {
        for proj in Proj::ALL {
            if let Some(adapter) = block.adapter(proj) {
                let name = model.params.name(block.weight(proj));
                let id = params.id(name).expect("every base weight was copied");
                let folded = fold_low_rank(&model.params, params.value(id), adapter)?;
                params.set_value(id, folded)?;
            }
        }
    }
    let tied = model.lm_head_id() == model.embed_id();
    let mut sides = vec![(model.embed_id(), model.embed_rows())];
    if !tied {
        sides.push((model.lm_head_id(), model.head_rows()));
    }
    for (matrix, rows) in sides {
        if let Some(rows) = rows {
            let id = params.id(model.params.name(matrix)).expect("copied");
            let replaced = replace_rows(params.value(id), model.params.value(rows.delta), rows)?;
            params.set_value(id, replaced)?;
        }
    }
    Llama::from_params(model.config.clone(), params)
}

/// `W + scale * B A`: W (out, in), B (out, r), A (r, in).
fn fold_low_rank(params: &Params, w: &Tensor, adapter: &LowRank) -> Result<Tensor> {
    let (a, b) = (
        params.value(adapter.a).to_f32(),
        params.value(adapter.b).to_f32(),
    );
    let (out, fan_in, r) = (w.shape()[0], w.shape()[1], a.shape()[0]);
    let mut merged = w.to_vec(); // (out, in), f32 whatever the base's storage
    #[rustfmt::skip]
    sgemm(false, false, out, fan_in, r, adapter.scale, b.data()?, r, a.data()?, fan_in,
        1.0, &mut merged, fan_in);
    Tensor::from_vec(merged, &[out, fan_in])
}

/// `matrix` (V, D) with row `rows.indices[j]` replaced by row j of `delta` (n, D).
fn replace_rows(matrix: &Tensor, delta: &Tensor, rows: &TokenRows) -> Result<Tensor> {
    let d = matrix.last_dim();
    let mut out = matrix.to_vec();
    let delta = delta.to_vec();
    for (j, &i) in rows.indices.iter().enumerate() {
        out[i * d..(i + 1) * d].copy_from_slice(&delta[j * d..(j + 1) * d]);
    }
    Tensor::from_vec(out, matrix.shape())
}
