//! The dropout kernel: keep decisions drawn from a seeded stream and applied to values, in
//! parallel, with exactly the decisions of the serial loop
//! ```text
//! for i in 0..n { keep[i] = rng.uniform() >= p; out[i] = if keep[i] { x[i] / (1 - p) } else { 0 } }
//! ```
//! Why it needs care: LoRA drops the input of every adapted projection, ~76 M draws per SmolLM2
//! training step, and one stream is a serial chain (~1.4 ns a draw): the serial loop took longer
//! than the adapters' products. Three things make it fast and keep the bits:
//! - chunks: the mask is cut into chunks of 2^11 draws; each chunk's stream starts from the
//!   state the serial loop would be in there, reached by jumping ([`Jump`]: one jump per group
//!   of chunks on the calling thread, one per chunk inside its group's task);
//! - lanes: a task draws its group of [`LANES`] chunks side by side ([`Lanes`], in vector
//!   registers: ~0.3 ns a draw with AVX-512), a block of draws at a time, then writes each
//!   chunk's decisions and values;
//! - integers: `uniform() >= p` is `next_u24() >= ceil(p * 2^24)`, exactly
//!   ([`Rng::uniform_below_threshold`]).

use super::isa::Isa;
use super::par::{for_each_chunk, DisjointMut, CHUNK};
use super::pool::parallel_for;
use crate::rng::{Jump, Lanes, Rng, LANES};
use std::ops::Range;
use std::sync::OnceLock;

/// log2 of the draws per chunk. A group of LANES chunks (16,384 draws, ~20 us) is one pool task:
/// a (512, 576) mask is 18 tasks, enough for the pool to balance two threads when one of them
/// is slowed by another process; jumping to the chunks' starts (~0.5 us a jump) costs ~10%.
const CHUNK_LOG2: u32 = 11;

/// Draws per lane made in one go before they are used.
const BLOCK: usize = 64;

/// `(keep, out)` for values `x`: `keep[i]` = the i-th draw of `rng` (as `next_u24`) is at least
/// `drop_below`, `out[i] = x[i] * keep_scale` if kept, else 0. `rng` ends where `x.len()` draws
/// leave it.
pub fn draw_and_apply(
    rng: &mut Rng,
    drop_below: u64,
    keep_scale: f32,
    x: &[f32],
) -> (Vec<bool>, Vec<f32>) {
    let n = x.len();
    // Written once each below, so not zero-filled first (a pass over 300 MB a LoRA step).
    let (mut keep, mut out) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let keep_w = DisjointMut::new(&mut keep.spare_capacity_mut()[..n]);
    let out_w = DisjointMut::new(&mut out.spare_capacity_mut()[..n]);
    for_each_chunk_group(rng, n, |chunks, lanes| {
        let mut draws = [[0u64; LANES]; BLOCK];
        for offset in (0..chunks[0].len()).step_by(BLOCK) {
            next_block(lanes, &mut draws);
            for (l, chunk) in chunks.iter().enumerate() {
                let r = (chunk.start + offset).min(chunk.end)
                    ..(chunk.start + offset + BLOCK).min(chunk.end);
                // SAFETY: chunks are disjoint, and so are the blocks of one chunk.
                let (k, o) = unsafe { (keep_w.range(r.clone()), out_w.range(r.clone())) };
                for (i, ((k, o), &v)) in k.iter_mut().zip(o).zip(&x[r]).enumerate() {
                    let kept = draws[i][l] >= drop_below;
                    k.write(kept);
                    o.write(if kept { v * keep_scale } else { 0.0 });
                }
            }
        }
    });
    // SAFETY: the chunks cover 0..n, so every element of both was written above.
    unsafe {
        keep.set_len(n);
        out.set_len(n);
    }
    (keep, out)
}

