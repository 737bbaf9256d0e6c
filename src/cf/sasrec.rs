//! SASRec (Kang & McAuley, 2018) on our autograd: the collaborative-filtering model behind the
//! ILRec token rewards and a baseline of its own.
//!
//! ```text
//! x_0  = Dropout(E[item] + P[position])                       (B, T, d)
//! per block (pre-LN):
//!   x  = x + Dropout(W_o Attn_causal(LN_1(x)))                 2 heads of d/2
//!   x  = x + Dropout(W_2 ReLU(W_1 LN_2(x)))                    inner size 4d
//! h    = LN_f(x)                                              (B, T, d)
//! score(i | items 0..=t) = h_t . E[i + 1]                     one GEMM against the item table
//! ```
//!
//! Choices, and why:
//! - **Pre-LN**, with a final LayerNorm. The SASRec paper normalises the input of every sub-layer
//!   (`x + Dropout(g(LayerNorm(x)))`, its section 3.4); RecBole's port is post-LN. Pre-LN keeps the
//!   residual stream un-normalised, which trains stably at a constant learning rate with no
//!   warm-up, and that is what a 2-block model trained for a few seconds needs.
//! - **Tied item table**: the input embedding `E` (row 0 = padding) is also the output layer, as
//!   in SASRec and RecBole; scores over all items are `h E^T` without its padding column.
//! - **Learned positions**, counted from the oldest item of the (right-padded) window; see
//!   `batch.rs`.
//! - **ReLU, inner size 4d**: ReLU as in the SASRec paper (RecBole defaults to GELU; on this
//!   CPU the exact-erf GELU and its backward cost about a fifth of a training step, ReLU next to
//!   nothing). Inner size 4d, init N(0, 0.02) for every matrix and embedding, zero biases,
//!   LayerNorm eps 1e-12: RecBole's defaults.
//! - **Dropout** on the input embedding, on the attention output and on the FFN output (the
//!   attention probabilities themselves are not dropped: our fused attention op has no dropout).
//!
//! `scores` / `probabilities` run in eval mode (no dropout, no gradients). They score every item,
//! the history's included; `evaluate` ranks every item (the default protocol, as the popularity
//! baseline and the LLM's trie decoding do), `evaluate_excluding` takes the protocol's excluded
//! items (`rec::protocol`, `--exclude-history`) out of each ranking, so all models are ranked
//! alike under either protocol.

use super::batch::PaddedBatch;
use crate::autograd::{ParamId, Params, Tape, Var};
use crate::rec::{Exclusions, RankingMetrics, Sample};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Error, Result};

/// LayerNorm epsilon (RecBole's SASRec default).
const LN_EPS: f32 = 1e-12;
/// Standard deviation of the initial weights (RecBole's `initializer_range`).
const INIT_STD: f32 = 0.02;
/// Histories scored per forward pass in `evaluate` (bounds the (B, num_items) score matrix).
pub const EVAL_BATCH: usize = 256;

/// Model sizes. Defaults (via [`SasRecConfig::new`]): ILREC.md section 4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SasRecConfig {
    pub num_items: usize,
    /// Longest history the model reads (older items are dropped); also the position table size.
    pub max_len: usize,
    /// d.
    pub hidden: usize,
    pub blocks: usize,
    pub heads: usize,
    /// Drop probability in training.
    pub dropout: f32,
}

impl SasRecConfig {
    /// 2 blocks, 2 heads, d = 64, max length 50, dropout 0.2.
    pub fn new(num_items: usize) -> SasRecConfig {
        SasRecConfig {
            num_items,
            max_len: 50,
            hidden: 64,
            blocks: 2,
            heads: 2,
            dropout: 0.2,
        }
    }

    fn validate(&self) -> Result<()> {
        let hint = "SASRec needs num_items, max_len, hidden, blocks, heads >= 1, hidden divisible \
                    by heads, and dropout in [0, 1)";
        let sizes_ok = self.num_items > 0
            && self.num_items < u32::MAX as usize
            && self.max_len > 0
            && self.hidden > 0
            && self.blocks > 0
            && self.heads > 0
            && self.hidden.is_multiple_of(self.heads);
        if !sizes_ok || !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(format!("bad SASRec config {self:?}"), hint));
        }
        Ok(())
    }
}

