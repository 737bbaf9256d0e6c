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
//! Layout and loops: the work is split by (sequence b, kv head g). Each such block copies its keys
//! and values into contiguous (Tk, D) buffers, then walks the query rows of the group's heads; all
//! inner loops are contiguous dot products or axpys over D, which the compiler vectorises. Blocks
//! are independent (each writes its own output rows and its own dK, dV block), so they can later
//! be spread over the thread pool.

use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The sizes of one attention call and the index arithmetic on its row-major tensors.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    scale: f32,
}

impl Dims {
    /// Query heads that share one kv head.
    fn group(&self) -> usize {
        self.hq / self.hkv
    }
    /// Offset of query (or output) row (b, i, head h) in a (B, Tq, Hq*D) tensor.
    fn q_offset(&self, b: usize, i: usize, h: usize) -> usize {
        ((b * self.tq + i) * self.hq + h) * self.d
    }
    /// Offset of key (or value) row (b, j, kv head g) in a (B, Tk, Hkv*D) tensor.
    fn kv_offset(&self, b: usize, j: usize, g: usize) -> usize {
        ((b * self.tk + j) * self.hkv + g) * self.d
    }
    /// Offset of the log-sum-exp of (b, h, i) in (B, Hq, Tq).
    fn lse_offset(&self, b: usize, h: usize, i: usize) -> usize {
        (b * self.hq + h) * self.tq + i
    }
    /// Keys 0..end are not hidden by the causal mask for query row i.
    fn visible_end(&self, i: usize) -> usize {
        if self.causal {
            self.tk - self.tq + i + 1
        } else {
            self.tk
        }
    }
}

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
        let (out, lse) = attention_forward(&dims, &qt, &kt, &vt, key_valid.as_deref())?;
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
            attention_backward(&dims, &saved, g, needs)
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

/// Returns the output (B, Tq, Hq*D) and the row log-sum-exp (B, Hq, Tq), -inf for empty rows.
fn attention_forward(
    dims: &Dims,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_valid: Option<&[bool]>,
) -> Result<(Tensor, Vec<f32>)> {
    let (qs, ks, vs) = (q.data()?, k.data()?, v.data()?);
    let Dims { tq, tk, d, .. } = *dims;
    let mut out = vec![0.0f32; qs.len()]; // (B, Tq, Hq*D)
    let mut lse = vec![f32::NEG_INFINITY; dims.batch * dims.hq * tq]; // (B, Hq, Tq)
    let mut k_block = vec![0.0f32; tk * d]; // (Tk, D) keys of one (b, kv head)
    let mut v_block = vec![0.0f32; tk * d]; // (Tk, D)
    let mut scores = vec![0.0f32; tk]; // (Tk) one query row's scores, then exp(score - max)
    let mut acc = vec![0.0f32; d]; // (D) one output row before normalisation
    for b in 0..dims.batch {
        let valid = key_valid.map(|m| &m[b * tk..(b + 1) * tk]);
        for g in 0..dims.hkv {
            gather_block(dims, ks, b, g, &mut k_block);
            gather_block(dims, vs, b, g, &mut v_block);
            for h in g * dims.group()..(g + 1) * dims.group() {
                for i in 0..tq {
                    let qo = dims.q_offset(b, i, h);
                    let row = RowInputs {
                        q: &qs[qo..qo + d],
                        k: &k_block,
                        v: &v_block,
                        end: dims.visible_end(i),
                        valid,
                    };
                    lse[dims.lse_offset(b, h, i)] =
                        attend_row(dims, &row, &mut scores, &mut acc, &mut out[qo..qo + d]);
                }
            }
        }
    }
    Ok((Tensor::from_vec(out, q.shape())?, lse))
}

/// What one query row attends over: its query, the (Tk, D) key and value blocks of its kv head,
/// the causal end of its visible keys and the padding flags of its sequence.
struct RowInputs<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    end: usize,
    valid: Option<&'a [bool]>,
}

impl RowInputs<'_> {
    fn sees(&self, j: usize) -> bool {
        self.valid.is_none_or(|m| m[j])
    }
}

/// softmax(q K^T * scale) V for one query row, written to `out_row`; returns the log-sum-exp of
/// the scaled scores (-inf, with a zero output, when the row sees no key).
fn attend_row(
    dims: &Dims,
    row: &RowInputs,
    scores: &mut [f32],
    acc: &mut [f32],
    out_row: &mut [f32],
) -> f32 {
    let d = dims.d;
    let mut max = f32::NEG_INFINITY;
    for (j, s) in scores[..row.end].iter_mut().enumerate() {
        *s = if row.sees(j) {
            dot(row.q, &row.k[j * d..(j + 1) * d]) * dims.scale
        } else {
            f32::NEG_INFINITY
        };
        max = max.max(*s);
    }
    if max == f32::NEG_INFINITY {
        out_row.fill(0.0);
        return f32::NEG_INFINITY;
    }
    // Numerically stable softmax: exp(s - max) <= 1; hidden keys give exp(-inf) = 0 and are
    // skipped in the weighted sum.
    acc.fill(0.0);
    let mut sum = 0.0f32;
    for (j, &s) in scores[..row.end].iter().enumerate() {
        if s == f32::NEG_INFINITY {
            continue;
        }
        let e = (s - max).exp();
        sum += e;
        axpy(e, &row.v[j * d..(j + 1) * d], acc);
    }
    let inv_sum = 1.0 / sum;
    for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
        *o = a * inv_sum;
    }
    max + sum.ln()
}

