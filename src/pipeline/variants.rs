//! The methods a run fine-tunes from the warm-up checkpoint: the SFT baseline continued, ILRec,
//! with `--ablation` one variant per removed part (`--ablations` a chosen few of them), and with
//! `--also-sequential` ILRec under the sequential schedule.

use super::ablations::ABLATIONS;
use super::config::PipelineConfig;
use crate::ilrec::gradients::StepConfig;
use crate::ilrec::schedule::Schedule;
use crate::ilrec::ObjectiveWeights;

/// ILRec's step from the config; `top` = the model's number of blocks; `item_vocab` = CPD's
/// V_item (the SID tokens; None in title mode: the whole vocabulary).
pub fn ilrec_step(cfg: &PipelineConfig, top: usize, item_vocab: Option<Vec<u32>>) -> StepConfig {
    StepConfig {
        weights: ObjectiveWeights {
            alpha: cfg.alpha,
            lambda: cfg.lambda,
            mu: cfg.mu,
            tau_r: cfg.tau_r,
        },
        lens_layers: lens_layers(cfg, top),
        negative_layers: None,
        margin: cfg.margin,
        tau: cfg.tau,
        ensemble: cfg.ensemble,
        scope: cfg.negatives_scope,
        item_vocab,
        dropout_seed: None, // set per step by the trainer
    }
}

/// S: by default the four blocks below the top, clipped to >= 1 (validated by `plan_model`).
pub fn lens_layers(cfg: &PipelineConfig, top: usize) -> Vec<usize> {
    cfg.lens_layers.resolve(top).unwrap_or_else(|_| vec![top])
}

/// The row of `--also-sequential`: ILRec fine-tuned with the sequential schedule.
pub const SEQUENTIAL: &str = "ilrec sequential";

/// The schedule a method trains with: the run's `--schedule`, except the `ilrec sequential` row.
pub fn schedule_of(cfg: &PipelineConfig, method: &str) -> Schedule {
    match method {
        SEQUENTIAL => Schedule::Sequential,
        _ => cfg.schedule,
    }
}

/// (method name, step) of every fine-tuning run, in table order.
pub fn variants(
    cfg: &PipelineConfig,
    top: usize,
    item_vocab: Option<Vec<u32>>,
) -> Vec<(String, StepConfig)> {
    let ilrec = ilrec_step(cfg, top, item_vocab);
    let mut out = vec![
        ("sft".to_string(), StepConfig::sft()),
        ("ilrec".into(), ilrec.clone()),
    ];
    if cfg.also_sequential {
        // The same step; only the schedule differs ([`schedule_of`]).
        out.push((SEQUENTIAL.into(), ilrec.clone()));
    }
    let w = ilrec.weights;
    let with_weights = |weights: ObjectiveWeights| StepConfig {
        weights,
        ..ilrec.clone()
    };
    let ablation_steps = [
        with_weights(ObjectiveWeights { alpha: 0.0, ..w }),
        with_weights(ObjectiveWeights { lambda: 0.0, ..w }),
        with_weights(ObjectiveWeights { mu: 0.0, ..w }),
        // S = {L}: negatives from the final layer, and CPD (which distils the lens layers
        // towards the final logits) becomes identically zero, so this row changes two things
        // at once...
        StepConfig {
            lens_layers: vec![top],
            ..ilrec.clone()
        },
        // ... and this one changes only where negatives come from: CPD stays on the default
        // layers.
        StepConfig {
            negative_layers: Some(vec![top]),
            ..ilrec.clone()
        },
    ];
    for ((key, row), step) in ABLATIONS.iter().zip(ablation_steps) {
        if cfg.ablations.iter().any(|a| a == key) {
            out.push((row.to_string(), step));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ablations::{all_ablations, parse_ablations};

    #[test]
    fn also_sequential_adds_ilrec_under_the_sequential_schedule_only() {
        let cfg = PipelineConfig {
            also_sequential: true,
            ablations: all_ablations(),
            ..PipelineConfig::default()
        };
        let names: Vec<String> = variants(&cfg, 2, None).into_iter().map(|v| v.0).collect();
        assert_eq!(&names[..3], &["sft", "ilrec", SEQUENTIAL]);
        assert_eq!(names.len(), 8, "{names:?}");
        for name in &names {
            let want = match name.as_str() {
                SEQUENTIAL => Schedule::Sequential,
                _ => Schedule::Joint,
            };
            assert_eq!(schedule_of(&cfg, name), want, "{name}");
        }
        // The sequential row trains ILRec's own step; only the schedule differs.
        let all = variants(&cfg, 2, None);
        assert_eq!(format!("{:?}", all[1].1), format!("{:?}", all[2].1));
        let plain = variants(&PipelineConfig::default(), 2, None);
        assert_eq!(plain.len(), 2);
    }

    #[test]
    fn ablations_train_only_the_ones_asked_for_in_table_order() {
        let cfg = PipelineConfig {
            ablations: parse_ablations("final-cpd-kept, wo-crr").unwrap(),
            ..PipelineConfig::default()
        };
        let names: Vec<String> = variants(&cfg, 4, None).into_iter().map(|v| v.0).collect();
        assert_eq!(
            names,
            [
                "sft",
                "ilrec",
                "ilrec w/o crr",
                "final-layer negatives, CPD kept"
            ]
        );
        // w/o CRR is ILRec with lambda 0; final-layer negatives keep CPD's layers.
        let all = variants(&cfg, 4, None);
        assert_eq!(all[2].1.weights.lambda, 0.0);
        assert_eq!(all[2].1.weights.alpha, all[1].1.weights.alpha);
        assert_eq!(all[3].1.negative_layers, Some(vec![4]));
        assert_eq!(all[3].1.lens_layers, all[1].1.lens_layers);
    }
}
