//! The whole pipeline as one call, [`run`]: what `train` runs, and what each cell of `study`
//! runs. In order:
//!
//! 1. load and split the data
//! 2. train SASRec (the CF reward model, and a results row); in SID mode its item table is
//!    quantised into semantic IDs (RQ-VAE); render items (SID or title tokens, then EOS), build
//!    the vocabulary, the item trie and the prompts
//! 3. SFT warm-up of the LLM on the seqrec prompts (with `--lora`: LoRA adapters on the frozen
//!    pretrained model, the SID token rows training with them; adapters saved per stage)
//! 4. from that checkpoint: the SFT baseline continued, ILRec, and the variants of
//!    [`variants`] (plus any [`RunOptions::extra_ilrec`]), all on the same batches
//! 5. evaluate each model with trie-constrained beam search on test (train's table) and, when
//!    asked, every method's per-user ranks under each protocol ([`super::ranks`])
//! 6. write the run folder's plots and `results.json`
//!
//! [`RunOptions::train`] is exactly `train`; `study` asks for per-user ranks, and its selection
//! runs switch the test split off entirely ([`RunOptions::test`]).

use super::config::{ItemRepr, PipelineConfig};
use super::data::{self, PreparedData};
use super::evaluate::Evaluator;
use super::model::{self, ModelPlan};
use super::ranks::{popularity_ranks, sasrec_ranks, Ranks};
use super::results::{self, result_row, StageClock};
use super::stage::{file_name, last_valid, run_resumable, stage_config, steps_for};
use super::stage::{Journal, StageInputs};
use super::{cf, sids, variants};
use crate::cf::SasRec;
use crate::eval::evaluate::EvalOutcome;
use crate::ilrec::gradients::{StepConfig, TrainExample};
use crate::ilrec::schedule::Schedule;
use crate::lora::LoraConfig;
use crate::model::llama::Llama;
use crate::rec::{Dataset, Exclusions, Popularity, Protocol, Sample, Split};
use crate::report::ResultsTable;
use crate::tokenizer::Tokenizer;
use crate::Result;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a run evaluates beyond training.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Rank the test users (train's table, `results.json`). False for `study --select`: no
    /// test target is then ranked or scored by any method (SASRec still trains, it is the CF
    /// reward model), and [`RunOutput::test_evaluations`] stays 0.
    pub test: bool,
    /// Per-user ranks of every method (popularity, SASRec, each fine-tuned model) under each of
    /// these protocols, on the validation subset and, with `test`, on test. Empty for `train`.
    pub protocols: Vec<Protocol>,
    /// More ILRec fine-tunes from the same warm-up and batches: (row name, a config whose ILRec
    /// fields, alpha, lambda, mu, lens layers and the rest, set the step). `study --select`
    /// tries its candidates this way, one warm-up for all of them.
    pub extra_ilrec: Vec<(String, PipelineConfig)>,
}

impl RunOptions {
    /// `train`: the test table, nothing more.
    pub fn train() -> RunOptions {
        RunOptions {
            test: true,
            protocols: Vec::new(),
            extra_ilrec: Vec::new(),
        }
    }
}

/// One method's per-user ranks under one protocol.
#[derive(Clone, Debug)]
pub struct MethodRanks {
    pub method: String,
    pub protocol: Protocol,
    /// On the run's validation subset (`valid_users`), in its order.
    pub valid: Ranks,
    /// On the test users, in [`RunOutput::test_users`] order (None without `test`).
    pub test: Option<Ranks>,
}

/// What a run leaves in memory for its caller (the run folder holds the rest).
pub struct RunOutput {
    pub run_dir: PathBuf,
    pub dataset: String,
    /// `train`'s table: test metrics of every method under `cfg.protocol` (empty without test).
    pub table: ResultsTable,
    /// Each fine-tuned method's last validation NDCG@10 in the log, in training order.
    pub valid_ndcg10: Vec<(String, f64)>,
    /// Per-user ranks, protocol by protocol (empty unless [`RunOptions::protocols`]).
    pub ranks: Vec<MethodRanks>,
    /// The data set's ids of the test users, in the order of every test rank list.
    pub test_users: Vec<String>,
    /// How many validation users every validation number averages over.
    pub valid_users: usize,
    /// Test rank lists the run produced: table rows plus per-user test ranks (a reused list
    /// counts again). 0 exactly when `test` is off: the selection's proof of not looking.
    pub test_evaluations: usize,
    pub clock: StageClock,
    /// `results.json`'s one-line summary (with `test`).
    pub summary: Option<Value>,
}

