//! A progress bar with throughput and ETA, drawn on stderr so stdout stays machine-readable.
//!
//! Redraws are throttled (at most ~5 per second) and use `\r` on a terminal; when stderr is not a
//! terminal (a log file, CI) it prints a plain line every 10% instead, so logs stay short.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// One stage's bar: `label [#####.....] done/total rate/s ETA 1m02s  note`.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    /// Units already done when the bar (re)started: not counted in the rate.
    base: usize,
    start: Instant,
    last_draw: Option<Instant>,
    last_decile: usize,
    note: String,
    terminal: bool,
    enabled: bool,
}

const BAR_WIDTH: usize = 24;
const REDRAW_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    /// A bar for `total` units of work (total 0 is shown as complete).
    pub fn new(label: &str, total: usize) -> Progress {
        Progress {
            label: label.to_string(),
            total,
            done: 0,
            base: 0,
            start: Instant::now(),
            last_draw: None,
            last_decile: 0,
            note: String::new(),
            terminal: std::io::stderr().is_terminal(),
            enabled: true,
        }
    }

    /// A bar that never prints (tests, `--quiet`).
    pub fn hidden(label: &str, total: usize) -> Progress {
        Progress {
            enabled: false,
            ..Progress::new(label, total)
        }
    }

    /// Starts counting from `done` (a resumed stage), without crediting that work to the rate.
    pub fn resume_at(&mut self, done: usize) {
        self.done = done.min(self.total);
        self.base = self.done;
        self.start = Instant::now();
    }

    /// Sets a short free-text note shown after the ETA (e.g. the current loss).
    pub fn set_note(&mut self, note: impl Into<String>) {
        self.note = note.into();
    }

    /// Advances by `n` units and redraws if it is time.
    pub fn inc(&mut self, n: usize) {
        self.done = (self.done + n).min(self.total);
        self.maybe_draw();
    }

    /// Marks the stage complete and prints its final line with the elapsed time.
    pub fn finish(&mut self) {
        self.done = self.total;
        if self.enabled {
            let line = self.line(true);
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "\r{line}\x1b[K");
        }
    }

    /// Seconds since the bar was created (or resumed).
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn maybe_draw(&mut self) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.terminal {
            if self.last_draw.is_some_and(|t| now - t < REDRAW_EVERY) {
                return;
            }
            self.last_draw = Some(now);
            let line = self.line(false);
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{line}\x1b[K");
            let _ = err.flush();
        } else {
            let decile = (self.done * 10).checked_div(self.total).unwrap_or(10);
            if decile > self.last_decile && decile < 10 {
                self.last_decile = decile;
                eprintln!("{}", self.line(false));
            }
        }
    }

    fn line(&self, finished: bool) -> String {
        let elapsed = self.elapsed();
        let frac = if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        };
        let filled = ((frac * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
        let bar = "#".repeat(filled) + &".".repeat(BAR_WIDTH - filled);
        let rate = (self.done - self.base) as f64 / elapsed.max(1e-9);
        let time = if finished {
            format!("in {}", format_duration(elapsed))
        } else if self.done == self.base {
            "ETA ?".to_string()
        } else {
            let left = (self.total - self.done) as f64 / rate;
            format!("ETA {}", format_duration(left))
        };
        format!(
            "{} [{bar}] {}/{} {rate:.1}/s {time}  {}",
            self.label, self.done, self.total, self.note
        )
    }
}

/// `75.3` -> `1m15s`; `3.2` -> `3.2s`.
pub fn format_duration(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else {
        let s = seconds.round() as u64;
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(3.21), "3.2s");
        assert_eq!(format_duration(75.4), "1m15s");
        assert_eq!(format_duration(3600.0), "60m00s");
    }

    #[test]
    fn line_shows_counts_and_bar() {
        let mut p = Progress::hidden("sft", 4);
        p.inc(2);
        let line = p.line(false);
        assert!(
            line.starts_with("sft [############............] 2/4"),
            "{line}"
        );
        assert!(line.contains("ETA"));
    }
}
