//! What a LoRA adapter is: rank r, alpha, dropout, the target projections, the blocks it
//! covers, rsLoRA's scaling and the trainable token rows; the `--lora` flag's syntax
//! (`r=16,alpha=32,dropout=0.05,targets=q,v,layers=0,1`), and the checks against a model.
//!
//! Problems are reported as [`Invalid`] (field, problem, what is supported) and turned into a
//! one-line error naming where the setting came from: the `--lora` flag or an
//! `adapter_config.json`.

use crate::error::{Error, Result};
use crate::model::adapter::Proj;
use crate::model::config::LlamaConfig;
use std::path::Path;

/// A LoRA adapter's settings (PEFT's `LoraConfig`, the part we implement).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank of the update: A is (r, in), B (out, r).
    pub r: usize,
    /// The update is scaled by alpha / r (alpha / sqrt(r) with rsLoRA).
    pub alpha: f32,
    /// Dropout probability on the adapter's input during training.
    pub dropout: f32,
    /// Adapted projections, distinct, in block order.
    pub targets: Vec<Proj>,
    /// Adapted blocks (0-based, PEFT's `layers_to_transform`); None = every block.
    pub layers: Option<Vec<usize>>,
    /// rsLoRA (`use_rslora`): scale alpha / sqrt(r) instead of alpha / r.
    pub rslora: bool,
    /// Token ids whose rows of the embedding (and of an untied head) train
    /// (PEFT's `trainable_token_indices`).
    pub tokens: TrainableTokens,
}

/// Token rows that train: PEFT's `trainable_token_indices` as `{"embed_tokens": [...],
/// "lm_head": [...]}` (a tied head follows the embedding and takes no list of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrainableTokens {
    pub embed: Vec<usize>,
    pub head: Vec<usize>,
}

impl TrainableTokens {
    pub fn is_empty(&self) -> bool {
        self.embed.is_empty() && self.head.is_empty()
    }
}

impl Default for LoraConfig {
    /// The paper's adapter (ILREC.md section 9): r 64, alpha 32, dropout 0.05, all seven
    /// projections of every block.
    fn default() -> Self {
        LoraConfig {
            r: 64,
            alpha: 32.0,
            dropout: 0.05,
            targets: Proj::ALL.to_vec(),
            layers: None,
            rslora: false,
            tokens: TrainableTokens::default(),
        }
    }
}

/// One thing wrong with a LoRA setting: the field (PEFT's name), the problem, what is supported.
#[derive(Clone, Debug)]
pub struct Invalid {
    pub field: String,
    pub problem: String,
    pub supported: String,
}

impl Invalid {
    pub fn new(
        field: impl Into<String>,
        problem: impl Into<String>,
        supported: impl Into<String>,
    ) -> Invalid {
        Invalid {
            field: field.into(),
            problem: problem.into(),
            supported: supported.into(),
        }
    }

    /// As an error of the `--lora` flag (the flag's key names).
    pub fn in_flag(self) -> Error {
        let key = match self.field.as_str() {
            "lora_alpha" => "alpha",
            "lora_dropout" => "dropout",
            "target_modules" => "targets",
            "layers_to_transform" => "layers",
            "use_rslora" => "rslora",
            other => other,
        };
        let place = match key {
            "" => "--lora".to_string(),
            key => format!("--lora {key}"),
        };
        Error::config(format!("{place}: {}", self.problem), &self.supported)
    }

    /// As an error of a setting made in code (no flag, no file).
    pub fn into_error(self) -> Error {
        Error::config(
            format!("LoRA `{}`: {}", self.field, self.problem),
            self.supported,
        )
    }

    /// As an error of the file `path` (an adapter_config.json or an adapter's weights).
    pub fn in_file(self, path: &Path) -> Error {
        Error::format(
            path,
            format!(
                "field `{}`: {} (supported: {})",
                self.field, self.problem, self.supported
            ),
        )
    }
}

/// Target names as the flag takes them, for messages.
pub const TARGETS_HELP: &str =
    "all, or a list of q, k, v, o, gate, up, down (or q_proj, ..., down_proj)";

