//! `train`: the whole ILRec pipeline, end to end, on one data set. Each step is a stage of
//! `ilrec::pipeline`; this file is the story, in order:
//!
//! 1. load and split the data; render items (title mode: title tokens then EOS); build the trie
//! 2. train SASRec (the CF reward model, and a results row)
//! 3. SFT warm-up of the LLM on the seqrec prompts
//! 4. from that checkpoint: ILRec fine-tuning, and the SFT baseline continued on the same batches
//! 5. evaluate each model with trie-constrained beam search on validation and test
//! 6. print the results table; write runs/<name>/ (config, log, results, checkpoints, plots)
//!
//! The last line on stdout is one JSON object with the table. Run `train --help` for options.

use ilrec::cli::{wants_help, Flags};
use ilrec::ilrec::negatives::Ensemble;
use ilrec::ilrec::schedule::Schedule;
use ilrec::ilrec::trainer::{NegativesScope, StepConfig};
use ilrec::ilrec::LensLayers;
use ilrec::pipeline::config::{ItemRepr, PipelineConfig};
use ilrec::pipeline::evaluate::Evaluator;
use ilrec::pipeline::stage::{file_name, last_valid, run_resumable, stage_config, steps_for};
use ilrec::pipeline::stage::{Journal, StageInputs};
use ilrec::pipeline::{cf, data, model, results, variants};
use ilrec::rec::Popularity;
use ilrec::report::{ResultRow, ResultsTable};
use ilrec::Result;
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
  --lr LR               peak learning rate (cosine to lr/10) [0.002]
  --warmup F            linear lr warm-up, fraction of a stage's steps [0.05]
  --clip-norm C         global gradient-norm clip [1]
  --weight-decay W      AdamW weight decay (norms and biases excluded) [0.01]
  --sasrec-epochs N     SASRec (the CF reward model): most epochs [30]
  --sasrec-patience N   SASRec: stop after N epochs without a better validation NDCG@10 [3]
ILRec:
  --lens-layers S       logit-lens layers: a list like 2,3 (blocks from 1), `lastK`, or `final` [last4: the four blocks below the top]
  --alpha A  --lambda L  --mu M  --margin G  --tau T   CPO, CRR, CPD weights; negative margin and temperature [0.1 0.1 1 0 1]
  --tau-r T             CRR reward temperature [1]
  --negatives-scope trie|vocab   negatives from the trie children of the prefix, or any token [trie]
  --ensemble mean|sum   how the lens layers' logits are combined for mining [mean]
  --schedule joint|sequential   the two ILRec stages [joint]
  --ablation            also run w/o CPO, w/o CRR, w/o CPD, final-layer negatives (with CPD 0, and with CPD kept)
Evaluation and output:
  --beams N             beam width of constrained decoding [20]
  --seed S              seed of everything [0]
  --threads N           evaluation threads [2]
  --out DIR             run folder [runs/run-<unix seconds>]
  --checkpoint-every N  save a resumable checkpoint every N steps [50]
  --resume              continue a killed run in --out from its last checkpoint
  --help                this text
";

fn main() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if wants_help(&args) {
        print!("{HELP}");
        return;
    }
    if let Err(e) = parse(args).and_then(|cfg| run(&cfg, started)) {
        eprintln!("train: error: {e}");
        std::process::exit(2);
    }
}

/// Stage wall times, for results.json and the stderr summary.
#[derive(Default)]
struct Clock {
    laps: Vec<(String, f64)>,
    since: Option<Instant>,
}

impl Clock {
    fn lap(&mut self, name: &str) {
        let since = self.since.unwrap_or_else(Instant::now);
        self.laps
            .push((name.to_string(), since.elapsed().as_secs_f64()));
        self.since = Some(Instant::now());
    }
}

