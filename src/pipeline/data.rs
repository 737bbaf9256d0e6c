//! Stage 1, prepare the data: load + k-core + leave-one-out, render items (see [`ItemRepr`]:
//! titles, or the SID text of `pipeline::sids`), tokenise prompts, compact the vocabulary, build
//! the item trie over the items' model tokens, turn samples into training examples, and list
//! the items each validation / test ranking leaves out under the run's protocol.

use super::config::{ItemRepr, PipelineConfig};
use super::model::{vocabulary, ModelPlan};
use crate::ilrec::gradients::TrainExample;
use crate::rec::vocab_map::VocabMap;
use crate::rec::{leave_one_out, load_dataset, sample_prompt, Dataset, ItemTrie};
use crate::rec::{Exclusions, Sample, Split};
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
    /// SID mode: every item token (model ids, ascending), CPD's item vocabulary V_item; None in
    /// title mode, where CPD runs over the whole vocabulary.
    pub item_vocab: Option<Vec<u32>>,
    pub train: Vec<TrainExample>,
    pub valid: Vec<TrainExample>,
    pub test: Vec<TrainExample>,
    /// What each `valid` / `test` ranking leaves out (`cfg.protocol`).
    pub valid_excluded: Exclusions,
    pub test_excluded: Exclusions,
}

/// Loads and splits the data set of `cfg` (no tokenisation yet); prints what was dropped and
/// the counts on stderr.
pub fn load_and_split(cfg: &PipelineConfig) -> Result<(Dataset, Split)> {
    let (dataset, split) = load_split(cfg)?;
    eprintln!("data: {}", dataset.load_summary());
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

/// [`load_and_split`] without a word on stderr (`recommend` and `eval` check a request against
/// the data set first, and a bad request must fail with one line).
pub fn load_split(cfg: &PipelineConfig) -> Result<(Dataset, Split)> {
    let dataset = load_dataset(&cfg.data, &cfg.load)?;
    let mut split = leave_one_out(&dataset, crate::rec::DEFAULT_MAX_HISTORY)?;
    split.test = subsample(&split.test, cfg.test_users, TEST_USERS_SEED);
    Ok((dataset, split))
}

/// The seed of the `test_users` subset. Fixed, not the run's seed: every seed of a study then
/// ranks the same test users, so per-user results pair across seeds (and across methods).
pub const TEST_USERS_SEED: u64 = 0x7e57_0005;

/// The EOS every response ends with (SmolLM2's `<|endoftext|>`).
pub fn eos_token(tokenizer: &Tokenizer) -> Result<u32> {
    tokenizer.token_to_id("<|endoftext|>").ok_or_else(|| {
        Error::config(
            "the tokenizer has no <|endoftext|> token",
            "use a SmolLM2-family tokenizer.json",
        )
    })
}

/// Stage 1 for the model of `plan`: [`prepare_data`] with the plan's vocabulary (compact ids
/// for a preset trained from scratch, the tokenizer's for a checkpoint, grown by any added
/// tokens such as SIDs). `item_texts[i]` is how item i is written ([`item_texts`]).
pub fn prepare_for(
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    tokenizer: &Tokenizer,
    loaded: (Dataset, Split),
    item_texts: Vec<String>,
) -> Result<PreparedData> {
    let size = tokenizer.vocab_size();
    let vocab = |enc: &Encoded, eos| vocabulary(plan, enc.all_token_streams(), eos, size);
    prepare_data(cfg, loaded, tokenizer, item_texts, vocab)
}

/// How each item is written, in item order: its title (made unique with its raw id where two
/// items share one), or in SID mode the text of its SID, `<a_12><b_3><c_7>` (`sids[item]`).
pub fn item_texts(
    repr: ItemRepr,
    dataset: &Dataset,
    sids: Option<&[Vec<u32>]>,
) -> Result<Vec<String>> {
    match (repr, sids) {
        (ItemRepr::Title, _) => Ok(dataset.unique_titles()),
        (ItemRepr::Sid, Some(codes)) => Ok(codes.iter().map(|c| crate::sid::sid_text(c)).collect()),
        (ItemRepr::Sid, None) => Err(Error::config(
            "SID mode without SIDs",
            "build them first (pipeline::sids::item_sids)",
        )),
    }
}

/// The seeded validation subset used for model selection (`valid_users`; all when 0).
pub fn valid_subset(cfg: &PipelineConfig, split: &Split) -> Vec<Sample> {
    subsample(&split.valid, cfg.valid_users, cfg.seed ^ 0x5eed)
}

/// Renders, tokenises and indexes the data. `vocab` builds the vocabulary map from the token
/// streams (compact for a from-scratch model, identity for a pretrained one).
pub fn prepare_data(
    cfg: &PipelineConfig,
    (dataset, split): (Dataset, Split),
    tokenizer: &Tokenizer,
    item_texts: Vec<String>,
    vocab: impl FnOnce(&Encoded, u32) -> VocabMap,
) -> Result<PreparedData> {
    let eos = eos_token(tokenizer)?;
    let train_subset = subsample(&split.train, cfg.train_samples, cfg.seed);
    let valid_subset = valid_subset(cfg, &split);
    let groups: [&[Sample]; 3] = [&train_subset, &valid_subset, &split.test];
    let encoded = encode_all(&item_texts, tokenizer, &groups, cfg.max_history);
    let vocab = vocab(&encoded, eos);
    let (trie, model_eos) = item_trie(&encoded.items, &vocab, eos)?;
    let item_vocab = (cfg.item_repr == ItemRepr::Sid).then(|| {
        let mut ids: Vec<u32> = encoded
            .items
            .iter()
            .flatten()
            .filter_map(|&t| vocab.model_id(t))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    });
    let examples = |g: usize, samples: &[Sample]| to_examples(&vocab, &encoded.prompts[g], samples);
    let (train, valid, test) = (
        examples(0, &train_subset)?,
        examples(1, &valid_subset)?,
        examples(2, &split.test)?,
    );
    let valid_excluded = Exclusions::build(cfg.protocol, &dataset, &valid_subset)?;
    let test_excluded = Exclusions::build(cfg.protocol, &dataset, &split.test)?;
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
        item_vocab,
        train,
        valid,
        test,
        valid_excluded,
        test_excluded,
    })
}

