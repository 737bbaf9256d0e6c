//! Training an RQ-VAE on item embeddings: k-means initialisation of the codebooks on the first
//! batch, then AdamW epochs over shuffled mini-batches; and the final quantisation of every item.
//!
//! Deterministic: the shuffles and k-means draw from seeded generators, and every op on the
//! tape gives the same bits at any thread count, so a seed fixes the SIDs.

use super::collisions::collision_rate;
use super::kmeans::kmeans;
use super::rqvae::{nearest_codes, RqVae};
use crate::autograd::Tape;
use crate::optim::{AdamW, AdamWConfig};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Error, Result};
use std::time::Instant;

/// Training hyper-parameters (defaults: README "Semantic IDs").
#[derive(Debug, Clone, PartialEq)]
pub struct SidTrainOptions {
    pub epochs: usize,
    /// Items per step (the first batch also seeds k-means).
    pub batch: usize,
    pub lr: f32,
    pub weight_decay: f32,
    /// Lloyd iterations of the codebook initialisation.
    pub kmeans_iters: usize,
    /// Seeds k-means and the shuffles.
    pub seed: u64,
    /// Measure the collision rate of all items every this many epochs (and after the last).
    pub eval_every: usize,
}

impl Default for SidTrainOptions {
    fn default() -> Self {
        SidTrainOptions {
            epochs: 100,
            batch: 1024,
            lr: 3e-3,
            weight_decay: 1e-4,
            kmeans_iters: 100,
            seed: 0,
            eval_every: 20,
        }
    }
}

/// One point of the training curve.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Means over the epoch's steps.
    pub total: f32,
    pub recon: f32,
    pub quant: f32,
    /// Share of items whose SID another item also has (None between evaluations).
    pub collision_rate: Option<f64>,
    pub seconds: f64,
}

/// Every item's codes after training.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// `codes[item][level]`.
    pub codes: Vec<Vec<u32>>,
    /// The residual the last level quantised, (items, e_dim) row-major (collision resolution
    /// measures distances to the last codebook from it).
    pub last_residual: Vec<f32>,
    /// Reconstruction MSE over all items.
    pub recon: f32,
}

/// Seeds each codebook with k-means over that level's residuals of `batch` (items, in_dim),
/// level by level: level l clusters what the (already initialised) levels before it left.
pub fn init_codebooks(model: &mut RqVae, batch: &Tensor, iters: usize, seed: u64) -> Result<()> {
    let e = model.config.e_dim;
    let mut tape = Tape::inference();
    let x = tape.constant(batch.clone());
    let z = model.encode(&mut tape, x)?;
    let mut residual = tape.value(z).data()?.to_vec();
    for level in 0..model.config.levels {
        let k = model.config.codes;
        let level_seed = seed.wrapping_add(level as u64).wrapping_mul(0x9E37_79B9);
        let km = kmeans(&residual, e, k, iters, level_seed)?;
        let id = model.codebook_id(level);
        model
            .params
            .set_value(id, Tensor::from_vec(km.centroids.clone(), &[k, e])?)?;
        let codes = nearest_codes(&residual, &km.centroids, e);
        residual = next_residual(&residual, &km.centroids, &codes, e);
    }
    Ok(())
}

/// r - (r + (q - r)) per element: the value the straight-through forward leaves for the next
/// level (bit for bit, so inference and training agree on the codes).
fn next_residual(residual: &[f32], codebook: &[f32], codes: &[usize], e: usize) -> Vec<f32> {
    residual
        .chunks(e)
        .zip(codes)
        .flat_map(|(r, &c)| {
            let q = &codebook[c * e..(c + 1) * e];
            r.iter().zip(q).map(|(&rv, &qv)| rv - (rv + (qv - rv)))
        })
        .collect()
}

