//! Stage "build the model": a preset trained from scratch (embedded Llama configs in
//! `data/presets/`), an HF checkpoint folder or a GGUF file. The config is resolved first (so bad
//! input fails before any long work); the weights are loaded by `model::load`, the one loader.
//! With `--lora` the loaded model is frozen and LoRA adapters attached (`crate::lora`); the SID
//! tokens' rows of the embedding (and untied head) train with them. Trained models are saved
//! as full HF checkpoints, or as PEFT adapter folders under LoRA.

use super::config::PipelineConfig;
use crate::autograd::ParamId;
use crate::ilrec::LensLayers;
use crate::lora::{attach, save_adapter, LoraConfig, TrainableTokens};
use crate::model::config::LlamaConfig;
use crate::model::gguf::GgufFile;
use crate::model::gguf_hf::{hf_config, hf_tokenizer_json};
use crate::model::llama::Llama;
use crate::model::load::load_model_as;
use crate::rec::vocab_map::VocabMap;
use crate::tensor::DType;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the model comes from.
#[derive(Clone, Debug)]
pub enum ModelSource {
    /// A preset config, trained from scratch on a compact vocabulary.
    Preset(String),
    /// An HF checkpoint folder (config.json, safetensors, tokenizer.json).
    HfDir(PathBuf),
    /// A GGUF file (e.g. SmolLM2 from scripts/get-smollm2.sh): weights and tokenizer inside.
    Gguf(PathBuf),
}

/// A resolved `--model`: its source and its config (before any weight is read).
#[derive(Clone, Debug)]
pub struct ModelPlan {
    pub source: ModelSource,
    pub config: LlamaConfig,
}

/// The built model and the parameters the optimizer updates: every parameter under full
/// fine-tuning; under LoRA only the adapters and token rows (the base is frozen), and `lora` is
/// the adapter's config as attached (what its adapter_config.json records).
pub struct BuiltModel {
    pub model: Llama,
    pub trainable: Vec<ParamId>,
    pub lora: Option<LoraConfig>,
}

/// The embedded preset configs.
fn preset(name: &str) -> Option<&'static str> {
    match name {
        "tiny" => Some(include_str!("../../data/presets/tiny.json")),
        "mini" => Some(include_str!("../../data/presets/mini.json")),
        "small" => Some(include_str!("../../data/presets/small.json")),
        "base" => Some(include_str!("../../data/presets/base.json")),
        _ => None,
    }
}

/// Resolves `spec` and checks `lens` against the model's depth.
pub fn plan_model(spec: &str, lens: &LensLayers) -> Result<ModelPlan> {
    let plan = if let Some(text) = preset(spec) {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::format(spec, e.to_string()))?;
        ModelPlan {
            config: LlamaConfig::from_json(&value, format!("preset {spec}"))?,
            source: ModelSource::Preset(spec.into()),
        }
    } else if spec.ends_with(".gguf") && Path::new(spec).is_file() {
        let path = PathBuf::from(spec);
        let config = hf_config(&GgufFile::open(&path)?)?;
        ModelPlan {
            config: LlamaConfig::from_json(&config, &path)?,
            source: ModelSource::Gguf(path),
        }
    } else {
        let dir = PathBuf::from(spec);
        if !dir.join("config.json").is_file() {
            return Err(Error::config(
                format!("--model {spec}: not a preset and not a folder with config.json"),
                "use a preset (tiny, mini, small, base), an HF checkpoint folder or a .gguf file",
            ));
        }
        ModelPlan {
            config: LlamaConfig::from_file(dir.join("config.json"))?,
            source: ModelSource::HfDir(dir),
        }
    };
    lens.resolve(plan.config.num_hidden_layers)?;
    Ok(plan)
}

/// The tokenizer of the plan: the GGUF's own, the folder's tokenizer.json, or (presets) the
/// SmolLM2 tokenizer the repository ships.
pub fn load_tokenizer(plan: &ModelPlan) -> Result<Tokenizer> {
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tokenizer/smollm2/tokenizer.json");
    let path = match &plan.source {
        ModelSource::Gguf(path) => {
            let json = hf_tokenizer_json(&GgufFile::open(path)?)?;
            return Tokenizer::from_json(&json, &path.display().to_string());
        }
        ModelSource::HfDir(dir) if dir.join("tokenizer.json").is_file() => {
            dir.join("tokenizer.json")
        }
        _ => shipped,
    };
    if !path.is_file() {
        return Err(Error::config(
            format!("tokenizer {} not found", path.display()),
            "the repository ships data/tokenizer/smollm2/tokenizer.json",
        ));
    }
    Tokenizer::from_file(&path)
}

