//! The residual-quantised VAE (RQ-VAE) of LC-Rec / TIGER, on our autograd.
//!
//! ```text
//! x (N, in) -> encoder MLP -> z (N, e)
//! r_0 = z;  for level l:  c_l = argmin_c |r_l - C_l[c]|^2     (ties: the lowest index)
//!                         q_l = C_l[c_l]
//!                         q_st = r_l + sg(q_l - r_l)          (straight-through: value q_l,
//!                                                              gradient of r_l)
//!                         r_{l+1} = r_l - q_st
//! z_q = sum_l q_st -> decoder MLP -> recon (N, in)
//! loss = mse(recon, x) + quant_weight * mean_l [ mse(q_l, sg(r_l)) + beta * mse(sg(q_l), r_l) ]
//! ```
//! `sg` is stop-gradient: the value enters the tape as a constant. The MLPs are linear layers
//! with ReLU between them and none after the last. This is operation for operation the
//! computation of `make_more_fixtures.py` (fixture `rqvae/`), so codes match exactly and losses
//! and gradients to float rounding.
//!
//! Note what the straight-through residual implies for gradients: `r_{l+1} = r_l - (r_l + c)`
//! has derivative 0 with respect to `r_l`, so the commitment terms of levels >= 1 send no
//! gradient into the encoder (they do in value). PyTorch computes exactly that, and so do we.

use crate::autograd::{ParamId, Params, Tape, Var};
use crate::model::weights::{save_params, SafetensorsFile};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::path::Path;

/// Sizes and loss weights of an RQ-VAE.
#[derive(Debug, Clone, PartialEq)]
pub struct RqVaeConfig {
    /// Width of the item embeddings.
    pub in_dim: usize,
    /// Hidden widths of the encoder (the decoder mirrors them).
    pub hidden: Vec<usize>,
    /// Code (latent) dimension.
    pub e_dim: usize,
    /// Codebooks (one code per level in every SID).
    pub levels: usize,
    /// Codes per codebook.
    pub codes: usize,
    /// Weight of the commitment term.
    pub beta: f32,
    /// Weight of the quantisation loss against the reconstruction.
    pub quant_weight: f32,
}

impl RqVaeConfig {
    /// Errors on sizes of 0 (one line, naming the field).
    pub fn validate(&self) -> Result<()> {
        let fields = [
            ("in_dim", self.in_dim),
            ("e_dim (code dimension)", self.e_dim),
            ("levels", self.levels),
            ("codes (per level)", self.codes),
        ];
        for (name, v) in fields {
            if v == 0 {
                return Err(Error::config(
                    format!("RQ-VAE {name} is 0"),
                    "levels, codes, code dimension and the embedding width must be >= 1",
                ));
            }
        }
        if self.hidden.contains(&0) {
            return Err(Error::config(
                format!("RQ-VAE hidden widths {:?} contain 0", self.hidden),
                "every MLP width must be >= 1 (an empty list means one linear layer)",
            ));
        }
        if self.levels > super::tokens::MAX_LEVELS {
            return Err(Error::config(
                format!(
                    "RQ-VAE levels = {} (at most {})",
                    self.levels,
                    super::tokens::MAX_LEVELS
                ),
                "SID tokens are spelt <a_c> .. <z_c>: one letter per level",
            ));
        }
        Ok(())
    }
}

/// The model: config and parameters named as in the fixture (`encoder.layers.{i}.weight` (out,
/// in), `.bias`, `decoder.layers.{i}.*`, `codebooks.{l}` (codes, e_dim)).
#[derive(Clone)]
pub struct RqVae {
    pub config: RqVaeConfig,
    pub params: Params,
    encoder: Vec<[ParamId; 2]>,
    decoder: Vec<[ParamId; 2]>,
    codebooks: Vec<ParamId>,
}

/// Everything one forward produces (values on the tape).
pub struct RqVaeForward {
    /// Encoder output (N, e).
    pub z: Var,
    /// Sum of the straight-through codes (N, e).
    pub z_q: Var,
    /// Decoder output (N, in).
    pub recon: Var,
    /// (N, levels) row-major: the code of item n at level l is `codes[n * levels + l]`.
    pub codes: Vec<u32>,
    /// The residual each level quantised, r_l (N, e), for l in 0..levels.
    pub residuals: Vec<Var>,
    pub recon_loss: Var,
    pub quant_loss: Var,
    pub total: Var,
}

