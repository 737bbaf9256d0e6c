//! An optional per-op timer for the tape, switched on by the environment variable
//! `ILREC_PROFILE=1` (read once). It answers "where does a training step spend its time?" without
//! an external profiler: the forward time of an op is the wall time from the previous node's
//! recording to this one's (the op's kernel plus the glue that prepared its inputs), the backward
//! time is its closure plus the gradient accumulation. [`report`] prints the totals per op name,
//! largest first. Off (the default), the tape pays one cached boolean check per node.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Whether profiling is on (env `ILREC_PROFILE` set to anything but "" or "0").
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("ILREC_PROFILE").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Seconds forward, seconds backward, calls, per op name.
#[derive(Clone, Copy, Default)]
struct Totals {
    forward: f64,
    backward: f64,
    calls: u64,
}

fn table() -> &'static Mutex<Vec<(&'static str, Totals)>> {
    static TABLE: OnceLock<Mutex<Vec<(&'static str, Totals)>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(Vec::new()))
}

fn add(op: &'static str, forward: f64, backward: f64) {
    let mut t = table().lock().unwrap_or_else(|e| e.into_inner());
    let i = match t.iter().position(|(name, _)| *name == op) {
        Some(i) => i,
        None => {
            t.push((op, Totals::default()));
            t.len() - 1
        }
    };
    let e = &mut t[i].1;
    e.forward += forward;
    e.backward += backward;
    e.calls += u64::from(forward > 0.0 || backward == 0.0);
}

/// Attributes the time since `*mark` to `op`'s forward and moves the mark to now.
pub(crate) fn forward_mark(op: &'static str, mark: &mut Option<Instant>) {
    let now = Instant::now();
    if let Some(prev) = mark.replace(now) {
        add(op, (now - prev).as_secs_f64(), 0.0);
    }
}

/// Adds `seconds` of backward time to `op`.
pub(crate) fn backward_time(op: &'static str, seconds: f64) {
    add(op, 0.0, seconds);
}

/// Adds time spent outside the tape (e.g. the optimizer) under `name`.
pub fn record_outside(name: &'static str, seconds: f64) {
    if enabled() {
        add(name, seconds, 0.0);
    }
}

/// The table so far (op, forward s, backward s, calls, share of the total), largest total
/// first; None when profiling is off.
pub fn report() -> Option<String> {
    if !enabled() {
        return None;
    }
    let mut rows = table().lock().unwrap_or_else(|e| e.into_inner()).clone();
    rows.sort_by(|a, b| (b.1.forward + b.1.backward).total_cmp(&(a.1.forward + a.1.backward)));
    let total: f64 = rows.iter().map(|(_, t)| t.forward + t.backward).sum();
    let mut out = format!(
        "{:<22} {:>10} {:>10} {:>8} {:>6}\n",
        "op", "fwd ms", "bwd ms", "calls", "share"
    );
    for (op, t) in rows {
        out += &format!(
            "{:<22} {:>10.1} {:>10.1} {:>8} {:>5.1}%\n",
            op,
            t.forward * 1e3,
            t.backward * 1e3,
            t.calls,
            100.0 * (t.forward + t.backward) / total.max(1e-12)
        );
    }
    out += &format!("{:<22} {:>21.1}\n", "total", total * 1e3);
    Some(out)
}
