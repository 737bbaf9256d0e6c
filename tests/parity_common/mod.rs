//! Shared by the CUDA parity tests (tests/*_parity.rs): the GPU probe, the `on_cuda!` runner
//! that skips with a printed reason, seeded inputs and a tolerance assertion.
//!
//! Each parity test has two steps: (1) the CPU kernel against an independent f64 reference
//! written in the test (always runs), (2) with feature `cuda` and a GPU, the CUDA kernel against
//! the CPU result, within a tolerance stated per op (llm.c style: `atol + |ref| * rtol`, with
//! rtol a small multiple of the f32 or bf16 epsilon).
#![allow(dead_code)]

/// f32 and bf16 machine epsilons as f64.
pub const EPS_F32: f64 = f32::EPSILON as f64;
pub const EPS_BF16: f64 = 0.0078125; // 2^-7

/// Deterministic values in [-range, range] (ilrec's own seeded Rng).
pub fn uniform(n: usize, seed: u64, range: f32) -> Vec<f32> {
    let mut rng = ilrec::rng::Rng::new(seed);
    (0..n)
        .map(|_| (2.0 * rng.uniform() - 1.0) * range)
        .collect()
}

/// Asserts `|found[i] - want[i]| <= atol + rtol * |want[i]|` for all i, naming the worst index.
pub fn assert_within(what: &str, found: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        found.len(),
        want.len(),
        "{what}: {} values, expected {}",
        found.len(),
        want.len()
    );
    for (i, (&f, &w)) in found.iter().zip(want).enumerate() {
        let allowed = atol + rtol * w.abs();
        let err = (f as f64 - w).abs();
        assert!(
            err <= allowed || (f.is_nan() && w.is_nan()),
            "{what} (n={}): element {i}: found {f:e}, expected {w:e} (error {err:e} > allowed {allowed:e})",
            found.len()
        );
    }
}

/// The same, against an f32 reference (the CPU kernel's output).
pub fn assert_near(what: &str, found: &[f32], want: &[f32], atol: f64, rtol: f64) {
    let want: Vec<f64> = want.iter().map(|&v| v as f64).collect();
    assert_within(what, found, &want, atol, rtol);
}

#[cfg(feature = "cuda")]
pub mod gpu {
    use ilrec::cuda::{CudaDevice, Probe};
    use std::sync::OnceLock;

    /// The GPU shared by all tests of one binary, or why there is none (probed once).
    pub fn device() -> Result<&'static CudaDevice, &'static str> {
        static DEVICE: OnceLock<Result<CudaDevice, String>> = OnceLock::new();
        let probed = DEVICE.get_or_init(|| match CudaDevice::probe(0) {
            Ok(Probe::Ready(dev)) => Ok(dev),
            Ok(Probe::Unavailable(why)) => Err(why),
            // A driver that is present but fails is a broken set-up: fail, do not skip.
            Err(e) => panic!("CUDA device 0 could not be opened: {e}"),
        });
        probed.as_ref().map_err(String::as_str)
    }
}

/// Prints a skip reason where CI logs show it (libtest captures println! of passing tests, but
/// not writes to the stderr handle itself).
pub fn skip_note(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs `$body` (a block that may use `?` on `ilrec::Result`, with the device as `$dev`) when
/// built with feature `cuda` and a GPU is present; otherwise prints
/// `skipped CUDA parity for <op>: <reason>`.
#[macro_export]
macro_rules! on_cuda {
    ($op:expr, |$dev:ident| $body:block) => {{
        #[cfg(feature = "cuda")]
        match parity_common::gpu::device() {
            Ok($dev) => {
                let run = || -> ilrec::Result<()> {
                    $body;
                    Ok(())
                };
                run().unwrap_or_else(|e| panic!("{}: CUDA failed: {e}", $op));
            }
            Err(why) => {
                parity_common::skip_note(&format!("skipped CUDA parity for {}: {why}", $op))
            }
        }
        #[cfg(not(feature = "cuda"))]
        parity_common::skip_note(&format!(
            "skipped CUDA parity for {}: built without feature `cuda`",
            $op
        ));
    }};
}
