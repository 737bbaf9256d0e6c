//! `dataset DIR [data options] [--max-history N] [--export-atomic OUT]`: loads a data folder
//! with the ILREC.md pre-processing (or RecBole's filters, see `--help`), splits it
//! leave-one-out, scores the popularity baseline on the test split under both ranking
//! protocols, and prints one JSON line of counts (ours, and RecBole's statistics under RecBole's
//! names) and metrics. What loading dropped, and why, goes to stderr. `--export-atomic OUT`
//! also writes the loaded interactions as RecBole atomic files (`rec::export`), so that RecBole
//! runs on exactly our data and split.

use ilrec::cli::{wants_help, Flags};
use ilrec::pipeline::data_flags::{data_options_json, parse_data_flag};
use ilrec::rec::Protocol;
use ilrec::rec::{export_atomic, Stats, DEFAULT_MAX_HISTORY};
use ilrec::rec::{leave_one_out, load_dataset, Dataset, Exclusions, LoadOptions, Popularity};
use ilrec::{Error, Result};
use std::path::{Path, PathBuf};

const USAGE: &str = concat!(
    "usage: dataset DIR [options]

  --max-history N       history items kept per sample [20]
  --export-atomic OUT   also write the loaded set as RecBole atomic files OUT/NAME.inter and
                        OUT/NAME.item (timestamp = position in the user's sequence, so any
                        sort by user and time gives our order and our leave-one-out split)
",
    ilrec::data_flags_help!()
);

struct Args {
    dir: PathBuf,
    load: LoadOptions,
    max_history: usize,
    export: Option<PathBuf>,
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut dir = None;
    let mut load = LoadOptions::default();
    let mut max_history = DEFAULT_MAX_HISTORY;
    let mut export = None;
    let mut f = Flags::new("see dataset --help", args);
    while let Some(arg) = f.next_flag() {
        match arg.as_str() {
            "--max-history" => max_history = f.num(&arg)?,
            "--export-atomic" => export = Some(PathBuf::from(f.value(&arg)?)),
            flag if parse_data_flag(&mut load, &mut f, flag)? => {}
            flag if flag.starts_with("--") => return Err(f.unknown(flag)),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(f.error(format!("unexpected argument {arg}"))),
        }
    }
    let dir = dir.ok_or_else(|| Error::config("no data folder given", "see dataset --help"))?;
    Ok(Args {
        dir,
        load,
        max_history,
        export,
    })
}

fn run() -> Result<serde_json::Value> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let dataset = load_dataset(&args.dir, &args.load)?;
    eprintln!("dataset: {}", dataset.load_summary());
    let split = leave_one_out(&dataset, args.max_history)?;
    let popularity = Popularity::from_dataset(&dataset);
    let pop = popularity.evaluate(&split.test).mean();
    let excluded = Exclusions::build(Protocol::ExcludeHistory, &dataset, &split.test)?;
    let pop_excluding = popularity
        .evaluate_excluding(&split.test, &excluded)?
        .mean();
    let stats = Stats::of(&dataset);
    let exported = export(&dataset, args.export.as_deref())?;
    Ok(serde_json::json!({
        "dataset": dataset.name,
        "kcore": args.load.kcore,
        "data_options": data_options_json(&args.load),
        "max_history": args.max_history,
        "users": split.test.len(),
        "users_loaded": dataset.num_users(),
        "items": dataset.num_items(),
        "interactions": dataset.num_interactions(),
        "rows_read": dataset.rows_read,
        "users_read": dataset.users_read,
        "items_read": dataset.items_read,
        "removed_duplicates": dataset.removed_duplicates,
        "removed_by_rating": dataset.removed_by_rating,
        "removed_by_kcore": dataset.removed_by_kcore,
        "items_without_text": dataset.items_without_text,
        "train_samples": split.train.len(),
        "valid": split.valid.len(),
        "test": split.test.len(),
        "avg_history": split.avg_train_history(),
        "stats": stats.to_json(),
        "recbole_stats": stats.recbole_json(),
        "pop_hit@10": pop.hit_at(10),
        "pop_ndcg@10": pop.ndcg_at(10),
        "pop_test": pop.to_json(),
        "pop_test_exclude_history": pop_excluding.to_json(),
        "exported": exported,
    }))
}

/// `--export-atomic`: writes the files and names them for the JSON line (null when not asked).
fn export(dataset: &Dataset, dir: Option<&Path>) -> Result<serde_json::Value> {
    let Some(dir) = dir else {
        return Ok(serde_json::Value::Null);
    };
    let files = export_atomic(dataset, dir)?;
    eprintln!(
        "dataset: wrote {} and {}",
        files.inter.display(),
        files.item.display()
    );
    Ok(serde_json::json!({"inter": files.inter, "item": files.item}))
}

fn main() {
    if wants_help(&std::env::args().skip(1).collect::<Vec<_>>()) {
        print!("{USAGE}");
        return;
    }
    match run() {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("dataset: {e}");
            std::process::exit(1);
        }
    }
}
