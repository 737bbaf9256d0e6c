//! The Llama-family decoder (Llama 2/3/3.1/3.2, SmolLM, Qwen2/2.5, Qwen3, Mistral) on the autograd
//! tape.
//!
//! ```text
//! ids (B,T) -> embedding -> h^0 (B,T,D)
//! for block l = 1..=L:
//!     a   = h + o_proj(attention(rope(q_proj(N1 h)), rope(k_proj(N1 h)), v_proj(N1 h)))
//!           (qwen3: rope(Nq q_proj(N1 h)), rope(Nk k_proj(N1 h)), Nq/Nk per-head RMSNorms)
//!     h^l = a + down_proj(silu(gate_proj(N2 a)) * up_proj(N2 a))
//! logits = lm_head(N_final h^L)
//! ```
//! N are RMSNorms with learned scales; attention is causal grouped-query attention (Hq query heads
//! share Hkv key/value heads); padding is on the right and masked out as keys. RoPE's frequencies
//! come from `LlamaConfig::rope_inv_freq` (plain, linear or Llama 3.1 scaling).
//!
//! The forward returns every raw block output h^l: ILRec's logit lens applies the final norm and
//! LM head to intermediate blocks (z^l = W N(h^l)), through the same [`Llama::head`] function the
//! model's own logits use. The head can be restricted to selected rows (response tokens), which
//! avoids the full-vocabulary matmul on prompt positions that no loss reads.
//!
//! Parameters carry the Hugging Face names, so a checkpoint loads and saves without renaming.
//!
//! Adapters (`adapter.rs`): any projection may carry a low-rank update (LoRA) and the embedding
//! and LM head may have trainable token rows; without them the forward is the plain decoder.

use super::adapter::{LowRank, Proj, TokenRows};
use super::config::LlamaConfig;
use super::weights::{save_params, Checkpoint};
use crate::autograd::{ParamId, Params, Tape, Var};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{DType, Tensor};
use std::collections::HashSet;
use std::path::Path;

/// Std of the normal init of weight matrices (HF's `initializer_range` default).
pub const INIT_STD: f32 = 0.02;

/// Parameter ids of one decoder block.
#[derive(Clone, Debug)]
pub struct BlockParams {
    pub input_norm: ParamId,
    pub q_proj: ParamId,
    pub k_proj: ParamId,
    pub v_proj: ParamId,
    pub o_proj: ParamId,
    pub q_bias: Option<ParamId>,
    pub k_bias: Option<ParamId>,
    pub v_bias: Option<ParamId>,
    pub o_bias: Option<ParamId>,
    /// Qwen3's per-head RMSNorm scales of queries and keys (head_dim each).
    pub q_norm: Option<ParamId>,
    pub k_norm: Option<ParamId>,
    pub post_norm: ParamId,
    pub gate_proj: ParamId,
    pub up_proj: ParamId,
    pub down_proj: ParamId,
    /// A low-rank adapter per projection, indexed by `Proj as usize` (None: the plain weight).
    pub adapters: [Option<LowRank>; 7],
}

impl BlockParams {
    /// The weight (out, in) of projection `p`.
    pub fn weight(&self, p: Proj) -> ParamId {
        match p {
            Proj::Q => self.q_proj,
            Proj::K => self.k_proj,
            Proj::V => self.v_proj,
            Proj::O => self.o_proj,
            Proj::Gate => self.gate_proj,
            Proj::Up => self.up_proj,
            Proj::Down => self.down_proj,
        }
    }

    /// The bias of projection `p`, if the architecture has one.
    pub fn bias(&self, p: Proj) -> Option<ParamId> {
        match p {
            Proj::Q => self.q_bias,
            Proj::K => self.k_bias,
            Proj::V => self.v_bias,
            Proj::O => self.o_bias,
            Proj::Gate | Proj::Up | Proj::Down => None,
        }
    }

    /// The adapter on projection `p`, if any.
    pub fn adapter(&self, p: Proj) -> Option<&LowRank> {
        self.adapters[p as usize].as_ref()
    }
}

/// A decoder and its parameters.
#[derive(Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    pub params: Params,
    embed: ParamId,
    blocks: Vec<BlockParams>,
    final_norm: ParamId,
    /// Equal to `embed` when the embeddings are tied.
    lm_head: ParamId,
    /// Trainable rows of the embedding (a tied head uses them too) and of an untied head.
    embed_rows: Option<TokenRows>,
    head_rows: Option<TokenRows>,
}