fn run(cfg: &PipelineConfig, started: Instant) -> Result<()> {
    let mut clock = Clock {
        since: Some(Instant::now()),
        ..Clock::default()
    };
    // Everything that can be wrong with the inputs is checked before the long stages.
    let plan = model::plan_model(&cfg.model, &cfg.lens_layers)?;
    let tokenizer = model::load_tokenizer(&plan)?;
    let run_dir = results::prepare_run_dir(cfg.out.as_deref(), cfg.resume)?;

    // 1. Data: split, items as tokens, the vocabulary, the item trie, training examples.
    let d = prepare(cfg, &plan, &tokenizer, &run_dir)?;
    clock.lap("data");

    // Popularity, the floor every model must beat; 2. SASRec, the CF reward model.
    let mut table = ResultsTable::default();
    let sasrec = baselines(cfg, &d, &run_dir, &mut table)?;
    clock.lap("sasrec");

    // 3. SFT warm-up from scratch (or from the pretrained checkpoint).
    let built = model::build_model(&plan, &d.vocab, d.model_eos, cfg.seed)?;
    let mut journal = Journal::open(&run_dir, cfg.resume)?;
    let evaluator = Evaluator {
        trie: &d.trie,
        beams: cfg.beams,
        threads: cfg.threads,
    };
    let inputs = StageInputs {
        examples: &d.train,
        valid: &d.valid,
        trie: &d.trie,
        cf: Some(&sasrec),
        evaluator: &evaluator,
    };
    let steps = |epochs| steps_for(epochs, d.train.len(), cfg.batch);
    let warmup = stage_config(
        cfg,
        "warmup",
        steps(cfg.epochs),
        StepConfig::sft(),
        Schedule::Joint,
        cfg.seed + 1,
    );
    let warm = run_resumable(built.model, &warmup, &inputs, &mut journal)?;
    clock.lap("sft warm-up");

    // 4. From the warm-up weights: SFT continued, ILRec (and the ablations), same batches.
    let methods = variants::variants(cfg, warm.config.num_hidden_layers);
    let mut finetuned = Vec::new();
    for (name, step) in &methods {
        let stage = stage_config(
            cfg,
            name,
            steps(cfg.finetune_epochs),
            step.clone(),
            cfg.schedule,
            cfg.seed + 2,
        );
        let trained = run_resumable(warm.clone(), &stage, &inputs, &mut journal)?;
        trained.save(run_dir.join("checkpoints").join(file_name(name)))?;
        finetuned.push((name.clone(), trained, last_valid(&journal.log, name)));
        clock.lap(&format!("{name} fine-tune"));
    }

    // 5. Test evaluation of every fine-tuned model with constrained beam search.
    for (name, trained, valid) in &finetuned {
        let outcome = evaluator.run(trained, &d.test, &format!("test {name}"))?;
        table.push(row(
            name,
            outcome.metrics.mean(),
            outcome.invalid_rate(),
            Some(*valid),
        ));
        clock.lap(&format!("{name} test eval"));
    }

    // 6. Report: plots, results.json, the table, the verdict, the final JSON line.
    results::write_plots(&run_dir, &journal.log, &methods)?;
    let seconds = started.elapsed().as_secs_f64();
    let summary = results::write_results(&run_dir, &d.dataset.name, seconds, &table, &clock.laps)?;
    let verdict = results::verdict(&table);
    let times: Vec<String> = clock
        .laps
        .iter()
        .map(|(n, s)| format!("{n} {s:.1}s"))
        .collect();
    eprintln!(
        "\n{}\n{verdict}\nstage times: {}",
        table.to_text(),
        times.join(", ")
    );
    println!("{}\n{verdict}\n{summary}", table.to_text());
    Ok(())
}

/// Stage 1 and the run's config.json (the trained model config, the resolved lens layers).
fn prepare(
    cfg: &PipelineConfig,
    plan: &model::ModelPlan,
    tokenizer: &ilrec::tokenizer::Tokenizer,
    run_dir: &Path,
) -> Result<data::PreparedData> {
    let vocab = |enc: &data::Encoded, eos| model::vocabulary(plan, enc.all_token_streams(), eos);
    let d = data::prepare_data(cfg, data::load_and_split(cfg)?, tokenizer, vocab)?;
    d.vocab.save(&run_dir.join("vocab_map.json"))?;
    let mut model_json = model::trained_config(plan, &d.vocab, d.model_eos).to_json();
    model_json["vocab_size"] = d.vocab.len().into();
    let lens = variants::lens_layers(cfg, plan.config.num_hidden_layers);
    results::write_json(
        &run_dir.join("config.json"),
        &cfg.to_json(&lens, model_json),
    )?;
    Ok(d)
}

