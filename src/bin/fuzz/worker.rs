//! The worker process: runs cases one after another under a memory cap, reporting per case its
//! outcome, time and peak memory. A case that aborts (allocation failure under the cap, stack
//! overflow) kills only the worker; the supervisor sees the pipe close and starts a new one.

use super::bundle::Bundle;
use super::targets::Target;
use std::io::{BufWriter, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// The last panic's message, kept by our hook (the default hook would print every panic).
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

#[repr(C)]
struct RLimit {
    current: u64,
    maximum: u64,
}

extern "C" {
    // From the C library std already links; no crate needed for one call.
    fn setrlimit(resource: i32, limit: *const RLimit) -> i32;
}

/// RLIMIT_AS on Linux: the cap on the address space, so a huge allocation fails instead of
/// taking the machine's memory.
const RLIMIT_AS: i32 = 9;

/// Caps this process's address space at `megabytes`.
fn cap_memory(megabytes: u64) {
    let bytes = megabytes.saturating_mul(1 << 20);
    let limit = RLimit {
        current: bytes,
        maximum: bytes,
    };
    // SAFETY: a plain syscall wrapper with a valid pointer to a properly laid out struct.
    let rc = unsafe { setrlimit(RLIMIT_AS, &limit) };
    if rc != 0 {
        eprintln!("fuzz worker: setrlimit(RLIMIT_AS) failed; running without a memory cap");
    }
}

/// Resets the kernel's peak-RSS counter (VmHWM) so that it measures one case.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// VmHWM of this process in KiB (0 where /proc is not there).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A scratch folder of this worker's own (tmpfs where there is one: cases are written per run).
fn scratch_dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("ilrec-fuzz-{}", std::process::id()))
}

/// One-line, bounded text for the report line.
fn one_line(text: &str) -> String {
    let flat: String = text.replace(['\n', '\r', '\t'], " ");
    flat.chars().take(2000).collect()
}

/// Reads cases from stdin until it closes; writes `status micros peak_kib message` per case.
pub fn run(target: &Target, memory_mb: u64) {
    cap_memory(memory_mb);
    panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string();
    }));
    let dir = scratch_dir();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    while let Ok(Some(bundle)) = Bundle::receive(&mut input) {
        reset_peak_rss();
        let started = Instant::now();
        let outcome = match bundle.write_into(&dir) {
            Err(e) => ("error", format!("writing the case: {e}")),
            Ok(()) => match panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&dir))) {
                Ok(Ok(())) => ("ok", String::new()),
                Ok(Err(e)) => ("error", e.to_string()),
                Err(_) => (
                    "panic",
                    LAST_PANIC.lock().map(|m| m.clone()).unwrap_or_default(),
                ),
            },
        };
        let micros = started.elapsed().as_micros();
        let line = format!(
            "{} {} {} {}\n",
            outcome.0,
            micros,
            peak_rss_kib(),
            one_line(&outcome.1)
        );
        if out
            .write_all(line.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
