//! Every knob of a run, with its documented default; the CLI sets them and `config.json` records
//! them. Nothing downstream hard-codes a hyper-parameter: it reads this struct.

use crate::ilrec::gradients::NegativesScope;
use crate::ilrec::negatives::Ensemble;
use crate::ilrec::schedule::Schedule;
use crate::ilrec::LensLayers;
use crate::lora::LoraConfig;
use crate::rec::{LoadOptions, Protocol};
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
    /// Data set folder (MovieLens CSV or RecBole atomic files); default the embedded
    /// data/ml-latest-small.
    pub data: PathBuf,
    /// How the folder is read and filtered: k-core (default 5) and RecBole's
    /// interaction-count intervals, duplicates (default first), rating threshold (default off),
    /// atomic-file field names, item text (`pipeline::data_flags`).
    pub load: LoadOptions,
    /// Which items a ranking competes over [all-items; `--exclude-history`].
    pub protocol: Protocol,
    /// Preset (tiny, mini, small, base), an HF folder or a .gguf file (default tiny).
    pub model: String,
    /// LoRA adapters on the pretrained `model` (frozen base; SID token rows train too) instead
    /// of full fine-tuning (default none: full fine-tuning).
    pub lora: Option<LoraConfig>,
    /// How items are written (default sid).
    pub item_repr: ItemRepr,
    /// SID mode: what the RQ-VAE quantises (default cf).
    pub sid_embeddings: SidSource,
    /// SID mode: a `sids.json` (LC-Rec's `.index.json` shape) to use instead of building
    /// (default none).
    pub sids: Option<PathBuf>,
    /// History items shown in the LLM prompt (default 10).
    pub max_history: usize,
    /// Seeded subsample of training samples for the LLM, 0 = all (default 0).
    pub train_samples: usize,
    /// Seeded subset of validation users for model selection, 0 = all (default 200).
    pub valid_users: usize,
    /// Subset of test users, 0 = all (default 0). Drawn with a fixed seed (not `seed`), so every
    /// seed of a study ranks the same users and per-user results pair across seeds.
    pub test_users: usize,
    /// SFT warm-up passes over the training samples (default 1).
    pub epochs: f64,
    /// Passes of each continuation (SFT and ILRec from the warm-up) (default 0.5).
    pub finetune_epochs: f64,
    /// Examples per step (default 16).
    pub batch: usize,
    /// Peak learning rate of the cosine schedule (default 2e-3).
    pub lr: f32,
    /// Linear warm-up as a fraction of a stage's steps (at least one step) (default 0.05).
    pub warmup_fraction: f64,
    /// Global gradient-norm clip (default 1.0).
    pub clip_norm: f32,
    /// AdamW weight decay (norms and biases excluded) (default 0.01).
    pub weight_decay: f32,
    /// Logit-lens layers S (default last4: the four blocks below the top, clipped to >= 1).
    pub lens_layers: LensLayers,
    /// ILRec weights: CPO alpha (default 0.1), CRR lambda (default 0.1), CPD mu (default 1).
    pub alpha: f32,
    pub lambda: f32,
    pub mu: f32,
    /// CRR reward temperature tau_r (default 1).
    pub tau_r: f32,
    /// Self-hard-negative margin (default 0) and temperature tau (default 1).
    pub margin: f32,
    pub tau: f32,
    /// Where negatives may come from: trie children of the prefix, or the whole vocabulary
    /// (default trie).
    pub negatives_scope: NegativesScope,
    /// How the lens layers' logits are combined for mining (default mean).
    pub ensemble: Ensemble,
    /// The two ILRec stages (default joint).
    pub schedule: Schedule,
    /// Ablation variants to run as well, by short name (`pipeline::ablations::ABLATIONS`);
    /// `--ablation` = all five (default none).
    pub ablations: Vec<String>,
    /// Also fine-tune ILRec with the sequential schedule from the same warm-up, row
    /// `ilrec sequential` (`study`'s `sequential` method without a second warm-up) (default false).
    pub also_sequential: bool,
    /// SASRec (CF reward model): most epochs (default 30) and early-stopping patience (default 3).
    pub sasrec_epochs: usize,
    pub sasrec_patience: usize,
    /// Beam width of constrained decoding (default 20).
    pub beams: usize,
    /// Seed of everything (default 0).
    pub seed: u64,
    /// Evaluation threads (default 2).
    pub threads: usize,
    /// Run folder (default `runs/run-<unix seconds>`).
    pub out: Option<PathBuf>,
    /// Save a resumable checkpoint every this many steps (default 50).
    pub checkpoint_every: usize,
    /// Continue a killed run in `out` (default false).
    pub resume: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            data: Path::new(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small"),
            load: LoadOptions::default(),
            protocol: Protocol::AllItems,
            model: "tiny".into(),
            lora: None,
            item_repr: ItemRepr::Sid,
            sid_embeddings: SidSource::Cf,
            sids: None,
            max_history: 10,
            train_samples: 0,
            valid_users: 200,
            test_users: 0,
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
            ablations: Vec::new(),
            also_sequential: false,
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
        if self.also_sequential && self.schedule == Schedule::Sequential {
            return fail(
                "--also-sequential with --schedule sequential",
                "the ilrec row is sequential already; drop --also-sequential",
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
            "data": self.data.display().to_string(), "kcore": self.load.kcore,
            "data_options": super::data_flags::data_options_json(&self.load),
            "protocol": self.protocol.name(), "model": self.model,
            "item_repr": self.item_repr.name(), "sid_embeddings": self.sid_embeddings.name(),
            "sids": self.sids.as_ref().map(|p| p.display().to_string()),
            "max_history": self.max_history,
            "train_samples": self.train_samples, "valid_users": self.valid_users,
            "test_users": self.test_users,
            "epochs": self.epochs, "finetune_epochs": self.finetune_epochs, "batch": self.batch,
            "lr": self.lr, "warmup_fraction": self.warmup_fraction, "clip_norm": self.clip_norm,
            "weight_decay": self.weight_decay, "lens_layers": lens_layers, "alpha": self.alpha,
            "lambda": self.lambda, "mu": self.mu, "tau_r": self.tau_r, "margin": self.margin,
            "tau": self.tau, "negatives_scope": self.negatives_scope.name(),
            "ensemble": self.ensemble.name(), "schedule": self.schedule.name(),
            "ablations": self.ablations, "also_sequential": self.also_sequential,
            "sasrec_epochs": self.sasrec_epochs,
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

/// The `--lora` settings back from config.json ([`lora_json`]), through the flag's own parser.
fn lora_from_json(v: &Value) -> Result<Option<LoraConfig>> {
    if v.is_null() {
        return Ok(None);
    }
    let bad = || JsonFields::bad("lora", "null or the --lora settings");
    let list = |key: &str| -> Result<Vec<String>> {
        let xs = v.get(key).and_then(Value::as_array).ok_or_else(bad)?;
        Ok(xs
            .iter()
            .map(|x| x.to_string().trim_matches('"').to_string())
            .collect())
    };
    let mut spec = format!(
        "r={},alpha={},dropout={},rslora={},targets={}",
        v.get("r").ok_or_else(bad)?,
        v.get("alpha").ok_or_else(bad)?,
        v.get("dropout").ok_or_else(bad)?,
        v.get("rslora").ok_or_else(bad)?,
        list("targets")?.join(","),
    );
    if !v.get("layers").is_none_or(Value::is_null) {
        spec.push_str(&format!(",layers={}", list("layers")?.join(",")));
    }
    LoraConfig::parse(&spec).map(Some)
}

/// Reading a run back: `config.json` -> the [`PipelineConfig`] that wrote it (`eval`,
/// `recommend`). `out` and `resume` are not recorded (the run folder is where the file is);
/// the lens layers come back as the explicit blocks they resolved to for the run's model.
impl PipelineConfig {
    pub fn from_json(v: &Value) -> Result<PipelineConfig> {
        let r = JsonFields(v);
        let lens: Vec<String> = r.list("lens_layers")?;
        Ok(PipelineConfig {
            data: PathBuf::from(r.text("data")?),
            load: super::data_flags::data_options_from_json(r.get("data_options", "an object")?)?,
            protocol: Protocol::from_name(&r.text("protocol")?)
                .ok_or_else(|| JsonFields::bad("protocol", "all-items or exclude-history"))?,
            model: r.text("model")?,
            item_repr: ItemRepr::parse(&r.text("item_repr")?)?,
            sid_embeddings: SidSource::parse(&r.text("sid_embeddings")?),
            sids: r.optional_text("sids")?.map(PathBuf::from),
            max_history: r.uint("max_history")?,
            train_samples: r.uint("train_samples")?,
            valid_users: r.uint("valid_users")?,
            test_users: r.uint_or("test_users", 0)?,
            epochs: r.float("epochs")?,
            finetune_epochs: r.float("finetune_epochs")?,
            batch: r.uint("batch")?,
            lr: r.float("lr")? as f32,
            warmup_fraction: r.float("warmup_fraction")?,
            clip_norm: r.float("clip_norm")? as f32,
            weight_decay: r.float("weight_decay")? as f32,
            lens_layers: LensLayers::parse(&lens.join(","))?,
            alpha: r.float("alpha")? as f32,
            lambda: r.float("lambda")? as f32,
            mu: r.float("mu")? as f32,
            tau_r: r.float("tau_r")? as f32,
            margin: r.float("margin")? as f32,
            tau: r.float("tau")? as f32,
            negatives_scope: NegativesScope::parse(&r.text("negatives_scope")?)?,
            ensemble: Ensemble::parse(&r.text("ensemble")?)?,
            schedule: Schedule::parse(&r.text("schedule")?)?,
            ablations: r.ablations()?,
            also_sequential: r.flag_or("also_sequential", false)?,
            sasrec_epochs: r.uint("sasrec_epochs")?,
            sasrec_patience: r.uint("sasrec_patience")?,
            beams: r.uint("beams")?,
            seed: r.uint("seed")? as u64,
            threads: r.uint("threads")?,
            out: None,
            checkpoint_every: r.uint("checkpoint_every")?,
            resume: false,
            lora: lora_from_json(v.get("lora").unwrap_or(&Value::Null))?,
        })
    }
}

/// Typed fields of a `config.json` object; a missing or mistyped field is one error naming it.
struct JsonFields<'a>(&'a Value);

impl JsonFields<'_> {
    fn get(&self, key: &str, want: &str) -> Result<&Value> {
        self.0.get(key).ok_or_else(|| Self::bad(key, want))
    }

    fn bad(key: &str, want: &str) -> Error {
        Error::config(
            format!("config.json: field \"{key}\" is missing or not {want}"),
            "the run folder must be written by `train` of this version; retrain it",
        )
    }

    fn text(&self, key: &str) -> Result<String> {
        let v = self.get(key, "a string")?;
        v.as_str()
            .map(String::from)
            .ok_or_else(|| Self::bad(key, "a string"))
    }

    fn optional_text(&self, key: &str) -> Result<Option<String>> {
        match self.get(key, "a string or null")? {
            Value::Null => Ok(None),
            v => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| Self::bad(key, "a string or null")),
        }
    }

    fn uint(&self, key: &str) -> Result<usize> {
        let v = self.get(key, "a whole number")?;
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| Self::bad(key, "a whole number"))
    }

    /// A field added after runs were already written (`test_users`, `also_sequential`): a
    /// missing one reads as the value every older run had.
    fn uint_or(&self, key: &str, missing: usize) -> Result<usize> {
        match self.0.get(key) {
            None => Ok(missing),
            Some(_) => self.uint(key),
        }
    }

    fn flag_or(&self, key: &str, missing: bool) -> Result<bool> {
        match self.0.get(key) {
            None => Ok(missing),
            Some(_) => self.flag(key),
        }
    }

    fn float(&self, key: &str) -> Result<f64> {
        let v = self.get(key, "a number")?;
        v.as_f64().ok_or_else(|| Self::bad(key, "a number"))
    }

    /// `ablations` (a list of short names), or `ablation` (true = all five) as runs recorded
    /// before the list existed.
    fn ablations(&self) -> Result<Vec<String>> {
        if self.0.get("ablations").is_none() {
            return Ok(match self.flag_or("ablation", false)? {
                true => super::ablations::all_ablations(),
                false => Vec::new(),
            });
        }
        let v = self.get("ablations", "a list of ablation names")?;
        let names: Option<Vec<&str>> = v
            .as_array()
            .and_then(|xs| xs.iter().map(|x| x.as_str()).collect());
        let names = names.ok_or_else(|| Self::bad("ablations", "a list of ablation names"))?;
        super::ablations::parse_ablations(&names.join(","))
    }

    fn flag(&self, key: &str) -> Result<bool> {
        let v = self.get(key, "true or false")?;
        v.as_bool().ok_or_else(|| Self::bad(key, "true or false"))
    }

    /// A list of numbers, as their decimal texts (the lens layers).
    fn list(&self, key: &str) -> Result<Vec<String>> {
        let v = self.get(key, "a list of whole numbers")?;
        v.as_array()
            .and_then(|xs| {
                xs.iter()
                    .map(|x| x.as_u64().map(|n| n.to_string()))
                    .collect()
            })
            .ok_or_else(|| Self::bad(key, "a list of whole numbers"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rec::{FieldNames, Intervals, KeepDuplicate, LoadOptions};

    /// A config far from the defaults in every field `config.json` records.
    fn unusual() -> PipelineConfig {
        PipelineConfig {
            data: PathBuf::from("/some/where/amazon"),
            load: LoadOptions {
                kcore: 0,
                user_inter_num: Some(Intervals::parse("[3,inf)").unwrap()),
                keep_duplicate: KeepDuplicate::Last,
                min_rating: Some(3.5),
                fields: FieldNames {
                    item: "parent_asin".into(),
                    item_text: Some(vec!["title".into(), "categories".into()]),
                    ..FieldNames::default()
                },
                allow_missing_text: true,
                ..LoadOptions::default()
            },
            protocol: Protocol::ExcludeHistory,
            model: "mini".into(),
            item_repr: ItemRepr::Title,
            sid_embeddings: SidSource::File(PathBuf::from("emb.safetensors")),
            sids: Some(PathBuf::from("given/sids.json")),
            max_history: 7,
            train_samples: 1234,
            valid_users: 0,
            test_users: 17,
            epochs: 2.5,
            finetune_epochs: 0.3,
            batch: 5,
            lr: 1.7e-4,
            warmup_fraction: 0.125,
            clip_norm: 0.3,
            weight_decay: 0.0,
            lens_layers: LensLayers::Explicit(vec![1, 3]),
            alpha: 0.7,
            lambda: 0.05,
            mu: 0.0,
            tau_r: 2.5,
            margin: -0.1,
            tau: 0.3,
            negatives_scope: NegativesScope::Vocab,
            ensemble: Ensemble::Sum,
            schedule: Schedule::Sequential,
            ablations: vec!["wo-crr".into(), "final-cpd0".into()],
            also_sequential: true,
            sasrec_epochs: 9,
            sasrec_patience: 1,
            beams: 33,
            seed: u64::MAX / 3,
            threads: 3,
            out: None,
            checkpoint_every: 11,
            resume: false,
            lora: Some(
                LoraConfig::parse("r=8,alpha=16,dropout=0.05,targets=q,v,layers=0,1").unwrap(),
            ),
        }
    }

    #[test]
    fn to_json_then_from_json_gives_the_config_back() {
        let model = json!({"hidden_size": 32});
        for cfg in [PipelineConfig::default(), unusual()] {
            // The lens layers are recorded as the blocks they resolve to (here for 4 blocks).
            let lens = cfg.lens_layers.resolve(4).unwrap();
            let written = cfg.to_json(&lens, model.clone());
            let back = PipelineConfig::from_json(&written).unwrap();
            assert_eq!(back.to_json(&lens, model.clone()), written);
            assert_eq!(back.lens_layers, LensLayers::Explicit(lens.clone()));
            // Every other field, f32 values included, comes back exactly.
            let without_lens = |c: &PipelineConfig| PipelineConfig {
                lens_layers: LensLayers::default(),
                ..c.clone()
            };
            assert_eq!(
                format!("{:?}", without_lens(&back)),
                format!("{:?}", without_lens(&cfg))
            );
        }
    }

    #[test]
    fn a_run_written_before_test_users_and_also_sequential_reads_with_their_old_values() {
        let mut v = unusual().to_json(&[1], json!({}));
        let fields = v.as_object_mut().unwrap();
        fields.remove("test_users");
        fields.remove("also_sequential");
        let back = PipelineConfig::from_json(&v).unwrap();
        assert_eq!((back.test_users, back.also_sequential), (0, false));
        v["test_users"] = json!("all");
        let err = PipelineConfig::from_json(&v).unwrap_err().to_string();
        assert!(err.contains("\"test_users\""), "{err}");
    }

    #[test]
    fn a_run_written_with_the_ablation_switch_reads_as_all_or_none_of_them() {
        let mut v = unusual().to_json(&[1], json!({}));
        v.as_object_mut().unwrap().remove("ablations");
        for (switch, want) in [
            (true, crate::pipeline::ablations::all_ablations()),
            (false, vec![]),
        ] {
            v["ablation"] = json!(switch);
            assert_eq!(PipelineConfig::from_json(&v).unwrap().ablations, want);
        }
        v["ablations"] = json!(["wo-crr", "no-such-thing"]);
        let err = PipelineConfig::from_json(&v).unwrap_err().to_string();
        assert!(err.contains("no-such-thing"), "{err}");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named() {
        let mut v = PipelineConfig::default().to_json(&[1], json!({}));
        v.as_object_mut().unwrap().remove("beams");
        let err = PipelineConfig::from_json(&v).unwrap_err().to_string();
        assert!(err.contains("\"beams\""), "{err}");
        v["beams"] = json!("twenty");
        let err = PipelineConfig::from_json(&v).unwrap_err().to_string();
        assert!(err.contains("\"beams\"") && err.contains("hint"), "{err}");
    }
}
