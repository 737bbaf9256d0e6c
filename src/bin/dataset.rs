//! `dataset DIR [--kcore K] [--max-history N] [--max-text-chars C]`: loads a data folder with
//! the ILREC.md pre-processing, splits it leave-one-out, scores the popularity baseline on the
//! test split, and prints one JSON line of counts and metrics.

use ilrec::cli::Flags;
use ilrec::rec::{leave_one_out, load_dataset, LoadOptions, Popularity, DEFAULT_MAX_HISTORY};
use ilrec::{Error, Result};
use std::path::PathBuf;

const USAGE: &str = "usage: dataset DIR [--kcore K (default 5, 0 = off)] [--max-history N (default 20)] [--max-text-chars C (default 512)]";

struct Args {
    dir: PathBuf,
    load: LoadOptions,
    max_history: usize,
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut dir = None;
    let mut load = LoadOptions::default();
    let mut max_history = DEFAULT_MAX_HISTORY;
    let mut f = Flags::new(USAGE, args);
    while let Some(arg) = f.next_flag() {
        match arg.as_str() {
            "--kcore" => load.kcore = f.num(&arg)?,
            "--max-history" => max_history = f.num(&arg)?,
            "--max-text-chars" => load.max_text_chars = f.num(&arg)?,
            "-h" | "--help" => return Err(Error::config("help requested", USAGE)),
            flag if flag.starts_with("--") => return Err(f.unknown(flag)),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(Error::config(format!("unexpected argument {arg}"), USAGE)),
        }
    }
    let dir = dir.ok_or_else(|| Error::config("no data folder given", USAGE))?;
    Ok(Args {
        dir,
        load,
        max_history,
    })
}

fn run() -> Result<serde_json::Value> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let dataset = load_dataset(&args.dir, &args.load)?;
    let split = leave_one_out(&dataset, args.max_history)?;
    let pop = Popularity::from_dataset(&dataset)
        .evaluate(&split.test)
        .mean();
    Ok(serde_json::json!({
        "dataset": dataset.name,
        "kcore": args.load.kcore,
        "max_history": args.max_history,
        "users": split.test.len(),
        "users_loaded": dataset.num_users(),
        "items": dataset.num_items(),
        "interactions": dataset.num_interactions(),
        "removed_duplicates": dataset.removed_duplicates,
        "removed_by_kcore": dataset.removed_by_kcore,
        "train_samples": split.train.len(),
        "valid": split.valid.len(),
        "test": split.test.len(),
        "avg_history": split.avg_train_history(),
        "pop_hit@10": pop.hit_at(10),
        "pop_ndcg@10": pop.ndcg_at(10),
        "pop_test": pop.to_json(),
    }))
}

fn main() {
    match run() {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("dataset: {e}");
            std::process::exit(1);
        }
    }
}
