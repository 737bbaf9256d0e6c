//! `config.json` of a Hugging Face Llama-family checkpoint, read into [`LlamaConfig`].
//!
//! Supported `model_type`s: `llama` (Llama 2/3/3.1/3.2, SmolLM/SmolLM2, TinyLlama), `qwen2` (Qwen2,
//! Qwen2.5), `qwen3` and `mistral`. They share one block (RMSNorm, RoPE, GQA attention, SwiGLU
//! MLP); what differs is captured by a few fields (biases, head_dim, tied head, rope theta and
//! scaling) and, for qwen3, a per-head RMSNorm on queries and keys ([`LlamaConfig::qk_norm`]).
//! Options that would change the maths in ways this crate does not implement (rope types other
//! than default / linear / llama3, activations other than SiLU, MLP biases, sliding windows
//! shorter than the input) are refused with an error naming the field, instead of producing
//! silently wrong numbers.
//!
//! Both spellings of the rope settings are accepted: transformers 4's `rope_scaling` object with a
//! top-level `rope_theta`, and transformers 5's `rope_parameters: {rope_type, rope_theta, ...}`
//! (see `rope_scaling.rs`). `to_json` writes both, with the same values.

use super::rope_scaling::{shortest_f64, RopeScaling};
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The `model_type`s this crate implements.
pub const SUPPORTED_MODEL_TYPES: [&str; 4] = ["llama", "qwen2", "qwen3", "mistral"];

/// Architecture hyper-parameters of a Llama-family decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `llama`, `qwen2`, `qwen3` or `mistral`; decides the architecture name written back by
    /// `to_json` and, for qwen3, the per-head q/k norms.
    pub model_type: String,
    /// Width of the residual stream (D).
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer (F).
    pub intermediate_size: usize,
    /// Number of decoder blocks (L).
    pub num_hidden_layers: usize,
    /// Query heads (Hq).
    pub num_attention_heads: usize,
    /// Key/value heads (Hkv); Hq must be a multiple of it (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Per-head width; may differ from hidden_size / num_attention_heads (e.g. Gemma-like configs).
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// Frequency scaling of RoPE (`llama3` for Llama 3.1 / 3.2, `linear`, or none).
    pub rope_scaling: RopeScaling,
    pub vocab_size: usize,
    /// The LM head reuses the embedding matrix (no `lm_head.weight` in the checkpoint).
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases (always for qwen2; `attention_bias` for llama/qwen3/mistral).
    pub qkv_bias: bool,
    /// The output projection has a bias (llama with `attention_bias: true`; never for qwen2).
    pub o_bias: bool,
    pub bos_token_id: Option<u32>,
    /// The first end-of-sequence id (Llama 3 instruct lists several: see `eos_token_ids`).
    pub eos_token_id: Option<u32>,
    /// Every end-of-sequence id of the config (empty when none is given).
    pub eos_token_ids: Vec<u32>,
    pub max_position_embeddings: usize,
    /// Attention window; inputs longer than it are refused by the forward (we only implement
    /// full causal attention, which equals windowed attention while seq <= window).
    pub sliding_window: Option<usize>,
    /// Qwen2/Qwen3: layers from this index on use the window (kept so `to_json` gives
    /// transformers the same layer layout); None for other families or when not given.
    pub max_window_layers: Option<usize>,
}

