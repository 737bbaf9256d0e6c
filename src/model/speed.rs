//! Throughput of the decoder on random weights, for BENCHMARKS.md and the `bench` binary:
//! tokens per second of a forward (no gradients recorded) and of a training step's
//! forward + backward (all-row logits, next-token loss, gradients added into the parameters).

use super::config::LlamaConfig;
use super::llama::{causal_lm_loss, BatchInput, Llama};
use crate::error::Result;
use crate::rng::Rng;
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
        vocab_size: 49152,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        eos_token_ids: vec![2],
        max_position_embeddings: 8192,
        sliding_window: None,
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
