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
//!   registers: ~0.35 ns a draw on one thread with AVX-512), a block of draws at a time, then
//!   writes each chunk's decisions and values;
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

/// `(keep, out)` for values `x`: bit i of the mask `keep` (bit i % 64 of word i / 64) = the
/// i-th draw of `rng` (as `next_u24`) is at least `drop_below`, and `out[i] = x[i] *
/// keep_scale` if kept, else 0. `rng` ends where `x.len()` draws leave it.
pub fn draw_and_apply(
    rng: &mut Rng,
    drop_below: u64,
    keep_scale: f32,
    x: &[f32],
) -> (Vec<u64>, Vec<f32>) {
    let n = x.len();
    let mut keep = vec![0u64; n.div_ceil(64)];
    // Written once below, so not zero-filled first (a pass over 300 MB a LoRA step).
    let mut out = Vec::with_capacity(n);
    let keep_w = DisjointMut::new(&mut keep);
    let out_w = DisjointMut::new(&mut out.spare_capacity_mut()[..n]);
    for_each_chunk_group(rng, n, |chunks, lanes| {
        for offset in (0..chunks[0].len()).step_by(BLOCK) {
            let words = next_keep_words(lanes, drop_below);
            for (chunk, &bits) in chunks.iter().zip(&words) {
                let r = (chunk.start + offset).min(chunk.end)
                    ..(chunk.start + offset + BLOCK).min(chunk.end);
                if r.is_empty() {
                    continue;
                }
                // SAFETY: chunks are disjoint, and so are the blocks of one chunk; a block is
                // 64 draws starting at a multiple of 64, so it owns one mask word.
                let (word, o) = unsafe {
                    (
                        keep_w.range(r.start / 64..r.start / 64 + 1),
                        out_w.range(r.clone()),
                    )
                };
                let bits = first_bits(bits, r.len());
                for (i, (o, &v)) in o.iter_mut().zip(&x[r]).enumerate() {
                    o.write(if (bits >> i) & 1 == 1 {
                        v * keep_scale
                    } else {
                        0.0
                    });
                }
                word[0] = bits;
            }
        }
    });
    // SAFETY: the chunks cover 0..n, so every element of `out` was written above.
    unsafe { out.set_len(n) };
    (keep, out)
}

/// The mask alone: the decisions of [`draw_and_apply`] for `n` values (the same draws, the same
/// bits, `rng` left in the same place), without writing dropped values. LoRA applies the mask
/// inside its products instead (`cpu::thin`), which saves writing and reading back the dropped
/// input (~300 MB a SmolLM2 step) and keeping it for the backward.
pub fn draw_mask(rng: &mut Rng, drop_below: u64, n: usize) -> Vec<u64> {
    let mut keep = vec![0u64; n.div_ceil(64)];
    let keep_w = DisjointMut::new(&mut keep);
    for_each_chunk_group(rng, n, |chunks, lanes| {
        for offset in (0..chunks[0].len()).step_by(BLOCK) {
            let words = next_keep_words(lanes, drop_below);
            for (chunk, &bits) in chunks.iter().zip(&words) {
                let start = chunk.start + offset;
                let len = chunk.end.saturating_sub(start).min(BLOCK);
                if len == 0 {
                    continue;
                }
                // SAFETY: as in `draw_and_apply`, this block of 64 draws owns one mask word.
                let word = unsafe { keep_w.range(start / 64..start / 64 + 1) };
                word[0] = first_bits(bits, len);
            }
        }
    });
    keep
}

/// `x[i] = x[i] * keep_scale` where bit i of `keep` is set, else 0 (the backward of dropout), in
/// fixed chunks on the pool.
pub fn apply_mask(x: &mut [f32], keep: &[u64], keep_scale: f32) {
    assert_eq!(
        keep.len(),
        x.len().div_ceil(64),
        "dropout mask and tensor sizes differ"
    );
    let n = x.len();
    let dst = DisjointMut::new(x);
    for_each_chunk(n, CHUNK, |r| {
        // SAFETY: chunks are disjoint.
        let x = unsafe { dst.range(r.clone()) };
        // CHUNK is a multiple of 64: the chunk's values start at a mask word.
        for (values, &word) in x.chunks_mut(64).zip(&keep[r.start / 64..]) {
            for (j, v) in values.iter_mut().enumerate() {
                *v = if (word >> j) & 1 == 1 {
                    *v * keep_scale
                } else {
                    0.0
                };
            }
        }
    });
}

