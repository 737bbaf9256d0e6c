//! One training step of the LLM on a batch, for SFT and for ILRec (ILREC.md sections 5-6), and
//! the loop that runs a stage of such steps with logging and resumable checkpoints.
//!
//! A step, for a batch of (prompt, response) examples (response = the target item's sequence in
//! the item trie: its tokens then EOS):
//! 1. forward with logits only at the response rows (the positions that predict a response
//!    token), so the full-vocabulary head never runs on prompt positions;
//! 2. the logit lens z^l = W N(h^l) of each lens layer l in S, again only at those rows;
//! 3. per row: the candidate set C = trie children of the ground-truth prefix (at the last
//!    position that is the EOS child), self-hard negatives from the lens ensemble, and the CF
//!    token rewards of K_t = N_t + {y} from SASRec's p_CF(item | the sample's history);
//! 4. the fused objective (CPO + CRR + CPD), backward, gradients accumulated into the params.
//!
//! SFT is the same path with no lens layers and alpha = lambda = mu = 0: no negatives are
//! searched and the objective is exactly the mean cross-entropy over response tokens.

use super::loss::{ItemVocab, Normalizer, ObjectiveTerms, ObjectiveWeights, ResponsePosition};
use super::negatives::{crr_tokens, Ensemble};
use super::schedule::Schedule;
use super::step::{mine_negatives, stacked_lens, MiningRow, MiningSettings};
use crate::autograd::{Grads, Params, Tape};
use crate::cf::{token_log_rewards, SasRec};
use crate::model::config::LlamaConfig;
use crate::model::llama::{BatchInput, Llama};
use crate::model::weights::{save_params, SafetensorsFile};
use crate::optim::{clip_factor, grad_norm, AdamW, AdamWConfig, CosineSchedule};
use crate::rec::ItemTrie;
use crate::report::{Progress, RunLog};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Error, Result, Var};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

/// One training example in model token ids.
#[derive(Clone, Debug)]
pub struct TrainExample {
    /// The prompt's ids (ends with `### Response:`).
    pub prompt: Vec<u32>,
    /// The target item (dataset id); its response is `trie.item_seq(target)`.
    pub target: u32,
    /// The sample's history (dataset ids), for SASRec's p_CF.
    pub history: Vec<u32>,
}

/// What the objective of a step is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct StepConfig {
    pub weights: ObjectiveWeights,
    /// S: blocks whose logit lens proposes negatives and is distilled by CPD (1..=L); empty = SFT.
    pub lens_layers: Vec<usize>,
    /// Blocks whose lens ensemble proposes the negatives when they differ from `lens_layers`
    /// (the ablation "final-layer negatives, CPD kept": `Some(vec![L])`); None = `lens_layers`.
    pub negative_layers: Option<Vec<usize>>,
    pub margin: f32,
    pub tau: f32,
    pub ensemble: Ensemble,
    pub scope: NegativesScope,
    /// CPD's item vocabulary V_item (model ids, ascending): the SID tokens in SID mode; None =
    /// the whole vocabulary (title mode).
    pub item_vocab: Option<Vec<u32>>,
    /// Seeds the dropout masks of the model's adapters (LoRA) for this step; None = no dropout.
    /// [`run_stage`] sets it per step from the stage's order seed, so a resumed stage draws the
    /// masks an uninterrupted one would. A model without adapters has no dropout either way.
    pub dropout_seed: Option<u64>,
}

/// Where self-hard negatives may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NegativesScope {
    /// The trie children of the ground-truth prefix (valid next tokens of some item; the spec).
    Trie,
    /// Every token of the vocabulary.
    Vocab,
}