/// The popularity and SASRec rows; returns SASRec, the CF reward model of the ILRec runs.
fn baselines(
    cfg: &PipelineConfig,
    d: &data::PreparedData,
    run_dir: &Path,
    table: &mut ResultsTable,
) -> Result<ilrec::cf::SasRec> {
    let popularity = Popularity::from_dataset(&d.dataset);
    let valid_pop = popularity.evaluate(&d.valid_subset).mean().ndcg_at(10);
    let test_pop = popularity.evaluate(&d.split.test).mean();
    table.push(row(
        "popularity",
        test_pop,
        0.0,
        Some(valid_pop.unwrap_or(0.0)),
    ));
    let sasrec = cf::train_cf(&d.dataset, &d.split, cfg, run_dir)?;
    let valid_cf = sasrec.evaluate(&d.valid_subset)?.mean().ndcg_at(10);
    table.push(row(
        "sasrec",
        sasrec.evaluate(&d.split.test)?.mean(),
        0.0,
        valid_cf,
    ));
    Ok(sasrec)
}

fn row(
    method: &str,
    test: ilrec::rec::MetricsMean,
    invalid_rate: f64,
    valid_ndcg10: Option<f64>,
) -> ResultRow {
    ResultRow {
        method: method.into(),
        test,
        invalid_rate,
        valid_ndcg10,
    }
}

/// The command line as a [`PipelineConfig`]; every value checked before any work.
fn parse(args: Vec<String>) -> Result<PipelineConfig> {
    let mut c = PipelineConfig::default();
    let mut f = Flags::new("see train --help", args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--data" => c.data = PathBuf::from(f.value(flag)?),
            "--kcore" => c.kcore = f.num(flag)?,
            "--model" => c.model = f.value(flag)?,
            "--item-repr" => c.item_repr = ItemRepr::parse(&f.value(flag)?)?,
            "--max-history" => c.max_history = f.num(flag)?,
            "--train-samples" => c.train_samples = f.num(flag)?,
            "--valid-users" => c.valid_users = f.num(flag)?,
            "--epochs" => c.epochs = f.num(flag)?,
            "--finetune-epochs" => c.finetune_epochs = f.num(flag)?,
            "--batch" => c.batch = f.num(flag)?,
            "--lr" => c.lr = f.num(flag)?,
            "--warmup" => c.warmup_fraction = f.num(flag)?,
            "--clip-norm" => c.clip_norm = f.num(flag)?,
            "--weight-decay" => c.weight_decay = f.num(flag)?,
            "--sasrec-epochs" => c.sasrec_epochs = f.num(flag)?,
            "--sasrec-patience" => c.sasrec_patience = f.num(flag)?,
            _ => parse_ilrec_or_output(&mut c, &mut f, flag)?,
        }
    }
    c.validate()?;
    Ok(c)
}

/// The ILRec, evaluation and output flags (the second half of [`parse`]).
fn parse_ilrec_or_output(c: &mut PipelineConfig, f: &mut Flags, flag: &str) -> Result<()> {
    match flag {
        "--lens-layers" => c.lens_layers = LensLayers::parse(&f.value(flag)?)?,
        "--alpha" => c.alpha = f.num(flag)?,
        "--lambda" => c.lambda = f.num(flag)?,
        "--mu" => c.mu = f.num(flag)?,
        "--tau-r" => c.tau_r = f.num(flag)?,
        "--margin" => c.margin = f.num(flag)?,
        "--tau" => c.tau = f.num(flag)?,
        "--negatives-scope" => c.negatives_scope = NegativesScope::parse(&f.value(flag)?)?,
        "--ensemble" => c.ensemble = Ensemble::parse(&f.value(flag)?)?,
        "--schedule" => c.schedule = Schedule::parse(&f.value(flag)?)?,
        "--ablation" => c.ablation = true,
        "--beams" => c.beams = f.num(flag)?,
        "--seed" => c.seed = f.num(flag)?,
        "--threads" => c.threads = f.num(flag)?,
        "--out" => c.out = Some(PathBuf::from(f.value(flag)?)),
        "--checkpoint-every" => c.checkpoint_every = f.num(flag)?,
        "--resume" => c.resume = true,
        other => return Err(f.unknown(other)),
    }
    Ok(())
}
