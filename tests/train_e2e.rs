//! End to end: the `train` binary on a tiny data set written here and the `tiny` preset. Every
//! stage runs (SASRec, SFT warm-up, SFT and ILRec continuations, beam-search evaluation); the
//! test checks the outputs' structure, that the warm-up loss falls, that a run killed midway and
//! resumed reproduces the uninterrupted run's losses bit for bit, and that bad input fails fast
//! with a one-line error and a hint.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tiny MovieLens-format data set: 40 users, 12 movies, each user walking the movies in a
/// user-specific cyclic order, so the next item is learnable from the history.
fn write_tiny_dataset(dir: &Path) {
    common::write_tiny_movielens(dir);
}

fn scratch(name: &str) -> PathBuf {
    common::scratch("e2e", name)
}

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    common::tiny_train_args(data, out)
}

fn train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_train"))
}

fn run_ok(args: &[String]) -> String {
    let out = train().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "train failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn log_records(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The deterministic part of a log record (tokens/s is a timing).
fn without_timing(mut r: Value) -> Value {
    if let Some(m) = r.as_object_mut() {
        m.remove("tokens_per_s");
    }
    r
}

/// The last stdout line is the summary JSON: the data set, the four methods with metrics in
/// range, and SASRec trained for the `--sasrec-epochs` asked for.
fn assert_summary(stdout: &str, data: &Path, run: &Path) {
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["dataset"], data.file_name().unwrap().to_str().unwrap());
    assert!(last["seconds"].as_f64().unwrap() > 0.0);
    let methods: Vec<&str> = last["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, vec!["popularity", "sasrec", "sft", "ilrec"]);
    // --sasrec-epochs 2 is honoured (it used to be ignored: 30 epochs, patience 3, ran).
    let sasrec: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/sasrec.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sasrec["epochs"], 2, "{sasrec}");
    let ran = sasrec["epochs_run"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&ran),
        "SASRec ran {ran} epochs with --sasrec-epochs 2"
    );
    for row in last["rows"].as_array().unwrap() {
        for key in ["hit@1", "hit@5", "hit@10", "ndcg@5", "ndcg@10"] {
            let v = row[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        assert_eq!(row["invalid_rate"].as_f64().unwrap(), 0.0);
        let (h1, h5, h10) = (
            row["hit@1"].as_f64().unwrap(),
            row["hit@5"].as_f64().unwrap(),
            row["hit@10"].as_f64().unwrap(),
        );
        assert!(h1 <= h5 && h5 <= h10);
    }
}

/// The run folder holds the config, log, results, plots, vocabulary map and both checkpoints.
fn assert_output_files(run: &Path) {
    for file in [
        "config.json",
        "log.jsonl",
        "results.json",
        "loss.svg",
        "valid_ndcg.svg",
        "vocab_map.json",
    ] {
        assert!(run.join(file).is_file(), "missing {file}");
    }
    for method in ["sft", "ilrec"] {
        let dir = run.join("checkpoints").join(method);
        assert!(dir.join("model.safetensors").is_file() && dir.join("config.json").is_file());
    }
    assert!(std::fs::read_to_string(run.join("loss.svg"))
        .unwrap()
        .contains("<polyline"));
}

/// SID mode (the default): config.json says so, and sids.json gives each of `items` items one
/// SID, all of the same length, no two alike; the model vocabulary holds their tokens.
fn assert_sids(run: &Path, items: usize) {
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(run.join(f)).unwrap()).unwrap()
    };
    assert_eq!(read("config.json")["item_repr"], "sid");
    let sids = read("sids.json");
    let sids = sids.as_object().unwrap();
    assert_eq!(sids.len(), items, "{sids:?}");
    let codes: Vec<Vec<String>> = sids
        .values()
        .map(|v| serde_json::from_value(v.clone()).unwrap())
        .collect();
    assert!(codes
        .iter()
        .all(|c| c.len() == codes[0].len() && c.len() >= 2));
    let mut unique = codes.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), items, "two items share a SID: {codes:?}");
    assert!(run.join("sids.item_ids.json").is_file());
}

/// The log records of training steps (those with a loss).
fn step_records(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|r| r.get("loss").is_some()).collect()
}