/// Parameter ids of one block.
#[derive(Debug, Clone)]
struct BlockIds {
    attn_norm: [ParamId; 2],
    q: [ParamId; 2],
    k: [ParamId; 2],
    v: [ParamId; 2],
    o: [ParamId; 2],
    ffn_norm: [ParamId; 2],
    fc1: [ParamId; 2],
    fc2: [ParamId; 2],
}

/// The model: its config and named parameters (`item_emb.weight`, `blocks.0.attn.q.weight`, ...).
#[derive(Clone)]
pub struct SasRec {
    pub config: SasRecConfig,
    pub params: Params,
    item_emb: ParamId,
    pos_emb: ParamId,
    blocks: Vec<BlockIds>,
    final_norm: [ParamId; 2],
}

impl SasRec {
    /// A freshly initialised model; `seed` fixes every initial weight.
    pub fn new(config: SasRecConfig, seed: u64) -> Result<SasRec> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let mut params = Params::new();
        let d = config.hidden;
        let mut randn = |p: &mut Params, name: &str, shape: &[usize]| {
            p.add(name, Tensor::randn(shape, INIT_STD, &mut rng), true)
        };
        // (num_items + 1, d): row 0 is padding.
        let item_emb = randn(&mut params, "item_emb.weight", &[config.num_items + 1, d])?;
        // (max_len, d).
        let pos_emb = randn(&mut params, "pos_emb.weight", &[config.max_len, d])?;
        let mut blocks = Vec::with_capacity(config.blocks);
        for l in 0..config.blocks {
            let mut linear = |p: &mut Params, name: &str, out: usize, inp: usize| {
                let w = randn(p, &format!("blocks.{l}.{name}.weight"), &[out, inp])?;
                let b = p.add(
                    &format!("blocks.{l}.{name}.bias"),
                    Tensor::zeros(&[out]),
                    true,
                )?;
                Ok::<_, Error>([w, b])
            };
            let q = linear(&mut params, "attn.q", d, d)?;
            let k = linear(&mut params, "attn.k", d, d)?;
            let v = linear(&mut params, "attn.v", d, d)?;
            let o = linear(&mut params, "attn.o", d, d)?;
            let fc1 = linear(&mut params, "ffn.fc1", 4 * d, d)?;
            let fc2 = linear(&mut params, "ffn.fc2", d, 4 * d)?;
            blocks.push(BlockIds {
                attn_norm: layer_norm_params(&mut params, &format!("blocks.{l}.attn_norm"), d)?,
                q,
                k,
                v,
                o,
                ffn_norm: layer_norm_params(&mut params, &format!("blocks.{l}.ffn_norm"), d)?,
                fc1,
                fc2,
            });
        }
        let final_norm = layer_norm_params(&mut params, "final_norm", d)?;
        Ok(SasRec {
            config,
            params,
            item_emb,
            pos_emb,
            blocks,
            final_norm,
        })
    }

    /// Biases and LayerNorm parameters (excluded from weight decay, by convention).
    pub fn no_decay_params(&self) -> Vec<ParamId> {
        self.params
            .ids()
            .filter(|&id| self.params.value(id).rank() == 1)
            .collect()
    }

    /// Hidden state at every position, (B, T, d), and the item table var (used again as the
    /// output layer). `dropout_rng`: Some in training (dropout on), None in eval mode.
    pub(crate) fn forward(
        &self,
        tape: &mut Tape,
        batch: &PaddedBatch,
        mut dropout_rng: Option<&mut Rng>,
    ) -> Result<(Var, Var)> {
        let (b, t, d) = (batch.rows, batch.len, self.config.hidden);
        let item_table = tape.param(&self.params, self.item_emb);
        let pos_table = tape.param(&self.params, self.pos_emb);
        let items = tape.embedding(item_table, &batch.ids, &[b, t])?;
        let positions = tape.embedding(pos_table, &batch.positions, &[b, t])?;
        let x = tape.add(items, positions)?;
        let mut x = self.dropout(tape, x, &mut dropout_rng)?;
        for block in &self.blocks {
            x = self.block(tape, block, x, &mut dropout_rng)?;
        }
        let [w, bias] = self.vars(tape, self.final_norm);
        let h = tape.layer_norm(x, w, bias, LN_EPS)?;
        debug_assert_eq!(tape.shape(h), &[b, t, d]);
        Ok((h, item_table))
    }

    /// One pre-LN block: causal self-attention then the point-wise FFN, each with a residual.
    fn block(
        &self,
        tape: &mut Tape,
        ids: &BlockIds,
        x: Var,
        rng: &mut Option<&mut Rng>,
    ) -> Result<Var> {
        let heads = self.config.heads;
        let head_dim = self.config.hidden / heads;
        let [nw, nb] = self.vars(tape, ids.attn_norm);
        let a = tape.layer_norm(x, nw, nb, LN_EPS)?;
        let q = self.linear(tape, a, ids.q)?;
        let k = self.linear(tape, a, ids.k)?;
        let v = self.linear(tape, a, ids.v)?;
        // Right padding + causal mask: no real position sees a padding key, so no key mask.
        let att = tape.attention(q, k, v, heads, heads, head_dim, true, None)?;
        let o = self.linear(tape, att, ids.o)?;
        let o = self.dropout(tape, o, rng)?;
        let x = tape.add(x, o)?;
        let [nw, nb] = self.vars(tape, ids.ffn_norm);
        let f = tape.layer_norm(x, nw, nb, LN_EPS)?;
        let f = self.linear(tape, f, ids.fc1)?;
        let f = tape.relu(f)?;
        let f = self.linear(tape, f, ids.fc2)?;
        let f = self.dropout(tape, f, rng)?;
        tape.add(x, f)
    }

    fn vars(&self, tape: &mut Tape, ids: [ParamId; 2]) -> [Var; 2] {
        ids.map(|id| tape.param(&self.params, id))
    }

    fn linear(&self, tape: &mut Tape, x: Var, ids: [ParamId; 2]) -> Result<Var> {
        let [w, b] = self.vars(tape, ids);
        tape.linear(x, w, Some(b))
    }

    fn dropout(&self, tape: &mut Tape, x: Var, rng: &mut Option<&mut Rng>) -> Result<Var> {
        match rng {
            Some(rng) if self.config.dropout > 0.0 => tape.dropout(x, self.config.dropout, rng),
            _ => Ok(x),
        }
    }

    /// Training loss of a batch: mean cross-entropy over all items (plus the padding column,
    /// which is never a target and learns to score low) at every non-padding position.
    pub(crate) fn loss(&self, tape: &mut Tape, batch: &PaddedBatch, rng: &mut Rng) -> Result<Var> {
        let (h, item_table) = self.forward(tape, batch, Some(rng))?;
        let rows = tape.reshape(h, &[batch.rows * batch.len, self.config.hidden])?;
        // (B*T, num_items + 1) logits: one GEMM against the tied item table.
        let logits = tape.linear(rows, item_table, None)?;
        tape.cross_entropy(logits, &batch.targets)
    }

    /// Scores of every item after each history (eval mode): (B, num_items), item id = column.
    /// Histories are dataset item ids, oldest first, non-empty; only the last `max_len` count.
    pub fn scores(&self, histories: &[&[u32]]) -> Result<Tensor> {
        let (d, n) = (self.config.hidden, self.config.num_items);
        let batch = PaddedBatch::histories(histories, self.config.max_len, n)?;
        let mut tape = Tape::inference();
        let (h, item_table) = self.forward(&mut tape, &batch, None)?;
        // (B, d): the hidden state at each row's last real position.
        let h_all = tape.value(h).data()?;
        let mut last = Vec::with_capacity(batch.rows * d);
        for (b, &len) in batch.lengths.iter().enumerate() {
            let start = (b * batch.len + len - 1) * d;
            last.extend_from_slice(&h_all[start..start + d]);
        }
        let last = tape.constant(Tensor::from_vec(last, &[batch.rows, d])?);
        // (B, num_items + 1), then drop the padding column.
        let logits = tape.linear(last, item_table, None)?;
        let logits = tape.value(logits).data()?;
        let mut out = Vec::with_capacity(batch.rows * n);
        for row in logits.chunks_exact(n + 1) {
            out.extend_from_slice(&row[1..]);
        }
        Tensor::from_vec(out, &[batch.rows, n])
    }

    /// `p_CF(item | history)` = softmax of [`Self::scores`] over all items: (B, num_items).
    pub fn probabilities(&self, histories: &[&[u32]]) -> Result<Tensor> {
        let mut scores = self.scores(histories)?;
        let n = self.config.num_items;
        for row in scores.data_mut()?.chunks_exact_mut(n) {
            softmax_in_place(row);
        }
        Ok(scores)
    }

    /// Full-ranking Hit/NDCG of the samples' targets (no item excluded; ties by lowest id).
    pub fn evaluate(&self, samples: &[Sample]) -> Result<RankingMetrics> {
        self.evaluate_excluding(samples, &Exclusions::all_items(samples.len()))
    }

    /// Hit/NDCG with `excluded.of(i)` taken out of sample i's ranking (ties by lowest id).
    pub fn evaluate_excluding(
        &self,
        samples: &[Sample],
        excluded: &Exclusions,
    ) -> Result<RankingMetrics> {
        excluded.check_len(samples.len())?;
        let n = self.config.num_items;
        let mut metrics = RankingMetrics::new();
        for (c, chunk) in samples.chunks(EVAL_BATCH).enumerate() {
            let histories: Vec<&[u32]> = chunk.iter().map(|s| s.history.as_slice()).collect();
            let scores = self.scores(&histories)?;
            for (j, (s, row)) in chunk.iter().zip(scores.data()?.chunks_exact(n)).enumerate() {
                if s.target as usize >= n {
                    return Err(Error::Index {
                        op: "SasRec::evaluate",
                        index: s.target as i64,
                        bound: n,
                    });
                }
                let skip = excluded.of(c * EVAL_BATCH + j);
                metrics.add(rank_in_row_excluding(row, s.target as usize, skip));
            }
        }
        Ok(metrics)
    }
}

