//! Elementwise kernels, one test per op, each in two steps:
//! 1. the CPU kernel (`ilrec::cpu::elementwise`) against an independent scalar reference in f64
//!    written here, within a tolerance derived from f32 rounding;
//! 2. with feature `cuda` and a GPU present, the CUDA kernel against the CPU result; otherwise it
//!    prints `skipped CUDA parity for <op>: <reason>`.
//!
//! Lengths: 1; 7 (shorter than any SIMD width, and not a multiple of one); 1_000_003 (odd and
//! prime, so the CPU loops have a scalar tail and the CUDA grid a partly idle last block).

mod parity_common;

use ilrec::cpu::elementwise as cpu;

const LENGTHS: [usize; 3] = [1, 7, 1_000_003];

/// f32 machine epsilon as f64: one unit of relative rounding error.
const EPS: f64 = f32::EPSILON as f64;

/// Deterministic pseudo-random values in [-range, range] (xorshift64*, seeded per input).
fn inputs(n: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40; // 24 random bits
            let unit = bits as f32 / (1u64 << 24) as f32; // [0, 1)
            (2.0 * unit - 1.0) * range
        })
        .collect()
}

/// Values where SiLU and its derivative are delicate: huge |x| (e^-x overflows or vanishes),
/// the f32 limits, zero of both signs, tiny x, and the derivative's zero near x = -1.2785.
fn silu_specials() -> Vec<f32> {
    vec![
        -f32::MAX,
        -1e30,
        -1000.0,
        -100.0,
        -88.8,
        -88.5,
        -87.5,
        -87.0,
        -20.0,
        -1.2785,
        -1.0,
        -1e-30,
        -0.0,
        0.0,
        1e-30,
        1.0,
        20.0,
        87.0,
        87.5,
        88.5,
        88.8,
        100.0,
        1000.0,
        1e30,
        f32::MAX,
    ]
}

/// SiLU test input of length n: random in [-12, 12], with the specials at the front.
fn silu_inputs(n: usize, seed: u64) -> Vec<f32> {
    let mut x = inputs(n, seed, 12.0);
    for (xi, s) in x.iter_mut().zip(silu_specials()) {
        *xi = s;
    }
    x
}

/// Asserts `|found[i] - truth(i)| <= tol(i)` for every i, naming the op, length and index.
fn assert_close(
    what: &str,
    found: &[f32],
    truth: impl Fn(usize) -> f64,
    tol: impl Fn(usize) -> f64,
) {
    for (i, &f) in found.iter().enumerate() {
        let (t, allowed) = (truth(i), tol(i));
        let err = (f as f64 - t).abs();
        assert!(
            err <= allowed,
            "{what} (n={}): element {i}: found {f:e}, expected {t:e} (error {err:e} > allowed {allowed:e})",
            found.len()
        );
    }
}

