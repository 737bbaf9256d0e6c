//! Stage "write results": the run folder, `config.json`, the plots, `results.json`, the verdict
//! sentence and the final JSON line.

use super::config::PipelineConfig;
use super::data::PreparedData;
use super::model::{trained_config, ModelPlan};
use super::variants::lens_layers;
use crate::ilrec::gradients::StepConfig;
use crate::rec::{MetricsMean, Protocol};
use crate::report::{line_plot, ResultRow, ResultsTable, RunLog, Series};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `out`, or `runs/run-<unix seconds>`; created. With `resume` it must hold a run already.
pub fn prepare_run_dir(out: Option<&Path>, resume: bool) -> Result<PathBuf> {
    let dir = match out {
        Some(d) => d.to_path_buf(),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from("runs").join(format!("run-{secs}"))
        }
    };
    if resume && !dir.join("config.json").is_file() {
        return Err(Error::config(
            format!("--resume: {} holds no run", dir.display()),
            "pass the --out folder of the killed run",
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

/// Records what the run trains on: `vocab_map.json` (tokenizer ids -> model ids) and
/// `config.json` (every knob of `cfg`, the resolved lens layers, the model config as trained).
pub fn write_run_config(
    run_dir: &Path,
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    d: &PreparedData,
) -> Result<()> {
    d.vocab.save(&run_dir.join("vocab_map.json"))?;
    let mut model_json = trained_config(plan, &d.vocab, d.model_eos).to_json();
    model_json["vocab_size"] = d.vocab.len().into();
    let lens = lens_layers(cfg, plan.config.num_hidden_layers);
    write_json(
        &run_dir.join("config.json"),
        &cfg.to_json(&lens, model_json),
    )
}

/// Wall time of each stage, for `results.json` and the summary on stderr.
pub struct StageClock {
    pub laps: Vec<(String, f64)>,
    since: std::time::Instant,
}

impl StageClock {
    pub fn start() -> StageClock {
        StageClock {
            laps: Vec::new(),
            since: std::time::Instant::now(),
        }
    }

    /// Ends the stage `name` (it began at the previous lap, or at `start`).
    pub fn lap(&mut self, name: &str) {
        let now = std::time::Instant::now();
        self.laps
            .push((name.to_string(), (now - self.since).as_secs_f64()));
        self.since = now;
    }

    /// `data 0.9s, sasrec 10.2s, ...`
    pub fn summary(&self) -> String {
        let laps: Vec<String> = self
            .laps
            .iter()
            .map(|(n, s)| format!("{n} {s:.1}s"))
            .collect();
        laps.join(", ")
    }
}

/// One row of the results table.
pub fn result_row(
    method: &str,
    test: MetricsMean,
    invalid_rate: f64,
    valid_ndcg10: Option<f64>,
) -> ResultRow {
    ResultRow {
        method: method.into(),
        test,
        invalid_rate,
        valid_ndcg10,
    }
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    crate::files::write_atomic(path, text.as_bytes())
}

/// loss.svg (loss terms of every fine-tuning stage) and valid_ndcg.svg.
pub fn write_plots(run_dir: &Path, log: &RunLog, variants: &[(String, StepConfig)]) -> Result<()> {
    let mut loss = vec![Series {
        name: "warmup ce".into(),
        points: log.series(("stage", "warmup"), "step", "ce"),
    }];
    let mut ndcg = vec![Series {
        name: "warmup".into(),
        points: log.series(("stage", "warmup"), "step", "valid_ndcg@10"),
    }];
    for (name, _) in variants {
        for term in ["ce", "crr", "cpd"] {
            let points = log.series(("stage", name), "step", term);
            if points.iter().any(|p| p.1 != 0.0) {
                let name = format!("{name} {term}");
                loss.push(Series { name, points });
            }
        }
        let points = log.series(("stage", name), "step", "valid_ndcg@10");
        ndcg.push(Series {
            name: name.clone(),
            points,
        });
    }
    let loss_svg = line_plot("training loss terms", "step (per stage)", "loss", &loss);
    let ndcg_svg = line_plot("validation NDCG@10", "step (per stage)", "NDCG@10", &ndcg);
    for (file, svg) in [("loss.svg", loss_svg), ("valid_ndcg.svg", ndcg_svg)] {
        let path = run_dir.join(file);
        crate::files::write_atomic(&path, svg.as_bytes())?;
    }
    Ok(())
}

/// The sentence the README quotes: does ILRec beat SFT, does SFT beat popularity?
pub fn verdict(table: &ResultsTable) -> String {
    let hit10 = |m: &str| {
        table
            .get(m)
            .and_then(|r| r.test.hit_at(10))
            .unwrap_or(f64::NAN)
    };
    let ndcg10 = |m: &str| {
        table
            .get(m)
            .and_then(|r| r.test.ndcg_at(10))
            .unwrap_or(f64::NAN)
    };
    let beats = |a: f64, b: f64| if a > b { "beats" } else { "does NOT beat" };
    format!(
        "SFT {} popularity on test Hit@10 ({:.4} vs {:.4}); ILRec {} SFT on test NDCG@10 ({:.4} vs {:.4}) and {} on Hit@10 ({:.4} vs {:.4})",
        beats(hit10("sft"), hit10("popularity")), hit10("sft"), hit10("popularity"),
        beats(ndcg10("ilrec"), ndcg10("sft")), ndcg10("ilrec"), ndcg10("sft"),
        if hit10("ilrec") > hit10("sft") { "beats it" } else { "does not beat it" }, hit10("ilrec"), hit10("sft"),
    )
}

/// Writes `results.json` and returns the one-line summary `{"dataset", "protocol", "seconds",
/// "rows"}` (`protocol`: which items the rankings competed over, `rec::Protocol::name`).
pub fn write_results(
    run_dir: &Path,
    (dataset, protocol): (&str, Protocol),
    seconds: f64,
    table: &ResultsTable,
    timings: &[(String, f64)],
) -> Result<Value> {
    let stage_seconds: Vec<Value> = timings
        .iter()
        .map(|(n, s)| json!({"stage": n, "seconds": s}))
        .collect();
    let protocol = protocol.name();
    let results = json!({
        "dataset": dataset, "protocol": protocol, "seconds": seconds, "rows": table.rows_json(),
        "verdict": verdict(table), "stage_seconds": stage_seconds,
        "run_dir": run_dir.display().to_string(),
    });
    write_json(&run_dir.join("results.json"), &results)?;
    Ok(
        json!({"dataset": dataset, "protocol": protocol, "seconds": seconds, "rows": table.rows_json()}),
    )
}