/// What backward reads: the forward inputs, output and row log-sum-exp.
struct Saved<'a> {
    q: &'a Tensor,
    k: &'a Tensor,
    v: &'a Tensor,
    out: &'a Tensor,
    lse: &'a [f32],
    key_valid: Option<&'a [bool]>,
}

/// Gradients of q, k, v (None for those not needed) from the output gradient `g`.
fn attention_backward(
    dims: &Dims,
    saved: &Saved,
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (qs, ks, vs) = (saved.q.data()?, saved.k.data()?, saved.v.data()?);
    let (outs, gs) = (saved.out.data()?, g.data()?);
    let Dims { tq, tk, d, .. } = *dims;
    let mut dq = vec![0.0f32; qs.len()]; // (B, Tq, Hq*D)
    let mut dk = vec![0.0f32; ks.len()]; // (B, Tk, Hkv*D)
    let mut dv = vec![0.0f32; vs.len()]; // (B, Tk, Hkv*D)
    let mut k_block = vec![0.0f32; tk * d]; // (Tk, D) keys of one (b, kv head)
    let mut v_block = vec![0.0f32; tk * d]; // (Tk, D)
    let mut dk_block = vec![0.0f32; tk * d]; // (Tk, D) summed over the group's query heads
    let mut dv_block = vec![0.0f32; tk * d]; // (Tk, D)
    for b in 0..dims.batch {
        let valid = saved.key_valid.map(|m| &m[b * tk..(b + 1) * tk]);
        for g in 0..dims.hkv {
            gather_block(dims, ks, b, g, &mut k_block);
            gather_block(dims, vs, b, g, &mut v_block);
            dk_block.fill(0.0);
            dv_block.fill(0.0);
            for h in g * dims.group()..(g + 1) * dims.group() {
                for i in 0..tq {
                    let lse = saved.lse[dims.lse_offset(b, h, i)];
                    if lse == f32::NEG_INFINITY {
                        continue; // a row that saw no key: zero output, zero gradients
                    }
                    let qo = dims.q_offset(b, i, h);
                    let row = RowInputs {
                        q: &qs[qo..qo + d],
                        k: &k_block,
                        v: &v_block,
                        end: dims.visible_end(i),
                        valid,
                    };
                    let grads = RowGrads {
                        d_out: &gs[qo..qo + d],
                        out: &outs[qo..qo + d],
                        dq: &mut dq[qo..qo + d],
                        dk: &mut dk_block,
                        dv: &mut dv_block,
                    };
                    backward_row(dims, &row, lse, grads);
                }
            }
            scatter_add_block(dims, &dk_block, b, g, &mut dk);
            scatter_add_block(dims, &dv_block, b, g, &mut dv);
        }
    }
    let pick = |need: bool, data: Vec<f32>, shape: &[usize]| -> Result<Option<Tensor>> {
        need.then(|| Tensor::from_vec(data, shape)).transpose()
    };
    Ok(vec![
        pick(needs[0], dq, saved.q.shape())?,
        pick(needs[1], dk, saved.k.shape())?,
        pick(needs[2], dv, saved.v.shape())?,
    ])
}

/// One query row's output gradient and forward output, and where its gradients go.
struct RowGrads<'a> {
    d_out: &'a [f32],
    out: &'a [f32],
    dq: &'a mut [f32],
    dk: &'a mut [f32],
    dv: &'a mut [f32],
}

/// Adds one query row's contributions to dq (its own row) and to the (Tk, D) dk, dv blocks.
fn backward_row(dims: &Dims, row: &RowInputs, lse: f32, grads: RowGrads) {
    let d = dims.d;
    // delta = sum_j p_j dP_j = dO . out, since out = sum_j p_j v_j.
    let delta = dot(grads.d_out, grads.out);
    for j in 0..row.end {
        if !row.sees(j) {
            continue;
        }
        let (kj, vj) = (&row.k[j * d..(j + 1) * d], &row.v[j * d..(j + 1) * d]);
        let p = (dot(row.q, kj) * dims.scale - lse).exp();
        let dp = dot(grads.d_out, vj);
        let ds_scaled = p * (dp - delta) * dims.scale;
        axpy(p, grads.d_out, &mut grads.dv[j * d..(j + 1) * d]);
        axpy(ds_scaled, kj, grads.dq);
        axpy(ds_scaled, row.q, &mut grads.dk[j * d..(j + 1) * d]);
    }
}

/// Copies kv head `g` of sequence `b` out of a (B, Tk, Hkv*D) tensor into a contiguous (Tk, D).
fn gather_block(dims: &Dims, src: &[f32], b: usize, g: usize, block: &mut [f32]) {
    let d = dims.d;
    for (j, dst) in block.chunks_exact_mut(d).enumerate() {
        let o = dims.kv_offset(b, j, g);
        dst.copy_from_slice(&src[o..o + d]);
    }
}

/// Adds a (Tk, D) block back into kv head `g` of sequence `b` of a (B, Tk, Hkv*D) tensor.
fn scatter_add_block(dims: &Dims, block: &[f32], b: usize, g: usize, dst: &mut [f32]) {
    let d = dims.d;
    for (j, src) in block.chunks_exact(d).enumerate() {
        let o = dims.kv_offset(b, j, g);
        axpy(1.0, src, &mut dst[o..o + d]);
    }
}

/// a . b with 8 independent partial sums: a fixed summation order that maps onto SIMD lanes
/// (one running sum would force strictly sequential adds).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_tail, b_tail) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in a_tail.iter().zip(b_tail) {
        tail += x * y;
    }
    lanes.iter().sum::<f32>() + tail
}

/// y += a * x.
#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}
