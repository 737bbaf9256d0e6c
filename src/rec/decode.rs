//! The Llama as a [`PrefixScorer`] for constrained beam search, with a KV cache.
//!
//! `start` runs the prompt once (batch 1) and keeps every layer's keys and values; each `step`
//! first reorders the cache to the surviving beams (beam i continues beam `parents[i]`), then runs
//! only the beams' one new token through the model (batch = beams, 1 position) against the cached
//! keys and values. Attention places the new query at absolute position `Tk - Tq + i`, and RoPE
//! gets the same position, so the result equals a full forward over the whole sequence.
//!
//! The model's training forward has no cache entry point, so [`forward_cached`] rebuilds the
//! block from the same parameters and ops on an inference tape (one fresh tape per call, so
//! nothing accumulates across steps).

use super::beam::PrefixScorer;
use crate::autograd::Tape;
use crate::model::llama::{BlockParams, Llama};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// Per-layer keys and values of the tokens seen so far: (rows, len, kv_dim) each.
#[derive(Clone, Debug)]
pub struct KvCache {
    pub keys: Vec<Tensor>,
    pub values: Vec<Tensor>,
    pub rows: usize,
    pub len: usize,
}

impl KvCache {
    /// An empty cache for `rows` sequences.
    pub fn empty(model: &Llama, rows: usize) -> KvCache {
        let layers = model.config.num_hidden_layers;
        let kv_dim = model.config.num_key_value_heads * model.config.head_dim;
        let empty = Tensor::zeros(&[rows, 0, kv_dim]);
        KvCache {
            keys: vec![empty.clone(); layers],
            values: vec![empty; layers],
            rows,
            len: 0,
        }
    }

    /// Row i of the new cache = row `parents[i]` of this one.
    pub fn reorder(&self, parents: &[usize]) -> Result<KvCache> {
        if let Some(&bad) = parents.iter().find(|&&p| p >= self.rows) {
            return Err(Error::Index {
                op: "KvCache::reorder",
                index: bad as i64,
                bound: self.rows,
            });
        }
        let pick = |t: &Tensor| -> Result<Tensor> {
            let (len, dim) = (t.shape()[1], t.shape()[2]);
            let src = t.data()?;
            let row = len * dim;
            let mut out = Vec::with_capacity(parents.len() * row); // (beams, len, kv_dim)
            for &p in parents {
                out.extend_from_slice(&src[p * row..(p + 1) * row]);
            }
            Tensor::from_vec(out, &[parents.len(), len, dim])
        };
        Ok(KvCache {
            keys: self.keys.iter().map(pick).collect::<Result<_>>()?,
            values: self.values.iter().map(pick).collect::<Result<_>>()?,
            rows: parents.len(),
            len: self.len,
        })
    }
}

/// Appends `new` (rows, t_new, dim) to `cached` (rows, len, dim) along the sequence axis.
fn concat_seq(cached: &Tensor, new: &Tensor) -> Result<Tensor> {
    let (rows, len, dim) = (cached.shape()[0], cached.shape()[1], cached.shape()[2]);
    let t_new = new.shape()[1];
    let (a, b) = (cached.data()?, new.data()?);
    let mut out = Vec::with_capacity(rows * (len + t_new) * dim); // (rows, len + t_new, dim)
    for r in 0..rows {
        out.extend_from_slice(&a[r * len * dim..(r + 1) * len * dim]);
        out.extend_from_slice(&b[r * t_new * dim..(r + 1) * t_new * dim]);
    }
    Tensor::from_vec(out, &[rows, len + t_new, dim])
}

/// Runs `ids` ((rows, t_new), row-major) after the cached tokens; updates the cache and returns
/// the next-token log-probabilities after each row's last token: (rows, V) flattened.
pub fn forward_cached(
    model: &Llama,
    cache: &mut KvCache,
    ids: &[u32],
    t_new: usize,
) -> Result<Vec<f32>> {
    let rows = cache.rows;
    let c = &model.config;
    if t_new == 0 || ids.len() != rows * t_new {
        return Err(Error::shape(
            "forward_cached",
            format!("{} ids for {rows} rows x {t_new} new tokens", ids.len()),
        ));
    }
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= c.vocab_size) {
        return Err(Error::Index {
            op: "forward_cached",
            index: bad as i64,
            bound: c.vocab_size,
        });
    }
    let positions: Vec<usize> = (cache.len..cache.len + t_new).collect();
    let mut tape = Tape::inference();
    let embed = tape.param(&model.params, model.embed_id());
    let mut h = tape.embedding(embed, ids, &[rows, t_new])?; // (rows, t_new, D)
    for (l, block) in model.blocks().iter().enumerate() {
        h = cached_block(model, &mut tape, block, h, &positions, cache, l)?;
    }
    cache.len += t_new;
    let last_rows: Vec<usize> = (0..rows).map(|r| r * t_new + t_new - 1).collect();
    let logits = model.head(&mut tape, h, Some(&last_rows))?; // (rows, V)
    let log_probs = tape.log_softmax(logits)?;
    Ok(tape.value(log_probs).to_vec())
}