/// LayerNorm weight (ones) and bias (zeros) named `prefix.weight`, `prefix.bias`.
fn layer_norm_params(params: &mut Params, prefix: &str, d: usize) -> Result<[ParamId; 2]> {
    Ok([
        params.add(&format!("{prefix}.weight"), Tensor::full(&[d], 1.0), true)?,
        params.add(&format!("{prefix}.bias"), Tensor::zeros(&[d]), true)?,
    ])
}

/// 0-based rank of `target` when the row is sorted by descending score, ties by lowest id:
/// the number of items that beat it. Same answer as sorting, in one pass.
pub fn rank_in_row(scores: &[f32], target: usize) -> usize {
    let s = scores[target];
    let before = scores[..target].iter().filter(|&&x| x >= s).count();
    let after = scores[target + 1..].iter().filter(|&&x| x > s).count();
    before + after
}

/// [`rank_in_row`] with the `excluded` items (sorted) taken out of the ranking: the items that
/// beat the target, less the excluded ones among them. None if the target itself is excluded.
pub fn rank_in_row_excluding(scores: &[f32], target: usize, excluded: &[u32]) -> Option<usize> {
    let s = scores[target];
    let mut rank = rank_in_row(scores, target);
    for &e in excluded {
        let e = e as usize;
        let beats = match e.cmp(&target) {
            std::cmp::Ordering::Less => scores[e] >= s,
            std::cmp::Ordering::Greater => scores[e] > s,
            std::cmp::Ordering::Equal => return None,
        };
        rank -= usize::from(beats);
    }
    Some(rank)
}

/// Numerically stable softmax of one row (max subtracted, f64 sum).
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut total = 0.0f64;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        total += *x as f64;
    }
    let inv = (1.0 / total) as f32;
    row.iter_mut().for_each(|x| *x *= inv);
}
