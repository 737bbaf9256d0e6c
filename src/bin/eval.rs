//! `eval`: evaluate a trained stage of a `train` run again, without retraining: the same
//! trie-constrained beam search on the same prompts, on the test split or the run's validation
//! subset, with the run's beam width or another. Prints the results table and the JSON line
//! `train` prints; with the run's settings the row equals `train`'s row for that stage exactly.
//! Run `eval --help` for the options.

use ilrec::cli::{self, Flags};
use ilrec::pipeline::evaluate::Evaluator;
use ilrec::pipeline::recommender::{EvalSplit, Recommender};
use ilrec::pipeline::results::result_row;
use ilrec::pipeline::saved_run::SavedRun;
use ilrec::pipeline::stage::last_valid;
use ilrec::rec::Protocol;
use ilrec::report::{ResultsTable, RunLog};
use ilrec::Result;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const HELP: &str = "eval: evaluate a trained stage of a train run again

Usage: eval --run DIR [--stage NAME] [--split valid|test] [--beams N] [--exclude-history] [--threads N]

  --run DIR           the run folder train wrote (runs/<name>, or its --out DIR)
  --stage NAME        the trained stage: ilrec, sft, or an ablation name / folder [ilrec]
  --split test|valid  every test user, or the run's seeded validation subset (--valid-users) [test]
  --beams N           beam width of the constrained search [the run's]
  --exclude-history   never rank a user's history items (the search widens by one beam per
                      history item, then drops them); train ranks every item
  --threads N         evaluation threads [the run's]
  --help              this text

Prints the results table, then one JSON line {\"dataset\", \"seconds\", \"rows\", \"split\", \"beams\",
\"exclude_history\"}; \"rows\" is train's row format. Exit status 2 on bad input.
";

struct Args {
    run: PathBuf,
    stage: String,
    split: EvalSplit,
    beams: Option<usize>,
    threads: Option<usize>,
    exclude_history: bool,
}

fn main() -> ExitCode {
    let started = Instant::now();
    cli::main("eval", HELP, |args| run(&parse_args(args)?, started))
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut f = Flags::new("see eval --help", args);
    let mut a = Args {
        run: PathBuf::new(),
        stage: "ilrec".into(),
        split: EvalSplit::Test,
        beams: None,
        threads: None,
        exclude_history: false,
    };
    let mut run_given = false;
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--run" => {
                a.run = PathBuf::from(f.value(flag)?);
                run_given = true;
            }
            "--stage" => a.stage = f.value(flag)?,
            "--split" => {
                a.split = match f.value(flag)?.as_str() {
                    "test" => EvalSplit::Test,
                    "valid" => EvalSplit::Valid,
                    other => return Err(f.error(format!("--split {other}: use test or valid"))),
                }
            }
            "--beams" => a.beams = Some(f.positive(flag)?),
            "--threads" => a.threads = Some(f.positive(flag)?),
            "--exclude-history" => a.exclude_history = true,
            other => return Err(f.unknown(other)),
        }
    }
    if !run_given {
        return Err(f.error("--run DIR is required"));
    }
    Ok(a)
}

fn run(args: &Args, started: Instant) -> Result<()> {
    let saved = SavedRun::open(&args.run)?;
    let stage = saved.stage(&args.stage)?;
    let rec = Recommender::from_run(saved, stage)?;
    let cfg = &rec.run.config;
    let examples = rec.examples(args.split)?;
    let evaluator = Evaluator {
        trie: &rec.trie,
        beams: args.beams.unwrap_or(cfg.beams),
        threads: args.threads.unwrap_or(cfg.threads),
        cache: None,
    };
    // The run's own protocol unless --exclude-history asks for RecBole's general-model one.
    let protocol = match args.exclude_history {
        true => Protocol::ExcludeHistory,
        false => cfg.protocol,
    };
    let excluded = rec.exclusions(args.split, protocol)?;
    let split = match args.split {
        EvalSplit::Test => "test",
        EvalSplit::Valid => "valid",
    };
    let name = &rec.stage.name;
    let label = format!("{split} {name}");
    let outcome = evaluator.run(&rec.model, &examples, &excluded, &label)?;
    // The table's last column is the validation NDCG@10 train logged for the stage.
    let log_path = rec.run.dir.join("log.jsonl");
    let valid = match (args.split, log_path.is_file()) {
        (EvalSplit::Test, true) => Some(last_valid(&RunLog::open(&log_path)?, name)),
        _ => None,
    };
    let mut table = ResultsTable::default();
    let metrics = outcome.metrics.mean();
    table.push(result_row(name, metrics, outcome.invalid_rate(), valid));
    let summary = json!({
        "dataset": rec.dataset.name, "seconds": started.elapsed().as_secs_f64(),
        "rows": table.rows_json(), "split": split, "beams": evaluator.beams,
        "protocol": protocol.name(),
    });
    let what = format!(
        "stage {name:?} of {}: {split} split, {} users, {} beams{}",
        rec.run.dir.display(),
        examples.len(),
        evaluator.beams,
        if protocol == Protocol::ExcludeHistory {
            ", history items excluded"
        } else {
            ""
        }
    );
    println!("{what}\n{}\n{summary}", table.to_text());
    Ok(())
}
