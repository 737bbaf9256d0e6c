//! Stage "evaluate": trie-constrained beam search with the KV cache on a set of examples.

use crate::eval::decode::LlamaScorer;
use crate::eval::evaluate::{evaluate, EvalOutcome};
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
}

impl Evaluator<'_> {
    /// Metrics of `model` on `examples` (progress bar labelled `label`). A model with adapters
    /// (LoRA) decodes with them merged into its weights: the same outputs, no extra products.
    pub fn run(
        &self,
        model: &Llama,
        examples: &[TrainExample],
        label: &str,
    ) -> Result<EvalOutcome> {
        let merged = crate::lora::merged(model)?;
        let model = &merged;
        let prompts: Vec<Vec<u32>> = examples.iter().map(|e| e.prompt.clone()).collect();
        let targets: Vec<u32> = examples.iter().map(|e| e.target).collect();
        let mut progress = Progress::new(label, prompts.len());
        evaluate(
            || LlamaScorer::new(model),
            self.trie,
            &prompts,
            &targets,
            self.beams,
            self.threads,
            &mut progress,
        )
    }
}