impl LoraConfig {
    /// The factor of the update: alpha / r, or alpha / sqrt(r) with rsLoRA.
    pub fn scale(&self) -> f32 {
        match self.rslora {
            true => self.alpha / (self.r as f32).sqrt(),
            false => self.alpha / self.r as f32,
        }
    }

    /// Whether block `layer` is adapted.
    pub fn covers(&self, layer: usize) -> bool {
        self.layers.as_ref().is_none_or(|ls| ls.contains(&layer))
    }

    /// Parses the `--lora` value: comma-separated `key=value` with keys r, alpha, dropout,
    /// targets, layers, rslora; a bare word continues the list of the key before it
    /// (`targets=q,v,layers=0,1`). Omitted keys keep [`LoraConfig::default`].
    pub fn parse(spec: &str) -> Result<LoraConfig> {
        let mut cfg = LoraConfig::default();
        let mut entries: Vec<(String, Vec<String>)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match (part.split_once('='), entries.last_mut()) {
                (Some((k, v)), _) => entries.push((k.trim().into(), vec![v.trim().into()])),
                (None, Some((_, values))) => values.push(part.into()),
                (None, None) => {
                    return Err(Error::config(
                        format!("--lora {spec}: `{part}` is not key=value"),
                        "e.g. --lora r=16,alpha=32,dropout=0.05,targets=all",
                    ))
                }
            }
        }
        for (key, values) in entries {
            cfg.set(&key, &values).map_err(Invalid::in_flag)?;
        }
        cfg.check().map_err(Invalid::in_flag)?;
        Ok(cfg)
    }

    /// Sets one `--lora` key.
    fn set(&mut self, key: &str, values: &[String]) -> std::result::Result<(), Invalid> {
        let single = |field| match values {
            [v] => Ok(v.as_str()),
            _ => Err(Invalid::new(
                field,
                format!("takes one value, got {values:?}"),
                "e.g. r=16",
            )),
        };
        let number = |field, v: &str| {
            v.parse::<f64>()
                .map_err(|_| Invalid::new(field, format!("`{v}` is not a number"), "a number"))
        };
        match key {
            "r" => {
                let v = single("r")?;
                self.r = v.parse().map_err(|_| {
                    Invalid::new("r", format!("`{v}` is not a whole number"), "r >= 1")
                })?;
            }
            "alpha" => self.alpha = number("lora_alpha", single("lora_alpha")?)? as f32,
            "dropout" => self.dropout = number("lora_dropout", single("lora_dropout")?)? as f32,
            "rslora" => {
                self.rslora = match single("use_rslora")? {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    v => {
                        return Err(Invalid::new(
                            "use_rslora",
                            format!("`{v}`"),
                            "true or false",
                        ))
                    }
                }
            }
            "targets" => self.targets = parse_targets(values)?,
            "layers" => {
                let layers = values.iter().map(|v| {
                    v.parse().map_err(|_| {
                        Invalid::new(
                            "layers_to_transform",
                            format!("`{v}` is not a block index"),
                            "block indices from 0",
                        )
                    })
                });
                self.layers = Some(layers.collect::<std::result::Result<_, _>>()?);
            }
            other => {
                return Err(Invalid::new(
                    "",
                    format!("unknown key `{other}`"),
                    "keys r, alpha, dropout, targets, layers, rslora",
                ))
            }
        }
        Ok(())
    }

    /// The checks that need no model: r >= 1, alpha > 0, dropout in [0, 1), targets given.
    pub fn check(&self) -> std::result::Result<(), Invalid> {
        if self.r == 0 {
            return Err(Invalid::new(
                "r",
                "r = 0 gives no adapter",
                "r >= 1, at most the smaller side of every adapted matrix",
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Invalid::new(
                "lora_alpha",
                format!("{} is not > 0", self.alpha),
                "alpha > 0 (the update is scaled by alpha / r)",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Invalid::new(
                "lora_dropout",
                format!("{} is outside [0, 1)", self.dropout),
                "a probability in [0, 1)",
            ));
        }
        if self.targets.is_empty() {
            return Err(Invalid::new(
                "target_modules",
                "no target module",
                TARGETS_HELP,
            ));
        }
        Ok(())
    }

    /// The checks against a model of `config`: every adapted block exists, r fits every
    /// adapted matrix, every trainable token row exists.
    pub fn check_against(&self, config: &LlamaConfig) -> std::result::Result<(), Invalid> {
        self.check()?;
        let n = config.num_hidden_layers;
        if let Some(&bad) = self.layers.iter().flatten().find(|&&l| l >= n) {
            return Err(Invalid::new(
                "layers_to_transform",
                format!("block {bad} does not exist"),
                format!("blocks 0..{n} of this model"),
            ));
        }
        for &p in &self.targets {
            let (out, fan_in) = p.shape(config);
            let smaller = out.min(fan_in);
            if self.r > smaller {
                return Err(Invalid::new(
                    "r",
                    format!(
                        "r = {} exceeds {smaller}, the smaller side of {} ({out}, {fan_in})",
                        self.r,
                        p.hf_name()
                    ),
                    format!("r <= {smaller} for this model"),
                ));
            }
        }
        self.check_tokens(config)
    }

    /// Trainable token rows: ids in the vocabulary, distinct, and a tied head without its own.
    fn check_tokens(&self, config: &LlamaConfig) -> std::result::Result<(), Invalid> {
        let field = "trainable_token_indices";
        let (vocab, t) = (config.vocab_size, &self.tokens);
        if config.tie_word_embeddings && !t.head.is_empty() && t.head != t.embed {
            return Err(Invalid::new(
                field,
                "lm_head rows of a tied model differ from embed_tokens",
                "a tied head shares the embedding's rows: list embed_tokens only",
            ));
        }
        for list in [&t.embed, &t.head] {
            if let Some(&bad) = list.iter().find(|&&i| i >= vocab) {
                return Err(Invalid::new(
                    field,
                    format!("token {bad} is not in the vocabulary"),
                    format!("ids below {vocab}"),
                ));
            }
            let mut sorted = list.clone();
            sorted.sort_unstable();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                return Err(Invalid::new(
                    field,
                    "a token is listed twice",
                    "distinct token ids",
                ));
            }
        }
        Ok(())
    }
}

