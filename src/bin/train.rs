//! `train`: the whole ILRec pipeline, end to end, on one data set.
//!
//! 1. load and split the data; render items (title mode: title tokens then EOS); build the trie
//! 2. train SASRec (the CF reward model, and a results row)
//! 3. SFT warm-up of the LLM on the seqrec prompts
//! 4. from that checkpoint: ILRec fine-tuning, and the SFT baseline continued on the same batches
//! 5. evaluate each model with trie-constrained beam search on validation and test
//! 6. print the results table; write runs/<name>/ (config, log, results, checkpoints, plots)
//!
//! The last line on stdout is one JSON object with the table. Run `train --help` for options.

use ilrec::cf::{SasRec, SasRecConfig, SasRecTrainOptions};
use ilrec::ilrec::negatives::Ensemble;
use ilrec::ilrec::schedule::Schedule;
use ilrec::ilrec::trainer::{
    run_stage, StageCheckpoint, StageConfig, StageState, StepConfig, TrainExample,
};
use ilrec::ilrec::{LensLayers, ObjectiveWeights};
use ilrec::model::config::LlamaConfig;
use ilrec::model::gguf::GgufFile;
use ilrec::model::gguf_hf::{hf_config, hf_tokenizer_json};
use ilrec::model::llama::Llama;
use ilrec::rec::decode::LlamaScorer;
use ilrec::rec::eval::{evaluate, EvalOutcome};
use ilrec::rec::vocab_map::VocabMap;
use ilrec::rec::{
    leave_one_out, load_dataset, sample_prompt, ItemTrie, LoadOptions, Popularity, Sample,
};
use ilrec::report::{line_plot, Progress, ResultRow, ResultsTable, RunLog, Series};
use ilrec::rng::Rng;
use ilrec::tokenizer::Tokenizer;
use ilrec::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

const HELP: &str = "train: the ILRec pipeline end to end (data -> SASRec -> SFT warm-up -> ILRec and SFT -> beam-search evaluation -> table)

Usage: train [options]

Data and model:
  --data DIR            data set folder (MovieLens CSV or RecBole atomic files) [embedded data/ml-latest-small]
  --kcore K             k-core filter, 0 = off [5]
  --model PRESET|PATH   preset (tiny, mini, small, base) trained from scratch, an HF checkpoint folder or a .gguf file [tiny]
  --item-repr title     how items are written (only `title` for now) [title]
  --max-history N       history items in the LLM prompt [10]
  --train-samples N     seeded subsample of training samples for the LLM, 0 = all [0 = all]
  --valid-users N       seeded subset of validation users for model selection, 0 = all [200]
Training:
  --epochs E            SFT warm-up passes over the training samples [1]
  --finetune-epochs E   passes of each continuation (ILRec and SFT from the warm-up) [0.5]
  --batch B             examples per step [16]
  --sasrec-epochs N     SASRec training epochs (the CF reward model) [10]
  --lr LR               peak learning rate (cosine, 5% warm-up) [0.002]
  --lens-layers S       logit-lens layers: a list like 2,3 (blocks from 1), `lastK`, or `final` [last4: the four blocks below the top]
  --alpha A  --lambda L  --mu M  --margin G  --tau T   ILRec objective [0.1 0.1 1 0 1]
  --schedule joint|sequential   the two ILRec stages [joint]
  --ablation            also run w/o CPO, w/o CRR, w/o CPD, final-layer negatives
Evaluation and output:
  --beams N             beam width of constrained decoding [20]
  --seed S              seed of everything [0]
  --threads N           evaluation threads [2]
  --out DIR             run folder [runs/<timestamp>]
  --checkpoint-every N  save a resumable checkpoint every N steps [50]
  --resume              continue a killed run in --out from its last checkpoint
  --help                this text
";

