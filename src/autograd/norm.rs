//! Normalisation over the last axis: RMSNorm (Llama, Qwen2) and LayerNorm (SASRec).
//!
//! Both are fused: the forward pass makes one sweep per row and saves only one or two numbers per
//! row (the inverse RMS, or the mean and inverse standard deviation); the backward pass recomputes
//! the normalised row from the saved input instead of keeping a second (rows, D) tensor alive.
//!
//! Row loops are independent (one row in, one row out): RMSNorm splits them into fixed row ranges
//! on the thread pool; the weight gradient, which sums over rows, stays serial in row order.

use super::tape::{Tape, Var};
use crate::cpu::par::{new_vec_in_chunks, DisjointMut};
use crate::error::{Error, Result};

/// Rows per pool task of RMSNorm (a task of 32 rows x 576 is ~20 us of work).
const ROW_CHUNK: usize = 32;
use crate::tensor::Tensor;

impl Tape {
    /// RMSNorm as HF `LlamaRMSNorm`: `y = x / sqrt(mean(x^2) + eps) * weight` over the last axis.
    /// `x`: (..., D), `weight`: (D). Computed in f32 (HF upcasts to f32 too, so for f32 inputs the
    /// two agree operation for operation: normalise first, then multiply by the weight).
    pub fn rms_norm(&mut self, x: Var, weight: Var, eps: f32) -> Result<Var> {
        let d = check_norm_shapes("rms_norm", self.shape(x), &[("weight", self.shape(weight))])?;
        let (xt, wt) = (self.value(x).clone(), self.value(weight).clone());
        let (xs, ws) = (xt.data()?, wt.data()?);
        let rows = xt.rows();
        let mut inv_rms = vec![0.0f32; rows]; // (rows): 1 / sqrt(mean(x^2) + eps)
        let inv_w = DisjointMut::new(&mut inv_rms);
        // A task's chunk is whole rows of y (ROW_CHUNK * d elements); it writes every element.
        let fill_rows = |r: std::ops::Range<usize>, y: &mut [std::mem::MaybeUninit<f32>]| {
            let rs = r.start / d..r.end / d;
            // SAFETY: each task owns rows `rs` of inv_rms.
            let invs = unsafe { inv_w.range(rs.clone()) };
            for (i, (r, y_row)) in rs.zip(y.chunks_mut(d)).enumerate() {
                let xr = &xs[r * d..(r + 1) * d];
                let inv = 1.0 / (sum_of_squares(xr) / d as f32 + eps).sqrt();
                invs[i] = inv;
                for ((yi, &xi), &wi) in y_row.iter_mut().zip(xr).zip(ws) {
                    yi.write((xi * inv) * wi);
                }
            }
        };
        // SAFETY: `fill_rows` writes every element of its chunk. (y is (..., D).)
        let y = unsafe { new_vec_in_chunks(xs.len(), ROW_CHUNK * d.max(1), fill_rows) };
        let out = Tensor::from_vec(y, xt.shape())?;
        Ok(self.record("rms_norm", out, &[x, weight], move |g, needs| {
            rms_norm_backward(&xt, &wt, &inv_rms, g, needs)
        }))
    }

    /// LayerNorm as PyTorch `nn.LayerNorm(D)`: `y = (x - mean) / sqrt(var + eps) * weight + bias`
    /// over the last axis, with the biased variance (divide by D). `x`: (..., D), weight, bias: (D).
    pub fn layer_norm(&mut self, x: Var, weight: Var, bias: Var, eps: f32) -> Result<Var> {
        let d = check_norm_shapes(
            "layer_norm",
            self.shape(x),
            &[("weight", self.shape(weight)), ("bias", self.shape(bias))],
        )?;
        let (xt, wt) = (self.value(x).clone(), self.value(weight).clone());
        let (xs, ws, bs) = (xt.data()?, wt.data()?, self.value(bias).data()?);
        let rows = xt.rows();
        let mut y = vec![0.0f32; xs.len()]; // (..., D)
        let mut means = vec![0.0f32; rows]; // (rows)
        let mut inv_std = vec![0.0f32; rows]; // (rows): 1 / sqrt(var + eps)
        for r in 0..rows {
            let xr = &xs[r * d..(r + 1) * d];
            let (mean, inv) = mean_and_inv_std(xr, eps);
            means[r] = mean;
            inv_std[r] = inv;
            let yr = &mut y[r * d..(r + 1) * d];
            for (((yi, &xi), &wi), &bi) in yr.iter_mut().zip(xr).zip(ws).zip(bs) {
                *yi = (xi - mean) * inv * wi + bi;
            }
        }
        let out = Tensor::from_vec(y, xt.shape())?;
        Ok(
            self.record("layer_norm", out, &[x, weight, bias], move |g, needs| {
                layer_norm_backward(&xt, &wt, &means, &inv_std, g, needs)
            }),
        )
    }
}

/// Checks that x has a non-empty last axis D and every parameter is exactly (D); returns D.
fn check_norm_shapes(op: &'static str, x: &[usize], params: &[(&str, &[usize])]) -> Result<usize> {
    let Some(&d) = x.last() else {
        return Err(Error::shape(op, "x is a 0-d tensor; expected (..., D)"));
    };
    if d == 0 {
        return Err(Error::shape(op, format!("x {x:?} has an empty last axis")));
    }
    for (name, shape) in params {
        if *shape != [d] {
            return Err(Error::shape(
                op,
                format!("{name} must be [{d}] to match x {x:?}, found {shape:?}"),
            ));
        }
    }
    Ok(d)
}

