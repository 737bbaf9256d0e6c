//! Losses: `cross_entropy` (fused with log-softmax) and `mse`. Forward and backward side by side.
//!
//! Cross-entropy follows Hugging Face / PyTorch semantics: rows whose target is -100 are ignored,
//! and the loss is the mean over the remaining rows. It is the language-model loss over a whole
//! vocabulary (e.g. 512 rows x 49152 logits), so it is fused and lean:
//! - forward: per row one max pass and one exp-sum pass (the row is in cache for the second),
//!   `loss_r = logsumexp(x_r) - x_r[t_r]`; it keeps only the logits (shared, not copied) and one
//!   log-sum-exp per row;
//! - backward: `dx_r = g / count * (softmax(x_r) - onehot(t_r))`, recomputing `softmax` from the
//!   saved log-sum-exp straight into the gradient buffer: the gradient is the only full-size
//!   allocation, and no log-softmax node is ever materialised.

use super::tape::{Tape, Var};
use crate::cpu::elementwise::exp_f32;
use crate::cpu::par::{new_vec_in_chunks, DisjointMut};
use crate::cpu::pool::parallel_for;
use crate::cpu::softmax::log_sum_exp;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::mem::MaybeUninit;

/// The target value that marks a row as ignored (Hugging Face's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Validates targets against (rows, vocab); returns the number of non-ignored rows.
fn count_targets(targets: &[i64], rows: usize, vocab: usize) -> Result<usize> {
    if targets.len() != rows {
        return Err(Error::shape(
            "cross_entropy",
            format!(
                "{} targets for {rows} rows of logits: one target per row",
                targets.len()
            ),
        ));
    }
    let mut count = 0;
    for &t in targets {
        if t == IGNORE_INDEX {
            continue;
        }
        if t < 0 || t as u64 >= vocab as u64 {
            return Err(Error::Index {
                op: "cross_entropy",
                index: t,
                bound: vocab,
            });
        }
        count += 1;
    }
    if rows == 0 {
        return Err(Error::shape(
            "cross_entropy",
            "logits have no rows: the mean loss over zero rows is undefined",
        ));
    }
    if count == 0 {
        return Err(Error::config(
            format!("cross_entropy: all {rows} targets are {IGNORE_INDEX} (ignored), so the mean loss over them is undefined"),
            "every row of this batch is masked out; make sure each batch has at least one \
             supervised token (check the label masking / truncation of the prompts)",
        ));
    }
    Ok(count)
}

impl Tape {
    /// Mean cross-entropy of `logits` (N, V) against `targets` (N), -100 = ignored row.
    /// Output shape `[1]`.
    pub fn cross_entropy(&mut self, logits: Var, targets: &[i64]) -> Result<Var> {
        let shape = self.shape(logits).to_vec();
        if shape.len() != 2 {
            return Err(Error::shape(
                "cross_entropy",
                format!("logits {shape:?}, expected (N, V)"),
            ));
        }
        let (rows, vocab) = (shape[0], shape[1]);
        let count = count_targets(targets, rows, vocab)?;
        let x = self.value(logits).clone();

        // One log-sum-exp per row (NaN for ignored rows: never read), rows in parallel; the
        // loss then sums the rows in order, so it does not depend on the thread count.
        let mut lse = vec![f32::NAN; rows];
        let mut total = 0.0f64;
        if vocab > 0 {
            let xs = x.data()?;
            {
                let lse_w = DisjointMut::new(&mut lse);
                parallel_for(rows, &|r| {
                    if targets[r] != IGNORE_INDEX {
                        // SAFETY: one cell per task.
                        unsafe {
                            lse_w.range(r..r + 1)[0] = log_sum_exp(&xs[r * vocab..][..vocab])
                        };
                    }
                });
            }
            for ((row, &t), &l) in xs.chunks_exact(vocab).zip(targets).zip(&lse) {
                if t != IGNORE_INDEX {
                    total += (l - row[t as usize]) as f64;
                }
            }
        }
        let loss = Tensor::scalar((total / count as f64) as f32);

        let targets = targets.to_vec();
        Ok(self.record("cross_entropy", loss, &[logits], move |g, _| {
            let scale = g.data()?[0] / count as f32;
            // (N, V); ignored rows are zero. Every row is written once by its task, so the
            // buffer is not zero-filled first (a serial pass over 100 MB for SmolLM2's head).
            let xs = x.data()?;
            let fill_row = |cols: std::ops::Range<usize>, drow: &mut [MaybeUninit<f32>]| {
                let r = cols.start / vocab; // one row per chunk
                let (t, l) = (targets[r], lse[r]);
                if t == IGNORE_INDEX {
                    drow.iter_mut().for_each(|d| {
                        d.write(0.0);
                    });
                    return;
                }
                for (d, &v) in drow.iter_mut().zip(&xs[cols]) {
                    d.write(scale * exp_f32(v - l));
                }
                drow[t as usize].write(scale * exp_f32(xs[r * vocab + t as usize] - l) - scale);
            };
            // SAFETY: `fill_row` writes every element of its row (none when vocab is 0).
            let dx = unsafe { new_vec_in_chunks(rows * vocab, vocab.max(1), fill_row) };
            Ok(vec![Some(Tensor::from_vec(dx, &[rows, vocab])?)])
        }))
    }

    /// Mean of squared differences `mean((a - b)^2)` over all elements, shape `[1]`.
    /// Both inputs get gradients: d/da = 2 (a - b) / n, d/db = -d/da.
    pub fn mse(&mut self, a: Var, b: Var) -> Result<Var> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa != sb {
            return Err(Error::shape(
                "mse",
                format!("a {sa:?} vs b {sb:?}: shapes must be equal"),
            ));
        }
        let n = self.value(a).numel();
        if n == 0 {
            return Err(Error::shape(
                "mse",
                format!("empty inputs {sa:?}: the mean is undefined"),
            ));
        }
        let (av, bv) = (self.value(a).clone(), self.value(b).clone());
        let total: f64 = av
            .data()?
            .iter()
            .zip(bv.data()?)
            .map(|(&x, &y)| ((x - y) as f64).powi(2))
            .sum();
        let loss = Tensor::scalar((total / n as f64) as f32);
        Ok(self.record("mse", loss, &[a, b], move |g, needs| {
            let scale = 2.0 * g.data()?[0] / n as f32;
            let diff = av.data()?.iter().zip(bv.data()?);
            let ga: Vec<f32> = diff.map(|(&x, &y)| scale * (x - y)).collect();
            let gb = if needs[1] {
                let neg: Vec<f32> = ga.iter().map(|v| -v).collect();
                Some(Tensor::from_vec(neg, av.shape())?)
            } else {
                None
            };
            let ga = if needs[0] {
                Some(Tensor::from_vec(ga, av.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }
}
