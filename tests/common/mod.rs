//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The fixture root: env `ILREC_FIXTURES` if set, else `../shared/fixtures` beside the crate.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("ILREC_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// A file inside the fixture root. Panics (the test fails loudly) if it is missing: CI always
/// has ../shared, so a missing fixture is a broken set-up, never a reason to skip.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_dir().join(rel);
    assert!(
        p.exists(),
        "fixture {} is missing (set ILREC_FIXTURES or provide ../shared/fixtures)",
        p.display()
    );
    p
}

/// The shared data folder (`../shared/data`), or None with a printed reason if absent.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

/// Normal(0, 1) entries from a seeded generator.
pub fn randn(shape: &[usize], seed: u64) -> ilrec::Tensor {
    ilrec::Tensor::randn(shape, 1.0, &mut ilrec::rng::Rng::new(seed))
}

/// Every `got[i]` within `tol * (1 + |want[i]|)` of the f64 reference `want[i]`.
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}
