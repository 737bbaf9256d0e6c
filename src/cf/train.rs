//! Training SASRec on the training split, model selection on the validation split.
//!
//! Data: one sequence per user = every item before the user's validation target (exactly the
//! items the training samples cover), rebuilt from the split's training samples so that the
//! split's history truncation does not shorten it, then cut into windows of at most
//! `max_len + 1` items (`windows.rs`; by default all of them, so every training target is used
//! once per epoch). Each epoch shuffles the windows (seeded), cuts them into batches, and takes
//! one AdamW step per batch on the cross-entropy over all items at every position of the
//! windows. RecBole instead makes every prefix its own sample with a loss at its last position
//! only: the same targets, each with its full `max_len` items of context, for `max_len` times
//! more forward passes.
//!
//! After each epoch: full-ranking NDCG@10 on the validation samples; the best epoch's parameters
//! are kept, and training stops after `patience` epochs without improvement.

use super::batch::PaddedBatch;
use super::sasrec::SasRec;
use super::windows::{TrainOn, Window};
use crate::autograd::Tape;
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::rec::{Exclusions, MetricsMean, Split};
use crate::rng::Rng;
use crate::{Error, Result};
use std::time::Instant;

/// Training hyper-parameters. Defaults (README "SASRec"): every window of every user (the last
/// window alone leaves 68% of ml-latest-small's targets out and scored about half the test
/// NDCG@10: BENCHMARKS.md "SASRec: ours vs RecBole"); batch 64 windows, lr 5e-3, no weight decay
/// (dropout regularises), clip 5, patience 10. Batch and lr were tuned when an epoch was one
/// window per user (1e-3 with 128 users per step moved the loss by 0.3 nats in 3 epochs; 5e-3
/// with 64 reached popularity's validation NDCG@10 in 6 epochs); the patience because
/// validation NDCG@10 over 671 users is noisy (+-0.004 between epochs).
#[derive(Debug, Clone, PartialEq)]
pub struct SasRecTrainOptions {
    /// Most epochs (passes over the training windows).
    pub epochs: usize,
    /// Windows (rows of at most `max_len + 1` items) per step.
    pub batch: usize,
    pub lr: f32,
    pub weight_decay: f32,
    /// Stop after this many epochs without a better validation NDCG@10.
    pub patience: usize,
    /// Global gradient-norm clip (None: off).
    pub clip_norm: Option<f32>,
    /// Seeds the shuffles and the dropout masks.
    pub seed: u64,
    /// Which windows of each user's sequence an epoch trains on (`windows.rs`).
    pub train_on: TrainOn,
    /// With `AllWindows`: the fewest items of context a target is trained with (`windows.rs`).
    /// Default 25, chosen on validation against 1 (the plain windows): +0.009 to +0.013
    /// validation NDCG@10 on ml-latest-small in every seed and setting tried (BENCHMARKS.md,
    /// "SASRec: ours vs RecBole's"), for about twice the work per epoch.
    pub min_context: usize,
}

impl Default for SasRecTrainOptions {
    fn default() -> Self {
        SasRecTrainOptions {
            epochs: 200,
            batch: 64,
            lr: 5e-3,
            weight_decay: 0.0,
            patience: 10,
            clip_norm: Some(5.0),
            seed: 0,
            train_on: TrainOn::AllWindows,
            min_context: 25,
        }
    }
}

/// What one epoch did (for progress output).
#[derive(Debug, Clone, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f32,
    pub valid: MetricsMean,
    /// Whether this epoch is the best so far (its parameters are kept).
    pub improved: bool,
    /// Seconds since training started.
    pub seconds: f64,
}

/// The outcome of [`SasRec::train`]; the model holds the best epoch's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// Epochs run (early stopping may end before `epochs`).
    pub epochs_run: usize,
    /// The epoch whose parameters were kept (0: the untrained model was never beaten).
    pub best_epoch: usize,
    /// Validation metrics of the kept parameters.
    pub best_valid: MetricsMean,
    pub seconds: f64,
}

/// Each user's training sequence (dataset ids, oldest first), for users with at least one
/// training sample (shorter users give no (input, target) pair). Built from the targets of the
/// user's training samples, which the split lists in time order, users contiguous: the first
/// sample's history is the user's first item, then every target follows.
pub fn training_sequences(split: &Split) -> Result<Vec<Vec<u32>>> {
    let mut seqs: Vec<Vec<u32>> = Vec::new();
    let mut current_user = None;
    for (i, s) in split.train.iter().enumerate() {
        if current_user != Some(s.user) {
            // The first training sample of a user has exactly one history item.
            if s.history.len() != 1 {
                return Err(Error::config(
                    format!(
                        "training sample {i} (user {}) starts the user's samples with a history \
                         of {} items",
                        s.user,
                        s.history.len()
                    ),
                    "pass a split from rec::leave_one_out (users contiguous, samples in time order)",
                ));
            }
            seqs.push(s.history.clone());
            current_user = Some(s.user);
        }
        if let Some(seq) = seqs.last_mut() {
            seq.push(s.target);
        }
    }
    Ok(seqs)
}

