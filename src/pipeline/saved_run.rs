//! A finished (or partly finished) `train` run folder, opened for reading: its `config.json`
//! back as a [`PipelineConfig`], and which stages have a saved model under `checkpoints/`.
//! Everything here is cheap (a few small files), so `eval` and `recommend` can refuse a folder
//! that is not a run, or a stage that was not trained, before any heavy work.
//!
//! What `train` leaves (README, "`train`"): `config.json`, `vocab_map.json`, in SID mode
//! `sids.json` + `sids.item_ids.json`, `checkpoints/<stage>/` (model.safetensors + config.json,
//! or under LoRA `adapter/`, a PEFT folder) for every fine-tuned method, stage folders named by
//! [`file_name`].

use super::config::PipelineConfig;
use super::stage::file_name;
use super::variants::variants;
use crate::lora::files::CONFIG_FILE;
use crate::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A run folder and the configuration it was trained with.
pub struct SavedRun {
    pub dir: PathBuf,
    pub config: PipelineConfig,
    /// Blocks of the trained model (config.json's `model_config`).
    pub num_blocks: usize,
}

/// One trained stage: its method name (as in the results table) and its checkpoint folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedStage {
    pub name: String,
    pub dir: PathBuf,
}

impl SavedRun {
    /// Opens `dir`; fails with a hint when it is not a `train` run folder.
    pub fn open(dir: &Path) -> Result<SavedRun> {
        let not_a_run = |what: &str| {
            Error::config(
                format!("{} is not a train run folder: {what}", dir.display()),
                "pass the folder train wrote (runs/<name>, or the --out DIR of train)",
            )
        };
        if !dir.is_dir() {
            return Err(not_a_run("no such folder"));
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(not_a_run("no config.json"));
        }
        for needed in ["vocab_map.json", "checkpoints"] {
            if !dir.join(needed).exists() {
                return Err(not_a_run(&format!(
                    "no {needed} (did the run get past its data stage?)"
                )));
            }
        }
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&config_path, e.to_string()))?;
        let config = PipelineConfig::from_json(&value)?;
        let num_blocks = value["model_config"]["num_hidden_layers"]
            .as_u64()
            .ok_or_else(|| Error::format(&config_path, "model_config.num_hidden_layers missing"))?
            as usize;
        if !config.data.is_dir() {
            return Err(Error::config(
                format!(
                    "the run's data folder {} does not exist here",
                    config.data.display()
                ),
                "the run reads its data set again; restore that folder (config.json \"data\")",
            ));
        }
        Ok(SavedRun {
            dir: dir.to_path_buf(),
            config,
            num_blocks,
        })
    }

    /// The stages with a saved model, in table order (`sft`, `ilrec`, then any ablations).
    pub fn trained_stages(&self) -> Vec<SavedStage> {
        variants(&self.config, self.num_blocks, None)
            .into_iter()
            .map(|(name, _)| SavedStage {
                dir: self.dir.join("checkpoints").join(file_name(&name)),
                name,
            })
            .filter(|s| {
                let full = s.dir.join("model.safetensors").is_file()
                    && s.dir.join("config.json").is_file();
                full || s.dir.join("adapter").join(CONFIG_FILE).is_file() // a LoRA stage
            })
            .collect()
    }

    /// The trained stage called `name` (its method name, `ilrec w/o cpo`, or its folder name,
    /// `ilrec_w_o_cpo`); an error listing the trained stages otherwise.
    pub fn stage(&self, name: &str) -> Result<SavedStage> {
        let trained = self.trained_stages();
        if let Some(s) = trained
            .iter()
            .find(|s| file_name(&s.name) == file_name(name))
        {
            return Ok(s.clone());
        }
        let names: Vec<String> = trained.iter().map(|s| format!("{:?}", s.name)).collect();
        let hint = match names.is_empty() {
            true => {
                "no stage of this run finished; continue it with train --out DIR --resume".into()
            }
            false => format!("trained stages: {}", names.join(", ")),
        };
        Err(Error::config(
            format!("stage {name:?} was not trained in {}", self.dir.display()),
            hint,
        ))
    }
}