/// Log records: every step has the loss terms; ILRec finds negatives; the warm-up loss falls.
fn assert_training_log(log: &[Value]) {
    let steps = step_records(log);
    for r in &steps {
        for key in [
            "step",
            "ce",
            "crr",
            "cpd",
            "negatives_per_position",
            "lr",
            "grad_norm",
            "tokens_per_s",
        ] {
            assert!(r[key].is_number(), "log record lacks {key}: {r}");
        }
    }
    let ce = |stage: &str| -> Vec<f64> {
        steps
            .iter()
            .filter(|r| r["stage"] == stage)
            .map(|r| r["ce"].as_f64().unwrap())
            .collect()
    };
    let warm = ce("warmup");
    assert!(warm.len() >= 10);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(
        mean(&warm[warm.len() - 3..]) < mean(&warm[..3]) - 0.5,
        "warm-up CE did not fall: {warm:?}"
    );
    let sft_steps = ce("sft").len();
    assert_eq!(
        sft_steps,
        ce("ilrec").len(),
        "SFT and ILRec continue for the same steps"
    );
    assert!(steps
        .iter()
        .any(|r| r["stage"] == "ilrec" && r["negatives_per_position"].as_f64().unwrap() > 0.0));
    assert!(steps
        .iter()
        .filter(|r| r["stage"] == "sft")
        .all(|r| r["cpd"].as_f64().unwrap() == 0.0));
    assert!(log
        .iter()
        .any(|r| r["stage"] == "ilrec" && r["valid_ndcg@10"].is_number()));
}

/// Starts a run into `out`, kills it once its log has `kill_after` lines (or after two minutes),
/// then resumes it to the end; returns the resumed run's stdout.
fn kill_then_resume(data: &Path, out: &Path, kill_after: usize) -> String {
    kill_then_resume_with(train_args(data, out), out, kill_after)
}

/// [`kill_then_resume`] for a run with the arguments `args` (whose `--out` is `out`).
fn kill_then_resume_with(args: Vec<String>, out: &Path, kill_after: usize) -> String {
    let mut child = train()
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(out.join("log.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= kill_after || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the run finished before it could be killed: make the test run longer"
    );
    let mut resume_args = args;
    resume_args.push("--resume".into());
    run_ok(&resume_args)
}

/// The resumed run's log (timings aside) and metrics equal the uninterrupted run's.
fn assert_same_run(log: Vec<Value>, stdout: &str, resumed: &Path, resumed_stdout: &str) {
    let a: Vec<Value> = log.into_iter().map(without_timing).collect();
    let b: Vec<Value> = log_records(resumed)
        .into_iter()
        .map(without_timing)
        .collect();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "resumed log differs");
    }
    let rows = |s: &str| -> Value {
        let v: Value = serde_json::from_str(s.lines().last().unwrap()).unwrap();
        v["rows"].clone()
    };
    assert_eq!(rows(stdout), rows(resumed_stdout), "resumed metrics differ");
}

