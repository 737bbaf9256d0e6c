//! Evaluation outcomes kept on disk, so that a killed run resumes at the evaluation it was in,
//! not at the first one. A beam search over 1,000 test users of a 135M-parameter model takes
//! 10-20 minutes on two cores and a study cell runs a dozen of them; without this, every kill
//! lost them all.
//!
//! One file per evaluation, `<run>/eval-cache/<key>.json` = {label, invalid, returned, ranks};
//! the key fingerprints everything the outcome depends on: the decoding model's config and every
//! parameter value, each example's prompt and target, each example's excluded items, the beam
//! width and the trie's item sequences. The thread count is not in it: the outcome does not
//! depend on it. A stage that is retrained, or data that change, give other keys, so a stale
//! outcome is never read back.

use crate::eval::evaluate::EvalOutcome;
use crate::fingerprint::Fingerprint;
use crate::ilrec::gradients::TrainExample;
use crate::model::llama::Llama;
use crate::rec::metrics::RankingMetrics;
use crate::rec::{Exclusions, ItemTrie};
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// What one evaluation reads: the model it decodes with and the queries.
pub struct EvalInputs<'a> {
    pub model: &'a Llama,
    pub examples: &'a [TrainExample],
    pub excluded: &'a Exclusions,
    pub trie: &'a ItemTrie,
    pub beams: usize,
}

/// The cache key of `inputs` (module docs).
pub fn key(inputs: &EvalInputs) -> Result<u64> {
    let mut f = Fingerprint::new();
    f.bytes(format!("{:?}", inputs.model.config).as_bytes());
    let params = &inputs.model.params;
    for id in params.ids() {
        f.text(params.name(id));
        f.tensor_values(params.value(id))?;
    }
    for (i, e) in inputs.examples.iter().enumerate() {
        f.u32s(&e.prompt);
        f.u32s(&[e.target]);
        f.u32s(inputs.excluded.of(i));
    }
    f.u32s(&[inputs.beams as u32, inputs.trie.eos()]);
    for item in 0..inputs.trie.num_items() {
        f.u32s(inputs.trie.item_seq(item as u32));
    }
    Ok(f.finish())
}

/// The file of `key` under `dir`.
fn path_of(dir: &Path, key: u64) -> PathBuf {
    dir.join(format!("{key:016x}.json"))
}

/// The stored outcome of `key`, or None when there is none. A file that does not parse, or
/// holds another number of examples than `examples`, is an error naming it (delete it to
/// evaluate again), never silently re-used.
pub fn load(dir: &Path, key: u64, examples: usize) -> Result<Option<EvalOutcome>> {
    let path = path_of(dir, key);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let bad = |msg: &str| Error::format(&path, format!("{msg}; delete the file to evaluate again"));
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(&e.to_string()))?;
    let count = |field: &str| v[field].as_u64().map(|n| n as usize);
    let (Some(invalid), Some(returned)) = (count("invalid"), count("returned")) else {
        return Err(bad("`invalid` and `returned` must be counts"));
    };
    let ranks = v["ranks"]
        .as_array()
        .ok_or_else(|| bad("`ranks` must be a list"))?;
    if ranks.len() != examples {
        return Err(bad(&format!(
            "{} ranks for {examples} examples",
            ranks.len()
        )));
    }
    let ranks: Vec<Option<usize>> = ranks
        .iter()
        .map(|r| r.as_u64().map(|r| r as usize))
        .collect();
    let mut metrics = RankingMetrics::new();
    ranks.iter().for_each(|&r| metrics.add(r));
    Ok(Some(EvalOutcome {
        metrics,
        invalid,
        returned,
        ranks,
    }))
}

