//! Stage "train a stage, resumably": the run log with the resume bookkeeping ([`Journal`]), the
//! stage settings derived from the config, and [`run_resumable`], which runs, resumes or skips a
//! stage of `ilrec::trainer::run_stage`.

use super::config::PipelineConfig;
use super::evaluate::Evaluator;
use crate::cf::SasRec;
use crate::ilrec::gradients::{StepConfig, TrainExample};
use crate::ilrec::schedule::Schedule;
use crate::ilrec::trainer::{run_stage, StageCheckpoint, StageConfig, StageState};
use crate::model::llama::Llama;
use crate::rec::{Exclusions, ItemTrie};
use crate::report::{Progress, RunLog};
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// The run log plus where the last completed stage ended in it (for resuming).
pub struct Journal {
    pub log: RunLog,
    resume: bool,
    /// Log lines written up to the end of the last completed stage.
    stage_boundary: usize,
    /// `ckpt/`: one resumable checkpoint folder per stage.
    ckpt_root: PathBuf,
}

impl Journal {
    /// Opens (resume) or creates `log.jsonl` and `ckpt/` in `run_dir`.
    pub fn open(run_dir: &Path, resume: bool) -> Result<Journal> {
        let log_path = run_dir.join("log.jsonl");
        let ckpt_root = run_dir.join("ckpt");
        std::fs::create_dir_all(&ckpt_root).map_err(|e| Error::io(&ckpt_root, e))?;
        let log = match resume && log_path.exists() {
            true => RunLog::open(&log_path)?,
            false => RunLog::create(&log_path)?,
        };
        Ok(Journal {
            log,
            resume,
            stage_boundary: 0,
            ckpt_root,
        })
    }
}

/// What a stage trains on.
pub struct StageInputs<'a> {
    pub examples: &'a [TrainExample],
    pub valid: &'a [TrainExample],
    /// What each validation ranking leaves out (the run's protocol).
    pub valid_excluded: &'a Exclusions,
    pub trie: &'a ItemTrie,
    pub cf: Option<&'a SasRec>,
    pub evaluator: &'a Evaluator<'a>,
}

/// Optimizer steps for `epochs` passes over `examples` in batches of `batch` (at least 1).
pub fn steps_for(epochs: f64, examples: usize, batch: usize) -> usize {
    ((epochs * examples as f64) / batch as f64).ceil().max(1.0) as usize
}

/// The settings of one stage from the run config: cosine lr with `warmup_fraction` warm-up,
/// clip and weight decay from the config, validation halfway and at the end.
pub fn stage_config(
    cfg: &PipelineConfig,
    name: &str,
    steps: usize,
    step: StepConfig,
    schedule: Schedule,
    order_seed: u64,
) -> StageConfig {
    let warmup = ((steps as f64 * cfg.warmup_fraction) as usize)
        .max(1)
        .min(steps);
    StageConfig {
        name: name.into(),
        steps,
        batch: cfg.batch,
        lr: cfg.lr,
        warmup_steps: warmup,
        clip_norm: cfg.clip_norm,
        weight_decay: cfg.weight_decay,
        schedule,
        step,
        order_seed,
        checkpoint_every: cfg.checkpoint_every,
        validate_at: vec![steps / 2],
    }
}

/// Runs (or resumes, or skips when already done) one training stage; returns the trained model.
/// On resume: a finished stage is loaded from its checkpoint; a stage killed midway continues
/// from its last checkpoint with the log cut back to it; a stage that never checkpointed starts
/// over with the log cut back to the end of the previous stage.
pub fn run_resumable(
    model: Llama,
    cfg: &StageConfig,
    inputs: &StageInputs,
    journal: &mut Journal,
) -> Result<Llama> {
    let ckpt = StageCheckpoint::new(journal.ckpt_root.join(file_name(&cfg.name)));
    let mut state = StageState::start(model, cfg);
    if journal.resume {
        match ckpt.load(cfg, &state.model)? {
            Some((saved, log_lines, true)) => {
                eprintln!("{}: finished before the restart, loaded", cfg.name);
                journal.stage_boundary = log_lines;
                return Ok(saved.model);
            }
            Some((saved, log_lines, false)) => {
                eprintln!("{}: resuming from step {}", cfg.name, saved.step);
                state = saved;
                journal.log.truncate(log_lines)?;
            }
            None => journal.log.truncate(journal.stage_boundary)?,
        }
        journal.resume = false; // every later stage starts fresh
    }
    let mut progress = Progress::new(&cfg.name, cfg.steps);
    let mut validate = |m: &Llama| -> Result<f64> {
        let outcome = inputs.evaluator.run(
            m,
            inputs.valid,
            inputs.valid_excluded,
            &format!("  valid {}", cfg.name),
        )?;
        Ok(outcome.metrics.mean().ndcg_at(10).unwrap_or(0.0))
    };
    run_stage(
        &mut state,
        cfg,
        inputs.examples,
        inputs.trie,
        inputs.cf,
        &mut journal.log,
        Some(&ckpt),
        &mut progress,
        &mut validate,
    )?;
    journal.stage_boundary = journal.log.len();
    Ok(state.model)
}

/// A stage or method name as a folder name (`ilrec w/o cpo` -> `ilrec_w_o_cpo`).
pub fn file_name(name: &str) -> String {
    name.replace([' ', '/'], "_")
}

/// The last validation NDCG@10 the log holds for a stage.
pub fn last_valid(log: &RunLog, stage: &str) -> f64 {
    log.records()
        .iter()
        .rev()
        .find(|r| r["stage"] == stage && r.get("valid_ndcg@10").is_some())
        .and_then(|r| r["valid_ndcg@10"].as_f64())
        .unwrap_or(f64::NAN)
}