/// `x[i] = x[i] * keep_scale` where `keep[i]`, else 0 (the backward of dropout), in fixed chunks
/// on the pool.
pub fn apply_mask(x: &mut [f32], keep: &[bool], keep_scale: f32) {
    assert_eq!(x.len(), keep.len(), "dropout mask and tensor sizes differ");
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

/// Runs `f(chunks, lanes)` on the pool for each group of up to [`LANES`] consecutive chunks of
/// `0..n`, lane l of `lanes` standing at draw `chunks[l].start` of `rng`'s stream; then moves
/// `rng` past draw n.
fn for_each_chunk_group(rng: &mut Rng, n: usize, f: impl Fn(&[Range<usize>], &mut Lanes) + Sync) {
    static JUMPS: OnceLock<(Jump, Jump)> = OnceLock::new();
    let (chunk_jump, group_jump) = JUMPS.get_or_init(|| {
        let log2_lanes = LANES.trailing_zeros();
        (
            Jump::steps_pow2(CHUNK_LOG2),
            Jump::steps_pow2(CHUNK_LOG2 + log2_lanes),
        )
    });
    let chunk = 1usize << CHUNK_LOG2;
    let group = chunk * LANES;
    // The state at the start of each group, in order (the only serial part).
    let group_starts: Vec<Rng> = std::iter::successors(Some(rng.clone()), |prev| {
        let mut next = prev.clone();
        group_jump.apply(&mut next);
        Some(next)
    })
    .take(n.div_ceil(group))
    .collect();
    parallel_for(group_starts.len(), &|g| {
        let chunks: Vec<Range<usize>> = (g * group..((g + 1) * group).min(n))
            .step_by(chunk)
            .map(|s| s..(s + chunk).min(n))
            .collect();
        let starts: Vec<Rng> = std::iter::successors(Some(group_starts[g].clone()), |prev| {
            let mut next = prev.clone();
            chunk_jump.apply(&mut next);
            Some(next)
        })
        .take(chunks.len())
        .collect();
        f(&chunks, &mut Lanes::new(&starts));
    });
    // Past draw n: the last group's start, a jump per full chunk in it, then the draws of a
    // partial last chunk one by one.
    if let Some(last) = group_starts.last() {
        let rest = n - (group_starts.len() - 1) * group; // 1..=group
        let mut end = last.clone();
        (0..rest / chunk).for_each(|_| chunk_jump.apply(&mut end));
        (0..rest % chunk).for_each(|_| {
            end.next_u64();
        });
        *rng = end;
    }
}

/// The next [`BLOCK`] draws of every lane, in the widest vector registers the CPU has (the same
/// integer steps whichever runs, so the same draws).
fn next_block(lanes: &mut Lanes, out: &mut [[u64; LANES]; BLOCK]) {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` reports AVX-512F only when the CPU has it.
        Isa::Avx512 => unsafe { next_block_avx512(lanes, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` reports AVX2 only when the CPU has it.
        Isa::Avx2 => unsafe { next_block_avx2(lanes, out) },
        _ => next_block_portable(lanes, out),
    }
}

#[inline(always)]
fn next_block_portable(lanes: &mut Lanes, out: &mut [[u64; LANES]; BLOCK]) {
    lanes.fill_u24(out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn next_block_avx512(lanes: &mut Lanes, out: &mut [[u64; LANES]; BLOCK]) {
    next_block_portable(lanes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn next_block_avx2(lanes: &mut Lanes, out: &mut [[u64; LANES]; BLOCK]) {
    next_block_portable(lanes, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunked_draws_are_the_serial_ones_and_the_stream_ends_in_the_same_place() {
        let (chunk, group) = (1 << CHUNK_LOG2, LANES << CHUNK_LOG2);
        let sizes = [
            0,
            1,
            1000,
            chunk,
            chunk + 1,
            3 * chunk + 17,
            group,
            2 * group + chunk + 5,
        ];
        let drop_below = Rng::uniform_below_threshold(0.3);
        for n in sizes {
            let x: Vec<f32> = (0..n).map(|i| i as f32 - 7.5).collect();
            let mut rng = Rng::new(n as u64);
            let (keep, out) = draw_and_apply(&mut rng, drop_below, 2.0, &x);
            let mut serial = Rng::new(n as u64);
            let expected: Vec<bool> = (0..n).map(|_| serial.uniform() >= 0.3).collect();
            assert_eq!(keep, expected, "n {n}");
            assert_eq!(rng.next_u64(), serial.next_u64(), "n {n}: stream end");
            let want: Vec<f32> = x
                .iter()
                .zip(&expected)
                .map(|(&v, &k)| if k { v * 2.0 } else { 0.0 })
                .collect();
            assert!(out == want, "n {n}: values");
        }
    }
}
