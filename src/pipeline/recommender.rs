//! Using what was trained: a stage of a saved run, loaded back as a recommender.
//!
//! [`Recommender::load`] rebuilds exactly what `train` had when it evaluated that stage: the
//! config (`config.json`), the data set and its leave-one-out split, the tokenizer (in SID mode
//! with the run's SID tokens registered from `sids.json`, in the same order), the item texts,
//! the vocabulary map (`vocab_map.json`), the item trie and the stage's model. Prompts are built
//! by the function training uses ([`data::prompt_tokens`]) and ranked by the function evaluation
//! uses ([`rank_one`] / [`rank_all`]), so the top K for a user is the first K of the list
//! `train`'s evaluation scored.
//!
//! ```no_run
//! # use ilrec::pipeline::recommender::Recommender;
//! let rec = Recommender::load("runs/a", "ilrec")?;
//! let history = rec.lookup().by_titles("Heat (1995), Toy Story (1995)")?;
//! for r in rec.recommend(&history, 10)? { println!("{} {:.3}", r.title, r.log_prob) }
//! # Ok::<(), ilrec::Error>(())
//! ```

use super::config::ItemRepr;
use super::data::{self, examples_with, item_texts, prompt_tokens, valid_subset};
use super::model::{build_model, load_tokenizer, plan_model, ModelPlan};
use super::saved_run::{SavedRun, SavedStage};
use super::variants::lens_layers;
use crate::eval::beam::ScoredItem;
use crate::eval::decode::LlamaScorer;
use crate::eval::evaluate::{rank_all, rank_one, Queries};
use crate::ilrec::explain::{explain_response, ExplainSettings, PositionView};
use crate::ilrec::gradients::TrainExample;
use crate::lora::{load_adapter, merged};
use crate::model::llama::Llama;
use crate::rec::item_lookup::ItemLookup;
use crate::rec::vocab_map::VocabMap;
use crate::rec::{Dataset, Exclusions, ItemTrie, Protocol, Sample, Split};
use crate::report::Progress;
use crate::sid::{codes_per_level, read_sids, SidVocab};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::Path;

/// One recommended item.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    /// Dense item id (0..items).
    pub item: u32,
    /// The data set's own id (e.g. movieId).
    pub raw_id: String,
    pub title: String,
    /// Sequence log-probability of the item's tokens after the prompt.
    pub log_prob: f32,
}

/// Which evaluation samples to rebuild: the run's validation subset or every test user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalSplit {
    Valid,
    Test,
}

/// A trained stage of a run, ready to recommend. Fields are public for inspection (tests,
/// `eval`); build it with [`Recommender::load`].
pub struct Recommender {
    pub run: SavedRun,
    pub stage: SavedStage,
    pub dataset: Dataset,
    pub split: Split,
    /// The run's tokenizer, SID tokens included in SID mode.
    pub tokenizer: Tokenizer,
    /// How each item is written in prompts and responses (title or SID text).
    pub item_texts: Vec<String>,
    pub vocab: VocabMap,
    pub trie: ItemTrie,
    pub model: Llama,
    /// Never recommend a history item (false: like `train`'s evaluation, they may come back).
    pub exclude_history: bool,
}

impl Recommender {
    /// Loads stage `stage` (`ilrec`, `sft`, an ablation) of the run in `run_dir`.
    pub fn load(run_dir: impl AsRef<Path>, stage: &str) -> Result<Recommender> {
        let run = SavedRun::open(run_dir.as_ref())?;
        let stage = run.stage(stage)?;
        Recommender::from_run(run, stage)
    }

    /// Loads an opened run's stage (see the module docs for what is rebuilt).
    pub fn from_run(run: SavedRun, stage: SavedStage) -> Result<Recommender> {
        let loaded = data::load_split(&run.config)?;
        Recommender::from_data(run, stage, loaded)
    }

