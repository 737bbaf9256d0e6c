//! Inverted dropout: during training each element is zeroed with probability p and the survivors
//! are scaled by 1 / (1 - p), so the expected value of every element is unchanged and evaluation
//! needs no rescaling (it simply does not call dropout).
//!
//! The mask is drawn from the caller's seeded [`Rng`], one uniform number per element in element
//! order, so a seed fixes the mask bit for bit. It is saved (one byte per element) for backward,
//! whose gradient is `g * mask / (1 - p)`. [`DropoutMask`] is also what `lora_linear` drops its
//! adapter input with.
//!
//! Speed (LoRA puts a dropout on the input of every adapted projection: ~76 M elements per
//! SmolLM2 training step, where one serial stream of draws took longer than the adapters'
//! products): the mask is drawn in chunks of 2^14 draws on the pool, each chunk from the
//! stream's own state at its start ([`Jump`]), so it is the serial mask bit for bit; each draw
//! is compared as an integer ([`Rng::uniform_below_threshold`]); applying the mask, forward and
//! backward, is elementwise and runs in fixed chunks on the pool.

use super::tape::{Tape, Var};
use crate::cpu::par::{for_each_chunk, DisjointMut, CHUNK};
use crate::error::{Error, Result};
use crate::rng::{Jump, Rng};
use crate::tensor::Tensor;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// log2 of the draws per chunk of a mask: ~20 us of drawing per chunk, against ~1 us to jump
/// to its start.
const DRAW_CHUNK_LOG2: u32 = 14;

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

/// Which elements survive a dropout, and the factor 1 / (1 - p) that survivors are scaled by.
pub(super) struct DropoutMask {
    keep: Vec<bool>,
    keep_scale: f32,
}

impl DropoutMask {
    /// Draws the mask of `x` from `rng` and applies it: (the mask, `x * keep / (1 - p)`).
    /// Element i survives when the i-th draw `rng.uniform() >= p` (probability 1 - p), and
    /// `rng` ends where that many draws leave it. Drawn as integers against the same threshold,
    /// chunk by chunk in parallel, each chunk writing its decisions and values in one pass: the
    /// same decisions, bit for bit, as the serial loop.
    pub(super) fn draw_and_apply(p: f32, rng: &mut Rng, x: &Tensor) -> Result<(Self, Tensor)> {
        let src = x.data()?;
        let n = src.len();
        let drop_below = Rng::uniform_below_threshold(p);
        let keep_scale = 1.0 / (1.0 - p);
        let (mut keep, mut out) = (vec![false; n], vec![0.0f32; n]);
        let (keep_w, out_w) = (DisjointMut::new(&mut keep), DisjointMut::new(&mut out));
        for_each_draw_chunk(rng, n, |r, stream| {
            // SAFETY: chunks are disjoint.
            let (k, o) = unsafe { (keep_w.range(r.clone()), out_w.range(r.clone())) };
            for ((k, o), &v) in k.iter_mut().zip(o).zip(&src[r]) {
                *k = stream.next_u24() >= drop_below;
                *o = if *k { v * keep_scale } else { 0.0 };
            }
        });
        let mask = DropoutMask { keep, keep_scale };
        Ok((mask, Tensor::from_vec(out, x.shape())?))
    }

    /// `x * keep / (1 - p)` as a new tensor; forward and backward are the same map.
    pub(super) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = x.data()?.to_vec();
        self.apply_in_place(&mut out);
        Tensor::from_vec(out, x.shape())
    }

    /// `x = x * keep / (1 - p)`, elementwise in fixed chunks on the pool.
    pub(super) fn apply_in_place(&self, x: &mut [f32]) {
        assert_eq!(x.len(), self.keep.len(), "dropout mask and tensor sizes differ");
        let (keep, keep_scale) = (&self.keep, self.keep_scale);
        let n = x.len();
        let dst = DisjointMut::new(x);
        for_each_chunk(n, CHUNK, |r| {
            // SAFETY: chunks are disjoint.
            let x = unsafe { dst.range(r.clone()) };
            for (v, &k) in x.iter_mut().zip(&keep[r]) {
                *v = if k { *v * keep_scale } else { 0.0 };
            }
        });
    }
}

/// Runs `f(range, stream)` over consecutive chunks of `0..n` on the pool, `stream` standing at
/// draw `range.start` of `rng`'s stream (one jump per chunk from the start, in order), and
/// leaves `rng` after draw n, as n serial draws would.
fn for_each_draw_chunk(rng: &mut Rng, n: usize, f: impl Fn(Range<usize>, &mut Rng) + Sync) {
    static CHUNK_JUMP: OnceLock<Jump> = OnceLock::new();
    let jump = CHUNK_JUMP.get_or_init(|| Jump::steps_pow2(DRAW_CHUNK_LOG2));
    let chunk = 1usize << DRAW_CHUNK_LOG2;
    let starts: Vec<Rng> = std::iter::successors(Some(rng.clone()), |prev| {
        let mut next = prev.clone();
        jump.apply(&mut next);
        Some(next)
    })
    .take(n.div_ceil(chunk))
    .collect();
    let end = Mutex::new(None);
    for_each_chunk(n, chunk, |r| {
        let mut stream = starts[r.start / chunk].clone();
        let last = r.end == n;
        f(r, &mut stream);
        if last {
            *end.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream);
        }
    });
    if let Some(end) = end.into_inner().unwrap_or_else(|e| e.into_inner()) {
        *rng = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_drawn_in_chunks_is_the_serial_one_and_the_stream_ends_in_the_same_place() {
        let chunk = 1usize << DRAW_CHUNK_LOG2;
        for n in [0, 1, 1000, chunk, chunk + 1, 3 * chunk + 17] {
            let x = Tensor::randn(&[n], 1.0, &mut Rng::new(1));
            let mut rng = Rng::new(n as u64);
            let (mask, out) = DropoutMask::draw_and_apply(0.3, &mut rng, &x).unwrap();
            let mut serial = Rng::new(n as u64);
            let expected: Vec<bool> = (0..n).map(|_| serial.uniform() >= 0.3).collect();
            assert_eq!(mask.keep, expected, "n {n}");
            assert_eq!(rng.next_u64(), serial.next_u64(), "n {n}: stream end");
            let (kept, scale) = (x.data().unwrap().iter().zip(&expected), 1.0 / (1.0 - 0.3f32));
            let want: Vec<f32> = kept.map(|(&v, &k)| if k { v * scale } else { 0.0 }).collect();
            assert!(out.data().unwrap() == &want[..], "n {n}: values");
        }
    }
}