impl NegativesScope {
    /// Parses `trie` or `vocab` (`--negatives-scope`).
    pub fn parse(s: &str) -> Result<NegativesScope> {
        match s {
            "trie" => Ok(NegativesScope::Trie),
            "vocab" => Ok(NegativesScope::Vocab),
            other => Err(Error::config(
                format!("--negatives-scope {other}: unknown"),
                "use trie (children of the prefix in the item trie) or vocab (every token)",
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            NegativesScope::Trie => "trie",
            NegativesScope::Vocab => "vocab",
        }
    }
}

impl StepConfig {
    /// Plain SFT: cross-entropy on the response tokens.
    pub fn sft() -> StepConfig {
        StepConfig {
            weights: ObjectiveWeights {
                alpha: 0.0,
                lambda: 0.0,
                mu: 0.0,
                tau_r: 1.0,
            },
            lens_layers: Vec::new(),
            negative_layers: None,
            margin: 0.0,
            tau: 1.0,
            ensemble: Ensemble::Mean,
            scope: NegativesScope::Trie,
            item_vocab: None,
            dropout_seed: None,
        }
    }

    fn is_sft(&self) -> bool {
        self.lens_layers.is_empty()
    }
}

/// Loss terms and sizes of one step.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepOutcome {
    pub terms: ObjectiveTerms,
    /// Input tokens (prompt + response, no padding) in the batch.
    pub tokens: usize,
}

/// How many micro-batches a batch is cut into: two for a model narrower than
/// [`CONCURRENT_BELOW_HIDDEN`] (side by side when there is a second thread); for a wider one,
/// as few as keep each part's activations (tokens x hidden x blocks) within
/// [`PART_ACTIVATIONS`]: one for the SmolLM2 benchmark step. Each part runs forward and
/// backward on its own tape; their gradients are summed in a fixed order. The count depends on
/// the model and the batch alone, never on the number of threads, so the result does not
/// depend on how many threads run it, nor on whether the parts run side by side.
///
/// Why as few as memory allows for wide models: their parts run one after the other anyway,
/// and one tape over more rows gives every product more of them (a 256-row GEMM runs below
/// the 512-row rate) and fewer sets of gradients to add (SmolLM2: each is a 540 MB pass of
/// ~43 ms, and 540 MB of peak memory): one part instead of two made the trainer's SmolLM2 step
/// 8-12% faster (BENCHMARKS.md, "One tape for the whole batch").
fn micro_batches(config: &LlamaConfig, tokens: usize, sequences: usize) -> usize {
    if config.hidden_size < CONCURRENT_BELOW_HIDDEN {
        return sequences.clamp(1, 2);
    }
    let activations = tokens * config.hidden_size * config.num_hidden_layers;
    activations
        .div_ceil(PART_ACTIVATIONS)
        .clamp(1, sequences.max(1))
}

/// The most activations (tokens x hidden x blocks) one part of a wide model's batch holds:
/// 2^24, about twice the SmolLM2 benchmark step's 512 x 576 x 30, so that a part's tape stays
/// within 1-2 GB whatever the batch (a SmolLM2 `train` batch of 16 prompts of ~150 tokens is
/// cut into 3 parts; a 1B model's, 2,048 wide and 16 blocks deep, into 5).
const PART_ACTIVATIONS: usize = 1 << 24;

/// Micro-batches (two) run side by side, each on its own thread, only for models narrower than
/// this (the presets, 32-192 wide): their products are too small for the pool to split, per-op
/// overhead dominates, and data parallelism is what uses the second core (tiny preset shape:
/// ~26 ms a step side by side against ~32 one after the other). Wider models run their parts
/// (one, unless the batch is large: [`micro_batches`]) one after the other, each with the whole
/// pool: side by side, a micro-batch thread whose `parallel_for` finds the pool busy runs its
/// GEMMs serially next to the pool's two threads (three threads on two cores), and whatever
/// one thread does between products slows the other's. That was ILRec's
/// "extra cost" on SmolLM2: its step adds little work, but the lens, mining and objective
/// phases of one micro-batch landed beside the other's backward GEMMs (BENCHMARKS.md, "ILRec
/// overhead"). Measured crossover: 192 wide faster side by side (297-300 vs 315-330 ms), 384
/// wide faster one after the other (744-749 vs 781-784 ms), and faster still as one part.
const CONCURRENT_BELOW_HIDDEN: usize = 256;

/// Whether a batch cut into `parts` runs them side by side (given a second thread): only a
/// narrow model's. A wide model's parts (more than one for a large batch) each take the whole
/// pool, one after the other: side by side, a 16-prompt SmolLM2 step (3 parts) took 7.2-7.4 s
/// and 5.7 GB instead of 5.7-5.8 s and 3.8 GB (BENCHMARKS.md, "One tape for the whole batch").
fn side_by_side(config: &LlamaConfig, parts: usize) -> bool {
    parts > 1 && config.hidden_size < CONCURRENT_BELOW_HIDDEN
}

/// Forward + objective + backward on one batch; gradients are left in `model.params`
/// (previous gradients are cleared first). `cf` is needed when lambda > 0.
pub fn compute_gradients(
    model: &mut Llama,
    batch: &[&TrainExample],
    trie: &ItemTrie,
    cf: Option<&SasRec>,
    cfg: &StepConfig,
) -> Result<StepOutcome> {
    // The means of the objective are over the whole batch, whichever part a row is in.
    let lengths: Vec<usize> = batch
        .iter()
        .map(|ex| trie.item_seq(ex.target).len())
        .collect();
    let norm = Normalizer {
        positions: lengths.iter().sum(),
        cpd_terms: lengths.iter().map(|n| n - 1).sum::<usize>() * cfg.lens_layers.len(),
    };
    let tokens: usize = batch
        .iter()
        .zip(&lengths)
        .map(|(ex, n)| ex.prompt.len() + n)
        .sum();
    let parts = micro_batches(&model.config, tokens, batch.len());
    let part_len = batch.len().div_ceil(parts).max(1);
    let parts: Vec<&[&TrainExample]> = batch.chunks(part_len).collect();
    let model_ref: &Llama = model;
    // Each micro-batch draws its own dropout masks (a stream per part).
    let part_cfgs: Vec<StepConfig> = (0..parts.len())
        .map(|i| StepConfig {
            dropout_seed: cfg.dropout_seed.map(|s| Rng::stream_seed(s, i as u64)),
            ..cfg.clone()
        })
        .collect();
    let concurrent =
        crate::cpu::pool::num_threads() > 1 && side_by_side(&model_ref.config, parts.len());
    let results: Vec<Result<(Grads, StepOutcome)>> = if concurrent {
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .iter()
                .zip(&part_cfgs)
                .map(|(part, cfg)| {
                    scope.spawn(move || part_gradients(model_ref, part, trie, cf, cfg, norm))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Autograd("a training thread panicked".into()))
                    })
                })
                .collect()
        })
    } else {
        parts
            .iter()
            .zip(&part_cfgs)
            .map(|(part, cfg)| part_gradients(model_ref, part, trie, cf, cfg, norm))
            .collect()
    };
    model.params.zero_grad();
    let mut outcome = StepOutcome::default();
    for result in results {
        let (grads, part) = result?;
        model.params.accumulate(&grads)?;
        outcome.terms.merge(&part.terms);
        outcome.tokens += part.tokens;
    }
    Ok(outcome)
}

