//! Inverted dropout: during training each element is zeroed with probability p and the survivors
//! are scaled by 1 / (1 - p), so the expected value of every element is unchanged and evaluation
//! needs no rescaling (it simply does not call dropout).
//!
//! The mask is drawn from the caller's seeded [`Rng`], one uniform number per element in element
//! order, so a seed fixes the mask bit for bit. It is saved (one bit per element) for backward,
//! whose gradient is `g * mask / (1 - p)`. [`DropoutMask`] is also what `lora_linear` drops its
//! adapter input with.
//!
//! Drawing and applying the mask are `cpu::dropout`'s kernels (in parallel, the serial loop's
//! decisions bit for bit).

use super::tape::{Tape, Var};
use crate::cpu::dropout::{draw_and_apply, draw_mask, masked};
use crate::cpu::thin::Keep;
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

impl Tape {
    /// Inverted dropout with drop probability `p` in [0, 1). `p == 0` records a cheap identity
    /// (no copy, no random numbers drawn).
    pub fn dropout(&mut self, x: Var, p: f32, rng: &mut Rng) -> Result<Var> {
        check_probability(p)?;
        let xt = self.value(x);
        if p == 0.0 {
            let out = xt.clone(); // shares the storage
            return Ok(self.record("dropout", out, &[x], |g, _| Ok(vec![Some(g.clone())])));
        }
        let (mask, out) = DropoutMask::draw_and_apply(p, rng, xt)?;
        Ok(self.record("dropout", out, &[x], move |g, _| {
            Ok(vec![Some(mask.apply(g)?)])
        }))
    }
}

/// An error unless `p` is a drop probability in [0, 1).
pub(super) fn check_probability(p: f32) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        return Ok(());
    }
    Err(Error::config(
        format!("dropout: probability p = {p} is outside [0, 1)"),
        "p is the fraction of elements dropped: 0 disables dropout, 0.1 is typical",
    ))
}

/// Which elements survive a dropout (bit i % 64 of word i / 64: 9.5 MB for the ~76 M inputs
/// LoRA drops in a SmolLM2 step), and the factor 1 / (1 - p) that survivors are scaled by.
pub(super) struct DropoutMask {
    keep: Vec<u64>,
    keep_scale: f32,
}

impl DropoutMask {
    /// Draws the mask of `x` from `rng` and applies it: (the mask, `x * keep / (1 - p)`).
    /// Element i survives when the i-th draw `rng.uniform() >= p` (probability 1 - p), and
    /// `rng` ends where that many draws leave it.
    pub(super) fn draw_and_apply(p: f32, rng: &mut Rng, x: &Tensor) -> Result<(Self, Tensor)> {
        let keep_scale = 1.0 / (1.0 - p);
        let drop_below = Rng::uniform_below_threshold(p);
        let (keep, out) = draw_and_apply(rng, drop_below, keep_scale, x.data()?);
        let mask = DropoutMask { keep, keep_scale };
        Ok((mask, Tensor::from_vec(out, x.shape())?))
    }

    /// Draws the mask of `len` values from `rng` without applying it (the same mask and the
    /// same `rng` afterwards as [`DropoutMask::draw_and_apply`]).
    pub(super) fn draw(p: f32, rng: &mut Rng, len: usize) -> Self {
        let keep_scale = 1.0 / (1.0 - p);
        let keep = draw_mask(rng, Rng::uniform_below_threshold(p), len);
        DropoutMask { keep, keep_scale }
    }

    /// `x * keep / (1 - p)` as a new tensor; forward and backward are the same map.
    pub(super) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let out = masked(x.data()?, &self.keep, self.keep_scale);
        Tensor::from_vec(out, x.shape())
    }

    /// The mask over a tensor whose rows are `row_len` long, for kernels that apply it to the
    /// values they write (`cpu::thin::expand`).
    pub(super) fn keep(&self, row_len: usize) -> Keep<'_> {
        Keep {
            bits: &self.keep,
            row_len,
            scale: self.keep_scale,
        }
    }
}
