//! Qwen3's per-head RMSNorm of queries and keys ("QK-norm").
//!
//! Before RoPE, every head of q (and of k) is normalised on its own: the head_dim values of one
//! head of one token are one RMSNorm row, and one learned scale of size head_dim (`q_norm`,
//! `k_norm`) is shared by all heads of a layer:
//! ```text
//! q (B, T, H*hd) -view-> (B*T*H, hd) -RMSNorm(q_norm)-> (B*T*H, hd) -view-> (B, T, H*hd)
//! ```
//! A (B, T, H*hd) row-major tensor *is* (B*T*H, hd) row-major, so the views are free and the
//! forward and backward are the RMSNorm op's own (`autograd/norm.rs`): its weight gradient sums
//! over all B*T*H rows, which is exactly the gradient of a scale shared by every head.

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};

/// RMSNorm over each head of `x`: (B, T, H*head_dim) in and out; `weight`: (head_dim).
pub fn per_head_rms_norm(
    tape: &mut Tape,
    x: Var,
    weight: Var,
    head_dim: usize,
    eps: f32,
) -> Result<Var> {
    let shape = tape.shape(x).to_vec();
    let width = shape.last().copied().unwrap_or(0);
    if head_dim == 0 || !width.is_multiple_of(head_dim) {
        return Err(Error::shape(
            "per_head_rms_norm",
            format!("last axis of {shape:?} is not a whole number of heads of {head_dim}"),
        ));
    }
    let rows = shape.iter().product::<usize>() / head_dim;
    let heads = tape.reshape(x, &[rows, head_dim])?; // (B*T*H, hd)
    let normed = tape.rms_norm(heads, weight, eps)?; // (B*T*H, hd)
    tape.reshape(normed, &shape) // (B, T, H*hd)
}
