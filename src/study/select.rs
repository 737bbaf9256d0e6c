//! Selection on validation (`study --select`): a small search for the learning rate and
//! ILRec's alpha, lambda, mu and lens layers, on one seed, reading the validation split only;
//! the choice is frozen in `selection.json` before any test number of the study exists.
//!
//! The procedure, per data set:
//!
//! 1. **Learning rate, chosen by SFT.** One run per value of `lr_factors` x the base lr, each
//!    training the SFT warm-up, the SFT continuation and ILRec (base weights). The lr with the
//!    best validation NDCG@10 *of SFT* wins: the baseline gets its best learning rate, and
//!    ILRec runs with it (no lr of its own: a choice that can only hurt ILRec, not help it).
//! 2. **ILRec's weights, chosen by ILRec, one coordinate at a time** (alpha, then lambda, mu,
//!    the lens layers): each value of the coordinate, the others at their best so far, is one
//!    more ILRec fine-tune from the same warm-up of the chosen lr's run folder
//!    (`RunOptions::extra_ilrec`, resumed); the best validation NDCG@10 of ILRec keeps its
//!    value (ties keep the earlier one). Combinations that resolve to the same lens blocks are
//!    trained once.
//!
//! Every run has `RunOptions::test` off: no method ranks or scores a test user, and the record
//! says so with the count of test evaluations (0). The test split's prompts are still
//! tokenised (as in every run, their words enter the compact vocabulary, which the items'
//! tokens already cover), so the selection's models are the final cells' models.

use super::record::{hyper, short};
use crate::ilrec::LensLayers;
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::model::plan_model;
use crate::pipeline::run::{run, RunOptions, RunOutput};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The values tried.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpace {
    /// Multiples of the base learning rate (`--lr`).
    pub lr_factors: Vec<f32>,
    pub alpha: Vec<f32>,
    pub lambda: Vec<f32>,
    pub mu: Vec<f32>,
    /// `--lens-layers` specs (`last4`, `last2`, `1,3`, ...).
    pub lens_layers: Vec<String>,
}

impl Default for SearchSpace {
    /// Around the defaults, a factor of about 3 either side (2 for the lr): at most 3 warm-ups
    /// and 3 x 2 + 8 fine-tunes per data set.
    fn default() -> SearchSpace {
        SearchSpace {
            lr_factors: vec![0.5, 1.0, 2.0],
            alpha: vec![0.03, 0.1, 0.3],
            lambda: vec![0.03, 0.1, 0.3],
            mu: vec![0.3, 1.0, 3.0],
            lens_layers: vec!["last4".into(), "last2".into(), "last1".into()],
        }
    }
}

impl SearchSpace {
    pub fn to_json(&self) -> Value {
        let list = |xs: &[f32]| xs.iter().map(|&x| short(x)).collect::<Vec<f64>>();
        json!({"lr_factors": list(&self.lr_factors), "alpha": list(&self.alpha),
               "lambda": list(&self.lambda), "mu": list(&self.mu),
               "lens_layers": self.lens_layers})
    }

