//! `cf --data DIR [data options] [--exclude-history] [--epochs N] [--seed S] [--batch B]
//! [--lr LR] [--dropout P] [--patience N] [--max-len L] [--train-on all|last] [--min-context C]
//! [--save FILE]`:
//! trains SASRec on the training split of a data folder (every window of each user's sequence,
//! or with `--train-on last` only the most recent one: `cf::windows`), selects the epoch on
//! validation NDCG@10, and prints one JSON line with the test metrics of SASRec and of the
//! popularity baseline, both ranked under the chosen protocol (every item, or
//! `--exclude-history`). Progress per epoch goes to stderr.
//!
//! Histories are cut to the model's `max_len` (default 50) for validation and test, so SASRec
//! reads as much history as it was trained on.

use ilrec::cf::{SasRec, SasRecConfig, SasRecTrainOptions, TrainOn};
use ilrec::cli::Flags;
use ilrec::pipeline::data_flags::parse_data_flag;
use ilrec::rec::{leave_one_out, load_dataset, Exclusions, LoadOptions, Popularity, Protocol};
use ilrec::{Error, Result};
use std::path::PathBuf;
use std::time::Instant;

const USAGE: &str =
    "usage: cf --data DIR [the data options of dataset --help] [--exclude-history] \
[--epochs N (200)] [--seed S (0)] [--batch B (64)] [--lr LR (0.001)] [--dropout P (0.5)] \
[--patience N (10)] [--max-len L (50)] [--train-on all|last (all)] [--min-context C (25)] [--save FILE.safetensors]";

struct Args {
    data: PathBuf,
    load: LoadOptions,
    protocol: Protocol,
    train: SasRecTrainOptions,
    dropout: f32,
    max_len: usize,
    save: Option<PathBuf>,
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut a = Args {
        data: PathBuf::new(),
        load: LoadOptions::default(),
        protocol: Protocol::AllItems,
        // RecBole's lr and dropout, not the library's (5e-3, 0.2, which the pipeline's quick
        // reward model keeps): on ml-latest-small both reach the same validation NDCG@10, so
        // validation cannot choose, and this binary is the baseline compared with RecBole's
        // SASRec, so it takes the reference's values (BENCHMARKS.md, "SASRec: ours vs RecBole's").
        train: SasRecTrainOptions {
            lr: 1e-3,
            ..SasRecTrainOptions::default()
        },
        dropout: 0.5,
        max_len: 50,
        save: None,
    };
    let mut data = None;
    let mut f = Flags::new(USAGE, args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--data" => data = Some(PathBuf::from(f.value(flag)?)),
            _ if parse_data_flag(&mut a.load, &mut f, flag)? => {}
            "--exclude-history" => a.protocol = Protocol::ExcludeHistory,
            "--epochs" => a.train.epochs = f.num(flag)?,
            "--seed" => a.train.seed = f.num(flag)?,
            "--batch" => a.train.batch = f.num(flag)?,
            "--lr" => a.train.lr = f.num(flag)?,
            "--dropout" => a.dropout = f.num(flag)?,
            "--patience" => a.train.patience = f.num(flag)?,
            "--max-len" => a.max_len = f.num(flag)?,
            "--min-context" => a.train.min_context = f.num(flag)?,
            "--train-on" => {
                let v = f.value(flag)?;
                a.train.train_on = TrainOn::parse(&v)
                    .ok_or_else(|| f.error(format!("{flag} {v}: expected last or all")))?;
            }
            "--save" => a.save = Some(PathBuf::from(f.value(flag)?)),
            "-h" | "--help" => return Err(Error::config("help requested", USAGE)),
            other => return Err(f.unknown(other)),
        }
    }
    a.data = data.ok_or_else(|| Error::config("--data DIR is required", USAGE))?;
    Ok(a)
}

fn run() -> Result<serde_json::Value> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let dataset = load_dataset(&args.data, &args.load)?;
    let split = leave_one_out(&dataset, args.max_len)?;
    let config = SasRecConfig {
        max_len: args.max_len,
        dropout: args.dropout,
        ..SasRecConfig::new(dataset.num_items())
    };
    let mut model = SasRec::new(config, args.train.seed)?;
    let start = Instant::now();
    let valid_excluded = Exclusions::build(args.protocol, &dataset, &split.valid)?;
    let test_excluded = Exclusions::build(args.protocol, &dataset, &split.test)?;
    let summary = model.train_excluding(&split, &valid_excluded, &args.train, |r| {
        eprintln!(
            "epoch {:3}  loss {:.4}  valid ndcg@10 {:.4}  hit@10 {:.4}{}  {:.1}s",
            r.epoch,
            r.train_loss,
            r.valid.ndcg[2],
            r.valid.hit[2],
            if r.improved { " *" } else { "" },
            r.seconds
        )
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let test = model
        .evaluate_excluding(&split.test, &test_excluded)?
        .mean();
    let pop = Popularity::from_dataset(&dataset)
        .evaluate_excluding(&split.test, &test_excluded)?
        .mean();
    if let Some(path) = &args.save {
        model.save(path)?;
    }
    Ok(serde_json::json!({
        "dataset": dataset.name,
        "kcore": args.load.kcore,
        "protocol": args.protocol.name(),
        "users": split.test.len(),
        "items": dataset.num_items(),
        "test_hit@5": test.hit_at(5),
        "test_hit@10": test.hit_at(10),
        "test_ndcg@5": test.ndcg_at(5),
        "test_ndcg@10": test.ndcg_at(10),
        "valid_ndcg@10": summary.best_valid.ndcg_at(10),
        "epochs": summary.epochs_run,
        "best_epoch": summary.best_epoch,
        "seconds": seconds,
        "pop_test_hit@10": pop.hit_at(10),
        "pop_test_ndcg@10": pop.ndcg_at(10),
        "config": {
            "max_len": config.max_len, "hidden": config.hidden, "blocks": config.blocks,
            "heads": config.heads, "dropout": config.dropout, "lr": args.train.lr,
            "batch": args.train.batch, "patience": args.train.patience, "seed": args.train.seed,
            "train_on": args.train.train_on.name(), "min_context": args.train.min_context,
        },
    }))
}

fn main() {
    match run() {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("cf: {e}");
            std::process::exit(1);
        }
    }
}
