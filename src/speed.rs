//! Bench support (above `pipeline/`: it times the trainer's own step). Throughput of the
//! decoder on random weights, for BENCHMARKS.md and the `bench` binary:
//! tokens per second of a forward (no gradients recorded) and of a training step's
//! forward + backward, and the timing of whole training steps:
//!
//! - `lm`: next-token cross-entropy at every position (what `bench/pytorch_step.py` runs, the
//!   like-for-like comparison with PyTorch);
//! - `sft` / `ilrec`: the trainer's step itself (`ilrec::gradients::compute_gradients` then
//!   `apply_update`, the two calls `run_stage` makes) on a synthetic recommendation batch, with the
//!   default run's ILRec settings, so the ILRec overhead measured here is the one training pays.

use crate::autograd::profile;
use crate::cf::{SasRec, SasRecConfig};
use crate::error::Result;
use crate::ilrec::gradients::{compute_gradients, StepConfig, TrainExample};
use crate::ilrec::trainer::apply_update;
use crate::lora::LoraConfig;
use crate::model::config::LlamaConfig;
use crate::model::llama::{causal_lm_loss, BatchInput, Llama};
use crate::optim::{clip_factor, grad_norm, AdamW, AdamWConfig};
use crate::pipeline::config::PipelineConfig;
use crate::pipeline::variants::ilrec_step;
use crate::rec::ItemTrie;
use crate::rng::Rng;
use crate::tensor::DType;
use crate::Tape;
use std::time::Instant;

/// A config with SmolLM2-135M's shapes (576 wide, 30 blocks, 9 query / 3 KV heads of 64,
/// SwiGLU 1536, 49,152-token tied vocabulary, rope theta 1e5).
pub fn smollm2_135m_shape() -> LlamaConfig {
    LlamaConfig {
        model_type: "llama".into(),
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        head_dim: 64,
        rms_norm_eps: 1e-5,
        rope_theta: 100000.0,
        rope_scaling: crate::model::rope_scaling::RopeScaling::None,
        vocab_size: 49152,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        eos_token_ids: vec![2],
        max_position_embeddings: 8192,
        sliding_window: None,
        max_window_layers: None,
    }
}

/// A fixed random batch (seed 1) of `batch` x `seq` ids and its next-token labels (the ids).
fn random_lm_batch(cfg: &LlamaConfig, batch: usize, seq: usize) -> Result<(BatchInput, Vec<i64>)> {
    let mut rng = Rng::new(1);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let labels: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    Ok((BatchInput::new(ids, batch, seq)?, labels))
}

/// (forward tokens/s, forward+backward tokens/s) of a randomly initialised `cfg` on random ids,
/// batch x seq tokens per step, averaged over `steps` timed steps after one warm-up step each.
pub fn time_forward_backward(
    cfg: &LlamaConfig,
    batch: usize,
    seq: usize,
    steps: usize,
) -> Result<(f64, f64)> {
    let mut model = Llama::from_config(cfg.clone(), 0)?;
    let (input, labels) = random_lm_batch(cfg, batch, seq)?;
    let tokens = (batch * seq * steps.max(1)) as f64;

    let forward = |model: &Llama| -> Result<()> {
        let mut tape = Tape::inference();
        model.forward(&mut tape, &input, None)?;
        Ok(())
    };
    forward(&model)?;
    let start = Instant::now();
    for _ in 0..steps.max(1) {
        forward(&model)?;
    }
    let fwd = tokens / start.elapsed().as_secs_f64();

    let train_step = |model: &mut Llama| -> Result<()> {
        let mut tape = Tape::new();
        let out = model.forward(&mut tape, &input, None)?;
        let loss = causal_lm_loss(&mut tape, out.logits, &labels, batch, seq)?;
        let grads = tape.backward(loss)?;
        drop(tape);
        model.params.accumulate(&grads)?;
        model.params.zero_grad();
        Ok(())
    };
    train_step(&mut model)?;
    let start = Instant::now();
    for _ in 0..steps.max(1) {
        train_step(&mut model)?;
    }
    let fwd_bwd = tokens / start.elapsed().as_secs_f64();
    Ok((fwd, fwd_bwd))
}

/// What `bench train-step` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepObjective {
    /// HF's causal-LM loss: shifted cross-entropy, mean over every position (PyTorch's step).
    Lm,
    /// The trainer's SFT step: cross-entropy on the response tokens only.
    Sft,
    /// The trainer's ILRec step with the default run's settings (lens layers, weights, trie
    /// candidates, CF rewards from a SASRec): what ILRec adds to the SFT step.
    Ilrec,
}

