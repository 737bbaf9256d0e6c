//! `negatives` (the study's analyses of self-hard negatives) on a tiny trained run:
//! - the per-depth sums equal a recount made here from `recommend --explain`'s own view of
//!   every training sample (the run's mining rule) and each user's test item, written
//!   independently of `study::negatives`;
//! - the per-block sums obey what the definitions force: the final block never ranks the truth
//!   worse than itself, and its self-hard count (>=) is at least its rank - 1 (>) per position;
//! - the binary writes its four files, with a row for every model it was asked for.

mod common;

use ilrec::pipeline::recommender::Recommender;
use ilrec::study::negatives::analyse_run;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One tiny run with the ablations (so `ilrec w/o crr` exists), trained once per test binary.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let data = common::scratch("negatives", "data");
        common::write_tiny_movielens(&data);
        let out = common::scratch("negatives", "run");
        let mut args = common::tiny_train_args(&data, &out);
        args.push("--ablation".into());
        let status = Command::new(env!("CARGO_BIN_EXE_train"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "train failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        out
    })
}

#[test]
fn depth_sums_equal_a_recount_from_the_explanations() {
    let run = trained_run();
    let got = analyse_run(run, &["ilrec".to_string()], 0, 0).unwrap();
    let got = &got[0];
    let rec = Recommender::load(run, "ilrec").unwrap();
    let (mut positions, mut with_negatives, mut negatives, mut on_path) = (0, 0, 0, 0);
    for sample in &rec.split.train {
        let test = rec
            .split
            .test
            .iter()
            .find(|t| t.user == sample.user)
            .unwrap();
        let test_seq = rec.trie.item_seq(test.target).to_vec();
        let response = rec.trie.item_seq(sample.target).to_vec();
        let views = rec.explain(&sample.history, sample.target, 0).unwrap();
        for (j, view) in views.iter().enumerate() {
            positions += 1;
            let mined = &view.negatives.tokens;
            with_negatives += usize::from(!mined.is_empty());
            negatives += mined.len();
            let shares_prefix = test_seq.len() > j && test_seq[..j] == response[..j];
            if shares_prefix && test_seq[j] != response[j] {
                on_path += mined.iter().filter(|&&n| n == test_seq[j]).count();
            }
        }
    }
    let sum = |f: fn(&ilrec::study::negatives::DepthStats) -> usize| -> usize {
        got.depths.iter().map(f).sum()
    };
    assert_eq!(got.samples, rec.split.train.len());
    assert_eq!(
        (got.positions, sum(|d| d.positions)),
        (positions, positions)
    );
    assert_eq!(sum(|d| d.positions_with_negatives), with_negatives);
    assert_eq!(sum(|d| d.negatives), negatives);
    assert_eq!(sum(|d| d.on_test_path), on_path);
    assert!(
        negatives > 0,
        "the tiny ILRec run mined no negative at all: nothing was tested"
    );
}

#[test]
fn the_final_block_agrees_with_itself() {
    let run = trained_run();
    for stage in analyse_run(run, &["warmup".into(), "sft".into()], 0, 0).unwrap() {
        let top = stage.layers.last().unwrap();
        assert_eq!(top.worse_than_final, 0, "{}", stage.stage);
        // rank = 1 + #(z > z_y); self-hard = #(z >= z_y), other than y: never fewer.
        assert!(top.self_hard as f64 >= top.rank_sum - stage.positions as f64);
        assert_eq!(stage.layers.len(), 2, "the tiny preset has 2 blocks");
    }
}

#[test]
fn the_binary_writes_its_report_for_every_model() {
    let run = trained_run();
    let out = common::scratch("negatives", "report");
    let result = Command::new(env!("CARGO_BIN_EXE_negatives"))
        .args(["--run", run.to_str().unwrap(), "--samples", "50", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let md = std::fs::read_to_string(out.join("negatives.md")).unwrap();
    for model in ["warmup", "sft", "ilrec", "ilrec w/o crr"] {
        assert!(
            md.contains(&format!("| {model} | all |")),
            "{model} missing:\n{md}"
        );
    }
    for file in [
        "negatives.json",
        "lens-ranks.svg",
        "negatives-over-training.svg",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_negatives"))
        .args(["--run", run.to_str().unwrap(), "--stages", "nonesuch"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("nonesuch") && err.lines().count() == 1,
        "{err}"
    );
}
