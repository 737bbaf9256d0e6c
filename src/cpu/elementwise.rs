//! Elementwise f32 kernels over slices: the arithmetic the autograd ops (and the optimizer) are
//! built from, and the reference that the CUDA kernels in `ptx/elementwise.cu` are tested against.
//!
//! Each kernel is a tight loop over zipped slices with no bounds checks inside, so LLVM
//! vectorises it (SSE2 by default, AVX2 with `-C target-cpu=native`). Lengths must agree: a
//! mismatch is a bug in the caller (the autograd op checks shapes and returns an error first), so
//! it is asserted with a message naming the kernel and both lengths rather than returned.
//!
//! SiLU needs e^x. `f32::exp` is a libm call that LLVM cannot vectorise, so [`exp_f32`] below
//! is a branch-free version (range reduction + polynomial) that it can; see its doc for accuracy.

#[cfg(target_arch = "x86_64")]
use crate::cpu::isa::Isa;
use crate::cpu::par::as_slots;
use std::mem::MaybeUninit;

/// Panics with a message naming `kernel` if the two lengths differ.
#[inline]
fn assert_same_len(kernel: &str, what: &str, expected: usize, found: usize) {
    assert!(
        expected == found,
        "cpu::elementwise::{kernel}: {what} has length {found}, expected {expected} (the caller must check shapes)"
    );
}

/// Applies `f` to each pair `(a[i], b[i])`, writing `out[i]`. Shared body of the binary ops.
#[inline(always)]
fn binary(kernel: &str, a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32) {
    assert_same_len(kernel, "b", a.len(), b.len());
    assert_same_len(kernel, "out", a.len(), out.len());
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = f(x, y);
    }
}

/// `out = a + b`
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary("add", a, b, out, |x, y| x + y);
}

/// `out = a - b`
pub fn sub(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary("sub", a, b, out, |x, y| x - y);
}

/// `out = a * b`
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary("mul", a, b, out, |x, y| x * y);
}

/// `out = a / b` (IEEE: x/0 is ±inf, 0/0 is NaN)
pub fn div(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary("div", a, b, out, |x, y| x / y);
}

/// `out = s * a`
pub fn scale(a: &[f32], s: f32, out: &mut [f32]) {
    assert_same_len("scale", "out", a.len(), out.len());
    for (o, &x) in out.iter_mut().zip(a) {
        *o = s * x;
    }
}

/// `y += alpha * x`: accumulates a gradient (or a scaled update) into `y` in place.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_same_len("axpy", "y", x.len(), y.len());
    for (acc, &xi) in y.iter_mut().zip(x) {
        *acc += alpha * xi;
    }
}

/// `out = x * sigmoid(x)` (SiLU, the Llama MLP activation).
pub fn silu(a: &[f32], out: &mut [f32]) {
    assert_same_len("silu", "out", a.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (cpu::isa checked it; the env may cap it off).
        return unsafe { silu_avx2(a, out) };
    }
    silu_loop(a, out);
}

/// `grad_in = grad_out * silu'(x)` with `silu'(x) = s * (1 + x * (1 - s))`, `s = sigmoid(x)`:
/// the derivative of `x * s(x)` is `s + x * s * (1 - s)`, factored to one multiply fewer.
pub fn silu_backward(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) {
    assert_same_len("silu_backward", "grad_out", x.len(), grad_out.len());
    assert_same_len("silu_backward", "grad_in", x.len(), grad_in.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (cpu::isa checked it; the env may cap it off).
        return unsafe { silu_backward_avx2(x, grad_out, grad_in) };
    }
    silu_backward_loop(x, grad_out, grad_in);
}

// SiLU is compute-bound (exp + divide per element), unlike the memory-bound ops above, so it is
// worth compiling its loops a second time for 8-wide AVX2 and picking that at run time: the
// default x86-64 target only has 4-wide SSE2. The arithmetic is identical in both versions (no
// FMA contraction), so the result does not depend on the CPU.

#[inline(always)]
fn silu_loop(a: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(a) {
        *o = x * sigmoid(x);
    }
}