/// Forward + objective + backward of one micro-batch; the objective's means use `norm`.
fn part_gradients(
    model: &Llama,
    batch: &[&TrainExample],
    trie: &ItemTrie,
    cf: Option<&SasRec>,
    cfg: &StepConfig,
    norm: Normalizer,
) -> Result<(Grads, StepOutcome)> {
    let responses: Vec<&[u32]> = batch.iter().map(|ex| trie.item_seq(ex.target)).collect();
    let sequences: Vec<Vec<u32>> = batch
        .iter()
        .zip(&responses)
        .map(|(ex, resp)| [ex.prompt.as_slice(), resp].concat())
        .collect();
    let tokens = sequences.iter().map(Vec::len).sum();
    let mut input = BatchInput::right_padded(&sequences, trie.eos());
    input.dropout_seed = cfg.dropout_seed;
    // Flat row b*T + t predicts token t+1: the response rows are resp_start-1 .. len-2.
    let mut rows = Vec::new();
    let mut owners = Vec::new(); // (example, response index) of each row
    for (b, ex) in batch.iter().enumerate() {
        if ex.prompt.is_empty() {
            return Err(Error::config(
                "a training prompt is empty",
                "prompts hold the instruction",
            ));
        }
        for j in 0..responses[b].len() {
            rows.push(b * input.seq + ex.prompt.len() + j - 1);
            owners.push((b, j));
        }
    }

    let mut tape = Tape::new();
    let out = model.forward_blocks(&mut tape, &input)?;
    // The lens of every layer the step reads (CPD's S, and the mining layers when they differ),
    // in one stacked head call. SID mode with trie negatives reads the lens only at the item
    // tokens (CPD over V_item; every trie child is an item token, or EOS where EOS is the
    // target): there only those columns are computed, for the final block too, and the final
    // logits z (every column) are a head call of their own. Otherwise the final block's lens is
    // z itself, and its rows go first into the same stacked call: the tied (V, D) head is then
    // packed, multiplied and given a weight gradient once a step, not twice (each row's logits
    // have the same bits either way; the head's gradient is one sum over all rows).
    let columns = lens_columns(cfg);
    let top = model.config.num_hidden_layers;
    let mining_layers = cfg.negative_layers.as_deref().unwrap_or(&cfg.lens_layers);
    let read: Vec<usize> = cfg
        .lens_layers
        .iter()
        .chain(mining_layers)
        .copied()
        .collect();
    let z_stacked = columns.is_none() && !read.is_empty();
    let mut layers: Vec<usize> = if z_stacked { vec![top] } else { Vec::new() };
    for l in read {
        if !layers.contains(&l) {
            layers.push(l);
        }
    }
    let stacked = stacked_lens(model, &mut tape, &out, &rows, &layers, columns)?;
    let z = if z_stacked {
        stacked[0]
    } else {
        model.apply_head(&mut tape, out.head, out.hidden[top], Some(&rows))? // (rows, V)
    };
    let lens_of = |l: usize| {
        layers
            .iter()
            .position(|&x| x == l)
            .map_or(z, |i| stacked[i])
    };
    let lens: Vec<Var> = cfg.lens_layers.iter().map(|&l| lens_of(l)).collect();
    let mining: Vec<Var> = mining_layers.iter().map(|&l| lens_of(l)).collect();

    let positions =
        response_positions(&tape, z, &mining, &owners, &responses, batch, trie, cf, cfg)?;
    let item_vocab = match (columns, &cfg.item_vocab) {
        (Some(tokens), _) => ItemVocab::Columns(tokens),
        (None, Some(tokens)) => ItemVocab::Tokens(tokens),
        (None, None) => ItemVocab::All,
    };
    let (loss, terms) =
        tape.ilrec_objective_part(z, &lens, &positions, item_vocab, &cfg.weights, norm)?;
    let grads = tape.backward(loss)?;
    Ok((grads, StepOutcome { terms, tokens }))
}