/// A right-padded batch of token ids.
#[derive(Clone, Debug)]
pub struct BatchInput {
    /// (batch, seq) row-major token ids; padding positions hold any valid id.
    pub ids: Vec<u32>,
    pub batch: usize,
    pub seq: usize,
    /// (batch, seq): false marks padding (masked out as attention keys). None: no padding.
    pub key_valid: Option<Vec<bool>>,
    /// RoPE positions, length seq (shared by all rows) or batch*seq. None: 0..seq.
    pub positions: Option<Vec<usize>>,
    /// Training only: seeds the dropout masks of the adapters (None: no dropout, evaluation).
    pub dropout_seed: Option<u64>,
}

impl BatchInput {
    /// Rows of equal length, no padding.
    pub fn new(ids: Vec<u32>, batch: usize, seq: usize) -> Result<BatchInput> {
        if ids.len() != batch * seq {
            return Err(Error::shape(
                "BatchInput::new",
                format!("{} ids for batch {batch} x seq {seq}", ids.len()),
            ));
        }
        Ok(BatchInput {
            ids,
            batch,
            seq,
            key_valid: None,
            positions: None,
            dropout_seed: None,
        })
    }

    /// Right-pads rows of different lengths with `pad_id` to the longest row.
    pub fn right_padded(rows: &[Vec<u32>], pad_id: u32) -> BatchInput {
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * seq);
        let mut valid = Vec::with_capacity(rows.len() * seq);
        for row in rows {
            ids.extend_from_slice(row);
            ids.extend(std::iter::repeat_n(pad_id, seq - row.len()));
            valid.extend((0..seq).map(|t| t < row.len()));
        }
        let padded = valid.iter().any(|v| !v);
        BatchInput {
            ids,
            batch: rows.len(),
            seq,
            key_valid: padded.then_some(valid),
            positions: None,
            dropout_seed: None,
        }
    }
}

/// The head parameters as fetched onto a tape (reused by every logit-lens call).
#[derive(Clone, Copy, Debug)]
pub struct HeadVars {
    pub norm: Var,
    pub weight: Var,
    /// The head's trainable token rows (n, D), when it has some.
    pub rows: Option<Var>,
}

/// What every block of one forward shares: RoPE positions, the key mask and the dropout seed
/// of this block's adapters (training only).
pub(super) struct BlockInput<'a> {
    pub positions: &'a [usize],
    pub key_valid: Option<&'a [bool]>,
    pub dropout_seed: Option<u64>,
}

/// The embedding step's leaves and output.
struct Embedded {
    /// The (V, D) table and its trainable rows: a tied head reuses both nodes.
    table: Var,
    rows: Option<Var>,
    /// (B, T, D)
    h: Var,
}

/// The decoder's blocks without the head: what [`Llama::forward_blocks`] produces, for callers
/// that apply the head themselves (the ILRec step stacks the final rows with the lens rows).
pub struct BlockOutputs {
    /// `hidden[0]` = embedding output (B,T,D); `hidden[l]` = raw output of block l, l = 1..=L.
    pub hidden: Vec<Var>,
    /// The head parameters on this tape.
    pub head: HeadVars,
}

/// What the forward produces.
pub struct ForwardOutput {
    /// `hidden[0]` = embedding output (B,T,D); `hidden[l]` = raw output of block l, l = 1..=L.
    pub hidden: Vec<Var>,
    /// (rows, V): all B*T rows (row b*T + t) if no rows were selected, else the selected ones.
    pub logits: Var,
    /// The head parameters on this tape, for [`Llama::lens`].
    pub head: HeadVars,
}

/// Every tensor a checkpoint of `cfg` must hold, with its shape, in canonical order.
pub fn expected_tensors(cfg: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (q, kv) = (cfg.q_dim(), cfg.kv_dim());
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, d])];
    for l in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        out.push((p("input_layernorm.weight"), vec![d]));
        out.push((p("self_attn.q_proj.weight"), vec![q, d]));
        out.push((p("self_attn.k_proj.weight"), vec![kv, d]));
        out.push((p("self_attn.v_proj.weight"), vec![kv, d]));
        if cfg.qkv_bias {
            out.push((p("self_attn.q_proj.bias"), vec![q]));
            out.push((p("self_attn.k_proj.bias"), vec![kv]));
            out.push((p("self_attn.v_proj.bias"), vec![kv]));
        }
        if cfg.qk_norm() {
            out.push((p("self_attn.q_norm.weight"), vec![cfg.head_dim]));
            out.push((p("self_attn.k_norm.weight"), vec![cfg.head_dim]));
        }
        out.push((p("self_attn.o_proj.weight"), vec![d, q]));
        if cfg.o_bias {
            out.push((p("self_attn.o_proj.bias"), vec![d]));
        }
        out.push((p("post_attention_layernorm.weight"), vec![d]));
        out.push((p("mlp.gate_proj.weight"), vec![f, d]));
        out.push((p("mlp.up_proj.weight"), vec![f, d]));
        out.push((p("mlp.down_proj.weight"), vec![d, f]));
    }
    out.push(("model.norm.weight".to_string(), vec![d]));
    if !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![v, d]));
    }
    out
}

