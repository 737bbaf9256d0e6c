//! The loop that runs a stage of training (warm-up, SFT, ILRec, ...): the batches in a seeded
//! order, each step's gradients (`gradients.rs`), clipping and the AdamW update on a cosine
//! schedule, logging, validation, and resumable checkpoints.

use super::gradients::{compute_gradients, StepConfig, TrainExample};
use super::loss::ObjectiveTerms;
use super::schedule::Schedule;
use crate::autograd::Params;
use crate::cf::SasRec;
use crate::model::llama::Llama;
use crate::model::weights::{save_params, SafetensorsFile};
use crate::optim::{clip_factor, grad_norm, AdamW, AdamWConfig, CosineSchedule};
use crate::rec::ItemTrie;
use crate::report::{Progress, RunLog};
use crate::rng::Rng;
use crate::{Error, Result};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// Everything a stage of training needs besides the model.
#[derive(Clone, Debug)]
pub struct StageConfig {
    /// `warmup`, `sft`, `ilrec`, ... (log field and checkpoint folder name).
    pub name: String,
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    /// Linear lr warm-up steps, then cosine decay to lr / 10.
    pub warmup_steps: usize,
    pub clip_norm: f32,
    pub weight_decay: f32,
    pub schedule: Schedule,
    pub step: StepConfig,
    /// Seeds the order of the training examples (the same seed gives the same batches).
    pub order_seed: u64,
    /// Save a resumable checkpoint every this many steps (and at the end); 0 = only at the end.
    pub checkpoint_every: usize,
    /// Steps after which `validate` runs (the end is always included).
    pub validate_at: Vec<usize>,
}

/// The batches of a stage: example indices, epoch after epoch of seeded shuffles, cut into
/// `steps` batches of `batch`. A function of its arguments only, so a resumed stage sees exactly
/// the batches an uninterrupted one would.
pub fn batch_order(num_examples: usize, steps: usize, batch: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    let mut pool: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut b = Vec::with_capacity(batch);
        while b.len() < batch && num_examples > 0 {
            if pool.is_empty() {
                pool = (0..num_examples).collect();
                rng.shuffle(&mut pool);
                pool.reverse(); // pop from the back = take in shuffled order
            }
            b.push(pool.pop().unwrap_or(0));
        }
        out.push(b);
    }
    out
}

/// A model being trained with its optimizer and position in the stage.
pub struct StageState {
    pub model: Llama,
    pub optimizer: AdamW,
    /// Steps completed.
    pub step: usize,
}

impl StageState {
    /// A fresh optimizer (norms and biases not decayed) on `model`.
    pub fn start(model: Llama, cfg: &StageConfig) -> StageState {
        let mut optimizer = AdamW::new(AdamWConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        });
        optimizer.set_no_decay(model.no_decay_ids());
        optimizer.allocate_state(&model.params);
        StageState {
            model,
            optimizer,
            step: 0,
        }
    }
}

/// Where a stage's checkpoint lives and what it holds.
pub struct StageCheckpoint {
    pub dir: PathBuf,
}

impl StageCheckpoint {
    pub fn new(dir: PathBuf) -> StageCheckpoint {
        StageCheckpoint { dir }
    }

    /// Saves model, optimizer moments and `{step, log_lines, done}`; written to `<dir>.new`
    /// then moved into place, so a kill mid-save leaves the previous checkpoint whole. A model
    /// with a frozen base (LoRA) saves only its trainable parameters (`trainable.safetensors`):
    /// the base is rebuilt from the stage's start model on load.
    pub fn save(&self, state: &StageState, log_lines: usize, done: bool) -> Result<()> {
        let tmp = self.dir.with_extension("new");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        let params = &state.model.params;
        let trainable: Vec<_> = params.ids().filter(|&id| params.is_trainable(id)).collect();
        if trainable.len() == params.len() {
            state.model.save(&tmp)?;
        } else {
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            save_params(params, &trainable, tmp.join(TRAINABLE_FILE))?;
        }
        let mut moments = Params::new();
        for (name, t) in state.optimizer.state_to_tensors(&state.model.params)? {
            moments.add(&name, t, false)?;
        }
        let ids: Vec<_> = moments.ids().collect();
        save_params(&moments, &ids, tmp.join("optimizer.safetensors"))?;
        let meta = json!({"step": state.step, "log_lines": log_lines, "done": done});
        let meta_path = tmp.join("state.json");
        crate::files::write_atomic(&meta_path, meta.to_string().as_bytes())?;
        // Until the rename below, `load` finds the complete `<dir>.new` when `<dir>` is gone.
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        crate::files::commit(&tmp, &self.dir)
    }

