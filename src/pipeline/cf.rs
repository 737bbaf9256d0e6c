//! Stage "train CF": SASRec on the training split, the CF reward model of ILRec's CRR term and a
//! results row. Cached in the run folder so a resumed run reuses it; `checkpoints/sasrec.json`
//! records the epochs asked for and the epochs run.

use super::config::PipelineConfig;
use super::data::valid_subset;
use super::results::{result_row, write_json};
use crate::cf::{SasRec, SasRecConfig, SasRecTrainOptions, TrainOn};
use crate::rec::{Dataset, Exclusions, Popularity, Split};
use crate::report::{Progress, ResultsTable};
use crate::{Error, Result};
use serde_json::json;
use std::path::Path;

/// SASRec's training options from the run config (`sasrec_epochs`, `sasrec_patience`, `seed`;
/// the rest are `SasRecTrainOptions::default()`, except the windows).
///
/// The pipeline still trains on each user's last window only (`TrainOn::LastWindow`), while
/// `cf` and the library default to every window (issue 18): every pipeline number in README and
/// BENCHMARKS (the SASRec row, the SIDs built from SASRec's item table, the CRR rewards, the
/// stage times) was measured that way, and all windows make the SASRec stage about 3x longer
/// per epoch. Switching is one line here, and then those tables must be measured again.
pub fn sasrec_options(cfg: &PipelineConfig) -> SasRecTrainOptions {
    SasRecTrainOptions {
        epochs: cfg.sasrec_epochs,
        patience: cfg.sasrec_patience,
        seed: cfg.seed,
        train_on: TrainOn::LastWindow,
        ..SasRecTrainOptions::default()
    }
}

/// Trains SASRec (default model config) or loads it from `run_dir` when resuming.
pub fn train_cf(
    dataset: &Dataset,
    split: &Split,
    cfg: &PipelineConfig,
    run_dir: &Path,
) -> Result<SasRec> {
    let path = run_dir.join("checkpoints").join("sasrec.safetensors");
    if cfg.resume && path.exists() {
        eprintln!("sasrec: loaded {}", path.display());
        return SasRec::load(&path);
    }
    let mut sasrec = SasRec::new(SasRecConfig::new(dataset.num_items()), cfg.seed)?;
    let train_opts = sasrec_options(cfg);
    let mut progress = Progress::new("sasrec (epochs)", train_opts.epochs);
    // Model selection ranks the validation items under the run's protocol, like the tests.
    let valid_excluded = Exclusions::build(cfg.protocol, dataset, &split.valid)?;
    let summary = sasrec.train_excluding(split, &valid_excluded, &train_opts, |report| {
        progress.set_note(format!(
            "loss {:.3} valid ndcg@10 {:.4}",
            report.train_loss,
            report.valid.ndcg_at(10).unwrap_or(0.0)
        ));
        progress.inc(1);
    })?;
    progress.finish();
    std::fs::create_dir_all(run_dir.join("checkpoints")).map_err(|e| Error::io(run_dir, e))?;
    sasrec.save(&path)?;
    // What actually ran (early stopping may end before the most epochs).
    let record = json!({
        "epochs": train_opts.epochs, "patience": train_opts.patience,
        "epochs_run": summary.epochs_run, "best_epoch": summary.best_epoch,
        "seconds": summary.seconds,
    });
    eprintln!("sasrec: {record}");
    write_json(&run_dir.join("checkpoints").join("sasrec.json"), &record)?;
    Ok(sasrec)
}

/// The two baseline rows of the table: popularity (the floor every model must beat) and SASRec,
/// trained here, both ranked under the run's protocol; returns SASRec, the CF reward model of
/// the ILRec runs (and, in SID mode, the source of the item embeddings).
pub fn baselines(
    cfg: &PipelineConfig,
    (dataset, split): (&Dataset, &Split),
    run_dir: &Path,
    table: &mut ResultsTable,
) -> Result<SasRec> {
    let valid_subset = valid_subset(cfg, split);
    let valid_excluded = Exclusions::build(cfg.protocol, dataset, &valid_subset)?;
    let test_excluded = Exclusions::build(cfg.protocol, dataset, &split.test)?;
    let popularity = Popularity::from_dataset(dataset);
    let valid_pop = popularity.evaluate_excluding(&valid_subset, &valid_excluded)?;
    let test_pop = popularity.evaluate_excluding(&split.test, &test_excluded)?;
    let valid_pop = Some(valid_pop.mean().ndcg_at(10).unwrap_or(0.0));
    table.push(result_row("popularity", test_pop.mean(), 0.0, valid_pop));
    let sasrec = train_cf(dataset, split, cfg, run_dir)?;
    let valid_cf = sasrec.evaluate_excluding(&valid_subset, &valid_excluded)?;
    let test_cf = sasrec.evaluate_excluding(&split.test, &test_excluded)?;
    let valid_cf = valid_cf.mean().ndcg_at(10);
    table.push(result_row("sasrec", test_cf.mean(), 0.0, valid_cf));
    Ok(sasrec)
}
