//! Adapters the decoder knows how to run: a low-rank update on a projection (LoRA's forward)
//! and trainable rows of the embedding / LM head (PEFT's trainable token rows). Their
//! parameters live in the model's [`Params`] beside the frozen base; creating them, PEFT's file
//! format and merging are the job of `crate::lora`, which builds on this file.
//!
//! A projection `W` (out, in) with a [`LowRank`] adapter computes
//! ```text
//! y = x W^T (+ bias) + scale * dropout(x) A^T B^T      A (r, in), B (out, r)
//! ```
//! The whole expression is one op on the tape (`Tape::lora_linear`, `autograd/lora_linear.rs`).
//! With `W` frozen, its backward computes only dx through `W` (no weight-gradient GEMM for a
//! parameter that is not trainable); A and B get their gradients from two thin products of
//! width r.
//!
//! [`TokenRows`] replace rows of a frozen (V, D) matrix by trainable ones: token `indices[j]`
//! embeds as row j of `delta`, and (for an LM head) its logit is `x . delta[j]`.

use super::config::LlamaConfig;
use crate::autograd::{LowRankUpdate, ParamId, Params, Tape, Var};
use crate::error::Result;
use crate::rng::Rng;

/// One of the seven projections of a decoder block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    /// Every projection, in block order (the order of the forward and of fresh adapters).
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// The module's HF name (`q_proj`, ..., `down_proj`): PEFT's `target_modules` entries.
    pub fn hf_name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::Down => "down_proj",
        }
    }

    /// The module's path inside a block (`self_attn.q_proj`, `mlp.gate_proj`).
    pub fn module_path(self) -> &'static str {
        match self {
            Proj::Q => "self_attn.q_proj",
            Proj::K => "self_attn.k_proj",
            Proj::V => "self_attn.v_proj",
            Proj::O => "self_attn.o_proj",
            Proj::Gate => "mlp.gate_proj",
            Proj::Up => "mlp.up_proj",
            Proj::Down => "mlp.down_proj",
        }
    }

    /// The (out, in) shape of this projection's weight in a model of `cfg`.
    pub fn shape(self, cfg: &LlamaConfig) -> (usize, usize) {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        match self {
            Proj::Q => (cfg.q_dim(), d),
            Proj::K | Proj::V => (cfg.kv_dim(), d),
            Proj::O => (d, cfg.q_dim()),
            Proj::Gate | Proj::Up => (f, d),
            Proj::Down => (d, f),
        }
    }

    /// `q_proj` or the short form `q` (and so on); None for anything else.
    pub fn parse(name: &str) -> Option<Proj> {
        let short = name.strip_suffix("_proj").unwrap_or(name);
        Proj::ALL
            .into_iter()
            .find(|p| p.hf_name().strip_suffix("_proj") == Some(short))
    }
}

/// A LoRA adapter on one projection: the ids of A (r, in) and B (out, r) in the model's
/// parameters, the factor `scale` (alpha / r) and the dropout probability on its input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LowRank {
    pub a: ParamId,
    pub b: ParamId,
    pub scale: f32,
    pub dropout: f32,
}

impl LowRank {
    /// The adapted projection `x W^T (+ bias) + scale * dropout(x) A^T B^T`: x (..., in) ->
    /// (..., out), one `lora_linear` op on the tape. `w` and `bias` are the frozen projection's,
    /// already on the tape. `dropout_seed` is Some in training (a mask drawn from it) and None
    /// in evaluation (no dropout).
    pub fn project(
        &self,
        tape: &mut Tape,
        params: &Params,
        x: Var,
        (w, bias): (Var, Option<Var>),
        dropout_seed: Option<u64>,
    ) -> Result<Var> {
        let mut rng = dropout_seed.map(Rng::new);
        let update = LowRankUpdate {
            a: tape.param(params, self.a), // (r, in)
            b: tape.param(params, self.b), // (out, r)
            scale: self.scale,
            dropout: rng.as_mut().map(|rng| (self.dropout, rng)),
        };
        tape.lora_linear(x, w, bias, update)
    }
}

/// Trainable rows of a frozen (V, D) matrix: row `indices[j]` is replaced by row j of `delta`
/// (n, D). PEFT stores the replacement values, not differences, under the name
/// `trainable_tokens_delta`; so do we.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRows {
    /// Token ids, distinct, in the order of `delta`'s rows.
    pub indices: Vec<usize>,
    pub delta: ParamId,
}

impl TokenRows {
    /// The embedding output `h` (N, D) (rows = token positions, ids `ids`) with every position
    /// whose token has a trainable row taking that row of `delta` (a Var of shape (n, D)).
    pub fn embed(&self, tape: &mut Tape, h: Var, delta: Var, ids: &[u32]) -> Result<Var> {
        let slot_of: std::collections::HashMap<usize, u32> = self
            .indices
            .iter()
            .enumerate()
            .map(|(j, &t)| (t, j as u32))
            .collect();
        let (mut positions, mut slots) = (Vec::new(), Vec::new());
        for (pos, &id) in ids.iter().enumerate() {
            if let Some(&j) = slot_of.get(&(id as usize)) {
                positions.push(pos);
                slots.push(j);
            }
        }
        // Recorded even when no position matches, so `delta` always gets a (zero) gradient,
        // as PyTorch's index_copy gives it.
        let picked = tape.embedding(delta, &slots, &[slots.len()])?; // (matches, D)
        tape.overwrite_rows(h, picked, &positions) // (N, D)
    }

    /// Logits `z` (N, V) of inputs `x` (N, D) with the columns of the trainable tokens computed
    /// from `delta` (n, D) instead of the frozen head.
    pub fn logits(&self, tape: &mut Tape, z: Var, x: Var, delta: Var) -> Result<Var> {
        let own = tape.linear(x, delta, None)?; // (N, n)
        tape.overwrite_columns(z, own, &self.indices) // (N, V)
    }
}