    /// The saved state, if a complete checkpoint exists: (state, log lines, done). `start` is
    /// the model the stage started from: a checkpoint of trainable parameters only (frozen base)
    /// is put back onto it.
    pub fn load(
        &self,
        cfg: &StageConfig,
        start: &Llama,
    ) -> Result<Option<(StageState, usize, bool)>> {
        let dir = if self.dir.join("state.json").exists() {
            self.dir.clone()
        } else if self.dir.with_extension("new").join("state.json").exists() {
            self.dir.with_extension("new")
        } else {
            return Ok(None);
        };
        let meta_path = dir.join("state.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&meta_path, e.to_string()))?;
        let field = |k: &str| {
            meta[k]
                .as_u64()
                .ok_or_else(|| Error::format(&meta_path, format!("missing `{k}`")))
        };
        let (step, log_lines) = (field("step")? as usize, field("log_lines")? as usize);
        let done = meta["done"].as_bool().unwrap_or(false);
        let model = match dir.join(TRAINABLE_FILE).is_file() {
            true => with_trainable_from(start, &dir.join(TRAINABLE_FILE))?,
            false => Llama::from_dir(&dir)?,
        };
        let mut state = StageState::start(model, cfg);
        let moments = SafetensorsFile::open(dir.join("optimizer.safetensors"))?;
        state
            .optimizer
            .load_state(&state.model.params, |name| moments.tensor_f32(name).ok())?;
        state.step = step;
        Ok(Some((state, log_lines, done)))
    }
}

/// The checkpoint file of a model with a frozen base: its trainable parameters only.
const TRAINABLE_FILE: &str = "trainable.safetensors";

/// `start` with every trainable parameter read from `path` (each must be there, same shape).
fn with_trainable_from(start: &Llama, path: &std::path::Path) -> Result<Llama> {
    let file = SafetensorsFile::open(path)?;
    let mut model = start.clone();
    for id in model.params.ids().collect::<Vec<_>>() {
        if model.params.is_trainable(id) {
            let name = model.params.name(id).to_string();
            let value = file.tensor_f32(&name)?;
            model.params.set_value(id, value).map_err(|e| {
                Error::format(path, format!("tensor `{name}` does not fit the model: {e}"))
            })?;
        }
    }
    Ok(model)
}

/// The update that follows [`compute_gradients`]: clip the global gradient norm to
/// `clip_norm`, one AdamW step at `lr`, gradients cleared. Returns the norm before clipping.
/// A non-finite norm is an error naming the first parameter whose gradient is not finite; the
/// weights are then left as they were (no step is taken), so the last checkpoint stays the
/// run's last good state.
pub fn apply_update(
    model: &mut Llama,
    optimizer: &mut AdamW,
    clip_norm: f32,
    lr: f32,
) -> Result<f32> {
    let grad_norm = grad_norm(&model.params);
    if !grad_norm.is_finite() {
        let first = first_non_finite_gradient(&model.params).unwrap_or("none found");
        return Err(Error::Training(format!(
            "the gradient norm is not finite ({grad_norm}); first parameter with a non-finite \
             gradient: {first}"
        )));
    }
    // Clipping is applied inside the update (same bits as scaling the gradients first).
    optimizer.step_scaled(&mut model.params, lr, clip_factor(grad_norm, clip_norm))?;
    model.params.zero_grad();
    Ok(grad_norm)
}

/// The name of the first parameter (in creation order) whose gradient holds a NaN or infinity.
fn first_non_finite_gradient(params: &Params) -> Option<&str> {
    params.ids().find_map(|id| {
        let g = params.grad(id)?.data().ok()?;
        g.iter().any(|x| !x.is_finite()).then(|| params.name(id))
    })
}

/// A step whose loss is not finite stops the run: the error names the stage, the step and each
/// loss term, and says how to continue (the last checkpoint is the last good state).
fn check_finite_loss(t: &ObjectiveTerms, stage: &str, step: usize) -> Result<()> {
    if [t.total, t.ce, t.crr, t.cpd].iter().all(|x| x.is_finite()) {
        return Ok(());
    }
    Err(Error::Training(format!(
        "stage {stage}, step {step}: the loss is not finite (total {}, ce {}, crr {}, cpd {})",
        t.total, t.ce, t.crr, t.cpd
    )))
}

/// Runs the remaining steps of a stage. Every step appends a log record; at `validate_at` steps
/// `validate(model)` gives a validation NDCG@10 that is logged too; checkpoints are saved every
/// `checkpoint_every` steps and at the end.
#[allow(clippy::too_many_arguments)]
pub fn run_stage(
    state: &mut StageState,
    cfg: &StageConfig,
    examples: &[TrainExample],
    trie: &ItemTrie,
    cf: Option<&SasRec>,
    log: &mut RunLog,
    checkpoint: Option<&StageCheckpoint>,
    progress: &mut Progress,
    validate: &mut dyn FnMut(&Llama) -> Result<f64>,
) -> Result<()> {
    let order = batch_order(examples.len(), cfg.steps, cfg.batch, cfg.order_seed);
    let lr_schedule = CosineSchedule {
        base_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        total_steps: cfg.steps,
        min_lr: cfg.lr * 0.1,
    };
    progress.resume_at(state.step);
    while state.step < cfg.steps {
        let started = Instant::now();
        let batch: Vec<&TrainExample> = order[state.step].iter().map(|&i| &examples[i]).collect();
        let step_cfg = StepConfig {
            weights: cfg
                .schedule
                .weights_at(state.step, cfg.steps, cfg.step.weights),
            dropout_seed: Some(Rng::stream_seed(cfg.order_seed, state.step as u64)),
            ..cfg.step.clone()
        };
        let outcome = compute_gradients(&mut state.model, &batch, trie, cf, &step_cfg)?;
        check_finite_loss(&outcome.terms, &cfg.name, state.step + 1)?;
        let lr = lr_schedule.lr(state.step);
        let grad_norm = apply_update(&mut state.model, &mut state.optimizer, cfg.clip_norm, lr)
            .map_err(|e| e.in_stage(&cfg.name, state.step + 1))?;
        state.step += 1;
        let t = outcome.terms;
        let seconds = started.elapsed().as_secs_f64();
        log.append(json!({
            "stage": cfg.name, "step": state.step, "loss": t.total, "ce": t.ce, "crr": t.crr,
            "cpd": t.cpd, "negatives_per_position": t.mean_negatives,
            "positions_with_negatives": t.positions_with_negatives, "positions": t.positions,
            "lr": lr, "grad_norm": grad_norm, "tokens_per_s": outcome.tokens as f64 / seconds.max(1e-9),
        }))?;
        progress.set_note(format!(
            "loss {:.3} neg/pos {:.2}",
            t.total, t.mean_negatives
        ));
        progress.inc(1);
        let last = state.step == cfg.steps;
        if last || cfg.validate_at.contains(&state.step) {
            let ndcg = validate(&state.model)?;
            log.append(json!({"stage": cfg.name, "step": state.step, "valid_ndcg@10": ndcg}))?;
        }
        let periodic = cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
        if let Some(ckpt) = checkpoint {
            if last || periodic {
                ckpt.save(state, log.len(), last)?;
            }
        }
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_order_covers_each_epoch_once_and_is_seeded() {
        let order = batch_order(5, 4, 3, 7); // 12 draws = 2 epochs + 2
        let flat: Vec<usize> = order.concat();
        let mut first: Vec<usize> = flat[..5].to_vec();
        first.sort_unstable();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        let mut second: Vec<usize> = flat[5..10].to_vec();
        second.sort_unstable();
        assert_eq!(second, vec![0, 1, 2, 3, 4]);
        assert_eq!(order, batch_order(5, 4, 3, 7));
        assert_ne!(order, batch_order(5, 4, 3, 8));
    }
}
