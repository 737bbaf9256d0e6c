//! RoPE frequency scaling: how a config stretches the rotary frequencies for long contexts.
//!
//! Plain RoPE rotates pair i of a head by `pos * inv_freq[i]`, `inv_freq[i] = theta^(-2i/D)`
//! ([`default_inv_freq`]). A scaled variant changes only those D/2 numbers, once, from the
//! config; the rotation op, its backward, the KV cache and the logit lens all consume the result
//! of [`RopeScaling::inv_freq`], so every path sees the same frequencies.
//!
//! - `linear`: every frequency divided by `factor` (positions are interpolated: position p
//!   behaves like p / factor).
//! - `llama3` (Llama 3.1 / 3.2): with wavelength `w = 2 pi / inv_freq` and the pre-training
//!   context `L` (`original_max_position_embeddings`), high frequencies (`w < L / high_freq_factor`)
//!   are kept, low frequencies (`w > L / low_freq_factor`) are divided by `factor`, and the band in
//!   between blends the two: `s = (L / w - low) / (high - low)`,
//!   `inv = (1 - s) * inv / factor + s * inv`.
//!
//! `dynamic` (NTK) is refused: it re-derives the frequencies from the length of each input, which
//! a KV cache that grows token by token cannot follow consistently. `yarn`, `longrope` and any
//! other type are refused as well, with an error naming the file, the field and the type.
//!
//! Both config spellings reach this file as one JSON object: transformers 4's `rope_scaling`
//! (theta at the top level) and transformers 5's `rope_parameters` (theta inside).

use crate::autograd::default_inv_freq;
use crate::error::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The `rope_type`s implemented here.
pub const SUPPORTED_ROPE_TYPES: [&str; 3] = ["default", "linear", "llama3"];

/// `x` as the f64 of its shortest decimal form, for config.json: 1e-6f32 is written `1e-06`
/// rather than `9.999999974752427e-7`, the number a person (and transformers) wrote.
pub fn shortest_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// How the rotary inverse frequencies are derived from `rope_theta`.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// `rope_type: default`: plain RoPE.
    None,
    /// `rope_type: linear`.
    Linear { factor: f32 },
    /// `rope_type: llama3` (Llama 3.1 / 3.2).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
}

impl RopeScaling {
    /// The `rope_type` string of this variant.
    pub fn rope_type(&self) -> &'static str {
        match self {
            RopeScaling::None => "default",
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Llama3 { .. } => "llama3",
        }
    }

    /// The D/2 inverse frequencies of a head of width `head_dim`, computed in f32 in the order of
    /// transformers' `modeling_rope_utils` (so that angles match PyTorch's to the last bits).
    pub fn inv_freq(&self, head_dim: usize, theta: f32) -> Vec<f32> {
        let plain = default_inv_freq(head_dim, theta);
        match *self {
            RopeScaling::None => plain,
            RopeScaling::Linear { factor } => plain.iter().map(|&f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: context,
            } => {
                let context = context as f32;
                let (low_wavelen, high_wavelen) = (context / low, context / high);
                let two_pi = 2.0 * std::f32::consts::PI;
                plain
                    .iter()
                    .map(|&f| {
                        let wavelen = (1.0 / f) * two_pi;
                        if wavelen < high_wavelen {
                            f // high frequency: kept
                        } else if wavelen > low_wavelen {
                            f / factor // low frequency: interpolated
                        } else {
                            let s = ((1.0 / wavelen) * context - low) / (high - low);
                            (1.0 - s) * f / factor + s * f
                        }
                    })
                    .collect()
            }
        }
    }

    /// `rope_type` and this variant's parameters as a JSON object (no `rope_theta`).
    pub fn to_json(&self) -> Map<String, Value> {
        let value = match *self {
            RopeScaling::None => json!({"rope_type": "default"}),
            RopeScaling::Linear { factor } => {
                json!({"rope_type": "linear", "factor": shortest_f64(factor)})
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => json!({
                "rope_type": "llama3",
                "factor": shortest_f64(factor),
                "low_freq_factor": shortest_f64(low_freq_factor),
                "high_freq_factor": shortest_f64(high_freq_factor),
                "original_max_position_embeddings": original_max_position_embeddings,
            }),
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(), // unreachable: every arm above is an object literal
        }
    }

    /// Reads one rope object (`rope_scaling` or `rope_parameters`, named by `field`) of the
    /// config file `origin`. The type is `rope_type`, or the older `type`; absent = default.
    pub fn from_json(
        params: &Map<String, Value>,
        field: &str,
        origin: &Path,
    ) -> Result<RopeScaling> {
        let r = RopeFields {
            params,
            field,
            origin,
        };
        let kind = match params.get("rope_type").or_else(|| params.get("type")) {
            None | Some(Value::Null) => "default",
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(r.error("rope_type", format!("expected a string, found {other}")))
            }
        };
        if let Some(p) = params.get("partial_rotary_factor").filter(|v| !v.is_null()) {
            if p.as_f64() != Some(1.0) {
                return Err(r.error(
                    "partial_rotary_factor",
                    format!("{p}: rotating only part of each head is not implemented"),
                ));
            }
        }
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: r.factor("factor")?,
            },
            "llama3" => {
                let scaling = RopeScaling::Llama3 {
                    factor: r.factor("factor")?,
                    low_freq_factor: r.factor("low_freq_factor")?,
                    high_freq_factor: r.factor("high_freq_factor")?,
                    original_max_position_embeddings: r
                        .positive_usize("original_max_position_embeddings")?,
                };
                if let RopeScaling::Llama3 {
                    low_freq_factor: l,
                    high_freq_factor: h,
                    ..
                } = scaling
                {
                    if h <= l {
                        return Err(r.error(
                            "high_freq_factor",
                            format!("{h} must exceed low_freq_factor {l} (the blend divides by their difference)"),
                        ));
                    }
                }
                scaling
            }
            other => {
                return Err(Error::format(
                    origin,
                    format!(
                        "field `{field}`: rope_type `{other}` is not implemented (supported: {})",
                        SUPPORTED_ROPE_TYPES.join(", ")
                    ),
                ))
            }
        };
        Ok(scaling)
    }
}