/// Trains `model` on `data` (items, in_dim); `progress` sees every epoch. Returns the curve.
pub fn fit(
    model: &mut RqVae,
    data: &Tensor,
    opts: &SidTrainOptions,
    mut progress: impl FnMut(&EpochStats),
) -> Result<Vec<EpochStats>> {
    check(model, data, opts)?;
    let n = data.shape()[0];
    let start = Instant::now();
    let mut rng = Rng::new(opts.seed ^ 0x5151_D00D);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let first = rows(data, &order[..opts.batch.min(n)])?;
    init_codebooks(model, &first, opts.kmeans_iters, opts.seed)?;
    let mut optimizer = AdamW::new(AdamWConfig {
        lr: opts.lr,
        weight_decay: opts.weight_decay,
        ..AdamWConfig::default()
    });
    optimizer.set_no_decay(model.no_decay_ids());
    let mut curve = Vec::with_capacity(opts.epochs);
    for epoch in 1..=opts.epochs {
        if epoch > 1 {
            rng.shuffle(&mut order);
        }
        let mut sums = [0.0f64; 3];
        let steps = order.chunks(opts.batch).len();
        for chunk in order.chunks(opts.batch) {
            let losses = step(model, &mut optimizer, &rows(data, chunk)?, opts.lr)?;
            sums.iter_mut()
                .zip(losses)
                .for_each(|(s, l)| *s += l as f64);
        }
        let eval = epoch % opts.eval_every.max(1) == 0 || epoch == opts.epochs;
        let collision = if eval {
            Some(collision_rate(&quantize_all(model, data)?.codes))
        } else {
            None
        };
        let stats = EpochStats {
            epoch,
            total: (sums[0] / steps as f64) as f32,
            recon: (sums[1] / steps as f64) as f32,
            quant: (sums[2] / steps as f64) as f32,
            collision_rate: collision,
            seconds: start.elapsed().as_secs_f64(),
        };
        progress(&stats);
        curve.push(stats);
    }
    Ok(curve)
}

/// One AdamW step on one batch; returns (total, recon, quant) before the step.
fn step(model: &mut RqVae, optimizer: &mut AdamW, batch: &Tensor, lr: f32) -> Result<[f32; 3]> {
    let mut tape = Tape::new();
    let x = tape.constant(batch.clone());
    let out = model.forward(&mut tape, x)?;
    let losses = [
        tape.value(out.total).item()?,
        tape.value(out.recon_loss).item()?,
        tape.value(out.quant_loss).item()?,
    ];
    let grads = tape.backward(out.total)?;
    drop(tape);
    model.params.accumulate(&grads)?;
    optimizer.step(&mut model.params, lr)?;
    model.params.zero_grad();
    Ok(losses)
}

/// Codes of every item, the last level's residuals, and the reconstruction loss.
pub fn quantize_all(model: &RqVae, data: &Tensor) -> Result<Quantized> {
    let levels = model.config.levels;
    let mut tape = Tape::inference();
    let x = tape.constant(data.clone());
    let out = model.forward(&mut tape, x)?;
    let codes = out.codes.chunks(levels).map(<[u32]>::to_vec).collect();
    let last = *out.residuals.last().expect("levels >= 1");
    Ok(Quantized {
        codes,
        last_residual: tape.value(last).data()?.to_vec(),
        recon: tape.value(out.recon_loss).item()?,
    })
}

/// Rows `idx` of a 2-D tensor.
fn rows(data: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let d = data.shape()[1];
    let src = data.data()?;
    let mut out = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        out.extend_from_slice(&src[i * d..(i + 1) * d]);
    }
    Tensor::from_vec(out, &[idx.len(), d])
}

fn check(model: &RqVae, data: &Tensor, opts: &SidTrainOptions) -> Result<()> {
    if data.rank() != 2 || data.shape()[1] != model.config.in_dim || data.shape()[0] == 0 {
        return Err(Error::shape(
            "sid::fit",
            format!(
                "embeddings {:?}, expected (items >= 1, {})",
                data.shape(),
                model.config.in_dim
            ),
        ));
    }
    if opts.batch == 0 || opts.epochs == 0 {
        return Err(Error::config(
            format!(
                "SID training with batch {} and {} epochs",
                opts.batch, opts.epochs
            ),
            "batch and epochs must be >= 1",
        ));
    }
    Ok(())
}

/// Centres every column and scales all entries to unit root-mean-square, so one learning rate
/// fits embeddings of any scale (SASRec tables are ~0.1, LLM states ~1-10). Returns the input
/// unchanged in shape.
pub fn standardize(data: &Tensor) -> Result<Tensor> {
    let (n, d) = (data.shape()[0], data.shape()[1]);
    let x = data.data()?;
    let mut mean = vec![0.0f64; d];
    for row in x.chunks(d) {
        mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
    let centred: Vec<f64> = x
        .chunks(d)
        .flat_map(|row| row.iter().zip(&mean).map(|(&v, &m)| v as f64 - m))
        .collect();
    let rms = (centred.iter().map(|v| v * v).sum::<f64>() / centred.len().max(1) as f64).sqrt();
    let scale = if rms > 0.0 { 1.0 / rms } else { 1.0 };
    Tensor::from_vec(
        centred.iter().map(|&v| (v * scale) as f32).collect(),
        &[n, d],
    )
}
