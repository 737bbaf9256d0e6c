//! Finite-difference gradient checking, used by the tests of every op.
//!
//! For an op `out = f(x_1, ..., x_n)` and a random upstream gradient `R`, the scalar
//! `s = sum(out * R)` has `ds/dx = backward(R)`. We compare that analytic gradient with the central
//! difference `(s(x + eps e_i) - s(x - eps e_i)) / (2 eps)` on a sample of coordinates.
//!
//! Everything runs in f32 (the kernels are f32), with `s` summed in f64. With inputs of order 1 and
//! eps = 1e-2 the truncation error is O(eps^2 |f'''|) ~ 1e-4 and the rounding error
//! O(1e-7 |s| / eps) ~ 1e-5 times the output size, so a tolerance of 2e-3 absolute + 2e-2
//! relative separates correct gradients from wrong ones (a wrong gradient is off by O(1)).

use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Settings of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheck {
    pub eps: f32,
    pub abs_tol: f32,
    pub rel_tol: f32,
    /// Coordinates checked per input (all of them if the input is smaller).
    pub samples_per_input: usize,
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-2,
            abs_tol: 2e-3,
            rel_tol: 2e-2,
            samples_per_input: 48,
            seed: 0,
        }
    }
}

impl GradCheck {
    /// Checks the gradient of `f` with respect to every input in `inputs` whose flag is true.
    /// Returns the worst (|analytic - numeric|, tolerance) seen, or an error describing the first
    /// coordinate out of tolerance.
    pub fn run(
        &self,
        inputs: &[(Tensor, bool)],
        f: impl Fn(&mut Tape, &[Var]) -> Result<Var>,
    ) -> Result<f32> {
        let mut rng = Rng::new(self.seed ^ 0x5eed);
        let mut tape = Tape::new();
        let vars: Vec<Var> = inputs
            .iter()
            .map(|(t, rg)| tape.leaf(t.clone(), *rg))
            .collect();
        let out = f(&mut tape, &vars)?;
        let upstream = Tensor::randn(tape.shape(out), 1.0, &mut rng);
        let grads = tape.backward_from(out, upstream.clone())?;
        let mut worst = 0.0f32;
        for (k, (x, rg)) in inputs.iter().enumerate() {
            if !rg {
                continue;
            }
            let analytic = grads
                .of(vars[k])
                .cloned()
                .unwrap_or_else(|| Tensor::zeros(x.shape()));
            for i in sample_coords(x.numel(), self.samples_per_input, &mut rng) {
                let numeric = self.central_difference(inputs, k, i, &upstream, &f)?;
                let a = analytic.to_vec()[i];
                let err = (a - numeric).abs();
                let tol = self.abs_tol + self.rel_tol * numeric.abs().max(a.abs());
                // Written so that a NaN error fails the check too.
                if err.is_nan() || tol.is_nan() || err > tol {
                    return Err(Error::Autograd(format!(
                        "gradcheck: input {k} coordinate {i}: analytic {a} vs numeric {numeric} (err {err}, tol {tol})"
                    )));
                }
                worst = worst.max(err / tol);
            }
        }
        Ok(worst)
    }

    fn central_difference(
        &self,
        inputs: &[(Tensor, bool)],
        k: usize,
        i: usize,
        upstream: &Tensor,
        f: &impl Fn(&mut Tape, &[Var]) -> Result<Var>,
    ) -> Result<f32> {
        let mut s = [0.0f64; 2];
        for (j, sign) in [1.0f32, -1.0].into_iter().enumerate() {
            let mut tape = Tape::inference();
            let vars: Vec<Var> = inputs
                .iter()
                .enumerate()
                .map(|(m, (t, _))| {
                    let mut t = t.clone();
                    if m == k {
                        t.data_mut().expect("f32 input")[i] += sign * self.eps;
                    }
                    tape.leaf(t, false)
                })
                .collect();
            let out = f(&mut tape, &vars)?;
            s[j] = tape
                .value(out)
                .data()?
                .iter()
                .zip(upstream.data()?)
                .map(|(&o, &r)| o as f64 * r as f64)
                .sum();
        }
        Ok(((s[0] - s[1]) / (2.0 * self.eps as f64)) as f32)
    }
}

/// Up to `n` distinct coordinates of `0..numel`, always including the first and the last.
fn sample_coords(numel: usize, n: usize, rng: &mut Rng) -> Vec<usize> {
    if numel <= n {
        return (0..numel).collect();
    }
    let mut picked = vec![0, numel - 1];
    while picked.len() < n {
        let c = rng.below(numel);
        if !picked.contains(&c) {
            picked.push(c);
        }
    }
    picked
}
