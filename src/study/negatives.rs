//! The study's analyses of ILRec's self-hard negatives, on one trained run folder (a study cell
//! or any `train` run): what the intermediate layers think of the ground truth, how many
//! negatives they propose, and how often a negative is in fact the user's future.
//!
//! For a seeded sample of training samples and each model asked for (the SFT warm-up, which is
//! where ILRec starts, and the fine-tuned stages), at every response position of the sample's
//! target item (its SID codes and EOS, or its title tokens):
//!
//! - **per block l** (every block, the top one included): the truth's rank among the candidates
//!   C (the trie children of the prefix) under the lens `z^l`, whether it is worse than under
//!   the final logits, and how many candidates block l alone would make self-hard negatives
//!   (`z^l[v] >= z^L[y] - margin`, the mining rule with S = {l});
//! - **the negatives training mines** (the run's S, ensemble, margin): how many, and how many
//!   lie on the path of the user's *test* item (the same prefix, and the negative is the test
//!   item's next token): a false negative, a token ILRec pushes down although it leads to what
//!   the user will pick next. Its chance rate is the same fraction among all non-target
//!   candidates of those positions: a rate above it means the lens proposes the user's future
//!   more often than a random wrong child would be;
//! - **CRR's soft labels** `q = softmax_{K}(r / tau_r)` from SASRec (`ilrec::loss`, ILREC.md 5.3)
//!   on those negatives: the mean q of false negatives against the other negatives says whether
//!   the CF reward lowers the penalty where it should.
//!
//! Everything is recomputed from the saved checkpoints with the trainer's own mining rule
//! (`ilrec::explain`), so nothing here depends on what training logged.

use crate::cf::rewards::token_log_rewards;
use crate::cf::SasRec;
use crate::ilrec::explain::{explain_response, ExplainSettings, PositionView};
use crate::ilrec::negatives::{crr_tokens, softmax_scaled};
use crate::pipeline::data::{examples_with, subsample};
use crate::pipeline::recommender::Recommender;
use crate::pipeline::saved_run::{SavedRun, SavedStage};
use crate::rec::Sample;
use crate::Result;
use std::collections::HashMap;
use std::path::Path;

/// One block's view of the sampled positions, summed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerStats {
    /// Block index, 1..=L (L = the model's output).
    pub layer: usize,
    /// Sum over positions of the truth's rank (1 = best) among the candidates.
    pub rank_sum: f64,
    /// Positions where the truth ranks worse at this block than at the final layer.
    pub worse_than_final: usize,
    /// Sum over positions of the candidates this block alone makes self-hard negatives.
    pub self_hard: usize,
}

/// The mined negatives at one response depth (0 = the first token of the item), summed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DepthStats {
    pub positions: usize,
    pub positions_with_negatives: usize,
    pub negatives: usize,
    /// Negatives that are the test item's next token after the same prefix.
    pub on_test_path: usize,
    /// Over the positions with negatives: non-target candidates, and those on the test path
    /// (the chance rate of `on_test_path / negatives`).
    pub non_target_candidates: usize,
    pub non_target_on_test_path: usize,
    /// CRR soft labels of the negatives: summed q of false negatives and of the others.
    pub q_on_test_path: f64,
    pub q_other: f64,
}

/// One model's analysis.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageAnalysis {
    pub stage: String,
    pub samples: usize,
    pub positions: usize,
    /// Every block 1..=L, ascending.
    pub layers: Vec<LayerStats>,
    /// Response depth 0, 1, ... (the SID levels, then EOS).
    pub depths: Vec<DepthStats>,
}

/// What the analysis needs besides the model: the samples, each user's test item, SASRec.
pub struct AnalysisInputs<'a> {
    pub samples: &'a [Sample],
    /// The prompt ids of each sample (as the trainer built them), in the order of `samples`.
    pub prompts: &'a [Vec<u32>],
    /// user -> the item of the user's test sample.
    pub test_item: &'a HashMap<u32, u32>,
    pub cf: &'a SasRec,
}

