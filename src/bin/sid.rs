//! `sid --data DIR [--embeddings cf|FILE.safetensors] [sizes] [--out DIR]`: builds the semantic
//! IDs of a data set (RQ-VAE over item embeddings, collisions resolved), prints the training
//! curve, reconstruction, collision rate before / after, code usage per level and the largest
//! first-level groups to stderr, writes `DIR/sids.json` (LC-Rec's `.index.json` shape) and
//! `DIR/sids.item_ids.json`, and prints one JSON summary line on stdout.
//!
//! `sid --data DIR --sids FILE`: checks a sids.json made elsewhere against the data set and
//! prints its statistics (no training).
//!
//! `--embeddings cf` (default) trains SASRec on the training split for `--cf-epochs` epochs
//! and quantises its item table.

use ilrec::cf::{SasRec, SasRecConfig, SasRecTrainOptions, TrainOn};
use ilrec::cli::Flags;
use ilrec::rec::{leave_one_out, load_dataset, Dataset, LoadOptions};
use ilrec::sid::embeddings::{load_embeddings_file, sasrec_item_table};
use ilrec::sid::stats::{largest_first_level_groups, level_usage};
use ilrec::sid::{
    build_sids, collision_rate, read_sids, sid_text, write_sids, SidSizes, SidTrainOptions,
};
use ilrec::{Error, Result, Tensor};
use std::path::{Path, PathBuf};
use std::time::Instant;

const USAGE: &str = "usage: sid --data DIR [--kcore K (5; 0 = off, for the Amazon folders)] \
[--embeddings cf|random|FILE.safetensors (cf)] [--cf-epochs N (20)] [--levels L] [--codes C] \
[--code-dim D] [--hidden W1,W2,.. (defaults: README \"Semantic IDs\")] [--epochs N (100)] \
[--batch B (1024)] [--lr LR (0.003)] [--seed S (0)] [--threads N] [--out DIR (.)] \
[--save-embeddings FILE.safetensors (the quantised embeddings, reusable as --embeddings FILE)] | \
sid --data DIR --sids FILE";

struct Args {
    data: PathBuf,
    load: LoadOptions,
    embeddings: String,
    cf_epochs: usize,
    levels: Option<usize>,
    codes: Option<usize>,
    code_dim: Option<usize>,
    hidden: Option<Vec<usize>>,
    train: SidTrainOptions,
    out: PathBuf,
    sids: Option<PathBuf>,
    save_embeddings: Option<PathBuf>,
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut a = Args {
        data: PathBuf::new(),
        load: LoadOptions::default(),
        embeddings: "cf".into(),
        cf_epochs: 20,
        levels: None,
        codes: None,
        code_dim: None,
        hidden: None,
        train: SidTrainOptions::default(),
        out: PathBuf::from("."),
        sids: None,
        save_embeddings: None,
    };
    let mut data = None;
    let mut f = Flags::new(USAGE, args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--data" => data = Some(PathBuf::from(f.value(flag)?)),
            "--kcore" => a.load.kcore = f.num(flag)?,
            "--embeddings" => a.embeddings = f.value(flag)?,
            "--cf-epochs" => a.cf_epochs = f.num(flag)?,
            "--levels" => a.levels = Some(f.positive(flag)?),
            "--codes" => a.codes = Some(f.positive(flag)?),
            "--code-dim" => a.code_dim = Some(f.positive(flag)?),
            "--hidden" => a.hidden = Some(widths(&f.value(flag)?, &f)?),
            "--epochs" => a.train.epochs = f.positive(flag)?,
            "--batch" => a.train.batch = f.positive(flag)?,
            "--lr" => a.train.lr = f.num(flag)?,
            "--seed" => a.train.seed = f.num(flag)?,
            "--threads" => ilrec::cpu::pool::set_num_threads(f.positive(flag)?),
            "--out" => a.out = PathBuf::from(f.value(flag)?),
            "--sids" => a.sids = Some(PathBuf::from(f.value(flag)?)),
            "--save-embeddings" => a.save_embeddings = Some(PathBuf::from(f.value(flag)?)),
            "-h" | "--help" => return Err(f.error("help requested")),
            other => return Err(f.unknown(other)),
        }
    }
    a.data = data.ok_or_else(|| f.error("--data DIR is required"))?;
    Ok(a)
}

/// `--hidden 256,128`: MLP widths, each at least 1.
fn widths(list: &str, f: &Flags) -> Result<Vec<usize>> {
    list.split(',')
        .map(|w| match w.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(f.error(format!("--hidden {list}: widths are whole numbers >= 1"))),
        })
        .collect()
}

/// The embeddings named by `--embeddings` (file checks happen before any training).
fn embeddings(args: &Args, dataset: &Dataset) -> Result<Tensor> {
    match args.embeddings.as_str() {
        "cf" => {
            let split = leave_one_out(dataset, 50)?;
            let mut model = SasRec::new(SasRecConfig::new(dataset.num_items()), args.train.seed)?;
            // The last window per user, as the pipeline's SASRec (whose item table its SIDs
            // come from) and the README's size measurements: `pipeline::cf::sasrec_options`.
            let opts = SasRecTrainOptions {
                epochs: args.cf_epochs,
                seed: args.train.seed,
                train_on: TrainOn::LastWindow,
                ..SasRecTrainOptions::default()
            };
            let summary = model.train(&split, &opts, |r| {
                eprintln!(
                    "  sasrec epoch {:3}  loss {:.4}  valid ndcg@10 {:.4}  {:.1}s",
                    r.epoch, r.train_loss, r.valid.ndcg[2], r.seconds
                )
            })?;
            eprintln!(
                "sasrec: kept epoch {} (valid ndcg@10 {:.4})",
                summary.best_epoch, summary.best_valid.ndcg[2]
            );
            sasrec_item_table(&model)
        }
        "random" => {
            let mut rng = ilrec::rng::Rng::new(args.train.seed ^ 0xE5BE_DD17);
            Ok(Tensor::randn(&[dataset.num_items(), 64], 1.0, &mut rng))
        }
        file => load_embeddings_file(Path::new(file), dataset.num_items()),
    }
}

