//! `fuzz`: mutation fuzzing of every loader a user's file goes through, each case in a worker
//! process under a memory cap and a time limit.
//!
//! ```text
//! fuzz TARGET|all [--iters N] [--seed S] [--jobs J] [--mem-mb M] [--timeout-ms T] [--slow-ms S]
//!                 [--save DIR] [--case I] [--replay DIR]
//! ```
//! Per target it prints the count of each outcome: ok, error (the loader refused the input,
//! as it should), panic, abort (the worker died: allocation failure under the cap, stack
//! overflow), timeout (killed after --timeout-ms), slow (finished, but over --slow-ms), and
//! error messages with a flaw (past the bounded length of content errors, or Rust debug formatting
//! such as `Some(`).
//! The exit status is 1 if any case panicked, aborted or timed out. `--save DIR` keeps the input
//! of every such case (and of flawed messages) as a folder; `--replay DIR` runs one saved case,
//! `--case I` rebuilds case I of the seed.

mod bundle;
mod gguf_seed;
mod mutate;
mod peft_seed;
mod seeds;
mod supervisor;
mod targets;
mod worker;

use ilrec::cli::Flags;
use ilrec::Result;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: fuzz TARGET|all [--iters N (default 10000)] [--seed S (0)] [--jobs J (2)] \
[--mem-mb M (4096)] [--timeout-ms T (5000)] [--slow-ms S (500)] [--save DIR] [--case I] [--replay DIR]";

/// Options of a campaign.
#[derive(Clone)]
pub struct Options {
    pub targets: Vec<&'static targets::Target>,
    pub iters: u64,
    pub seed: u64,
    pub jobs: usize,
    pub mem_mb: u64,
    pub timeout_ms: u64,
    pub slow_ms: u64,
    pub save: Option<PathBuf>,
    pub case: Option<u64>,
    pub replay: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        return run_worker(&args[1..]);
    }
    match parse(args) {
        Ok(opts) => supervisor::run(&opts),
        Err(e) => {
            eprintln!("fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

/// `fuzz --worker TARGET MEM_MB`: the child side (started by the supervisor, not by hand).
fn run_worker(args: &[String]) -> ExitCode {
    let target = args.first().and_then(|n| targets::find(n));
    let mem_mb = args.get(1).and_then(|m| m.parse().ok());
    match (target, mem_mb) {
        (Some(target), Some(mem_mb)) => {
            worker::run(target, mem_mb);
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(2),
    }
}

fn parse(args: Vec<String>) -> Result<Options> {
    let mut opts = Options {
        targets: Vec::new(),
        iters: 10_000,
        seed: 0,
        jobs: 2,
        mem_mb: 4096,
        timeout_ms: 5000,
        slow_ms: 500,
        save: None,
        case: None,
        replay: None,
    };
    let mut f = Flags::new(USAGE, args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--iters" => opts.iters = f.num(flag)?,
            "--seed" => opts.seed = f.num(flag)?,
            "--jobs" => opts.jobs = f.num::<usize>(flag)?.max(1),
            "--mem-mb" => opts.mem_mb = f.num(flag)?,
            "--timeout-ms" => opts.timeout_ms = f.num(flag)?,
            "--slow-ms" => opts.slow_ms = f.num(flag)?,
            "--save" => opts.save = Some(PathBuf::from(f.value(flag)?)),
            "--case" => opts.case = Some(f.num(flag)?),
            "--replay" => opts.replay = Some(PathBuf::from(f.value(flag)?)),
            "-h" | "--help" => return Err(f.error("help requested")),
            "all" => opts.targets.extend(targets::TARGETS.iter()),
            name if !name.starts_with("--") => {
                let target = targets::find(name).ok_or_else(|| {
                    let names: Vec<&str> = targets::TARGETS.iter().map(|t| t.name).collect();
                    f.error(format!(
                        "unknown target {name:?}; targets: {}",
                        names.join(", ")
                    ))
                })?;
                opts.targets.push(target);
            }
            other => return Err(f.unknown(other)),
        }
    }
    if opts.targets.is_empty() {
        return Err(f.error("no target given"));
    }
    Ok(opts)
}