/// The analysis of the model loaded in `rec` (one stage of its run), named `stage`.
pub fn analyse_stage(
    rec: &Recommender,
    stage: &str,
    inputs: &AnalysisInputs,
) -> Result<StageAnalysis> {
    let cfg = &rec.run.config;
    let top = rec.model.config.num_hidden_layers;
    let mining = crate::pipeline::variants::lens_layers(cfg, top);
    let all_blocks: Vec<usize> = (1..top).collect();
    let settings = |lens_layers| ExplainSettings {
        lens_layers,
        ensemble: cfg.ensemble,
        margin: cfg.margin,
        tau: cfg.tau,
        scope: cfg.negatives_scope,
        show: 0,
    };
    let mut out = StageAnalysis {
        stage: stage.into(),
        layers: (1..=top)
            .map(|layer| LayerStats {
                layer,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for (sample, prompt) in inputs.samples.iter().zip(inputs.prompts) {
        let response = rec.trie.item_seq(sample.target);
        let views = explain_response(
            &rec.model,
            &rec.trie,
            prompt,
            response,
            &settings(&all_blocks),
        )?;
        // The negatives training mines come from S; one more forward only when S is not every
        // block below the top (on a 2-block model it always is).
        let mined = match mining == all_blocks {
            true => views.clone(),
            false => explain_response(&rec.model, &rec.trie, prompt, response, &settings(&mining))?,
        };
        add_layer_views(&mut out.layers, &views);
        let test = inputs
            .test_item
            .get(&sample.user)
            .map(|&t| rec.trie.item_seq(t));
        let p_cf = inputs.cf.probabilities(&[sample.history.as_slice()])?;
        let context = PathContext {
            response,
            test,
            p_cf: p_cf.data()?,
            tau_r: cfg.tau_r,
        };
        add_depths(&mut out.depths, &mined, &context, rec)?;
        out.samples += 1;
        out.positions += response.len();
    }
    Ok(out)
}

/// Adds one sample's per-block views (ascending blocks, the final one last) to `layers`.
fn add_layer_views(layers: &mut [LayerStats], views: &[PositionView]) {
    for view in views {
        let final_rank = view.layers.last().map_or(1, |l| l.rank);
        for (stats, layer) in layers.iter_mut().zip(&view.layers) {
            debug_assert_eq!(stats.layer, layer.layer);
            stats.rank_sum += layer.rank as f64;
            stats.worse_than_final += usize::from(layer.rank > final_rank);
            stats.self_hard += layer.self_hard;
        }
    }
}

/// One sample's response, its user's test item (as tokens) and SASRec's item probabilities.
struct PathContext<'a> {
    response: &'a [u32],
    test: Option<&'a [u32]>,
    p_cf: &'a [f32],
    tau_r: f32,
}

impl PathContext<'_> {
    /// The test item's token at depth j when it shares the response's first j tokens.
    fn test_token_at(&self, j: usize) -> Option<u32> {
        let test = self.test?;
        (test.len() > j && test[..j] == self.response[..j]).then(|| test[j])
    }
}

/// Adds one sample's mined negatives, depth by depth, to `depths` (grown as needed).
fn add_depths(
    depths: &mut Vec<DepthStats>,
    mined: &[PositionView],
    ctx: &PathContext,
    rec: &Recommender,
) -> Result<()> {
    if depths.len() < mined.len() {
        depths.resize(mined.len(), DepthStats::default());
    }
    for (j, view) in mined.iter().enumerate() {
        let d = &mut depths[j];
        d.positions += 1;
        let negatives = &view.negatives.tokens;
        if negatives.is_empty() {
            continue;
        }
        let future = ctx.test_token_at(j).filter(|&t| t != view.chosen);
        d.positions_with_negatives += 1;
        d.negatives += negatives.len();
        d.on_test_path += negatives.iter().filter(|&&n| Some(n) == future).count();
        d.non_target_candidates += view.candidates - 1;
        d.non_target_on_test_path += usize::from(future.is_some());
        // CRR's soft labels over K = N + {y}, as the trainer computes them.
        let k = crr_tokens(&view.negatives, view.chosen);
        let rewards = token_log_rewards(&rec.trie, &ctx.response[..j], &k, ctx.p_cf)?;
        let q = softmax_scaled(rewards.iter().copied(), ctx.tau_r);
        for (&token, &q) in k.iter().zip(&q) {
            match (token == view.chosen, Some(token) == future) {
                (true, _) => {}
                (false, true) => d.q_on_test_path += q as f64,
                (false, false) => d.q_other += q as f64,
            }
        }
    }
    Ok(())
}

/// The analysis of each of `stages` of the run in `dir` (`warmup` = the SFT warm-up's last
/// checkpoint, where every fine-tune starts; else a trained stage's name) on `samples`
/// training samples drawn with `seed` (0 = all).
pub fn analyse_run(
    dir: &Path,
    stages: &[String],
    samples: usize,
    seed: u64,
) -> Result<Vec<StageAnalysis>> {
    let cf = SasRec::load(&dir.join("checkpoints").join("sasrec.safetensors"))?;
    let mut out = Vec::with_capacity(stages.len());
    for name in stages {
        let run = SavedRun::open(dir)?;
        let stage = match name.as_str() {
            "warmup" => SavedStage {
                name: name.clone(),
                dir: dir.join("ckpt").join("warmup"),
            },
            _ => run.stage(name)?,
        };
        let rec = Recommender::from_run(run, stage)?;
        let drawn = subsample(&rec.split.train, samples, seed);
        let cfg = &rec.run.config;
        let examples = examples_with(
            &rec.vocab,
            &rec.tokenizer,
            &rec.item_texts,
            &drawn,
            cfg.max_history,
        )?;
        let prompts: Vec<Vec<u32>> = examples.into_iter().map(|e| e.prompt).collect();
        let test_item = test_items(&rec.split.test);
        let inputs = AnalysisInputs {
            samples: &drawn,
            prompts: &prompts,
            test_item: &test_item,
            cf: &cf,
        };
        eprintln!("negatives: {name}: {} training samples", drawn.len());
        out.push(analyse_stage(&rec, name, &inputs)?);
    }
    Ok(out)
}

/// user -> the target of the user's test sample.
pub fn test_items(test: &[Sample]) -> HashMap<u32, u32> {
    test.iter().map(|s| (s.user, s.target)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_token_is_read_only_where_the_prefixes_agree() {
        let response = [10, 20, 30, 0];
        let ctx = |test: &'static [u32]| PathContext {
            response: &response,
            test: Some(test),
            p_cf: &[],
            tau_r: 1.0,
        };
        let same_first = ctx(&[10, 21, 31, 0]);
        assert_eq!(same_first.test_token_at(0), Some(10));
        assert_eq!(same_first.test_token_at(1), Some(21));
        assert_eq!(
            same_first.test_token_at(2),
            None,
            "prefix 10,21 differs from 10,20"
        );
        let other = ctx(&[11, 20, 30, 0]);
        assert_eq!(other.test_token_at(0), Some(11));
        assert_eq!(other.test_token_at(1), None);
        let none = PathContext {
            test: None,
            ..ctx(&[])
        };
        assert_eq!(none.test_token_at(0), None);
    }
}