/// `x * keep_scale` where bit i of `keep` is set, else 0, as a new vector (the dropped input
/// recomputed from the mask instead of kept).
pub fn masked(x: &[f32], keep: &[u64], keep_scale: f32) -> Vec<f32> {
    let mut out = x.to_vec();
    apply_mask(&mut out, keep, keep_scale);
    out
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

/// The first `len` (<= 64) bits of a keep word: draws past a chunk's end belong to no element,
/// so their bits stay clear.
fn first_bits(bits: u64, len: usize) -> u64 {
    if len >= 64 {
        bits
    } else {
        bits & ((1 << len) - 1)
    }
}

/// The keep decisions of the next [`BLOCK`] draws of every lane, one mask word per lane: bit i
/// of word l is `draw i of lane l >= drop_below`. Compiled for the widest vector registers the
/// CPU has (the same integer steps whichever runs, so the same draws and bits). The decisions
/// are packed lane-inner, so that each draw position is one vector compare over the lanes (the
/// lane-outer fold it replaced, a scalar compare, shift and or per draw, was three quarters of
/// the mask's time), and each row of draws is compared as it is made, while in registers
/// (writing the block's 512 draws out first and comparing them after cost half as much again:
/// a SmolLM2 block's seven masks 0.72 -> 0.47 ms on 2 threads, `bench adapter`).
fn next_keep_words(lanes: &mut Lanes, drop_below: u64) -> [u64; LANES] {
    match Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` reports AVX-512F only when the CPU has it.
        Isa::Avx512 => unsafe { next_keep_words_avx512(lanes, drop_below) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `detect` reports AVX2 only when the CPU has it.
        Isa::Avx2 => unsafe { next_keep_words_avx2(lanes, drop_below) },
        _ => next_keep_words_portable(lanes, drop_below),
    }
}

#[inline(always)]
fn next_keep_words_portable(lanes: &mut Lanes, drop_below: u64) -> [u64; LANES] {
    let mut words = [0u64; LANES];
    let mut bit = 1u64;
    for _ in 0..BLOCK {
        let draws = lanes.next_u24();
        for (word, &draw) in words.iter_mut().zip(&draws) {
            *word |= if draw >= drop_below { bit } else { 0 };
        }
        bit <<= 1;
    }
    words
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn next_keep_words_avx512(lanes: &mut Lanes, drop_below: u64) -> [u64; LANES] {
    next_keep_words_portable(lanes, drop_below)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn next_keep_words_avx2(lanes: &mut Lanes, drop_below: u64) -> [u64; LANES] {
    next_keep_words_portable(lanes, drop_below)
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
            let bits: Vec<bool> = (0..n)
                .map(|i| (keep[i / 64] >> (i % 64)) & 1 == 1)
                .collect();
            assert_eq!(bits, expected, "n {n}");
            assert!(keep.len() == n.div_ceil(64), "n {n}: mask words");
            assert!(masked(&x, &keep, 2.0) == out, "n {n}: the mask reapplied");
            assert_eq!(rng.next_u64(), serial.next_u64(), "n {n}: stream end");
            let want: Vec<f32> = x
                .iter()
                .zip(&expected)
                .map(|(&v, &k)| if k { v * 2.0 } else { 0.0 })
                .collect();
            assert!(out == want, "n {n}: values");
        }
    }

    #[test]
    fn the_mask_alone_is_the_applied_masks_bits_and_leaves_the_stream_in_the_same_place() {
        let group = LANES << CHUNK_LOG2;
        let drop_below = Rng::uniform_below_threshold(0.05);
        for n in [0, 1, 63, 65, 1000, 2 * group + 77] {
            let x = vec![1.0f32; n];
            let (mut with_values, mut alone) = (Rng::new(7 + n as u64), Rng::new(7 + n as u64));
            let (keep, _) = draw_and_apply(&mut with_values, drop_below, 1.0, &x);
            assert_eq!(draw_mask(&mut alone, drop_below, n), keep, "n {n}");
            assert_eq!(
                alone.next_u64(),
                with_values.next_u64(),
                "n {n}: stream end"
            );
        }
    }
}