/// HF's causal-LM shift: the logits at position t are scored against the label at t+1; the last
/// position of every row has nothing to predict (-100, ignored). (batch*seq) in and out.
pub fn shifted_targets(labels: &[i64], batch: usize, seq: usize) -> Result<Vec<i64>> {
    if labels.len() != batch * seq {
        return Err(Error::shape(
            "shifted_targets",
            format!("{} labels for batch {batch} x seq {seq}", labels.len()),
        ));
    }
    let mut targets = vec![-100i64; batch * seq];
    for b in 0..batch {
        let row = b * seq;
        targets[row..row + seq.saturating_sub(1)].copy_from_slice(&labels[row + 1..row + seq]);
    }
    Ok(targets)
}

/// Mean cross-entropy of next-token prediction over all labelled positions, from logits of every
/// row (B*T, V): what HF's `ForCausalLM` returns as `loss`.
pub fn causal_lm_loss(
    tape: &mut Tape,
    logits_all_rows: Var,
    labels: &[i64],
    batch: usize,
    seq: usize,
) -> Result<Var> {
    let targets = shifted_targets(labels, batch, seq)?;
    tape.cross_entropy(logits_all_rows, &targets)
}

impl Llama {
    /// Loads `dir/config.json` and the safetensors weights beside it, checking every tensor's
    /// presence and shape against the config and refusing tensors the architecture lacks.
    /// Weights are f32.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Llama> {
        Llama::from_dir_as(dir, Some(DType::F32))
    }

    /// [`Llama::from_dir`] with the weights' storage precision chosen: `Some(dtype)` converts,
    /// None keeps the file's (a bf16 checkpoint stays bf16: the frozen base of LoRA in half the
    /// memory; ops convert one matrix at a time).
    pub fn from_dir_as(dir: impl AsRef<Path>, dtype: Option<DType>) -> Result<Llama> {
        let dir = dir.as_ref();
        let config = LlamaConfig::from_file(dir.join("config.json"))?;
        let ckpt = Checkpoint::open(dir)?;
        let names = ckpt.names();
        check_layer_count(
            &config,
            names.iter().map(String::as_str),
            &dir.join("config.json"),
        )?;
        let expected = expected_tensors(&config);
        refuse_unexpected_tensors(&ckpt, &expected)?;
        let params = ckpt.load_params_as(&expected, dtype)?;
        Llama::from_params(config, params)
    }

    /// A freshly initialised model: weights ~ Normal(0, 0.02^2), norm scales 1, biases 0.
    pub fn from_config(config: LlamaConfig, seed: u64) -> Result<Llama> {
        Llama::from_config_as(config, seed, DType::F32)
    }

    /// [`Llama::from_config`] with every tensor stored as `dtype` (converted one at a time as it
    /// is drawn, so a bf16 model never exists in f32 as a whole: memory measurements of a frozen
    /// half-precision base).
    pub fn from_config_as(config: LlamaConfig, seed: u64, dtype: DType) -> Result<Llama> {
        config.validate(Path::new("<config>"))?;
        let mut rng = Rng::new(seed);
        let mut params = Params::new();
        for (name, shape) in expected_tensors(&config) {
            let value = if name.ends_with("norm.weight") {
                Tensor::full(&shape, 1.0)
            } else if name.ends_with(".bias") {
                Tensor::zeros(&shape)
            } else {
                Tensor::randn(&shape, INIT_STD, &mut rng)
            };
            params.add(&name, value.to_dtype(dtype), true)?;
        }
        Llama::from_params(config, params)
    }

    /// Wraps `params` (HF names, shapes of `config`) as a model.
    pub fn from_params(config: LlamaConfig, params: Params) -> Result<Llama> {
        let id = |name: String| {
            params
                .id(&name)
                .ok_or_else(|| Error::config(format!("parameter `{name}` is missing"), ""))
        };
        let opt = |name: String, present: bool| present.then(|| id(name)).transpose();
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{l}.{s}");
            blocks.push(BlockParams {
                input_norm: id(p("input_layernorm.weight"))?,
                q_proj: id(p("self_attn.q_proj.weight"))?,
                k_proj: id(p("self_attn.k_proj.weight"))?,
                v_proj: id(p("self_attn.v_proj.weight"))?,
                o_proj: id(p("self_attn.o_proj.weight"))?,
                q_bias: opt(p("self_attn.q_proj.bias"), config.qkv_bias)?,
                k_bias: opt(p("self_attn.k_proj.bias"), config.qkv_bias)?,
                v_bias: opt(p("self_attn.v_proj.bias"), config.qkv_bias)?,
                o_bias: opt(p("self_attn.o_proj.bias"), config.o_bias)?,
                q_norm: opt(p("self_attn.q_norm.weight"), config.qk_norm())?,
                k_norm: opt(p("self_attn.k_norm.weight"), config.qk_norm())?,
                post_norm: id(p("post_attention_layernorm.weight"))?,
                gate_proj: id(p("mlp.gate_proj.weight"))?,
                up_proj: id(p("mlp.up_proj.weight"))?,
                down_proj: id(p("mlp.down_proj.weight"))?,
                adapters: [None; 7],
            });
        }
        let embed = id("model.embed_tokens.weight".into())?;
        let lm_head = if config.tie_word_embeddings {
            embed
        } else {
            id("lm_head.weight".into())?
        };
        Ok(Llama {
            final_norm: id("model.norm.weight".into())?,
            embed,
            lm_head,
            blocks,
            config,
            params,
            embed_rows: None,
            head_rows: None,
        })
    }

    /// Writes `dir/config.json` and `dir/model.safetensors` (HF names; a tied model writes no
    /// `lm_head.weight`), a directory transformers' `from_pretrained` loads. A model carrying
    /// adapters is refused: writing its base alone would silently drop what was trained.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        if self.has_adapters() {
            return Err(Error::config(
                format!("{}: this model carries adapters; its base alone is not the model", dir.display()),
                "save the adapter (lora::save_adapter) or the merged model (lora::merged(&model)?.save(dir))",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let config_path = dir.join("config.json");
        let text = serde_json::to_string_pretty(&self.config.to_json())
            .map_err(|e| Error::format(&config_path, e.to_string()))?;
        crate::files::write_atomic(&config_path, (text + "\n").as_bytes())?;
        let ids: Vec<ParamId> = expected_tensors(&self.config)
            .iter()
            .map(|(name, _)| {
                self.params
                    .id(name)
                    .ok_or_else(|| Error::config(format!("parameter `{name}` is missing"), ""))
            })
            .collect::<Result<_>>()?;
        save_params(&self.params, &ids, dir.join("model.safetensors"))
    }

    pub fn embed_id(&self) -> ParamId {
        self.embed
    }

    pub fn lm_head_id(&self) -> ParamId {
        self.lm_head
    }

    pub fn final_norm_id(&self) -> ParamId {
        self.final_norm
    }

    pub fn blocks(&self) -> &[BlockParams] {
        &self.blocks
    }

    /// Puts `adapter` (or none) on projection `proj` of block `layer` (0-based). Its
    /// parameters must already be in `self.params` (see `crate::lora`).
    pub fn set_adapter(
        &mut self,
        layer: usize,
        proj: Proj,
        adapter: Option<LowRank>,
    ) -> Result<()> {
        let n = self.blocks.len();
        let block = self.blocks.get_mut(layer).ok_or(Error::Index {
            op: "Llama::set_adapter",
            index: layer as i64,
            bound: n,
        })?;
        block.adapters[proj as usize] = adapter;
        Ok(())
    }

    /// Whether any projection has a low-rank adapter or any matrix trainable token rows.
    pub fn has_adapters(&self) -> bool {
        let low_rank = self
            .blocks
            .iter()
            .any(|b| b.adapters.iter().any(Option::is_some));
        low_rank || self.embed_rows.is_some() || self.head_rows.is_some()
    }

    /// Trainable rows of the embedding; a tied head uses the same rows.
    pub fn embed_rows(&self) -> Option<&TokenRows> {
        self.embed_rows.as_ref()
    }

    /// Trainable rows of an untied LM head (always None when tied).
    pub fn head_rows(&self) -> Option<&TokenRows> {
        self.head_rows.as_ref()
    }

    /// Sets the trainable rows of the embedding (`head = false`) or of the untied LM head.
    pub fn set_token_rows(&mut self, head: bool, rows: Option<TokenRows>) -> Result<()> {
        if head && self.lm_head == self.embed && rows.is_some() {
            return Err(Error::config(
                "trainable rows of a tied LM head",
                "the head of a tied model shares the embedding's rows: set those instead",
            ));
        }
        match head {
            true => self.head_rows = rows,
            false => self.embed_rows = rows,
        }
        Ok(())
    }

    /// The trainable rows the LM head's logits use: the embedding's when tied.
    fn logit_rows(&self) -> Option<&TokenRows> {
        match self.lm_head == self.embed {
            true => self.embed_rows.as_ref(),
            false => self.head_rows.as_ref(),
        }
    }

    /// Norm scales and biases: the parameters conventionally excluded from weight decay.
    pub fn no_decay_ids(&self) -> Vec<ParamId> {
        self.params
            .ids()
            .filter(|&id| {
                let n = self.params.name(id);
                n.ends_with("norm.weight") || n.ends_with(".bias")
            })
            .collect()
    }

    /// Grows the vocabulary to `new_vocab` (e.g. to add item tokens). Old rows are unchanged; each
    /// new row of the embedding (and of an untied head) is the mean of the existing rows plus
    /// Normal(0, (0.01 * RMS of the existing entries)^2) noise from `seed`, so new tokens start
    /// where an average token sits and are not identical to each other.
    pub fn resize_vocab(&mut self, new_vocab: usize, seed: u64) -> Result<()> {
        let old = self.config.vocab_size;
        if new_vocab < old {
            return Err(Error::config(
                format!("resize_vocab: cannot shrink the vocabulary from {old} to {new_vocab}"),
                "only growing is supported (removing rows would renumber tokens)",
            ));
        }
        let mut rng = Rng::new(seed);
        let mut targets = vec![self.embed];
        if self.lm_head != self.embed {
            targets.push(self.lm_head);
        }
        for id in targets {
            let old = self.params.value(id);
            // The grown matrix keeps the old one's storage precision (a half-precision base
            // stays half precision; for f32 this is a shared clone).
            let grown = grow_rows(old, new_vocab, &mut rng)?.to_dtype(old.dtype());
            self.params.replace(id, grown);
        }
        self.config.vocab_size = new_vocab;
        Ok(())
    }

    /// Runs the decoder on `input`; logits only for the flat rows `logit_rows` (b*T + t) when
    /// given, otherwise for every position.
    pub fn forward(
        &self,
        tape: &mut Tape,
        input: &BatchInput,
        logit_rows: Option<&[usize]>,
    ) -> Result<ForwardOutput> {
        let BlockOutputs { hidden, head } = self.forward_blocks(tape, input)?;
        let last = *hidden
            .last()
            .expect("hidden holds the embedding output at least");
        let logits = self.apply_head(tape, head, last, logit_rows)?;
        Ok(ForwardOutput {
            hidden,
            logits,
            head,
        })
    }

    /// The embedding and every block on `input`, without the final norm and head.
    pub fn forward_blocks(&self, tape: &mut Tape, input: &BatchInput) -> Result<BlockOutputs> {
        self.check_input(input)?;
        let (b, t, d) = (input.batch, input.seq, self.config.hidden_size);
        let default_positions: Vec<usize>;
        let positions = match &input.positions {
            Some(p) => p.as_slice(),
            None => {
                default_positions = (0..t).collect();
                &default_positions
            }
        };
        let key_valid = input.key_valid.as_deref();

        let embedded = self.embed(tape, &input.ids, b, t)?;
        let mut h = embedded.h; // (B,T,D)
        let mut hidden = Vec::with_capacity(self.blocks.len() + 1);
        hidden.push(h);
        for (l, block) in self.blocks.iter().enumerate() {
            // One dropout stream per block (and, inside, per projection).
            let seed = input.dropout_seed.map(|s| Rng::stream_seed(s, l as u64));
            let ctx = BlockInput {
                positions,
                key_valid,
                dropout_seed: seed,
            };
            h = self.block(tape, block, h, &ctx, None)?; // (B,T,D)
            hidden.push(h);
        }
        debug_assert_eq!(tape.shape(h), &[b, t, d]);
        let head = self.head_vars(tape, &embedded);
        Ok(BlockOutputs { hidden, head })
    }

    /// The token embeddings of `ids` (B, T): the table's rows, with trainable token rows (if
    /// any) in place of the frozen ones.
    fn embed(&self, tape: &mut Tape, ids: &[u32], b: usize, t: usize) -> Result<Embedded> {
        let table = tape.weight(&self.params, self.embed);
        let h = tape.embedding(table, ids, &[b, t])?; // (B,T,D)
        let Some(token_rows) = &self.embed_rows else {
            return Ok(Embedded {
                table,
                rows: None,
                h,
            });
        };
        let d = self.config.hidden_size;
        let delta = tape.param(&self.params, token_rows.delta); // (n, D)
        let flat = tape.reshape(h, &[b * t, d])?;
        let flat = token_rows.embed(tape, flat, delta, ids)?; // (B*T, D)
        Ok(Embedded {
            table,
            rows: Some(delta),
            h: tape.reshape(flat, &[b, t, d])?,
        })
    }

    /// The embedding output (B, T, D) of `ids` (what the KV-cache forward starts from).
    pub(super) fn embed_ids(
        &self,
        tape: &mut Tape,
        ids: &[u32],
        b: usize,
        t: usize,
    ) -> Result<Var> {
        Ok(self.embed(tape, ids, b, t)?.h)
    }

    /// One decoder block: pre-norm attention and pre-norm SwiGLU MLP, each added to the residual.
    /// With a `cache`, the block's keys and values are appended to the cached ones of earlier
    /// positions and attention runs over all of them (decoding; see `kv_cache.rs`).
    pub(super) fn block(
        &self,
        tape: &mut Tape,
        p: &BlockParams,
        x: Var, // (B,T,D)
        ctx: &BlockInput,
        cache: Option<&mut super::kv_cache::LayerKv>,
    ) -> Result<Var> {
        let c = &self.config;
        let (hq, hkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);

        let n1 = self.rms_norm(tape, x, p.input_norm)?;
        let q = self.project(tape, p, Proj::Q, n1, ctx)?; // (B,T,Hq*hd)
        let k = self.project(tape, p, Proj::K, n1, ctx)?; // (B,T,Hkv*hd)
        let v = self.project(tape, p, Proj::V, n1, ctx)?; // (B,T,Hkv*hd)
        let (q, k) = match (p.q_norm, p.k_norm) {
            (Some(nq), Some(nk)) => (self.head_norm(tape, q, nq)?, self.head_norm(tape, k, nk)?),
            _ => (q, k),
        };
        let inv_freq = c.rope_inv_freq(); // (hd/2), the same for q, k and every block
        let q = tape.rope_with_inv_freq(q, hq, hd, ctx.positions, &inv_freq)?;
        let k = tape.rope_with_inv_freq(k, hkv, hd, ctx.positions, &inv_freq)?;
        let (k, v) = match cache {
            Some(cache) => cache.append(tape, k, v)?, // (B,Tc+T,Hkv*hd) each
            None => (k, v),
        };
        let a = tape.attention(q, k, v, hq, hkv, hd, true, ctx.key_valid)?; // (B,T,Hq*hd)
        let attn_out = self.project(tape, p, Proj::O, a, ctx)?; // (B,T,D)
        let x = tape.add(x, attn_out)?;

        let n2 = self.rms_norm(tape, x, p.post_norm)?;
        let gate = self.project(tape, p, Proj::Gate, n2, ctx)?; // (B,T,F)
        let up = self.project(tape, p, Proj::Up, n2, ctx)?; // (B,T,F)
        let inner = tape.swiglu(gate, up)?; // silu(gate) * up, (B,T,F)
        let mlp_out = self.project(tape, p, Proj::Down, inner, ctx)?; // (B,T,D)
        tape.add(x, mlp_out)
    }

    /// Projection `proj` of a block on `x`: `x W^T (+ bias)`, plus its low-rank update when
    /// the projection has an adapter.
    fn project(
        &self,
        tape: &mut Tape,
        p: &BlockParams,
        proj: Proj,
        x: Var,
        ctx: &BlockInput,
    ) -> Result<Var> {
        let w = tape.weight(&self.params, p.weight(proj));
        let bias = p.bias(proj).map(|id| tape.param(&self.params, id));
        let Some(adapter) = p.adapter(proj) else {
            return tape.linear(x, w, bias);
        };
        let seed = ctx.dropout_seed.map(|s| Rng::stream_seed(s, proj as u64));
        adapter.project(tape, &self.params, x, (w, bias), seed)
    }

    fn rms_norm(&self, tape: &mut Tape, x: Var, weight: ParamId) -> Result<Var> {
        let w = tape.param(&self.params, weight);
        tape.rms_norm(x, w, self.config.rms_norm_eps)
    }

    /// Qwen3's RMSNorm of every head of q or k ((B,T,H*hd) in and out), before RoPE.
    fn head_norm(&self, tape: &mut Tape, x: Var, weight: ParamId) -> Result<Var> {
        let w = tape.param(&self.params, weight);
        let (hd, eps) = (self.config.head_dim, self.config.rms_norm_eps);
        super::qk_norm::per_head_rms_norm(tape, x, w, hd, eps)
    }

    /// Fetches the final norm and LM head; a tied head reuses the embedding's tape leaves (table
    /// and trainable rows), so the shared matrix gets both gradient contributions on one node.
    fn head_vars(&self, tape: &mut Tape, embedded: &Embedded) -> HeadVars {
        let norm = tape.param(&self.params, self.final_norm);
        if self.lm_head == self.embed {
            return HeadVars {
                norm,
                weight: embedded.table,
                rows: embedded.rows,
            };
        }
        HeadVars {
            norm,
            weight: tape.weight(&self.params, self.lm_head),
            rows: self
                .head_rows
                .as_ref()
                .map(|r| tape.param(&self.params, r.delta)),
        }
    }

    /// Final norm + LM head on `h` ((B,T,D) or (N,D)), fetching the head parameters onto `tape`.
    /// `rows` selects flat rows of h seen as (B*T, D). Returns (rows, V).
    pub fn head(&self, tape: &mut Tape, h: Var, rows: Option<&[usize]>) -> Result<Var> {
        let norm = tape.param(&self.params, self.final_norm);
        let weight = tape.weight(&self.params, self.lm_head);
        let token_rows = self.logit_rows().map(|r| tape.param(&self.params, r.delta));
        let head = HeadVars {
            norm,
            weight,
            rows: token_rows,
        };
        self.apply_head(tape, head, h, rows)
    }

    /// Logit lens of block `layer` (0 = embedding output, L = last block, whose lens equals the
    /// model's logits): z^l = W N(h^l), on the same head leaves as the forward's logits.
    pub fn lens(
        &self,
        tape: &mut Tape,
        out: &ForwardOutput,
        layer: usize,
        rows: Option<&[usize]>,
    ) -> Result<Var> {
        let h = *out.hidden.get(layer).ok_or(Error::Index {
            op: "Llama::lens",
            index: layer as i64,
            bound: out.hidden.len(),
        })?;
        self.apply_head(tape, out.head, h, rows)
    }

    /// Final norm + LM head with already-fetched parameters. Rows are selected before the norm
    /// (it acts row by row), so unselected positions cost nothing.
    pub fn apply_head(
        &self,
        tape: &mut Tape,
        head: HeadVars,
        h: Var,
        rows: Option<&[usize]>,
    ) -> Result<Var> {
        let d = self.config.hidden_size;
        let shape = tape.shape(h).to_vec();
        if shape.last() != Some(&d) {
            return Err(Error::shape(
                "Llama::head",
                format!("hidden states {shape:?} do not end in hidden_size {d}"),
            ));
        }
        let n: usize = shape.iter().product::<usize>() / d;
        let mut flat = tape.reshape(h, &[n, d])?; // (B*T, D)
        if let Some(rows) = rows {
            flat = tape.index_select(flat, rows)?; // (rows, D)
        }
        let normed = tape.rms_norm(flat, head.norm, self.config.rms_norm_eps)?;
        let logits = tape.linear(normed, head.weight, None)?; // (rows, V)
        match (self.logit_rows(), head.rows) {
            (Some(token_rows), Some(delta)) => token_rows.logits(tape, logits, normed, delta),
            _ => Ok(logits),
        }
    }

    /// Final norm + the LM head restricted to the token ids `columns`: h (n, D) -> (n, C)
    /// logits, column j = token `columns[j]`. Only those rows of the head weight are read (and
    /// receive gradient), so a head over C tokens costs C/V of the full one.
    pub fn apply_head_columns(
        &self,
        tape: &mut Tape,
        head: HeadVars,
        h: Var,
        columns: &[usize],
    ) -> Result<Var> {
        let token_rows = self.logit_rows().is_some() && head.rows.is_some();
        if token_rows || tape.value(head.weight).dtype() != DType::F32 {
            // Trainable token rows (LoRA) overwrite logit columns after the product, and a
            // half-precision head is read a tile at a time: compute the head whole, then pick
            // the columns (correct, without the saving).
            let full = self.apply_head(tape, head, h, None)?; // (n, V)
            let n = tape.shape(full)[0];
            let idx: Vec<usize> = (0..n).flat_map(|_| columns.iter().copied()).collect();
            return tape.gather_last(full, &idx, columns.len()); // (n, C)
        }
        let normed = tape.rms_norm(h, head.norm, self.config.rms_norm_eps)?; // (n, D)
        let weight = tape.index_select(head.weight, columns)?; // (C, D)
        tape.linear(normed, weight, None) // (n, C)
    }

    /// Mean next-token cross-entropy over the labelled positions of `labels` (B*T, -100 =
    /// ignored), computing logits only where a label is predicted. Returns the loss and the
    /// forward output, whose `logits` hold exactly those rows (in increasing b*T + t order).
    pub fn lm_loss(
        &self,
        tape: &mut Tape,
        input: &BatchInput,
        labels: &[i64],
    ) -> Result<(Var, ForwardOutput)> {
        let targets = shifted_targets(labels, input.batch, input.seq)?;
        let rows: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] != -100).collect();
        if rows.is_empty() {
            return Err(Error::config(
                "lm_loss: no position has a label to predict",
                "labels must hold at least one id (not -100) after the first position of a row",
            ));
        }
        let out = self.forward(tape, input, Some(&rows))?;
        let picked: Vec<i64> = rows.iter().map(|&i| targets[i]).collect();
        let loss = tape.cross_entropy(out.logits, &picked)?;
        Ok((loss, out))
    }

    fn check_input(&self, input: &BatchInput) -> Result<()> {
        let (b, t) = (input.batch, input.seq);
        if input.ids.len() != b * t || b == 0 || t == 0 {
            return Err(Error::shape(
                "Llama::forward",
                format!("{} ids for batch {b} x seq {t}", input.ids.len()),
            ));
        }
        if let Some(&bad) = input
            .ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(Error::Index {
                op: "Llama::forward (token id)",
                index: bad as i64,
                bound: self.config.vocab_size,
            });
        }
        if let Some(v) = &input.key_valid {
            if v.len() != b * t {
                return Err(Error::shape(
                    "Llama::forward",
                    format!("key_valid has {} entries for batch {b} x seq {t}", v.len()),
                ));
            }
        }
        if let Some(p) = &input.positions {
            if p.len() != t && p.len() != b * t {
                return Err(Error::shape(
                    "Llama::forward",
                    format!(
                        "{} positions for batch {b} x seq {t} (need seq or batch*seq)",
                        p.len()
                    ),
                ));
            }
        }
        if let Some(w) = self.config.sliding_window {
            if t > w {
                return Err(Error::config(
                    format!("sequence length {t} exceeds the sliding window {w} of this config"),
                    "only full causal attention is implemented; use sequences of at most the window",
                ));
            }
        }
        Ok(())
    }
}

