//! `results.jsonl`: one line per (data set, method, seed, protocol) with every metric on
//! validation and test and the per-user ranks they were computed from, so every number of the
//! report can be recomputed from this file alone.
//!
//! A cell (one data set and seed: one run folder) appends all its lines in one write, each
//! carrying the cell's id and how many lines the cell has. On reading, a cell with fewer lines
//! (a kill mid-append) and a torn last line are dropped, and the file is rewritten without them,
//! so the cell runs again (from its checkpoints) and its lines are never doubled.

use super::grid::Method;
use crate::rec::MetricsMean;
use crate::rec::Protocol;
use crate::rec::KS;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// `<data set>/seed-<seed>`: the cell that wrote the line.
    pub cell: String,
    /// Lines the cell writes in all.
    pub cell_rows: usize,
    pub dataset: String,
    pub method: Method,
    pub seed: u64,
    pub protocol: Protocol,
    /// Means over the validation subset and over the test users.
    pub valid: MetricsMean,
    pub test: MetricsMean,
    /// Fraction of returned test entries that were not real, distinct items.
    pub invalid_rate: f64,
    /// 0-based rank of each validation / test user's target (None: not in the list).
    pub valid_ranks: Vec<Option<usize>>,
    pub test_ranks: Vec<Option<usize>>,
    /// The data set's user ids, in `test_ranks` order (pairs users across methods and seeds).
    pub test_users: Vec<String>,
    /// The hyper-parameters the cell trained with (lr, alpha, lambda, mu, lens layers, sizes).
    pub hyper: Value,
    pub run_dir: String,
}

impl Row {
    pub fn to_json(&self) -> Value {
        let ranks = |r: &[Option<usize>]| -> Vec<Value> { r.iter().map(|x| json!(x)).collect() };
        json!({
            "cell": self.cell, "cell_rows": self.cell_rows, "dataset": self.dataset,
            "method": self.method.key(), "label": self.method.label(), "seed": self.seed,
            "protocol": self.protocol.name(), "valid": self.valid.to_json(),
            "test": self.test.to_json(), "invalid_rate": self.invalid_rate,
            "hyper": self.hyper, "run_dir": self.run_dir,
            "valid_ranks": ranks(&self.valid_ranks), "test_users": self.test_users,
            "test_ranks": ranks(&self.test_ranks),
        })
    }

    pub fn from_json(v: &Value) -> Result<Row> {
        let bad = |what: &str| Error::format("results.jsonl", format!("bad field \"{what}\""));
        let text = |k: &str| v[k].as_str().map(String::from).ok_or_else(|| bad(k));
        let uint = |k: &str| v[k].as_u64().ok_or_else(|| bad(k));
        let ranks = |k: &str| -> Result<Vec<Option<usize>>> {
            let list = v[k].as_array().ok_or_else(|| bad(k))?;
            list.iter()
                .map(|x| match x {
                    Value::Null => Ok(None),
                    x => x.as_u64().map(|r| Some(r as usize)).ok_or_else(|| bad(k)),
                })
                .collect()
        };
        let users = v["test_users"]
            .as_array()
            .ok_or_else(|| bad("test_users"))?;
        Ok(Row {
            cell: text("cell")?,
            cell_rows: uint("cell_rows")? as usize,
            dataset: text("dataset")?,
            method: Method::from_key(&text("method")?)?,
            seed: uint("seed")?,
            protocol: Protocol::parse(&text("protocol")?)?,
            valid: metrics_from_json(&v["valid"]).ok_or_else(|| bad("valid"))?,
            test: metrics_from_json(&v["test"]).ok_or_else(|| bad("test"))?,
            invalid_rate: v["invalid_rate"]
                .as_f64()
                .ok_or_else(|| bad("invalid_rate"))?,
            valid_ranks: ranks("valid_ranks")?,
            test_ranks: ranks("test_ranks")?,
            test_users: users
                .iter()
                .map(|u| u.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("test_users"))?,
            hyper: v["hyper"].clone(),
            run_dir: text("run_dir")?,
        })
    }
}