impl StepObjective {
    pub fn parse(s: &str) -> Option<StepObjective> {
        match s {
            "lm" => Some(StepObjective::Lm),
            "sft" => Some(StepObjective::Sft),
            "ilrec" => Some(StepObjective::Ilrec),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StepObjective::Lm => "lm",
            StepObjective::Sft => "sft",
            StepObjective::Ilrec => "ilrec",
        }
    }
}

/// How the synthetic items of the trainer's step (`sft`, `ilrec`) are written; the response is
/// the last tokens of each row, the rest of the row is the prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyntheticItems {
    /// 7 random tokens + EOS, like a short title (title mode: CPD and the lens over every token).
    Title,
    /// 3 codes of 256 + EOS, the codes 768 token ids below EOS (SID mode, the default run's: CPD
    /// and the lens over the SID tokens only).
    Sid,
}

impl SyntheticItems {
    pub fn parse(s: &str) -> Option<SyntheticItems> {
        match s {
            "title" => Some(SyntheticItems::Title),
            "sid" => Some(SyntheticItems::Sid),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SyntheticItems::Title => "title",
            SyntheticItems::Sid => "sid",
        }
    }

    /// Response tokens per row (item tokens + EOS).
    pub fn response_tokens(self) -> usize {
        match self {
            SyntheticItems::Title => 8,
            SyntheticItems::Sid => SID_LEVELS + 1,
        }
    }
}

/// Synthetic items of the trainer's step, indexed by a trie.
const SYNTHETIC_ITEMS: usize = 256;
/// SID shape of the synthetic items: levels x codes.
const SID_LEVELS: usize = 3;
const SID_CODES: usize = 256;

/// Timing of `steps` training steps (forward, backward, clip, AdamW), after one warm-up step.
#[derive(Clone, Debug)]
pub struct TrainStepReport {
    pub steps: usize,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub ms_per_step_max: f64,
    /// Every timed step, in order (an outlier's place says whether it is a warm-up effect).
    pub ms_steps: Vec<f64>,
    /// Minor page faults of every timed step, in order (None when unknown): a step that touches
    /// memory the process never used before pays a fault per 4 KiB page, slow on a VM.
    pub faults_steps: Option<Vec<u64>>,
    /// Medians of the phases: forward + loss, backward, optimizer (accumulate, clip, AdamW).
    pub ms_forward_median: f64,
    pub ms_backward_median: f64,
    pub ms_optimizer_median: f64,
    pub tokens_per_s: f64,
    /// Model FLOPs per step / median step time ([`train_step_flops`]).
    pub gflops: f64,
    /// Model FLOPs per CPU-second of this process over the timed steps (None when unknown):
    /// what the code achieves while it holds a core, even on a shared machine.
    pub gflops_per_cpu_s: Option<f64>,
    /// Peak resident set size of the process (VmHWM), MiB.
    pub peak_rss_mb: Option<f64>,
    /// Loss of the last step (a sanity check that both implementations see the same problem).
    pub last_loss: f32,
}

/// Model FLOPs of one training step (PaLM's accounting, the same formula the PyTorch script
/// uses): 3 x forward, forward = 2 FLOPs per multiply-add of every block projection and the LM
/// head per token, plus attention's two T x T products counted in full (not halved for
/// causality): 4 * L * T * Dq per token.
///
/// `6 * N_block * B*T + 6 * H * D * V + 12 * L * B * T^2 * Dq`, H = the rows the LM head runs
/// on (`B*T` for `lm`; the response rows for the trainer's step, which skips the prompt rows).
pub fn train_step_flops(cfg: &LlamaConfig, batch: usize, seq: usize, head_rows: usize) -> f64 {
    let (d, f, v) = (
        cfg.hidden_size as f64,
        cfg.intermediate_size as f64,
        cfg.vocab_size as f64,
    );
    let (q, kv, l) = (
        cfg.q_dim() as f64,
        cfg.kv_dim() as f64,
        cfg.num_hidden_layers as f64,
    );
    let per_block = d * q + 2.0 * d * kv + q * d + 3.0 * d * f;
    let tokens = (batch * seq) as f64;
    let head = head_rows as f64;
    6.0 * per_block * l * tokens + 6.0 * head * d * v + 12.0 * l * tokens * seq as f64 * q
}

