//! Shape ops: `reshape` (no copy), `transpose` (materialised copy), `concat`, `split`,
//! `index_select` (rows along axis 0) and `gather_last` (k picks per row). Forward and backward
//! side by side.
//!
//! Every tensor is contiguous, so an axis-wise op views the tensor as (outer, len, inner), with
//! `outer` the product of the axes before the axis and `inner` of those after, and moves whole
//! `inner`-long runs with `copy_from_slice`.
//!
//! The gathers' backward is a scatter-add: a row (or element) picked twice receives the sum of
//! both gradients, which is what makes repeated indices correct.

use super::pieces::Placement;
use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis >= shape.len() {
        return Err(Error::shape(
            op,
            format!(
                "axis {axis} out of range for shape {shape:?} (rank {})",
                shape.len()
            ),
        ));
    }
    Ok(())
}

/// (outer, inner) products around `axis`.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis + 1..].iter().product(),
    )
}

/// Swaps axes d0 <= d1 of `x` (shape `shape`) into a new buffer.
/// x is seen as (outer, n0, mid, n1, inner); the output is (outer, n1, mid, n0, inner).
fn transpose_copy(x: &[f32], shape: &[usize], d0: usize, d1: usize) -> Vec<f32> {
    if d0 == d1 {
        return x.to_vec(); // swapping an axis with itself changes nothing
    }
    let (n0, n1) = (shape[d0], shape[d1]);
    let outer: usize = shape[..d0].iter().product();
    let mid: usize = shape[d0 + 1..d1].iter().product();
    let inner: usize = shape[d1 + 1..].iter().product();
    let mut out = Vec::with_capacity(x.len());
    for o in 0..outer {
        for j in 0..n1 {
            for m in 0..mid {
                for i in 0..n0 {
                    let src = (((o * n0 + i) * mid + m) * n1 + j) * inner;
                    out.extend_from_slice(&x[src..src + inner]);
                }
            }
        }
    }
    out
}

/// out[r] = rows[idx[r]] for rows of length `row_len`; indices must be checked by the caller.
pub(crate) fn gather_rows(
    rows: &[f32],
    row_len: usize,
    idx: impl Iterator<Item = usize>,
) -> Vec<f32> {
    let mut out = Vec::new();
    for i in idx {
        out.extend_from_slice(&rows[i * row_len..(i + 1) * row_len]);
    }
    out
}

impl Tape {
    /// The same data seen with a new shape (no copy); element counts must match.
    pub fn reshape(&mut self, a: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(a).reshape(shape)?;
        let in_shape = self.shape(a).to_vec();
        Ok(self.record("reshape", out, &[a], move |g, _| {
            Ok(vec![Some(g.reshape(&in_shape)?)])
        }))
    }

    /// Swaps axes `d0` and `d1` (any rank), materialising the result contiguously.
    pub fn transpose(&mut self, a: Var, d0: usize, d1: usize) -> Result<Var> {
        let shape = self.shape(a).to_vec();
        check_axis("transpose", &shape, d0)?;
        check_axis("transpose", &shape, d1)?;
        let (lo, hi) = (d0.min(d1), d0.max(d1));
        let mut out_shape = shape.clone();
        out_shape.swap(lo, hi);
        let out = transpose_copy(self.value(a).data()?, &shape, lo, hi);
        let out = Tensor::from_vec(out, &out_shape)?;
        Ok(self.record("transpose", out, &[a], move |g, _| {
            // The gradient of a swap is the same swap applied to the gradient.
            let gx = transpose_copy(g.data()?, &out_shape, lo, hi);
            Ok(vec![Some(Tensor::from_vec(gx, &shape)?)])
        }))
    }

    /// Joins tensors along `axis`; all other axes must agree.
    pub fn concat(&mut self, parts: &[Var], axis: usize) -> Result<Var> {
        let Some(&first) = parts.first() else {
            return Err(Error::shape("concat", "no tensors to concatenate"));
        };
        let base = self.shape(first).to_vec();
        check_axis("concat", &base, axis)?;
        let mut lens = Vec::with_capacity(parts.len());
        for &p in parts {
            let s = self.shape(p);
            let compatible = s.len() == base.len()
                && s.iter()
                    .zip(&base)
                    .enumerate()
                    .all(|(d, (x, y))| d == axis || x == y);
            if !compatible {
                return Err(Error::shape(
                    "concat",
                    format!("{s:?} does not fit {base:?} along axis {axis}: all other axes must be equal"),
                ));
            }
            lens.push(s[axis]);
        }
        let (outer, inner) = outer_inner(&base, axis);
        let mut out_shape = base.clone();
        out_shape[axis] = lens.iter().sum();
        let mut out = Vec::with_capacity(outer * out_shape[axis] * inner);
        for o in 0..outer {
            for (&p, &len) in parts.iter().zip(&lens) {
                let run = len * inner;
                out.extend_from_slice(&self.value(p).data()?[o * run..(o + 1) * run]);
            }
        }
        let out = Tensor::from_vec(out, &out_shape)?;
        Ok(self.record("concat", out, parts, move |g, needs| {
            let gd = g.data()?;
            let total_run: usize = lens.iter().sum::<usize>() * inner;
            let mut grads = Vec::with_capacity(lens.len());
            let mut offset = 0;
            for (p, &len) in lens.iter().enumerate() {
                let run = len * inner;
                if needs[p] {
                    let mut gp = Vec::with_capacity(outer * run);
                    for o in 0..outer {
                        let start = o * total_run + offset;
                        gp.extend_from_slice(&gd[start..start + run]);
                    }
                    let mut shape = base.clone();
                    shape[axis] = len;
                    grads.push(Some(Tensor::from_vec(gp, &shape)?));
                } else {
                    grads.push(None);
                }
                offset += run;
            }
            Ok(grads)
        }))
    }

