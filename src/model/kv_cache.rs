//! Decoding with a KV cache.
//!
//! Generating token t+1 only needs the new token's query against the keys and values of every
//! earlier position, and those never change once computed (causal attention). So each block keeps
//! its keys/values (after RoPE) and a decoding step runs the decoder on the new tokens alone:
//! O(T) work per step instead of O(T^2) for re-running the whole sequence.
//!
//! Beam search also needs to *reorder* the cache: after each step the surviving beams may descend
//! from any of the previous beams, so row i of the new cache is row `parents[i]` of the old one.
//! The cache is inference-only: it is used on a `Tape::inference()` tape. The decoding step that
//! fills it is `Llama::forward_cached` (`forward_cached.rs`).

use crate::autograd::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// One block's cached keys and values, each (B, T_cached, Hkv * head_dim), RoPE applied.
#[derive(Clone, Debug, Default)]
pub struct LayerKv {
    keys: Option<Tensor>,
    values: Option<Tensor>,
}

impl LayerKv {
    /// Appends new keys/values (B, T_new, kv_dim) and returns all of them as tape constants.
    pub(super) fn append(&mut self, tape: &mut Tape, k: Var, v: Var) -> Result<(Var, Var)> {
        let k_all = concat_time(self.keys.take(), tape.value(k))?;
        let v_all = concat_time(self.values.take(), tape.value(v))?;
        self.keys = Some(k_all.clone());
        self.values = Some(v_all.clone());
        Ok((tape.constant(k_all), tape.constant(v_all)))
    }
}

/// Keys and values of every block for a batch of sequences that all have the same length.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    /// Positions already encoded (the next token sits at this position).
    len: usize,
    batch: usize,
}

impl KvCache {
    /// An empty cache of `blocks` blocks for `batch` sequences.
    pub fn new(blocks: usize, batch: usize) -> KvCache {
        KvCache {
            layers: vec![LayerKv::default(); blocks],
            len: 0,
            batch,
        }
    }

    /// Each block's keys and values, for a step that appends `seq` new positions: the cache
    /// counts them as encoded from here on.
    pub(super) fn advance(&mut self, seq: usize) -> &mut [LayerKv] {
        self.len += seq;
        &mut self.layers
    }

    /// Number of positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Row i of the new cache = row `parents[i]` of the old (beam search); the batch becomes
    /// `parents.len()`.
    pub fn reorder(&mut self, parents: &[usize]) -> Result<()> {
        if let Some(&bad) = parents.iter().find(|&&p| p >= self.batch) {
            return Err(Error::Index {
                op: "KvCache::reorder",
                index: bad as i64,
                bound: self.batch,
            });
        }
        for layer in &mut self.layers {
            for t in [&mut layer.keys, &mut layer.values].into_iter().flatten() {
                *t = select_rows(t, parents)?;
            }
        }
        self.batch = parents.len();
        Ok(())
    }
}

/// [old; new] along the time axis of (B, T, C) tensors.
fn concat_time(old: Option<Tensor>, new: &Tensor) -> Result<Tensor> {
    let Some(old) = old else {
        return Ok(new.clone());
    };
    let (os, ns) = (old.shape(), new.shape());
    if os.len() != 3 || ns.len() != 3 || os[0] != ns[0] || os[2] != ns[2] {
        return Err(Error::shape(
            "KvCache::append",
            format!("cached {os:?} vs new {ns:?}"),
        ));
    }
    let (b, c) = (os[0], os[2]);
    let (to, tn) = (os[1], ns[1]);
    let (od, nd) = (old.data()?, new.data()?);
    let mut out = Vec::with_capacity(b * (to + tn) * c);
    for row in 0..b {
        out.extend_from_slice(&od[row * to * c..(row + 1) * to * c]);
        out.extend_from_slice(&nd[row * tn * c..(row + 1) * tn * c]);
    }
    Tensor::from_vec(out, &[b, to + tn, c])
}

/// Rows `idx` of the first axis.
fn select_rows(t: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let shape = t.shape();
    let row = t.numel() / shape[0].max(1);
    let data = t.data()?;
    let mut out = Vec::with_capacity(idx.len() * row);
    for &i in idx {
        out.extend_from_slice(&data[i * row..(i + 1) * row]);
    }
    let mut new_shape = shape.to_vec();
    new_shape[0] = idx.len();
    Tensor::from_vec(out, &new_shape)
}
