//! `softmax` and `log_softmax` over the last axis. Forward and backward side by side.
//!
//! Stability: every row is shifted by its maximum before `exp`, so the largest exponent is
//! `exp(0) = 1` and nothing overflows whatever the logits' scale (a shift of 1e4 changes nothing).
//!
//! Backward, with `y` the output and `g` its gradient, per row:
//! - softmax:     dx = y * (g - sum(g * y))
//! - log_softmax: dx = g - softmax(x) * sum(g),  where softmax(x) = exp(y)
//!
//! The row kernels (max, sum, log-sum-exp, softmax of one row) are in `cpu/softmax.rs`; the fused
//! cross-entropy and the ILRec objective use the same ones.

use super::tape::{Tape, Var};
use crate::cpu::elementwise::exp_f32;
use crate::cpu::softmax::{log_sum_exp, row_dot, row_sum, softmax_row};
use crate::error::Result;
use crate::tensor::Tensor;

/// Applies `f(input_row, output_row)` to every row of a (rows, cols) layout.
fn map_rows(x: &Tensor, f: impl Fn(&[f32], &mut [f32])) -> Result<Tensor> {
    let cols = x.last_dim();
    let mut out = vec![0.0f32; x.numel()];
    if cols > 0 {
        for (row, o) in x.data()?.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
            f(row, o);
        }
    }
    Tensor::from_vec(out, x.shape())
}

/// Applies `f(a_row, b_row, out_row)` to every row of two same-shape (rows, cols) tensors.
fn zip_rows(a: &Tensor, b: &Tensor, f: impl Fn(&[f32], &[f32], &mut [f32])) -> Result<Tensor> {
    let cols = a.last_dim();
    let mut out = vec![0.0f32; a.numel()];
    if cols > 0 {
        let rows = a
            .data()?
            .chunks_exact(cols)
            .zip(b.data()?.chunks_exact(cols));
        for ((ra, rb), o) in rows.zip(out.chunks_exact_mut(cols)) {
            f(ra, rb, o);
        }
    }
    Tensor::from_vec(out, a.shape())
}

impl Tape {
    /// Softmax over the last axis.
    pub fn softmax(&mut self, a: Var) -> Result<Var> {
        let y = map_rows(self.value(a), softmax_row)?;
        let y_saved = y.clone();
        Ok(self.record("softmax", y, &[a], move |g, _| {
            // dx = y * (g - sum(g * y))
            let gx = zip_rows(g, &y_saved, |gr, yr, o| {
                let dot = row_dot(gr, yr);
                for ((o, &g), &y) in o.iter_mut().zip(gr).zip(yr) {
                    *o = y * (g - dot);
                }
            })?;
            Ok(vec![Some(gx)])
        }))
    }

    /// log(softmax(x)) over the last axis, computed as x - logsumexp(x) (never log of 0).
    pub fn log_softmax(&mut self, a: Var) -> Result<Var> {
        let y = map_rows(self.value(a), |row, o| {
            let lse = log_sum_exp(row);
            o.iter_mut().zip(row).for_each(|(o, &v)| *o = v - lse);
        })?;
        let y_saved = y.clone();
        Ok(self.record("log_softmax", y, &[a], move |g, _| {
            // dx = g - exp(y) * sum(g)
            let gx = zip_rows(g, &y_saved, |gr, yr, o| {
                let total = row_sum(gr);
                for ((o, &g), &y) in o.iter_mut().zip(gr).zip(yr) {
                    *o = g - exp_f32(y) * total;
                }
            })?;
            Ok(vec![Some(gx)])
        }))
    }
}
