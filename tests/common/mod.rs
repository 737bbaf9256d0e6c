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
