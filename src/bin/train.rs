//! `train`: the whole ILRec pipeline, end to end, on one data set. Each step is a stage of
//! `ilrec::pipeline`; this file is the story, in order:
//!
//! 1. load and split the data
//! 2. train SASRec (the CF reward model, and a results row); in SID mode its item table is
//!    quantised into semantic IDs (RQ-VAE); render items (SID or title tokens, then EOS), build
//!    the vocabulary, the item trie and the prompts
//! 3. SFT warm-up of the LLM on the seqrec prompts (with `--lora`: LoRA adapters on the frozen
//!    pretrained model, the SID token rows training with them)
//! 4. from that checkpoint: ILRec fine-tuning, and the SFT baseline continued on the same batches
//! 5. evaluate each model with trie-constrained beam search on validation and test
//! 6. print the results table; write runs/<name>/ (config, log, results, checkpoints, plots)
//!
//! The last line on stdout is one JSON object with the table. Run `train --help` for options.

use ilrec::cf::SasRec;
use ilrec::cli::wants_help;
use ilrec::ilrec::schedule::Schedule;
use ilrec::ilrec::trainer::StepConfig;
use ilrec::model::llama::Llama;
use ilrec::pipeline::config::{ItemRepr, PipelineConfig};
use ilrec::pipeline::evaluate::Evaluator;
use ilrec::pipeline::results::{result_row, StageClock};
use ilrec::pipeline::stage::{file_name, last_valid, run_resumable, stage_config, steps_for};
use ilrec::pipeline::stage::{Journal, StageInputs};
use ilrec::pipeline::{cf, data, flags, model, results, sids, variants};
use ilrec::rec::Protocol;
use ilrec::rec::{Dataset, Split};
use ilrec::report::ResultsTable;
use ilrec::tokenizer::Tokenizer;
use ilrec::Result;
use std::path::Path;
use std::time::Instant;

fn main() {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if wants_help(&args) {
        print!("{}", flags::HELP);
        return;
    }
    if let Err(e) = flags::parse(args).and_then(|cfg| run(&cfg, started)) {
        eprintln!("train: error: {e}");
        std::process::exit(2);
    }
}

fn run(cfg: &PipelineConfig, started: Instant) -> Result<()> {
    let mut clock = StageClock::start();
    // Everything that can be wrong with the inputs is checked before the long stages.
    let plan = model::plan_model(&cfg.model, &cfg.lens_layers)?;
    model::check_lora(cfg, &plan)?;
    sids::check(cfg, &plan)?;
    let tokenizer = model::load_tokenizer(&plan)?;
    let run_dir = results::prepare_run_dir(cfg.out.as_deref(), cfg.resume)?;

    // 1. Data: load, k-core, leave-one-out split.
    let (dataset, split) = data::load_and_split(cfg)?;
    clock.lap("data");

    // Popularity, the floor every model must beat; 2. SASRec, the CF reward model.
    let mut table = ResultsTable::with_caption(cfg.protocol.describe());
    let sasrec = cf::baselines(cfg, (&dataset, &split), &run_dir, &mut table)?;
    clock.lap("sasrec");

    // Items as tokens: semantic IDs from SASRec's item table (or titles); then the vocabulary,
    // the item trie and the training examples.
    let d = items_as_tokens(cfg, &plan, (dataset, split), &sasrec, tokenizer, &run_dir)?;
    clock.lap("items and prompts");

    // 3. SFT warm-up from scratch (or from the pretrained checkpoint; with --lora, adapters
    // on the frozen checkpoint, the SID token rows training with them).
    let built = model::build_run_model(cfg, &plan, &d)?;
    let lora = built.lora.clone();
    let save = |dir: &Path, m: &Llama| model::save_trained(dir, m, lora.as_ref(), &cfg.model);
    let mut journal = Journal::open(&run_dir, cfg.resume)?;
    let evaluator = Evaluator {
        trie: &d.trie,
        beams: cfg.beams,
        threads: cfg.threads,
    };
    let inputs = StageInputs {
        examples: &d.train,
        valid: &d.valid,
        valid_excluded: &d.valid_excluded,
        trie: &d.trie,
        cf: Some(&sasrec),
        evaluator: &evaluator,
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
    let warm = run_resumable(built.model, &warmup, &inputs, &mut journal)?;
    let checkpoints = run_dir.join("checkpoints");
    if lora.is_some() {
        save(&checkpoints.join("warmup"), &warm)?; // an adapter is small: keep this one too
    }
    clock.lap("sft warm-up");

    // 4. From the warm-up weights: SFT continued, ILRec (and the ablations), same batches.
    let top = warm.config.num_hidden_layers;
    let methods = variants::variants(cfg, top, d.item_vocab.clone());
    let mut finetuned = Vec::new();
    for (name, step) in &methods {
        let steps = steps_for(cfg.finetune_epochs, d.train.len(), cfg.batch);
        let stage = stage_config(cfg, name, steps, step.clone(), cfg.schedule, cfg.seed + 2);
        let trained = run_resumable(warm.clone(), &stage, &inputs, &mut journal)?;
        save(&checkpoints.join(file_name(name)), &trained)?;
        finetuned.push((name.clone(), trained));
        clock.lap(&format!("{name} fine-tune"));
    }

    // 5. Test evaluation of every fine-tuned model with constrained beam search.
    for (name, trained) in &finetuned {
        let label = format!("test {name}");
        let outcome = evaluator.run(trained, &d.test, &d.test_excluded, &label)?;
        let valid = last_valid(&journal.log, name);
        let test = outcome.metrics.mean();
        table.push(result_row(name, test, outcome.invalid_rate(), Some(valid)));
        clock.lap(&format!("{name} test eval"));
    }

    // 6. Report: plots, results.json, the table, the verdict, the final JSON line.
    results::write_plots(&run_dir, &journal.log, &methods)?;
    report(
        &run_dir,
        (&d.dataset.name, cfg.protocol),
        started,
        &table,
        &clock,
    )
}

/// Stage "items and prompts": in SID mode the semantic IDs (added to `tokenizer`), then every
/// item's text, the vocabulary, the trie and the examples; records the run's config.json.
fn items_as_tokens(
    cfg: &PipelineConfig,
    plan: &model::ModelPlan,
    (dataset, split): (Dataset, Split),
    sasrec: &SasRec,
    mut tokenizer: Tokenizer,
    run_dir: &Path,
) -> Result<data::PreparedData> {
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

/// results.json; the table and the verdict on stdout (and stderr, with the stage times), then
/// the one-line JSON summary as the last line of stdout.
fn report(
    run_dir: &Path,
    dataset: (&str, Protocol),
    started: Instant,
    table: &ResultsTable,
    clock: &StageClock,
) -> Result<()> {
    let seconds = started.elapsed().as_secs_f64();
    let summary = results::write_results(run_dir, dataset, seconds, table, &clock.laps)?;
    let verdict = results::verdict(table);
    let text = table.to_text();
    eprintln!("\n{text}\n{verdict}\nstage times: {}", clock.summary());
    println!("{text}\n{verdict}\n{summary}");
    Ok(())
}