/// The vocabulary columns the lens is computed on: the item tokens in SID mode with trie
/// negatives (nothing reads another lens column there), else None = every column.
fn lens_columns(cfg: &StepConfig) -> Option<&[u32]> {
    match (&cfg.item_vocab, cfg.scope) {
        (Some(items), NegativesScope::Trie) => Some(items.as_slice()),
        _ => None,
    }
}

/// The per-row inputs of the objective: target, negatives, CF rewards, item/EOS flag.
#[allow(clippy::too_many_arguments)]
fn response_positions(
    tape: &Tape,
    logits: Var,
    lens: &[Var],
    owners: &[(usize, usize)],
    responses: &[&[u32]],
    batch: &[&TrainExample],
    trie: &ItemTrie,
    cf: Option<&SasRec>,
    cfg: &StepConfig,
) -> Result<Vec<ResponsePosition>> {
    let mut positions: Vec<ResponsePosition> = owners
        .iter()
        .map(|&(b, j)| ResponsePosition {
            target: responses[b][j],
            item_position: j + 1 < responses[b].len(),
            ..Default::default()
        })
        .collect();
    if !cfg.is_sft() {
        let mut rows = Vec::with_capacity(owners.len());
        for &(b, j) in owners {
            let candidates = match cfg.scope {
                NegativesScope::Trie => {
                    let node = trie.walk(&responses[b][..j]).ok_or_else(|| {
                        Error::config(
                            "a response is not a path of the item trie",
                            "responses are trie.item_seq(target)",
                        )
                    })?;
                    Some(trie.children(node).iter().map(|&(t, _)| t).collect())
                }
                NegativesScope::Vocab => None,
            };
            rows.push(MiningRow {
                target: responses[b][j],
                candidates,
            });
        }
        let lens_vals: Vec<&Tensor> = lens.iter().map(|&l| tape.value(l)).collect();
        let settings = MiningSettings {
            ensemble: cfg.ensemble,
            margin: cfg.margin,
            tau: cfg.tau,
            columns: lens_columns(cfg),
        };
        let mined = mine_negatives(tape.value(logits), &lens_vals, &rows, settings)?;
        for (pos, negatives) in positions.iter_mut().zip(mined) {
            pos.negatives = negatives;
        }
    }
    if cfg.weights.lambda > 0.0 && positions.iter().any(|p| !p.negatives.is_empty()) {
        let cf = cf.ok_or_else(|| {
            Error::config(
                "lambda > 0 needs the CF model",
                "train SASRec first or pass --lambda 0",
            )
        })?;
        let histories: Vec<&[u32]> = batch.iter().map(|ex| ex.history.as_slice()).collect();
        let p_cf = cf.probabilities(&histories)?; // (B, num_items)
        let p_cf = p_cf.data()?;
        let n_items = trie.num_items();
        for (pos, &(b, j)) in positions.iter_mut().zip(owners) {
            if pos.negatives.is_empty() {
                continue;
            }
            let k = crr_tokens(&pos.negatives, pos.target);
            let p_row = &p_cf[b * n_items..(b + 1) * n_items];
            pos.crr_log_rewards = token_log_rewards(trie, &responses[b][..j], &k, p_row)?;
        }
    }
    Ok(positions)
}

