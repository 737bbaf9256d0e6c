//! How the study writes a run's settings into its JSON (rows, the selection's trials): the
//! hyper-parameters and sizes a row records, and f32s as their shortest decimals.

use crate::pipeline::config::PipelineConfig;
use serde_json::{json, Value};

/// The hyper-parameters and sizes a row records (the run folder's config.json has them all).
pub fn hyper(cfg: &PipelineConfig) -> Value {
    json!({
        "lr": short(cfg.lr), "alpha": short(cfg.alpha), "lambda": short(cfg.lambda),
        "mu": short(cfg.mu),
        "lens_layers": cfg.lens_layers.spec(), "model": cfg.model,
        "item_repr": cfg.item_repr.name(), "epochs": cfg.epochs,
        "finetune_epochs": cfg.finetune_epochs, "batch": cfg.batch,
        "train_samples": cfg.train_samples, "valid_users": cfg.valid_users,
        "test_users": cfg.test_users, "beams": cfg.beams,
    })
}

/// An f32 as the f64 of its shortest decimal (0.1f32 -> 0.1, not 0.10000000149011612), so the
/// study's JSON reads as typed; `as f32` gives the same f32 back.
pub fn short(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}