impl SasRec {
    /// Trains on `split.train`, selects on `split.valid` (NDCG@10, every item ranked); see the
    /// module docs. `progress` is called after every epoch.
    pub fn train(
        &mut self,
        split: &Split,
        opts: &SasRecTrainOptions,
        progress: impl FnMut(&EpochReport),
    ) -> Result<TrainSummary> {
        let all_items = Exclusions::all_items(split.valid.len());
        self.train_excluding(split, &all_items, opts, progress)
    }

    /// [`Self::train`], with model selection on validation rankings that leave out
    /// `valid_excluded.of(i)` for `split.valid[i]` (the evaluation protocol of the run).
    pub fn train_excluding(
        &mut self,
        split: &Split,
        valid_excluded: &Exclusions,
        opts: &SasRecTrainOptions,
        mut progress: impl FnMut(&EpochReport),
    ) -> Result<TrainSummary> {
        check_options(opts)?;
        let start = Instant::now();
        let seqs = opts.train_on.windows(
            &training_sequences(split)?,
            self.config.max_len,
            opts.min_context,
        );
        if seqs.is_empty() {
            return Err(Error::config(
                "the split has no training samples",
                "SASRec needs users with at least 4 interactions",
            ));
        }
        let mut rng = Rng::new(opts.seed);
        let mut optimizer = AdamW::new(AdamWConfig {
            lr: opts.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: opts.weight_decay,
        });
        optimizer.set_no_decay(self.no_decay_params());
        let validate = |model: &SasRec| -> Result<MetricsMean> {
            Ok(model
                .evaluate_excluding(&split.valid, valid_excluded)?
                .mean())
        };
        let mut best_valid = validate(self)?;
        let (mut best_params, mut best_epoch, mut epochs_run) = (self.params.clone(), 0, 0);
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        for epoch in 1..=opts.epochs {
            rng.shuffle(&mut order);
            let train_loss = self.epoch(&seqs, &order, opts, &mut optimizer, &mut rng)?;
            let valid = validate(self)?;
            epochs_run = epoch;
            let improved = valid.ndcg_at(10) > best_valid.ndcg_at(10);
            if improved {
                (best_valid, best_params, best_epoch) = (valid, self.params.clone(), epoch);
            }
            progress(&EpochReport {
                epoch,
                train_loss,
                valid,
                improved,
                seconds: start.elapsed().as_secs_f64(),
            });
            if epoch - best_epoch >= opts.patience {
                break;
            }
        }
        self.params = best_params;
        Ok(TrainSummary {
            epochs_run,
            best_epoch,
            best_valid,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// One pass over the windows in `order`; returns the mean step loss.
    fn epoch(
        &mut self,
        seqs: &[Window],
        order: &[usize],
        opts: &SasRecTrainOptions,
        optimizer: &mut AdamW,
        rng: &mut Rng,
    ) -> Result<f32> {
        let (mut loss_sum, mut steps) = (0.0f64, 0usize);
        for chunk in order.chunks(opts.batch) {
            let rows: Vec<&[u32]> = chunk.iter().map(|&w| seqs[w].items.as_slice()).collect();
            let mut batch =
                PaddedBatch::training(&rows, self.config.max_len, self.config.num_items)?;
            for (b, &w) in chunk.iter().enumerate() {
                batch.context_only_before(b, seqs[w].first_target);
            }
            let mut tape = Tape::new();
            let loss = self.loss(&mut tape, &batch, rng)?;
            loss_sum += tape.value(loss).item()? as f64;
            let grads = tape.backward(loss)?;
            drop(tape); // release the tape's references so the update is in place
            self.params.accumulate(&grads)?;
            drop(grads);
            if let Some(max_norm) = opts.clip_norm {
                clip_grad_norm(&mut self.params, max_norm)?;
            }
            optimizer.step(&mut self.params, opts.lr)?;
            self.params.zero_grad();
            steps += 1;
        }
        Ok((loss_sum / steps.max(1) as f64) as f32)
    }
}

fn check_options(opts: &SasRecTrainOptions) -> Result<()> {
    let ok = opts.epochs > 0
        && opts.batch > 0
        && opts.patience > 0
        && opts.lr.is_finite()
        && opts.lr > 0.0
        && opts.weight_decay >= 0.0;
    if !ok {
        return Err(Error::config(
            format!("bad SASRec training options {opts:?}"),
            "epochs, batch, patience >= 1; lr > 0; weight_decay >= 0",
        ));
    }
    Ok(())
}
