//! Stage 1, prepare the data: load + k-core + leave-one-out, render items (see [`ItemRepr`]),
//! tokenise prompts, compact the vocabulary, build the item trie over the items' model tokens,
//! and turn samples into training examples.

use super::config::{ItemRepr, PipelineConfig};
use super::model::{vocabulary, ModelPlan};
use crate::ilrec::trainer::TrainExample;
use crate::rec::vocab_map::VocabMap;
use crate::rec::{leave_one_out, load_dataset, sample_prompt, Dataset, ItemTrie, LoadOptions};
use crate::rec::{Sample, Split};
use crate::report::Progress;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Everything the later stages read about the data, in model token ids.
pub struct PreparedData {
    pub dataset: Dataset,
    pub split: Split,
    /// The seeded validation subset used for model selection (`valid_users`).
    pub valid_subset: Vec<Sample>,
    /// Tokenizer ids -> model ids (compact for presets, identity for pretrained models).
    pub vocab: VocabMap,
    /// EOS in model ids (ends every item's response).
    pub model_eos: u32,
    /// The item trie over model ids: constrained decoding and ILRec's candidate sets.
    pub trie: ItemTrie,
    pub train: Vec<TrainExample>,
    pub valid: Vec<TrainExample>,
    pub test: Vec<TrainExample>,
}

/// Loads and splits the data set of `cfg` (no tokenisation yet).
pub fn load_and_split(cfg: &PipelineConfig) -> Result<(Dataset, Split)> {
    let options = LoadOptions {
        kcore: cfg.kcore,
        ..LoadOptions::default()
    };
    let dataset = load_dataset(&cfg.data, &options)?;
    let split = leave_one_out(&dataset, crate::rec::DEFAULT_MAX_HISTORY)?;
    eprintln!(
        "data: {} users, {} items, {} interactions, {} train / {} valid / {} test samples",
        dataset.num_users(),
        dataset.num_items(),
        dataset.num_interactions(),
        split.train.len(),
        split.valid.len(),
        split.test.len()
    );
    Ok((dataset, split))
}

/// The EOS every response ends with (SmolLM2's `<|endoftext|>`).
pub fn eos_token(tokenizer: &Tokenizer) -> Result<u32> {
    tokenizer.token_to_id("<|endoftext|>").ok_or_else(|| {
        Error::config(
            "the tokenizer has no <|endoftext|> token",
            "use a SmolLM2-family tokenizer.json",
        )
    })
}

/// Stage 1 for the model of `plan`: [`load_and_split`], then [`prepare_data`] with the plan's
/// vocabulary (compact ids for a preset trained from scratch, the tokenizer's for a checkpoint).
pub fn prepare_for(
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    tokenizer: &Tokenizer,
) -> Result<PreparedData> {
    let vocab = |enc: &Encoded, eos| vocabulary(plan, enc.all_token_streams(), eos);
    prepare_data(cfg, load_and_split(cfg)?, tokenizer, vocab)
}

/// Renders, tokenises and indexes the data. `vocab` builds the vocabulary map from the token
/// streams (compact for a from-scratch model, identity for a pretrained one).
pub fn prepare_data(
    cfg: &PipelineConfig,
    (dataset, split): (Dataset, Split),
    tokenizer: &Tokenizer,
    vocab: impl FnOnce(&Encoded, u32) -> VocabMap,
) -> Result<PreparedData> {
    let eos = eos_token(tokenizer)?;
    let train_subset = subsample(&split.train, cfg.train_samples, cfg.seed);
    let valid_subset = subsample(&split.valid, cfg.valid_users, cfg.seed ^ 0x5eed);
    let groups: [&[Sample]; 3] = [&train_subset, &valid_subset, &split.test];
    let encoded = encode_all(cfg.item_repr, tokenizer, &dataset, &groups, cfg.max_history)?;
    let vocab = vocab(&encoded, eos);
    let item_seqs: Vec<Vec<u32>> = encoded
        .items
        .iter()
        .map(|s| vocab.to_model_ids(s))
        .collect::<Result<_>>()?;
    let model_eos = vocab.to_model_ids(&[eos])?[0];
    let trie = ItemTrie::build(&item_seqs, model_eos)?;
    let examples = |g: usize, samples: &[Sample]| to_examples(&vocab, &encoded.prompts[g], samples);
    let (train, valid, test) = (
        examples(0, &train_subset)?,
        examples(1, &valid_subset)?,
        examples(2, &split.test)?,
    );
    eprintln!(
        "items: {} items -> trie of {} nodes; model vocabulary {} of {} tokenizer ids; LLM on {} train samples, {} valid users",
        trie.num_items(), trie.num_nodes(), vocab.len(), tokenizer.vocab_size(), train.len(), valid.len()
    );
    Ok(PreparedData {
        dataset,
        split,
        valid_subset,
        vocab,
        model_eos,
        trie,
        train,
        valid,
        test,
    })
}

fn to_examples(
    vocab: &VocabMap,
    prompts: &[Vec<u32>],
    samples: &[Sample],
) -> Result<Vec<TrainExample>> {
    prompts
        .iter()
        .zip(samples)
        .map(|(p, s)| {
            Ok(TrainExample {
                prompt: vocab.to_model_ids(p)?,
                target: s.target,
                history: s.history.clone(),
            })
        })
        .collect()
}

/// Tokenised items and prompts (tokenizer ids): `items[i]` = item i's response tokens without
/// EOS (the trie appends it); `prompts[g][k]` = the prompt of sample k of group g.
pub struct Encoded {
    pub items: Vec<Vec<u32>>,
    pub prompts: Vec<Vec<Vec<u32>>>,
}

impl Encoded {
    /// Every token stream (items, then prompts), for the compact vocabulary.
    pub fn all_token_streams(&self) -> impl Iterator<Item = &[u32]> {
        self.items
            .iter()
            .map(Vec::as_slice)
            .chain(self.prompts.iter().flatten().map(Vec::as_slice))
    }
}

/// Renders items and prompts with `repr`; prompts show the last `max_history` history items.
fn encode_all(
    repr: ItemRepr,
    tokenizer: &Tokenizer,
    dataset: &Dataset,
    groups: &[&[Sample]],
    max_history: usize,
) -> Result<Encoded> {
    let ItemRepr::Title = repr;
    let titles = dataset.unique_titles();
    let items = titles.iter().map(|t| tokenizer.encode(t)).collect();
    let render = |item: u32| titles[item as usize].clone();
    let total: usize = groups.iter().map(|g| g.len()).sum();
    let mut progress = Progress::new("tokenise prompts", total);
    let prompts = groups
        .iter()
        .map(|group| {
            group
                .iter()
                .map(|s| {
                    let start = s.history.len().saturating_sub(max_history);
                    let short = Sample {
                        history: s.history[start..].to_vec(),
                        ..s.clone()
                    };
                    progress.inc(1);
                    tokenizer.encode(&sample_prompt(&short, &render))
                })
                .collect()
        })
        .collect();
    progress.finish();
    Ok(Encoded { items, prompts })
}

/// A seeded subsample of `n` samples (all when n = 0 or n >= len), kept in their original order.
pub fn subsample(samples: &[Sample], n: usize, seed: u64) -> Vec<Sample> {
    if n == 0 || n >= samples.len() {
        return samples.to_vec();
    }
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    Rng::new(seed).shuffle(&mut idx);
    let mut keep = idx[..n].to_vec();
    keep.sort_unstable();
    keep.into_iter().map(|i| samples[i].clone()).collect()
}