impl LlamaConfig {
    /// Reads and validates `path` (a `config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<LlamaConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("not valid JSON: {e}")))?;
        LlamaConfig::from_json(&value, path)
    }

    /// Reads a parsed config; `origin` names the file in error messages.
    pub fn from_json(value: &Value, origin: impl AsRef<Path>) -> Result<LlamaConfig> {
        let r = FieldReader {
            obj: value
                .as_object()
                .ok_or_else(|| Error::format(&origin, "config must be a JSON object"))?,
            origin: origin.as_ref(),
        };
        let model_type = r.required_str("model_type")?;
        if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(r.error(
                "model_type",
                format!(
                    "`{model_type}` is not supported (supported: {})",
                    SUPPORTED_MODEL_TYPES.join(", ")
                ),
            ));
        }
        r.refuse_unsupported_options()?;
        let hidden_size = r.required_usize("hidden_size")?;
        let num_attention_heads = r.required_usize("num_attention_heads")?;
        let (qkv_bias, o_bias) = match model_type.as_str() {
            "qwen2" => (true, false),
            // qwen3 (like llama) has one `attention_bias` flag, default false.
            _ => {
                let b = r.optional_bool("attention_bias")?.unwrap_or(false);
                (b, b)
            }
        };
        let eos_token_ids = r.token_ids("eos_token_id")?;
        let (rope_theta, rope_scaling) = r.rope()?;
        let cfg = LlamaConfig {
            hidden_size,
            intermediate_size: r.required_usize("intermediate_size")?,
            num_hidden_layers: r.required_usize("num_hidden_layers")?,
            num_attention_heads,
            // HF default: no grouping (one KV head per query head).
            num_key_value_heads: r
                .optional_usize("num_key_value_heads")?
                .unwrap_or(num_attention_heads),
            head_dim: match r.optional_usize("head_dim")? {
                Some(d) => d,
                // Qwen3Config's default; the other families derive it from the widths.
                None if model_type == "qwen3" => 128,
                None if num_attention_heads > 0 => hidden_size / num_attention_heads,
                None => 0, // rejected by validate below
            },
            rms_norm_eps: r.required_f32("rms_norm_eps")?,
            rope_theta,
            rope_scaling,
            vocab_size: r.required_usize("vocab_size")?,
            // LlamaConfig, Qwen2Config and MistralConfig all default to an untied head.
            tie_word_embeddings: r.optional_bool("tie_word_embeddings")?.unwrap_or(false),
            qkv_bias,
            o_bias,
            bos_token_id: r.token_ids("bos_token_id")?.first().copied(),
            eos_token_id: eos_token_ids.first().copied(),
            eos_token_ids,
            max_position_embeddings: r
                .optional_usize("max_position_embeddings")?
                .unwrap_or(default_max_positions(&model_type)),
            sliding_window: r.sliding_window(&model_type)?,
            max_window_layers: match model_type.as_str() {
                "qwen2" | "qwen3" => r.optional_usize("max_window_layers")?,
                _ => None,
            },
            model_type,
        };
        cfg.validate(origin.as_ref())?;
        Ok(cfg)
    }

    /// Checks the relations between fields (heads divide, sizes non-zero).
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(Error::format(
                    origin,
                    format!("field `{field}` must be > 0"),
                ));
            }
        }
        self.check_weight_sizes(origin)?;
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(Error::format(
                origin,
                format!(
                    "field `num_key_value_heads`: {} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::format(
                origin,
                format!(
                    "field `head_dim`: RoPE rotates pairs, {} is odd",
                    self.head_dim
                ),
            ));
        }
        let biases_fit = match self.model_type.as_str() {
            "qwen2" => self.qkv_bias && !self.o_bias,
            _ => self.qkv_bias == self.o_bias, // one `attention_bias` flag covers q, k, v and o
        };
        if !biases_fit {
            return Err(Error::format(
                origin,
                format!(
                    "biases q/k/v {} and o {} cannot be expressed by model_type `{}` \
                     (qwen2: q/k/v only; llama/qwen3/mistral: all four or none)",
                    self.qkv_bias, self.o_bias, self.model_type
                ),
            ));
        }
        let positive = |x: f32| x.is_finite() && x > 0.0;
        if !positive(self.rms_norm_eps) || !positive(self.rope_theta) {
            return Err(Error::format(
                origin,
                "fields `rms_norm_eps` and `rope_theta` must be positive",
            ));
        }
        Ok(())
    }

    /// Every weight matrix's element count, computed without wrapping and bounded, so that
    /// `q_dim`, `kv_dim` and the shapes of `expected_tensors` are safe to compute afterwards (a
    /// GGUF with head_count_kv = 2^63 + 2 used to pass the shape checks after wrap-around).
    fn check_weight_sizes(&self, origin: &Path) -> Result<()> {
        let d = self.hidden_size;
        let shapes = [
            (
                "num_attention_heads x head_dim x hidden_size",
                [self.num_attention_heads, self.head_dim, d],
            ),
            (
                "num_key_value_heads x head_dim x hidden_size",
                [self.num_key_value_heads, self.head_dim, d],
            ),
            (
                "intermediate_size x hidden_size",
                [self.intermediate_size, 1, d],
            ),
            ("vocab_size x hidden_size", [self.vocab_size, 1, d]),
        ];
        for (what, dims) in shapes {
            match checked_elements(&dims) {
                Some(n) if n <= MAX_TENSOR_ELEMENTS => {}
                _ => {
                    return Err(Error::format(
                        origin,
                        format!(
                        "{what} = {} x {} x {} is beyond {MAX_TENSOR_ELEMENTS} elements per weight",
                        dims[0], dims[1], dims[2]
                    ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Width of all query heads together (Hq * head_dim).
    pub fn q_dim(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    /// Width of all key (or value) heads together (Hkv * head_dim).
    pub fn kv_dim(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }

    /// Qwen3: queries and keys pass a per-head RMSNorm (`q_norm`, `k_norm`) before RoPE.
    pub fn qk_norm(&self) -> bool {
        self.model_type == "qwen3"
    }

    /// The rotary inverse frequencies (head_dim / 2 of them) every RoPE of this model uses.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        self.rope_scaling.inv_freq(self.head_dim, self.rope_theta)
    }

    /// The HF class name written to `architectures`.
    pub fn architecture(&self) -> &'static str {
        match self.model_type.as_str() {
            "qwen2" => "Qwen2ForCausalLM",
            "qwen3" => "Qwen3ForCausalLM",
            "mistral" => "MistralForCausalLM",
            _ => "LlamaForCausalLM",
        }
    }

    /// A `config.json` that transformers (4.x and 5.x) loads into the same architecture.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        let mut put = |k: &str, v: Value| {
            obj.insert(k.to_string(), v);
        };
        put("architectures", json!([self.architecture()]));
        put("model_type", json!(self.model_type));
        put("hidden_size", json!(self.hidden_size));
        put("intermediate_size", json!(self.intermediate_size));
        put("num_hidden_layers", json!(self.num_hidden_layers));
        put("num_attention_heads", json!(self.num_attention_heads));
        put("num_key_value_heads", json!(self.num_key_value_heads));
        put("head_dim", json!(self.head_dim));
        put("hidden_act", json!("silu"));
        put("rms_norm_eps", json!(shortest_f64(self.rms_norm_eps)));
        // Both spellings, so that transformers 4 (rope_theta + rope_scaling) and 5
        // (rope_parameters; a rope_scaling present takes precedence there) read the same values.
        put("rope_theta", json!(shortest_f64(self.rope_theta)));
        let scaling = self.rope_scaling.to_json();
        if self.rope_scaling != RopeScaling::None {
            put("rope_scaling", Value::Object(scaling.clone()));
        }
        let mut parameters = scaling;
        parameters.insert("rope_theta".into(), json!(shortest_f64(self.rope_theta)));
        put("rope_parameters", Value::Object(parameters));
        put("vocab_size", json!(self.vocab_size));
        put("tie_word_embeddings", json!(self.tie_word_embeddings));
        put(
            "max_position_embeddings",
            json!(self.max_position_embeddings),
        );
        if self.model_type != "qwen2" {
            put("attention_bias", json!(self.qkv_bias));
        }
        if self.model_type == "llama" || self.model_type == "mistral" {
            put("mlp_bias", json!(false));
        }
        if self.model_type == "mistral" {
            put("sliding_window", json!(self.sliding_window));
        }
        if self.model_type == "qwen2" || self.model_type == "qwen3" {
            // Qwen reads the window only when `use_sliding_window` is set.
            put("sliding_window", json!(self.sliding_window));
            put("use_sliding_window", json!(self.sliding_window.is_some()));
            if let Some(n) = self.max_window_layers {
                put("max_window_layers", json!(n));
            }
        }
        put("bos_token_id", json!(self.bos_token_id));
        put(
            "eos_token_id",
            match self.eos_token_ids.as_slice() {
                [one] => json!(one),
                [] => Value::Null,
                many => json!(many),
            },
        );
        put("dtype", json!("float32"));
        put("torch_dtype", json!("float32"));
        Value::Object(obj)
    }
}

fn default_max_positions(model_type: &str) -> usize {
    match model_type {
        "qwen2" | "qwen3" => 32768,
        "mistral" => 131072,
        _ => 2048,
    }
}

/// Typed access to the fields of one config object, with errors naming file and field.
struct FieldReader<'a> {
    obj: &'a Map<String, Value>,
    origin: &'a Path,
}

impl FieldReader<'_> {
    fn error(&self, field: &str, msg: impl std::fmt::Display) -> Error {
        Error::format(self.origin, format!("field `{field}`: {msg}"))
    }

    /// The field's value, treating JSON null as absent (HF writes `"head_dim": null`).
    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn required<'b>(&'b self, field: &str) -> Result<&'b Value> {
        self.get(field)
            .ok_or_else(|| self.error(field, "missing (required for a Llama-family config)"))
    }

    fn required_str(&self, field: &str) -> Result<String> {
        let v = self.required(field)?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.error(field, format!("expected a string, found {v}")))
    }

    fn as_usize(&self, field: &str, v: &Value) -> Result<usize> {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.error(field, format!("expected a non-negative integer, found {v}")))
    }

    fn required_usize(&self, field: &str) -> Result<usize> {
        let v = self.required(field)?;
        self.as_usize(field, v)
    }

    fn optional_usize(&self, field: &str) -> Result<Option<usize>> {
        self.get(field).map(|v| self.as_usize(field, v)).transpose()
    }

    fn as_f32(&self, field: &str, v: &Value) -> Result<f32> {
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| self.error(field, format!("expected a number, found {v}")))
    }

    fn required_f32(&self, field: &str) -> Result<f32> {
        let v = self.required(field)?;
        self.as_f32(field, v)
    }

    fn optional_bool(&self, field: &str) -> Result<Option<bool>> {
        self.get(field)
            .map(|v| {
                v.as_bool()
                    .ok_or_else(|| self.error(field, format!("expected true or false, found {v}")))
            })
            .transpose()
    }

    /// A token id field: absent, an integer, or a list of integers.
    fn token_ids(&self, field: &str) -> Result<Vec<u32>> {
        let to_id = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.error(field, format!("expected a token id, found {v}")))
        };
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(to_id).collect(),
            Some(v) => Ok(vec![to_id(v)?]),
        }
    }

    /// (rope_theta, scaling) from `rope_scaling` (transformers 4) and/or `rope_parameters`
    /// (transformers 5). When both are present they must describe the same scaling; theta is
    /// read inside either object first, then at the top level, else 10000 (the HF default).
    fn rope(&self) -> Result<(f32, RopeScaling)> {
        let scaling_obj = self.optional_object("rope_scaling")?;
        let params_obj = self.optional_object("rope_parameters")?;
        if let Some(p) = params_obj {
            if p.values().any(Value::is_object) {
                return Err(self.error(
                    "rope_parameters",
                    "per-layer-type rope parameters (nested objects) are not implemented",
                ));
            }
        }
        let parse = |obj: Option<&Map<String, Value>>, field: &str| {
            obj.map(|o| RopeScaling::from_json(o, field, self.origin))
                .transpose()
        };
        let scaling = match (
            parse(scaling_obj, "rope_scaling")?,
            parse(params_obj, "rope_parameters")?,
        ) {
            (Some(a), Some(b)) if a != b => {
                return Err(self.error(
                    "rope_scaling",
                    format!("{a:?} disagrees with rope_parameters {b:?} (keep one of the two)"),
                ))
            }
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => RopeScaling::None,
        };
        if let Some(p) = self.get("partial_rotary_factor") {
            if p.as_f64() != Some(1.0) {
                return Err(self.error(
                    "partial_rotary_factor",
                    format!("{p}: partial RoPE is not implemented"),
                ));
            }
        }
        let inner_theta = [
            ("rope_scaling", scaling_obj),
            ("rope_parameters", params_obj),
        ]
        .into_iter()
        .find_map(|(field, obj)| Some((field, obj?.get("rope_theta").filter(|v| !v.is_null())?)));
        let theta = match inner_theta {
            Some((field, v)) => self.as_f32(&format!("{field}.rope_theta"), v)?,
            None => match self.get("rope_theta") {
                Some(v) => self.as_f32("rope_theta", v)?,
                None => 10000.0,
            },
        };
        Ok((theta, scaling))
    }

    fn optional_object(&self, field: &str) -> Result<Option<&Map<String, Value>>> {
        self.get(field)
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| self.error(field, format!("expected an object, found {v}")))
            })
            .transpose()
    }

    /// The attention window when one is switched on.
    fn sliding_window(&self, model_type: &str) -> Result<Option<usize>> {
        let window = self.optional_usize("sliding_window")?;
        let by_layer_types = match self.get("layer_types") {
            Some(Value::Array(kinds)) => kinds
                .iter()
                .any(|k| k.as_str() == Some("sliding_attention")),
            _ => false,
        };
        let on = match model_type {
            // Qwen2 ships a `sliding_window` value but only uses it when this flag is set.
            "qwen2" | "qwen3" => {
                self.optional_bool("use_sliding_window")?.unwrap_or(false) || by_layer_types
            }
            "mistral" => window.is_some() || by_layer_types,
            // transformers' LlamaConfig has no window: a stray `sliding_window` key changes nothing
            // there, so it must change nothing here (found by the fuzzer: it also broke to_json).
            _ => false,
        };
        if on && window.is_none() {
            return Err(self.error(
                "sliding_window",
                "sliding-window attention is switched on but no window size is given",
            ));
        }
        Ok(if on { window } else { None })
    }

    /// Options that change the maths in ways this crate does not implement.
    fn refuse_unsupported_options(&self) -> Result<()> {
        if let Some(act) = self.get("hidden_act") {
            if act.as_str() != Some("silu") {
                return Err(self.error(
                    "hidden_act",
                    format!("only `silu` (SwiGLU) is implemented, found {act}"),
                ));
            }
        }
        if self.optional_bool("mlp_bias")? == Some(true) {
            return Err(self.error("mlp_bias", "MLP biases are not implemented"));
        }
        Ok(())
    }
}

