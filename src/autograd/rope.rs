//! Rotary position embedding (RoPE) with HF's `rotate_half` convention (Llama, Qwen2).
//!
//! Within each head of width D, element i and element i + D/2 form a pair that is rotated by the
//! angle `pos * inv_freq[i]`, `inv_freq[i] = theta^(-2i/D)`:
//! ```text
//! out[i]       = x[i]       cos - x[i + D/2] sin
//! out[i + D/2] = x[i + D/2] cos + x[i]       sin
//! ```
//! A rotation is orthogonal, so the backward pass is the inverse rotation (the same with -sin).
//! Positions are passed explicitly, which is how decoding with a KV cache offsets new tokens.

use super::tape::{Tape, Var};
use crate::cpu::par::new_vec_in_chunks;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::Arc;

/// Rows (tokens) per pool task.
const ROW_CHUNK: usize = 32;

/// cos and sin of every (position row, frequency) pair, each (position rows, D/2), and the
/// positions and frequencies they were made from.
struct RopeTable {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
    positions: Vec<usize>,
    inv_freq: Vec<f32>,
}

thread_local! {
    /// The last table this thread built. A forward pass rotates q and k of every block at the
    /// same positions (60 calls in a SmolLM2 step), and each table costs T x D/2 pairs of libm
    /// cos and sin (~0.1 ms at T = 128, D = 64: ~7 ms a step when rebuilt for every call).
    static LAST_TABLE: RefCell<Option<Arc<RopeTable>>> = const { RefCell::new(None) };
}

/// The table of `positions` x `inv_freq`: the last one if it was made from the same (frequencies
/// compared bit for bit), else a new one, which then becomes the last.
fn table_for(positions: &[usize], inv_freq: &[f32]) -> Arc<RopeTable> {
    LAST_TABLE.with(|last| {
        let mut last = last.borrow_mut();
        let same = last.as_ref().is_some_and(|t| {
            t.positions == positions
                && t.inv_freq.len() == inv_freq.len()
                && t.inv_freq
                    .iter()
                    .zip(inv_freq)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
        });
        if !same {
            *last = Some(Arc::new(RopeTable::new(positions, inv_freq)));
        }
        Arc::clone(last.as_ref().expect("set above"))
    })
}

/// HF's default inverse frequencies of a head of width `head_dim`, in f32 as PyTorch computes
/// them: `inv_freq[i] = 1 / theta^(2i / D)`, i < D/2. Scaled RoPE variants (Llama 3.1's, linear)
/// start from these (see `model::rope_scaling`).
pub fn default_inv_freq(head_dim: usize, theta: f32) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
        .collect()
}

impl RopeTable {
    /// `angle = pos * inv_freq` in f32, then cos and sin of the f32 angle, as HF does, so that
    /// logits match PyTorch.
    fn new(positions: &[usize], inv_freq: &[f32]) -> RopeTable {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half); // (position rows, D/2)
        let mut sin = Vec::with_capacity(positions.len() * half); // (position rows, D/2)
        for &p in positions {
            for &f in inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        RopeTable {
            cos,
            sin,
            half,
            positions: positions.to_vec(),
            inv_freq: inv_freq.to_vec(),
        }
    }
}

impl Tape {
    /// RoPE on `x`: (B, T, H*D) with H = `n_heads`, D = `head_dim` (even). `positions` has
    /// length T (shared by every sequence of the batch) or B*T (one position per token, e.g. left
    /// padding or a KV-cache offset per sequence). `theta` is the config's `rope_theta`; plain
    /// (unscaled) frequencies, see [`default_inv_freq`].
    pub fn rope(
        &mut self,
        x: Var,
        n_heads: usize,
        head_dim: usize,
        positions: &[usize],
        theta: f32,
    ) -> Result<Var> {
        if !(theta > 0.0 && theta.is_finite()) {
            return Err(Error::config(
                format!("rope: theta must be a positive finite number, got {theta}"),
                "use the model config's rope_theta (e.g. 10000)",
            ));
        }
        let inv_freq = default_inv_freq(head_dim, theta);
        self.rope_with_inv_freq(x, n_heads, head_dim, positions, &inv_freq)
    }

