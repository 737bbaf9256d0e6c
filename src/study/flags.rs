//! The command line of `study`: its own flags, and every other flag passed on to each cell as a
//! `train` option.

use super::driver::Study;
use super::grid::{parse_protocols, DataSpec, Grid, Method};
use super::select::SearchSpace;
use crate::cli::Flags;
use crate::{Error, Result};
use std::path::PathBuf;

/// `study --help`.
pub const HELP: &str = "study: ILRec vs SFT and the baselines over data sets x seeds, with confidence intervals

Usage: study --out DIR [options] [train options]

Runs one train run folder per cell (a data set and a seed: every method from one SFT warm-up),
appends every method's metrics and per-user ranks to DIR/results.jsonl, and writes
DIR/results.md (mean +- std over seeds, paired bootstrap) and DIR/results-<protocol>.svg.
Rerun the same command to continue: finished cells are skipped, a killed cell resumes.

Grid:
  --grid FILE           a JSON grid: {\"datasets\", \"seeds\", \"methods\", \"protocols\", \"train_args\", \"select\"};
                        a data set is a folder or {\"path\", \"train_args\"} (its own options, e.g. --kcore 0);
                        the flags below override the file, train options add to its train_args
  --datasets DIR,...    data set folders [embedded data/ml-latest-small]
  --seeds S,...         seeds [0,1,2]
  --methods M,...       popularity, sasrec, sft, ilrec, wo-cpo, wo-crr, wo-cpd, final-cpd0,
                        final-cpd-kept, sequential; `ablations` = the five wo-/final- rows; `all` [all]
  --protocols P,...     all-items, exclude-history [both]
Selection on validation (before any test number; recorded in DIR/selection.json):
  --select              choose the lr (by SFT), then alpha, lambda, mu, lens layers (by ILRec) on the
                        validation split, with the first seed; the final cells use the choice
  --select-lr F,...     lr factors times --lr [0.5,1,2]
  --select-alpha A,...  [0.03,0.1,0.3]    --select-lambda L,...  [0.03,0.1,0.3]
  --select-mu M,...     [0.3,1,3]         --select-lens S;S;...  lens-layer specs, `;`-separated [last4;last2;last1]
                        (each --select-* implies --select)
Statistics and output:
  --out DIR             the study folder (required)
  --resamples N         paired-bootstrap resamples of the test users [10000]
  --bootstrap-seed S    [0]
  --report-only         only rebuild results.md and the SVGs from results.jsonl
  --help                this text
Train options: every other option is a train option shared by every cell (see train --help), e.g.
  --train-samples 20000 --test-users 1000 --epochs 1; --valid-users defaults to 0 (all) here.
  --data, --seed, --out, --resume, --ablation, --also-sequential and --schedule are the study's own.
";

/// The command line as a [`Study`] (the grid file read, everything checked but the data).
pub fn parse(args: Vec<String>) -> Result<Study> {
    let mut f = Flags::new("see study --help", args);
    let mut grid_file: Option<PathBuf> = None;
    let mut cli = Grid::default();
    let mut given: Vec<&'static str> = Vec::new();
    let mut space: Option<SearchSpace> = None;
    let mut study = Study::new(PathBuf::new());
    let mut train_args = Vec::new();
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        let list = |f: &mut Flags| -> Result<Vec<String>> {
            let sep = if flag == "--select-lens" { ';' } else { ',' };
            Ok(f.value(flag)?
                .split(sep)
                .map(|s| s.trim().to_string())
                .collect())
        };
        match flag {
            "--grid" => grid_file = Some(PathBuf::from(f.value(flag)?)),
            "--out" => study.out = PathBuf::from(f.value(flag)?),
            "--datasets" => {
                let dirs = list(&mut f)?.into_iter().map(PathBuf::from);
                cli.datasets = dirs.map(DataSpec::new).collect();
                given.push("datasets");
            }
            "--seeds" => {
                cli.seeds = numbers(&list(&mut f)?, &f, flag)?;
                given.push("seeds");
            }
            "--methods" => {
                cli.methods = Method::parse_list(&list(&mut f)?)?;
                given.push("methods");
            }
            "--protocols" => {
                cli.protocols = parse_protocols(&list(&mut f)?)?;
                given.push("protocols");
            }
            "--select" => {
                space.get_or_insert_with(SearchSpace::default);
            }
            "--resamples" => study.resamples = f.positive(flag)?,
            "--bootstrap-seed" => study.bootstrap_seed = f.num(flag)?,
            "--report-only" => study.report_only = true,
            s if s.starts_with("--select-") => {
                let values = list(&mut f)?;
                set_space(space.get_or_insert_with(SearchSpace::default), s, values, &f)?;
            }
            "--ablation" | "--ablations" | "--also-sequential" | "--resume" => {
                return Err(f.error(format!(
                    "{flag} is the study's: use --methods (ablations, sequential); a study resumes by itself"
                )))
            }
            other if other.starts_with("--") => {
                train_args.push(other.to_string());
                train_args.push(f.value(other)?);
            }
            other => return Err(f.unknown(other)),
        }
    }
    if study.out.as_os_str().is_empty() {
        return Err(f.error("--out DIR is required"));
    }
    study.grid = merge(grid_file, cli, &given, space, train_args)?;
    Ok(study)
}

/// The grid: the file's (if any), then the command line's fields that were given.
fn merge(
    file: Option<PathBuf>,
    cli: Grid,
    given: &[&str],
    space: Option<SearchSpace>,
    train_args: Vec<String>,
) -> Result<Grid> {
    let mut grid = Grid::default();
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v = serde_json::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        grid.apply_json(&v, path)?;
    }
    for &field in given {
        match field {
            "datasets" => grid.datasets = cli.datasets.clone(),
            "seeds" => grid.seeds = cli.seeds.clone(),
            "methods" => grid.methods = cli.methods.clone(),
            _ => grid.protocols = cli.protocols.clone(),
        }
    }
    if space.is_some() {
        grid.select = space;
    }
    grid.train_args.extend(train_args);
    Ok(grid)
}