/// Stores `outcome` under `key` (atomically: a kill mid-write leaves no half file).
pub fn store(dir: &Path, key: u64, label: &str, outcome: &EvalOutcome) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let value = json!({
        "label": label,
        "invalid": outcome.invalid,
        "returned": outcome.returned,
        "ranks": outcome.ranks,
    });
    let text = serde_json::to_string(&value).unwrap_or_default() + "\n";
    crate::files::write_atomic(&path_of(dir, key), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::evaluate::Evaluator;
    use crate::rec::Protocol;

    /// The tiny-llama fixture, 4 items of 2 tokens each (EOS = vocabulary - 1) and 3 prompts.
    fn setup() -> (Llama, ItemTrie, Vec<TrainExample>) {
        let dir = crate::fixtures::root().join("tiny-llama");
        let model = Llama::from_dir(&dir)
            .unwrap_or_else(|e| panic!("fixture {} must load: {e}", dir.display()));
        let eos = model.config.vocab_size as u32 - 1;
        let seqs = vec![vec![3, 4], vec![3, 5], vec![6, 4], vec![7, 8]];
        let trie = ItemTrie::build(&seqs, eos).unwrap();
        let example = |prompt: Vec<u32>, target: u32| TrainExample {
            prompt,
            target,
            history: Vec::new(),
        };
        let examples = vec![
            example(vec![10, 11, 12], 0),
            example(vec![13], 2),
            example(vec![9, 2], 3),
        ];
        (model, trie, examples)
    }

    fn evaluator(trie: &ItemTrie, cache: Option<PathBuf>) -> Evaluator<'_> {
        Evaluator {
            trie,
            beams: 3,
            threads: 1,
            cache,
        }
    }

    #[test]
    fn a_second_evaluation_reads_the_first_ones_outcome_back() {
        let (model, trie, examples) = setup();
        let dir = std::env::temp_dir().join(format!("ilrec-eval-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let excluded =
            Exclusions::from_lists(Protocol::ExcludeHistory, vec![vec![1], vec![], vec![0, 2]]);
        let cached = evaluator(&trie, Some(dir.clone()));
        let searched = evaluator(&trie, None)
            .run(&model, &examples, &excluded, "t")
            .unwrap();
        let first = cached.run(&model, &examples, &excluded, "t").unwrap();
        assert_eq!(first.ranks, searched.ranks);
        // The stored file is what the next run returns: doctor it and the doctored ranks come back.
        let inputs = EvalInputs {
            model: &model,
            examples: &examples,
            excluded: &excluded,
            trie: &trie,
            beams: 3,
        };
        let path = path_of(&dir, key(&inputs).unwrap());
        let doctored = json!({"label": "t", "invalid": 0, "returned": 9, "ranks": [null, 0, 5]});
        std::fs::write(&path, doctored.to_string()).unwrap();
        let again = cached.run(&model, &examples, &excluded, "t").unwrap();
        assert_eq!(again.ranks, vec![None, Some(0), Some(5)]);
        assert_eq!(again.metrics.mean().hit[0], 1.0 / 3.0);
        // Fewer ranks than examples: an error naming the file, not a silent re-use.
        std::fs::write(&path, r#"{"invalid": 0, "returned": 9, "ranks": [0]}"#).unwrap();
        let err = cached
            .run(&model, &examples, &excluded, "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("1 ranks for 3"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_input_of_the_outcome_changes_the_key() {
        let (model, trie, examples) = setup();
        let none = Exclusions::all_items(examples.len());
        let base = EvalInputs {
            model: &model,
            examples: &examples,
            excluded: &none,
            trie: &trie,
            beams: 3,
        };
        let k = key(&base).unwrap();
        let mut changed_model = model.clone();
        let id = changed_model.final_norm_id();
        changed_model.params.value_mut(id).data_mut().unwrap()[0] += 1e-3;
        assert_ne!(
            key(&EvalInputs {
                model: &changed_model,
                ..base
            })
            .unwrap(),
            k
        );
        let mut other = examples.clone();
        other[1].target = 1;
        assert_ne!(
            key(&EvalInputs {
                examples: &other,
                ..base
            })
            .unwrap(),
            k
        );
        let excluded =
            Exclusions::from_lists(Protocol::ExcludeHistory, vec![vec![], vec![3], vec![]]);
        assert_ne!(
            key(&EvalInputs {
                excluded: &excluded,
                ..base
            })
            .unwrap(),
            k
        );
        assert_ne!(key(&EvalInputs { beams: 4, ..base }).unwrap(), k);
        let other_trie = ItemTrie::build(
            &[vec![3, 4], vec![3, 5], vec![6, 4], vec![7, 9]],
            trie.eos(),
        )
        .unwrap();
        assert_ne!(
            key(&EvalInputs {
                trie: &other_trie,
                ..base
            })
            .unwrap(),
            k
        );
        assert_eq!(
            key(&base).unwrap(),
            k,
            "the key is a function of the inputs"
        );
    }
}