/// Runs the pipeline for `cfg` (see the module docs); resumes with `cfg.resume`.
pub fn run(cfg: &PipelineConfig, opts: &RunOptions) -> Result<RunOutput> {
    let started = Instant::now();
    let mut clock = StageClock::start();
    // Everything that can be wrong with the inputs is checked before the long stages.
    let plan = model::plan_model(&cfg.model, &cfg.lens_layers)?;
    model::check_lora(cfg, &plan)?;
    sids::check(cfg, &plan)?;
    for (_, extra) in &opts.extra_ilrec {
        extra.lens_layers.resolve(plan.config.num_hidden_layers)?;
    }
    let tokenizer = model::load_tokenizer(&plan)?;
    let run_dir = results::prepare_run_dir(cfg.out.as_deref(), cfg.resume)?;

    // 1. Data: load, k-core, leave-one-out split.
    let (dataset, split) = data::load_and_split(cfg)?;
    clock.lap("data");

    // Popularity, the floor every model must beat; 2. SASRec, the CF reward model.
    let mut table = ResultsTable::with_caption(cfg.protocol.describe());
    let sasrec = match opts.test {
        true => cf::baselines(cfg, (&dataset, &split), &run_dir, &mut table)?,
        false => cf::train_cf(&dataset, &split, cfg, &run_dir)?,
    };
    clock.lap("sasrec");
    let d = items_as_tokens(cfg, &plan, (dataset, split), &sasrec, tokenizer, &run_dir)?;
    clock.lap("items and prompts");

    // 3. and 4. The warm-up, then every method from it.
    let mut journal = Journal::open(&run_dir, cfg.resume)?;
    let evaluator = Evaluator {
        trie: &d.trie,
        beams: cfg.beams,
        threads: cfg.threads,
        cache: cfg.out.as_ref().map(|_| run_dir.join("eval-cache")),
    };
    let llm = Llm {
        plan: &plan,
        d: &d,
        sasrec: &sasrec,
        evaluator: &evaluator,
    };
    let (methods, finetuned) = fine_tune_all(cfg, opts, &llm, &run_dir, &mut journal, &mut clock)?;

    // 5. Test evaluation (train's table), then the per-user ranks a study asks for.
    let mut test_ranks = Vec::new();
    if opts.test {
        test_ranks = test_table(&llm, &finetuned, &journal, &mut table, &mut clock)?;
    }
    let ranks = per_user_ranks(opts, &llm, &finetuned, test_ranks, &mut clock)?;
    let test_evaluations = table.rows.len() + ranks.iter().filter(|r| r.test.is_some()).count();

    // 6. The run folder's plots and results.
    results::write_plots(&run_dir, &journal.log, &methods)?;
    let summary = match opts.test {
        true => Some(results::write_results(
            &run_dir,
            (&d.dataset.name, cfg.protocol),
            started.elapsed().as_secs_f64(),
            &table,
            &clock.laps,
        )?),
        false => None,
    };
    Ok(RunOutput {
        valid_ndcg10: methods
            .iter()
            .map(|(name, _)| (name.clone(), last_valid(&journal.log, name)))
            .collect(),
        test_users: test_user_ids(&d.dataset, &d.split),
        valid_users: d.valid.len(),
        dataset: d.dataset.name.clone(),
        run_dir,
        table,
        ranks,
        test_evaluations,
        clock,
        summary,
    })
}

/// What the LLM stages read: the model plan, the prepared data, the CF model, the evaluation
/// settings.
struct Llm<'a> {
    plan: &'a ModelPlan,
    d: &'a PreparedData,
    sasrec: &'a SasRec,
    evaluator: &'a Evaluator<'a>,
}

/// Stage "items and prompts": in SID mode the semantic IDs (added to `tokenizer`), then every
/// item's text, the vocabulary, the trie and the examples; records the run's config.json.
fn items_as_tokens(
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    (dataset, split): (Dataset, Split),
    sasrec: &SasRec,
    mut tokenizer: Tokenizer,
    run_dir: &Path,
) -> Result<PreparedData> {
    let sids = match cfg.item_repr {
        ItemRepr::Sid => {
            let sasrec_sids = sids::item_sids(cfg, plan, &dataset, sasrec, &mut tokenizer, run_dir);
            Some(sasrec_sids?)
        }
        ItemRepr::Title => None,
    };
    let texts = data::item_texts(cfg.item_repr, &dataset, sids.as_deref())?;
    let d = data::prepare_for(cfg, plan, &tokenizer, (dataset, split), texts)?;
    results::write_run_config(run_dir, cfg, plan, &d)?;
    Ok(d)
}