/// The vocabulary map: compact (only the ids the data uses, plus EOS) for a preset, identity
/// for a pretrained model, over the larger of its vocabulary and `tokenizer_size` (a tokenizer
/// grown by added tokens, e.g. SIDs: [`build_model`] gives the model their rows).
pub fn vocabulary<'a>(
    plan: &ModelPlan,
    streams: impl Iterator<Item = &'a [u32]>,
    eos: u32,
    tokenizer_size: usize,
) -> VocabMap {
    match plan.source {
        ModelSource::Preset(_) => VocabMap::from_tokens(streams, &[eos]),
        ModelSource::HfDir(_) | ModelSource::Gguf(_) => {
            VocabMap::identity(plan.config.vocab_size.max(tokenizer_size))
        }
    }
}

/// The model config as trained (a preset's vocabulary is the compact one).
pub fn trained_config(plan: &ModelPlan, vocab: &VocabMap, model_eos: u32) -> LlamaConfig {
    let mut cfg = plan.config.clone();
    if let ModelSource::Preset(_) = plan.source {
        cfg.vocab_size = vocab.len();
        cfg.eos_token_id = Some(model_eos);
        cfg.eos_token_ids = vec![model_eos];
        cfg.bos_token_id = None;
    }
    cfg
}

/// Fails before any work when `--lora` cannot run with this model: LoRA adapts a pretrained
/// model (not a preset trained from scratch), and r must fit every adapted matrix.
pub fn check_lora(cfg: &PipelineConfig, plan: &ModelPlan) -> Result<()> {
    let Some(lora) = &cfg.lora else {
        return Ok(());
    };
    if let ModelSource::Preset(name) = &plan.source {
        return Err(Error::config(
            format!("--lora with --model {name}: a preset is trained from scratch, there is no pretrained base to adapt"),
            "pass --model PATH (an HF folder or .gguf), or drop --lora",
        ));
    }
    lora.check_against(&plan.config)
        .map_err(crate::lora::config::Invalid::in_flag)
}

/// The run's adapter: `--lora`'s settings plus the rows of the item tokens (SIDs, added to the
/// vocabulary, so they have no pretrained rows to freeze) in the embedding and an untied head.
pub fn run_adapter(lora: &LoraConfig, item_tokens: Option<&[u32]>, tied: bool) -> LoraConfig {
    let ids: Vec<usize> = item_tokens
        .unwrap_or_default()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let head = if tied { Vec::new() } else { ids.clone() };
    LoraConfig {
        tokens: TrainableTokens { embed: ids, head },
        ..lora.clone()
    }
}

/// Builds the model: random init (seeded) for a preset, `model::load` for the others; with
/// `lora`, the base frozen and the adapter attached (initialised from `seed`).
pub fn build_model(
    plan: &ModelPlan,
    vocab: &VocabMap,
    model_eos: u32,
    seed: u64,
    lora: Option<&LoraConfig>,
) -> Result<BuiltModel> {
    let model = match &plan.source {
        ModelSource::Preset(_) => Llama::from_config(trained_config(plan, vocab, model_eos), seed)?,
        ModelSource::HfDir(path) | ModelSource::Gguf(path) => {
            // A base LoRA freezes keeps its checkpoint's precision (bf16 stays bf16: half the
            // memory; ops convert one matrix at a time); full fine-tuning trains in f32.
            let dtype = if lora.is_some() {
                None
            } else {
                Some(DType::F32)
            };
            let mut model = load_model_as(path, dtype)?.0;
            if vocab.len() > model.config.vocab_size {
                // Added tokens (SIDs): new embedding / head rows = mean of the old ones plus
                // small seeded noise (ILREC.md section 4).
                model.resize_vocab(vocab.len(), seed)?;
            }
            model
        }
    };
    let mut model = model;
    if let Some(lora) = lora {
        attach(&mut model, lora, crate::rng::Rng::stream_seed(seed, 1))?;
    }
    let trainable = model
        .params
        .ids()
        .filter(|&id| model.params.is_trainable(id))
        .collect();
    Ok(BuiltModel {
        model,
        trainable,
        lora: lora.cloned(),
    })
}

/// The run's model for the prepared data's vocabulary map, EOS and item tokens (the SIDs; None
/// in title mode): [`build_model`] with `--lora`'s adapter, the item tokens' rows included
/// ([`run_adapter`]).
pub fn build_run_model(
    cfg: &PipelineConfig,
    plan: &ModelPlan,
    (vocab, model_eos): (&VocabMap, u32),
    item_tokens: Option<&[u32]>,
) -> Result<BuiltModel> {
    let tied = plan.config.tie_word_embeddings;
    let lora = (cfg.lora.as_ref()).map(|l| run_adapter(l, item_tokens, tied));
    build_model(plan, vocab, model_eos, cfg.seed, lora.as_ref())
}

/// Saves a trained model to `dir`: a full HF checkpoint, or under LoRA the PEFT adapter folder
/// `dir/adapter/` (the frozen base is `base`, recorded as `base_model_name_or_path`).
pub fn save_trained(
    dir: &Path,
    model: &Llama,
    lora: Option<&LoraConfig>,
    base: &str,
) -> Result<()> {
    match lora {
        Some(lora) => save_adapter(model, lora, &dir.join("adapter"), Some(base)),
        None => model.save(dir),
    }
}