/// RMSNorm backward. With `inv = 1/rms`, `gw = g * w`:
/// `dx = inv * gw - x * inv^3 * mean(x * gw)` and `dweight = sum_rows(g * x * inv)`.
fn rms_norm_backward(
    x: &Tensor,
    w: &Tensor,
    inv_rms: &[f32],
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (xs, ws, gs) = (x.data()?, w.data()?, g.data()?);
    let d = w.numel();
    let mut dw = needs[1].then(|| vec![0.0f32; d]); // (D)
                                                    // dx (..., D): rows are independent, parallel row ranges. SAFETY: each chunk is whole rows
                                                    // of dx, and every element of each row is written.
    let dx = needs[0].then(|| unsafe {
        new_vec_in_chunks(xs.len(), ROW_CHUNK * d.max(1), |r, dx| {
            for (row, dxr) in (r.start / d..r.end / d).zip(dx.chunks_mut(d)) {
                let inv = inv_rms[row];
                let (xr, gr) = (&xs[row * d..(row + 1) * d], &gs[row * d..(row + 1) * d]);
                let x_dot_gw: f32 = lanes_sum(d, |i| xr[i] * gr[i] * ws[i]);
                let c = inv * inv * inv * x_dot_gw / d as f32;
                for (((o, &xi), &gi), &wi) in dxr.iter_mut().zip(xr).zip(gr).zip(ws) {
                    o.write(inv * gi * wi - xi * c);
                }
            }
        })
    });
    // dweight sums over rows: kept serial, rows in order (the same bits with any thread count).
    for (r, &inv) in inv_rms.iter().enumerate() {
        let (xr, gr) = (&xs[r * d..(r + 1) * d], &gs[r * d..(r + 1) * d]);
        if let Some(dw) = dw.as_mut() {
            for ((o, &xi), &gi) in dw.iter_mut().zip(xr).zip(gr) {
                *o += gi * xi * inv;
            }
        }
    }
    Ok(vec![
        dx.map(|v| Tensor::from_vec(v, x.shape())).transpose()?,
        dw.map(|v| Tensor::from_vec(v, &[d])).transpose()?,
    ])
}

/// LayerNorm backward. With `xhat = (x - mean) * inv`, `gh = g * w`:
/// `dx = inv * (gh - mean(gh) - xhat * mean(gh * xhat))`, `dweight = sum_rows(g * xhat)`,
/// `dbias = sum_rows(g)`.
fn layer_norm_backward(
    x: &Tensor,
    w: &Tensor,
    means: &[f32],
    inv_std: &[f32],
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let (xs, ws, gs) = (x.data()?, w.data()?, g.data()?);
    let d = w.numel();
    let mut dx = needs[0].then(|| vec![0.0f32; xs.len()]); // (..., D)
    let mut dw = needs[1].then(|| vec![0.0f32; d]); // (D)
    let mut db = needs[2].then(|| vec![0.0f32; d]); // (D)
    for (r, (&mean, &inv)) in means.iter().zip(inv_std).enumerate() {
        let (xr, gr) = (&xs[r * d..(r + 1) * d], &gs[r * d..(r + 1) * d]);
        let xhat = |i: usize| (xr[i] - mean) * inv;
        if let Some(dx) = dx.as_mut() {
            let mean_gh = lanes_sum(d, |i| gr[i] * ws[i]) / d as f32;
            let mean_gh_xhat = lanes_sum(d, |i| gr[i] * ws[i] * xhat(i)) / d as f32;
            for (i, o) in dx[r * d..(r + 1) * d].iter_mut().enumerate() {
                *o = inv * (gr[i] * ws[i] - mean_gh - xhat(i) * mean_gh_xhat);
            }
        }
        if let Some(dw) = dw.as_mut() {
            for (i, o) in dw.iter_mut().enumerate() {
                *o += gr[i] * xhat(i);
            }
        }
        if let Some(db) = db.as_mut() {
            db.iter_mut().zip(gr).for_each(|(o, &gi)| *o += gi);
        }
    }
    let to_tensor =
        |v: Option<Vec<f32>>, shape: &[usize]| v.map(|v| Tensor::from_vec(v, shape)).transpose();
    Ok(vec![
        to_tensor(dx, x.shape())?,
        to_tensor(dw, &[d])?,
        to_tensor(db, &[d])?,
    ])
}

/// Mean and 1/sqrt(biased variance + eps) of one row, in two passes: subtracting the mean before
/// squaring avoids the cancellation of `E[x^2] - E[x]^2`, so f32 is enough.
fn mean_and_inv_std(xr: &[f32], eps: f32) -> (f32, f32) {
    let d = xr.len();
    let mean = lanes_sum(d, |i| xr[i]) / d as f32;
    let var = lanes_sum(d, |i| (xr[i] - mean) * (xr[i] - mean)) / d as f32;
    (mean, 1.0 / (var + eps).sqrt())
}

fn sum_of_squares(xr: &[f32]) -> f32 {
    lanes_sum(xr.len(), |i| xr[i] * xr[i])
}

/// `sum_{i < n} term(i)` with 8 independent partial sums, a fixed order the compiler can keep in
/// SIMD registers (a single running f32 sum must be added strictly in sequence).
#[inline(always)]
fn lanes_sum(n: usize, term: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0.0f32; 8];
    let full = n / 8 * 8;
    for base in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += term(base + l);
        }
    }
    for (l, i) in (full..n).enumerate() {
        acc[l] += term(i);
    }
    acc.iter().sum()
}