/// The methods a run fine-tunes, in table order: [`variants::variants`], then the extra ILRec
/// configurations of `opts`. Each comes with the schedule it trains with.
fn methods_of(
    cfg: &PipelineConfig,
    opts: &RunOptions,
    top: usize,
    item_vocab: &Option<Vec<u32>>,
) -> Vec<(String, StepConfig, Schedule)> {
    let mut out: Vec<_> = variants::variants(cfg, top, item_vocab.clone())
        .into_iter()
        .map(|(name, step)| {
            let schedule = variants::schedule_of(cfg, &name);
            (name, step, schedule)
        })
        .collect();
    for (name, extra) in &opts.extra_ilrec {
        let step = variants::ilrec_step(extra, top, item_vocab.clone());
        out.push((name.clone(), step, extra.schedule));
    }
    out
}

/// Fine-tuned models by method name, in table order.
type Finetuned = Vec<(String, Llama)>;

/// Stages 3 and 4: the SFT warm-up (from scratch or the pretrained checkpoint), then every
/// method from its weights on the same batches. Returns the methods (for the plots) and the
/// trained models.
fn fine_tune_all(
    cfg: &PipelineConfig,
    opts: &RunOptions,
    llm: &Llm,
    run_dir: &Path,
    journal: &mut Journal,
    clock: &mut StageClock,
) -> Result<(Vec<(String, StepConfig)>, Finetuned)> {
    let d = llm.d;
    // With --lora: adapters on the frozen checkpoint, the SID token rows training with them.
    let vocab = (&d.vocab, d.model_eos);
    let built = model::build_run_model(cfg, llm.plan, vocab, d.item_vocab.as_deref())?;
    let lora = built.lora.clone();
    let inputs = StageInputs {
        examples: &d.train,
        valid: &d.valid,
        valid_excluded: &d.valid_excluded,
        trie: &d.trie,
        cf: Some(llm.sasrec),
        evaluator: llm.evaluator,
    };
    let steps = steps_for(cfg.epochs, d.train.len(), cfg.batch);
    let warmup = stage_config(
        cfg,
        "warmup",
        steps,
        StepConfig::sft(),
        Schedule::Joint,
        cfg.seed + 1,
    );
    let warm = run_resumable(built.model, &warmup, &inputs, journal)?;
    let checkpoints = run_dir.join("checkpoints");
    if lora.is_some() {
        save(&checkpoints.join("warmup"), &warm, cfg, &lora)?; // an adapter is small: keep it too
    }
    clock.lap("sft warm-up");

    let top = warm.config.num_hidden_layers;
    let mut methods = Vec::new();
    let mut finetuned = Vec::new();
    for (name, step, schedule) in methods_of(cfg, opts, top, &d.item_vocab) {
        let steps = steps_for(cfg.finetune_epochs, d.train.len(), cfg.batch);
        let stage = stage_config(cfg, &name, steps, step.clone(), schedule, cfg.seed + 2);
        let trained = run_resumable(warm.clone(), &stage, &inputs, journal)?;
        save(&checkpoints.join(file_name(&name)), &trained, cfg, &lora)?;
        clock.lap(&format!("{name} fine-tune"));
        methods.push((name.clone(), step));
        finetuned.push((name, trained));
    }
    Ok((methods, finetuned))
}

/// A trained model's checkpoint: the full model, or under `--lora` its adapter.
fn save(dir: &Path, m: &Llama, cfg: &PipelineConfig, lora: &Option<LoraConfig>) -> Result<()> {
    model::save_trained(dir, m, lora.as_ref(), &cfg.model)
}

/// Stage 5, `train`'s test evaluation: one table row per fine-tuned model (ranked under
/// `cfg.protocol`, the last logged validation NDCG@10 beside it). Returns each model's per-user test ranks.
fn test_table(
    llm: &Llm,
    finetuned: &Finetuned,
    journal: &Journal,
    table: &mut ResultsTable,
    clock: &mut StageClock,
) -> Result<Vec<Ranks>> {
    let mut ranks = Vec::new();
    for (name, trained) in finetuned {
        let label = format!("test {name}");
        let outcome = (llm.evaluator).run(trained, &llm.d.test, &llm.d.test_excluded, &label)?;
        let valid = last_valid(&journal.log, name);
        let test = outcome.metrics.mean();
        table.push(result_row(name, test, outcome.invalid_rate(), Some(valid)));
        ranks.push(ranks_of(outcome));
        clock.lap(&format!("{name} test eval"));
    }
    Ok(ranks)
}

