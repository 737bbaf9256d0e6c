//! `train`: the whole ILRec pipeline, end to end, on one data set. The stages, in order, are
//! `ilrec::pipeline::run::run` (its module docs tell the story):
//!
//! 1. load and split the data
//! 2. train SASRec (the CF reward model, and a results row); in SID mode its item table is
//!    quantised into semantic IDs (RQ-VAE); render items (SID or title tokens, then EOS), build
//!    the vocabulary, the item trie and the prompts
//! 3. SFT warm-up of the LLM on the seqrec prompts (with `--lora`: LoRA adapters on the frozen
//!    pretrained model, the SID token rows training with them)
//! 4. from that checkpoint: ILRec fine-tuning, and the SFT baseline continued on the same batches
//! 5. evaluate each model with trie-constrained beam search on validation and test
//! 6. print the results table; write `runs/<name>/` (config, log, results, checkpoints, plots)
//!
//! The last line on stdout is one JSON object with the table. Run `train --help` for options.

use ilrec::cli;
use ilrec::pipeline::run::{run, RunOptions, RunOutput};
use ilrec::pipeline::{flags, results};
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main("train", flags::HELP, |args| {
        report(&run(&flags::parse(args)?, &RunOptions::train())?);
        Ok(())
    })
}

/// The table and the verdict on stdout (and stderr, with the stage times), then the one-line
/// JSON summary (also in results.json) as the last line of stdout.
fn report(out: &RunOutput) {
    let verdict = results::verdict(&out.table);
    let text = out.table.to_text();
    let summary = out.summary.clone().unwrap_or_default();
    eprintln!("\n{text}\n{verdict}\nstage times: {}", out.clock.summary());
    println!("{text}\n{verdict}\n{summary}");
}
