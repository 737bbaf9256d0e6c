//! Fused scaled dot-product attention with grouped-query heads, a causal mask that works with a KV
//! cache, and a key padding mask. Forward and backward side by side.
//!
//! For query row i of head h (kv head g = h / (Hq / Hkv)):
//! ```text
//! s_j = q_i . k_j / sqrt(D)      for the keys j that row i may see, -inf for the others
//! p   = softmax(s)               out_i = sum_j p_j v_j
//! ```
//! Visibility: with `causal`, query i sits at absolute position `Tk - Tq + i` (the Tq new tokens
//! are the last ones of the Tk keys, as in KV-cache decoding) and sees keys `0..=Tk - Tq + i`;
//! `key_valid[b * Tk + j] == false` hides padding key j of sequence b from every query.
//!
//! A query row that sees no key at all (every visible key is padding, e.g. a left-padding query
//! under a causal mask) has an empty softmax; we define its output as zeros and its gradients as
//! zero, rather than producing NaN. Such rows are padding and are never read by a loss.
//!
//! What is saved for backward: only the row log-sum-exp `lse = max_j s_j + ln sum_j exp(s_j - max)`,
//! (B, Hq, Tq), next to the inputs and the output, which the tape holds anyway. Backward
//! recomputes `p_j = exp(s_j - lse)` from q and k (as FlashAttention does). Saving the
//! probabilities instead would keep (B, Hq, Tq, Tk) floats per layer alive until backward,
//! quadratic in the sequence length and summed over all layers of the model, to save one dot
//! product per (i, j) in a backward pass that already does two dot products and three axpys.
//!
//! Backward, with dO the output gradient:
//! ```text
//! dV_j += p_j dO_i             dP_j = dO_i . v_j
//! dS_j  = p_j (dP_j - delta_i)  where delta_i = sum_j p_j dP_j = dO_i . out_i
//! dQ_i += dS_j k_j / sqrt(D)   dK_j += dS_j q_i / sqrt(D)
//! ```
//! Query heads of one GQA group sum into their shared kv head's dK, dV.
//!
//!
//! The kernels (blocking, SIMD builds, the thread split) are in `cpu/attention.rs`.

use super::tape::{Tape, Var};
use crate::cpu::attention::{attention_backward, attention_forward, Dims, Saved};
use crate::cpu::isa::Isa;
use crate::error::{Error, Result};

impl Tape {
    /// Scaled dot-product attention, see the module docs. `q`: (B, Tq, Hq*D), `k`, `v`:
    /// (B, Tk, Hkv*D) with Hq = `n_heads`, Hkv = `n_kv_heads`, D = `head_dim`; returns
    /// (B, Tq, Hq*D). `key_valid`: optional (B*Tk) flags, false marks a padding key.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        q: Var,
        k: Var,
        v: Var,
        n_heads: usize,
        n_kv_heads: usize,
        head_dim: usize,
        causal: bool,
        key_valid: Option<&[bool]>,
    ) -> Result<Var> {
        let dims = check_attention_args(
            [self.shape(q), self.shape(k), self.shape(v)],
            n_heads,
            n_kv_heads,
            head_dim,
            causal,
            key_valid,
        )?;
        let (qt, kt, vt) = (
            self.value(q).clone(),
            self.value(k).clone(),
            self.value(v).clone(),
        );
        let key_valid: Option<Vec<bool>> = key_valid.map(|m| m.to_vec());
        let (out, lse) =
            attention_forward(Isa::detect(), &dims, &qt, &kt, &vt, key_valid.as_deref())?;
        let out_saved = out.clone();
        Ok(self.record("attention", out, &[q, k, v], move |g, needs| {
            let saved = Saved {
                q: &qt,
                k: &kt,
                v: &vt,
                out: &out_saved,
                lse: &lse,
                key_valid: key_valid.as_deref(),
            };
            attention_backward(Isa::detect(), &dims, &saved, g, needs)
        }))
    }
}

/// Validates shapes and head counts; every error names the op and the shapes involved.
fn check_attention_args(
    [qs, ks, vs]: [&[usize]; 3],
    hq: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    key_valid: Option<&[bool]>,
) -> Result<Dims> {
    let op = "attention";
    if hq == 0 || hkv == 0 || d == 0 {
        return Err(Error::shape(
            op,
            format!("n_heads {hq}, n_kv_heads {hkv} and head_dim {d} must all be positive"),
        ));
    }
    if !hq.is_multiple_of(hkv) {
        return Err(Error::shape(
            op,
            format!("n_heads {hq} is not a multiple of n_kv_heads {hkv} (grouped-query attention shares each kv head among n_heads / n_kv_heads query heads)"),
        ));
    }
    let shapes = format!("q {qs:?}, k {ks:?}, v {vs:?}");
    let rank3 = qs.len() == 3 && ks.len() == 3 && vs.len() == 3;
    if !rank3 || qs[2] != hq * d || ks[2] != hkv * d || ks != vs || qs[0] != ks[0] {
        return Err(Error::shape(
            op,
            format!(
                "expected q (B, Tq, {hq}*{d}), k and v (B, Tk, {hkv}*{d}) with the same B; found {shapes}"
            ),
        ));
    }
    let (batch, tq, tk) = (qs[0], qs[1], ks[1]);
    if causal && tq > tk {
        return Err(Error::shape(
            op,
            format!("causal attention needs Tq <= Tk (queries are the last Tq of the Tk positions); found {shapes}"),
        ));
    }
    if let Some(m) = key_valid {
        if m.len() != batch * tk {
            return Err(Error::shape(
                op,
                format!(
                    "key_valid has {} flags, expected B*Tk = {} for {shapes}",
                    m.len(),
                    batch * tk
                ),
            ));
        }
    }
    Ok(Dims {
        batch,
        tq,
        tk,
        hq,
        hkv,
        d,
        causal,
        scale: 1.0 / (d as f32).sqrt(),
    })
}
