//! Bench support (above `model/`: it uses the optimizer and the ILRec step). Throughput of the
//! decoder on random weights, for BENCHMARKS.md and the `bench` binary:
//! tokens per second of a forward (no gradients recorded) and of a training step's
//! forward + backward (all-row logits, next-token loss, gradients added into the parameters).

use crate::autograd::profile;
use crate::error::Result;
use crate::ilrec::loss::{ItemVocab, ObjectiveWeights, ResponsePosition};
use crate::ilrec::negatives::Ensemble;
use crate::ilrec::step::{mine_negatives, stacked_lens, MiningRow};
use crate::model::config::LlamaConfig;
use crate::model::llama::{causal_lm_loss, shifted_targets, BatchInput, ForwardOutput, Llama};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::{Tape, Var};
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

/// (forward tokens/s, forward+backward tokens/s) of a randomly initialised `cfg` on random ids,
/// batch x seq tokens per step, averaged over `steps` timed steps after one warm-up step each.
pub fn time_forward_backward(
    cfg: &LlamaConfig,
    batch: usize,
    seq: usize,
    steps: usize,
) -> Result<(f64, f64)> {
    let mut model = Llama::from_config(cfg.clone(), 0)?;
    let mut rng = Rng::new(1);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let labels: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    let input = BatchInput::new(ids, batch, seq)?;
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

/// What `bench train-step` optimises: plain next-token cross-entropy, or ILRec's objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepObjective {
    /// HF's causal-LM loss: shifted cross-entropy, mean over every position.
    Sft,
    /// The SFT loss on every position plus ILRec's CPO + CRR + CPD terms on a response subset
    /// (see [`ILREC_RESPONSE_POSITIONS`]): the extra cost ILRec adds to the same step.
    Ilrec,
}

/// Response positions per row for the ILRec step: the last 8 positions of each row, about one
/// item's SID codes + EOS in a recommendation prompt. ILRec's lens terms are computed only there.
pub const ILREC_RESPONSE_POSITIONS: usize = 8;

/// Layers below the top whose logit lens feeds ILRec (the 4 below the last block).
pub const ILREC_LENS_LAYERS: usize = 4;