/// Peak resident set size of this process in MiB (VmHWM from /proc/self/status; Linux only).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// User + system CPU seconds of this process so far (/proc/self/stat, 10 ms ticks; Linux only).
pub fn process_cpu_seconds() -> Option<f64> {
    // utime and stime: fields 14 and 15 of the line.
    let [utime, stime] = stat_fields([14, 15])?;
    Some((utime as f64 + stime as f64) / 100.0)
}

/// Minor page faults of this process so far (/proc/self/stat field 10; Linux only).
pub fn process_minor_faults() -> Option<u64> {
    let [minflt] = stat_fields([10])?;
    Some(minflt)
}

/// Numeric fields of /proc/self/stat, numbered from 1 as proc(5) numbers them, from one read
/// of the file. Field 2, the command name, is parenthesised and may hold spaces, so fields are
/// counted after its closing parenthesis.
fn stat_fields<const N: usize>(numbers: [usize; N]) -> Option<[u64; N]> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..]; // starts at field 3
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let mut out = [0u64; N];
    for (value, n) in out.iter_mut().zip(numbers) {
        *value = fields.get(n.checked_sub(3)?)?.parse().ok()?;
    }
    Some(out)
}

/// What `bench train-step` trains: the objective, the synthetic items of the trainer's step,
/// and optionally a LoRA adapter on a frozen base.
#[derive(Clone, Copy, Debug)]
pub struct StepSetup<'a> {
    pub objective: StepObjective,
    pub items: SyntheticItems,
    /// With a config, the model is frozen and this adapter attached first (seed 0): the step
    /// trains only the adapter, dropout on.
    pub lora: Option<&'a LoraConfig>,
    /// Storage of the model's weights (bf16: a half-precision frozen base, for memory
    /// measurements; training every weight needs f32).
    pub base_dtype: DType,
}

/// Times the training step of a randomly initialised `cfg` (seed 0): `lm` on a fixed random
/// batch (seed 1) of `batch` x `seq` tokens with logits at every position; `sft` / `ilrec` on
/// the synthetic recommendation batch of `Workload::trainer` (same shape, `items`). Then gradient
/// clipping to norm 1 and one AdamW step (lr 1e-4, weight decay 0.01; PyTorch's other defaults).
/// One warm-up step, then `steps` timed ones. What is trained is `setup` ([`StepSetup`]).
pub fn time_train_step(
    cfg: &LlamaConfig,
    batch: usize,
    seq: usize,
    steps: usize,
    setup: &StepSetup<'_>,
) -> Result<TrainStepReport> {
    let StepSetup {
        objective,
        items,
        lora,
        base_dtype,
    } = *setup;
    if base_dtype != DType::F32 && lora.is_none() {
        return Err(crate::Error::config(
            "a half-precision base needs --lora",
            "full fine-tuning updates every weight in f32",
        ));
    }
    let mut model = Llama::from_config_as(cfg.clone(), 0, base_dtype)?;
    if let Some(lora) = lora {
        crate::lora::attach(&mut model, lora, 0)?;
    }
    let workload = match objective {
        StepObjective::Lm => Workload::lm(cfg, batch, seq)?,
        _ => Workload::trainer(cfg, (batch, seq), objective, items)?,
    };
    let mut opt = AdamW::new(AdamWConfig {
        lr: 1e-4,
        ..AdamWConfig::default()
    });
    opt.allocate_state(&model.params); // as the trainer does (StageState::start)
    let steps = steps.max(1);
    let mut phases = Vec::with_capacity(steps);
    let mut last_loss = 0.0;
    for step in 0..=steps {
        if step == 1 {
            // Timed steps start here; the warm-up paid for thread start and first-touch faults.
            phases.clear();
        }
        let (cpu_before, faults_before) = (process_cpu_seconds(), process_minor_faults());
        let (p, loss) = workload.step(&mut model, &mut opt)?;
        let cpu = process_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
        let faults = process_minor_faults()
            .zip(faults_before)
            .map(|(a, b)| a - b);
        phases.push((p, StepCost { cpu, faults }));
        last_loss = loss;
    }
    let head_rows = match objective {
        StepObjective::Lm => batch * seq,
        _ => batch * items.response_tokens().min(seq),
    };
    let flops = train_step_flops(cfg, batch, seq, head_rows);
    Ok(summarise(&phases, flops, batch * seq, last_loss))
}

/// What a step cost the process besides wall time (None where /proc is not readable).
struct StepCost {
    cpu: Option<f64>,
    faults: Option<u64>,
}

