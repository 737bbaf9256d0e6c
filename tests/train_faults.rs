//! Faults during training: a diverging run stops with the stage, step and the first parameter
//! whose gradient is not finite, leaving its last checkpoint loadable; a full disk (a file-size
//! limit on the child process) gives a one-line error, and `--resume` then finishes the run
//! exactly as an uninterrupted one.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    common::scratch("faults", name)
}

/// A short run on the tiny data set (SID mode, 2 warm-up passes, checkpoints every 3 steps).
fn args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--data",
        data.to_str().unwrap(),
        "--kcore",
        "0",
        "--epochs",
        "2",
        "--finetune-epochs",
        "1",
        "--batch",
        "8",
        "--sasrec-epochs",
        "2",
        "--valid-users",
        "0",
        "--beams",
        "4",
        "--checkpoint-every",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn train(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .output()
        .unwrap()
}

/// The last stdout line's rows (the results as JSON).
fn rows(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    last["rows"].clone()
}

/// The last stderr line (errors are one line, after the progress bars).
fn last_error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines().last().unwrap_or("").to_string()
}

#[test]
fn a_diverging_run_stops_with_the_step_and_the_parameter() {
    let (data, run) = (scratch("data-div"), scratch("run-div"));
    common::write_tiny_movielens(&data);
    let out = train(&args(
        &data,
        &run,
        &["--lr", "1e30", "--checkpoint-every", "1"],
    ));
    assert_eq!(out.status.code(), Some(2));
    let line = last_error_line(&out);
    for want in [
        "training stopped",
        "stage warmup",
        "step ",
        "not finite",
        "--resume",
    ] {
        assert!(line.contains(want), "missing {want:?}: {line}");
    }
    assert!(
        line.contains("first parameter") || line.contains("loss"),
        "{line}"
    );
    // The last good checkpoint is whole: its state loads and holds a step before the failure.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("ckpt/warmup/state.json")).unwrap())
            .unwrap();
    assert!(state["step"].as_u64().unwrap() >= 1);
    for file in ["model.safetensors", "optimizer.safetensors", "config.json"] {
        assert!(run.join("ckpt/warmup").join(file).is_file(), "{file}");
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&run);
}

/// Starts a run and kills it as soon as `reached()` holds (or after two minutes); returns
/// whether the run was still going when killed.
fn kill_when(args: &[String], reached: impl Fn() -> bool) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !reached() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    !child.wait().unwrap().success()
}

/// Starts a run and kills it once its first warm-up checkpoint exists.
fn kill_after_first_checkpoint(args: &[String], run: &Path) {
    let state = run.join("ckpt/warmup/state.json");
    kill_when(args, || state.exists());
    assert!(state.exists(), "no checkpoint within 2 minutes");
}

/// `--resume` of `run` under a file-size limit of `blocks` KiB. SIGXFSZ is ignored so a write
/// past the limit returns EFBIG, exactly what a full disk does, instead of killing the process.
fn resume_with_size_limit(args: &[String], blocks: u64) -> Output {
    let cmd = format!("trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\"");
    Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .arg(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_is_one_line_and_resume_finishes_the_run() {
    let (data, run, reference) = (
        scratch("data-full"),
        scratch("run-full"),
        scratch("run-ref"),
    );
    common::write_tiny_movielens(&data);
    let done = train(&args(&data, &reference, &[]));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let size = |f: &str| {
        std::fs::metadata(reference.join("ckpt/warmup").join(f))
            .unwrap()
            .len()
    };
    let (model, moments) = (size("model.safetensors"), size("optimizer.safetensors"));
    assert!(
        model < moments,
        "the test needs the moments file to be the larger"
    );

    // A run killed after its first checkpoint, resumed with room for the model file but not
    // for the optimizer's moments: the next checkpoint fails with one line naming the file...
    kill_after_first_checkpoint(&args(&data, &run, &[]), &run);
    let state_before = std::fs::read_to_string(run.join("ckpt/warmup/state.json")).unwrap();
    let limit_kib = (model + moments) / 2 / 1024;
    let out = resume_with_size_limit(&args(&data, &run, &["--resume"]), limit_kib);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = last_error_line(&out);
    assert!(line.starts_with("train: error:"), "{line}");
    assert!(line.contains("optimizer.safetensors"), "{line}");
    // ... the checkpoint it had is untouched, and nothing half-written is left ...
    let state_after = std::fs::read_to_string(run.join("ckpt/warmup/state.json")).unwrap();
    assert_eq!(state_before, state_after);
    assert!(!run_has_temporaries(&run), "temporary files left behind");
    // ... and with room again, --resume finishes the run digit for digit as the uninterrupted one.
    let resumed = train(&args(&data, &run, &["--resume"]));
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(rows(&resumed), rows(&done));
    for dir in [data, run, reference] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Whether any `*.tmp` file is left under `dir`.
fn run_has_temporaries(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        p.extension().is_some_and(|x| x == "tmp") || (p.is_dir() && run_has_temporaries(&p))
    })
}

/// The log without its timings (tokens/s), one JSON value per line.
fn log_without_timing(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("tokens_per_s");
            v
        })
        .collect()
}

/// Starts a run and kills it as soon as its log holds a step of `stage`; returns whether the
/// run was still going when killed.
fn kill_in_stage(args: &[String], run: &Path, stage: &str) -> bool {
    let needle = format!("\"stage\":\"{stage}\"");
    let log = run.join("log.jsonl");
    kill_when(args, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&needle)
    })
}

/// A run killed in each training stage (SID mode: SASRec, SIDs and the warm-up behind it for
/// the later stages) and resumed gives the uninterrupted run's log and metrics bit for bit.
#[test]
fn a_run_killed_in_any_stage_resumes_bit_for_bit() {
    let (data, reference) = (scratch("data-kill"), scratch("run-kill-ref"));
    common::write_tiny_movielens(&data);
    let long = ["--finetune-epochs", "3", "--checkpoint-every", "2"];
    let done = train(&args(&data, &reference, &long));
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let reference_log = log_without_timing(&reference);
    for stage in ["warmup", "sft", "ilrec"] {
        let run = scratch(&format!("run-kill-{stage}"));
        let killed = kill_in_stage(&args(&data, &run, &long), &run, stage);
        assert!(
            killed,
            "the run finished before it could be killed in {stage}"
        );
        let mut resume = args(&data, &run, &long);
        resume.push("--resume".into());
        let resumed = train(&resume);
        assert!(
            resumed.status.success(),
            "{stage}: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            log_without_timing(&run),
            reference_log,
            "log after a kill in {stage}"
        );
        assert_eq!(
            rows(&resumed),
            rows(&done),
            "metrics after a kill in {stage}"
        );
        let _ = std::fs::remove_dir_all(&run);
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&reference);
}
