//! The `study` binary on the tiny MovieLens set of tests/common: 2 seeds x (SFT, ILRec) under
//! both protocols. `results.jsonl` has every cell's lines once, with per-user ranks that give
//! back every reported metric (and `train`'s table of the cell's run folder); the report's
//! bootstrap differences are the seed-averaged per-user differences; a finished study skips its
//! cells; a study killed inside its second cell resumes to the uninterrupted study's rows; and
//! `--select` chooses on validation without a single test evaluation, then trains the final
//! cells with the choice (the same models the selection trained).

mod common;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("study")
        .join(format!("{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The shared train options of every tiny study: seconds per cell.
fn train_options() -> Vec<String> {
    "--kcore 0 --epochs 2 --finetune-epochs 1 --batch 8 --lr 0.01 --beams 5 --sasrec-epochs 2 --checkpoint-every 10 --threads 2"
        .split(' ')
        .map(String::from)
        .collect()
}

fn study_args(data: &Path, out: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["--out", out.to_str().unwrap(), "--datasets"]
        .map(String::from)
        .to_vec();
    args.push(data.to_str().unwrap().into());
    args.extend(["--seeds", "0,1", "--methods", "sft,ilrec"].map(String::from));
    args.extend(train_options());
    args
}

fn study(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_study"))
        .args(args)
        .output()
        .unwrap()
}

fn run_ok(args: &[String]) -> Output {
    let out = study(args);
    assert!(
        out.status.success(),
        "study failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn lines(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Hit@K and NDCG@K (0-based rank r in the top K: 1 and 1 / log2(r + 2)), written out here.
fn metrics_of(ranks: &[Value]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for k in [1u64, 5, 10, 20] {
        let (mut hit, mut ndcg) = (0.0, 0.0);
        for r in ranks.iter().filter_map(Value::as_u64).filter(|&r| r < k) {
            hit += 1.0;
            ndcg += 1.0 / ((r + 2) as f64).log2();
        }
        m.insert(format!("hit@{k}"), hit / ranks.len() as f64);
        m.insert(format!("ndcg@{k}"), ndcg / ranks.len() as f64);
    }
    m
}

fn assert_metrics(reported: &Value, ranks: &[Value], what: &str) {
    for (key, want) in metrics_of(ranks) {
        let got = reported[&key].as_f64().unwrap();
        assert!((got - want).abs() < 1e-12, "{what} {key}: {got} vs {want}");
    }
}

/// One line per cell x method x protocol; ranks give back the metrics, and the all-items test
/// metrics equal `train`'s table in the cell's own results.json.
fn assert_rows(rows: &[Value]) {
    assert_eq!(rows.len(), 2 * 2 * 2);
    let mut per_cell: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        let key = format!("{} {}", r["method"], r["protocol"]);
        per_cell
            .entry(r["cell"].as_str().unwrap().into())
            .or_default()
            .push(key);
    }
    assert_eq!(per_cell.len(), 2, "{per_cell:?}");
    for keys in per_cell.values() {
        let mut unique = keys.clone();
        unique.dedup();
        assert_eq!((keys.len(), unique.len()), (4, 4), "{keys:?}");
    }
    for r in rows {
        let test = r["test_ranks"].as_array().unwrap();
        let valid = r["valid_ranks"].as_array().unwrap();
        assert_eq!(test.len(), common::TINY_USERS);
        assert_eq!(r["test_users"].as_array().unwrap().len(), test.len());
        assert_eq!(
            valid.len(),
            common::TINY_USERS,
            "--valid-users 0 is the study's default"
        );
        assert_metrics(&r["test"], test, "test");
        assert_metrics(&r["valid"], valid, "valid");
        if r["protocol"] == "all-items" {
            let run = Path::new(r["run_dir"].as_str().unwrap());
            let results: Value =
                serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap())
                    .unwrap();
            let row = results["rows"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["method"] == r["method"])
                .unwrap();
            for key in ["hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10"] {
                assert_eq!(row[key], r["test"][key], "train's table, {key}");
            }
        }
    }
}

/// The report's "ILRec vs SFT | NDCG@10" difference = the mean over users of the per-user
/// NDCG@10 difference, each user's value averaged over the two seeds (recomputed here).
fn assert_report(out: &Path, rows: &[Value]) {
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    for protocol in ["all-items", "exclude-history"] {
        let ndcg = |method: &str| -> Vec<f64> {
            let of: Vec<&Value> = rows
                .iter()
                .filter(|r| r["method"] == method && r["protocol"] == protocol)
                .collect();
            assert_eq!(of.len(), 2);
            (0..common::TINY_USERS)
                .map(|u| {
                    let per_seed = of.iter().map(|r| match r["test_ranks"][u].as_u64() {
                        Some(k) if k < 10 => 1.0 / ((k + 2) as f64).log2(),
                        _ => 0.0,
                    });
                    per_seed.sum::<f64>() / 2.0
                })
                .collect()
        };
        let (a, b) = (ndcg("ilrec"), ndcg("sft"));
        let diff = a.iter().zip(&b).map(|(x, y)| x - y).sum::<f64>() / a.len() as f64;
        let section = md
            .split(&format!("## Protocol `{protocol}`"))
            .nth(1)
            .unwrap();
        let line = section
            .lines()
            .find(|l| l.starts_with("| ILRec vs SFT | NDCG@10 |"))
            .unwrap_or_else(|| panic!("no bootstrap row in {protocol}:\n{md}"));
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(cells[3], "2", "{line}");
        assert_eq!(cells[4], format!("{diff:+.4}"), "{line}");
        let p: f64 = cells[6].parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{line}");
        assert!(section.contains("| ILRec vs SFT | Hit@10 |"));
    }
    for protocol in ["all-items", "exclude-history"] {
        let svg = std::fs::read_to_string(out.join(format!("results-{protocol}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 2, "a bar per method");
    }
}

/// Starts the study, kills it once the second cell's log has `lines` lines, checks it was cut
/// inside that cell.
fn kill_inside_second_cell(args: &[String], out: &Path, lines: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_study"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = out
        .join("cells")
        .join("tiny")
        .join("seed-1")
        .join("log.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let n = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
        if n >= lines {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    assert!(
        !child.wait().unwrap().success(),
        "the study ended before the kill"
    );
    let cells: Vec<String> = lines_of(out)
        .iter()
        .map(|r| r["cell"].to_string())
        .collect();
    assert!(cells.iter().all(|c| c.contains("seed-0")), "{cells:?}");
}

fn lines_of(out: &Path) -> Vec<Value> {
    if out.join("results.jsonl").is_file() {
        lines(out)
    } else {
        Vec::new()
    }
}

fn without_run_dir(rows: Vec<Value>) -> Vec<Value> {
    rows.into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("run_dir");
            r
        })
        .collect()
}

#[test]
fn a_tiny_study_reports_from_its_ranks_skips_finished_cells_and_resumes_a_killed_one() {
    let data = scratch("data").join("tiny");
    common::write_tiny_movielens(&data);
    let out = scratch("whole");
    let args = study_args(&data, &out);
    let stdout = String::from_utf8(run_ok(&args).stdout).unwrap();
    assert!(stdout.starts_with("# Results study"), "{stdout}");
    let rows = lines(&out);
    assert_rows(&rows);
    assert_report(&out, &rows);

    // Again: nothing to train, the same file.
    let again = run_ok(&args);
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(err.matches("finished before, skipped").count(), 2, "{err}");
    assert_eq!(lines(&out), rows);
    // Another grid in the same folder is refused.
    let mut other = args.clone();
    other.extend(["--epochs".into(), "3".into()]);
    let refused = study(&other);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("another grid"));

    // Killed inside the second cell, then rerun: the first cell is skipped, the second resumes
    // from its checkpoints, and the rows are the uninterrupted study's.
    let killed = scratch("killed");
    let args = study_args(&data, &killed);
    kill_inside_second_cell(&args, &killed, 30);
    let resumed = run_ok(&args);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        err.contains("cell tiny/seed-0: finished before, skipped"),
        "{err}"
    );
    assert!(err.contains("cell tiny/seed-1: resuming"), "{err}");
    assert_eq!(without_run_dir(lines(&killed)), without_run_dir(rows));
    for dir in [data, out, killed] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn selection_reads_validation_only_and_the_final_cells_use_its_choice() {
    let data = scratch("sel-data").join("tiny");
    common::write_tiny_movielens(&data);
    let out = scratch("sel");
    std::fs::create_dir_all(&out).unwrap();
    let grid = serde_json::json!({
        "datasets": [data], "seeds": [0], "methods": ["sft", "ilrec"],
        "protocols": ["all-items"], "train_args": train_options(),
        "select": {"lr_factors": [1, 2], "alpha": [0.1, 0.3], "lambda": [0.1],
                   "mu": [1, 0.3], "lens_layers": ["last4", "1"]},
    });
    let file = out.join("grid.json");
    std::fs::write(&file, grid.to_string()).unwrap();
    let args: Vec<String> = [
        "--out",
        out.to_str().unwrap(),
        "--grid",
        file.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    run_ok(&args);
    let selection: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("selection.json")).unwrap())
            .unwrap();
    let s = &selection["tiny"];
    assert_eq!(s["test_evaluations"], 0, "{s}");
    // Two lr runs (SFT + ILRec each), then alpha 0.3 and mu 0.3; lens `1` is `last4` on 2 blocks.
    assert_eq!(s["budget"]["warm_ups"], 2, "{s}");
    assert_eq!(s["budget"]["fine_tunes"], 6, "{s}");
    assert_eq!(s["budget"]["validation_users"], common::TINY_USERS);
    // The lr is the one with SFT's best validation NDCG@10.
    let trials = s["trials"].as_array().unwrap();
    let by_lr: Vec<&Value> = trials.iter().filter(|t| t["phase"] == "lr").collect();
    let best = by_lr
        .iter()
        .max_by(|a, b| {
            let v = |t: &Value| t["sft_valid_ndcg@10"].as_f64().unwrap();
            v(a).partial_cmp(&v(b)).unwrap()
        })
        .unwrap();
    assert_eq!(s["chosen"]["lr"], best["lr"], "{s}");
    // No selection run ranked a test user: none wrote train's test table.
    for t in &by_lr {
        let dir = Path::new(t["run_dir"].as_str().unwrap());
        assert!(dir.join("log.jsonl").is_file() && !dir.join("results.json").exists());
    }
    // The selection's models are the final cells' models: the chosen lr's SFT continuation
    // and the final cell's (same lr, seed and data) are the same bytes.
    let sft = |run: &Path| std::fs::read(run.join("checkpoints/sft/model.safetensors")).unwrap();
    let chosen_run = Path::new(best["run_dir"].as_str().unwrap());
    assert!(sft(chosen_run) == sft(&out.join("cells/tiny/seed-0")));
    // The final cell trained with the choice, and the report says where it came from.
    let row = &lines(&out)[1];
    assert_eq!(row["method"], "ilrec");
    for key in ["lr", "alpha", "lambda", "mu", "lens_layers"] {
        assert_eq!(row["hyper"][key], s["chosen"][key], "{key}");
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("chosen on the validation split"), "{md}");
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_dir_all(data.parent().unwrap());
}
