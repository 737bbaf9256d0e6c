//! Trainable token rows (PEFT's `trainable_token_indices`): only the listed rows of the
//! embedding, and of an untied LM head, train; the rest of both matrices stays frozen. This is
//! how added tokens (semantic IDs) learn on a pretrained model whose base is frozen.
//!
//! As in PEFT, the trainable values replace the base rows (they start as copies of them) and
//! are stored under `token_adapter.trainable_tokens_delta`, one row per listed token in list
//! order. A tied head reads the embedding's rows; PEFT saves them once, under the embedding.

use super::config::TrainableTokens;
use crate::autograd::ParamId;
use crate::error::Result;
use crate::model::adapter::TokenRows;
use crate::model::llama::Llama;
use crate::tensor::Tensor;

/// Parameter name of the embedding's trainable rows (the file adds `base_model.model.`).
pub const EMBED_ROWS: &str = "model.embed_tokens.token_adapter.trainable_tokens_delta";
/// Parameter name of an untied LM head's trainable rows.
pub const HEAD_ROWS: &str = "lm_head.token_adapter.trainable_tokens_delta";

/// Rows `indices` of a (V, D) matrix, as an (n, D) tensor.
fn rows_of(matrix: &Tensor, indices: &[usize]) -> Result<Tensor> {
    let d = matrix.last_dim();
    let all = matrix.to_vec();
    let picked = indices
        .iter()
        .flat_map(|&i| all[i * d..(i + 1) * d].iter().copied())
        .collect();
    Tensor::from_vec(picked, &[indices.len(), d]) // (n, D)
}

/// Adds the trainable rows of `tokens` to `model` (copies of the current rows, trainable) and
/// returns their parameters. Indices must have been checked against the vocabulary.
pub fn attach_token_rows(model: &mut Llama, tokens: &TrainableTokens) -> Result<Vec<ParamId>> {
    let mut added = Vec::new();
    let tied = model.lm_head_id() == model.embed_id();
    let sides = [
        (false, &tokens.embed, model.embed_id(), EMBED_ROWS),
        (true, &tokens.head, model.lm_head_id(), HEAD_ROWS),
    ];
    for (head, indices, matrix, name) in sides {
        if indices.is_empty() || (head && tied) {
            continue; // a tied head follows the embedding's rows
        }
        let values = rows_of(model.params.value(matrix), indices)?;
        let delta = model.params.add(name, values, true)?;
        let rows = TokenRows {
            indices: indices.clone(),
            delta,
        };
        model.set_token_rows(head, Some(rows))?;
        added.push(delta);
    }
    Ok(added)
}
