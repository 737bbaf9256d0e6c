//! Overwrite ops: a tensor with some of its rows (or columns) replaced by those of another.
//! They are how a few rows of a frozen matrix train (PEFT's `trainable_token_indices`): the
//! embedding output of an added token is replaced by a trainable row, and the LM head's logit
//! of that token by the product with a trainable row, while the frozen matrix itself gets no
//! gradient at all.
//!
//! - `overwrite_rows(base (N, D), src (n, D), rows)`: `out = base`, then `out[rows[j]] = src[j]`.
//! - `overwrite_columns(base (N, V), src (N, n), cols)`: `out = base`, then
//!   `out[:, cols[j]] = src[:, j]`.
//!
//! Backward: an overwritten entry of `base` no longer reaches the output, so its gradient is
//! zero; every other entry passes the gradient through. `src` receives the gradient of the
//! entries it wrote. Indices must be distinct (two writes to one place would leave the forward
//! ambiguous).

use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Checks that `idx` holds distinct values below `bound`.
fn check_distinct(op: &'static str, idx: &[usize], bound: usize) -> Result<()> {
    let mut seen = vec![false; bound];
    for &i in idx {
        if i >= bound {
            return Err(Error::Index {
                op,
                index: i as i64,
                bound,
            });
        }
        if std::mem::replace(&mut seen[i], true) {
            return Err(Error::shape(
                op,
                format!("index {i} is given twice (each place can be overwritten once)"),
            ));
        }
    }
    Ok(())
}

/// (rows, cols) of a 2-D shape, or an error naming `what`.
fn dims2(op: &'static str, what: &str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape {
        [r, c] => Ok((*r, *c)),
        _ => Err(Error::shape(op, format!("{what} {shape:?} must be 2-D"))),
    }
}

impl Tape {
    /// `base` (N, D) with row `rows[j]` replaced by row j of `src` (n, D), n = `rows.len()`.
    pub fn overwrite_rows(&mut self, base: Var, src: Var, rows: &[usize]) -> Result<Var> {
        let op = "overwrite_rows";
        let (n_rows, d) = dims2(op, "base", self.shape(base))?;
        let src_shape = [rows.len(), d];
        self.value(src).expect_shape(op, "src", &src_shape)?;
        check_distinct(op, rows, n_rows)?;
        let mut out = self.value(base).data()?.to_vec(); // (N, D)
        let s = self.value(src).data()?;
        for (j, &r) in rows.iter().enumerate() {
            out[r * d..(r + 1) * d].copy_from_slice(&s[j * d..(j + 1) * d]);
        }
        let out = Tensor::from_vec(out, &[n_rows, d])?;
        let rows = rows.to_vec();
        Ok(self.record(op, out, &[base, src], move |g, needs| {
            let gd = g.data()?;
            let g_base = if needs[0] {
                let mut gb = gd.to_vec();
                for &r in &rows {
                    gb[r * d..(r + 1) * d].fill(0.0);
                }
                Some(Tensor::from_vec(gb, &[n_rows, d])?)
            } else {
                None
            };
            // (n, D): row j is the gradient of the row it wrote.
            let g_src = if needs[1] {
                let rows_of_g = rows.iter().flat_map(|&r| gd[r * d..(r + 1) * d].iter());
                Some(Tensor::from_vec(rows_of_g.copied().collect(), &src_shape)?)
            } else {
                None
            };
            Ok(vec![g_base, g_src])
        }))
    }

    /// `base` (N, V) with column `cols[j]` replaced by column j of `src` (N, n), n = `cols.len()`.
    pub fn overwrite_columns(&mut self, base: Var, src: Var, cols: &[usize]) -> Result<Var> {
        let op = "overwrite_columns";
        let (n_rows, v) = dims2(op, "base", self.shape(base))?;
        let n = cols.len();
        self.value(src).expect_shape(op, "src", &[n_rows, n])?;
        check_distinct(op, cols, v)?;
        let mut out = self.value(base).data()?.to_vec(); // (N, V)
        let s = self.value(src).data()?;
        for i in 0..n_rows {
            for (j, &c) in cols.iter().enumerate() {
                out[i * v + c] = s[i * n + j];
            }
        }
        let out = Tensor::from_vec(out, &[n_rows, v])?;
        let cols = cols.to_vec();
        Ok(self.record(op, out, &[base, src], move |g, needs| {
            let gd = g.data()?;
            let g_base = if needs[0] {
                let mut gb = gd.to_vec();
                for i in 0..n_rows {
                    cols.iter().for_each(|&c| gb[i * v + c] = 0.0);
                }
                Some(Tensor::from_vec(gb, &[n_rows, v])?)
            } else {
                None
            };
            // (N, n): column j is the gradient of the column it wrote.
            let g_src = if needs[1] {
                let picked = (0..n_rows).flat_map(|i| cols.iter().map(move |&c| gd[i * v + c]));
                Some(Tensor::from_vec(picked.collect(), &[n_rows, n])?)
            } else {
                None
            };
            Ok(vec![g_base, g_src])
        }))
    }
}
