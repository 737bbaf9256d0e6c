//! `negatives`: the analyses of ILRec's self-hard negatives on a trained run folder (a `train`
//! run or a `study` cell): per block, how the truth ranks under the logit lens and how many
//! negatives the block proposes; how often a mined negative leads to the user's test item (a
//! false negative) against chance; CRR's soft labels there; the negatives per position over
//! fine-tuning. See `study::negatives` for the definitions. Run `negatives --help`.

use ilrec::cli::{self, Flags};
use ilrec::report::RunLog;
use ilrec::study::negatives::analyse_run;
use ilrec::study::negatives_report::{
    depths_table, layers_table, lens_ranks_svg, over_training_svg, to_json,
};
use ilrec::{files, Error, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const HELP: &str = "negatives: ILRec's self-hard negatives, analysed on a trained run folder

Usage: negatives --run DIR [--stages LIST] [--samples N] [--seed S] [--out DIR]

  --run DIR       a train run folder (or a study cell: DIR/cells/<data set>/seed-<s>)
  --stages LIST   comma list of models: warmup (the SFT warm-up, where every fine-tune starts)
                  and trained stages [warmup,sft,ilrec,ilrec w/o crr: those the run has]
  --samples N     seeded sample of training samples, 0 = all [1000]
  --seed S        the sample's seed [0]
  --out DIR       where the outputs go [DIR/analysis]
  --help          this text

Writes negatives.json (the sums), negatives.md (two tables), lens-ranks.svg and
negatives-over-training.svg. Exit status 2 on bad input.
";

struct Args {
    run: PathBuf,
    stages: Option<Vec<String>>,
    samples: usize,
    seed: u64,
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    cli::main("negatives", HELP, |args| run(&parse_args(args)?))
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut f = Flags::new("see negatives --help", args);
    let mut a = Args {
        run: PathBuf::new(),
        stages: None,
        samples: 1000,
        seed: 0,
        out: None,
    };
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--run" => a.run = PathBuf::from(f.value(flag)?),
            "--stages" => {
                let list = f.value(flag)?;
                a.stages = Some(list.split(',').map(|s| s.trim().to_string()).collect());
            }
            "--samples" => a.samples = f.num(flag)?,
            "--seed" => a.seed = f.num(flag)?,
            "--out" => a.out = Some(PathBuf::from(f.value(flag)?)),
            other => return Err(f.unknown(other)),
        }
    }
    if a.run.as_os_str().is_empty() {
        return Err(f.error("--run DIR is required"));
    }
    Ok(a)
}

/// The default models: the warm-up and those of sft, ilrec, ilrec w/o crr the run trained.
fn default_stages(run: &Path) -> Vec<String> {
    let mut stages = vec!["warmup".to_string()];
    for name in ["sft", "ilrec", "ilrec w/o crr"] {
        let folder = run.join("checkpoints").join(name.replace([' ', '/'], "_"));
        if folder.is_dir() {
            stages.push(name.into());
        }
    }
    stages
}

fn run(a: &Args) -> Result<()> {
    let stages = a.stages.clone().unwrap_or_else(|| default_stages(&a.run));
    let analyses = analyse_run(&a.run, &stages, a.samples, a.seed)?;
    let out = a.out.clone().unwrap_or_else(|| a.run.join("analysis"));
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let json = serde_json::to_string_pretty(&to_json(&analyses))
        .map_err(|e| Error::format(&out, e.to_string()))?;
    files::write_atomic(&out.join("negatives.json"), json.as_bytes())?;
    let md = format!(
        "# Self-hard negatives: {}\n\n{} training samples (seed {}).\n\n## Per block\n\n{}\n## Mined negatives and false negatives, per response depth\n\n{}",
        a.run.display(),
        analyses.first().map_or(0, |s| s.samples),
        a.seed,
        layers_table(&analyses),
        depths_table(&analyses)
    );
    files::write_atomic(&out.join("negatives.md"), md.as_bytes())?;
    files::write_atomic(
        &out.join("lens-ranks.svg"),
        lens_ranks_svg(&analyses).as_bytes(),
    )?;
    let log = RunLog::open(&a.run.join("log.jsonl"))?;
    let fine_tunes: Vec<&str> = stages
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "warmup")
        .collect();
    let curve = over_training_svg(&log, &fine_tunes, 50);
    files::write_atomic(&out.join("negatives-over-training.svg"), curve.as_bytes())?;
    println!("{md}\nwrote {}", out.display());
    Ok(())
}
