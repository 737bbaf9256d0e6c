//! Shared helpers for the integration tests.
#![allow(dead_code)]

pub mod gguf_writer;

use std::path::{Path, PathBuf};

/// The fixture root: env `ILREC_FIXTURES` if set, else `../shared/fixtures` beside the crate.
pub fn fixtures_dir() -> PathBuf {
    ilrec::fixtures::root()
}

/// A file inside the fixture root. Panics (the test fails loudly) if it is missing: CI always
/// has ../shared, so a missing fixture is a broken set-up, never a reason to skip.
pub fn fixture(rel: &str) -> PathBuf {
    let p = fixtures_dir().join(rel);
    assert!(
        p.exists(),
        "fixture {} is missing (set ILREC_FIXTURES or provide ../shared/fixtures)",
        p.display()
    );
    p
}

/// The shared data folder (`../shared/data`), or None with a printed reason if absent.
pub fn shared_data(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipped: {} is absent", p.display());
        None
    }
}

/// `rel` under the crate root (a SmolLM2 file: `data/models/...`), or None with a printed skip
/// reason: the real model is fetched by `bash scripts/get-smollm2.sh` (CI does), so tests that
/// need it skip on a machine without it.
pub fn smollm2(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (run `bash scripts/get-smollm2.sh`)",
            p.display()
        );
        None
    }
}

/// Normal(0, 1) entries from a seeded generator.
pub fn randn(shape: &[usize], seed: u64) -> ilrec::Tensor {
    ilrec::Tensor::randn(shape, 1.0, &mut ilrec::rng::Rng::new(seed))
}

/// Every `got[i]` within `tol * (1 + |want[i]|)` of the f64 reference `want[i]`.
pub fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

/// Every element of `got` within `abs + rel * |want|` of the reference `want` and finite; the
/// two hold as many elements with the same last axis (leading axes may be flattened).
pub fn assert_tensors_close(
    what: &str,
    got: &ilrec::Tensor,
    want: &ilrec::Tensor,
    abs: f32,
    rel: f32,
) {
    let same_layout = got.numel() == want.numel() && got.last_dim() == want.last_dim();
    assert!(
        same_layout,
        "{what}: {:?} vs {:?}",
        got.shape(),
        want.shape()
    );
    for (i, (a, b)) in got.to_vec().iter().zip(want.to_vec()).enumerate() {
        let tol = abs + rel * b.abs();
        assert!(
            (a - b).abs() <= tol && a.is_finite(),
            "{what}[{i}]: got {a}, reference {b} (tolerance {tol})"
        );
    }
}

