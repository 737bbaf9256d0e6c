//! The supervisor: builds cases, feeds them to worker processes, classifies what comes back,
//! and restarts a worker that died or hung.

use super::bundle::Bundle;
use super::mutate;
use super::targets::Target;
use super::Options;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Outcome counts of one target's campaign.
#[derive(Default)]
struct Tally {
    ok: u64,
    error: u64,
    panic: u64,
    abort: u64,
    timeout: u64,
    slow: u64,
    flawed_message: u64,
    peak_kib: u64,
    max_micros: u64,
    /// First few findings, printed after the table: (kind, case, message).
    examples: Vec<(String, u64, String)>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.error += other.error;
        self.panic += other.panic;
        self.abort += other.abort;
        self.timeout += other.timeout;
        self.slow += other.slow;
        self.flawed_message += other.flawed_message;
        self.peak_kib = self.peak_kib.max(other.peak_kib);
        self.max_micros = self.max_micros.max(other.max_micros);
        self.examples.extend(other.examples);
    }

    fn failed(&self) -> bool {
        self.panic + self.abort + self.timeout > 0
    }
}

/// One running worker process and the lines it writes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
}

impl Worker {
    fn start(target: &Target, mem_mb: u64) -> Worker {
        let exe = std::env::current_exe().expect("the fuzz binary knows its own path");
        let mut child = Command::new(exe)
            .args(["--worker", target.name, &mem_mb.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a fuzz worker process");
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Worker {
            child,
            stdin,
            replies,
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A flaw in an error message a user would read, if any.
fn message_flaw(message: &str) -> Option<&'static str> {
    // Content errors are bounded to MAX_MESSAGE_CHARS plus the path and the cut marker.
    if message.chars().count() > ilrec::error::MAX_MESSAGE_CHARS + 200 {
        return Some("longer than the bounded message length");
    }
    let debug = ["Some(", "None ", "Ok(", "Err("];
    let debug_form = debug
        .iter()
        .any(|d| message.contains(d) || message.ends_with("None"));
    (debug_form || ends_in_variant_name(message)).then_some("Rust debug formatting")
}

/// Whether the message ends in a bare CamelCase name after its last colon
/// (`...: InvalidHeaderDeserialization`): an error enum's variant, printed by a crate whose
/// Display is its Debug, tells the user nothing. Two or more humps, so `NaN` and dtype names
/// such as `BF16` pass.
fn ends_in_variant_name(message: &str) -> bool {
    let last = message.rsplit(": ").next().unwrap_or("");
    let chars: Vec<char> = last.chars().collect();
    let humps = chars
        .windows(2)
        .filter(|w| w[0].is_ascii_uppercase() && w[1].is_ascii_lowercase())
        .count();
    chars.first().is_some_and(char::is_ascii_uppercase)
        && chars.iter().all(char::is_ascii_alphanumeric)
        && humps >= 2
}

/// Runs the campaign over every target; exit status 1 if any case panicked, aborted or hung.
pub fn run(opts: &Options) -> ExitCode {
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8} {:>6} {:>8} {:>8} {:>8} {:>9}",
        "target",
        "cases",
        "ok",
        "error",
        "panic",
        "abort",
        "timeout",
        "slow",
        "badmsg",
        "peak MB",
        "max ms",
        "cases/s"
    );
    let mut failed = false;
    for target in &opts.targets {
        let tally = run_target(target, opts);
        failed |= tally.failed();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Scratch folder of the supervisor (seed building).
fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("ilrec-fuzz-seeds-{}", std::process::id()))
}

fn run_target(target: &'static Target, opts: &Options) -> Tally {
    let dir = scratch();
    let seeds = (target.seeds)(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let cases: Vec<u64> = match (&opts.replay, opts.case) {
        (Some(_), _) => vec![0],
        (None, Some(case)) => vec![case],
        (None, None) => (0..opts.iters).collect(),
    };
    let started = Instant::now();
    let jobs = opts.jobs.min(cases.len().max(1));
    let mut tally = Tally::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs)
            .map(|j| {
                let mine: Vec<u64> = cases.iter().copied().skip(j).step_by(jobs).collect();
                let seeds = &seeds;
                scope.spawn(move || run_cases(target, seeds, &mine, opts))
            })
            .collect();
        for h in handles {
            tally.merge(h.join().expect("a fuzz supervisor thread panicked"));
        }
    });
    print_tally(target, &tally, cases.len(), started.elapsed());
    tally
}

/// The case to run: a saved one (`--replay`) or case `index` of the seed.
fn build_case(seeds: &[Bundle], index: u64, opts: &Options) -> Bundle {
    match &opts.replay {
        Some(dir) => Bundle::load(dir).unwrap_or_else(|e| {
            eprintln!("fuzz: cannot read the case folder {}: {e}", dir.display());
            std::process::exit(2)
        }),
        None => mutate::case(seeds, opts.seed, index),
    }
}

