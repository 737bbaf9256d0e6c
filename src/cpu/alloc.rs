//! Keeps freed memory in the process for reuse (glibc malloc tuning).
//!
//! A training step allocates and frees the same large buffers every step: the (B*T, V) logits and
//! their gradient (100 MB each for SmolLM2 at B*T = 512), the (V, D) head and embedding gradients
//! (113 MB), and hundreds of activation-sized blocks. glibc serves blocks above its mmap threshold
//! (128 KiB, adapting up to 32 MiB) with fresh `mmap`s and returns them with `munmap` on free, and
//! it trims the top of the heap back to the OS; either way the next step pays page faults and the
//! kernel's zeroing on first touch for every such buffer again (measured: ~12% of a SmolLM2 step).
//!
//! [`retain_freed_memory`] raises both thresholds so that freed blocks stay in malloc's heap and
//! the next step reuses them: the step then touches memory it already owns. The cost is a peak
//! RSS slightly above the live maximum (freed blocks are not returned), measured at +4% for the
//! SmolLM2 step. Called once by `Tape::new` (training tapes), a no-op off glibc.

use std::sync::Once;

/// Raises glibc's mmap and trim thresholds (once per process); see the module docs.
pub fn retain_freed_memory() {
    static ONCE: Once = Once::new();
    ONCE.call_once(set_thresholds);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() {
    // From <malloc.h>; glibc is linked by every Rust binary on this target.
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    // The mmap threshold is capped by glibc at half its heap size (32 MiB on 64-bit): blocks up
    // to that come from the heap; setting it also stops the threshold's dynamic adjustment. The
    // trim threshold has no cap: 1 GiB keeps the heap's freed top for the next step.
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() {}