/// Typed access to the fields of one rope object, errors naming `file: field.key`.
struct RopeFields<'a> {
    params: &'a Map<String, Value>,
    field: &'a str,
    origin: &'a Path,
}

impl RopeFields<'_> {
    fn error(&self, key: &str, msg: impl std::fmt::Display) -> Error {
        Error::format(self.origin, format!("field `{}.{key}`: {msg}", self.field))
    }

    fn required(&self, key: &str) -> Result<&Value> {
        let kind = self
            .params
            .get("rope_type")
            .or_else(|| self.params.get("type"));
        self.params
            .get(key)
            .filter(|v| !v.is_null())
            .ok_or_else(|| {
                self.error(
                    key,
                    format!(
                        "missing (required by rope_type {})",
                        kind.and_then(Value::as_str).unwrap_or("default")
                    ),
                )
            })
    }

    /// A positive finite number.
    fn factor(&self, key: &str) -> Result<f32> {
        let v = self.required(key)?;
        match v.as_f64() {
            Some(x) if x.is_finite() && x > 0.0 => Ok(x as f32),
            _ => Err(self.error(key, format!("expected a positive number, found {v}"))),
        }
    }

    fn positive_usize(&self, key: &str) -> Result<usize> {
        let v = self.required(key)?;
        match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(self.error(key, format!("expected a positive integer, found {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<RopeScaling> {
        RopeScaling::from_json(
            v.as_object().unwrap(),
            "rope_scaling",
            Path::new("cfg.json"),
        )
    }

    #[test]
    fn linear_divides_every_plain_frequency() {
        let (d, theta) = (16, 10000.0f32);
        let got = RopeScaling::Linear { factor: 4.0 }.inv_freq(d, theta);
        for (i, &g) in got.iter().enumerate() {
            let want = theta.powf(-((2 * i) as f32) / d as f32) / 4.0;
            assert!((g - want).abs() <= 1e-6 * want, "pair {i}: {g} vs {want}");
        }
    }

    /// Llama 3.1's published rule, evaluated in f64 band by band: short wavelengths unchanged,
    /// long ones divided by the factor, the band between a linear blend in L / wavelength.
    #[test]
    fn llama3_keeps_high_divides_low_and_blends_between() {
        let (d, theta) = (128, 500000.0f64);
        let (factor, low, high, context) = (8.0f64, 1.0f64, 4.0f64, 8192.0f64);
        let scaling = RopeScaling::Llama3 {
            factor: factor as f32,
            low_freq_factor: low as f32,
            high_freq_factor: high as f32,
            original_max_position_embeddings: context as usize,
        };
        let got = scaling.inv_freq(d, theta as f32);
        let mut bands = [0usize; 3];
        for (i, &g) in got.iter().enumerate() {
            let f = theta.powf(-((2 * i) as f64) / d as f64);
            let ratio = context * f / (2.0 * std::f64::consts::PI); // L / wavelength
            let want = if ratio > high {
                bands[0] += 1;
                f
            } else if ratio < low {
                bands[2] += 1;
                f / factor
            } else {
                bands[1] += 1;
                let s = (ratio - low) / (high - low);
                (1.0 - s) * f / factor + s * f
            };
            assert!(
                (g as f64 - want).abs() <= 1e-5 * want,
                "pair {i}: {g} vs {want}"
            );
        }
        assert!(
            bands.iter().all(|&n| n > 0),
            "every band exercised: {bands:?}"
        );
    }

    #[test]
    fn parses_both_type_keys_and_refuses_the_rest() {
        let l3 = parse(
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
        )
        .unwrap();
        assert_eq!(l3.rope_type(), "llama3");
        assert_eq!(parse(json!(l3.to_json())).unwrap(), l3);
        assert_eq!(
            parse(json!({"type": "linear", "factor": 2})).unwrap(),
            RopeScaling::Linear { factor: 2.0 }
        );
        assert_eq!(parse(json!({})).unwrap(), RopeScaling::None);
        for kind in ["yarn", "longrope", "dynamic", "su"] {
            let e = parse(json!({"rope_type": kind, "factor": 4.0}))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("cfg.json") && e.contains("rope_scaling") && e.contains(kind),
                "{e}"
            );
            assert!(e.contains("default, linear, llama3"), "{e}");
        }
        let e = parse(
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0}),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("rope_scaling.original_max_position_embeddings"),
            "{e}"
        );
        let e = parse(json!({"rope_type": "linear", "factor": -1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("factor"), "{e}");
    }
}