/// One decoder block over the new tokens, reading and extending layer `layer` of the cache.
fn cached_block(
    model: &Llama,
    tape: &mut Tape,
    p: &BlockParams,
    x: crate::Var, // (rows, t_new, D)
    positions: &[usize],
    cache: &mut KvCache,
    layer: usize,
) -> Result<crate::Var> {
    let c = &model.config;
    let (hq, hkv, hd, eps) = (
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.rms_norm_eps,
    );
    let param = |tape: &mut Tape, id| tape.param(&model.params, id);
    let bias = |tape: &mut Tape, id: Option<_>| id.map(|id| tape.param(&model.params, id));

    let w = param(tape, p.input_norm);
    let n1 = tape.rms_norm(x, w, eps)?;
    let (wq, bq) = (param(tape, p.q_proj), bias(tape, p.q_bias));
    let (wk, bk) = (param(tape, p.k_proj), bias(tape, p.k_bias));
    let (wv, bv) = (param(tape, p.v_proj), bias(tape, p.v_bias));
    let q = tape.linear(n1, wq, bq)?; // (rows, t_new, Hq*hd)
    let k = tape.linear(n1, wk, bk)?; // (rows, t_new, Hkv*hd)
    let v = tape.linear(n1, wv, bv)?;
    let q = tape.rope(q, hq, hd, positions, c.rope_theta)?;
    let k = tape.rope(k, hkv, hd, positions, c.rope_theta)?;
    let keys = concat_seq(&cache.keys[layer], tape.value(k))?; // (rows, len + t_new, Hkv*hd)
    let values = concat_seq(&cache.values[layer], tape.value(v))?;
    cache.keys[layer] = keys.clone();
    cache.values[layer] = values.clone();
    let (k_all, v_all) = (tape.constant(keys), tape.constant(values));
    let a = tape.attention(q, k_all, v_all, hq, hkv, hd, true, None)?; // (rows, t_new, Hq*hd)
    let (wo, bo) = (param(tape, p.o_proj), bias(tape, p.o_bias));
    let attn_out = tape.linear(a, wo, bo)?;
    let x = tape.add(x, attn_out)?;

    let w = param(tape, p.post_norm);
    let n2 = tape.rms_norm(x, w, eps)?;
    let (w_gate, w_up, w_down) = (
        param(tape, p.gate_proj),
        param(tape, p.up_proj),
        param(tape, p.down_proj),
    );
    let gate = tape.linear(n2, w_gate, None)?; // (rows, t_new, F)
    let up = tape.linear(n2, w_up, None)?;
    let gate = tape.silu(gate)?;
    let inner = tape.mul(gate, up)?;
    let mlp_out = tape.linear(inner, w_down, None)?; // (rows, t_new, D)
    tape.add(x, mlp_out)
}

/// A [`PrefixScorer`] over a Llama with a KV cache (one prompt at a time).
pub struct LlamaScorer<'a> {
    model: &'a Llama,
    cache: Option<KvCache>,
}

impl<'a> LlamaScorer<'a> {
    pub fn new(model: &'a Llama) -> LlamaScorer<'a> {
        LlamaScorer { model, cache: None }
    }
}

impl PrefixScorer for LlamaScorer<'_> {
    fn start(&mut self, prompt: &[u32]) -> Result<Vec<f32>> {
        let mut cache = KvCache::empty(self.model, 1);
        let row = forward_cached(self.model, &mut cache, prompt, prompt.len())?;
        self.cache = Some(cache);
        Ok(row)
    }

    fn step(&mut self, parents: &[usize], tokens: &[u32]) -> Result<Vec<Vec<f32>>> {
        let cache = self.cache.as_ref().ok_or_else(|| {
            Error::config("LlamaScorer::step before start", "call start(prompt) first")
        })?;
        let mut cache = cache.reorder(parents)?;
        let flat = forward_cached(self.model, &mut cache, tokens, 1)?;
        self.cache = Some(cache);
        let vocab = self.model.config.vocab_size;
        Ok(flat.chunks_exact(vocab).map(<[f32]>::to_vec).collect())
    }
}