/// Everything a stage of training needs besides the model.
#[derive(Clone, Debug)]
pub struct StageConfig {
    /// `warmup`, `sft`, `ilrec`, ... (log field and checkpoint folder name).
    pub name: String,
    pub steps: usize,
    pub batch: usize,
    pub lr: f32,
    /// Linear lr warm-up steps, then cosine decay to lr / 10.
    pub warmup_steps: usize,
    pub clip_norm: f32,
    pub weight_decay: f32,
    pub schedule: Schedule,
    pub step: StepConfig,
    /// Seeds the order of the training examples (the same seed gives the same batches).
    pub order_seed: u64,
    /// Save a resumable checkpoint every this many steps (and at the end); 0 = only at the end.
    pub checkpoint_every: usize,
    /// Steps after which `validate` runs (the end is always included).
    pub validate_at: Vec<usize>,
}

/// The batches of a stage: example indices, epoch after epoch of seeded shuffles, cut into
/// `steps` batches of `batch`. A function of its arguments only, so a resumed stage sees exactly
/// the batches an uninterrupted one would.
pub fn batch_order(num_examples: usize, steps: usize, batch: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    let mut pool: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut b = Vec::with_capacity(batch);
        while b.len() < batch && num_examples > 0 {
            if pool.is_empty() {
                pool = (0..num_examples).collect();
                rng.shuffle(&mut pool);
                pool.reverse(); // pop from the back = take in shuffled order
            }
            b.push(pool.pop().unwrap_or(0));
        }
        out.push(b);
    }
    out
}

/// A model being trained with its optimizer and position in the stage.
pub struct StageState {
    pub model: Llama,
    pub optimizer: AdamW,
    /// Steps completed.
    pub step: usize,
}

