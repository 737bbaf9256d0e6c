//! Stage "evaluate": trie-constrained beam search with the KV cache on a set of examples.

use crate::eval::decode::LlamaScorer;
use crate::eval::evaluate::{evaluate, EvalOutcome, Queries};
use crate::ilrec::trainer::TrainExample;
use crate::model::llama::Llama;
use crate::rec::ItemTrie;
use crate::report::Progress;
use crate::Result;

/// Beam-search evaluation settings shared by validation and test.
pub struct Evaluator<'a> {
    pub trie: &'a ItemTrie,
    pub beams: usize,
    pub threads: usize,
    /// Never rank an example's own history items (`eval --exclude-history`); `train` ranks
    /// every item (false).
    pub exclude_history: bool,
}

impl Evaluator<'_> {
    /// Metrics of `model` on `examples` (progress bar labelled `label`).
    pub fn run(
        &self,
        model: &Llama,
        examples: &[TrainExample],
        label: &str,
    ) -> Result<EvalOutcome> {
        let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt.clone()).collect();
        let targets: Vec<u32> = examples.iter().map(|e| e.target).collect();
        let histories: Vec<Vec<u32>> = examples.iter().map(|e| e.history.clone()).collect();
        let queries = Queries {
            prompts: &prompts,
            exclude: self.exclude_history.then_some(histories.as_slice()),
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
