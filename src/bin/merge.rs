//! `merge`: a base model plus a LoRA adapter folder -> one Hugging Face checkpoint with the
//! adapter folded into the weights (`W + scale * B A`, trainable token rows written into the
//! embedding / head), what people deploy.
//!
//! Usage: merge --model PATH --adapter DIR --out DIR [--vocab N --seed S]
//!
//! `--model` is an HF folder or a .gguf file; `--adapter` a PEFT adapter folder (ours, e.g. a
//! train run's `checkpoints/ilrec/adapter`, or PEFT's). An adapter trained with added tokens
//! (SIDs) needs the base grown to the run's vocabulary first: `--vocab` = `tokenizer_ids` of the
//! run's vocab_map.json and `--seed` = the run's seed give exactly the rows the run started from.
//! Writes `OUT/config.json` and `OUT/model.safetensors` (f32).

use ilrec::cli::{self, Flags};
use ilrec::lora::{load_adapter, merged};
use ilrec::model::load::load_model;
use ilrec::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: merge --model PATH --adapter DIR --out DIR [--vocab N --seed S]";

struct Args {
    model: String,
    adapter: PathBuf,
    out: PathBuf,
    vocab: Option<usize>,
    seed: u64,
}

fn main() -> ExitCode {
    let help = format!(
        "{USAGE}\n\nFolds a LoRA adapter into its base model and writes a full HF checkpoint.\n"
    );
    cli::main("merge", &help, |args| run(&parse_args(args)?))
}

fn parse_args(args: Vec<String>) -> Result<Args> {
    let mut f = Flags::new(USAGE, args);
    let (mut model, mut adapter, mut out) = (None, None, None);
    let (mut vocab, mut seed) = (None, 0);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--model" => model = Some(f.value(flag)?),
            "--adapter" => adapter = Some(PathBuf::from(f.value(flag)?)),
            "--out" => out = Some(PathBuf::from(f.value(flag)?)),
            "--vocab" => vocab = Some(f.positive(flag)?),
            "--seed" => seed = f.num(flag)?,
            other => return Err(f.unknown(other)),
        }
    }
    match (model, adapter, out) {
        (Some(model), Some(adapter), Some(out)) => Ok(Args {
            model,
            adapter,
            out,
            vocab,
            seed,
        }),
        _ => Err(f.error("--model, --adapter and --out are required")),
    }
}

fn run(a: &Args) -> Result<()> {
    let (mut model, _) = load_model(&a.model)?;
    if let Some(vocab) = a.vocab {
        if vocab < model.config.vocab_size {
            return Err(Error::config(
                format!(
                    "--vocab {vocab} is below the model's {}",
                    model.config.vocab_size
                ),
                "--vocab grows the vocabulary to a run's size (vocab_map.json tokenizer_ids)",
            ));
        }
        model.resize_vocab(vocab, a.seed)?;
    }
    load_adapter(&mut model, &a.adapter)?;
    merged(&model)?.save(&a.out)?;
    eprintln!(
        "merge: {} + {} -> {}",
        a.model,
        a.adapter.display(),
        a.out.display()
    );
    Ok(())
}
