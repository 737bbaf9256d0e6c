//! Keeps freed memory in the process for reuse (glibc malloc tuning).
//!
//! A training step allocates and frees the same large buffers every step: the (B*T, V) logits and
//! their gradient (100 MB each for SmolLM2 at B*T = 512), the (V, D) head and embedding gradients
//! (113 MB), and hundreds of activation-sized blocks. glibc serves blocks above its mmap threshold
//! (128 KiB, adapting up to 32 MiB) with fresh `mmap`s and returns them with `munmap` on free, and
//! it trims the top of the heap back to the OS; either way the next step pays page faults and the
//! kernel's zeroing on first touch for every such buffer again (measured: ~12% of a SmolLM2 step).
//!
//! [`retain_freed_memory`] changes three of malloc's parameters so that freed blocks stay in
//! malloc's heap and the next step reuses them: the step then touches memory it already owns.
//! - the mmap threshold to its cap (32 MiB): blocks up to that come from the heap;
//! - no mmap at all (`M_MMAP_MAX` 0): blocks above the cap (the 100 MB logits, the 113 MB head
//!   gradients) would otherwise still be mapped and unmapped every step;
//! - no trimming (`M_TRIM_THRESHOLD` -1, which mallopt(3) documents as "disables trimming
//!   completely"), so the heap's free top is kept for the next step. A threshold of 1 GiB (the
//!   first version) was not enough: the SmolLM2 SFT step frees more than that at the top of
//!   the heap when its tape is dropped, glibc gave it back, and the next step faulted 265 k
//!   pages (1 GiB) in again: `bench train-step --objective sft --json` listed
//!   `faults_steps` [265191, 265181, 12, 108] and a first timed step 2.5x the others; with no
//!   trimming, none (BENCHMARKS.md).
//!
//! Measured on the SmolLM2 SFT step (`/usr/bin/time`, warm-up + 8 steps), with the mmap
//! threshold and trim threshold already set: minor page faults 1.22 M -> 0.91 M once mmap is
//! off (the ~0.76 M left are the first touch of the model itself: ~200 MB faulted in a step
//! before, ~70 MB after). The cost is a peak RSS slightly above the live maximum (freed blocks
//! are not returned): +4% for the SmolLM2 step (2,916 -> 3,022 MB). Called once by `Tape::new`
//! (training tapes), a no-op off glibc.

use std::sync::Once;

/// Raises glibc's mmap threshold and turns heap trimming off (once per process); see the module docs.
pub fn retain_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(set_thresholds);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() {
    // From <malloc.h>; glibc is linked by every Rust binary on this target.
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    const M_MMAP_MAX: i32 = -4;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // The mmap threshold is capped by glibc at half its heap size (32 MiB on 64-bit); setting it
    // also stops its dynamic adjustment. M_MMAP_MAX 0 serves larger blocks from the heap too.
    // A trim threshold of -1 turns trimming off: the heap's freed top is kept for the next step.
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, -1);
        mallopt(M_MMAP_MAX, 0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() {}
