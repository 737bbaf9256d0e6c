//! Stage "evaluate": trie-constrained beam search with the KV cache on a set of examples, each
//! ranking without the items the run's protocol excludes for it. With a cache folder, each
//! outcome is kept on disk and a resumed run reads it back ([`super::eval_cache`]).

use super::eval_cache::{self, EvalInputs};
use crate::eval::decode::LlamaScorer;
use crate::eval::evaluate::{evaluate, EvalOutcome, Queries};
use crate::ilrec::gradients::TrainExample;
use crate::model::llama::Llama;
use crate::rec::{Exclusions, ItemTrie};
use crate::report::Progress;
use crate::Result;
use std::path::PathBuf;

/// Beam-search evaluation settings shared by validation and test.
pub struct Evaluator<'a> {
    pub trie: &'a ItemTrie,
    pub beams: usize,
    pub threads: usize,
    /// Where outcomes are kept (`<run>/eval-cache`); None evaluates every time (`eval`).
    pub cache: Option<PathBuf>,
}

impl Evaluator<'_> {
    /// Metrics of `model` on `examples`, example i ranked without `excluded.of(i)` (none under
    /// the all-items protocol; progress bar labelled `label`). A model with adapters (LoRA)
    /// decodes with them merged into its weights: the same outputs, no extra products.
    pub fn run(
        &self,
        model: &Llama,
        examples: &[TrainExample],
        excluded: &Exclusions,
        label: &str,
    ) -> Result<EvalOutcome> {
        excluded.check_len(examples.len())?;
        let merged = crate::lora::merged(model)?;
        let model = &merged;
        let inputs = EvalInputs {
            model,
            examples,
            excluded,
            trie: self.trie,
            beams: self.beams,
        };
        let cached = match &self.cache {
            Some(dir) => Some((dir, eval_cache::key(&inputs)?)),
            None => None,
        };
        if let Some((dir, key)) = cached {
            if let Some(outcome) = eval_cache::load(dir, key, examples.len())? {
                // Done before a restart, or an identical model (e.g. two stages that trained
                // the same steps) already evaluated on the same queries.
                eprintln!(
                    "{label}: same model and queries as {}/{key:016x}.json, read back",
                    dir.display()
                );
                return Ok(outcome);
            }
        }
        let outcome = self.search(&inputs, label)?;
        if let Some((dir, key)) = cached {
            eval_cache::store(dir, key, label, &outcome)?;
        }
        Ok(outcome)
    }

    /// The beam search itself, one progress bar over the examples.
    fn search(&self, inputs: &EvalInputs, label: &str) -> Result<EvalOutcome> {
        let EvalInputs {
            model,
            examples,
            excluded,
            ..
        } = *inputs;
        let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt.clone()).collect();
        let targets: Vec<u32> = examples.iter().map(|e| e.target).collect();
        let queries = Queries {
            prompts: &prompts,
            exclude: Some(excluded.lists()),
        };
        let mut progress = Progress::new(label, prompts.len());
        evaluate(
            || LlamaScorer::new(model),
            self.trie,
            queries,
            &targets,
            self.beams,
            self.threads,
            &mut progress,
        )
    }
}
