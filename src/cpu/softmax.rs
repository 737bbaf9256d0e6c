//! Row kernels of softmax and log-sum-exp over a contiguous row of f32: max, sum, sum of
//! shifted exps, log-sum-exp, softmax, dot. Used by the softmax ops, the fused cross-entropy and the
//! ILRec objective, so every softmax in the crate rounds the same way.
//!
//! Stability: a row is shifted by its maximum before `exp`, so the largest exponent is exp(0) = 1.
//! The exponential is the crate's one vectorisable exp, [`exp_f32`] (<= 3 ulp): libm's call does
//! not vectorise, and softmax over a 49152-wide vocabulary is dominated by exp.

use crate::cpu::elementwise::exp_f32;
use crate::cpu::isa::Isa;

/// Accumulator lanes of the row reductions. Eight independent partial results (a fixed,
/// deterministic order) let the compiler keep them in one SIMD register instead of waiting on
/// one serial chain of dependent adds; combined at the end, they are also a little more accurate.
const LANES: usize = 8;

/// Folds a row into LANES partial results with `step(acc, element)`, then combines those with
/// `combine(acc, acc)` (for a sum of exps, the step exponentiates and the combine must not).
#[inline(always)]
fn fold_lanes(
    row: &[f32],
    init: f32,
    step: impl Fn(f32, f32) -> f32,
    combine: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = [init; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = step(*a, v);
        }
    }
    let mut total = acc.into_iter().fold(init, combine);
    for &v in tail {
        total = step(total, v);
    }
    total
}

/// Largest element of a row (-inf for an empty row). NaN entries propagate.
pub fn row_max(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (cpu::isa checked it; the env may cap it off).
        return unsafe { row_max_avx2(row) };
    }
    row_max_lanes(row)
}

#[inline(always)]
fn row_max_lanes(row: &[f32]) -> f32 {
    // `a >= v` is false when either is NaN; the NaN check keeps a NaN once it is the accumulator.
    let max = |a: f32, v: f32| if a >= v || a.is_nan() { a } else { v };
    fold_lanes(row, f32::NEG_INFINITY, max, max)
}

/// Sum of a row.
pub fn row_sum(row: &[f32]) -> f32 {
    fold_lanes(row, 0.0, |a, v| a + v, |a, b| a + b)
}

/// sum(exp(row - shift)).
pub fn sum_exp_shifted(row: &[f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: as in `row_max`.
        return unsafe { sum_exp_shifted_avx2(row, shift) };
    }
    sum_exp_shifted_lanes(row, shift)
}

#[inline(always)]
fn sum_exp_shifted_lanes(row: &[f32], shift: f32) -> f32 {
    fold_lanes(row, 0.0, |a, v| a + exp_f32(v - shift), |a, b| a + b)
}

// The same loops compiled for AVX2: the eight lanes of `fold_lanes` then fill one 256-bit
// register instead of two 128-bit ones, in the same order per lane: the same bits. (No FMA:
// Rust never fuses a multiply and an add on its own, so enabling AVX2 changes no rounding.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_max_avx2(row: &[f32]) -> f32 {
    row_max_lanes(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sum_exp_shifted_avx2(row: &[f32], shift: f32) -> f32 {
    sum_exp_shifted_lanes(row, shift)
}

/// log(sum(exp(row))), computed as max + log(sum(exp(row - max))).
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row_max(row);
    if max == f32::NEG_INFINITY {
        return max; // empty row, or every entry -inf: the sum is 0
    }
    max + sum_exp_shifted(row, max).ln()
}

/// out = softmax(row). A row that is entirely -inf (fully masked) gives zeros, not NaN.
pub fn softmax_row(row: &[f32], out: &mut [f32]) {
    let max = row_max(row);
    if max == f32::NEG_INFINITY {
        out.iter_mut().for_each(|o| *o = 0.0);
        return;
    }
    for (o, &v) in out.iter_mut().zip(row) {
        *o = exp_f32(v - max);
    }
    let inv = 1.0 / row_sum(out);
    out.iter_mut().for_each(|o| *o *= inv);
}

/// sum(a * b) over two rows, in LANES partial sums.
pub fn row_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_reductions_with_tails_and_nan() {
        let row: Vec<f32> = (0..19).map(|i| ((i * 7) % 11) as f32 - 3.0).collect();
        assert_eq!(row_max(&row), 7.0);
        assert_eq!(row_sum(&row), row.iter().sum::<f32>());
        let mut with_nan = row.clone();
        with_nan[17] = f32::NAN;
        assert!(row_max(&with_nan).is_nan());
        with_nan[17] = 0.0;
        with_nan[2] = f32::NAN;
        assert!(row_max(&with_nan).is_nan());
        assert_eq!(row_max(&[]), f32::NEG_INFINITY);
        // sum of exps: the combine step must not exponentiate the partial sums again.
        let want: f64 = row.iter().map(|&v| (v as f64 - 7.0).exp()).sum();
        assert!((sum_exp_shifted(&row, 7.0) as f64 - want).abs() < 1e-6 * want);
    }

    /// The AVX2 builds of the reductions give the portable loop's bits (lengths with and
    /// without a tail, a 49,152-wide row, a NaN, values where exp under- and overflows).
    #[test]
    fn avx2_reductions_have_the_portable_bits() {
        #[cfg(target_arch = "x86_64")]
        {
            if Isa::best_supported() < Isa::Avx2 {
                eprintln!("skipped: this CPU has no AVX2");
                return;
            }
            let mut rng = crate::rng::Rng::new(7);
            for len in [0, 5, 8, 19, 1000, 49_152] {
                let mut row: Vec<f32> = (0..len).map(|_| 8.0 * rng.normal()).collect();
                if len > 10 {
                    row[3] = -200.0;
                    row[9] = 150.0;
                }
                let shift = row_max_lanes(&row);
                // SAFETY: AVX2 checked above.
                let (max, sum) = unsafe { (row_max_avx2(&row), sum_exp_shifted_avx2(&row, 1.5)) };
                assert_eq!(max.to_bits(), shift.to_bits(), "max, len {len}");
                let want = sum_exp_shifted_lanes(&row, 1.5);
                assert_eq!(sum.to_bits(), want.to_bits(), "sum of exps, len {len}");
                if len > 10 {
                    row[len / 2] = f32::NAN;
                    assert!(unsafe { row_max_avx2(&row) }.is_nan());
                }
            }
        }
    }
}