    /// Sets the lists a JSON object names (`"select": {"alpha": [0.1, 0.3]}`).
    pub fn apply_json(&mut self, v: &Value) -> Result<()> {
        let bad = |k: &str| Error::config(format!("select.{k}: not a list"), "see study --help");
        let nums = |k: &str| -> Result<Option<Vec<f32>>> {
            v.get(k)
                .map(|x| {
                    x.as_array()
                        .and_then(|a| a.iter().map(|n| n.as_f64().map(|f| f as f32)).collect())
                        .ok_or_else(|| bad(k))
                })
                .transpose()
        };
        for (k, field) in [
            ("lr_factors", &mut self.lr_factors),
            ("alpha", &mut self.alpha),
            ("lambda", &mut self.lambda),
            ("mu", &mut self.mu),
        ] {
            if let Some(list) = nums(k)? {
                *field = list;
            }
        }
        if let Some(x) = v.get("lens_layers") {
            self.lens_layers = x
                .as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(String::from)).collect())
                .ok_or_else(|| bad("lens_layers"))?;
        }
        self.validate()
    }

    /// Non-empty lists of usable values.
    pub fn validate(&self) -> Result<()> {
        let weights = [&self.alpha, &self.lambda, &self.mu];
        let ok = self.lr_factors.iter().all(|&f| f > 0.0)
            && weights
                .iter()
                .all(|l| l.iter().all(|&w| w >= 0.0) && !l.is_empty())
            && !self.lr_factors.is_empty()
            && !self.lens_layers.is_empty();
        if !ok {
            return Err(Error::config(
                "the selection's lists must be non-empty, lr factors > 0 and weights >= 0",
                "e.g. --select-lr 0.5,1,2 --select-alpha 0.03,0.1,0.3",
            ));
        }
        for spec in &self.lens_layers {
            LensLayers::parse(spec)?;
        }
        Ok(())
    }
}

/// What selection chose for a data set: the values the final cells train with.
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub lr: f32,
    pub alpha: f32,
    pub lambda: f32,
    pub mu: f32,
    pub lens_layers: LensLayers,
}

impl Choice {
    fn of(cfg: &PipelineConfig) -> Choice {
        Choice {
            lr: cfg.lr,
            alpha: cfg.alpha,
            lambda: cfg.lambda,
            mu: cfg.mu,
            lens_layers: cfg.lens_layers.clone(),
        }
    }

    /// `cfg` with the chosen values.
    pub fn apply(&self, cfg: &PipelineConfig) -> PipelineConfig {
        PipelineConfig {
            lr: self.lr,
            alpha: self.alpha,
            lambda: self.lambda,
            mu: self.mu,
            lens_layers: self.lens_layers.clone(),
            ..cfg.clone()
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"lr": short(self.lr), "alpha": short(self.alpha), "lambda": short(self.lambda),
               "mu": short(self.mu), "lens_layers": self.lens_layers.spec()})
    }

    pub fn from_json(v: &Value) -> Result<Choice> {
        let bad = || Error::format("selection.json", "a \"chosen\" entry is incomplete");
        let num = |k: &str| v[k].as_f64().map(|x| x as f32).ok_or_else(bad);
        Ok(Choice {
            lr: num("lr")?,
            alpha: num("alpha")?,
            lambda: num("lambda")?,
            mu: num("mu")?,
            lens_layers: LensLayers::parse(v["lens_layers"].as_str().ok_or_else(bad)?)?,
        })
    }
}

/// The bookkeeping of one data set's search.
struct Search<'a> {
    base: &'a PipelineConfig,
    /// Where this data set's selection runs live (`<study>/select/<dataset>`).
    dir: PathBuf,
    blocks: usize,
    trials: Vec<Value>,
    test_evaluations: usize,
    warmups: usize,
    fine_tunes: usize,
    valid_users: usize,
}

/// Runs the search for one data set (see the module docs) with `base` (its seed is the one
/// used) in `<study>/select/<dataset>/`; returns the record `selection.json` keeps for it.
pub fn select(
    base: &PipelineConfig,
    dataset: &str,
    space: &SearchSpace,
    study: &Path,
) -> Result<Value> {
    let started = Instant::now();
    space.validate()?;
    let blocks = plan_model(&base.model, &base.lens_layers)?
        .config
        .num_hidden_layers;
    for spec in &space.lens_layers {
        LensLayers::parse(spec)?.resolve(blocks)?;
    }
    let mut search = Search {
        base,
        dir: study.join("select").join(dataset),
        blocks,
        trials: Vec::new(),
        test_evaluations: 0,
        warmups: 0,
        fine_tunes: 0,
        valid_users: 0,
    };
    let (lr_dir, lr, ilrec_score) = search.learning_rate(space)?;
    let chosen = search.weights(space, &lr_dir, lr, ilrec_score)?;
    Ok(json!({
        "seed": base.seed,
        "chosen": chosen.to_json(),
        "criteria": {
            "lr": "validation NDCG@10 of SFT (the baseline's best lr; ILRec uses it too)",
            "alpha, lambda, mu, lens_layers": "validation NDCG@10 of ILRec, one coordinate at a time in this order, at the chosen lr",
        },
        "space": space.to_json(),
        "base": hyper(base),
        "trials": search.trials,
        "budget": {
            "warm_ups": search.warmups, "fine_tunes": search.fine_tunes,
            "validation_users": search.valid_users, "seconds": started.elapsed().as_secs_f64(),
        },
        "test_evaluations": search.test_evaluations,
        "test_split": "not ranked or scored by any selection run (RunOptions::test off); its prompts are tokenised as in every run",
    }))
}

