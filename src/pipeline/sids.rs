//! Stage "semantic IDs" (SID mode, ILREC.md section 2): item embeddings (SASRec's item table,
//! an LLM's text states, or a file) -> RQ-VAE -> unique codes, written to the run folder as
//! `sids.json` (LC-Rec's `.index.json` shape) -> the SID tokens `<a_c>`, `<b_c>`, ... added to
//! the tokenizer, so prompts and responses tokenise to one id per code.

use super::config::{ItemRepr, PipelineConfig, SidSource};
use super::model::{ModelPlan, ModelSource};
use crate::cf::SasRec;
use crate::model::load::load_model;
use crate::rec::Dataset;
use crate::report::Progress;
use crate::sid::embeddings::{llm_item_embeddings_cached, load_embeddings_file, sasrec_item_table};
use crate::sid::{build_sids, codes_per_level, read_sids, sid_text, write_sids};
use crate::sid::{SidSizes, SidTrainOptions, SidVocab};
use crate::tensor::Tensor;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::path::Path;

/// Items per batch of the LLM forward that embeds item texts (`--sid-embeddings llm`).
const LLM_EMBED_BATCH: usize = 16;

/// The SIDs of every item (`codes[item][level]`, unique) and their tokens in `tokenizer`, which
/// this registers. Order of precedence: `--sids FILE`; the run folder's `sids.json` on resume;
/// else built from `--sid-embeddings` with the default sizes ([`SidSizes::default_for`]).
pub fn item_sids(
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    dataset: &Dataset,
    sasrec: &SasRec,
    tokenizer: &mut Tokenizer,
    run_dir: &Path,
) -> Result<Vec<Vec<u32>>> {
    let raw_ids: Vec<String> = dataset.items.iter().map(|i| i.raw_id.clone()).collect();
    let saved = run_dir.join("sids.json");
    let codes = match (&cfg.sids, cfg.resume && saved.is_file()) {
        (Some(file), _) => read_sids(file, &raw_ids)?,
        (None, true) => read_sids(&saved, &raw_ids)?,
        (None, false) => {
            let x = item_embeddings(cfg, plan, dataset, sasrec, tokenizer, run_dir)?;
            build(cfg, &x)?
        }
    };
    write_sids(&saved, &codes, &raw_ids)?;
    let vocab = SidVocab::register(tokenizer, &codes_per_level(&codes))?;
    check_tokenisation(tokenizer, &vocab, &codes)?;
    Ok(codes)
}

/// Fails before any work when SID mode cannot run with this model: `--sid-embeddings llm`
/// needs a pretrained model to embed item texts with.
pub fn check(cfg: &PipelineConfig, plan: &ModelPlan) -> Result<()> {
    let sid_mode = cfg.item_repr == ItemRepr::Sid && cfg.sids.is_none();
    if sid_mode && cfg.sid_embeddings == SidSource::Llm {
        if let ModelSource::Preset(name) = &plan.source {
            return Err(Error::config(
                format!("--sid-embeddings llm with --model {name}: a preset has no pretrained text states"),
                "pass --model PATH (an HF folder or .gguf), or use --sid-embeddings cf",
            ));
        }
    }
    Ok(())
}

/// The (items, dim) embeddings to quantise, from `cfg.sid_embeddings`.
fn item_embeddings(
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    dataset: &Dataset,
    sasrec: &SasRec,
    tokenizer: &Tokenizer,
    run_dir: &Path,
) -> Result<Tensor> {
    match &cfg.sid_embeddings {
        SidSource::Cf => sasrec_item_table(sasrec),
        SidSource::File(path) => load_embeddings_file(path, dataset.num_items()),
        SidSource::Llm => {
            let (ModelSource::HfDir(path) | ModelSource::Gguf(path)) = &plan.source else {
                return Err(Error::config(
                    "--sid-embeddings llm needs a pretrained model",
                    "pass --model PATH (an HF folder or .gguf), or use --sid-embeddings cf",
                ));
            };
            eprintln!(
                "sids: embedding {} item texts with {}",
                dataset.num_items(),
                path.display()
            );
            let model = load_model(path)?.0;
            let texts: Vec<String> = dataset.items.iter().map(|i| i.text.clone()).collect();
            let cache = run_dir.join("cache");
            let mut progress = Progress::new("sids (item texts embedded)", texts.len());
            let (table, _) = llm_item_embeddings_cached(
                &model,
                tokenizer,
                &texts,
                LLM_EMBED_BATCH,
                &cache,
                &mut |n| progress.inc(n),
            )?;
            progress.finish();
            Ok(table)
        }
    }
}

/// Trains the RQ-VAE (seeded by the run's seed) and returns the collision-free codes; prints
/// the collision rate before resolution and any added level.
fn build(cfg: &PipelineConfig, x: &Tensor) -> Result<Vec<Vec<u32>>> {
    let sizes = SidSizes::default_for(x.shape()[0]);
    let opts = SidTrainOptions {
        seed: cfg.seed,
        ..SidTrainOptions::default()
    };
    let mut progress = Progress::new("sids (RQ-VAE epochs)", opts.epochs);
    let built = build_sids(x, &sizes, &opts, |e| {
        progress.set_note(format!("loss {:.4} recon {:.4}", e.total, e.recon));
        progress.inc(1);
    })?;
    progress.finish();
    let r = built.resolution;
    eprintln!(
        "sids: {} levels x {} codes, reconstruction MSE {:.4}, collision rate before resolution {:.2}% ({} items reassigned)",
        sizes.levels, sizes.codes, built.recon, 100.0 * r.rate_before, r.reassigned
    );
    if let Some((codes, why)) = &r.added_level {
        eprintln!("sids: added a level of {codes} codes: {why}");
    }
    Ok(r.codes)
}

/// Every item's SID text must tokenise to exactly its SID tokens (one id per code): otherwise
/// the trie and the prompts would disagree.
fn check_tokenisation(tokenizer: &Tokenizer, vocab: &SidVocab, codes: &[Vec<u32>]) -> Result<()> {
    for (item, c) in codes.iter().enumerate() {
        let want = vocab.item_tokens(c)?;
        if tokenizer.encode(&sid_text(c)) != want {
            return Err(Error::config(
                format!(
                    "item {item}: SID {} does not tokenise to its {} tokens",
                    sid_text(c),
                    want.len()
                ),
                "the tokenizer must keep added tokens whole",
            ));
        }
    }
    Ok(())
}