    /// The model of a trained stage: its full checkpoint, or under LoRA the run's base (rebuilt as
    /// `train` built it: same vocabulary growth, same seed) with the stage's PEFT adapter merged in.
    fn load_stage_model(
        plan: &ModelPlan,
        stage: &SavedStage,
        vocab: &VocabMap,
        seed: u64,
    ) -> Result<Llama> {
        let adapter = stage.dir.join("adapter");
        if !adapter.is_dir() {
            return Llama::from_dir(&stage.dir);
        }
        // The EOS argument only matters for presets, which LoRA refuses.
        let mut base = build_model(plan, vocab, 0, seed, None)?.model;
        load_adapter(&mut base, &adapter)?;
        merged(&base)
    }

    /// [`Recommender::from_run`] with the run's data set and split loaded already (by
    /// `data::load_split(&run.config)`), so a caller can check a request against the data set
    /// before the tokenizer and the model load.
    pub fn from_data(
        run: SavedRun,
        stage: SavedStage,
        (dataset, split): (Dataset, Split),
    ) -> Result<Recommender> {
        let cfg = &run.config;
        let plan = plan_model(&cfg.model, &cfg.lens_layers)?;
        let mut tokenizer = load_tokenizer(&plan)?;
        let sids = match cfg.item_repr {
            ItemRepr::Sid => Some(register_run_sids(&run.dir, &dataset, &mut tokenizer)?),
            ItemRepr::Title => None,
        };
        let item_texts = item_texts(cfg.item_repr, &dataset, sids.as_deref())?;
        let vocab = VocabMap::load(&run.dir.join("vocab_map.json"))?;
        let items: Vec<Vec<u32>> = item_texts.iter().map(|t| tokenizer.encode(t)).collect();
        let (trie, _) = data::item_trie(&items, &vocab, data::eos_token(&tokenizer)?)?;
        let model = Self::load_stage_model(&plan, &stage, &vocab, cfg.seed)?;
        if model.config.vocab_size != vocab.len() {
            return Err(Error::config(
                format!(
                    "{}: the model has {} token rows but vocab_map.json maps {} ids",
                    stage.dir.display(),
                    model.config.vocab_size,
                    vocab.len()
                ),
                "the checkpoint and the run folder do not belong together",
            ));
        }
        Ok(Recommender {
            run,
            stage,
            dataset,
            split,
            tokenizer,
            item_texts,
            vocab,
            trie,
            model,
            exclude_history: false,
        })
    }

    pub fn num_items(&self) -> usize {
        self.dataset.num_items()
    }

