//! Matrix products: `matmul` (2-D and batched 3-D, optional transposes) and `linear`
//! (`x . w^T + b`, the projection every transformer layer is made of). Forward and backward both
//! go through [`crate::cpu::gemm`]: transposes are passed as flags, never materialised.
//!
//! Backward of `C = op(A) . op(B)` with upstream gradient `G = dC`:
//! - `d op(A) = G . op(B)^T`, and `dA` is that (or its transpose when `op(A) = A^T`);
//! - `d op(B) = op(A)^T . G`, and `dB` is that (or its transpose when `op(B) = B^T`).
//!
//! Each case is one GEMM with suitably chosen flags: `(X^T)^T = X` turns every transpose of a
//! product into a product of (possibly transposed) stored matrices.

use super::tape::{Tape, Var};
use crate::cpu::gemm::{sgemm, sgemm_batched, sgemm_new};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::Cell;

thread_local! {
    /// Weight-gradient products (dW GEMMs) `linear`'s backward has run on this thread.
    static WEIGHT_GRAD_PRODUCTS: Cell<u64> = const { Cell::new(0) };
}

/// How many weight-gradient GEMMs `linear`'s backward has run on the calling thread so far. A
/// frozen weight (a parameter that is not trainable, e.g. a LoRA base) must not add to it: its
/// backward computes only the input gradient. Per thread, so concurrent tests do not mix.
pub fn weight_gradient_products() -> u64 {
    WEIGHT_GRAD_PRODUCTS.with(Cell::get)
}

/// Notes one weight-gradient GEMM on this thread's count.
pub(super) fn count_weight_gradient_product() {
    WEIGHT_GRAD_PRODUCTS.with(|c| c.set(c.get() + 1));
}

/// Sizes of a (batched) product `op(A)[m, k] . op(B)[k, n]`.
#[derive(Clone, Copy, Debug)]
struct MatmulDims {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
}

impl MatmulDims {
    /// Row length of A as stored: (m, k) or, transposed, (k, m).
    fn lda(&self) -> usize {
        if self.trans_a {
            self.m
        } else {
            self.k
        }
    }
    /// Row length of B as stored: (k, n) or, transposed, (n, k).
    fn ldb(&self) -> usize {
        if self.trans_b {
            self.k
        } else {
            self.n
        }
    }
}

fn matmul_dims(a: &[usize], b: &[usize], trans_a: bool, trans_b: bool) -> Result<MatmulDims> {
    let describe = || {
        format!(
            "a {a:?}{} . b {b:?}{}",
            if trans_a { "^T" } else { "" },
            if trans_b { "^T" } else { "" }
        )
    };
    if a.len() != b.len() || !(a.len() == 2 || a.len() == 3) {
        return Err(Error::shape(
            "matmul",
            format!(
                "{}: both operands must be 2-D (M,K)x(K,N) or both 3-D (B,M,K)x(B,K,N)",
                describe()
            ),
        ));
    }
    let r = a.len();
    let batch = if r == 3 { a[0] } else { 1 };
    if r == 3 && a[0] != b[0] {
        return Err(Error::shape(
            "matmul",
            format!("{}: batch sizes differ", describe()),
        ));
    }
    let (m, k) = if trans_a {
        (a[r - 1], a[r - 2])
    } else {
        (a[r - 2], a[r - 1])
    };
    let (k_b, n) = if trans_b {
        (b[r - 1], b[r - 2])
    } else {
        (b[r - 2], b[r - 1])
    };
    if k != k_b {
        return Err(Error::shape(
            "matmul",
            format!(
                "{}: inner sizes differ ({k} vs {k_b}) after transposes",
                describe()
            ),
        ));
    }
    Ok(MatmulDims {
        batch,
        m,
        k,
        n,
        trans_a,
        trans_b,
    })
}