/// f64 sigmoid, written the branchy textbook-safe way (independent of the f32 kernels).
fn sigmoid64(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The binary ops are single IEEE operations on both back ends: the CPU result must be the f64
/// result rounded once (within half an ulp), and CUDA must agree with the CPU bit for bit.
macro_rules! binary_op_test {
    ($test:ident, $op:ident, $f64op:expr) => {
        #[test]
        fn $test() {
            let op = stringify!($op);
            let mut cases = Vec::new(); // (a, b, cpu result) per length
            for n in LENGTHS {
                let a = inputs(n, 1, 4.0);
                // b kept away from 0 (|b| in [5, 9]) so that div stays well-conditioned
                let b: Vec<f32> = inputs(n, 2, 4.0)
                    .iter()
                    .map(|&v| v + 5.0_f32.copysign(v))
                    .collect();
                let mut out = vec![f32::NAN; n];
                cpu::$op(&a, &b, &mut out);
                let reference = |i: usize| $f64op(a[i] as f64, b[i] as f64);
                let half_ulp = |i: usize| 0.5 * EPS * reference(i).abs();
                assert_close(&format!("cpu::{op}"), &out, reference, half_ulp);
                cases.push((a, b, out));
            }
            on_cuda!(op, |dev| {
                for (a, b, cpu_out) in &cases {
                    let (da, db) = (dev.upload(a)?, dev.upload(b)?);
                    let mut dout = dev.zeros(a.len())?;
                    ilrec::cuda::elementwise::$op(dev, &da, &db, &mut dout)?;
                    let found = dout.download()?;
                    assert_close(
                        &format!("cuda::{op}"),
                        &found,
                        |i| cpu_out[i] as f64,
                        |_| 0.0,
                    );
                }
            });
        }
    };
}

binary_op_test!(add_matches_reference_and_cuda, add, |x: f64, y: f64| x + y);
binary_op_test!(sub_matches_reference_and_cuda, sub, |x: f64, y: f64| x - y);
binary_op_test!(mul_matches_reference_and_cuda, mul, |x: f64, y: f64| x * y);
binary_op_test!(div_matches_reference_and_cuda, div, |x: f64, y: f64| x / y);

#[test]
fn scale_matches_reference_and_cuda() {
    let s = -0.3f32;
    let mut cases = Vec::new(); // (a, cpu result) per length
    for n in LENGTHS {
        let a = inputs(n, 3, 10.0);
        let mut out = vec![f32::NAN; n];
        cpu::scale(&a, s, &mut out);
        let reference = |i: usize| s as f64 * a[i] as f64;
        assert_close("cpu::scale", &out, reference, |i| {
            0.5 * EPS * reference(i).abs()
        });
        cases.push((a, out));
    }
    on_cuda!("scale", |dev| {
        for (a, cpu_out) in &cases {
            let da = dev.upload(a)?;
            let mut dout = dev.zeros(a.len())?;
            ilrec::cuda::elementwise::scale(dev, &da, s, &mut dout)?;
            let found = dout.download()?;
            assert_close("cuda::scale", &found, |i| cpu_out[i] as f64, |_| 0.0);
        }
    });
}

/// Two roundings (alpha * x, then + y), each at most half an ulp of its own magnitude. CUDA may
/// fuse them into one FMA, so it may differ from the CPU by up to the same bound.
fn axpy_bound(alpha: f32, x: f32, y: f32) -> f64 {
    EPS * ((alpha * x).abs() as f64 + y.abs() as f64)
}

#[test]
fn axpy_matches_reference_and_cuda() {
    let alpha = 0.7f32;
    let mut cases = Vec::new(); // (x, y before, y after on the CPU) per length
    for n in LENGTHS {
        let x = inputs(n, 4, 3.0);
        let y0 = inputs(n, 5, 3.0);
        let mut y = y0.clone();
        cpu::axpy(alpha, &x, &mut y);
        let reference = |i: usize| y0[i] as f64 + alpha as f64 * x[i] as f64;
        assert_close("cpu::axpy", &y, reference, |i| {
            axpy_bound(alpha, x[i], y0[i])
        });
        cases.push((x, y0, y));
    }
    on_cuda!("axpy", |dev| {
        for (x, y0, cpu_y) in &cases {
            let dx = dev.upload(x)?;
            let mut dy = dev.upload(y0)?;
            ilrec::cuda::elementwise::axpy(dev, alpha, &dx, &mut dy)?;
            let found = dy.download()?;
            let bound = |i: usize| axpy_bound(alpha, x[i], y0[i]);
            assert_close("cuda::axpy", &found, |i| cpu_y[i] as f64, bound);
        }
    });
}

/// Absolute floor for SiLU comparisons: results whose true magnitude is below 1e-30 (x < -70)
/// may come out as 0 or a tiny value, depending on where each exp flushes to 0 or inf.
const TINY: f64 = 1e-30;

#[test]
fn silu_matches_reference_and_cuda() {
    let mut cases = Vec::new(); // (x, cpu result) per length
    for n in LENGTHS {
        let x = silu_inputs(n, 6);
        let mut out = vec![f32::NAN; n];
        cpu::silu(&x, &mut out);
        let reference = |i: usize| x[i] as f64 * sigmoid64(x[i] as f64);
        // exp, add, divide, multiply: a handful of roundings, each relative to the result.
        let bound = |i: usize| 8.0 * EPS * reference(i).abs() + TINY;
        assert_close("cpu::silu", &out, reference, bound);
        cases.push((x, out));
    }
    on_cuda!("silu", |dev| {
        for (x, cpu_out) in &cases {
            let dx = dev.upload(x)?;
            let mut dout = dev.zeros(x.len())?;
            ilrec::cuda::elementwise::silu(dev, &dx, &mut dout)?;
            let found = dout.download()?;
            let bound = |i: usize| 16.0 * EPS * (cpu_out[i] as f64).abs() + TINY;
            assert_close("cuda::silu", &found, |i| cpu_out[i] as f64, bound);
        }
    });
}

/// d/dx [x s(x)] = s + x s (1 - s), in f64 from the sum form (the kernels use a factored form).
fn silu_derivative64(x: f64) -> f64 {
    let s = sigmoid64(x);
    s + x * s * (1.0 - s)
}

/// The derivative crosses 0 near x = -1.28 by cancellation between s and x s (1 - s), so the
/// rounding error is relative to the size of those terms, not of the result.
fn silu_backward_scale(x: f32, grad_out: f32) -> f64 {
    let (x, s) = (x as f64, sigmoid64(x as f64));
    grad_out.abs() as f64 * (s + x.abs() * s * (1.0 - s))
}

#[test]
fn silu_backward_matches_reference_and_cuda() {
    let mut cases = Vec::new(); // (x, grad_out, cpu grad_in) per length
    for n in LENGTHS {
        let x = silu_inputs(n, 7);
        let grad_out = inputs(n, 8, 2.0);
        let mut grad_in = vec![f32::NAN; n];
        cpu::silu_backward(&x, &grad_out, &mut grad_in);
        let reference = |i: usize| grad_out[i] as f64 * silu_derivative64(x[i] as f64);
        let bound = |i: usize| 8.0 * EPS * silu_backward_scale(x[i], grad_out[i]) + TINY;
        assert_close("cpu::silu_backward", &grad_in, reference, bound);
        cases.push((x, grad_out, grad_in));
    }
    on_cuda!("silu_backward", |dev| {
        for (x, grad_out, cpu_grad_in) in &cases {
            let (dx, dg) = (dev.upload(x)?, dev.upload(grad_out)?);
            let mut dgrad_in = dev.zeros(x.len())?;
            ilrec::cuda::elementwise::silu_backward(dev, &dx, &dg, &mut dgrad_in)?;
            let found = dgrad_in.download()?;
            let bound = |i: usize| 16.0 * EPS * silu_backward_scale(x[i], grad_out[i]) + TINY;
            assert_close(
                "cuda::silu_backward",
                &found,
                |i| cpu_grad_in[i] as f64,
                bound,
            );
        }
    });
}

/// The tolerances above must be able to fail: a SiLU off by a relative 1e-5 is caught.
#[test]
#[should_panic(expected = "cpu::silu (n=7): element 3")]
fn silu_tolerance_rejects_a_small_error() {
    let x = [-3.0f32, -1.0, 0.5, 2.0, 4.0, 6.0, 9.0];
    let mut out = vec![0.0; x.len()];
    cpu::silu(&x, &mut out);
    out[3] *= 1.0 + 1e-5; // silu(2) = 1.76...: an error of 1.8e-5, about 150 ulp
    let reference = |i: usize| x[i] as f64 * sigmoid64(x[i] as f64);
    assert_close("cpu::silu", &out, reference, |i| {
        8.0 * EPS * reference(i).abs() + TINY
    });
}