    /// Items by title or data-set id.
    pub fn lookup(&self) -> ItemLookup<'_> {
        ItemLookup::new(&self.dataset)
    }

    /// The test sample of the user whose data-set id is `raw_user`: the history the evaluation
    /// ranked from (every interaction before the held-out last one, at most 20) and the
    /// held-out item.
    pub fn test_sample(&self, raw_user: &str) -> Result<&Sample> {
        test_sample(&self.dataset, &self.split, raw_user)
    }

    /// The prompt `train` builds for this history (model ids).
    pub fn prompt(&self, history: &[u32]) -> Result<Vec<u32>> {
        self.check_history(history)?;
        let sample = Sample {
            user: 0,
            history: history.to_vec(),
            target: 0,
        };
        let cfg = &self.run.config;
        let tokens = prompt_tokens(&self.tokenizer, &self.item_texts, &sample, cfg.max_history);
        self.vocab.to_model_ids(&tokens)
    }

    /// The beam width for a top `k`: the run's, so the top K is the first K of the evaluation's
    /// list, or `k` when that is larger.
    pub fn beams_for(&self, k: usize) -> usize {
        self.run.config.beams.max(k)
    }

    /// The top `k` items after `history` (dense item ids, oldest first) by trie-constrained
    /// beam search, best first.
    pub fn recommend(&self, history: &[u32], k: usize) -> Result<Vec<Recommendation>> {
        self.check_k(k)?;
        let prompt = self.prompt(history)?;
        let exclude = if self.exclude_history { history } else { &[] };
        let mut scorer = LlamaScorer::new(&self.model);
        let ranked = rank_one(&mut scorer, &self.trie, &prompt, self.beams_for(k), exclude)?;
        Ok(self.top(&ranked.items, k))
    }

    /// [`Recommender::recommend`] for many histories, on the run's threads, with a progress bar.
    pub fn recommend_all(
        &self,
        histories: &[Vec<u32>],
        k: usize,
    ) -> Result<Vec<Vec<Recommendation>>> {
        self.check_k(k)?;
        let prompts: Vec<Vec<u32>> = histories
            .iter()
            .map(|h| self.prompt(h))
            .collect::<Result<_>>()?;
        let queries = Queries {
            prompts: &prompts,
            exclude: self.exclude_history.then_some(histories),
        };
        let mut progress = Progress::new("recommend", prompts.len());
        let make_scorer = || LlamaScorer::new(&self.model);
        let beams = self.beams_for(k);
        let threads = self.run.config.threads;
        let lists = rank_all(
            make_scorer,
            &self.trie,
            queries,
            beams,
            threads,
            &mut progress,
        )?;
        Ok(lists.iter().map(|r| self.top(&r.items, k)).collect())
    }

    /// The evaluation examples of `split`, as `train` built them: the seeded validation subset
    /// (`valid_users`) or the run's test users (all, or its `test_users` subset).
    pub fn examples(&self, split: EvalSplit) -> Result<Vec<TrainExample>> {
        let cfg = &self.run.config;
        let samples = self.samples(split);
        examples_with(
            &self.vocab,
            &self.tokenizer,
            &self.item_texts,
            &samples,
            cfg.max_history,
        )
    }

    /// The samples `train` evaluated on `split` (the seeded validation subset, or every test
    /// sample).
    fn samples(&self, split: EvalSplit) -> Vec<Sample> {
        match split {
            EvalSplit::Valid => valid_subset(&self.run.config, &self.split),
            EvalSplit::Test => self.split.test.clone(),
        }
    }

    /// What each sample of `split` leaves out of its ranking under `protocol` (in the order of
    /// [`Recommender::examples`]).
    pub fn exclusions(&self, split: EvalSplit, protocol: Protocol) -> Result<Exclusions> {
        Exclusions::build(protocol, &self.dataset, &self.samples(split))
    }

    /// The lens view of `item` after `history` (see `ilrec::explain`), with the run's lens
    /// layers, ensemble, margin, temperature and negatives scope; `show` candidates per layer.
    pub fn explain(&self, history: &[u32], item: u32, show: usize) -> Result<Vec<PositionView>> {
        let cfg = &self.run.config;
        let layers = lens_layers(cfg, self.run.num_blocks);
        let settings = ExplainSettings {
            lens_layers: &layers,
            ensemble: cfg.ensemble,
            margin: cfg.margin,
            tau: cfg.tau,
            scope: cfg.negatives_scope,
            show,
        };
        let prompt = self.prompt(history)?;
        explain_response(
            &self.model,
            &self.trie,
            &prompt,
            self.trie.item_seq(item),
            &settings,
        )
    }

    /// A model token as text (for explanations).
    pub fn token_text(&self, model_id: u32) -> String {
        let ids = self.vocab.to_tokenizer_ids(&[model_id]);
        self.tokenizer.decode(&ids, false)
    }

    /// The first `k` ranked items as recommendations.
    fn top(&self, ranked: &[ScoredItem], k: usize) -> Vec<Recommendation> {
        ranked
            .iter()
            .take(k)
            .map(|s| {
                let item = &self.dataset.items[s.item as usize];
                Recommendation {
                    item: s.item,
                    raw_id: item.raw_id.clone(),
                    title: item.title.clone(),
                    log_prob: s.log_prob,
                }
            })
            .collect()
    }

    fn check_k(&self, k: usize) -> Result<()> {
        if k == 0 || k > self.num_items() {
            return Err(Error::config(
                format!("top-k {k}: the data set has {} items", self.num_items()),
                format!("ask for 1..={} items", self.num_items()),
            ));
        }
        Ok(())
    }

    fn check_history(&self, history: &[u32]) -> Result<()> {
        if history.is_empty() {
            return Err(Error::config(
                "the history is empty",
                "name at least one item the user interacted with",
            ));
        }
        if let Some(&bad) = history.iter().find(|&&i| i as usize >= self.num_items()) {
            return Err(Error::config(
                format!(
                    "history item {bad} is not an item (the data set has {})",
                    self.num_items()
                ),
                "history items are dense ids 0..items; map data-set ids with lookup().by_raw_id",
            ));
        }
        Ok(())
    }
}