/// Command-line options (all validated before any long work starts).
#[derive(Clone, Debug)]
struct Options {
    data: PathBuf,
    kcore: usize,
    model: String,
    item_repr: String,
    max_history: usize,
    train_samples: usize,
    valid_users: usize,
    epochs: f64,
    finetune_epochs: f64,
    batch: usize,
    lr: f32,
    lens_layers: LensLayers,
    alpha: f32,
    lambda: f32,
    mu: f32,
    margin: f32,
    tau: f32,
    schedule: Schedule,
    ablation: bool,
    beams: usize,
    sasrec_epochs: usize,
    checkpoint_every: usize,
    seed: u64,
    threads: usize,
    out: Option<PathBuf>,
    resume: bool,
}

fn main() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{HELP}");
        return;
    }
    if let Err(e) = parse_options(&args).and_then(|opts| run(&opts, started)) {
        eprintln!("train: error: {e}");
        std::process::exit(2);
    }
}

fn run(opts: &Options, started: Instant) -> Result<()> {
    // Everything that can be wrong with the inputs is checked here, before the long stages.
    let model_config = resolve_model(opts)?;
    let tokenizer_path = tokenizer_path(opts)?;
    let run_dir = prepare_run_dir(opts)?;
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut stage_clock = Instant::now();
    let mut lap = |name: &str, timings: &mut Vec<(String, f64)>| {
        timings.push((name.to_string(), stage_clock.elapsed().as_secs_f64()));
        stage_clock = Instant::now();
    };

    // 1. Data: load, split, render items, tokenise, compact vocabulary, item trie.
    let dataset = load_dataset(
        &opts.data,
        &LoadOptions {
            kcore: opts.kcore,
            ..LoadOptions::default()
        },
    )?;
    let split = leave_one_out(&dataset, ilrec::rec::DEFAULT_MAX_HISTORY)?;
    eprintln!(
        "data: {} users, {} items, {} interactions, {} train / {} valid / {} test samples",
        dataset.num_users(),
        dataset.num_items(),
        dataset.num_interactions(),
        split.train.len(),
        split.valid.len(),
        split.test.len()
    );
    let tokenizer = match &model_config.1 {
        ModelSource::Gguf(path) => {
            let json = hf_tokenizer_json(&GgufFile::open(path)?)?;
            Tokenizer::from_json(&json, &path.display().to_string())?
        }
        _ => Tokenizer::from_file(&tokenizer_path)?,
    };
    let eos = tokenizer.token_to_id("<|endoftext|>").ok_or_else(|| {
        Error::config(
            "the tokenizer has no <|endoftext|> token",
            "use a SmolLM2-family tokenizer.json",
        )
    })?;
    let titles = dataset.unique_titles();
    let train_subset = subsample(&split.train, opts.train_samples, opts.seed);
    let valid_subset = subsample(&split.valid, opts.valid_users, opts.seed ^ 0x5eed);
    let encoded = encode_all(
        &tokenizer,
        &titles,
        &[&train_subset, &valid_subset, &split.test],
        opts.max_history,
    )?;
    let vocab = match model_config.1 {
        ModelSource::Scratch => VocabMap::from_tokens(encoded.all_token_streams(), &[eos]),
        ModelSource::Pretrained(_) | ModelSource::Gguf(_) => {
            VocabMap::identity(model_config.0.vocab_size)
        }
    };
    vocab.save(&run_dir.join("vocab_map.json"))?;
    let item_seqs: Vec<Vec<u32>> = encoded
        .items
        .iter()
        .map(|s| vocab.to_model_ids(s))
        .collect::<Result<_>>()?;
    let model_eos = vocab.to_model_ids(&[eos])?[0];
    let trie = ItemTrie::build(&item_seqs, model_eos)?;
    let to_examples = |prompts: &[Vec<u32>], samples: &[Sample]| -> Result<Vec<TrainExample>> {
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
    };
    let train_examples = to_examples(&encoded.prompts[0], &train_subset)?;
    let valid_examples = to_examples(&encoded.prompts[1], &valid_subset)?;
    let test_examples = to_examples(&encoded.prompts[2], &split.test)?;
    eprintln!(
        "items: {} titles -> trie of {} nodes; model vocabulary {} of {} tokenizer ids; LLM on {} train samples, {} valid users",
        trie.num_items(), trie.num_nodes(), vocab.len(), tokenizer.vocab_size(), train_examples.len(), valid_examples.len()
    );
    write_config(&run_dir, opts, &model_config.0, vocab.len())?;
    lap("data", &mut timings);

    // Popularity: the floor every model must beat.
    let mut table = ResultsTable::default();
    let popularity = Popularity::from_dataset(&dataset);
    table.push(ResultRow {
        method: "popularity".into(),
        test: popularity.evaluate(&split.test).mean(),
        invalid_rate: 0.0,
        valid_ndcg10: Some(
            popularity
                .evaluate(&valid_subset)
                .mean()
                .ndcg_at(10)
                .unwrap_or(0.0),
        ),
    });

    // 2. SASRec: the CF reward model (trained on the training split only), also a results row.
    let sasrec = train_sasrec(&dataset, &split, opts, &run_dir)?;
    table.push(ResultRow {
        method: "sasrec".into(),
        test: sasrec.evaluate(&split.test)?.mean(),
        invalid_rate: 0.0,
        valid_ndcg10: sasrec.evaluate(&valid_subset)?.mean().ndcg_at(10),
    });
    lap("sasrec", &mut timings);

    // 3. SFT warm-up from scratch (or from the pretrained checkpoint).
    let mut model = match &model_config.1 {
        ModelSource::Scratch => {
            let mut cfg = model_config.0.clone();
            cfg.vocab_size = vocab.len();
            cfg.eos_token_id = Some(model_eos);
            cfg.eos_token_ids = vec![model_eos];
            cfg.bos_token_id = None;
            Llama::from_config(cfg, opts.seed)?
        }
        ModelSource::Pretrained(dir) => Llama::from_dir(dir)?,
        ModelSource::Gguf(path) => Llama::from_gguf(path)?.0,
    };
    let log_path = run_dir.join("log.jsonl");
    let ckpt_root = run_dir.join("ckpt");
    std::fs::create_dir_all(&ckpt_root).map_err(|e| Error::io(&ckpt_root, e))?;
    let log = match opts.resume && log_path.exists() {
        true => RunLog::open(&log_path)?,
        false => RunLog::create(&log_path)?,
    };
    let mut journal = Journal {
        log,
        resume: opts.resume,
        stage_boundary: 0,
    };
    let evaluator = Evaluator {
        trie: &trie,
        beams: opts.beams,
        threads: opts.threads,
    };
    let warmup_steps = steps_for(opts.epochs, train_examples.len(), opts.batch);
    let finetune_steps = steps_for(opts.finetune_epochs, train_examples.len(), opts.batch);
    let stage =
        |name: &str, steps: usize, step: StepConfig, schedule: Schedule, order_seed: u64| {
            StageConfig {
                name: name.into(),
                steps,
                batch: opts.batch,
                lr: opts.lr,
                warmup_steps: (steps / 20).max(1).min(steps),
                clip_norm: 1.0,
                weight_decay: 0.01,
                schedule,
                step,
                order_seed,
                checkpoint_every: opts.checkpoint_every,
                validate_at: vec![steps / 2],
            }
        };
    let warmup_cfg = stage(
        "warmup",
        warmup_steps,
        StepConfig::sft(),
        Schedule::Joint,
        opts.seed + 1,
    );
    model = run_resumable(
        model,
        &warmup_cfg,
        &train_examples,
        &trie,
        Some(&sasrec),
        &mut journal,
        &ckpt_root,
        &evaluator,
        &valid_examples,
    )?;
    lap("sft warm-up", &mut timings);

    // 4. From the warm-up checkpoint: the SFT baseline continued, and ILRec, on the same batches.
    let continuation_seed = opts.seed + 2;
    let ilrec_step = StepConfig {
        weights: ObjectiveWeights {
            alpha: opts.alpha,
            lambda: opts.lambda,
            mu: opts.mu,
            tau_r: 1.0,
        },
        lens_layers: lens_layers(opts, model.config.num_hidden_layers),
        margin: opts.margin,
        tau: opts.tau,
        ensemble: Ensemble::Mean,
    };
    let mut variants: Vec<(String, StepConfig)> = vec![
        ("sft".into(), StepConfig::sft()),
        ("ilrec".into(), ilrec_step.clone()),
    ];
    if opts.ablation {
        let w = ilrec_step.weights;
        let top = model.config.num_hidden_layers;
        variants.push((
            "ilrec w/o cpo".into(),
            StepConfig {
                weights: ObjectiveWeights { alpha: 0.0, ..w },
                ..ilrec_step.clone()
            },
        ));
        variants.push((
            "ilrec w/o crr".into(),
            StepConfig {
                weights: ObjectiveWeights { lambda: 0.0, ..w },
                ..ilrec_step.clone()
            },
        ));
        variants.push((
            "ilrec w/o cpd".into(),
            StepConfig {
                weights: ObjectiveWeights { mu: 0.0, ..w },
                ..ilrec_step.clone()
            },
        ));
        variants.push((
            "final-layer negatives".into(),
            StepConfig {
                lens_layers: vec![top],
                ..ilrec_step.clone()
            },
        ));
    }
    let mut finetuned: Vec<(String, Llama, f64)> = Vec::new();
    for (name, step) in &variants {
        let cfg = stage(
            name,
            finetune_steps,
            step.clone(),
            opts.schedule,
            continuation_seed,
        );
        let trained = run_resumable(
            model.clone(),
            &cfg,
            &train_examples,
            &trie,
            Some(&sasrec),
            &mut journal,
            &ckpt_root,
            &evaluator,
            &valid_examples,
        )?;
        let valid = last_valid(&journal.log, name);
        trained.save(run_dir.join("checkpoints").join(file_name(name)))?;
        finetuned.push((name.clone(), trained, valid));
        lap(&format!("{name} fine-tune"), &mut timings);
    }

    // 5. Test evaluation of every fine-tuned model with constrained beam search.
    for (name, trained, valid) in &finetuned {
        let outcome = evaluator.run(trained, &test_examples, &format!("test {name}"))?;
        table.push(ResultRow {
            method: name.clone(),
            test: outcome.metrics.mean(),
            invalid_rate: outcome.invalid_rate(),
            valid_ndcg10: Some(*valid),
        });
        lap(&format!("{name} test eval"), &mut timings);
    }

    // 6. Report: table, results.json, plots, the final JSON line.
    let seconds = started.elapsed().as_secs_f64();
    write_plots(&run_dir, &journal.log, &variants)?;
    let verdict = verdict(&table);
    eprintln!("\n{}\n{verdict}", table.to_text());
    eprintln!(
        "stage times: {}",
        timings
            .iter()
            .map(|(n, s)| format!("{n} {s:.1}s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let summary = json!({"dataset": dataset.name, "seconds": seconds, "rows": table.rows_json()});
    let results = json!({
        "dataset": dataset.name, "seconds": seconds, "rows": table.rows_json(), "verdict": verdict,
        "stage_seconds": timings.iter().map(|(n, s)| json!({"stage": n, "seconds": s})).collect::<Vec<_>>(),
        "run_dir": run_dir.display().to_string(),
    });
    let results_path = run_dir.join("results.json");
    std::fs::write(
        &results_path,
        serde_json::to_string_pretty(&results).unwrap_or_default() + "\n",
    )
    .map_err(|e| Error::io(&results_path, e))?;
    println!("{}", table.to_text());
    println!("{verdict}");
    println!("{summary}");
    Ok(())
}

/// Beam-search evaluation settings shared by validation and test.
struct Evaluator<'a> {
    trie: &'a ItemTrie,
    beams: usize,
    threads: usize,
}

impl Evaluator<'_> {
    fn run(&self, model: &Llama, examples: &[TrainExample], label: &str) -> Result<EvalOutcome> {
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

/// The run log plus where the last completed stage ended in it (for resuming).
struct Journal {
    log: RunLog,
    resume: bool,
    /// Log lines written up to the end of the last completed stage.
    stage_boundary: usize,
}

/// Runs (or resumes, or skips when already done) one training stage; returns the trained model.
/// On resume: a finished stage is loaded from its checkpoint; a stage killed midway continues
/// from its last checkpoint with the log cut back to it; a stage that never checkpointed starts
/// over with the log cut back to the end of the previous stage.
#[allow(clippy::too_many_arguments)]
fn run_resumable(
    model: Llama,
    cfg: &StageConfig,
    examples: &[TrainExample],
    trie: &ItemTrie,
    cf: Option<&SasRec>,
    journal: &mut Journal,
    ckpt_root: &Path,
    evaluator: &Evaluator,
    valid: &[TrainExample],
) -> Result<Llama> {
    let ckpt = StageCheckpoint::new(ckpt_root.join(file_name(&cfg.name)));
    let mut state = StageState::start(model, cfg);
    if journal.resume {
        match ckpt.load(cfg)? {
            Some((saved, log_lines, true)) => {
                eprintln!("{}: finished before the restart, loaded", cfg.name);
                journal.stage_boundary = log_lines;
                return Ok(saved.model);
            }
            Some((saved, log_lines, false)) => {
                eprintln!("{}: resuming from step {}", cfg.name, saved.step);
                state = saved;
                journal.log.truncate(log_lines)?;
            }
            None => journal.log.truncate(journal.stage_boundary)?,
        }
        journal.resume = false; // every later stage starts fresh
    }
    let mut progress = Progress::new(&cfg.name, cfg.steps);
    let mut validate = |m: &Llama| -> Result<f64> {
        let outcome = evaluator.run(m, valid, &format!("  valid {}", cfg.name))?;
        Ok(outcome.metrics.mean().ndcg_at(10).unwrap_or(0.0))
    };
    run_stage(
        &mut state,
        cfg,
        examples,
        trie,
        cf,
        &mut journal.log,
        Some(&ckpt),
        &mut progress,
        &mut validate,
    )?;
    journal.stage_boundary = journal.log.len();
    Ok(state.model)
}

/// A stage or method name as a folder name (`ilrec w/o cpo` -> `ilrec_w_o_cpo`).
fn file_name(name: &str) -> String {
    name.replace([' ', '/'], "_")
}

fn steps_for(epochs: f64, examples: usize, batch: usize) -> usize {
    ((epochs * examples as f64) / batch as f64).ceil().max(1.0) as usize
}

/// The last validation NDCG@10 the log holds for a stage.
fn last_valid(log: &RunLog, stage: &str) -> f64 {
    log.records()
        .iter()
        .rev()
        .find(|r| r["stage"] == stage && r.get("valid_ndcg@10").is_some())
        .and_then(|r| r["valid_ndcg@10"].as_f64())
        .unwrap_or(f64::NAN)
}

/// The sentence the README quotes: does ILRec beat SFT, does SFT beat popularity?
fn verdict(table: &ResultsTable) -> String {
    let hit10 = |m: &str| {
        table
            .get(m)
            .and_then(|r| r.test.hit_at(10))
            .unwrap_or(f64::NAN)
    };
    let ndcg10 = |m: &str| {
        table
            .get(m)
            .and_then(|r| r.test.ndcg_at(10))
            .unwrap_or(f64::NAN)
    };
    format!(
        "SFT {} popularity on test Hit@10 ({:.4} vs {:.4}); ILRec {} SFT on test NDCG@10 ({:.4} vs {:.4}) and {} on Hit@10 ({:.4} vs {:.4})",
        if hit10("sft") > hit10("popularity") { "beats" } else { "does NOT beat" }, hit10("sft"), hit10("popularity"),
        if ndcg10("ilrec") > ndcg10("sft") { "beats" } else { "does NOT beat" }, ndcg10("ilrec"), ndcg10("sft"),
        if hit10("ilrec") > hit10("sft") { "beats it" } else { "does not beat it" }, hit10("ilrec"), hit10("sft"),
    )
}

/// SASRec with its default config, trained on the training split; cached in the run folder so a
/// resumed run reuses it.
fn train_sasrec(
    dataset: &ilrec::rec::Dataset,
    split: &ilrec::rec::Split,
    opts: &Options,
    run_dir: &Path,
) -> Result<SasRec> {
    let path = run_dir.join("checkpoints").join("sasrec.safetensors");
    if opts.resume && path.exists() {
        eprintln!("sasrec: loaded {}", path.display());
        return SasRec::load(&path);
    }
    let mut sasrec = SasRec::new(SasRecConfig::new(dataset.num_items()), opts.seed)?;
    let train_opts = SasRecTrainOptions {
        epochs: 30,
        patience: 3,
        seed: opts.seed,
        ..SasRecTrainOptions::default()
    };
    let mut progress = Progress::new("sasrec (epochs)", train_opts.epochs);
    sasrec.train(split, &train_opts, |report| {
        progress.set_note(format!(
            "loss {:.3} valid ndcg@10 {:.4}",
            report.train_loss,
            report.valid.ndcg_at(10).unwrap_or(0.0)
        ));
        progress.inc(1);
    })?;
    progress.finish();
    std::fs::create_dir_all(run_dir.join("checkpoints")).map_err(|e| Error::io(run_dir, e))?;
    sasrec.save(&path)?;
    Ok(sasrec)
}

/// Tokenised items and prompts: `items[i]` = item i's title tokens (tokenizer ids; the trie
/// appends EOS);
/// `prompts[g][k]` = the prompt of sample k of group g.
struct Encoded {
    items: Vec<Vec<u32>>,
    prompts: Vec<Vec<Vec<u32>>>,
}

impl Encoded {
    fn all_token_streams(&self) -> impl Iterator<Item = &[u32]> {
        self.items
            .iter()
            .map(Vec::as_slice)
            .chain(self.prompts.iter().flatten().map(Vec::as_slice))
    }
}

/// Title mode: an item is its title's tokens then EOS; prompts show the last `max_history`
/// history titles.
fn encode_all(
    tokenizer: &Tokenizer,
    titles: &[String],
    groups: &[&[Sample]],
    max_history: usize,
) -> Result<Encoded> {
    // The trie appends EOS to each item itself.
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
fn subsample(samples: &[Sample], n: usize, seed: u64) -> Vec<Sample> {
    if n == 0 || n >= samples.len() {
        return samples.to_vec();
    }
    let mut idx: Vec<usize> = (0..samples.len()).collect();
    Rng::new(seed).shuffle(&mut idx);
    let mut keep = idx[..n].to_vec();
    keep.sort_unstable();
    keep.into_iter().map(|i| samples[i].clone()).collect()
}

enum ModelSource {
    Scratch,
    Pretrained(PathBuf),
    /// A GGUF file (e.g. SmolLM2 from scripts/get-smollm2.sh): weights and tokenizer inside.
    Gguf(PathBuf),
}

/// A preset name (embedded config.json, trained from scratch) or an HF checkpoint folder.
fn resolve_model(opts: &Options) -> Result<(LlamaConfig, ModelSource)> {
    let preset = match opts.model.as_str() {
        "tiny" => Some(include_str!("../../data/presets/tiny.json")),
        "mini" => Some(include_str!("../../data/presets/mini.json")),
        "small" => Some(include_str!("../../data/presets/small.json")),
        "base" => Some(include_str!("../../data/presets/base.json")),
        _ => None,
    };
    let (cfg, source) = match preset {
        Some(text) => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| Error::format(&opts.model, e.to_string()))?;
            (
                LlamaConfig::from_json(&value, format!("preset {}", opts.model))?,
                ModelSource::Scratch,
            )
        }
        None if opts.model.ends_with(".gguf") && Path::new(&opts.model).is_file() => {
            let path = PathBuf::from(&opts.model);
            let config = hf_config(&GgufFile::open(&path)?)?;
            (
                LlamaConfig::from_json(&config, &path)?,
                ModelSource::Gguf(path),
            )
        }
        None => {
            let dir = PathBuf::from(&opts.model);
            if !dir.join("config.json").is_file() {
                return Err(Error::config(
                    format!(
                        "--model {}: not a preset and not a folder with config.json",
                        opts.model
                    ),
                    "use a preset (tiny, mini, small, base), an HF checkpoint folder or a .gguf file",
                ));
            }
            (
                LlamaConfig::from_file(dir.join("config.json"))?,
                ModelSource::Pretrained(dir),
            )
        }
    };
    // Checked here, before any long work: layers outside 1..=L are an error with a hint.
    opts.lens_layers.resolve(cfg.num_hidden_layers)?;
    Ok((cfg, source))
}

/// S: by default the four blocks below the top, clipped to >= 1 (validated in `resolve_model`).
fn lens_layers(opts: &Options, top: usize) -> Vec<usize> {
    opts.lens_layers.resolve(top).unwrap_or_else(|_| vec![top])
}

fn tokenizer_path(opts: &Options) -> Result<PathBuf> {
    let from_model = Path::new(&opts.model).join("tokenizer.json");
    let path = if from_model.is_file() {
        from_model
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tokenizer/smollm2/tokenizer.json")
    };
    if !path.is_file() {
        return Err(Error::config(
            format!("tokenizer {} not found", path.display()),
            "the repository ships data/tokenizer/smollm2/tokenizer.json",
        ));
    }
    Ok(path)
}

fn prepare_run_dir(opts: &Options) -> Result<PathBuf> {
    let dir = match &opts.out {
        Some(d) => d.clone(),
        None => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            PathBuf::from("runs").join(format!("run-{secs}"))
        }
    };
    if opts.resume && !dir.join("config.json").is_file() {
        return Err(Error::config(
            format!("--resume: {} holds no run", dir.display()),
            "pass the --out folder of the killed run",
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    Ok(dir)
}

fn write_config(run_dir: &Path, opts: &Options, model: &LlamaConfig, vocab: usize) -> Result<()> {
    let mut model_json = model.to_json();
    model_json["vocab_size"] = json!(vocab);
    let value = json!({
        "data": opts.data.display().to_string(), "kcore": opts.kcore, "model": opts.model,
        "item_repr": opts.item_repr, "max_history": opts.max_history, "train_samples": opts.train_samples,
        "valid_users": opts.valid_users, "epochs": opts.epochs, "finetune_epochs": opts.finetune_epochs,
        "batch": opts.batch, "lr": opts.lr, "lens_layers": lens_layers(opts, model.num_hidden_layers),
        "alpha": opts.alpha, "lambda": opts.lambda, "mu": opts.mu, "margin": opts.margin, "tau": opts.tau,
        "schedule": opts.schedule.name(), "ablation": opts.ablation, "beams": opts.beams, "seed": opts.seed,
        "threads": opts.threads, "eos": "<|endoftext|>", "model_config": model_json,
    });
    let path = run_dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
    )
    .map_err(|e| Error::io(&path, e))
}

/// loss.svg (loss terms of every fine-tuning stage) and valid_ndcg.svg.
fn write_plots(run_dir: &Path, log: &RunLog, variants: &[(String, StepConfig)]) -> Result<()> {
    let mut loss = vec![Series {
        name: "warmup ce".into(),
        points: log.series(("stage", "warmup"), "step", "ce"),
    }];
    let mut ndcg = vec![Series {
        name: "warmup".into(),
        points: log.series(("stage", "warmup"), "step", "valid_ndcg@10"),
    }];
    for (name, _) in variants {
        for term in ["ce", "crr", "cpd"] {
            let points = log.series(("stage", name), "step", term);
            if points.iter().any(|p| p.1 != 0.0) {
                loss.push(Series {
                    name: format!("{name} {term}"),
                    points,
                });
            }
        }
        ndcg.push(Series {
            name: name.clone(),
            points: log.series(("stage", name), "step", "valid_ndcg@10"),
        });
    }
    for (file, svg) in [
        (
            "loss.svg",
            line_plot("training loss terms", "step (per stage)", "loss", &loss),
        ),
        (
            "valid_ndcg.svg",
            line_plot("validation NDCG@10", "step (per stage)", "NDCG@10", &ndcg),
        ),
    ] {
        let path = run_dir.join(file);
        std::fs::write(&path, svg).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// Parses the command line; every value is checked here.
fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        data: Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small"),
        kcore: 5,
        model: "tiny".into(),
        item_repr: "title".into(),
        max_history: 10,
        train_samples: 0,
        valid_users: 200,
        epochs: 1.0,
        finetune_epochs: 0.5,
        batch: 16,
        lr: 2e-3,
        lens_layers: LensLayers::default(),
        alpha: 0.1,
        lambda: 0.1,
        mu: 1.0,
        margin: 0.0,
        tau: 1.0,
        schedule: Schedule::Joint,
        ablation: false,
        beams: 20,
        sasrec_epochs: 10,
        checkpoint_every: 50,
        seed: 0,
        threads: 2,
        out: None,
        resume: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| Error::config(format!("{flag} needs a value"), "see train --help"))
        };
        match flag.as_str() {
            "--data" => o.data = PathBuf::from(value()?),
            "--kcore" => o.kcore = num(flag, &value()?)?,
            "--model" => o.model = value()?,
            "--item-repr" => o.item_repr = value()?,
            "--max-history" => o.max_history = num(flag, &value()?)?,
            "--train-samples" => o.train_samples = num(flag, &value()?)?,
            "--valid-users" => o.valid_users = num(flag, &value()?)?,
            "--epochs" => o.epochs = num(flag, &value()?)?,
            "--finetune-epochs" => o.finetune_epochs = num(flag, &value()?)?,
            "--batch" => o.batch = num(flag, &value()?)?,
            "--lr" => o.lr = num(flag, &value()?)?,
            "--lens-layers" => o.lens_layers = LensLayers::parse(&value()?)?,
            "--alpha" => o.alpha = num(flag, &value()?)?,
            "--lambda" => o.lambda = num(flag, &value()?)?,
            "--mu" => o.mu = num(flag, &value()?)?,
            "--margin" => o.margin = num(flag, &value()?)?,
            "--tau" => o.tau = num(flag, &value()?)?,
            "--schedule" => o.schedule = Schedule::parse(&value()?)?,
            "--ablation" => o.ablation = true,
            "--beams" => o.beams = num(flag, &value()?)?,
            "--checkpoint-every" => o.checkpoint_every = num(flag, &value()?)?,
            "--sasrec-epochs" => o.sasrec_epochs = num(flag, &value()?)?,
            "--seed" => o.seed = num(flag, &value()?)?,
            "--threads" => o.threads = num(flag, &value()?)?,
            "--out" => o.out = Some(PathBuf::from(value()?)),
            "--resume" => o.resume = true,
            other => {
                return Err(Error::config(
                    format!("unknown option `{other}`"),
                    "see train --help",
                ))
            }
        }
    }
    check_options(&o)?;
    Ok(o)
}

fn check_options(o: &Options) -> Result<()> {
    let fail = |msg: &str, hint: &str| Err(Error::config(msg, hint));
    if !o.data.is_dir() {
        return fail(
            &format!("--data {}: no such folder", o.data.display()),
            "pass a MovieLens or RecBole folder, e.g. data/ml-latest-small",
        );
    }
    if o.item_repr != "title" {
        return fail(
            &format!("--item-repr {}: not supported yet", o.item_repr),
            "use --item-repr title (semantic IDs come later)",
        );
    }
    if o.beams == 0 {
        return fail(
            "--beams 0",
            "beam search needs at least 1 beam (default 20)",
        );
    }
    if o.batch == 0 || o.threads == 0 || o.max_history == 0 {
        return fail(
            "--batch, --threads and --max-history must be at least 1",
            "see train --help for the defaults",
        );
    }
    if !(o.epochs > 0.0 && o.finetune_epochs > 0.0) {
        return fail(
            "--epochs and --finetune-epochs must be > 0",
            "e.g. --epochs 1 --finetune-epochs 0.5",
        );
    }
    if !(o.lr > 0.0 && o.tau > 0.0) || o.alpha < 0.0 || o.lambda < 0.0 || o.mu < 0.0 {
        return fail(
            "--lr and --tau must be > 0 and --alpha, --lambda, --mu >= 0",
            "defaults: --lr 0.002 --tau 1 --alpha 0.1 --lambda 0.1 --mu 1",
        );
    }
    if o.resume && o.out.is_none() {
        return fail(
            "--resume needs --out",
            "pass the run folder of the killed run",
        );
    }
    Ok(())
}

fn num<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T> {
    text.parse().map_err(|_| {
        Error::config(
            format!("{flag} {text}: not a valid number"),
            "see train --help",
        )
    })
}