/// Runs `cases` on one worker (restarted whenever it dies or hangs).
fn run_cases(target: &Target, seeds: &[Bundle], cases: &[u64], opts: &Options) -> Tally {
    let mut tally = Tally::default();
    let mut worker = Worker::start(target, opts.mem_mb);
    let timeout = Duration::from_millis(opts.timeout_ms);
    for &index in cases {
        let case = build_case(seeds, index, opts);
        let sent = case.send(&mut worker.stdin).is_ok();
        let reply = if sent {
            worker.replies.recv_timeout(timeout)
        } else {
            Err(RecvTimeoutError::Disconnected)
        };
        let kind = match reply {
            Ok(line) => classify(&line, index, opts, &mut tally),
            Err(RecvTimeoutError::Timeout) => {
                tally.timeout += 1;
                "timeout".to_string()
            }
            Err(RecvTimeoutError::Disconnected) => {
                tally.abort += 1;
                "abort".to_string()
            }
        };
        if kind == "timeout" || kind == "abort" {
            let status = restart(&mut worker, target, opts.mem_mb);
            note(&mut tally, &kind, index, status);
        }
        if matches!(kind.as_str(), "panic" | "abort" | "timeout" | "badmsg") {
            save_case(&case, target.name, &kind, index, opts.save.as_deref());
        }
    }
    worker.stop();
    tally
}

/// Kills and replaces the worker; returns how the old one ended.
fn restart(worker: &mut Worker, target: &Target, mem_mb: u64) -> String {
    let _ = worker.child.kill();
    let status = worker
        .child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let old = std::mem::replace(worker, Worker::start(target, mem_mb));
    old.stop();
    status
}

/// Reads a worker reply `status micros peak_kib message`; returns the kind of finding.
fn classify(line: &str, index: u64, opts: &Options, tally: &mut Tally) -> String {
    let mut parts = line.splitn(4, ' ');
    let status = parts.next().unwrap_or("");
    let micros: u64 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let peak: u64 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    let message = parts.next().unwrap_or("").to_string();
    tally.peak_kib = tally.peak_kib.max(peak);
    tally.max_micros = tally.max_micros.max(micros);
    if micros > opts.slow_ms * 1000 {
        tally.slow += 1;
    }
    match status {
        "ok" => tally.ok += 1,
        "error" => {
            tally.error += 1;
            if let Some(flaw) = message_flaw(&message) {
                tally.flawed_message += 1;
                note(
                    tally,
                    "badmsg",
                    index,
                    format!("{flaw}: {}", clip(&message)),
                );
                return "badmsg".into();
            }
        }
        _ => {
            tally.panic += 1;
            note(tally, "panic", index, message);
            return "panic".into();
        }
    }
    status.to_string()
}

fn clip(text: &str) -> String {
    let short: String = text.chars().take(160).collect();
    if short.len() < text.len() {
        short + "..."
    } else {
        short
    }
}

fn note(tally: &mut Tally, kind: &str, index: u64, message: String) {
    if tally.examples.len() < 8 {
        tally.examples.push((kind.to_string(), index, message));
    }
}

fn save_case(case: &Bundle, target: &str, kind: &str, index: u64, dir: Option<&Path>) {
    if let Some(dir) = dir {
        let path = dir.join(target).join(format!("{kind}-{index}"));
        if let Err(e) = case.write_into(&path) {
            eprintln!("fuzz: cannot save {}: {e}", path.display());
        }
    }
}

fn print_tally(target: &Target, t: &Tally, cases: usize, elapsed: Duration) {
    let rate = cases as f64 / elapsed.as_secs_f64().max(1e-9);
    println!(
        "{:<12} {:>9} {:>9} {:>9} {:>6} {:>6} {:>8} {:>6} {:>8} {:>8.1} {:>8.1} {:>9.0}",
        target.name,
        cases,
        t.ok,
        t.error,
        t.panic,
        t.abort,
        t.timeout,
        t.slow,
        t.flawed_message,
        t.peak_kib as f64 / 1024.0,
        t.max_micros as f64 / 1000.0,
        rate
    );
    for (kind, index, message) in &t.examples {
        println!("    {kind} at case {index}: {}", clip(message));
    }
}

#[cfg(test)]
mod tests {
    use super::message_flaw;

    #[test]
    fn debug_forms_are_flaws_and_plain_sentences_are_not() {
        for flawed in [
            "f.safetensors: not a valid safetensors file: InvalidHeaderDeserialization",
            "f.safetensors: not a valid safetensors file: HeaderTooLarge",
            "config.json: field `x`: Some(3)",
            "tokenizer.json: merge None",
        ] {
            assert!(message_flaw(flawed).is_some(), "{flawed}");
        }
        for fine in [
            "config.json: field `alpha`: NaN",
            "model.safetensors: tensor `w`: dtype BF16",
            "movies.csv: line 1: required column 'movieId' is missing (columns found: MovieId, title)",
            "ml.user: the header field has no type (RecBole headers are typed: name:token)",
            "adapter_config.json: field `r`: r = 9 exceeds 4",
        ] {
            assert_eq!(message_flaw(fine), None, "{fine}");
        }
        let long = "x".repeat(ilrec::error::MAX_MESSAGE_CHARS + 201);
        assert!(message_flaw(&long).is_some());
    }
}