/// `MetricsMean::to_json` read back.
fn metrics_from_json(v: &Value) -> Option<MetricsMean> {
    let mut m = MetricsMean {
        users: v["users"].as_u64()? as usize,
        hit: [0.0; 4],
        ndcg: [0.0; 4],
    };
    for (j, k) in KS.iter().enumerate() {
        m.hit[j] = v[format!("hit@{k}")].as_f64()?;
        m.ndcg[j] = v[format!("ndcg@{k}")].as_f64()?;
    }
    Some(m)
}

/// The study's `results.jsonl`.
pub struct ResultsFile {
    path: PathBuf,
    /// Every line of every complete cell, in file order.
    pub rows: Vec<Row>,
}

impl ResultsFile {
    /// Reads `path` (absent: no rows), keeps the complete cells and rewrites the file when
    /// anything was dropped (said on stderr).
    pub fn open(path: &Path) -> Result<ResultsFile> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(path, e)),
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut rows = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let parsed = serde_json::from_str::<Value>(line)
                .map_err(|e| e.to_string())
                .and_then(|v| Row::from_json(&v).map_err(|e| e.to_string()));
            match parsed {
                Ok(row) => rows.push(row),
                // A kill mid-append tears the last line only.
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                Err(e) => return Err(Error::format(path, format!("line {}: {e}", i + 1))),
            }
        }
        let mut count: HashMap<String, usize> = HashMap::new();
        for r in &rows {
            *count.entry(r.cell.clone()).or_default() += 1;
        }
        let total = lines.len();
        rows.retain(|r| count[&r.cell] == r.cell_rows);
        let file = ResultsFile {
            path: path.to_path_buf(),
            rows,
        };
        if total != file.rows.len() {
            eprintln!(
                "{}: dropped {} lines of unfinished cells (they run again)",
                path.display(),
                total - file.rows.len()
            );
            file.rewrite()?;
        }
        Ok(file)
    }

    /// Whether the cell's lines are all in the file.
    pub fn has_cell(&self, cell: &str) -> bool {
        self.rows.iter().any(|r| r.cell == cell)
    }

    /// Appends a cell's lines in one write, then syncs the file.
    pub fn append(&mut self, rows: Vec<Row>) -> Result<()> {
        let mut text = String::new();
        for r in &rows {
            text.push_str(&r.to_json().to_string());
            text.push('\n');
        }
        let io = |e| Error::io(&self.path, e);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        self.rows.extend(rows);
        Ok(())
    }

    fn rewrite(&self) -> Result<()> {
        let mut text = String::new();
        for r in &self.rows {
            text.push_str(&r.to_json().to_string());
            text.push('\n');
        }
        crate::files::write_atomic(&self.path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::RankingMetrics;

    fn row(cell: &str, cell_rows: usize, method: Method) -> Row {
        let ranks = vec![Some(0), None, Some(12)];
        let mut m = RankingMetrics::new();
        ranks.iter().for_each(|&r| m.add(r));
        Row {
            cell: cell.into(),
            cell_rows,
            dataset: "tiny".into(),
            method,
            seed: 1,
            protocol: Protocol::ExcludeHistory,
            valid: m.mean(),
            test: m.mean(),
            invalid_rate: 0.0,
            valid_ranks: ranks.clone(),
            test_ranks: ranks,
            test_users: vec!["7".into(), "8".into(), "9".into()],
            hyper: json!({"lr": 0.002}),
            run_dir: "runs/x".into(),
        }
    }

    #[test]
    fn a_row_survives_json_and_unfinished_cells_are_dropped() {
        let r = row("tiny/seed-1", 2, Method::WithoutCrr);
        assert_eq!(Row::from_json(&r.to_json()).unwrap(), r);

        let dir = std::env::temp_dir().join(format!("ilrec-study-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut file = ResultsFile::open(&path).unwrap();
        file.append(vec![row("a", 2, Method::Sft), row("a", 2, Method::Ilrec)])
            .unwrap();
        // Cell b was cut after one of its two lines, and a third line is torn.
        let b = row("b", 2, Method::Sft).to_json().to_string() + "\n";
        let torn = &row("b", 2, Method::Ilrec).to_json().to_string()[..40];
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "{b}{torn}").unwrap();
        let reopened = ResultsFile::open(&path).unwrap();
        assert!(reopened.has_cell("a") && !reopened.has_cell("b"));
        assert_eq!(reopened.rows.len(), 2);
        // The file itself was rewritten without them.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
