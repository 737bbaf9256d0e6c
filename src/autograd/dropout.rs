//! Inverted dropout: during training each element is zeroed with probability p and the survivors
//! are scaled by 1 / (1 - p), so the expected value of every element is unchanged and evaluation
//! needs no rescaling (it simply does not call dropout).
//!
//! The mask is drawn from the caller's seeded [`Rng`], one uniform number per element in element
//! order, so a seed fixes the mask bit for bit. It is saved (one byte per element) for backward,
//! whose gradient is `g * mask / (1 - p)`.

use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

impl Tape {
    /// Inverted dropout with drop probability `p` in [0, 1). `p == 0` records a cheap identity
    /// (no copy, no random numbers drawn).
    pub fn dropout(&mut self, x: Var, p: f32, rng: &mut Rng) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(
                format!("dropout: probability p = {p} is outside [0, 1)"),
                "p is the fraction of elements dropped: 0 disables dropout, 0.1 is typical",
            ));
        }
        let xt = self.value(x);
        if p == 0.0 {
            let out = xt.clone(); // shares the storage
            return Ok(self.record("dropout", out, &[x], |g, _| Ok(vec![Some(g.clone())])));
        }
        let keep_scale = 1.0 / (1.0 - p);
        // uniform() < p drops, so an element survives with probability 1 - p.
        let keep: Vec<bool> = (0..xt.numel()).map(|_| rng.uniform() >= p).collect(); // (numel)
        let out = apply_mask(xt, &keep, keep_scale)?;
        Ok(self.record("dropout", out, &[x], move |g, _| {
            Ok(vec![Some(apply_mask(g, &keep, keep_scale)?)])
        }))
    }
}

/// `x * keep / (1 - p)`, elementwise; forward and backward are the same map.
fn apply_mask(x: &Tensor, keep: &[bool], keep_scale: f32) -> Result<Tensor> {
    let out = x
        .data()?
        .iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v * keep_scale } else { 0.0 })
        .collect();
    Tensor::from_vec(out, x.shape())
}
