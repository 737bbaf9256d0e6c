//! Elementwise ops: add/sub/mul/div with broadcasting of the second operand, scale, and the
//! unary functions exp, log, sqrt, silu, gelu, relu. Forward and backward side by side.
//!
//! Broadcasting is deliberately narrow (what a transformer needs), the second operand `b` may be:
//! - the same shape as `a`;
//! - a row: shape `[C]` or `[1, C]` with `C = a.last_dim()` (a bias, a norm weight), repeated on every row;
//! - a column: shape `a.shape[..-1] + [1]` (a per-row statistic), repeated along the last axis;
//! - a scalar (one element).
//!
//! The output has `a`'s shape; `b`'s gradient is the output gradient summed over the repeats.

use super::tape::{Tape, Var};
use crate::cpu::elementwise as cpu;
use crate::cpu::par::{new_vec_in_chunks, new_vec_pair_in_chunks, CHUNK};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// How `b` is repeated to `a`'s shape.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Broadcast {
    Same,
    Row,
    Column,
    Scalar,
}

fn broadcast_kind(op: &'static str, a: &[usize], b: &[usize]) -> Result<Broadcast> {
    let a_last = *a.last().unwrap_or(&1);
    let b_numel: usize = b.iter().product();
    let a_rows: usize = a.iter().product::<usize>() / a_last.max(1);
    if a == b {
        Ok(Broadcast::Same)
    } else if b_numel == 1 {
        Ok(Broadcast::Scalar)
    } else if (b.len() == 1 || (b.len() == 2 && b[0] == 1)) && b[b.len() - 1] == a_last {
        Ok(Broadcast::Row)
    } else if b.len() == a.len()
        && b.last() == Some(&1)
        && b[..b.len() - 1] == a[..a.len() - 1]
        && b_numel == a_rows
    {
        Ok(Broadcast::Column)
    } else {
        Err(Error::shape(op, format!("cannot broadcast {b:?} to {a:?} (same shape, a row [C], a column [...,1] or a scalar)")))
    }
}

