//! `lens`: watch a prediction form across the layers of a model (the logit lens).
//!
//! For every position of a text and every requested block l, the top-k tokens of
//! `z^l = W N(h^l)`: the raw output of block l (blocks counted from 1) seen through the model's
//! own final norm and LM head. The last block, L, is always shown: its lens is the model's output.
//!
//! cargo run --release --bin lens -- --model PATH --text "..." [--layers 10,20] [--top-k K] [--json]
//!     [--generate N] [--time] [--adapter DIR]
//! Run with --help for the options. Errors (bad arguments, a missing or unreadable model, a layer
//! out of range) print one line with a hint and exit with status 2.

use ilrec::cli::Flags;
use ilrec::ilrec::lens_report::{lens_top_k, TopK};
use ilrec::ilrec::LensLayers;
use ilrec::lora::{load_adapter, merged};
use ilrec::model::generate::GreedyDecoder;
use ilrec::model::llama::Llama;
use ilrec::model::load::load_model;
use ilrec::tokenizer::Tokenizer;
use ilrec::{Error, Result};
use serde_json::{json, Map, Value};
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: lens --model PATH --text TEXT [--layers LIST] [--top-k K] [--json] \
                     [--generate N] [--time] [--adapter DIR]";

const HELP: &str = "\
lens: the top-k tokens that each layer of a language model predicts, at every position of a text.

  --model PATH     a model directory (config.json + model.safetensors + tokenizer.json) or a
                   .gguf file (Llama architecture; tokenizer taken from its metadata).
                   `bash scripts/get-smollm2.sh` fetches SmolLM2-135M-Instruct in both forms.
  --text TEXT      the text to run (encoded without BOS, as the model's tokenizer does)
  --layers LIST    blocks to look through, counted from 1: a list like 10,20 or `last4` (the 4
                   blocks below the top). Default: every 10th block (10, 20, ...). The final
                   block L (the model's own logits) is always added.
  --top-k K        tokens shown per layer and position (default 5)
  --json           print one JSON object instead of tables:
                   {\"ids\": [...], \"layers\": {\"<layer>\": [[[id, ...], [logit, ...]], ...]}}
                   (one [ids, logits] pair per position, sorted by descending logit, ties by id)
  --generate N     after the tables, continue the text greedily by up to N tokens (KV cache;
                   stops at the model's end-of-sequence token). Not with --json.
  --time           print load / lens / generation timings to stderr
  --adapter DIR    a LoRA adapter folder (PEFT's adapter_config.json + adapter_model.safetensors,
                   e.g. a train run's checkpoints/ilrec/adapter) applied to --model: the lens
                   and generation use the adapted weights (merged in memory)
  -h, --help       this text

Exit status: 0 on success, 2 on bad input (arguments, model file, layers).";

/// Command-line options.
struct Args {
    model: String,
    text: String,
    layers: Option<LensLayers>,
    top_k: usize,
    json: bool,
    generate: usize,
    time: bool,
    adapter: Option<String>,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1).collect()) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(&e),
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("lens: {e}");
    ExitCode::from(2)
}

/// The options, or None when help was asked for.
fn parse_args(args: Vec<String>) -> Result<Option<Args>> {
    let mut a = Args {
        model: String::new(),
        text: String::new(),
        layers: None,
        top_k: 5,
        json: false,
        generate: 0,
        time: false,
        adapter: None,
    };
    let mut text_given = false;
    let mut f = Flags::new(USAGE, args);
    while let Some(flag) = f.next_flag() {
        let flag = flag.as_str();
        match flag {
            "--model" => a.model = f.value(flag)?,
            "--text" => {
                a.text = f.value(flag)?;
                text_given = true;
            }
            "--layers" => a.layers = Some(LensLayers::parse(&f.value(flag)?)?),
            "--top-k" => a.top_k = f.positive(flag)?,
            "--generate" => a.generate = f.num(flag)?,
            "--json" => a.json = true,
            "--time" => a.time = true,
            "--adapter" => a.adapter = Some(f.value(flag)?),
            "-h" | "--help" => return Ok(None),
            other => return Err(f.error(format!("unknown argument {other:?}"))),
        }
    }
    if a.model.is_empty() {
        return Err(f.error("--model is required"));
    }
    if !text_given {
        return Err(f.error("--text is required"));
    }
    if a.text.is_empty() {
        return Err(Error::config(
            "--text is empty",
            "the lens needs at least one token to look at",
        ));
    }
    if a.json && a.generate > 0 {
        return Err(Error::config(
            "--generate cannot be combined with --json",
            "the JSON output holds only the lens; drop one of the two",
        ));
    }
    Ok(Some(a))
}

fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    let (mut model, tokenizer) = load_model(&args.model)?;
    if let Some(dir) = &args.adapter {
        load_adapter(&mut model, std::path::Path::new(dir))?;
        model = merged(&model)?; // the adapted weights, no adapter products per token
    }
    let load_s = start.elapsed().as_secs_f64();
    let tokenizer = tokenizer.ok_or_else(|| {
        Error::config(
            format!("{} has no tokenizer.json", args.model),
            "put the model's tokenizer.json beside config.json, or pass the .gguf file",
        )
    })?;
    let layers = requested_layers(&model, args.layers.as_ref())?;
    let ids = tokenizer.encode(&args.text);

    let start = Instant::now();
    let report = lens_top_k(&model, &ids, &layers, args.top_k)?;
    let lens_s = start.elapsed().as_secs_f64();

    if args.json {
        println!("{}", json_report(&ids, &report));
    } else {
        print_tables(&model, &tokenizer, &ids, &report);
    }
    if args.time {
        eprintln!(
            "time: load {load_s:.3} s; lens of {} tokens x {} layers {lens_s:.3} s ({:.1} tokens/s)",
            ids.len(),
            layers.len(),
            ids.len() as f64 / lens_s
        );
    }
    if args.generate > 0 {
        generate(&model, &tokenizer, &ids, args.generate, args.time)?;
    }
    Ok(())
}

/// The blocks to show: `--layers` (or every 10th block), plus the final block, ascending.
fn requested_layers(model: &Llama, layers: Option<&LensLayers>) -> Result<Vec<usize>> {
    let num_blocks = model.config.num_hidden_layers;
    let mut resolved = match layers {
        Some(layers) => layers.resolve(num_blocks)?,
        None => (10..num_blocks).step_by(10).collect(),
    };
    resolved.push(num_blocks);
    resolved.sort_unstable();
    resolved.dedup();
    Ok(resolved)
}

/// `{"ids": [...], "layers": {"<layer>": [[[id, ...], [logit, ...]], ...]}}`.
fn json_report(ids: &[u32], report: &[(usize, Vec<TopK>)]) -> Value {
    let mut layers = Map::new();
    for (layer, positions) in report {
        let rows: Vec<Value> = positions
            .iter()
            .map(|(top_ids, logits)| json!([top_ids, logits]))
            .collect();
        layers.insert(layer.to_string(), Value::Array(rows));
    }
    json!({"ids": ids, "layers": layers})
}

/// One small table per position: which token sits there, which comes next in the text, and what
/// each layer predicts, columns aligned across layers.
fn print_tables(model: &Llama, tokenizer: &Tokenizer, ids: &[u32], report: &[(usize, Vec<TopK>)]) {
    let num_blocks = model.config.num_hidden_layers;
    let show = |id: u32| format!("{:?}", tokenizer.decode(&[id], false));
    for (t, &id) in ids.iter().enumerate() {
        let next = match ids.get(t + 1) {
            Some(&n) => format!("next in text: {}", show(n)),
            None => "end of text".to_string(),
        };
        println!("position {t}: {} (id {id}); {next}", show(id));
        let cells: Vec<Vec<String>> = report
            .iter()
            .map(|(_, positions)| {
                let (top_ids, logits) = &positions[t];
                top_ids
                    .iter()
                    .zip(logits)
                    .map(|(&i, z)| format!("{} {z:.2}", show(i)))
                    .collect()
            })
            .collect();
        let widths = column_widths(&cells);
        for ((layer, _), row) in report.iter().zip(&cells) {
            let mark = if *layer == num_blocks { "*" } else { " " };
            let padded: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(c, &w)| format!("{c:<w$}"))
                .collect();
            println!(
                "  layer {layer:>3}{mark} | {}",
                padded.join("  ").trim_end()
            );
        }
    }
    println!("(* = layer {num_blocks}, the model's own output; cells are token and logit)");
}

/// The widest cell (in characters) of each column.
fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Greedy continuation with the KV cache, stopping at the model's end-of-sequence token(s).
fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    max_new: usize,
    time: bool,
) -> Result<()> {
    let stop = &model.config.eos_token_ids;
    let start = Instant::now();
    let mut decoder = GreedyDecoder::new(model, prompt)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let mut generated = Vec::with_capacity(max_new);
    let start = Instant::now();
    while !stop.contains(&decoder.next_token()) {
        generated.push(decoder.next_token());
        if generated.len() == max_new {
            break;
        }
        decoder.accept()?;
    }
    let decode_s = start.elapsed().as_secs_f64();
    println!(
        "greedy continuation ({} tokens): {:?}",
        generated.len(),
        tokenizer.decode(&generated, false)
    );
    if time {
        // The first token comes from the prefill; each later one from one cached decode step.
        let steps = generated.len().saturating_sub(1);
        eprintln!(
            "time: prefill {} tokens {prefill_s:.3} s ({:.1} tokens/s); {steps} decode steps {decode_s:.3} s ({:.2} tokens/s)",
            prompt.len(),
            prompt.len() as f64 / prefill_s,
            steps as f64 / decode_s
        );
    }
    Ok(())
}