#[test]
fn every_stage_runs_and_writes_its_outputs() {
    let data = scratch("data-a");
    write_tiny_dataset(&data);
    let run = scratch("run-a");
    let stdout = run_ok(&train_args(&data, &run));
    assert_summary(&stdout, &data, &run);
    assert_output_files(&run);
    assert_sids(&run, 12);
    let log = log_records(&run);
    assert_training_log(&log);

    // Resume: kill a second run midway through training, resume it, compare bit for bit.
    let killed = scratch("run-b");
    let resumed_stdout = kill_then_resume(&data, &killed, step_records(&log).len() / 2);
    assert_same_run(log, &stdout, &killed, &resumed_stdout);

    for dir in [data, run, killed] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn bad_input_fails_fast_with_a_hint() {
    let data = scratch("data-bad");
    write_tiny_dataset(&data);
    let d = data.to_str().unwrap();
    let cases: [&[&str]; 16] = [
        &["--data", "/no/such/folder"],
        &["--data", d, "--model", "giant"],
        &["--data", d, "--model", "tiny", "--lens-layers", "3"],
        &["--data", d, "--beams", "0"],
        &["--data", d, "--schedule", "sometimes"],
        &["--data", d, "--negatives-scope", "anywhere"],
        &["--data", d, "--ensemble", "median"],
        &["--data", d, "--tau-r", "0"],
        &["--data", d, "--item-repr", "words"],
        &["--data", d, "--sids", "/no/such/sids.json"],
        &[
            "--data",
            d,
            "--sid-embeddings",
            "/no/such/embeddings.safetensors",
        ],
        &["--data", d, "--sid-embeddings", "llm"],
        &["--data", d, "--user-inter-num-interval", "[5,inf"],
        &["--data", d, "--rm-dup-inter", "none"],
        &["--data", d, "--min-rating", "four"],
        // A RecBole field option on a MovieLens folder: refused, not ignored.
        &["--data", d, "--user-field", "uid"],
    ];
    for args in cases {
        let started = Instant::now();
        let out = train().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("hint"), "{args:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let _ = std::fs::remove_dir_all(data);
}

#[test]
fn ablations_and_the_sequential_schedule_add_their_rows() {
    let data = scratch("data-c");
    write_tiny_dataset(&data);
    let run = scratch("run-c");
    let mut args = train_args(&data, &run);
    args.extend(
        [
            "--ablation",
            "--schedule",
            "sequential",
            "--epochs",
            "2",
            "--finetune-epochs",
            "1",
            "--negatives-scope",
            "vocab",
            "--ensemble",
            "sum",
            "--tau-r",
            "2",
        ]
        .map(String::from),
    );
    let stdout = run_ok(&args);
    // The library options the CLI now exposes reach the run (config.json records them).
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["negatives_scope"], "vocab", "{config}");
    assert_eq!(config["ensemble"], "sum", "{config}");
    assert_eq!(config["tau_r"], 2.0, "{config}");
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let methods: Vec<String> = last["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(&methods[..4], &["popularity", "sasrec", "sft", "ilrec"]);
    assert_eq!(methods.len(), 9, "five ablation rows expected: {methods:?}");
    for want in ["cpo", "crr", "cpd", "final"] {
        assert!(
            methods[4..].iter().any(|m| m.contains(want)),
            "no ablation row mentions {want}: {methods:?}"
        );
    }
    // Each ablation switched its own term off: its log has that term at zero weight, e.g. the
    // w/o CPD run never pays a CPD loss in the total.
    let log = log_records(&run);
    let stage_of = |needle: &str| methods.iter().find(|m| m.contains(needle)).unwrap().clone();
    let wo_cpd: Vec<&Value> = log
        .iter()
        .filter(|r| r["stage"] == stage_of("cpd").as_str() && r.get("loss").is_some())
        .collect();
    assert!(!wo_cpd.is_empty());
    for r in wo_cpd {
        let (loss, ce, crr) = (
            r["loss"].as_f64().unwrap(),
            r["ce"].as_f64().unwrap(),
            r["crr"].as_f64().unwrap(),
        );
        assert!(
            (loss - (ce + 0.1 * crr)).abs() < 1e-4,
            "w/o CPD must not pay CPD: {r}"
        );
    }
    // S = {L} zeroes CPD (the lens of the last block is the logits); the "CPD kept" variant
    // takes its negatives from the final layer but still distils the default lens layers.
    let cpd_of = |needle: &str| -> Vec<f64> {
        let stage = stage_of(needle);
        log.iter()
            .filter(|r| r["stage"] == stage.as_str() && r.get("cpd").is_some())
            .map(|r| r["cpd"].as_f64().unwrap())
            .collect()
    };
    let (zeroed, kept) = (cpd_of("CPD 0"), cpd_of("CPD kept"));
    assert!(
        !zeroed.is_empty() && zeroed.iter().all(|&c| c.abs() < 1e-6),
        "{zeroed:?}"
    );
    assert!(
        kept.iter().any(|&c| c > 0.0),
        "CPD kept must be paid: {kept:?}"
    );
    let _ = std::fs::remove_dir_all(&run);
    let _ = std::fs::remove_dir_all(&data);
}

/// A short run's summary line (the table as JSON).
fn summary_rows(stdout: &str) -> Value {
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    last["rows"].clone()
}

#[test]
fn sids_from_a_file_reproduce_the_run_and_title_mode_still_runs() {
    let data = scratch("data-sid");
    write_tiny_dataset(&data);
    let short = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut args = train_args(&data, out);
        let at = args.iter().position(|a| a == "--epochs").unwrap();
        args[at + 1] = "2".into();
        let at = args.iter().position(|a| a == "--finetune-epochs").unwrap();
        args[at + 1] = "1".into();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    // A SID run, then the same run told to use its sids.json: the same SIDs give the same
    // trie, vocabulary and so the same table, digit for digit.
    let (built, given) = (scratch("run-sid-built"), scratch("run-sid-given"));
    let built_rows = summary_rows(&run_ok(&short(&built, &[])));
    let sids_file = built.join("sids.json").display().to_string();
    let given_rows = summary_rows(&run_ok(&short(&given, &["--sids", &sids_file])));
    assert_eq!(built_rows, given_rows);
    let read = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(read(&built, "sids.json"), read(&given, "sids.json"));
    assert_eq!(
        read(&built, "vocab_map.json"),
        read(&given, "vocab_map.json")
    );

    // A file is really used: swap two items' SIDs; the run adopts them.
    let swapped = scratch("sids-swapped");
    std::fs::create_dir_all(&swapped).unwrap();
    let mut sids: Value = serde_json::from_str(&read(&built, "sids.json")).unwrap();
    let first = sids["0"].clone();
    sids["0"] = sids["1"].clone();
    sids["1"] = first;
    std::fs::write(swapped.join("sids.json"), sids.to_string()).unwrap();
    let ids = read(&built, "sids.item_ids.json");
    std::fs::write(swapped.join("sids.item_ids.json"), ids).unwrap();
    let adopted = scratch("run-sid-swapped");
    let file = swapped.join("sids.json").display().to_string();
    run_ok(&short(&adopted, &["--sids", &file]));
    let written: Value = serde_json::from_str(&read(&adopted, "sids.json")).unwrap();
    assert_eq!(written, sids);
    assert_ne!(written["0"], written["1"]);

    // Title mode: no SIDs, titles as responses.
    let title = scratch("run-title");
    let rows = summary_rows(&run_ok(&short(&title, &["--item-repr", "title"])));
    assert_eq!(rows.as_array().unwrap().len(), 4);
    assert!(!title.join("sids.json").exists());
    let config: Value = serde_json::from_str(&read(&title, "config.json")).unwrap();
    assert_eq!(config["item_repr"], "title");
    for dir in [data, built, given, title, swapped, adopted] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A variant of the tiny set where every user walks 8 consecutive movies of the 12 (stride 1):
/// before its test target each user has seen 7, so exactly 5 are unseen.
fn write_stride_one_dataset(dir: &Path) {
    write_tiny_dataset(dir);
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    for user in 0..40usize {
        for k in 0..8usize {
            let movie = (user + k) % 12 + 1;
            ratings.push_str(&format!("{},{movie},4.0,{}\n", user + 1, 1000 + k));
        }
    }
    std::fs::write(dir.join("ratings.csv"), ratings).unwrap();
}

/// The largest number of items a user has not seen before its test target, read back from
/// the written files (repeats removed, as the loader does).
fn most_unseen_before_test(data: &Path) -> usize {
    let ratings = std::fs::read_to_string(data.join("ratings.csv")).unwrap();
    let movies = std::fs::read_to_string(data.join("movies.csv")).unwrap();
    let catalogue = movies.lines().skip(1).count();
    let mut seqs: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for line in ratings.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let seq = seqs.entry(f[0]).or_default();
        if !seq.contains(&f[1]) {
            seq.push(f[1]); // rows are written in time order
        }
    }
    seqs.values()
        .map(|s| catalogue - (s.len() - 1))
        .max()
        .unwrap()
}

#[test]
fn exclude_history_ranks_only_unseen_items() {
    let data = scratch("data-exclude");
    write_stride_one_dataset(&data);
    let run = scratch("run-exclude");
    let beams = 5;
    let mut args = train_args(&data, &run);
    for (flag, value) in [
        ("--epochs", "2"),
        ("--finetune-epochs", "1"),
        ("--beams", "5"),
    ] {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.into();
    }
    args.extend(["--item-repr", "title", "--exclude-history"].map(String::from));
    // The premise: no test user has more than `beams` unseen items, so a search that spends
    // no beam on history items returns all of them, and every ranker puts the target in the
    // top 5: Hit@5 is exactly 1 for every row, however good the model. (Ranking every item,
    // the same run's LLM rows reach a Hit@5 near 0.4.)
    let unseen = most_unseen_before_test(&data);
    assert!(unseen <= beams && unseen <= 5, "{unseen} unseen items");
    let stdout = run_ok(&args);
    assert!(
        stdout.contains("ranking protocol: exclude-history"),
        "{stdout}"
    );
    let rows = summary_rows(&stdout);
    assert_eq!(rows.as_array().unwrap().len(), 4);
    for row in rows.as_array().unwrap() {
        assert_eq!(row["hit@5"].as_f64(), Some(1.0), "{row}");
    }
    let read = |f: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(run.join(f)).unwrap()).unwrap()
    };
    assert_eq!(read("results.json")["protocol"], "exclude-history");
    assert_eq!(read("config.json")["protocol"], "exclude-history");
    let _ = std::fs::remove_dir_all(&run);
    let _ = std::fs::remove_dir_all(&data);
}

