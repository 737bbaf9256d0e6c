//! The LoRA projection as one op: a frozen `x W^T (+ bias)` plus a trainable low-rank update,
//! ```text
//! y = x W^T (+ bias) + scale * dropout(x) A^T B^T        x (m, k), W (n, k), A (r, k), B (n, r)
//! ```
//! Backward, from `g = dy` (m, n), with `xd = dropout(x)` and `hs = scale * xd A^T` (m, r):
//! ```text
//! dB = g^T hs                    (n, r)
//! dh = scale * g B               (m, r)
//! dA = dh^T xd                   (r, k)
//! dx = g W + dropout'(dh A)      (m, k)   dropout' = the same mask and 1 / (1 - p)
//! ```
//! and W gets no gradient when it is frozen (the usual case: `linear_backward` skips its
//! weight-gradient GEMM).
//!
//! Why one op and not dropout + linear + scale + linear + add on the tape (the same arithmetic,
//! which is how this was first written): those five nodes kept four (m, k) or (m, n) tensors
//! per projection alive until the end of the step (the dropped input, the update, the frozen
//! output and the sum), and spent a pass over memory on each. Here the update is added onto the
//! frozen output by the product itself, so the step keeps only the output and the dropout mask.
//! The dropped input `xd` is never written: the products that read it (x A^T and dA) read x
//! through the mask (one bit per element, 1/32 of xd's size), which gives the same values.
//!
//! Why not `sgemm` for the six adapter products: each has a side only r wide, and the blocked
//! GEMM packs the other, big operand ((m, k) or (m, n)) to do only r multiply-adds per packed
//! element; `cpu::thin` reads it where it lies (through the dropout mask where it is x, and
//! applies the mask to dx as it writes it). It forms every sum as `sgemm` does, so the results
//! are the same bits as with `sgemm` on a written-out xd.
//!
//! x's gradient is one tensor: the frozen path's `g W` comes out of the GEMM, and the adapter's
//! masked `dh A` is added onto it as the thin product writes it. (It was two entries that the
//! tape added into x's gradient one after the other, the order the five separate nodes gave:
//! that cost a zero-filled (m, k) buffer and a pass over it per projection. With one consumer
//! of x the sum is the same one addition, so the same bits; with several (q, k and v share
//! their input) x's running gradient now gets each projection's whole dx in one addition
//! instead of its two parts in two, a different rounding.)

use super::dropout::{check_probability, DropoutMask};
use super::linalg::{count_weight_gradient_product, linear_backward, linear_dims, linear_product};
use super::tape::{Tape, Var};
use crate::cpu::isa::Isa;
use crate::cpu::thin::{expand, project, reduce, Keep};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// The low-rank part of a [`Tape::lora_linear`]: A (r, k) and B (n, r) on the tape, the factor
/// on the update, and the dropout on its input (probability and the generator of the mask;
/// None in evaluation).
pub struct LowRankUpdate<'a> {
    pub a: Var,
    pub b: Var,
    pub scale: f32,
    pub dropout: Option<(f32, &'a mut Rng)>,
}

/// Sizes of one LoRA projection: m rows, n outputs, k inputs, rank r.
#[derive(Clone, Copy)]
struct Dims {
    m: usize,
    n: usize,
    k: usize,
    r: usize,
}

/// What the backward keeps from the forward.
struct Saved {
    x: Tensor,
    w: Tensor,
    a: Tensor,
    b: Tensor,
    /// The dropout mask of x; None when there is no dropout (xd = x).
    mask: Option<DropoutMask>,
    /// `hs = scale * xd A^T` (m, r).
    hs: Vec<f32>,
    scale: f32,
    dims: Dims,
}

impl Saved {
    /// xd (m, k) as the thin products read it: x and, with dropout, the mask.
    fn xd(&self) -> Result<(&[f32], usize, Option<Keep<'_>>)> {
        let k = self.dims.k;
        Ok((
            self.x.data()?,
            k,
            self.mask.as_ref().map(|mask| mask.keep(k)),
        ))
    }
}

