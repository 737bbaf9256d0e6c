//! Every knob of a run, with its documented default; the CLI sets them and `config.json` records
//! them. Nothing downstream hard-codes a hyper-parameter: it reads this struct.

use crate::ilrec::negatives::Ensemble;
use crate::ilrec::schedule::Schedule;
use crate::ilrec::trainer::NegativesScope;
use crate::ilrec::LensLayers;
use crate::lora::LoraConfig;
use crate::{Error, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// How an item is written as tokens (the response the LLM generates and the trie holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemRepr {
    /// Its semantic ID: `levels` added tokens `<a_12><b_3><c_7>`, then EOS (LC-Rec, ILRec).
    Sid,
    /// The item's title tokens, then EOS (BIGRec / LC-Rec title mode).
    Title,
}

impl ItemRepr {
    pub fn parse(s: &str) -> Result<ItemRepr> {
        match s {
            "sid" => Ok(ItemRepr::Sid),
            "title" => Ok(ItemRepr::Title),
            other => Err(Error::config(
                format!("--item-repr {other}: not supported"),
                "use --item-repr sid (semantic IDs, the default) or title",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ItemRepr::Sid => "sid",
            ItemRepr::Title => "title",
        }
    }
}

/// The item embeddings an RQ-VAE quantises into semantic IDs (`src/sid/embeddings.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SidSource {
    /// SASRec's item table (the CF model trained in the run).
    Cf,
    /// Mean-pooled final hidden states of each item's text under the pretrained `--model`.
    Llm,
    /// One (items, dim) tensor in a safetensors file, rows in the data set's item order.
    File(PathBuf),
}

impl SidSource {
    pub fn parse(s: &str) -> SidSource {
        match s {
            "cf" => SidSource::Cf,
            "llm" => SidSource::Llm,
            file => SidSource::File(PathBuf::from(file)),
        }
    }

    pub fn name(&self) -> String {
        match self {
            SidSource::Cf => "cf".into(),
            SidSource::Llm => "llm".into(),
            SidSource::File(p) => p.display().to_string(),
        }
    }
}

/// The whole run. `Default` is the README's default run.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// Data set folder (MovieLens CSV or RecBole atomic files) [embedded data/ml-latest-small].
    pub data: PathBuf,
    /// k-core filter, 0 = off [5].
    pub kcore: usize,
    /// Preset (tiny, mini, small, base), an HF folder or a .gguf file [tiny].
    pub model: String,
    /// LoRA adapters on the pretrained `model` (frozen base; SID token rows train too) instead
    /// of full fine-tuning [none: full fine-tuning].
    pub lora: Option<LoraConfig>,
    /// How items are written [sid].
    pub item_repr: ItemRepr,
    /// SID mode: what the RQ-VAE quantises [cf].
    pub sid_embeddings: SidSource,
    /// SID mode: a `sids.json` (LC-Rec's `.index.json` shape) to use instead of building [none].
    pub sids: Option<PathBuf>,
    /// History items shown in the LLM prompt [10].
    pub max_history: usize,
    /// Seeded subsample of training samples for the LLM, 0 = all [0].
    pub train_samples: usize,
    /// Seeded subset of validation users for model selection, 0 = all [200].
    pub valid_users: usize,
    /// SFT warm-up passes over the training samples [1].
    pub epochs: f64,
    /// Passes of each continuation (SFT and ILRec from the warm-up) [0.5].
    pub finetune_epochs: f64,
    /// Examples per step [16].
    pub batch: usize,
    /// Peak learning rate of the cosine schedule [2e-3].
    pub lr: f32,
    /// Linear warm-up as a fraction of a stage's steps (at least one step) [0.05].
    pub warmup_fraction: f64,
    /// Global gradient-norm clip [1.0].
    pub clip_norm: f32,
    /// AdamW weight decay (norms and biases excluded) [0.01].
    pub weight_decay: f32,
    /// Logit-lens layers S [last4: the four blocks below the top, clipped to >= 1].
    pub lens_layers: LensLayers,
    /// ILRec weights: CPO alpha [0.1], CRR lambda [0.1], CPD mu [1].
    pub alpha: f32,
    pub lambda: f32,
    pub mu: f32,
    /// CRR reward temperature tau_r [1].
    pub tau_r: f32,
    /// Self-hard-negative margin [0] and temperature tau [1].
    pub margin: f32,
    pub tau: f32,
    /// Where negatives may come from: trie children of the prefix, or the whole vocabulary [trie].
    pub negatives_scope: NegativesScope,
    /// How the lens layers' logits are combined for mining [mean].
    pub ensemble: Ensemble,
    /// The two ILRec stages [joint].
    pub schedule: Schedule,
    /// Also run the ablation variants [false].
    pub ablation: bool,
    /// SASRec (CF reward model): most epochs [30] and early-stopping patience [3].
    pub sasrec_epochs: usize,
    pub sasrec_patience: usize,
    /// Beam width of constrained decoding [20].
    pub beams: usize,
    /// Seed of everything [0].
    pub seed: u64,
    /// Evaluation threads [2].
    pub threads: usize,
    /// Run folder [runs/run-<unix seconds>].
    pub out: Option<PathBuf>,
    /// Save a resumable checkpoint every this many steps [50].
    pub checkpoint_every: usize,
    /// Continue a killed run in `out` [false].
    pub resume: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            data: Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small"),
            kcore: 5,
            model: "tiny".into(),
            lora: None,
            item_repr: ItemRepr::Sid,
            sid_embeddings: SidSource::Cf,
            sids: None,
            max_history: 10,
            train_samples: 0,
            valid_users: 200,
            epochs: 1.0,
            finetune_epochs: 0.5,
            batch: 16,
            lr: 2e-3,
            warmup_fraction: 0.05,
            clip_norm: 1.0,
            weight_decay: 0.01,
            lens_layers: LensLayers::default(),
            alpha: 0.1,
            lambda: 0.1,
            mu: 1.0,
            tau_r: 1.0,
            margin: 0.0,
            tau: 1.0,
            negatives_scope: NegativesScope::Trie,
            ensemble: Ensemble::Mean,
            schedule: Schedule::Joint,
            ablation: false,
            sasrec_epochs: 30,
            sasrec_patience: 3,
            beams: 20,
            seed: 0,
            threads: 2,
            out: None,
            checkpoint_every: 50,
            resume: false,
        }
    }
}