impl Search<'_> {
    /// One selection run (resumed when its folder holds one): test off, `extra` ILRec rows.
    fn run(
        &mut self,
        cfg: PipelineConfig,
        extra: Vec<(String, PipelineConfig)>,
    ) -> Result<RunOutput> {
        let dir = cfg.out.clone().unwrap_or_default();
        let cfg = PipelineConfig {
            resume: dir.join("config.json").is_file(),
            ..cfg
        };
        let opts = RunOptions {
            test: false,
            protocols: Vec::new(),
            extra_ilrec: extra,
        };
        let out = run(&cfg, &opts)?;
        self.test_evaluations += out.test_evaluations;
        self.valid_users = out.valid_users;
        Ok(out)
    }

    /// Phase 1: the lr with SFT's best validation NDCG@10. Returns its run folder, the lr and
    /// ILRec's score there (the base weights' trial of phase 2).
    fn learning_rate(&mut self, space: &SearchSpace) -> Result<(PathBuf, f32, f64)> {
        let mut best: Option<(f64, PathBuf, f32, f64)> = None;
        for &factor in &space.lr_factors {
            let lr = self.base.lr * factor;
            let dir = self.dir.join(format!("lr-{lr}"));
            let cfg = PipelineConfig {
                lr,
                out: Some(dir.clone()),
                ..self.base.clone()
            };
            let out = self.run(cfg, Vec::new())?;
            self.warmups += 1;
            self.fine_tunes += out.valid_ndcg10.len();
            let score = |m: &str| valid_of(&out, m);
            let (sft, ilrec) = (score("sft")?, score("ilrec")?);
            self.trials.push(json!({"phase": "lr", "lr": short(lr), "sft_valid_ndcg@10": sft,
                                    "ilrec_valid_ndcg@10": ilrec, "run_dir": dir.display().to_string()}));
            if best.as_ref().is_none_or(|b| sft > b.0) {
                best = Some((sft, dir, lr, ilrec));
            }
        }
        let (_, dir, lr, ilrec) = best.expect("validated: at least one lr");
        Ok((dir, lr, ilrec))
    }

    /// Phase 2: alpha, lambda, mu, lens layers, one at a time, as extra ILRec fine-tunes of
    /// the chosen lr's run folder.
    fn weights(
        &mut self,
        space: &SearchSpace,
        dir: &Path,
        lr: f32,
        base_score: f64,
    ) -> Result<Choice> {
        let run_cfg = PipelineConfig {
            lr,
            out: Some(dir.to_path_buf()),
            ..self.base.clone()
        };
        let mut best = Choice::of(&run_cfg);
        // Validation NDCG@10 of every trained combination, by key; the run's own `ilrec` row
        // trained the base weights.
        let mut scores: Vec<(String, f64)> = vec![(self.key(&best)?, base_score)];
        // The extra rows of the run folder, in the order they were first trained (a resumed
        // run must see them in the same order).
        let mut extra: Vec<(String, PipelineConfig)> = Vec::new();
        for coordinate in ["alpha", "lambda", "mu", "lens_layers"] {
            let candidates = candidates(space, &best, coordinate);
            let fresh = self.untried(&candidates, &scores)?;
            if !fresh.is_empty() {
                let rows = fresh.iter().map(|(k, c)| (row_name(k), c.apply(&run_cfg)));
                extra.extend(rows);
                let out = self.run(run_cfg.clone(), extra.clone())?;
                for (key, c) in fresh {
                    let score = valid_of(&out, &row_name(&key))?;
                    self.fine_tunes += 1;
                    self.trials.push(json!({
                        "phase": coordinate, "chosen_so_far": best.to_json(),
                        "tried": c.to_json(), "ilrec_valid_ndcg@10": score,
                    }));
                    scores.push((key, score));
                }
            }
            // The best candidate of this coordinate; the incumbent wins ties.
            let mut top = (self.score(&best, &scores)?, best.clone());
            for c in candidates {
                let s = self.score(&c, &scores)?;
                if s > top.0 {
                    top = (s, c);
                }
            }
            best = top.1;
        }
        Ok(best)
    }

    /// The candidates not trained yet, once each, with their keys.
    fn untried(
        &self,
        candidates: &[Choice],
        scores: &[(String, f64)],
    ) -> Result<Vec<(String, Choice)>> {
        let mut fresh: Vec<(String, Choice)> = Vec::new();
        for c in candidates {
            let key = self.key(c)?;
            let known = scores.iter().any(|s| s.0 == key) || fresh.iter().any(|f| f.0 == key);
            if !known {
                fresh.push((key, c.clone()));
            }
        }
        Ok(fresh)
    }

    /// A trained combination's validation NDCG@10.
    fn score(&self, c: &Choice, scores: &[(String, f64)]) -> Result<f64> {
        let key = self.key(c)?;
        Ok(scores
            .iter()
            .find(|s| s.0 == key)
            .map_or(f64::NEG_INFINITY, |s| s.1))
    }

    /// A combination's identity: weights and the lens blocks it resolves to for this model.
    fn key(&self, c: &Choice) -> Result<String> {
        let blocks = c.lens_layers.resolve(self.blocks)?;
        let blocks: Vec<String> = blocks.iter().map(|b| b.to_string()).collect();
        Ok(format!(
            "a={} l={} m={} S={}",
            c.alpha,
            c.lambda,
            c.mu,
            blocks.join(",")
        ))
    }
}

