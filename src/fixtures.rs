//! Where the PyTorch reference fixtures live, for the crate's unit tests and `tests/common`:
//! env `ILREC_FIXTURES` if set, else `../shared/fixtures` beside the crate.

use std::path::PathBuf;

/// The fixture root (it may not exist; callers that need a file fail loudly on it).
pub fn root() -> PathBuf {
    match std::env::var_os("ILREC_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}
