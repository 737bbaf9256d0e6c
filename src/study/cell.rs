//! A cell of the study: one data set and one seed, one `train`-equivalent run folder
//! (`pipeline::run`). It trains every method of the grid from a single SFT warm-up (the
//! ablations with the pipeline's `--ablation`, the sequential schedule with
//! `--also-sequential`), then writes one [`Row`] per method and protocol from the run's
//! per-user ranks.
//!
//! Resuming: a cell whose folder holds a `config.json` was started before and is run with
//! `--resume` (finished stages load, a killed stage continues from its last checkpoint).

use super::grid::{Grid, Method};
use super::record::hyper;
use super::results::Row;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::run::{run, RunOptions, RunOutput};
use crate::rec::Protocol;
use crate::{Error, Result};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Cell {
    pub dataset: String,
    pub seed: u64,
    /// The run's config: the shared options (and the selection's choice), this seed, this run
    /// folder, and the pipeline switches the grid's methods need.
    pub cfg: PipelineConfig,
    pub methods: Vec<Method>,
    pub protocols: Vec<Protocol>,
}

impl Cell {
    /// The cell of `dataset` (its name) and `seed` from the data set's config `base`; its run
    /// folder is `<study>/cells/<dataset>/seed-<seed>`.
    pub fn new(grid: &Grid, dataset: &str, base: &PipelineConfig, seed: u64, study: &Path) -> Cell {
        let out = study
            .join("cells")
            .join(dataset)
            .join(format!("seed-{seed}"));
        let cfg = PipelineConfig {
            seed,
            out: Some(out),
            // Only the ablations the grid asks for (each is a whole fine-tuning stage).
            ablations: grid
                .methods
                .iter()
                .filter(|m| m.is_ablation())
                .map(|m| m.key().to_string())
                .collect(),
            also_sequential: grid.methods.contains(&Method::Sequential),
            ..base.clone()
        };
        Cell {
            dataset: dataset.into(),
            seed,
            cfg,
            methods: grid.methods.clone(),
            protocols: grid.protocols.clone(),
        }
    }

    /// `<dataset>/seed-<seed>`, the key of its rows in `results.jsonl`.
    pub fn id(&self) -> String {
        format!("{}/seed-{}", self.dataset, self.seed)
    }

    /// Runs (or resumes) the cell; returns its rows, protocol by protocol, in method order.
    pub fn run(&self) -> Result<Vec<Row>> {
        let out_dir = self.cfg.out.clone().unwrap_or_default();
        let cfg = PipelineConfig {
            resume: out_dir.join("config.json").is_file(),
            ..self.cfg.clone()
        };
        if cfg.resume {
            eprintln!("study: cell {}: resuming {}", self.id(), out_dir.display());
        }
        let opts = RunOptions {
            test: true,
            protocols: self.protocols.clone(),
            extra_ilrec: Vec::new(),
        };
        let out = run(&cfg, &opts)?;
        let mut rows = Vec::new();
        for &protocol in &self.protocols {
            for &method in &self.methods {
                rows.push(self.row(&out, method, protocol)?);
            }
        }
        Ok(rows)
    }

    /// The row of `method` under `protocol` from the run's per-user ranks.
    fn row(&self, out: &RunOutput, method: Method, protocol: Protocol) -> Result<Row> {
        let ranks = out
            .ranks
            .iter()
            .find(|r| r.method == method.row() && r.protocol == protocol)
            .ok_or_else(|| {
                Error::Training(format!(
                    "cell {}: the run has no {} ranks under {}",
                    self.id(),
                    method.row(),
                    protocol.name()
                ))
            })?;
        let test = ranks.test.clone().unwrap_or_default();
        Ok(Row {
            cell: self.id(),
            cell_rows: self.methods.len() * self.protocols.len(),
            dataset: self.dataset.clone(),
            method,
            seed: self.seed,
            protocol,
            valid: ranks.valid.metrics(),
            test: test.metrics(),
            invalid_rate: test.invalid_rate,
            valid_ranks: ranks.valid.ranks.clone(),
            test_ranks: test.ranks,
            test_users: out.test_users.clone(),
            hyper: hyper(&self.cfg),
            run_dir: out.run_dir.display().to_string(),
        })
    }
}