    /// RoPE with given inverse frequencies (D/2 of them, one per rotated pair): what scaled
    /// variants use. Same layout and positions as [`Tape::rope`].
    pub fn rope_with_inv_freq(
        &mut self,
        x: Var,
        n_heads: usize,
        head_dim: usize,
        positions: &[usize],
        inv_freq: &[f32],
    ) -> Result<Var> {
        let (batch, seq) = check_rope_args(self.shape(x), n_heads, head_dim, positions, inv_freq)?;
        let table = table_for(positions, inv_freq);
        // Row r = b * T + t of x uses position row r when positions are per token, t otherwise.
        let per_token = positions.len() == batch * seq && batch > 1;
        let xt = self.value(x);
        let out = rotate(xt, &table, seq, per_token, 1.0)?;
        Ok(self.record("rope", out, &[x], move |g, _| {
            Ok(vec![Some(rotate(g, &table, seq, per_token, -1.0)?)])
        }))
    }
}

/// Rotates every head of every row by its angle; `sin_sign = -1` rotates backwards (the inverse,
/// which is also the transpose, hence the gradient).
fn rotate(
    x: &Tensor,
    table: &RopeTable,
    seq: usize,
    per_token: bool,
    sin_sign: f32,
) -> Result<Tensor> {
    let xs = x.data()?;
    let width = x.last_dim();
    if width == 0 {
        return Tensor::from_vec(Vec::new(), x.shape());
    }
    // Rows are independent: fixed row ranges on the pool. SAFETY: `rotate_rows` writes every
    // element of its rows (each head's two halves; the width is heads x head_dim, checked).
    let out = unsafe {
        new_vec_in_chunks(xs.len(), ROW_CHUNK * width, |r, out| {
            let first_row = r.start / width;
            rotate_rows(
                &xs[r], out, first_row, width, table, seq, per_token, sin_sign,
            );
        })
    }; // (B, T, H*D)
    Tensor::from_vec(out, x.shape())
}

/// Rotates rows `first..` (`xs`, `out`: whole rows of `width`) of a (B, T, H*D) tensor.
#[allow(clippy::too_many_arguments)]
fn rotate_rows(
    xs: &[f32],
    out: &mut [MaybeUninit<f32>],
    first: usize,
    width: usize,
    table: &RopeTable,
    seq: usize,
    per_token: bool,
    sin_sign: f32,
) {
    let half = table.half;
    for (i, (xr, or)) in xs.chunks(width).zip(out.chunks_mut(width)).enumerate() {
        let r = first + i;
        let p = if per_token { r } else { r % seq };
        let cos = &table.cos[p * half..(p + 1) * half];
        let sin = &table.sin[p * half..(p + 1) * half];
        for (xh, oh) in xr.chunks(2 * half).zip(or.chunks_mut(2 * half)) {
            let (x1, x2) = xh.split_at(half);
            let (o1, o2) = oh.split_at_mut(half);
            for i in 0..half {
                let (c, s) = (cos[i], sin_sign * sin[i]);
                o1[i].write(x1[i] * c - x2[i] * s);
                o2[i].write(x2[i] * c + x1[i] * s);
            }
        }
    }
}

/// Validates the arguments of `rope`; returns (B, T).
fn check_rope_args(
    shape: &[usize],
    n_heads: usize,
    head_dim: usize,
    positions: &[usize],
    inv_freq: &[f32],
) -> Result<(usize, usize)> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(Error::shape(
            "rope",
            format!("head_dim must be even and positive (pairs i, i + D/2), got {head_dim}"),
        ));
    }
    if shape.len() != 3 || shape[2] != n_heads * head_dim {
        return Err(Error::shape(
            "rope",
            format!(
                "x must be (B, T, n_heads * head_dim) = (B, T, {n_heads} * {head_dim}), found {shape:?}"
            ),
        ));
    }
    let (batch, seq) = (shape[0], shape[1]);
    if positions.len() != seq && positions.len() != batch * seq {
        return Err(Error::shape(
            "rope",
            format!(
                "positions has {} entries; expected T = {seq} (shared by the batch) or B*T = {} \
                 for x {shape:?}",
                positions.len(),
                batch * seq
            ),
        ));
    }
    if inv_freq.len() != head_dim / 2 || inv_freq.iter().any(|f| !f.is_finite()) {
        return Err(Error::shape(
            "rope",
            format!(
                "need head_dim / 2 = {} finite inverse frequencies, got {}",
                head_dim / 2,
                inv_freq.len()
            ),
        ));
    }
    Ok((batch, seq))
}