/// The run-folder row of a combination: `ilrec a=0.3 l=0.1 m=1 S=1`.
fn row_name(key: &str) -> String {
    format!("ilrec {key}")
}

/// The choices that vary `coordinate` over its values, the others as in `best` (the lens
/// specs were parsed once already, in [`SearchSpace::validate`]).
fn candidates(space: &SearchSpace, best: &Choice, coordinate: &str) -> Vec<Choice> {
    let with = |f: &dyn Fn(&mut Choice)| {
        let mut c = best.clone();
        f(&mut c);
        c
    };
    match coordinate {
        "alpha" => space
            .alpha
            .iter()
            .map(|&v| with(&|c| c.alpha = v))
            .collect(),
        "lambda" => space
            .lambda
            .iter()
            .map(|&v| with(&|c| c.lambda = v))
            .collect(),
        "mu" => space.mu.iter().map(|&v| with(&|c| c.mu = v)).collect(),
        _ => space
            .lens_layers
            .iter()
            .map(|s| with(&|c| c.lens_layers = LensLayers::parse(s).unwrap_or_default()))
            .collect(),
    }
}

/// The last validation NDCG@10 the run logged for `method`.
fn valid_of(out: &RunOutput, method: &str) -> Result<f64> {
    out.valid_ndcg10
        .iter()
        .find(|(m, _)| m == method)
        .map(|(_, v)| *v)
        .filter(|v| v.is_finite())
        .ok_or_else(|| Error::Training(format!("selection: no validation NDCG@10 for {method}")))
}