impl Tape {
    /// `op(a) . op(b)` where `op` transposes the last two axes when its flag is set.
    /// 2-D: (M,K) x (K,N) -> (M,N). 3-D: (B,M,K) x (B,K,N) -> (B,M,N), one product per batch.
    pub fn matmul(&mut self, a: Var, b: Var, trans_a: bool, trans_b: bool) -> Result<Var> {
        let d = matmul_dims(self.shape(a), self.shape(b), trans_a, trans_b)?;
        let (av, bv) = (self.value(a).clone(), self.value(b).clone());
        let mut out_shape = self.shape(a).to_vec();
        let r = out_shape.len();
        out_shape[r - 2] = d.m;
        out_shape[r - 1] = d.n;
        // (batch, m, n)
        let mut out = vec![0.0f32; d.batch * d.m * d.n];
        #[rustfmt::skip]
        sgemm_batched(d.batch, trans_a, trans_b, d.m, d.n, d.k, 1.0,
            av.data()?, d.lda(), d.m * d.k, bv.data()?, d.ldb(), d.k * d.n,
            0.0, &mut out, d.n, d.m * d.n);
        let out = Tensor::from_vec(out, &out_shape)?;
        Ok(self.record("matmul", out, &[a, b], move |g, needs| {
            let ga = if needs[0] {
                Some(matmul_grad_a(&d, g.data()?, &bv, av.shape())?)
            } else {
                None
            };
            let gb = if needs[1] {
                Some(matmul_grad_b(&d, g.data()?, &av, bv.shape())?)
            } else {
                None
            };
            Ok(vec![ga, gb])
        }))
    }

    /// `x . w^T (+ bias)`: x is (..., K) of any rank >= 1, w is (N, K) as HF checkpoints store
    /// projection weights, bias is (N). Output (..., N). A w held in bf16 / f16 (a frozen base,
    /// see [`Tape::weight`]) is converted to f32 for the product and dropped after it: one
    /// matrix at a time, never the whole model.
    pub fn linear(&mut self, x: Var, w: Var, bias: Option<Var>) -> Result<Var> {
        let (dims, out_shape) = linear_dims(
            "linear",
            self.shape(x),
            self.shape(w),
            bias.map(|b| self.shape(b)),
        )?;
        let (xv, wv) = (self.value(x).clone(), self.value(w).clone());
        let out = linear_product(&xv, &wv, bias.map(|b| self.value(b)), dims)?;
        let out = Tensor::from_vec(out, &out_shape)?;

        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.record("linear", out, &inputs, move |g, needs| {
            linear_backward(g, needs, &xv, &wv, dims)
        }))
    }
}

/// (m, n, k) of `x (..., k) . w (n, k)^T (+ bias (n))` with m the product of x's leading axes,
/// and the output shape (..., n); an error names `op` and the shapes that do not fit.
pub(super) fn linear_dims(
    op: &'static str,
    x_shape: &[usize],
    w_shape: &[usize],
    bias_shape: Option<&[usize]>,
) -> Result<((usize, usize, usize), Vec<usize>)> {
    let k = *x_shape.last().unwrap_or(&0);
    if x_shape.is_empty() || w_shape.len() != 2 || w_shape[1] != k {
        return Err(Error::shape(
            op,
            format!("x {x_shape:?} (..., K) against weight {w_shape:?} (N, K)"),
        ));
    }
    let n = w_shape[0];
    if let Some(b) = bias_shape {
        if b != [n] {
            return Err(Error::shape(
                op,
                format!("bias {b:?}, expected [{n}] for weight {w_shape:?}"),
            ));
        }
    }
    let m: usize = x_shape[..x_shape.len() - 1].iter().product();
    let mut out_shape = x_shape.to_vec();
    *out_shape.last_mut().expect("rank >= 1 checked") = n;
    Ok(((m, n, k), out_shape))
}