#[inline(always)]
fn silu_backward_loop(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) {
    for ((g_in, &xi), &g_out) in grad_in.iter_mut().zip(x).zip(grad_out) {
        let s = sigmoid(xi);
        *g_in = g_out * (s * (1.0 + xi * (1.0 - s)));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_avx2(a: &[f32], out: &mut [f32]) {
    silu_loop(a, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn silu_backward_avx2(x: &[f32], grad_out: &[f32], grad_in: &mut [f32]) {
    silu_backward_loop(x, grad_out, grad_in);
}

/// `out = silu(gate) * up`: the SwiGLU gate of the Llama MLP in one pass (no SiLU temporary).
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    swiglu_into(gate, up, as_slots(out));
}

/// [`swiglu`] into slots not yet written: every element of `out` is written.
pub fn swiglu_into(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert_same_len("swiglu", "up", gate.len(), up.len());
    assert_same_len("swiglu", "out", gate.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (cpu::isa checked it; the env may cap it off).
        return unsafe { swiglu_avx2(gate, up, out) };
    }
    swiglu_loop(gate, up, out);
}

/// Gradients of `silu(gate) * up` given `grad_out`: `d_gate = grad_out * up * silu'(gate)`,
/// `d_up = grad_out * silu(gate)`. Either output may be empty (not needed).
pub fn swiglu_backward(
    gate: &[f32],
    up: &[f32],
    grad_out: &[f32],
    d_gate: &mut [f32],
    d_up: &mut [f32],
) {
    swiglu_backward_into(gate, up, grad_out, as_slots(d_gate), as_slots(d_up));
}

/// [`swiglu_backward`] into slots not yet written: every element of a non-empty output is
/// written.
pub fn swiglu_backward_into(
    gate: &[f32],
    up: &[f32],
    grad_out: &[f32],
    d_gate: &mut [MaybeUninit<f32>],
    d_up: &mut [MaybeUninit<f32>],
) {
    let n = gate.len();
    assert_same_len("swiglu_backward", "up", n, up.len());
    assert_same_len("swiglu_backward", "grad_out", n, grad_out.len());
    for (what, len) in [("d_gate", d_gate.len()), ("d_up", d_up.len())] {
        assert!(
            len == n || len == 0,
            "cpu::elementwise::swiglu_backward: {what} has length {len}, expected {n} or 0"
        );
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (cpu::isa checked it; the env may cap it off).
        return unsafe { swiglu_backward_avx2(gate, up, grad_out, d_gate, d_up) };
    }
    swiglu_backward_loop(gate, up, grad_out, d_gate, d_up);
}

#[inline(always)]
fn swiglu_loop(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    for ((o, &x), &u) in out.iter_mut().zip(gate).zip(up) {
        o.write(x * sigmoid(x) * u);
    }
}

#[inline(always)]
fn swiglu_backward_loop(
    gate: &[f32],
    up: &[f32],
    grad_out: &[f32],
    d_gate: &mut [MaybeUninit<f32>],
    d_up: &mut [MaybeUninit<f32>],
) {
    match (d_gate.is_empty(), d_up.is_empty()) {
        (false, false) => {
            let it = d_gate.iter_mut().zip(d_up.iter_mut()).zip(gate).zip(up);
            for ((((dg, du), &x), &u), &g) in it.zip(grad_out) {
                let s = sigmoid(x);
                du.write(g * (x * s));
                dg.write(g * u * (s * (1.0 + x * (1.0 - s))));
            }
        }
        (false, true) => {
            for (((dg, &x), &u), &g) in d_gate.iter_mut().zip(gate).zip(up).zip(grad_out) {
                let s = sigmoid(x);
                dg.write(g * u * (s * (1.0 + x * (1.0 - s))));
            }
        }
        (true, false) => {
            for ((du, &x), &g) in d_up.iter_mut().zip(gate).zip(grad_out) {
                du.write(g * (x * sigmoid(x)));
            }
        }
        (true, true) => {}
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn swiglu_avx2(gate: &[f32], up: &[f32], out: &mut [MaybeUninit<f32>]) {
    swiglu_loop(gate, up, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn swiglu_backward_avx2(
    gate: &[f32],
    up: &[f32],
    grad_out: &[f32],
    d_gate: &mut [MaybeUninit<f32>],
    d_up: &mut [MaybeUninit<f32>],
) {
    swiglu_backward_loop(gate, up, grad_out, d_gate, d_up);
}

/// `1 / (1 + e^-x)`, safe for any finite x without a branch: for x < -88, e^-x is +inf and the
/// result is exactly 0 (true value below 1e-38); for x > 87, e^-x is 0 or below 2e-38 and the
/// result is exactly 1. Never NaN for finite x.
#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

/// e^x in f32 without a libm call, so loops that use it vectorise.
///
/// Range reduction: `x = n ln2 + r` with `n = round(x / ln2)` and `|r| <= ln2 / 2`; then
/// `e^x = 2^n e^r`. `e^r` is its Taylor series to degree 7 (truncation error < 2e-9 relative at
/// |r| = 0.35, below f32 rounding); `2^n` is built directly in the exponent bits. ln2 is split in
/// a high part exact in f32 times any n we use, and a low correction, so `x - n ln2` loses no
/// bits (Cody-Waite). Error versus f64 over [-87, 88]: at most 3 ulp (asserted by a unit test).
///
/// Outside [-87, 88] the result is 0 (x < -87) or +inf (x > 88): the polynomial path only
/// builds normal f32 exponents, and these thresholds keep `n` in [-126, 127]. True e^x there is
/// below 1.7e-38 or above 1.6e38, so only a few values near the f32 limits are flushed early;
/// what matters for SiLU is that e^-x overflows to inf for x < -88, making sigmoid exactly 0
/// and x * sigmoid(x) a signed zero even for x = -f32::MAX. NaN inputs give NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75; // 0x3f317200: 15 significant bits, so n * LN2_HI is exact
    const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 - LN2_HI

    // Adding then subtracting 1.5 * 2^23 rounds to the nearest integer in plain f32 arithmetic
    // (no `round()` call, which would stop vectorisation); valid for |v| < 2^22.
    const ROUND_MAGIC: f32 = 12_582_912.0;

    let x_in = x;
    let x = x.clamp(-87.0, 88.0); // NaN passes through clamp unchanged

    // t = 1.5 * 2^23 + n exactly, so n sits in t's low mantissa bits (used for 2^n below).
    let t = x * LOG2_E + ROUND_MAGIC;
    let n = t - ROUND_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Horner form of 1 + r + r^2/2! + ... + r^7/7!
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n: biased exponent n + 127 in bits 23..31, taken from t's bits with integer arithmetic
    // (an `n as i32` cast saturates, which LLVM scalarises lane by lane). For NaN, p is NaN.
    let biased_exponent = t
        .to_bits()
        .wrapping_sub(ROUND_MAGIC.to_bits())
        .wrapping_add(127);
    let two_to_n = f32::from_bits(biased_exponent << 23);
    let e = p * two_to_n;
    // Selects, not early returns: they compile to blends and keep the loop vectorised.
    let e = if x_in > 88.0 { f32::INFINITY } else { e };
    if x_in < -87.0 {
        0.0
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units in the last place between an f32 and the f64 truth rounded to f32.
    fn ulps(found: f32, truth: f64) -> u32 {
        let t = truth as f32;
        (found.to_bits() as i64 - t.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_matches_f64_within_a_few_ulp_over_the_unclamped_range() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let u = ulps(exp_f32(x), (x as f64).exp());
            worst = worst.max(u);
            x += 0.000_73; // ~240k points, not aligned with ln2
        }
        assert!(worst <= 3, "exp_f32 worst error {worst} ulp");
    }

    #[test]
    fn exp_saturates_to_inf_and_zero_and_keeps_nan() {
        assert_eq!(exp_f32(88.5), f32::INFINITY);
        assert_eq!(exp_f32(f32::MAX), f32::INFINITY);
        assert_eq!(exp_f32(-87.5), 0.0);
        assert_eq!(exp_f32(f32::MIN), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }

    #[test]
    fn dispatched_and_portable_silu_agree_bit_for_bit() {
        // 1003 values over [-100, 100]: covers both SIMD bodies and the scalar tail.
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 - 501.0) * 0.2).collect();
        let g: Vec<f32> = (0..1003).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let (mut fast, mut portable) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        silu(&x, &mut fast);
        silu_loop(&x, &mut portable);
        assert!(fast
            .iter()
            .zip(&portable)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        silu_backward(&x, &g, &mut fast);
        silu_backward_loop(&x, &g, &mut portable);
        assert!(fast
            .iter()
            .zip(&portable)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    #[should_panic(expected = "cpu::elementwise::add: b has length 2, expected 3")]
    fn length_mismatch_names_the_kernel() {
        add(&[1.0; 3], &[1.0; 2], &mut [0.0; 3]);
    }
}