/// `f(a[i], b[bcast(i)])` for every element of `a`.
fn zip_broadcast(
    a: &Tensor,
    b: &Tensor,
    kind: Broadcast,
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Result<Tensor> {
    let (x, y) = (a.data()?, b.data()?);
    let cols = a.last_dim().max(1);
    let out: Vec<f32> = match kind {
        Broadcast::Same => zip_chunks(x, y, f),
        Broadcast::Scalar => x.iter().map(|&p| f(p, y[0])).collect(),
        Broadcast::Row => x
            .chunks(cols)
            .flat_map(|row| row.iter().zip(y).map(|(&p, &q)| f(p, q)))
            .collect::<Vec<_>>(),
        Broadcast::Column => x
            .chunks(cols)
            .zip(y)
            .flat_map(|(row, &q)| row.iter().map(move |&p| (p, q)))
            .map(|(p, q)| f(p, q))
            .collect(),
    };
    Tensor::from_vec(out, a.shape())
}

/// `f(x[i], y[i])` for every i, in fixed chunks on the pool (the residual adds of a decoder and
/// the adapter outputs of LoRA are megabytes each; elementwise, so the bits do not depend on the
/// thread count).
fn zip_chunks(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(
        x.len(),
        y.len(),
        "zip_chunks: operands of different lengths"
    );
    // SAFETY: the loop writes every slot of `o` (x and y are as long as the output).
    unsafe {
        new_vec_in_chunks(x.len(), CHUNK, |r, o| {
            for ((o, &p), &q) in o.iter_mut().zip(&x[r.clone()]).zip(&y[r]) {
                o.write(f(p, q));
            }
        })
    }
}

/// Sums a full-shape gradient back to `b`'s shape.
fn reduce_to(g: &Tensor, kind: Broadcast, b_shape: &[usize]) -> Result<Tensor> {
    let gd = g.data()?;
    let cols = g.last_dim().max(1);
    let out = match kind {
        Broadcast::Same => return Ok(g.clone()),
        Broadcast::Scalar => vec![gd.iter().sum::<f32>()],
        Broadcast::Row => {
            let mut acc = vec![0.0f32; cols];
            for row in gd.chunks(cols) {
                acc.iter_mut().zip(row).for_each(|(a, r)| *a += r);
            }
            acc
        }
        Broadcast::Column => gd.chunks(cols).map(|row| row.iter().sum()).collect(),
    };
    Tensor::from_vec(out, b_shape)
}

impl Tape {
    /// a + b (b broadcast).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let kind = broadcast_kind("add", self.shape(a), self.shape(b))?;
        let out = zip_broadcast(self.value(a), self.value(b), kind, |p, q| p + q)?;
        let b_shape = self.shape(b).to_vec();
        Ok(self.record("add", out, &[a, b], move |g, needs| {
            let gb = if needs[1] {
                Some(reduce_to(g, kind, &b_shape)?)
            } else {
                None
            };
            Ok(vec![Some(g.clone()), gb])
        }))
    }

    /// a - b (b broadcast).
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        let kind = broadcast_kind("sub", self.shape(a), self.shape(b))?;
        let out = zip_broadcast(self.value(a), self.value(b), kind, |p, q| p - q)?;
        let b_shape = self.shape(b).to_vec();
        Ok(self.record("sub", out, &[a, b], move |g, needs| {
            let gb = if needs[1] {
                Some(neg(&reduce_to(g, kind, &b_shape)?)?)
            } else {
                None
            };
            Ok(vec![Some(g.clone()), gb])
        }))
    }

    /// a * b (b broadcast).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        let kind = broadcast_kind("mul", self.shape(a), self.shape(b))?;
        let (x, y) = (self.value(a).clone(), self.value(b).clone());
        let out = zip_broadcast(&x, &y, kind, |p, q| p * q)?;
        Ok(self.record("mul", out, &[a, b], move |g, needs| {
            let ga = if needs[0] {
                Some(zip_broadcast(g, &y, kind, |gi, q| gi * q)?)
            } else {
                None
            };
            let gb = if needs[1] {
                let gx = zip_same(g, &x, |gi, p| gi * p)?;
                Some(reduce_to(&gx, kind, y.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// a / b (b broadcast).
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        let kind = broadcast_kind("div", self.shape(a), self.shape(b))?;
        let (x, y) = (self.value(a).clone(), self.value(b).clone());
        let out = zip_broadcast(&x, &y, kind, |p, q| p / q)?;
        let quotient = out.clone();
        Ok(self.record("div", out, &[a, b], move |g, needs| {
            let ga = if needs[0] {
                Some(zip_broadcast(g, &y, kind, |gi, q| gi / q)?)
            } else {
                None
            };
            let gb = if needs[1] {
                // d(a/b)/db = -(a/b)/b
                let gq = zip_same(g, &quotient, |gi, r| -gi * r)?;
                let gq_over_b = zip_broadcast(&gq, &y, kind, |v, q| v / q)?;
                Some(reduce_to(&gq_over_b, kind, y.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// s * a for a constant s.
    pub fn scale(&mut self, a: Var, s: f32) -> Result<Var> {
        let out = map(self.value(a), |x| s * x)?;
        Ok(self.record("scale", out, &[a], move |g, _| {
            Ok(vec![Some(map(g, |x| s * x)?)])
        }))
    }

    /// exp(a).
    pub fn exp(&mut self, a: Var) -> Result<Var> {
        self.unary("exp", a, f32::exp, |_, y| y)
    }

    /// ln(a); the gradient 1/a is infinite at 0, as it should be.
    pub fn log(&mut self, a: Var) -> Result<Var> {
        self.unary("log", a, f32::ln, |x, _| 1.0 / x)
    }

    /// sqrt(a).
    pub fn sqrt(&mut self, a: Var) -> Result<Var> {
        self.unary("sqrt", a, f32::sqrt, |_, y| 0.5 / y)
    }

    /// SiLU (swish): x * sigmoid(x), the Llama MLP's gate activation.
    pub fn silu(&mut self, a: Var) -> Result<Var> {
        self.unary("silu", a, silu, |x, _| {
            let s = sigmoid(x);
            s * (1.0 + x * (1.0 - s))
        })
    }

    /// SwiGLU: silu(gate) * up, fused (the Llama MLP's inner activation). One pass over both
    /// inputs, no SiLU temporary on the tape; forward and backward run in fixed chunks over the
    /// thread pool (bitwise independent of the thread count). Both inputs have the same shape.
    pub fn swiglu(&mut self, gate: Var, up: Var) -> Result<Var> {
        if self.shape(gate) != self.shape(up) {
            return Err(Error::shape(
                "swiglu",
                format!(
                    "gate {:?} and up {:?} must have the same shape",
                    self.shape(gate),
                    self.shape(up)
                ),
            ));
        }
        let (g_val, u_val) = (self.value(gate).clone(), self.value(up).clone());
        let (gs, us) = (g_val.data()?, u_val.data()?);
        // SAFETY: `swiglu_into` writes every element of its output. (Same shape as gate.)
        let out = unsafe {
            new_vec_in_chunks(gs.len(), CHUNK, |r, o| {
                cpu::swiglu_into(&gs[r.clone()], &us[r], o)
            })
        };
        let out = Tensor::from_vec(out, g_val.shape())?;
        Ok(self.record("swiglu", out, &[gate, up], move |g, needs| {
            let (gs, us, go) = (g_val.data()?, u_val.data()?, g.data()?);
            // SAFETY: `swiglu_backward_into` writes every element of each non-empty output.
            let (d_gate, d_up) = unsafe {
                new_vec_pair_in_chunks(gs.len(), CHUNK, (needs[0], needs[1]), |r, dg, du| {
                    cpu::swiglu_backward_into(&gs[r.clone()], &us[r.clone()], &go[r], dg, du)
                })
            };
            let wrap = |need: bool, v: Vec<f32>| -> Result<Option<Tensor>> {
                need.then(|| Tensor::from_vec(v, g_val.shape())).transpose()
            };
            Ok(vec![wrap(needs[0], d_gate)?, wrap(needs[1], d_up)?])
        }))
    }

    /// GELU, exact form x * Phi(x) with the normal CDF Phi (SASRec's FFN activation).
    pub fn gelu(&mut self, a: Var) -> Result<Var> {
        self.unary("gelu", a, gelu, |x, _| {
            let pdf = (-0.5 * x * x).exp() * 0.398_942_3; // 1/sqrt(2 pi)
            0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)) + x * pdf
        })
    }

    /// ReLU: max(x, 0); the gradient at exactly 0 is taken as 0.
    pub fn relu(&mut self, a: Var) -> Result<Var> {
        self.unary(
            "relu",
            a,
            |x| x.max(0.0),
            |x, _| if x > 0.0 { 1.0 } else { 0.0 },
        )
    }

    /// y = f(x) elementwise, dy/dx = df(x, y).
    fn unary(
        &mut self,
        op: &'static str,
        a: Var,
        f: fn(f32) -> f32,
        df: fn(f32, f32) -> f32,
    ) -> Result<Var> {
        let x = self.value(a).clone();
        let y = map(&x, f)?;
        let y_saved = y.clone();
        Ok(self.record(op, y, &[a], move |g, _| {
            let (xs, ys, gs) = (x.data()?, y_saved.data()?, g.data()?);
            let gx: Vec<f32> = xs
                .iter()
                .zip(ys)
                .zip(gs)
                .map(|((&x, &y), &g)| g * df(x, y))
                .collect();
            Ok(vec![Some(Tensor::from_vec(gx, x.shape())?)])
        }))
    }
}

pub fn sigmoid(x: f32) -> f32 {
    // Written so that neither branch overflows: exp of a non-positive number only.
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

pub fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf(x) to about 1e-7 absolute (Abramowitz & Stegun 7.1.26 is 1.5e-7; we use the
/// W. J. Cody-style rational form through f64 for headroom).
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    // Numerical Recipes' erfc Chebyshev fit, fractional error < 1.2e-7 everywhere.
    let poly = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    (if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }) as f32
}

fn map(a: &Tensor, f: impl Fn(f32) -> f32) -> Result<Tensor> {
    Tensor::from_vec(a.data()?.iter().map(|&x| f(x)).collect(), a.shape())
}

fn neg(a: &Tensor) -> Result<Tensor> {
    map(a, |x| -x)
}

fn zip_same(a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
    Tensor::from_vec(
        a.data()?
            .iter()
            .zip(b.data()?)
            .map(|(&p, &q)| f(p, q))
            .collect(),
        a.shape(),
    )
}