/// The most elements one weight matrix may have (2^36: 256 GiB in f32, far above any model
/// this crate can train, far below where products of file values wrap).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 36;

/// The product of sizes read from a file, or `None` where it would overflow: the one place
/// size arithmetic on untrusted values is done.
pub fn checked_elements(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama_json() -> Value {
        json!({
            "model_type": "llama", "hidden_size": 64, "intermediate_size": 160,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 16, "rms_norm_eps": 1e-5, "vocab_size": 320,
            "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
            "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2
        })
    }

    fn err_of(v: Value) -> String {
        LlamaConfig::from_json(&v, "cfg.json")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_both_rope_spellings_and_defaults() {
        let c = LlamaConfig::from_json(&llama_json(), "cfg.json").unwrap();
        assert_eq!((c.q_dim(), c.kv_dim(), c.rope_theta), (64, 32, 10000.0));
        assert_eq!((c.bos_token_id, c.eos_token_id), (Some(1), Some(2)));
        let mut v = llama_json();
        let o = v.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.remove("head_dim");
        o.remove("num_key_value_heads");
        o.insert("rope_theta".into(), json!(500000.0));
        o.insert("eos_token_id".into(), json!([128001, 128009]));
        let c = LlamaConfig::from_json(&v, "cfg.json").unwrap();
        assert_eq!(
            (c.head_dim, c.num_key_value_heads, c.rope_theta),
            (16, 4, 500000.0)
        );
        assert_eq!((c.eos_token_id, c.eos_token_ids.len()), (Some(128001), 2));
    }

    #[test]
    fn to_json_round_trips() {
        let c = LlamaConfig::from_json(&llama_json(), "a").unwrap();
        assert_eq!(LlamaConfig::from_json(&c.to_json(), "b").unwrap(), c);
        let mut v = llama_json();
        v["model_type"] = json!("qwen2");
        let q = LlamaConfig::from_json(&v, "a").unwrap();
        assert!(q.qkv_bias && !q.o_bias);
        assert_eq!(LlamaConfig::from_json(&q.to_json(), "b").unwrap(), q);
    }

    #[test]
    fn refuses_what_it_cannot_compute() {
        let mut v = llama_json();
        v.as_object_mut().unwrap().remove("hidden_size");
        let e = err_of(v);
        assert!(e.contains("cfg.json") && e.contains("hidden_size"), "{e}");

        let mut v = llama_json();
        v["model_type"] = json!("gemma");
        let e = err_of(v);
        assert!(e.contains("gemma") && e.contains("qwen3"), "{e}");

        let mut v = llama_json();
        v["rope_scaling"] = json!({"rope_type": "longrope", "factor": 8.0});
        let e = err_of(v);
        assert!(
            e.contains("cfg.json") && e.contains("rope_scaling") && e.contains("longrope"),
            "{e}"
        );
        assert!(
            e.contains("llama3"),
            "the error lists what is supported: {e}"
        );

        let mut v = llama_json();
        v["rope_parameters"] = json!({"full_attention": {"rope_type": "default"}});
        assert!(err_of(v).contains("per-layer"));

        let mut v = llama_json();
        v["rope_parameters"]["rope_type"] = json!("yarn");
        assert!(err_of(v).contains("yarn"));

        let mut v = llama_json();
        v["num_key_value_heads"] = json!(3);
        assert!(err_of(v).contains("num_key_value_heads"));

        let mut v = llama_json();
        v["hidden_act"] = json!("gelu");
        assert!(err_of(v).contains("hidden_act"));
    }

    /// Sizes whose products overflow or exceed the bound are refused by validate, so q_dim and
    /// the weight shapes never wrap (fuzz finding: head counts of 2^63 + 2).
    #[test]
    fn overflowing_sizes_are_refused() {
        for (field, value) in [
            ("num_key_value_heads", json!(9_223_372_036_854_775_810u64)),
            ("num_attention_heads", json!(9_223_372_036_854_775_810u64)),
            ("vocab_size", json!(1u64 << 40)),
        ] {
            let mut v = llama_json();
            v[field] = value;
            let err = err_of(v);
            assert!(err.contains("elements per weight"), "{field}: {err}");
        }
    }

    #[test]
    fn sliding_window_only_when_switched_on() {
        let mut v = llama_json();
        v["model_type"] = json!("qwen2");
        v["sliding_window"] = json!(4096);
        v["use_sliding_window"] = json!(false);
        assert_eq!(
            LlamaConfig::from_json(&v, "a").unwrap().sliding_window,
            None
        );
        v["use_sliding_window"] = json!(true);
        assert_eq!(
            LlamaConfig::from_json(&v, "a").unwrap().sliding_window,
            Some(4096)
        );
    }

    fn llama31_scaling() -> Value {
        json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    }

    /// Llama 3.1 as transformers 4 writes it (rope_scaling + top-level theta) and as
    /// transformers 5 does (rope_parameters with theta inside) are the same config.
    #[test]
    fn llama3_scaling_reads_from_both_spellings() {
        let mut v4 = llama_json();
        let o = v4.as_object_mut().unwrap();
        o.remove("rope_parameters");
        o.insert("rope_theta".into(), json!(500000.0));
        o.insert("rope_scaling".into(), llama31_scaling());
        let c4 = LlamaConfig::from_json(&v4, "v4.json").unwrap();
        let mut v5 = llama_json();
        let mut params = llama31_scaling();
        params["rope_theta"] = json!(500000.0);
        v5["rope_parameters"] = params;
        let c5 = LlamaConfig::from_json(&v5, "v5.json").unwrap();
        assert_eq!(c4, c5);
        assert_eq!(c4.rope_theta, 500000.0);
        assert_eq!(
            c4.rope_scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            }
        );
        // Written back: both spellings, each readable on its own to the same config.
        let written = c4.to_json();
        assert_eq!(LlamaConfig::from_json(&written, "w").unwrap(), c4);
        for keep in ["rope_scaling", "rope_parameters"] {
            let mut only = written.clone();
            let o = only.as_object_mut().unwrap();
            o.remove(if keep == "rope_scaling" {
                "rope_parameters"
            } else {
                "rope_scaling"
            });
            if keep == "rope_parameters" {
                o.remove("rope_theta");
            }
            assert_eq!(
                LlamaConfig::from_json(&only, keep).unwrap(),
                c4,
                "{keep} alone"
            );
        }
        // Two spellings that disagree are refused rather than guessed between.
        let mut both = v5.clone();
        both["rope_scaling"] = json!({"rope_type": "linear", "factor": 2.0});
        let e = err_of(both);
        assert!(
            e.contains("rope_scaling") && e.contains("rope_parameters"),
            "{e}"
        );
    }

    #[test]
    fn qwen3_has_qk_norm_and_its_own_defaults() {
        let mut v = llama_json();
        v["model_type"] = json!("qwen3");
        v.as_object_mut().unwrap().remove("head_dim");
        let c = LlamaConfig::from_json(&v, "a").unwrap();
        assert!(c.qk_norm() && !c.qkv_bias && !c.o_bias);
        assert_eq!(c.head_dim, 128, "Qwen3Config's default head_dim");
        assert_eq!(c.architecture(), "Qwen3ForCausalLM");
        assert_eq!(LlamaConfig::from_json(&c.to_json(), "b").unwrap(), c);
        let plain = LlamaConfig::from_json(&llama_json(), "a").unwrap();
        assert!(!plain.qk_norm());
    }

    /// A `sliding_window` key in a llama config is ignored, as transformers' LlamaConfig
    /// ignores it, and the config survives to_json (fuzz finding: it used to switch a window on
    /// that to_json then dropped).
    #[test]
    fn llama_ignores_a_sliding_window_key() {
        let mut v = llama_json();
        v["sliding_window"] = json!(32);
        v["use_sliding_window"] = json!(true);
        let c = LlamaConfig::from_json(&v, "a").unwrap();
        assert_eq!(c.sliding_window, None);
        assert_eq!(LlamaConfig::from_json(&c.to_json(), "a").unwrap(), c);
    }

    /// A Qwen2 config with its window switched on keeps it through to_json (transformers reads
    /// the window only with use_sliding_window: true).
    #[test]
    fn qwen_sliding_window_survives_to_json() {
        for model_type in ["qwen2", "qwen3"] {
            let mut v = llama_json();
            v["model_type"] = json!(model_type);
            v["sliding_window"] = json!(4096);
            v["use_sliding_window"] = json!(true);
            v["max_window_layers"] = json!(2);
            let c = LlamaConfig::from_json(&v, "a").unwrap();
            assert_eq!(
                (c.sliding_window, c.max_window_layers),
                (Some(4096), Some(2))
            );
            let written = c.to_json();
            assert_eq!(written["use_sliding_window"], json!(true), "{model_type}");
            assert_eq!(LlamaConfig::from_json(&written, "b").unwrap(), c);
        }
    }
}
