//! Seeds of the `peft` target: LoRA adapter folders (`adapter_config.json` +
//! `adapter_model.safetensors`) for the tiny Llama of the other seeds, written by the library's
//! own `lora::save_adapter`, so every seed is byte for byte what `train --lora` writes.
//!
//! An adapter only means something on its base model, so the target keeps three bases (untied,
//! tied, and a bf16 one as a frozen half-precision checkpoint stays), each grown by two tokens as
//! a SID run grows its vocabulary. Each seed records its base in `base_model_name_or_path`, and a
//! case is loaded onto the base that field names, as a user passes the base an adapter was
//! trained on.

use super::bundle::Bundle;
use super::seeds::tiny_config_json;
use ilrec::lora::files::{CONFIG_FILE, WEIGHTS_FILE};
use ilrec::lora::{adapter_params, attach, save_adapter, LoraConfig, TrainableTokens};
use ilrec::model::adapter::Proj;
use ilrec::model::config::LlamaConfig;
use ilrec::model::llama::Llama;
use ilrec::rng::Rng;
use ilrec::tensor::{DType, Tensor};
use std::path::Path;

/// A base model an adapter of this target can be loaded onto.
pub struct Base {
    /// What the seed's `base_model_name_or_path` says.
    pub name: &'static str,
    pub tied: bool,
    pub dtype: DType,
}

/// The bases; a case that names none of them (or whose config cannot be read) gets the first.
pub const BASES: [Base; 3] = [
    Base {
        name: "fuzz/tiny-llama",
        tied: false,
        dtype: DType::F32,
    },
    Base {
        name: "fuzz/tiny-llama-tied",
        tied: true,
        dtype: DType::F32,
    },
    Base {
        name: "fuzz/tiny-llama-bf16",
        tied: false,
        dtype: DType::BF16,
    },
];

/// The tiny model's vocabulary after growth: 12 tokens plus 2 added ones (ids 12 and 13), the
/// rows a SID run's adapter trains.
const GROWN_VOCAB: usize = 14;

impl Base {
    /// The model, rebuilt from its seed as `recommend` rebuilds a run's base (same vocabulary
    /// growth, same seed).
    pub fn model(&self) -> Llama {
        let config =
            LlamaConfig::from_json(&tiny_config_json(self.tied), "<seed>").expect("seed config");
        let mut model = Llama::from_config_as(config, 3, self.dtype).expect("seed model");
        model
            .resize_vocab(GROWN_VOCAB, 3)
            .expect("growing the seed vocabulary");
        model
    }
}

/// The base named by the `base_model_name_or_path` of `dir`'s adapter_config.json. Read
/// leniently: a broken config is the loader's to report, so it just gets the first base.
pub fn base_for(dir: &Path) -> &'static Base {
    let text = std::fs::read(dir.join(CONFIG_FILE)).unwrap_or_default();
    let named = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["base_model_name_or_path"].as_str().map(str::to_string));
    let found = named.and_then(|n| BASES.iter().find(|b| b.name == n));
    found.unwrap_or(&BASES[0])
}

/// The adapters: (base index, config). Every shape of config `lora::files` handles: all seven
/// targets, a subset on one block, rsLoRA, token rows of the embedding and of an untied head
/// (the grown ids among them), a tied head following the embedding, and a bf16 base.
fn variants() -> Vec<(usize, LoraConfig)> {
    let plain = LoraConfig {
        r: 2,
        alpha: 4.0,
        dropout: 0.05,
        ..LoraConfig::default()
    };
    let subset = LoraConfig {
        r: 1,
        alpha: 8.0,
        targets: vec![Proj::Q, Proj::V, Proj::Down],
        layers: Some(vec![1]),
        rslora: true,
        ..plain.clone()
    };
    let tokens = LoraConfig {
        r: 4,
        alpha: 16.0,
        dropout: 0.0,
        targets: vec![Proj::K, Proj::O],
        tokens: TrainableTokens {
            embed: vec![12, 13, 3],
            head: vec![13],
        },
        ..plain.clone()
    };
    let tied = LoraConfig {
        r: 3,
        alpha: 2.5,
        targets: vec![Proj::Gate, Proj::Up],
        layers: Some(vec![0, 1]),
        tokens: TrainableTokens {
            embed: vec![12, 13],
            head: Vec::new(),
        },
        ..plain.clone()
    };
    vec![
        (0, plain.clone()),
        (0, subset),
        (0, tokens),
        (1, tied),
        (2, plain),
    ]
}

/// One adapter folder per variant, written by `save_adapter` after attaching the adapter and
/// giving every tensor nonzero values (a fresh B is zero, and a zero update would let a merge
/// that ignored the adapter look right).
pub fn peft_seeds(scratch: &Path) -> Vec<Bundle> {
    variants()
        .into_iter()
        .enumerate()
        .map(|(k, (base, cfg))| {
            let base = &BASES[base];
            let mut model = base.model();
            attach(&mut model, &cfg, k as u64).expect("seed adapter attaches");
            let mut rng = Rng::new(100 + k as u64);
            for (_, id) in adapter_params(&model) {
                let shape = model.params.value(id).shape().to_vec();
                let values = Tensor::rand_uniform(&shape, -0.5, 0.5, &mut rng);
                model.params.set_value(id, values).expect("same shape");
            }
            let dir = scratch.join(format!("seed-peft-{k}"));
            save_adapter(&model, &cfg, &dir, Some(base.name)).expect("seed adapter saves");
            let read = |n: &str| {
                (
                    n.to_string(),
                    std::fs::read(dir.join(n)).expect("seed file"),
                )
            };
            Bundle {
                files: vec![read(CONFIG_FILE), read(WEIGHTS_FILE)],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each seed names its base, and together they reach all three (a case loaded onto the
    /// wrong base would mostly test the shape checks).
    #[test]
    fn the_seeds_name_every_base() {
        let scratch = std::env::temp_dir().join(format!("ilrec-peft-seeds-{}", std::process::id()));
        let mut named = Vec::new();
        for (k, seed) in peft_seeds(&scratch).iter().enumerate() {
            let case = scratch.join(format!("case-{k}"));
            seed.write_into(&case).expect("writing a seed");
            named.push(base_for(&case).name);
        }
        let _ = std::fs::remove_dir_all(&scratch);
        for base in &BASES {
            assert!(
                named.contains(&base.name),
                "{} is not named: {named:?}",
                base.name
            );
        }
    }
}