fn ranks_of(outcome: EvalOutcome) -> Ranks {
    Ranks {
        invalid_rate: outcome.invalid_rate(),
        ranks: outcome.ranks,
    }
}

/// Every method's per-user ranks under each protocol of `opts`: on the validation subset and,
/// with `opts.test`, on the test users. `test_table_ranks` = the fine-tuned models' test ranks
/// [`test_table`] computed already (under the run's protocol), reused rather than searched
/// again.
fn per_user_ranks(
    opts: &RunOptions,
    llm: &Llm,
    finetuned: &Finetuned,
    test_table_ranks: Vec<Ranks>,
    clock: &mut StageClock,
) -> Result<Vec<MethodRanks>> {
    let d = llm.d;
    let mut out = Vec::new();
    for &protocol in &opts.protocols {
        let excluded = ProtocolExclusions::build(protocol, d, opts.test)?;
        out.extend(baseline_ranks(llm, &excluded)?);
        let table_protocol = protocol == d.test_excluded.protocol;
        for (i, (name, model)) in finetuned.iter().enumerate() {
            let label = |split: &str| format!("{split} {name} ({})", protocol.name());
            let run = |examples: &[TrainExample], excluded: &Exclusions, split: &str| {
                llm.evaluator.run(model, examples, excluded, split)
            };
            let valid = ranks_of(run(&d.valid, &excluded.valid, &label("valid"))?);
            let test = match (&excluded.test, test_table_ranks.get(i)) {
                (None, _) => None,
                (Some(_), Some(known)) if table_protocol => Some(known.clone()),
                (Some(test), _) => Some(ranks_of(run(&d.test, test, &label("test"))?)),
            };
            out.push(MethodRanks {
                method: name.clone(),
                protocol,
                valid,
                test,
            });
            clock.lap(&format!("{name} ranks ({})", protocol.name()));
        }
    }
    Ok(out)
}

/// What one protocol leaves out of each validation-subset ranking and (with test) each test
/// ranking: the prepared data's own exclusions when the protocol is the run's.
struct ProtocolExclusions {
    protocol: Protocol,
    valid: Exclusions,
    test: Option<Exclusions>,
}

impl ProtocolExclusions {
    fn build(protocol: Protocol, d: &PreparedData, test: bool) -> Result<ProtocolExclusions> {
        let of = |known: &Exclusions, samples: &[Sample]| match known.protocol == protocol {
            true => Ok(known.clone()),
            false => Exclusions::build(protocol, &d.dataset, samples),
        };
        Ok(ProtocolExclusions {
            protocol,
            valid: of(&d.valid_excluded, &d.valid_subset)?,
            test: match test {
                true => Some(of(&d.test_excluded, &d.split.test)?),
                false => None,
            },
        })
    }
}

/// Popularity's and SASRec's per-user ranks under one protocol's exclusions (test ones only
/// when `excluded` has them).
fn baseline_ranks(llm: &Llm, excluded: &ProtocolExclusions) -> Result<[MethodRanks; 2]> {
    let d = llm.d;
    let popularity = Popularity::from_dataset(&d.dataset);
    let pop = |samples: &[Sample], ex| popularity_ranks(&popularity, samples, ex);
    let cf = |samples: &[Sample], ex| sasrec_ranks(llm.sasrec, samples, ex);
    let test = excluded.test.as_ref();
    Ok([
        MethodRanks {
            method: "popularity".into(),
            protocol: excluded.protocol,
            valid: pop(&d.valid_subset, &excluded.valid)?,
            test: test.map(|ex| pop(&d.split.test, ex)).transpose()?,
        },
        MethodRanks {
            method: "sasrec".into(),
            protocol: excluded.protocol,
            valid: cf(&d.valid_subset, &excluded.valid)?,
            test: test.map(|ex| cf(&d.split.test, ex)).transpose()?,
        },
    ])
}

/// The data set's ids of the test users, in split order.
fn test_user_ids(dataset: &Dataset, split: &Split) -> Vec<String> {
    split
        .test
        .iter()
        .map(|s| dataset.users[s.user as usize].clone())
        .collect()
}