/// `all` or a list of projection names (short or HF), deduplicated into block order.
fn parse_targets(values: &[String]) -> std::result::Result<Vec<Proj>, Invalid> {
    if values.iter().any(|v| v == "all" || v == "all-linear") {
        return Ok(Proj::ALL.to_vec());
    }
    let mut out = Vec::new();
    for v in values {
        let p = Proj::parse(v).ok_or_else(|| {
            Invalid::new(
                "target_modules",
                format!("unknown target `{v}`"),
                TARGETS_HELP,
            )
        })?;
        out.push(p);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_parses_lists_and_keeps_defaults() {
        let c = LoraConfig::parse("r=16,alpha=32,dropout=0.1,targets=q,v,down,layers=0,2").unwrap();
        assert_eq!((c.r, c.alpha, c.dropout), (16, 32.0, 0.1));
        assert_eq!(c.targets, vec![Proj::Q, Proj::V, Proj::Down]);
        assert_eq!(c.layers, Some(vec![0, 2]));
        assert_eq!(c.scale(), 2.0);
        let d = LoraConfig::parse("r=4").unwrap();
        assert_eq!(d.targets, Proj::ALL.to_vec());
        assert_eq!((d.alpha, d.dropout, d.layers.clone()), (32.0, 0.05, None));
        let all = LoraConfig::parse("targets=all,rslora=true,r=16").unwrap();
        assert_eq!(all.targets.len(), 7);
        assert_eq!(all.scale(), 32.0 / 4.0);
    }

    #[test]
    fn bad_flags_name_the_key_and_what_is_supported() {
        for (spec, key) in [
            ("r=0", "--lora r"),
            ("targets=q,lm_head", "--lora targets"),
            ("dropout=1", "--lora dropout"),
            ("alpha=-1", "--lora alpha"),
            ("rank=4", "unknown key"),
            ("q", "not key=value"),
            ("layers=x", "--lora layers"),
            ("r=2.5", "--lora r"),
            ("rslora=yes", "--lora rslora"),
        ] {
            let e = LoraConfig::parse(spec).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("hint"), "{spec}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
    }
}