impl PipelineConfig {
    /// Every value checked before any long work starts; one line with a hint on failure.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: &str, hint: &str| Err(Error::config(msg, hint));
        if !self.data.is_dir() {
            return fail(
                &format!("--data {}: no such folder", self.data.display()),
                "pass a MovieLens or RecBole folder, e.g. data/ml-latest-small",
            );
        }
        if self.beams == 0 {
            return fail(
                "--beams 0",
                "beam search needs at least 1 beam (default 20)",
            );
        }
        if self.batch == 0 || self.threads == 0 || self.max_history == 0 || self.sasrec_epochs == 0
        {
            return fail(
                "--batch, --threads, --max-history and --sasrec-epochs must be at least 1",
                "see train --help for the defaults",
            );
        }
        if !(self.epochs > 0.0 && self.finetune_epochs > 0.0) {
            return fail(
                "--epochs and --finetune-epochs must be > 0",
                "e.g. --epochs 1 --finetune-epochs 0.5",
            );
        }
        let weights_ok = self.alpha >= 0.0 && self.lambda >= 0.0 && self.mu >= 0.0;
        if !(self.lr > 0.0 && self.tau > 0.0 && self.tau_r > 0.0 && weights_ok) {
            return fail(
                "--lr, --tau and --tau-r must be > 0 and --alpha, --lambda, --mu >= 0",
                "defaults: --lr 0.002 --tau 1 --tau-r 1 --alpha 0.1 --lambda 0.1 --mu 1",
            );
        }
        if !(self.clip_norm > 0.0 && self.weight_decay >= 0.0 && self.warmup_fraction >= 0.0) {
            return fail(
                "--clip-norm must be > 0, --weight-decay and --warmup >= 0",
                "defaults: --clip-norm 1 --weight-decay 0.01 --warmup 0.05",
            );
        }
        if let Some(file) = self
            .sids
            .iter()
            .chain(match &self.sid_embeddings {
                SidSource::File(p) => Some(p),
                _ => None,
            })
            .find(|p| !p.is_file())
        {
            return fail(
                &format!("{}: no such file", file.display()),
                "--sids takes a sids.json, --sid-embeddings cf, llm or a .safetensors file",
            );
        }
        if self.resume && self.out.is_none() {
            return fail(
                "--resume needs --out",
                "pass the run folder of the killed run",
            );
        }
        Ok(())
    }

    /// The run's `config.json`: every field, the resolved lens layers and the model config.
    pub fn to_json(&self, lens_layers: &[usize], model_config: Value) -> Value {
        json!({
            "data": self.data.display().to_string(), "kcore": self.kcore, "model": self.model,
            "item_repr": self.item_repr.name(), "sid_embeddings": self.sid_embeddings.name(),
            "sids": self.sids.as_ref().map(|p| p.display().to_string()),
            "max_history": self.max_history,
            "train_samples": self.train_samples, "valid_users": self.valid_users,
            "epochs": self.epochs, "finetune_epochs": self.finetune_epochs, "batch": self.batch,
            "lr": self.lr, "warmup_fraction": self.warmup_fraction, "clip_norm": self.clip_norm,
            "weight_decay": self.weight_decay, "lens_layers": lens_layers, "alpha": self.alpha,
            "lambda": self.lambda, "mu": self.mu, "tau_r": self.tau_r, "margin": self.margin,
            "tau": self.tau, "negatives_scope": self.negatives_scope.name(),
            "ensemble": self.ensemble.name(), "schedule": self.schedule.name(),
            "ablation": self.ablation, "sasrec_epochs": self.sasrec_epochs,
            "sasrec_patience": self.sasrec_patience, "beams": self.beams, "seed": self.seed,
            "threads": self.threads, "checkpoint_every": self.checkpoint_every,
            "eos": "<|endoftext|>", "model_config": model_config,
            "lora": self.lora.as_ref().map(lora_json),
        })
    }
}

/// The `--lora` settings as recorded in config.json.
fn lora_json(l: &LoraConfig) -> Value {
    let targets: Vec<&str> = l.targets.iter().map(|p| p.hf_name()).collect();
    // f32 settings as the decimals they were given as (0.05, not 0.0500000007).
    let decimal = |x: f32| x.to_string().parse::<f64>().unwrap_or(x as f64);
    json!({
        "r": l.r, "alpha": decimal(l.alpha), "dropout": decimal(l.dropout), "targets": targets,
        "layers": l.layers, "rslora": l.rslora,
    })
}