/// `--select-lr 0.5,1` and the like.
fn set_space(space: &mut SearchSpace, flag: &str, values: Vec<String>, f: &Flags) -> Result<()> {
    let floats = || -> Result<Vec<f32>> {
        values
            .iter()
            .map(|v| {
                v.parse()
                    .map_err(|_| f.error(format!("{flag} {v}: not a number")))
            })
            .collect()
    };
    match flag {
        "--select-lr" => space.lr_factors = floats()?,
        "--select-alpha" => space.alpha = floats()?,
        "--select-lambda" => space.lambda = floats()?,
        "--select-mu" => space.mu = floats()?,
        "--select-lens" => space.lens_layers = values,
        other => return Err(f.unknown(other)),
    }
    space.validate()
}

fn numbers(values: &[String], f: &Flags, flag: &str) -> Result<Vec<u64>> {
    values
        .iter()
        .map(|v| {
            v.parse()
                .map_err(|_| f.error(format!("{flag} {v}: not a whole number")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn study_flags_and_train_options_are_told_apart() {
        let s = parse(args(
            "--out x --seeds 3,4 --methods sft,ilrec --epochs 2 --select-alpha 0.1,0.5 --test-users 9",
        ))
        .unwrap();
        assert_eq!(s.grid.seeds, vec![3, 4]);
        assert_eq!(s.grid.methods, vec![Method::Sft, Method::Ilrec]);
        assert_eq!(s.grid.train_args, args("--epochs 2 --test-users 9"));
        let space = s.grid.select.unwrap();
        assert_eq!(space.alpha, vec![0.1, 0.5]);
        assert_eq!(space.mu, SearchSpace::default().mu);
        assert_eq!(s.resamples, 10_000);
    }

    #[test]
    fn bad_command_lines_fail_with_a_hint() {
        for bad in [
            "--seeds 1",
            "--out x --ablation",
            "--out x --methods magic",
            "--out x --seeds one",
            "--out x --select-mu -1",
            "--out x --protocols some",
            "--out x stray",
        ] {
            let err = parse(args(bad))
                .err()
                .unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(err.to_string().contains("hint"), "{bad}: {err}");
        }
    }
}