/// Timing of `steps` training steps (forward, backward, clip, AdamW), after one warm-up step.
#[derive(Clone, Debug)]
pub struct TrainStepReport {
    pub steps: usize,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub ms_per_step_max: f64,
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
/// `6 * N_block * B*T + 6 * B*T * D * V + 12 * L * B * T^2 * Dq`
pub fn train_step_flops(cfg: &LlamaConfig, batch: usize, seq: usize) -> f64 {
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
    6.0 * per_block * l * tokens + 6.0 * tokens * d * v + 12.0 * l * tokens * seq as f64 * q
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
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Times the training step of a randomly initialised `cfg` (seed 0) on a fixed random batch
/// (seed 1) of `batch` x `seq` tokens: forward with logits at every position, the loss of
/// `objective`, backward, gradient clipping to norm 1, one AdamW step (lr 1e-4, weight decay
/// 0.01; PyTorch's other defaults). One warm-up step, then `steps` timed ones.
pub fn time_train_step(
    cfg: &LlamaConfig,
    batch: usize,
    seq: usize,
    steps: usize,
    objective: StepObjective,
) -> Result<TrainStepReport> {
    let mut model = Llama::from_config(cfg.clone(), 0)?;
    let mut rng = Rng::new(1);
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| rng.below(cfg.vocab_size) as u32)
        .collect();
    let labels: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    let input = BatchInput::new(ids, batch, seq)?;
    let mut opt = AdamW::new(AdamWConfig {
        lr: 1e-4,
        ..AdamWConfig::default()
    });
    let steps = steps.max(1);
    let mut phases = Vec::with_capacity(steps);
    let mut last_loss = 0.0;
    for step in 0..=steps {
        if step == 1 {
            // Timed steps start here; the warm-up paid for thread start and first-touch faults.
            phases.clear();
        }
        let cpu_before = process_cpu_seconds();
        let (p, loss) = train_step(&mut model, &mut opt, &input, &labels, objective)?;
        let cpu = process_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
        phases.push((p, cpu));
        last_loss = loss;
    }
    let cpu_total: Option<f64> = phases.iter().map(|(_, c)| *c).sum();
    let median = |f: &dyn Fn(&StepPhases) -> f64| {
        let mut v: Vec<f64> = phases.iter().map(|(p, _)| f(p)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let total = |p: &StepPhases| p.forward + p.backward + p.optimizer;
    let med = median(&total);
    let min = phases
        .iter()
        .map(|(p, _)| total(p))
        .fold(f64::MAX, f64::min);
    let max = phases.iter().map(|(p, _)| total(p)).fold(0.0, f64::max);
    let flops = train_step_flops(cfg, batch, seq);
    Ok(TrainStepReport {
        steps,
        ms_per_step_median: med * 1e3,
        ms_per_step_min: min * 1e3,
        ms_per_step_max: max * 1e3,
        ms_forward_median: median(&|p| p.forward) * 1e3,
        ms_backward_median: median(&|p| p.backward) * 1e3,
        ms_optimizer_median: median(&|p| p.optimizer) * 1e3,
        tokens_per_s: (batch * seq) as f64 / med,
        gflops: flops / med / 1e9,
        gflops_per_cpu_s: cpu_total
            .filter(|&c| c > 0.05)
            .map(|c| flops * steps as f64 / c / 1e9),
        peak_rss_mb: peak_rss_mb(),
        last_loss,
    })
}

/// Seconds spent in each phase of one step.
struct StepPhases {
    forward: f64,
    backward: f64,
    optimizer: f64,
}

/// One full training step; returns its phase times and the loss.
fn train_step(
    model: &mut Llama,
    opt: &mut AdamW,
    input: &BatchInput,
    labels: &[i64],
    objective: StepObjective,
) -> Result<(StepPhases, f32)> {
    let t0 = Instant::now();
    let mut tape = Tape::new();
    let out = model.forward(&mut tape, input, None)?;
    let mut loss = causal_lm_loss(&mut tape, out.logits, labels, input.batch, input.seq)?;
    if objective == StepObjective::Ilrec {
        let extra = ilrec_terms(model, &mut tape, &out, input, labels)?;
        loss = tape.add(loss, extra)?;
    }
    let loss_value = tape.value(loss).item()?;
    let t1 = Instant::now();
    let grads = tape.backward(loss)?;
    let backward_only = t1.elapsed().as_secs_f64();
    drop(tape);
    let t2 = Instant::now();
    model.params.accumulate(&grads)?;
    drop(grads);
    let t_acc = Instant::now();
    clip_grad_norm(&mut model.params, 1.0)?;
    let t_clip = Instant::now();
    opt.step(&mut model.params, opt.config.lr)?;
    model.params.zero_grad();
    let t3 = Instant::now();
    profile::record_outside("tape drop", (t2 - t1).as_secs_f64() - backward_only);
    profile::record_outside("params.accumulate", (t_acc - t2).as_secs_f64());
    profile::record_outside("clip_grad_norm", (t_clip - t_acc).as_secs_f64());
    profile::record_outside("AdamW step", (t3 - t_clip).as_secs_f64());
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    let phases = StepPhases {
        forward: secs(t0, t1),
        backward: secs(t1, t2),
        optimizer: secs(t2, t3),
    };
    Ok((phases, loss_value))
}

/// ILRec's CPO + CRR + CPD terms on the last [`ILREC_RESPONSE_POSITIONS`] positions of each row
/// (those with a next token), as in training: the final logits there (gathered from the
/// all-position logits), the logit lens of the [`ILREC_LENS_LAYERS`] blocks below the top at the
/// same rows, self-hard negatives from the lens ensemble over the whole vocabulary
/// (`Candidates::Vocab`, margin 0, tau 1), CF log-rewards all -1.0 (synthetic: a uniform item
/// distribution, so the cost is that of real rewards), CPD over the whole vocabulary (title mode)
/// at every response position but the row's last. Weights alpha = lambda = mu = 0.5, tau_r = 1.
fn ilrec_terms(
    model: &Llama,
    tape: &mut Tape,
    out: &ForwardOutput,
    input: &BatchInput,
    labels: &[i64],
) -> Result<Var> {
    let (b, t) = (input.batch, input.seq);
    let r = ILREC_RESPONSE_POSITIONS.min(t.saturating_sub(1)).max(1);
    let targets = shifted_targets(labels, b, t)?;
    // Flat rows b*T + t of the response positions (each has a next token to predict).
    let rows: Vec<usize> = (0..b)
        .flat_map(|row| (t - 1 - r..t - 1).map(move |p| row * t + p))
        .collect();
    // The final logits z at the response rows and the lens of the ILREC_LENS_LAYERS blocks
    // below the top in ONE head call, exactly as the trainer's step (`ilrec::step`): row by row
    // this is `index_select(out.logits, rows)` and the lens of each layer, but the head's weight
    // gradient (V x D, 113 MB for SmolLM2) is produced once instead of 1 + L times, and no
    // (B*T, V) gradient is scattered for z (its rows are recomputed: 2 n_t D V FLOPs).
    let top = model.config.num_hidden_layers;
    let lens_layers: Vec<usize> = (top.saturating_sub(ILREC_LENS_LAYERS)..top)
        .filter(|&l| l >= 1)
        .collect();
    let (z, lens) = stacked_lens(model, tape, out, &rows, &lens_layers, None)?;
    // Mining on the pool, one task per position, over the whole vocabulary.
    let mining_rows: Vec<MiningRow> = rows
        .iter()
        .map(|&row| MiningRow {
            target: targets[row] as u32,
            candidates: None,
        })
        .collect();
    let lens_vals: Vec<&Tensor> = lens.iter().map(|&l| tape.value(l)).collect();
    let mined = mine_negatives(
        tape.value(z),
        &lens_vals,
        &mining_rows,
        Ensemble::Mean,
        0.0,
        1.0,
    )?;
    let positions: Vec<ResponsePosition> = mined
        .into_iter()
        .zip(&mining_rows)
        .enumerate()
        .map(|(i, (negatives, row))| {
            let k = if negatives.is_empty() {
                0
            } else {
                negatives.tokens.len() + 1
            };
            ResponsePosition {
                target: row.target,
                negatives,
                crr_log_rewards: vec![-1.0; k],
                item_position: (i + 1) % r != 0,
            }
        })
        .collect();
    let weights = ObjectiveWeights {
        alpha: 0.5,
        lambda: 0.5,
        mu: 0.5,
        tau_r: 1.0,
    };
    let (loss, _terms) = tape.ilrec_objective(z, &lens, &positions, ItemVocab::All, &weights)?;
    Ok(loss)
}