/// The test sample of the user whose data-set id is `raw_user` (see
/// [`Recommender::test_sample`]).
pub fn test_sample<'a>(dataset: &Dataset, split: &'a Split, raw_user: &str) -> Result<&'a Sample> {
    let user = dataset.users.iter().position(|u| u == raw_user.trim());
    let user = user.ok_or_else(|| {
        Error::config(
            format!("user {raw_user} is not in the data set"),
            "user ids are the data set's own (e.g. userId of ratings.csv)",
        )
    })?;
    if let Some(sample) = split.test.iter().find(|s| s.user as usize == user) {
        return Ok(sample);
    }
    // Every user with 3 or more interactions has a validation sample; the test split may be a
    // seeded subset of them (`--test-users`), which is not the same as having too few.
    let why = match split.valid.iter().any(|s| s.user as usize == user) {
        true => "is not among the test users this run kept (it was trained with --test-users N)",
        false => "has fewer than 3 interactions: no test sample",
    };
    Err(Error::config(
        format!("user {raw_user} {why}"),
        "give the history instead: --history-ids or --history",
    ))
}

/// SID mode: the run's `sids.json`, with its tokens registered in `tokenizer` as `train` did
/// (level by level, code by code), so every SID token gets the id it had in training.
fn register_run_sids(
    run_dir: &Path,
    dataset: &Dataset,
    tokenizer: &mut Tokenizer,
) -> Result<Vec<Vec<u32>>> {
    let raw_ids: Vec<String> = dataset.items.iter().map(|i| i.raw_id.clone()).collect();
    let path = run_dir.join("sids.json");
    if !path.is_file() {
        return Err(Error::config(
            format!(
                "{} has no sids.json, but its config.json says item_repr sid",
                run_dir.display()
            ),
            "the run folder is incomplete; retrain it",
        ));
    }
    let codes = read_sids(&path, &raw_ids)?;
    SidVocab::register(tokenizer, &codes_per_level(&codes))?;
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::Format;
    use std::path::PathBuf;

    fn sample(user: u32) -> Sample {
        Sample {
            user,
            history: vec![0],
            target: 1,
        }
    }

    #[test]
    fn a_user_left_out_of_the_test_subset_is_told_apart_from_a_short_user() {
        let dataset = Dataset {
            name: "d".into(),
            format: Format::MovieLens,
            interactions_path: PathBuf::new(),
            items: Vec::new(),
            users: vec!["a".into(), "b".into(), "c".into()],
            sequences: Vec::new(),
            rows_read: 0,
            users_read: 3,
            items_read: 0,
            removed_duplicates: 0,
            removed_by_rating: 0,
            removed_by_kcore: 0,
            items_without_text: 0,
        };
        // a: kept for test; b: split but not in the --test-users subset; c: too short.
        let split = Split {
            train: Vec::new(),
            valid: vec![sample(0), sample(1)],
            test: vec![sample(0)],
            skipped_users: 1,
        };
        assert_eq!(test_sample(&dataset, &split, "a").unwrap().user, 0);
        let b = test_sample(&dataset, &split, "b").unwrap_err().to_string();
        assert!(
            b.contains("not among the test users") && b.contains("--test-users"),
            "{b}"
        );
        let c = test_sample(&dataset, &split, "c").unwrap_err().to_string();
        assert!(c.contains("fewer than 3 interactions"), "{c}");
        let nobody = test_sample(&dataset, &split, "zz").unwrap_err().to_string();
        assert!(nobody.contains("not in the data set"), "{nobody}");
    }
}
