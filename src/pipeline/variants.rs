//! The methods a run fine-tunes from the warm-up checkpoint: the SFT baseline continued, ILRec,
//! with `--ablation` one variant per removed part, and with `--also-sequential` ILRec under the
//! sequential schedule.

use super::config::PipelineConfig;
use crate::ilrec::schedule::Schedule;
use crate::ilrec::trainer::StepConfig;
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
    if !cfg.ablation {
        return out;
    }
    let w = ilrec.weights;
    let with_weights = |weights: ObjectiveWeights| StepConfig {
        weights,
        ..ilrec.clone()
    };
    out.push((
        "ilrec w/o cpo".into(),
        with_weights(ObjectiveWeights { alpha: 0.0, ..w }),
    ));
    out.push((
        "ilrec w/o crr".into(),
        with_weights(ObjectiveWeights { lambda: 0.0, ..w }),
    ));
    out.push((
        "ilrec w/o cpd".into(),
        with_weights(ObjectiveWeights { mu: 0.0, ..w }),
    ));
    // S = {L}: negatives from the final layer, and CPD (which distils the lens layers towards
    // the final logits) becomes identically zero, so this row changes two things at once...
    out.push((
        "final-layer negatives, CPD 0 (S = {L})".into(),
        StepConfig {
            lens_layers: vec![top],
            ..ilrec.clone()
        },
    ));
    // ... and this one changes only where negatives come from: CPD stays on the default layers.
    out.push((
        "final-layer negatives, CPD kept".into(),
        StepConfig {
            negative_layers: Some(vec![top]),
            ..ilrec
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn also_sequential_adds_ilrec_under_the_sequential_schedule_only() {
        let cfg = PipelineConfig {
            also_sequential: true,
            ablation: true,
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
}