impl RqVae {
    /// A fresh model: linear layers initialised like PyTorch's `nn.Linear` (weight and bias
    /// uniform in +-1/sqrt(fan_in)), codebooks standard normal (k-means replaces them before
    /// training, see `train.rs`).
    pub fn new(config: RqVaeConfig, seed: u64) -> Result<RqVae> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let mut params = Params::new();
        let mut dims = vec![config.in_dim];
        dims.extend(&config.hidden);
        dims.push(config.e_dim);
        let encoder = mlp_params(&mut params, "encoder", &dims, &mut rng)?;
        dims.reverse();
        let decoder = mlp_params(&mut params, "decoder", &dims, &mut rng)?;
        let mut codebooks = Vec::with_capacity(config.levels);
        for l in 0..config.levels {
            let cb = Tensor::randn(&[config.codes, config.e_dim], 1.0, &mut rng);
            codebooks.push(params.add(&format!("codebooks.{l}"), cb, true)?);
        }
        Ok(RqVae {
            config,
            params,
            encoder,
            decoder,
            codebooks,
        })
    }

    /// A model of `config` with every parameter read from a safetensors file (names and shapes
    /// as [`RqVae::save`] writes them, which are the fixture's).
    pub fn load(config: RqVaeConfig, path: &Path) -> Result<RqVae> {
        let mut model = RqVae::new(config, 0)?;
        let file = SafetensorsFile::open(path)?;
        for id in model.params.ids().collect::<Vec<_>>() {
            let name = model.params.name(id).to_string();
            let value = file.tensor_f32(&name)?;
            model
                .params
                .set_value(id, value)
                .map_err(|e| Error::format(path, format!("tensor `{name}`: {e}")))?;
        }
        Ok(model)
    }

    /// Writes every parameter to `path` (f32 safetensors).
    pub fn save(&self, path: &Path) -> Result<()> {
        let ids: Vec<ParamId> = self.params.ids().collect();
        save_params(&self.params, &ids, path)
    }

    /// The codebook parameter of level `l`.
    pub fn codebook_id(&self, level: usize) -> ParamId {
        self.codebooks[level]
    }

    /// Biases (excluded from weight decay, by convention).
    pub fn no_decay_ids(&self) -> Vec<ParamId> {
        self.encoder
            .iter()
            .chain(&self.decoder)
            .map(|l| l[1])
            .collect()
    }

    /// The encoder alone: z = encoder(x), (N, in) -> (N, e).
    pub fn encode(&self, tape: &mut Tape, x: Var) -> Result<Var> {
        mlp(tape, &self.params, &self.encoder, x)
    }

    /// The full forward with every loss term (module docs). `x` is (N, in_dim).
    pub fn forward(&self, tape: &mut Tape, x: Var) -> Result<RqVaeForward> {
        let c = &self.config;
        if tape.shape(x).len() != 2 || tape.shape(x)[1] != c.in_dim {
            return Err(Error::shape(
                "RqVae::forward",
                format!("input {:?}, expected (items, {})", tape.shape(x), c.in_dim),
            ));
        }
        let n = tape.shape(x)[0];
        let z = self.encode(tape, x)?; // (N, e)
        let mut residual = z;
        let mut z_q: Option<Var> = None;
        let mut level_sum: Option<Var> = None;
        let mut codes = vec![0u32; n * c.levels];
        let mut residuals = Vec::with_capacity(c.levels);
        for (l, &cb_id) in self.codebooks.iter().enumerate() {
            residuals.push(residual);
            let codebook = tape.param(&self.params, cb_id); // (codes, e)
            let level = quantize_level(tape, residual, codebook, c.beta)?;
            for (row, &code) in level.codes.iter().enumerate() {
                codes[row * c.levels + l] = code as u32;
            }
            residual = tape.sub(residual, level.q_st)?; // r_{l+1} = r_l - q_st
            z_q = Some(match z_q {
                Some(acc) => tape.add(acc, level.q_st)?,
                None => level.q_st,
            });
            level_sum = Some(match level_sum {
                Some(acc) => tape.add(acc, level.loss)?,
                None => level.loss,
            });
        }
        let (z_q, level_sum) = (z_q.expect("levels >= 1"), level_sum.expect("levels >= 1"));
        let recon = mlp(tape, &self.params, &self.decoder, z_q)?; // (N, in)
        let x_const = tape.constant(tape.value(x).clone());
        let recon_loss = tape.mse(recon, x_const)?;
        let quant_loss = tape.scale(level_sum, 1.0 / c.levels as f32)?;
        let weighted = tape.scale(quant_loss, c.quant_weight)?;
        let total = tape.add(recon_loss, weighted)?;
        Ok(RqVaeForward {
            z,
            z_q,
            recon,
            codes,
            residuals,
            recon_loss,
            quant_loss,
            total,
        })
    }
}