impl StageState {
    /// A fresh optimizer (norms and biases not decayed) on `model`.
    pub fn start(model: Llama, cfg: &StageConfig) -> StageState {
        let mut optimizer = AdamW::new(AdamWConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..AdamWConfig::default()
        });
        optimizer.set_no_decay(model.no_decay_ids());
        optimizer.allocate_state(&model.params);
        StageState {
            model,
            optimizer,
            step: 0,
        }
    }
}

/// Where a stage's checkpoint lives and what it holds.
pub struct StageCheckpoint {
    pub dir: PathBuf,
}

impl StageCheckpoint {
    pub fn new(dir: PathBuf) -> StageCheckpoint {
        StageCheckpoint { dir }
    }

    /// Saves model, optimizer moments and `{step, log_lines, done}`; written to `<dir>.new`
    /// then moved into place, so a kill mid-save leaves the previous checkpoint whole. A model
    /// with a frozen base (LoRA) saves only its trainable parameters (`trainable.safetensors`):
    /// the base is rebuilt from the stage's start model on load.
    pub fn save(&self, state: &StageState, log_lines: usize, done: bool) -> Result<()> {
        let tmp = self.dir.with_extension("new");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        let params = &state.model.params;
        let trainable: Vec<_> = params.ids().filter(|&id| params.is_trainable(id)).collect();
        if trainable.len() == params.len() {
            state.model.save(&tmp)?;
        } else {
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            save_params(params, &trainable, tmp.join(TRAINABLE_FILE))?;
        }
        let mut moments = Params::new();
        for (name, t) in state.optimizer.state_to_tensors(&state.model.params)? {
            moments.add(&name, t, false)?;
        }
        let ids: Vec<_> = moments.ids().collect();
        save_params(&moments, &ids, tmp.join("optimizer.safetensors"))?;
        let meta = json!({"step": state.step, "log_lines": log_lines, "done": done});
        let meta_path = tmp.join("state.json");
        crate::files::write_atomic(&meta_path, meta.to_string().as_bytes())?;
        // Until the rename below, `load` finds the complete `<dir>.new` when `<dir>` is gone.
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        crate::files::commit(&tmp, &self.dir)
    }

    /// The saved state, if a complete checkpoint exists: (state, log lines, done). `start` is
    /// the model the stage started from: a checkpoint of trainable parameters only (frozen base)
    /// is put back onto it.
    pub fn load(
        &self,
        cfg: &StageConfig,
        start: &Llama,
    ) -> Result<Option<(StageState, usize, bool)>> {
        let dir = if self.dir.join("state.json").exists() {
            self.dir.clone()
        } else if self.dir.with_extension("new").join("state.json").exists() {
            self.dir.with_extension("new")
        } else {
            return Ok(None);
        };
        let meta_path = dir.join("state.json");
        let text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&meta_path, e.to_string()))?;
        let field = |k: &str| {
            meta[k]
                .as_u64()
                .ok_or_else(|| Error::format(&meta_path, format!("missing `{k}`")))
        };
        let (step, log_lines) = (field("step")? as usize, field("log_lines")? as usize);
        let done = meta["done"].as_bool().unwrap_or(false);
        let model = match dir.join(TRAINABLE_FILE).is_file() {
            true => with_trainable_from(start, &dir.join(TRAINABLE_FILE))?,
            false => Llama::from_dir(&dir)?,
        };
        let mut state = StageState::start(model, cfg);
        let moments = SafetensorsFile::open(dir.join("optimizer.safetensors"))?;
        state
            .optimizer
            .load_state(&state.model.params, |name| moments.tensor_f32(name).ok())?;
        state.step = step;
        Ok(Some((state, log_lines, done)))
    }
}

/// The checkpoint file of a model with a frozen base: its trainable parameters only.
const TRAINABLE_FILE: &str = "trainable.safetensors";

