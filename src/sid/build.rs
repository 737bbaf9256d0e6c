//! The whole SID construction in one call, what the pipeline and the `sid` binary run:
//! standardise the embeddings -> RQ-VAE (default sizes from [`SidSizes::default_for`]) ->
//! k-means init + AdamW training -> quantise every item -> resolve collisions -> usage stats.

use super::collisions::{resolve_collisions, Resolution};
use super::rqvae::{RqVae, RqVaeConfig};
use super::stats::{level_usage, LevelUsage};
use super::train::{fit, quantize_all, standardize, EpochStats, SidTrainOptions};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The sizes of an RQ-VAE (README "Semantic IDs" has the measurements behind the default).
#[derive(Debug, Clone, PartialEq)]
pub struct SidSizes {
    pub levels: usize,
    pub codes: usize,
    pub e_dim: usize,
    pub hidden: Vec<usize>,
}

impl SidSizes {
    /// The default rule (measured on the three data sets with SASRec item tables, README
    /// "Semantic IDs"): 3 levels of 256 codes (4 levels above 16,384 items, the authors' size
    /// for 10-20k items); code dimension 32; MLP widths 256, 128. It was the only size tried
    /// that never needed an added level: with 64 codes per level (3 or 4 levels) a group of
    /// SASRec's barely-trained tail items outgrew the last level on the Amazon sets.
    pub fn default_for(num_items: usize) -> SidSizes {
        SidSizes {
            levels: if num_items <= 16_384 { 3 } else { 4 },
            codes: 256,
            e_dim: 32,
            hidden: vec![256, 128],
        }
    }
}

/// Everything a SID build produces.
pub struct SidBuild {
    /// The trained model (its codebooks give the distances of the last level).
    pub model: RqVae,
    pub curve: Vec<EpochStats>,
    /// Codes straight from the model (may collide).
    pub raw_codes: Vec<Vec<u32>>,
    /// Reconstruction MSE of all (standardised) items.
    pub recon: f32,
    /// Unique codes, and what resolution did.
    pub resolution: Resolution,
    /// Usage of each level of the final codes.
    pub usage: Vec<LevelUsage>,
}

/// Builds unique SIDs for `embeddings` (items, dim), one row per item in item-id order.
pub fn build_sids(
    embeddings: &Tensor,
    sizes: &SidSizes,
    opts: &SidTrainOptions,
    progress: impl FnMut(&EpochStats),
) -> Result<SidBuild> {
    if embeddings.rank() != 2 || embeddings.shape()[0] == 0 {
        return Err(Error::shape(
            "build_sids",
            format!(
                "embeddings {:?}, expected (items >= 1, dim)",
                embeddings.shape()
            ),
        ));
    }
    let config = RqVaeConfig {
        in_dim: embeddings.shape()[1],
        hidden: sizes.hidden.clone(),
        e_dim: sizes.e_dim,
        levels: sizes.levels,
        codes: sizes.codes,
        beta: 0.25,
        quant_weight: 1.0,
    };
    let mut model = RqVae::new(config, opts.seed)?;
    let data = standardize(embeddings)?;
    let curve = fit(&mut model, &data, opts, progress)?;
    let q = quantize_all(&model, &data)?;
    let last = model
        .params
        .value(model.codebook_id(sizes.levels - 1))
        .to_f32();
    let resolution = resolve_collisions(
        &q.codes,
        &q.last_residual,
        last.data()?,
        sizes.e_dim,
        sizes.codes,
    )?;
    let usage = level_usage(&resolution.codes);
    Ok(SidBuild {
        model,
        curve,
        raw_codes: q.codes,
        recon: q.recon,
        resolution,
        usage,
    })
}