/// The (m, n) values of `x . w^T (+ bias)` (shapes checked by [`linear_dims`]).
pub(super) fn linear_product(
    xv: &Tensor,
    wv: &Tensor,
    bias: Option<&Tensor>,
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>> {
    let w32 = wv.to_f32(); // a shared clone when w is f32
    let (x, w) = (xv.data()?, w32.data()?);
    let Some(b) = bias else {
        return Ok(sgemm_new(false, true, m, n, k, x, k, w, k));
    };
    // Start from the bias rows; beta = 1 adds the product on top.
    let mut out = b.data()?.repeat(m);
    sgemm(false, true, m, n, k, 1.0, x, k, w, k, 1.0, &mut out, n);
    Ok(out)
}

/// Backward of `linear` from `g = dY` (m, n): the gradients of x (its own shape, read as
/// (m, k)), of w (n, k) and, when a bias was given (`needs` then has three entries), of the
/// bias (n).
pub(super) fn linear_backward(
    g: &Tensor,
    needs: &[bool],
    xv: &Tensor,
    wv: &Tensor,
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<Option<Tensor>>> {
    let gd = g.data()?;
    let mut grads = Vec::with_capacity(3);
    // dX (m, k) = dY (m, n) . W (n, k); a half-precision W is converted for this product only.
    grads.push(if needs[0] {
        let w32 = wv.to_f32();
        let dx = sgemm_new(false, false, m, k, n, gd, n, w32.data()?, k);
        Some(Tensor::from_vec(dx, xv.shape())?)
    } else {
        None
    });
    // dW (n, k) = dY^T (n, m) . X (m, k); skipped for a frozen weight (needs[1] false).
    grads.push(if needs[1] {
        count_weight_gradient_product();
        let dw = sgemm_new(true, false, n, k, m, gd, n, xv.data()?, k);
        Some(Tensor::from_vec(dw, &[n, k])?)
    } else {
        None
    });
    // db (n) = column sums of dY
    if needs.len() == 3 {
        grads.push(if needs[2] {
            Some(Tensor::from_vec(column_sums(gd, n), &[n])?)
        } else {
            None
        });
    }
    Ok(grads)
}

/// dA for `C = op(A) . op(B)` given `G = dC` (batch, m, n). dA has A's stored shape.
fn matmul_grad_a(d: &MatmulDims, g: &[f32], b: &Tensor, a_shape: &[usize]) -> Result<Tensor> {
    let (bs, m, k, n) = (d.batch, d.m, d.k, d.n);
    let mut ga = vec![0.0f32; bs * m * k];
    let bd = b.data()?;
    if !d.trans_a {
        // dA (m, k) = G (m, n) . op(B)^T (n, k)
        #[rustfmt::skip]
        sgemm_batched(bs, false, !d.trans_b, m, k, n, 1.0, g, n, m * n, bd, d.ldb(), k * n,
            0.0, &mut ga, k, m * k);
    } else {
        // dA (k, m) = (G . op(B)^T)^T = op(B) (k, n) . G^T (n, m)
        #[rustfmt::skip]
        sgemm_batched(bs, d.trans_b, true, k, m, n, 1.0, bd, d.ldb(), k * n, g, n, m * n,
            0.0, &mut ga, m, m * k);
    }
    Tensor::from_vec(ga, a_shape)
}

/// dB for `C = op(A) . op(B)` given `G = dC` (batch, m, n). dB has B's stored shape.
fn matmul_grad_b(d: &MatmulDims, g: &[f32], a: &Tensor, b_shape: &[usize]) -> Result<Tensor> {
    let (bs, m, k, n) = (d.batch, d.m, d.k, d.n);
    let mut gb = vec![0.0f32; bs * k * n];
    let ad = a.data()?;
    if !d.trans_b {
        // dB (k, n) = op(A)^T (k, m) . G (m, n)
        #[rustfmt::skip]
        sgemm_batched(bs, !d.trans_a, false, k, n, m, 1.0, ad, d.lda(), m * k, g, n, m * n,
            0.0, &mut gb, n, k * n);
    } else {
        // dB (n, k) = (op(A)^T . G)^T = G^T (n, m) . op(A) (m, k)
        #[rustfmt::skip]
        sgemm_batched(bs, true, d.trans_a, n, k, m, 1.0, g, n, m * n, ad, d.lda(), m * k,
            0.0, &mut gb, k, k * n);
    }
    Tensor::from_vec(gb, b_shape)
}

/// Sums the rows of a (rows, cols) matrix: one accumulator row, rows added in order.
fn column_sums(data: &[f32], cols: usize) -> Vec<f32> {
    let mut acc = vec![0.0f32; cols];
    if cols == 0 {
        return acc;
    }
    for row in data.chunks_exact(cols) {
        acc.iter_mut().zip(row).for_each(|(a, r)| *a += r);
    }
    acc
}
