//! What is fuzzed: each target has seed inputs and the loader call a user's file goes through.
//! A target returns the loader's `Result`; a panic or an abort is the finding.

use super::bundle::Bundle;
use super::{gguf_seed, peft_seed, seeds};
use ilrec::lora::{adapter_params, load_adapter, merged, save_adapter};
use ilrec::model::config::LlamaConfig;
use ilrec::model::llama::Llama;
use ilrec::model::load::load_model;
use ilrec::rec::{leave_one_out, load_dataset, Exclusions, Intervals, KeepDuplicate};
use ilrec::rec::{LoadOptions, Popularity, Protocol};
use ilrec::tokenizer::Tokenizer;
use ilrec::Result;
use std::path::Path;

pub struct Target {
    pub name: &'static str,
    pub about: &'static str,
    /// Valid inputs to mutate (some need a scratch folder to be built in).
    pub seeds: fn(&Path) -> Vec<Bundle>,
    /// Loads one case from the folder it was written to.
    pub run: fn(&Path) -> Result<()>,
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "tokenizer",
        about: "tokenizer.json: parse, then encode and decode a text",
        seeds: |_| seeds::tokenizer_seeds(),
        run: run_tokenizer,
    },
    Target {
        name: "config",
        about: "config.json: parse and validate; to_json must round-trip",
        seeds: |_| seeds::config_seeds(),
        run: run_config,
    },
    Target {
        name: "safetensors",
        about: "model folder: config.json + model.safetensors, or shards + index",
        seeds: seeds::safetensors_seeds,
        run: run_model_dir,
    },
    Target {
        name: "gguf",
        about: "GGUF file: header, metadata, tensors, the tokenizer in its metadata",
        seeds: |_| gguf_seed::gguf_seeds(),
        run: run_gguf,
    },
    Target {
        name: "movielens",
        about: "MovieLens ratings.csv + movies.csv, 5-core, leave-one-out",
        seeds: |_| seeds::movielens_seeds(),
        run: run_dataset,
    },
    Target {
        name: "recbole",
        about: "RecBole atomic NAME.inter + NAME.item (+ NAME.user): defaults, then RecBole's \
                filters and missing text allowed; leave-one-out; both ranking protocols",
        seeds: |_| seeds::recbole_seeds(),
        run: run_recbole,
    },
    Target {
        name: "resume",
        about:
            "a stage checkpoint (ckpt/<stage>/): state.json, the model folder, the AdamW moments",
        seeds: seeds::resume_seeds,
        run: run_resume,
    },
    Target {
        name: "sids",
        about: "sids.json (+ item-id side file) against a data set's item ids",
        seeds: seeds::sids_seeds,
        run: run_sids,
    },
    Target {
        name: "peft",
        about: "a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) \
                loaded onto its base and merged, as merge, recommend and eval do",
        seeds: peft_seed::peft_seeds,
        run: run_peft,
    },
];

/// Loads a checkpoint as `--resume` does, onto the model the stage started from.
fn run_resume(dir: &Path) -> Result<()> {
    let config = LlamaConfig::from_json(&seeds::tiny_config_json(false), "<seed>")?;
    let start = ilrec::model::llama::Llama::from_config(config, 3)?;
    let ckpt = ilrec::ilrec::trainer::StageCheckpoint::new(dir.to_path_buf());
    ckpt.load(&seeds::resume_stage_config(), &start).map(|_| ())
}

/// Loads an adapter folder as `merge`, `recommend`, `eval` and `lens --adapter` do: onto its
/// base (`lora::load_adapter`: config, checks, attach, tensors), then merged into the weights
/// and the merged model saved (`merge`'s output). An adapter we accept must also save back as
/// itself: a config or a tensor that changed on the way would be a file PEFT reads differently.
fn run_peft(dir: &Path) -> Result<()> {
    let base = peft_seed::base_for(dir);
    let mut model = base.model();
    let cfg = load_adapter(&mut model, dir)?;
    merged(&model)?.save(dir.join("merged"))?;
    let again = dir.join("saved-again");
    save_adapter(&model, &cfg, &again, Some(base.name))?;
    let mut reloaded = base.model();
    assert_eq!(
        load_adapter(&mut reloaded, &again)?,
        cfg,
        "a loaded adapter_config.json does not survive save + load"
    );
    // Bits, not values: a NaN read from the file must come back as the same NaN.
    let bits = |m: &Llama| -> Vec<u32> {
        let params = adapter_params(m).into_iter();
        let values = params.flat_map(|(_, id)| m.params.value(id).to_vec());
        values.map(f32::to_bits).collect()
    };
    assert!(
        bits(&model) == bits(&reloaded),
        "adapter tensors do not survive save + load"
    );
    Ok(())
}

pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn run_tokenizer(dir: &Path) -> Result<()> {
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
    let ids = tokenizer.encode("hello world 123 <a_1><|endoftext|> é");
    let _ = tokenizer.decode(&ids, false);
    Ok(())
}

fn run_config(dir: &Path) -> Result<()> {
    let path = dir.join("config.json");
    let config = LlamaConfig::from_file(&path)?;
    let again = LlamaConfig::from_json(&config.to_json(), &path)?;
    // A config that does not survive save + load is silent corruption: report it as a finding.
    assert_eq!(
        config, again,
        "config.json does not round-trip through to_json"
    );
    Ok(())
}

fn run_model_dir(dir: &Path) -> Result<()> {
    load_model(dir).map(|_| ())
}

fn run_gguf(dir: &Path) -> Result<()> {
    load_model(dir.join("model.gguf")).map(|_| ())
}

fn run_dataset(dir: &Path) -> Result<()> {
    let dataset = load_dataset(dir, &LoadOptions::default())?;
    leave_one_out(&dataset, 20).map(|_| ())
}

/// The default load, then one with every RecBole option switched away from its default (a
/// mutated file that fails the first may pass the second, reaching the filters and the
/// protocol code).
fn run_recbole(dir: &Path) -> Result<()> {
    let first = run_dataset(dir);
    let options = LoadOptions {
        kcore: 0,
        user_inter_num: Intervals::parse("[2,inf)").ok(),
        item_inter_num: Intervals::parse("[1,50);[60,inf]").ok(),
        keep_duplicate: KeepDuplicate::Last,
        min_rating: Some(2.0),
        allow_missing_text: true,
        ..LoadOptions::default()
    };
    let dataset = load_dataset(dir, &options)?;
    let split = leave_one_out(&dataset, 3)?;
    let excluded = Exclusions::build(Protocol::ExcludeHistory, &dataset, &split.test)?;
    Popularity::from_dataset(&dataset).evaluate_excluding(&split.test, &excluded)?;
    first
}

fn run_sids(dir: &Path) -> Result<()> {
    ilrec::sid::read_sids(&dir.join("sids.json"), &seeds::sid_item_ids()).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every seed is an input its own target accepts: a seed the loader refused would leave the
    /// fuzzer mutating something already broken, and every check behind the first one unreached.
    #[test]
    fn every_seed_of_every_target_loads() {
        for target in TARGETS {
            let scratch = std::env::temp_dir().join(format!(
                "ilrec-fuzz-seed-test-{}-{}",
                std::process::id(),
                target.name
            ));
            for (k, seed) in (target.seeds)(&scratch).iter().enumerate() {
                let case = scratch.join(format!("case-{k}"));
                seed.write_into(&case).expect("writing a seed");
                if let Err(e) = (target.run)(&case) {
                    panic!("{} seed {k} is refused: {e}", target.name);
                }
            }
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
}
