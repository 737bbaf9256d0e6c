//! The study, start to end ([`run_study`]): check the grid and the folder, select on
//! validation when asked (frozen per data set in `selection.json`), run every cell not yet in
//! `results.jsonl` (resuming a killed one), then write the report from the rows.
//!
//! The folder:
//!
//! ```text
//! DIR/study.json              what the cells mean (methods, protocols, train options, search space)
//! DIR/selection.json          with --select: per data set the trials, the choice, the budget
//! DIR/select/<data set>/...   the selection's run folders (validation only)
//! DIR/cells/<data set>/seed-<s>/   one train run folder per cell
//! DIR/results.jsonl           one line per data set x method x seed x protocol, per-user ranks
//! DIR/results.md, DIR/results-<protocol>.svg   the report
//! ```

use super::cell::Cell;
use super::grid::Grid;
use super::report::{write_report, ReportOptions};
use super::results::ResultsFile;
use super::select::{select, Choice};
use crate::pipeline::results::write_json;
use crate::report::progress::format_duration;
use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A study: the grid, its folder and the report's settings.
#[derive(Clone, Debug)]
pub struct Study {
    pub grid: Grid,
    pub out: PathBuf,
    /// Paired-bootstrap resamples (default 10,000) and their seed (default 0).
    pub resamples: usize,
    pub bootstrap_seed: u64,
    /// Only rebuild the report from `results.jsonl`.
    pub report_only: bool,
}

impl Study {
    pub fn new(out: PathBuf) -> Study {
        Study {
            grid: Grid::default(),
            out,
            resamples: 10_000,
            bootstrap_seed: 0,
            report_only: false,
        }
    }
}

/// Runs (or continues) the study; returns the markdown report.
pub fn run_study(study: &Study) -> Result<String> {
    let grid = &study.grid;
    std::fs::create_dir_all(&study.out).map_err(|e| Error::io(&study.out, e))?;
    let mut results = ResultsFile::open(&study.out.join("results.jsonl"))?;
    if !study.report_only {
        grid.validate()?;
        check_identity(&study.out, grid)?;
        let choices = match &grid.select {
            Some(_) => select_all(study)?,
            None => HashMap::new(),
        };
        for data in &grid.datasets {
            let name = data.name();
            let mut base = grid.base_config(data)?;
            if let Some(choice) = choices.get(&name) {
                base = choice.apply(&base);
            }
            for &seed in &grid.seeds {
                let cell = Cell::new(grid, &name, &base, seed, &study.out);
                if results.has_cell(&cell.id()) {
                    eprintln!("study: cell {}: finished before, skipped", cell.id());
                    continue;
                }
                let started = Instant::now();
                let rows = cell.run()?;
                results.append(rows)?;
                let took = format_duration(started.elapsed().as_secs_f64());
                eprintln!("study: cell {}: done in {took}", cell.id());
            }
        }
    }
    let opts = ReportOptions {
        resamples: study.resamples,
        seed: study.bootstrap_seed,
        hyper_parameters: hyper_parameters_line(&study.out)?,
    };
    write_report(&study.out, &results.rows, &opts)
}

/// `study.json` holds [`Grid::identity`]; a folder started with another one is refused (its
/// finished cells would mean something else). Data sets new to the folder are added to it.
fn check_identity(dir: &Path, grid: &Grid) -> Result<()> {
    let path = dir.join("study.json");
    let mut now = grid.identity();
    let Some(mut saved) = read_json(&path)? else {
        return write_json(&path, &now);
    };
    let refuse = |what: String| {
        Error::config(
            format!("{} was started with {what}", dir.display()),
            "use a new --out, or the same methods, protocols, train options and search space",
        )
    };
    let (old_sets, new_sets) = (saved["datasets"].take(), now["datasets"].take());
    if saved != now {
        return Err(refuse(format!("another grid: {saved} (now {now})")));
    }
    let mut merged = old_sets.as_object().cloned().unwrap_or_default();
    for (name, args) in new_sets.as_object().into_iter().flatten() {
        match merged.get(name) {
            Some(old) if old != args => {
                return Err(refuse(format!(
                    "other options for {name}: {old} (now {args})"
                )))
            }
            Some(_) => {}
            None => {
                merged.insert(name.clone(), args.clone());
            }
        }
    }
    now["datasets"] = Value::Object(merged);
    write_json(&path, &now)
}

/// Selection for every data set not in `selection.json` yet (each written as soon as it is
/// chosen); returns the choice per data-set name.
fn select_all(study: &Study) -> Result<HashMap<String, Choice>> {
    let grid = &study.grid;
    let space = grid.select.clone().unwrap_or_default();
    let path = study.out.join("selection.json");
    let mut saved: Map<String, Value> = match read_json(&path)? {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let mut choices = HashMap::new();
    for data in &grid.datasets {
        let name = data.name();
        if !saved.contains_key(&name) {
            let seed = grid.seeds[0];
            let base = grid.base_config(data)?;
            let base = crate::pipeline::config::PipelineConfig { seed, ..base };
            eprintln!("study: selecting on validation for {name} (seed {seed})");
            let record = select(&base, &name, &space, &study.out)?;
            if record["test_evaluations"] != json!(0) {
                return Err(Error::Training(format!(
                    "selection for {name} ranked test users: {}",
                    record["test_evaluations"]
                )));
            }
            saved.insert(name.clone(), record);
            write_json(&path, &Value::Object(saved.clone()))?;
        } else {
            eprintln!("study: selection for {name}: frozen in {}", path.display());
        }
        choices.insert(name.clone(), Choice::from_json(&saved[&name]["chosen"])?);
    }
    Ok(choices)
}

/// The report's line on where the hyper-parameters came from.
fn hyper_parameters_line(dir: &Path) -> Result<String> {
    let Some(Value::Object(saved)) = read_json(&dir.join("selection.json"))? else {
        return Ok(
            "Hyper-parameters: the study's train options, not selected on validation.".into(),
        );
    };
    let chosen: Vec<String> = saved
        .iter()
        .map(|(name, r)| format!("{name}: {}", r["chosen"]))
        .collect();
    Ok(format!(
        "Hyper-parameters chosen on the validation split before any test number (selection.json; test evaluations during selection: 0): {}.",
        chosen.join("; ")
    ))
}

/// A JSON file, or None when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::format(path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}