/// Checkpoint tensors the architecture does not use: refusing them catches a wrong model_type
/// (e.g. Qwen3's q_norm) instead of silently ignoring part of the model.
fn refuse_unexpected_tensors(ckpt: &Checkpoint, expected: &[(String, Vec<usize>)]) -> Result<()> {
    let expected: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    for name in ckpt.names() {
        let known = expected.contains(name.as_str())
            || name.ends_with("rotary_emb.inv_freq") // a buffer old checkpoints saved
            || name == "lm_head.weight"; // tied configs may still ship the (identical) head
        if !known {
            let file = ckpt.file_of(&name).map(|f| f.path().to_path_buf());
            return Err(Error::format(
                file.unwrap_or_else(|| ckpt.dir().to_path_buf()),
                format!(
                    "tensor `{name}` is not part of this architecture (check model_type in config.json)"
                ),
            ));
        }
    }
    Ok(())
}

/// Checks the config's layer count against the blocks the checkpoint holds (HF names
/// `model.layers.N.*`) before any per-layer work: a corrupt count must not drive allocations
/// (a `num_hidden_layers` of 10^6 used to build nine million expected names before failing).
pub fn check_layer_count<'a>(
    config: &LlamaConfig,
    hf_names: impl Iterator<Item = &'a str>,
    origin: &Path,
) -> Result<()> {
    let blocks: HashSet<usize> = hf_names
        .filter_map(|n| {
            n.strip_prefix("model.layers.")?
                .split('.')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    if blocks.len() != config.num_hidden_layers {
        return Err(Error::format(
            origin,
            format!(
                "the config says {} layers but the weights hold tensors of {} blocks",
                config.num_hidden_layers,
                blocks.len()
            ),
        ));
    }
    Ok(())
}

/// `w` (V,D) grown to (new_rows, D): old rows copied, new rows = mean row + small noise.
fn grow_rows(w: &Tensor, new_rows: usize, rng: &mut Rng) -> Result<Tensor> {
    let (rows, d) = (w.shape()[0], w.last_dim());
    let old = w.to_vec();
    let mut mean = vec![0.0f64; d];
    for row in old.chunks(d) {
        mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let var = old.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>() / old.len().max(1) as f64;
    let noise_std = 0.01 * var.sqrt() as f32;
    let mut data = old;
    data.reserve((new_rows - rows) * d);
    for _ in rows..new_rows {
        data.extend(mean.iter().map(|&m| m as f32 + noise_std * rng.normal()));
    }
    Tensor::from_vec(data, &[new_rows, d]) // (new_rows, D)
}