/// `train_args` on the pretrained tiny-llama fixture (full vocabulary: the shipped tokenizer's
/// ids, the SID tokens added) with LoRA adapters, dropout on.
fn lora_args(data: &Path, out: &Path) -> Vec<String> {
    let mut args = train_args(data, out);
    let at = args.iter().position(|a| a == "--model").unwrap();
    args[at + 1] = fixture_dir("tiny-llama").display().to_string();
    args.extend(["--lora", "r=4,alpha=8,dropout=0.1,targets=all"].map(String::from));
    args
}

fn fixture_dir(name: &str) -> PathBuf {
    let dir = ilrec::fixtures::root().join(name);
    assert!(dir.is_dir(), "fixture {} is missing", dir.display());
    dir
}

/// A LoRA run's folders: each stage's adapter as a PEFT folder (no full model), the resume
/// checkpoints hold only the adapter and token rows (no copy of the frozen base), and the
/// adapter loads onto the HF base (grown to the run's vocabulary) with its SID rows.
fn assert_lora_outputs(run: &Path) {
    for stage in ["warmup", "sft", "ilrec"] {
        let dir = run.join("checkpoints").join(stage);
        assert!(
            !dir.join("model.safetensors").exists(),
            "{stage}: a full model was saved"
        );
        let adapter = dir.join("adapter");
        for f in ["adapter_config.json", "adapter_model.safetensors"] {
            assert!(adapter.join(f).is_file(), "{stage}: missing adapter/{f}");
        }
        let ckpt = run.join("ckpt").join(stage);
        assert!(
            !ckpt.join("model.safetensors").exists(),
            "{stage}: the resume state copies the base"
        );
        let saved =
            ilrec::model::weights::SafetensorsFile::open(ckpt.join("trainable.safetensors"))
                .unwrap();
        assert!(saved
            .names()
            .iter()
            .all(|n| n.contains(".lora_") || n.contains("token_adapter")));
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["lora"]["r"], 4, "{config}");
    assert_eq!(config["lora"]["dropout"], 0.1, "{config}");
    let vocab: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("vocab_map.json")).unwrap())
            .unwrap();
    let mut base = ilrec::model::llama::Llama::from_dir(fixture_dir("tiny-llama")).unwrap();
    base.resize_vocab(vocab["tokenizer_ids"].as_u64().unwrap() as usize, 0)
        .unwrap();
    let cfg = ilrec::lora::load_adapter(&mut base, &run.join("checkpoints/ilrec/adapter")).unwrap();
    assert_eq!((cfg.r, cfg.alpha), (4, 8.0));
    assert!(
        !cfg.tokens.embed.is_empty(),
        "the SID token rows are part of the adapter"
    );
    assert_eq!(
        cfg.tokens.embed, cfg.tokens.head,
        "untied: the head's SID rows train too"
    );
}