    /// Cuts `a` along `axis` into consecutive pieces of the given sizes (which must add up to
    /// the axis length). Each piece is its own node. Along the outermost axis (every axis
    /// before it of size 1) a piece is one contiguous run of `a`, and the tape adds its
    /// gradient into that run of `a`'s gradient; otherwise its backward writes its gradient
    /// into a zero tensor of `a`'s shape, and the tape adds the pieces' contributions up.
    pub fn split(&mut self, a: Var, axis: usize, sizes: &[usize]) -> Result<Vec<Var>> {
        let shape = self.shape(a).to_vec();
        check_axis("split", &shape, axis)?;
        if sizes.iter().sum::<usize>() != shape[axis] {
            return Err(Error::shape(
                "split",
                format!(
                    "sizes {sizes:?} add up to {}, axis {axis} of {shape:?} has {}",
                    sizes.iter().sum::<usize>(),
                    shape[axis]
                ),
            ));
        }
        let (outer, inner) = outer_inner(&shape, axis);
        let total_run = shape[axis] * inner;
        let x = self.value(a).clone();
        let mut pieces = Vec::with_capacity(sizes.len());
        let mut offset = 0;
        for &len in sizes {
            let run = len * inner;
            let mut piece = Vec::with_capacity(outer * run);
            for o in 0..outer {
                let start = o * total_run + offset;
                piece.extend_from_slice(&x.data()?[start..start + run]);
            }
            let mut piece_shape = shape.clone();
            piece_shape[axis] = len;
            let piece = Tensor::from_vec(piece, &piece_shape)?;
            if outer == 1 {
                pieces.push(self.record_piece("split", piece, a, Placement::Run { offset }));
                offset += run;
                continue;
            }
            let full_shape = shape.clone();
            let var = self.record("split", piece, &[a], move |g, _| {
                let gd = g.data()?;
                let mut gx = vec![0.0f32; outer * total_run];
                for o in 0..outer {
                    let start = o * total_run + offset;
                    gx[start..start + run].copy_from_slice(&gd[o * run..(o + 1) * run]);
                }
                Ok(vec![Some(Tensor::from_vec(gx, &full_shape)?)])
            });
            pieces.push(var);
            offset += run;
        }
        Ok(pieces)
    }

    /// Rows `idx` of `a` along axis 0: a (R, ...) -> (idx.len(), ...). Repeats allowed.
    pub fn index_select(&mut self, a: Var, idx: &[usize]) -> Result<Var> {
        let shape = self.shape(a).to_vec();
        if shape.is_empty() {
            return Err(Error::shape(
                "index_select",
                "cannot select rows of a 0-d tensor",
            ));
        }
        let n_rows = shape[0];
        if let Some(&bad) = idx.iter().find(|&&i| i >= n_rows) {
            return Err(Error::Index {
                op: "index_select",
                index: bad as i64,
                bound: n_rows,
            });
        }
        let row_len: usize = shape[1..].iter().product();
        let out = gather_rows(self.value(a).data()?, row_len, idx.iter().copied());
        let mut out_shape = shape.clone();
        out_shape[0] = idx.len();
        let out = Tensor::from_vec(out, &out_shape)?;
        let rows = Placement::Rows(idx.to_vec());
        Ok(self.record_piece("index_select", out, a, rows))
    }

    /// Picks `k` entries per row: a (R, C), idx (R*k) -> (R, k), `out[r][j] = a[r][idx[r*k + j]]`.
    pub fn gather_last(&mut self, a: Var, idx: &[usize], k: usize) -> Result<Var> {
        let shape = self.shape(a).to_vec();
        if shape.len() != 2 || idx.len() != shape[0] * k {
            return Err(Error::shape(
                "gather_last",
                format!(
                    "a {shape:?} must be (R, C) and idx must hold R*k = R*{k} entries, it has {}",
                    idx.len()
                ),
            ));
        }
        let (rows, cols) = (shape[0], shape[1]);
        if let Some(&bad) = idx.iter().find(|&&i| i >= cols) {
            return Err(Error::Index {
                op: "gather_last",
                index: bad as i64,
                bound: cols,
            });
        }
        let x = self.value(a).data()?;
        // (R, k)
        let out: Vec<f32> = idx
            .iter()
            .enumerate()
            .map(|(e, &c)| x[(e / k) * cols + c])
            .collect();
        let out = Tensor::from_vec(out, &[rows, k])?;
        let idx = idx.to_vec();
        Ok(self.record("gather_last", out, &[a], move |g, _| {
            let mut gx = vec![0.0f32; rows * cols];
            for (e, (&c, &gv)) in idx.iter().zip(g.data()?).enumerate() {
                gx[(e / k) * cols + c] += gv;
            }
            Ok(vec![Some(Tensor::from_vec(gx, &[rows, cols])?)])
        }))
    }
}
