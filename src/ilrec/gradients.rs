//! One training step's gradients, for SFT and for ILRec (ILREC.md sections 5-6).
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
//! searched and the objective is exactly the mean cross-entropy over response tokens. The loop
//! that applies these gradients step after step is `trainer.rs`.

use super::loss::{ItemVocab, Normalizer, ObjectiveTerms, ObjectiveWeights, ResponsePosition};
use super::negatives::{crr_tokens, Ensemble};
use super::step::{mine_negatives, stacked_lens, MiningRow, MiningSettings};
use crate::autograd::{Grads, Tape};
use crate::cf::{token_log_rewards, SasRec};
use crate::model::config::LlamaConfig;
use crate::model::llama::{BatchInput, Llama};
use crate::rec::ItemTrie;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Error, Result, Var};

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
    /// [`run_stage`](super::trainer::run_stage) sets it per step from the stage's order seed, so a resumed stage draws the
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
}
