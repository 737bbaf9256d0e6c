//! Reductions: `sum` / `mean` over one axis (any axis of any rank), and `sum_all` / `mean_all`
//! over every element. Forward and backward side by side.
//!
//! A reduction over `axis` sees the tensor as (outer, len, inner): `outer` is the product of the
//! axes before `axis`, `inner` of those after. The output is (outer, inner); its backward
//! repeats each output gradient `len` times along the reduced axis. Rows of `inner` contiguous
//! elements are added as whole slices, so the inner loop is a vectorisable row add whatever the
//! axis.
//!
//! Reducing the only axis of a rank-1 tensor without keepdim gives shape [1] (the crate has no
//! 0-d tensors in practice), the same as `sum_all`.

use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// A reduction's view of the input: (outer, len, inner) plus the output shape.
#[derive(Clone, Debug)]
struct AxisView {
    outer: usize,
    len: usize,
    inner: usize,
    out_shape: Vec<usize>,
}

fn axis_view(op: &'static str, shape: &[usize], axis: usize, keepdim: bool) -> Result<AxisView> {
    if axis >= shape.len() {
        return Err(Error::shape(
            op,
            format!(
                "axis {axis} out of range for shape {shape:?} (rank {})",
                shape.len()
            ),
        ));
    }
    let mut out_shape = shape.to_vec();
    if keepdim {
        out_shape[axis] = 1;
    } else {
        out_shape.remove(axis);
        if out_shape.is_empty() {
            out_shape.push(1);
        }
    }
    Ok(AxisView {
        outer: shape[..axis].iter().product(),
        len: shape[axis],
        inner: shape[axis + 1..].iter().product(),
        out_shape,
    })
}

/// out[o, i] = scale * sum_j x[o, j, i]   (x seen as (outer, len, inner)).
fn sum_axis(x: &[f32], v: &AxisView, scale: f32) -> Vec<f32> {
    // (outer, inner)
    let mut out = vec![0.0f32; v.outer * v.inner];
    if v.inner == 0 || v.len == 0 {
        return out; // an empty sum is 0
    }
    for (acc, block) in out
        .chunks_exact_mut(v.inner)
        .zip(x.chunks_exact(v.len * v.inner))
    {
        for row in block.chunks_exact(v.inner) {
            acc.iter_mut().zip(row).for_each(|(a, r)| *a += r);
        }
        if scale != 1.0 {
            acc.iter_mut().for_each(|a| *a *= scale);
        }
    }
    out
}

/// gx[o, j, i] = scale * g[o, i]: each output gradient repeated along the reduced axis.
fn repeat_axis(g: &[f32], v: &AxisView, scale: f32) -> Vec<f32> {
    // (outer, len, inner)
    let mut gx = Vec::with_capacity(v.outer * v.len * v.inner);
    if v.inner == 0 {
        return gx;
    }
    for grow in g.chunks_exact(v.inner) {
        for _ in 0..v.len {
            gx.extend(grow.iter().map(|&x| x * scale));
        }
    }
    gx
}

impl Tape {
    /// Sum over `axis`; `keepdim` keeps it as size 1.
    pub fn sum(&mut self, a: Var, axis: usize, keepdim: bool) -> Result<Var> {
        self.reduce_axis("sum", a, axis, keepdim, false)
    }

    /// Mean over `axis`; errors when that axis is empty (the mean of nothing is undefined).
    pub fn mean(&mut self, a: Var, axis: usize, keepdim: bool) -> Result<Var> {
        self.reduce_axis("mean", a, axis, keepdim, true)
    }

    /// Sum of every element, shape `[1]`.
    pub fn sum_all(&mut self, a: Var) -> Result<Var> {
        self.reduce_all("sum_all", a, false)
    }

    /// Mean of every element, shape `[1]`; errors for an empty tensor.
    pub fn mean_all(&mut self, a: Var) -> Result<Var> {
        self.reduce_all("mean_all", a, true)
    }

    fn reduce_axis(
        &mut self,
        op: &'static str,
        a: Var,
        axis: usize,
        keepdim: bool,
        mean: bool,
    ) -> Result<Var> {
        let in_shape = self.shape(a).to_vec();
        let view = axis_view(op, &in_shape, axis, keepdim)?;
        if mean && view.len == 0 {
            return Err(Error::shape(
                op,
                format!("axis {axis} of shape {in_shape:?} is empty: its mean is undefined"),
            ));
        }
        let scale = if mean { 1.0 / view.len as f32 } else { 1.0 };
        let out = sum_axis(self.value(a).data()?, &view, scale);
        let out = Tensor::from_vec(out, &view.out_shape)?;
        Ok(self.record(op, out, &[a], move |g, _| {
            let gx = repeat_axis(g.data()?, &view, scale);
            Ok(vec![Some(Tensor::from_vec(gx, &in_shape)?)])
        }))
    }

    fn reduce_all(&mut self, op: &'static str, a: Var, mean: bool) -> Result<Var> {
        let x = self.value(a);
        let n = x.numel();
        if mean && n == 0 {
            return Err(Error::shape(
                op,
                format!("tensor {:?} is empty: its mean is undefined", x.shape()),
            ));
        }
        // A whole-tensor sum is typically a loss over many terms: accumulate in f64 so the result
        // does not depend on the element count's rounding drift (cheap: one pass, no temporaries).
        let total: f64 = x.data()?.iter().map(|&v| v as f64).sum();
        let scale = if mean { 1.0 / n as f64 } else { 1.0 };
        let out = Tensor::scalar((total * scale) as f32);
        let in_shape = x.shape().to_vec();
        Ok(self.record(op, out, &[a], move |g, _| {
            let gv = g.data()?[0] * scale as f32;
            Ok(vec![Some(Tensor::full(&in_shape, gv))])
        }))
    }
}