impl Tape {
    /// `x W^T (+ bias) + scale * dropout(x) A^T B^T`: x (..., k), w (n, k), bias (n), A (r, k),
    /// B (n, r); output (..., n). A frozen half-precision w is converted one product at a time,
    /// as in [`Tape::linear`].
    pub fn lora_linear(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        update: LowRankUpdate<'_>,
    ) -> Result<Var> {
        let bias_shape = bias.map(|b| self.shape(b));
        let ((m, n, k), out_shape) =
            linear_dims("lora_linear", self.shape(x), self.shape(w), bias_shape)?;
        let r = self.low_rank(update.a, update.b, n, k)?;
        let dims = Dims { m, n, k, r };
        let x_value = self.value(x).clone();
        let mask = match update.dropout {
            Some((p, rng)) => {
                check_probability(p)?;
                (p > 0.0).then(|| DropoutMask::draw(p, rng, m * k))
            }
            None => None,
        };
        let mut saved = Saved {
            x: x_value,
            w: self.value(w).clone(),
            a: self.value(update.a).clone(),
            b: self.value(update.b).clone(),
            mask,
            hs: Vec::new(),
            scale: update.scale,
            dims,
        };
        let bias_value = bias.map(|b| self.value(b));
        // The thin product first, while x (just written by the layer before) is in cache: the
        // frozen product streams W through it.
        saved.hs = scaled_down_projection(&saved)?; // (m, r)
        let mut out = linear_product(&saved.x, &saved.w, bias_value, (m, n, k))?; // (m, n)
        add_up_projection(&saved, &mut out)?;
        let out = Tensor::from_vec(out, &out_shape)?;

        let mut inputs = vec![x, w, update.a, update.b];
        inputs.extend(bias);
        Ok(self.record("lora_linear", out, &inputs, move |g, needs| {
            lora_linear_backward(g, needs, &saved)
        }))
    }

    /// The rank r of factors A (r, k) and B (n, r) for a weight (n, k); an error otherwise.
    fn low_rank(&self, a: Var, b: Var, n: usize, k: usize) -> Result<usize> {
        let (a_shape, b_shape) = (self.shape(a), self.shape(b));
        match (a_shape, b_shape) {
            ([r, ka], [nb, rb]) if *ka == k && *nb == n && rb == r => Ok(*r),
            _ => Err(Error::shape(
                "lora_linear",
                format!(
                    "A {a_shape:?} (r, {k}) and B {b_shape:?} ({n}, r) for a weight ({n}, {k})"
                ),
            )),
        }
    }
}

/// `hs = scale * xd A^T` (m, r).
fn scaled_down_projection(s: &Saved) -> Result<Vec<f32>> {
    let Dims { m, k, r, .. } = s.dims;
    let a_t = transpose(s.a.data()?, r, k); // (k, r)
    let mut hs = vec![0.0f32; m * r];
    project(Isa::detect(), (m, k, r), s.xd()?, &a_t, r, &mut hs, r);
    // Scaling the r-wide intermediate costs r per row instead of n per row; the product is the
    // same (PEFT scales the output: equal up to rounding).
    hs.iter_mut().for_each(|v| *v *= s.scale);
    Ok(hs)
}

/// `out += hs B^T` (m, n): `expand` adds the finished product, the same bits as a separate sum.
fn add_up_projection(s: &Saved, out: &mut [f32]) -> Result<()> {
    let Dims { m, n, r, .. } = s.dims;
    let b_t = transpose(s.b.data()?, n, r); // (r, n)
    #[rustfmt::skip]
    expand(Isa::detect(), (m, n, r), &s.hs, r, &b_t, n, true, None, out, n);
    Ok(())
}