#[test]
fn lora_runs_every_stage_saves_peft_adapters_and_resumes_bit_for_bit() {
    let data = scratch("data-lora");
    write_tiny_dataset(&data);
    let run = scratch("run-lora");
    let stdout = run_ok(&lora_args(&data, &run));
    assert_summary(&stdout, &data, &run);
    assert_sids(&run, 12);
    assert_lora_outputs(&run);
    let log = log_records(&run);
    assert_training_log(&log);

    // Resume (adapter, token rows, AdamW moments, dropout masks): bit for bit.
    let killed = scratch("run-lora-b");
    let args = lora_args(&data, &killed);
    let resumed_stdout = kill_then_resume_with(args, &killed, step_records(&log).len() / 2);
    assert_same_run(log, &stdout, &killed, &resumed_stdout);
    for dir in [data, run, killed] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn lora_with_a_preset_or_a_bad_spec_fails_fast() {
    let data = scratch("data-lora-bad");
    write_tiny_dataset(&data);
    let d = data.to_str().unwrap();
    let tiny_llama = fixture_dir("tiny-llama").display().to_string();
    let cases: [&[&str]; 4] = [
        &["--data", d, "--lora", "r=4"],
        &["--data", d, "--model", &tiny_llama, "--lora", "r=0"],
        &["--data", d, "--model", &tiny_llama, "--lora", "r=500"],
        &[
            "--data",
            d,
            "--model",
            &tiny_llama,
            "--lora",
            "targets=q,embed",
        ],
    ];
    for args in cases {
        let out = train().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains("--lora") && err.contains("hint"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_dir_all(data);
}