fn sizes(args: &Args, num_items: usize) -> SidSizes {
    let d = SidSizes::default_for(num_items);
    SidSizes {
        levels: args.levels.unwrap_or(d.levels),
        codes: args.codes.unwrap_or(d.codes),
        e_dim: args.code_dim.unwrap_or(d.e_dim),
        hidden: args.hidden.clone().unwrap_or(d.hidden),
    }
}

/// Prints usage per level and the largest first-level groups.
fn print_usage(codes: &[Vec<u32>]) {
    for (l, u) in level_usage(codes).iter().enumerate() {
        eprintln!(
            "level {l}: {} codes used, perplexity {:.1}",
            u.used, u.perplexity
        );
    }
    let groups = largest_first_level_groups(codes, 5);
    let text: Vec<String> = groups
        .iter()
        .map(|(c, n)| format!("<a_{c}>: {n}"))
        .collect();
    eprintln!("largest first-level groups: {}", text.join(", "));
}

fn check_sids(args: &Args, dataset: &Dataset, path: &Path) -> Result<serde_json::Value> {
    let raw: Vec<String> = dataset.items.iter().map(|i| i.raw_id.clone()).collect();
    let codes = read_sids(path, &raw)?;
    eprintln!(
        "{}: {} items, {} levels, all SIDs unique",
        path.display(),
        codes.len(),
        codes[0].len()
    );
    print_usage(&codes);
    Ok(
        serde_json::json!({"dataset": dataset.name, "sids": path.display().to_string(), "items": codes.len(),
        "levels": codes[0].len(), "codes_per_level": ilrec::sid::codes_per_level(&codes),
        "data": args.data.display().to_string()}),
    )
}

fn run() -> Result<serde_json::Value> {
    let args = parse_args(std::env::args().skip(1).collect())?;
    let dataset = load_dataset(&args.data, &args.load)?;
    if let Some(path) = &args.sids {
        return check_sids(&args, &dataset, path);
    }
    let sizes = sizes(&args, dataset.num_items());
    let x = embeddings(&args, &dataset)?;
    if let Some(path) = &args.save_embeddings {
        ilrec::sid::embeddings::save_embeddings(path, &x)?;
        eprintln!("wrote the embeddings to {}", path.display());
    }
    eprintln!(
        "{}: {} items, embeddings {:?} ({}); RQ-VAE {sizes:?}",
        dataset.name,
        dataset.num_items(),
        x.shape(),
        args.embeddings
    );
    let start = Instant::now();
    let build = build_sids(&x, &sizes, &args.train, |e| {
        if let Some(rate) = e.collision_rate {
            eprintln!(
                "epoch {:4}  loss {:.4}  recon {:.4}  quant {:.4}  collisions {:.2}%  {:.1}s",
                e.epoch,
                e.total,
                e.recon,
                e.quant,
                100.0 * rate,
                e.seconds
            );
        }
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let r = &build.resolution;
    eprintln!(
        "reconstruction MSE {:.4} (standardised embeddings: 1.0 = predicting the mean)",
        build.recon
    );
    eprintln!(
        "collision rate before {:.2}%, after {:.2}% ({} items reassigned)",
        100.0 * r.rate_before,
        100.0 * collision_rate(&r.codes),
        r.reassigned
    );
    if let Some((codes, why)) = &r.added_level {
        eprintln!("added a level with {codes} codes: {why}");
    }
    print_usage(&r.codes);
    eprintln!(
        "e.g. item 0 ({}) = {}",
        dataset.items[0].title,
        sid_text(&r.codes[0])
    );
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let path = args.out.join("sids.json");
    let raw: Vec<String> = dataset.items.iter().map(|i| i.raw_id.clone()).collect();
    write_sids(&path, &r.codes, &raw)?;
    eprintln!(
        "wrote {} (+ sids.item_ids.json); SID training took {seconds:.1}s",
        path.display()
    );
    let usage: Vec<serde_json::Value> = build
        .usage
        .iter()
        .map(|u| serde_json::json!({"used": u.used, "perplexity": u.perplexity}))
        .collect();
    let last = build.curve.last().expect("epochs >= 1");
    Ok(serde_json::json!({
        "dataset": dataset.name, "items": dataset.num_items(), "embeddings": args.embeddings,
        "in_dim": x.shape()[1], "levels": sizes.levels, "codes": sizes.codes, "code_dim": sizes.e_dim,
        "hidden": sizes.hidden, "epochs": args.train.epochs, "recon": build.recon, "final_loss": last.total,
        "collision_before": r.rate_before, "collision_after": collision_rate(&r.codes),
        "reassigned": r.reassigned, "added_level": r.added_level.as_ref().map(|(c, _)| *c),
        "usage": usage, "seconds": seconds, "sids": path.display().to_string(),
    }))
}

fn main() {
    match run() {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("sid: {e}");
            std::process::exit(1);
        }
    }
}