/// `start` with every trainable parameter read from `path` (each must be there, same shape).
fn with_trainable_from(start: &Llama, path: &std::path::Path) -> Result<Llama> {
    let file = SafetensorsFile::open(path)?;
    let mut model = start.clone();
    for id in model.params.ids().collect::<Vec<_>>() {
        if model.params.is_trainable(id) {
            let name = model.params.name(id).to_string();
            let value = file.tensor_f32(&name)?;
            model.params.set_value(id, value).map_err(|e| {
                Error::format(path, format!("tensor `{name}` does not fit the model: {e}"))
            })?;
        }
    }
    Ok(model)
}

/// The update that follows [`compute_gradients`]: clip the global gradient norm to
/// `clip_norm`, one AdamW step at `lr`, gradients cleared. Returns the norm before clipping.
/// A non-finite norm is an error naming the first parameter whose gradient is not finite; the
/// weights are then left as they were (no step is taken), so the last checkpoint stays the
/// run's last good state.
pub fn apply_update(
    model: &mut Llama,
    optimizer: &mut AdamW,
    clip_norm: f32,
    lr: f32,
) -> Result<f32> {
    let grad_norm = grad_norm(&model.params);
    if !grad_norm.is_finite() {
        let first = first_non_finite_gradient(&model.params).unwrap_or("none found");
        return Err(Error::Training(format!(
            "the gradient norm is not finite ({grad_norm}); first parameter with a non-finite \
             gradient: {first}"
        )));
    }
    // Clipping is applied inside the update (same bits as scaling the gradients first).
    optimizer.step_scaled(&mut model.params, lr, clip_factor(grad_norm, clip_norm))?;
    model.params.zero_grad();
    Ok(grad_norm)
}

/// The name of the first parameter (in creation order) whose gradient holds a NaN or infinity.
fn first_non_finite_gradient(params: &Params) -> Option<&str> {
    params.ids().find_map(|id| {
        let g = params.grad(id)?.data().ok()?;
        g.iter().any(|x| !x.is_finite()).then(|| params.name(id))
    })
}

/// A step whose loss is not finite stops the run: the error names the stage, the step and each
/// loss term, and says how to continue (the last checkpoint is the last good state).
fn check_finite_loss(t: &ObjectiveTerms, stage: &str, step: usize) -> Result<()> {
    if [t.total, t.ce, t.crr, t.cpd].iter().all(|x| x.is_finite()) {
        return Ok(());
    }
    Err(Error::Training(format!(
        "stage {stage}, step {step}: the loss is not finite (total {}, ce {}, crr {}, cpd {})",
        t.total, t.ce, t.crr, t.cpd
    )))
}