/// The item trie over model ids and the model's EOS: `items[i]` = item i's tokenizer ids
/// (no EOS; the trie appends it), `eos` = the tokenizer's EOS. A run's saved vocabulary map
/// rebuilds the trie it trained and evaluated with (`pipeline::recommender`).
pub fn item_trie(items: &[Vec<u32>], vocab: &VocabMap, eos: u32) -> Result<(ItemTrie, u32)> {
    let item_seqs: Vec<Vec<u32>> = items
        .iter()
        .map(|s| vocab.to_model_ids(s))
        .collect::<Result<_>>()?;
    let model_eos = vocab.to_model_ids(&[eos])?[0];
    Ok((ItemTrie::build(&item_seqs, model_eos)?, model_eos))
}

/// The examples of `samples` for a model whose vocabulary map is known already (a saved run):
/// each prompt tokenised exactly as [`prepare_data`] does ([`prompt_tokens`]), in model ids.
pub fn examples_with(
    vocab: &VocabMap,
    tokenizer: &Tokenizer,
    item_texts: &[String],
    samples: &[Sample],
    max_history: usize,
) -> Result<Vec<TrainExample>> {
    let prompts: Vec<Vec<u32>> = samples
        .iter()
        .map(|s| prompt_tokens(tokenizer, item_texts, s, max_history))
        .collect();
    to_examples(vocab, &prompts, samples)
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

/// Tokenises the items' texts and the prompts; prompts show the last `max_history` history
/// items, each written as its text.
fn encode_all(
    item_texts: &[String],
    tokenizer: &Tokenizer,
    groups: &[&[Sample]],
    max_history: usize,
) -> Encoded {
    let items = item_texts.iter().map(|t| tokenizer.encode(t)).collect();
    let total: usize = groups.iter().map(|g| g.len()).sum();
    let mut progress = Progress::new("tokenise prompts", total);
    let prompts = groups
        .iter()
        .map(|group| {
            group
                .iter()
                .map(|s| {
                    progress.inc(1);
                    prompt_tokens(tokenizer, item_texts, s, max_history)
                })
                .collect()
        })
        .collect();
    progress.finish();
    Encoded { items, prompts }
}

/// The prompt of one sample in tokenizer ids: its last `max_history` history items, each
/// written as its text (`item_texts[item]`), in the seqrec template. Training, evaluation and
/// `recommend` all build prompts here, so a saved run is asked exactly what it was trained on.
pub fn prompt_tokens(
    tokenizer: &Tokenizer,
    item_texts: &[String],
    sample: &Sample,
    max_history: usize,
) -> Vec<u32> {
    let render = |item: u32| item_texts[item as usize].clone();
    let start = sample.history.len().saturating_sub(max_history);
    let short = Sample {
        history: sample.history[start..].to_vec(),
        ..sample.clone()
    };
    tokenizer.encode(&sample_prompt(&short, &render))
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