/// The (cols, rows) transpose of a small row-major (rows, cols) matrix (a LoRA factor or dB).
///
/// Column by column, each a strided walk down v. It runs on the calling thread while the pool
/// waits, three times per projection (A^T, B^T, dB): the form it replaced, one element of the
/// output at a time with a division and a remainder for its source index, took ~1.6 ns an
/// element, ~12 ms of a SmolLM2 LoRA step (7.4 M elements); this one 0.3-0.45 ns.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    debug_assert_eq!(v.len(), rows * cols);
    let mut out = Vec::with_capacity(rows * cols);
    for c in 0..cols {
        out.extend(v.iter().skip(c).step_by(cols)); // column c: rows values
    }
    out
}

/// Gradients in input order: x, W, A, B (and the bias).
fn lora_linear_backward(g: &Tensor, needs: &[bool], s: &Saved) -> Result<Vec<Option<Tensor>>> {
    let Dims { m, n, k, r } = s.dims;
    let gd = g.data()?;
    let (need_x, need_a, need_b) = (needs[0], needs[2], needs[3]);
    // The thin products that read g first, while it is in cache (the frozen product below
    // streams W through it).
    let db = need_b.then(|| up_projection_grad(gd, s)).transpose()?;
    // dh (m, r), the gradient of the adapter's intermediate.
    let dh = (need_x || need_a).then(|| hidden_grad(gd, s)).transpose()?;

    // The frozen path: dx = g W, and W's (and the bias's) own gradients if they train.
    let mut base_needs = vec![need_x, needs[1]];
    base_needs.extend(needs.get(4));
    let mut base = linear_backward(g, &base_needs, &s.x, &s.w, (m, n, k))?.into_iter();
    let (mut dx, dw) = (base.next().flatten(), base.next().flatten());
    let mut da = None;
    if let Some(dh) = &dh {
        if need_a {
            // dA = dh^T xd (r, k)
            count_weight_gradient_product();
            let mut grad = vec![0.0f32; r * k];
            reduce(Isa::detect(), (m, k, r), dh, r, s.xd()?, &mut grad, k);
            da = Some(Tensor::from_vec(grad, &[r, k])?);
        }
        if let Some(dx) = dx.as_mut() {
            // dx += dropout'(dh A) (m, k), the mask applied to the product before it is added
            let keep = s.mask.as_ref().map(|mask| mask.keep(k));
            #[rustfmt::skip]
            expand(Isa::detect(), (m, k, r), dh, r, s.a.data()?, k, true, keep, dx.data_mut()?, k);
        }
    }
    let mut grads = vec![dx, dw, da, db];
    grads.extend(base.next());
    Ok(grads)
}

/// dh = scale * g B (m, r): the gradient of the adapter's r-wide intermediate.
fn hidden_grad(gd: &[f32], s: &Saved) -> Result<Vec<f32>> {
    let Dims { m, n, r, .. } = s.dims;
    let mut dh = vec![0.0f32; m * r];
    project(
        Isa::detect(),
        (m, n, r),
        (gd, n, None),
        s.b.data()?,
        r,
        &mut dh,
        r,
    );
    dh.iter_mut().for_each(|v| *v *= s.scale);
    Ok(dh)
}

/// dB = g^T hs (n, r), formed as its transpose hs^T g (r, n) (the big operand g streamed once)
/// and transposed.
fn up_projection_grad(gd: &[f32], s: &Saved) -> Result<Tensor> {
    let Dims { m, n, r, .. } = s.dims;
    count_weight_gradient_product();
    let mut db_t = vec![0.0f32; r * n];
    reduce(
        Isa::detect(),
        (m, n, r),
        &s.hs,
        r,
        (gd, n, None),
        &mut db_t,
        n,
    );
    Tensor::from_vec(transpose(&db_t, r, n), &[n, r])
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_puts_element_r_c_at_c_r() {
        for (rows, cols) in [(1, 1), (3, 5), (16, 7), (5, 16), (0, 4), (4, 0)] {
            let v: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let t = transpose(&v, rows, cols);
            assert_eq!(t.len(), rows * cols, "({rows}, {cols})");
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r],
                        v[r * cols + c],
                        "({rows}, {cols}) at ({r}, {c})"
                    );
                }
            }
        }
    }
}