/// Medians, extremes and rates of the timed steps.
fn summarise(
    phases: &[(StepPhases, StepCost)],
    flops: f64,
    tokens: usize,
    last_loss: f32,
) -> TrainStepReport {
    let cpu_total: Option<f64> = phases.iter().map(|(_, c)| c.cpu).sum();
    let median = |f: &dyn Fn(&StepPhases) -> f64| {
        let mut v: Vec<f64> = phases.iter().map(|(p, _)| f(p)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let total = |p: &StepPhases| p.forward + p.backward + p.optimizer;
    let med = median(&total);
    let totals = || phases.iter().map(|(p, _)| total(p));
    TrainStepReport {
        steps: phases.len(),
        ms_per_step_median: med * 1e3,
        ms_per_step_min: totals().fold(f64::MAX, f64::min) * 1e3,
        ms_per_step_max: totals().fold(0.0, f64::max) * 1e3,
        ms_steps: totals().map(|t| t * 1e3).collect(),
        faults_steps: phases.iter().map(|(_, c)| c.faults).collect(),
        ms_forward_median: median(&|p| p.forward) * 1e3,
        ms_backward_median: median(&|p| p.backward) * 1e3,
        ms_optimizer_median: median(&|p| p.optimizer) * 1e3,
        tokens_per_s: tokens as f64 / med,
        gflops: flops / med / 1e9,
        gflops_per_cpu_s: cpu_total
            .filter(|&c| c > 0.05)
            .map(|c| flops * phases.len() as f64 / c / 1e9),
        peak_rss_mb: peak_rss_mb(),
        last_loss,
    }
}

/// Seconds spent in each phase of one step. The trainer's step (`sft`, `ilrec`) runs forward
/// and backward inside one call (`compute_gradients`: two micro-batches on two threads for a
/// narrow model, the whole batch on one tape for a wide one): its `forward` is that call and
/// its `backward` is 0.
struct StepPhases {
    forward: f64,
    backward: f64,
    optimizer: f64,
}

/// What a timed step trains on.
enum Workload {
    /// A random batch with next-token labels at every position.
    Lm { input: BatchInput, labels: Vec<i64> },
    /// The trainer's inputs: examples whose responses are items of a synthetic trie, a SASRec
    /// for the CF rewards, and the step settings (`StepConfig::sft()` or the default ILRec).
    Trainer {
        examples: Vec<TrainExample>,
        trie: ItemTrie,
        cf: Box<SasRec>, // boxed: the variants' sizes differ by ~500 bytes
        step: StepConfig,
    },
}

impl Workload {
    fn lm(cfg: &LlamaConfig, batch: usize, seq: usize) -> Result<Workload> {
        let (mut input, labels) = random_lm_batch(cfg, batch, seq)?;
        input.dropout_seed = Some(2); // training: adapters (if any) apply their dropout
        Ok(Workload::Lm { input, labels })
    }

    /// `batch` rows of `seq` tokens: a random prompt, then the response of a random item of
    /// [`SYNTHETIC_ITEMS`] written as `items` says (EOS = the last id), with a random 10-item
    /// history for SASRec. The ILRec step is the default run's (`pipeline::variants::ilrec_step`
    /// of the default config): the four blocks below the top as lens layers, alpha 0.1, lambda
    /// 0.1, mu 1, trie candidates, mean ensemble; in SID shape CPD's V_item = the SID tokens.
    fn trainer(
        cfg: &LlamaConfig,
        (batch, seq): (usize, usize),
        objective: StepObjective,
        items: SyntheticItems,
    ) -> Result<Workload> {
        let mut rng = Rng::new(1);
        let eos = (cfg.vocab_size - 1) as u32;
        let token = |rng: &mut Rng| rng.below(cfg.vocab_size - 1) as u32;
        let item_seqs = synthetic_items(cfg.vocab_size, items, &mut rng)?;
        let trie = ItemTrie::build(&item_seqs, eos)?;
        let prompt_len = seq.saturating_sub(items.response_tokens()).max(1);
        let examples = (0..batch)
            .map(|_| TrainExample {
                prompt: (0..prompt_len).map(|_| token(&mut rng)).collect(),
                target: rng.below(SYNTHETIC_ITEMS) as u32,
                history: (0..10).map(|_| rng.below(SYNTHETIC_ITEMS) as u32).collect(),
            })
            .collect();
        let cf = Box::new(SasRec::new(SasRecConfig::new(SYNTHETIC_ITEMS), 2)?);
        let item_vocab = (items == SyntheticItems::Sid).then(|| {
            let mut ids: Vec<u32> = item_seqs.iter().flatten().copied().collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        });
        let step = match objective {
            StepObjective::Ilrec => ilrec_step(
                &PipelineConfig::default(),
                cfg.num_hidden_layers,
                item_vocab,
            ),
            _ => StepConfig::sft(),
        };
        let step = StepConfig {
            dropout_seed: Some(2), // training: adapters (if any) apply their dropout
            ..step
        };
        Ok(Workload::Trainer {
            examples,
            trie,
            cf,
            step,
        })
    }

    /// One full training step; returns its phase times and the loss.
    fn step(&self, model: &mut Llama, opt: &mut AdamW) -> Result<(StepPhases, f32)> {
        match self {
            Workload::Lm { input, labels } => lm_step(model, opt, input, labels),
            Workload::Trainer {
                examples,
                trie,
                cf,
                step,
            } => {
                let t0 = Instant::now();
                let batch: Vec<&TrainExample> = examples.iter().collect();
                let outcome = compute_gradients(model, &batch, trie, Some(cf), step)?;
                let t1 = Instant::now();
                apply_update(model, opt, 1.0, opt.config.lr)?;
                let phases = StepPhases {
                    forward: (t1 - t0).as_secs_f64(),
                    backward: 0.0,
                    optimizer: t1.elapsed().as_secs_f64(),
                };
                Ok((phases, outcome.terms.total))
            }
        }
    }
}

/// The token sequences (without EOS) of [`SYNTHETIC_ITEMS`] distinct items over a vocabulary of
/// `vocab` (EOS = `vocab - 1` never appears in them).
fn synthetic_items(vocab: usize, items: SyntheticItems, rng: &mut Rng) -> Result<Vec<Vec<u32>>> {
    let sid_ids = SID_LEVELS * SID_CODES;
    if items == SyntheticItems::Sid && vocab < sid_ids + 2 {
        return Err(crate::Error::config(
            format!("bench train-step: a vocabulary of {vocab} is too small for synthetic SIDs"),
            format!(
                "use a config with at least {} tokens, or --items title",
                sid_ids + 2
            ),
        ));
    }
    let first_sid = vocab.saturating_sub(1 + sid_ids) as u32; // SID tokens sit just below EOS
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(SYNTHETIC_ITEMS);
    while out.len() < SYNTHETIC_ITEMS {
        let seq: Vec<u32> = match items {
            SyntheticItems::Title => (0..7).map(|_| rng.below(vocab - 1) as u32).collect(),
            SyntheticItems::Sid => (0..SID_LEVELS)
                .map(|l| first_sid + (l * SID_CODES + rng.below(SID_CODES)) as u32)
                .collect(),
        };
        if seen.insert(seq.clone()) {
            out.push(seq);
        }
    }
    Ok(out)
}

/// One `lm` step: forward with logits at every position, loss, backward, accumulate, clip,
/// AdamW; each phase recorded for `ILREC_PROFILE`.
fn lm_step(
    model: &mut Llama,
    opt: &mut AdamW,
    input: &BatchInput,
    labels: &[i64],
) -> Result<(StepPhases, f32)> {
    let t0 = Instant::now();
    let mut tape = Tape::new();
    let out = model.forward(&mut tape, input, None)?;
    let loss = causal_lm_loss(&mut tape, out.logits, labels, input.batch, input.seq)?;
    let loss_value = tape.value(loss).item()?;
    let t1 = Instant::now();
    let grads = tape.backward(loss)?;
    let backward_only = t1.elapsed().as_secs_f64();
    drop(tape);
    let t2 = Instant::now();
    model.params.accumulate(&grads)?;
    drop(grads);
    let t_acc = Instant::now();
    let norm = grad_norm(&model.params); // clipping to 1.0 happens inside the AdamW update
    let t_clip = Instant::now();
    opt.step_scaled(&mut model.params, opt.config.lr, clip_factor(norm, 1.0))?;
    model.params.zero_grad();
    let t3 = Instant::now();
    profile::record_outside("tape drop", (t2 - t1).as_secs_f64() - backward_only);
    profile::record_outside("params.accumulate", (t_acc - t2).as_secs_f64());
    profile::record_outside("grad norm", (t_clip - t_acc).as_secs_f64());
    profile::record_outside("AdamW step", (t3 - t_clip).as_secs_f64());
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    let phases = StepPhases {
        forward: secs(t0, t1),
        backward: secs(t1, t2),
        optimizer: secs(t2, t3),
    };
    Ok((phases, loss_value))
}