/// Runs the remaining steps of a stage. Every step appends a log record; at `validate_at` steps
/// `validate(model)` gives a validation NDCG@10 that is logged too; checkpoints are saved every
/// `checkpoint_every` steps and at the end.
#[allow(clippy::too_many_arguments)]
pub fn run_stage(
    state: &mut StageState,
    cfg: &StageConfig,
    examples: &[TrainExample],
    trie: &ItemTrie,
    cf: Option<&SasRec>,
    log: &mut RunLog,
    checkpoint: Option<&StageCheckpoint>,
    progress: &mut Progress,
    validate: &mut dyn FnMut(&Llama) -> Result<f64>,
) -> Result<()> {
    let order = batch_order(examples.len(), cfg.steps, cfg.batch, cfg.order_seed);
    let lr_schedule = CosineSchedule {
        base_lr: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        total_steps: cfg.steps,
        min_lr: cfg.lr * 0.1,
    };
    progress.resume_at(state.step);
    while state.step < cfg.steps {
        let started = Instant::now();
        let batch: Vec<&TrainExample> = order[state.step].iter().map(|&i| &examples[i]).collect();
        let step_cfg = StepConfig {
            weights: cfg
                .schedule
                .weights_at(state.step, cfg.steps, cfg.step.weights),
            dropout_seed: Some(Rng::stream_seed(cfg.order_seed, state.step as u64)),
            ..cfg.step.clone()
        };
        let outcome = compute_gradients(&mut state.model, &batch, trie, cf, &step_cfg)?;
        check_finite_loss(&outcome.terms, &cfg.name, state.step + 1)?;
        let lr = lr_schedule.lr(state.step);
        let grad_norm = apply_update(&mut state.model, &mut state.optimizer, cfg.clip_norm, lr)
            .map_err(|e| e.in_stage(&cfg.name, state.step + 1))?;
        state.step += 1;
        let t = outcome.terms;
        let seconds = started.elapsed().as_secs_f64();
        log.append(json!({
            "stage": cfg.name, "step": state.step, "loss": t.total, "ce": t.ce, "crr": t.crr,
            "cpd": t.cpd, "negatives_per_position": t.mean_negatives,
            "positions_with_negatives": t.positions_with_negatives, "positions": t.positions,
            "lr": lr, "grad_norm": grad_norm, "tokens_per_s": outcome.tokens as f64 / seconds.max(1e-9),
        }))?;
        progress.set_note(format!(
            "loss {:.3} neg/pos {:.2}",
            t.total, t.mean_negatives
        ));
        progress.inc(1);
        let last = state.step == cfg.steps;
        if last || cfg.validate_at.contains(&state.step) {
            let ndcg = validate(&state.model)?;
            log.append(json!({"stage": cfg.name, "step": state.step, "valid_ndcg@10": ndcg}))?;
        }
        let periodic = cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every);
        if let Some(ckpt) = checkpoint {
            if last || periodic {
                ckpt.save(state, log.len(), last)?;
            }
        }
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A narrow model's batch is cut in two whatever its size; a wide one's into as few parts
    /// as keep each within the activation budget (the SmolLM2 benchmark step: one), and never
    /// into more parts than it has sequences.
    #[test]
    fn wide_models_cut_the_batch_by_activations_narrow_ones_in_two() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/smollm2-135m.json");
        let wide = LlamaConfig::from_file(&path).unwrap();
        let per_token = wide.hidden_size * wide.num_hidden_layers;
        let fits = PART_ACTIVATIONS / per_token; // tokens that fill one part
        assert_eq!(micro_batches(&wide, 512, 4), 1);
        assert_eq!(micro_batches(&wide, fits, 16), 1);
        assert_eq!(micro_batches(&wide, fits + 1, 16), 2);
        assert_eq!(micro_batches(&wide, 5 * fits, 16), 5);
        assert_eq!(micro_batches(&wide, 100 * fits, 16), 16);
        let narrow = LlamaConfig {
            hidden_size: CONCURRENT_BELOW_HIDDEN - 1,
            ..wide.clone()
        };
        assert_eq!(micro_batches(&narrow, 100 * fits, 16), 2);
        assert_eq!(micro_batches(&narrow, 10, 1), 1);
    }

    /// Only a narrow model's parts run side by side; a wide model's several parts (a large
    /// batch) run one after the other, each with the whole pool.
    #[test]
    fn only_narrow_models_run_their_parts_side_by_side() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/smollm2-135m.json");
        let wide = LlamaConfig::from_file(&path).unwrap();
        let narrow = LlamaConfig {
            hidden_size: CONCURRENT_BELOW_HIDDEN - 1,
            ..wide.clone()
        };
        assert!(side_by_side(&narrow, 2));
        assert!(!side_by_side(&narrow, 1));
        assert!(!side_by_side(&wide, 1));
        assert!(!side_by_side(&wide, 3));
    }

    #[test]
    fn batch_order_covers_each_epoch_once_and_is_seeded() {
        let order = batch_order(5, 4, 3, 7); // 12 draws = 2 epochs + 2
        let flat: Vec<usize> = order.concat();
        let mut first: Vec<usize> = flat[..5].to_vec();
        first.sort_unstable();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        let mut second: Vec<usize> = flat[5..10].to_vec();
        second.sort_unstable();
        assert_eq!(second, vec![0, 1, 2, 3, 4]);
        assert_eq!(order, batch_order(5, 4, 3, 7));
        assert_ne!(order, batch_order(5, 4, 3, 8));
    }
}