/// One level's outputs: the straight-through code, the level loss, the chosen codes.
struct Level {
    q_st: Var,
    loss: Var,
    codes: Vec<usize>,
}

/// Quantises `residual` (N, e) with `codebook` (K, e): nearest codes, the level loss
/// `mse(q, sg(r)) + beta * mse(sg(q), r)`, and `q_st = r + sg(q - r)`.
fn quantize_level(tape: &mut Tape, residual: Var, codebook: Var, beta: f32) -> Result<Level> {
    let e = tape.shape(residual)[1];
    if tape.shape(codebook).len() != 2 || tape.shape(codebook)[1] != e {
        return Err(Error::shape(
            "RqVae::quantize",
            format!(
                "codebook {:?} against residual width {e}",
                tape.shape(codebook)
            ),
        ));
    }
    let r_value = tape.value(residual).clone();
    let codes = nearest_codes(r_value.data()?, tape.value(codebook).data()?, e);
    let q = tape.index_select(codebook, &codes)?; // (N, e), gradient to the codebook
    let r_sg = tape.constant(r_value.clone());
    let codebook_loss = tape.mse(q, r_sg)?;
    let q_sg = tape.constant(tape.value(q).clone());
    let commitment = tape.mse(q_sg, residual)?;
    let weighted = tape.scale(commitment, beta)?;
    let loss = tape.add(codebook_loss, weighted)?;
    // sg(q - r), computed in f32 exactly as PyTorch's (q - residual).detach()
    let diff: Vec<f32> = tape
        .value(q)
        .data()?
        .iter()
        .zip(r_value.data()?)
        .map(|(&qv, &rv)| qv - rv)
        .collect();
    let diff = tape.constant(Tensor::from_vec(diff, r_value.shape())?);
    let q_st = tape.add(residual, diff)?;
    Ok(Level { q_st, loss, codes })
}

/// For every row r of `points` (N, e): argmin_k |r|^2 + |c_k|^2 - 2 r.c_k over the rows of
/// `codebook` (K, e), the expansion PyTorch's reference uses; ties go to the lowest index.
pub fn nearest_codes(points: &[f32], codebook: &[f32], e: usize) -> Vec<usize> {
    let code_sq: Vec<f32> = codebook.chunks(e).map(sq_norm).collect();
    points
        .chunks(e)
        .map(|r| {
            let r_sq = sq_norm(r);
            let mut best = (f32::INFINITY, 0usize);
            for (k, c) in codebook.chunks(e).enumerate() {
                let dot: f32 = r.iter().zip(c).map(|(a, b)| a * b).sum();
                let d = r_sq + code_sq[k] - 2.0 * dot;
                // `<` keeps the first of equal distances; NaN never wins.
                if d < best.0 {
                    best = (d, k);
                }
            }
            best.1
        })
        .collect()
}

fn sq_norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum()
}

/// Linear layers `dims[i] -> dims[i+1]` named `{prefix}.layers.{i}.weight/bias`.
fn mlp_params(
    params: &mut Params,
    prefix: &str,
    dims: &[usize],
    rng: &mut Rng,
) -> Result<Vec<[ParamId; 2]>> {
    let mut layers = Vec::with_capacity(dims.len() - 1);
    for (i, pair) in dims.windows(2).enumerate() {
        let (fan_in, fan_out) = (pair[0], pair[1]);
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = Tensor::rand_uniform(&[fan_out, fan_in], -bound, bound, rng);
        let b = Tensor::rand_uniform(&[fan_out], -bound, bound, rng);
        let w = params.add(&format!("{prefix}.layers.{i}.weight"), w, true)?;
        let b = params.add(&format!("{prefix}.layers.{i}.bias"), b, true)?;
        layers.push([w, b]);
    }
    Ok(layers)
}

/// The MLP: linear layers, ReLU between them, none after the last.
fn mlp(tape: &mut Tape, params: &Params, layers: &[[ParamId; 2]], x: Var) -> Result<Var> {
    let mut h = x;
    for (i, [w, b]) in layers.iter().enumerate() {
        let (w, b) = (tape.param(params, *w), tape.param(params, *b));
        h = tape.linear(h, w, Some(b))?;
        if i + 1 < layers.len() {
            h = tape.relu(h)?;
        }
    }
    Ok(h)
}