/// Runs every line of a tokenizer `cases.jsonl` (fixture layout: text, added_tokens, ids,
/// decoded) against tokenizers made by `make` (a fresh one for cases that add tokens, as
/// make_cases.py does): ids exact, decode(ids) equal to HF's. Returns the number of cases.
pub fn check_tokenizer_cases(
    label: &str,
    make: &dyn Fn() -> ilrec::tokenizer::Tokenizer,
    cases_path: &std::path::Path,
) -> usize {
    use serde_json::Value;
    let base = make();
    let cases = std::fs::read_to_string(cases_path).expect("cases.jsonl readable");
    let ids_of = |v: &Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let (mut failures, mut count) = (Vec::new(), 0);
    for (line_no, line) in cases
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        count += 1;
        let case: Value = serde_json::from_str(line).expect("cases.jsonl line is JSON");
        let text = case["text"].as_str().expect("text");
        let added: Vec<String> = case["added_tokens"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let fresh;
        let tokenizer = if added.is_empty() {
            &base
        } else {
            let mut t = make();
            let ids = t.add_tokens(&added, false);
            let first = base.vocab_size() as u32;
            assert_eq!(
                ids,
                (first..first + added.len() as u32).collect::<Vec<_>>(),
                "{label}: added ids"
            );
            fresh = t;
            &fresh
        };
        let expected = ids_of(&case["ids"]);
        let ids = tokenizer.encode(text);
        if ids != expected {
            failures.push(format!(
                "{label} line {}: {text:?}\n  ours {ids:?}\n  HF   {expected:?}",
                line_no + 1
            ));
        }
        let decoded = tokenizer.decode(&expected, false);
        if decoded != case["decoded"].as_str().expect("decoded") {
            failures.push(format!(
                "{label} line {}: decode gave {decoded:?}",
                line_no + 1
            ));
        }
    }
    assert!(count > 0, "{label}: cases.jsonl is empty");
    assert!(
        failures.is_empty(),
        "{} of {count} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    count
}

/// The 12 films of the tiny MovieLens set (movieId = index + 1).
pub const TINY_TITLES: [&str; 12] = [
    "Alpha (1990)",
    "Bravo (1991)",
    "Charlie (1992)",
    "Delta (1993)",
    "Echo (1994)",
    "Foxtrot (1995)",
    "Golf (1996)",
    "Hotel (1997)",
    "India (1998)",
    "Juliet (1999)",
    "Kilo (2000)",
    "Lima (2001)",
];
/// Users of the tiny set, and ratings per user.
pub const TINY_USERS: usize = 40;
pub const TINY_PER_USER: usize = 8;

/// movieId of user `user`'s k-th rating (0-based user): each user walks the films in a
/// user-specific cyclic order, one step or two at a time, so the next film is learnable.
pub fn tiny_movie(user: usize, k: usize) -> usize {
    let start = user % TINY_TITLES.len();
    let stride = 1 + user % 2;
    (start + k * stride) % TINY_TITLES.len() + 1
}

/// A tiny MovieLens folder ([`TINY_TITLES`], [`TINY_USERS`] users of [`TINY_PER_USER`] ratings,
/// timestamps in walking order): every stage of `train` runs on it in seconds.
pub fn write_tiny_movielens(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let mut movies = String::from("movieId,title,genres\n");
    for (i, t) in TINY_TITLES.iter().enumerate() {
        movies.push_str(&format!("{},{t},Drama\n", i + 1));
    }
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    for user in 0..TINY_USERS {
        for k in 0..TINY_PER_USER {
            let m = tiny_movie(user, k);
            ratings.push_str(&format!("{},{m},4.0,{}\n", user + 1, 1000 + k));
        }
    }
    std::fs::write(dir.join("movies.csv"), movies).unwrap();
    std::fs::write(dir.join("ratings.csv"), ratings).unwrap();
}

/// The short `train` run every end-to-end test starts from: the tiny set (`--kcore 0`), the
/// `tiny` preset, 6 warm-up and 3 fine-tuning passes, batch 8, lr 0.01, 5 beams, SASRec 2
/// epochs, a checkpoint every 3 steps, 2 threads, run folder `out`.
pub fn tiny_train_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "--data",
        data.to_str().unwrap(),
        "--kcore",
        "0",
        "--model",
        "tiny",
        "--train-samples",
        "0",
        "--valid-users",
        "0",
        "--epochs",
        "6",
        "--finetune-epochs",
        "3",
        "--batch",
        "8",
        "--lr",
        "0.01",
        "--beams",
        "5",
        "--sasrec-epochs",
        "2",
        "--checkpoint-every",
        "3",
        "--threads",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A fresh (removed if present) scratch path `<temp>/ilrec-<prefix>-<pid>-<name>`.
pub fn scratch(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ilrec-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The token batch a reference fixture was made on: its `input_ids` and `labels` tensors, which
/// must have one shape (batch, seq).
pub fn reference_batch(
    reference: &ilrec::model::weights::SafetensorsFile,
) -> (ilrec::model::llama::BatchInput, Vec<i64>) {
    let (ids, shape) = reference.tensor_i64("input_ids").unwrap();
    let (labels, label_shape) = reference.tensor_i64("labels").unwrap();
    assert_eq!(shape, label_shape);
    let ids = ids.iter().map(|&x| x as u32).collect();
    let input = ilrec::model::llama::BatchInput::new(ids, shape[0], shape[1]).unwrap();
    (input, labels)
}

/// Values in [-1, 1) from a small LCG (deterministic, independent of the code under test).
pub fn pseudo_random(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
