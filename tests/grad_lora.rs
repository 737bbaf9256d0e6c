//! The ops LoRA and trainable token rows add, against finite differences: `lora_linear`,
//! `overwrite_rows`, `overwrite_columns` (directly, with GradCheck), and the adapted decoder as
//! a whole (the low-rank update with dropout on, trainable rows of the embedding and of the
//! head): the gradient of the loss with respect to sampled entries of A, B and the token rows
//! equals the central difference of the loss. `lora_linear` also equals, bit for bit, the same
//! arithmetic written as separate ops (x's gradient up to the order of one addition when x has
//! another consumer). Plus the ops' shape and index errors.

mod common;

use common::{fixture, randn};
use ilrec::autograd::{GradCheck, LowRankUpdate, ParamId};
use ilrec::lora::{attach, load_adapter, LoraConfig, TrainableTokens};
use ilrec::model::adapter::{LowRank, Proj};
use ilrec::model::llama::{BatchInput, Llama};
use ilrec::rng::Rng;
use ilrec::{Error, Tape, Tensor, Var};

/// `lora_linear` on inputs `v` = [x, w, a, b, (bias)], dropout p from seed 3 (p = 0: none).
fn lora_linear_of(t: &mut Tape, v: &[Var], scale: f32, p: f32) -> ilrec::Result<Var> {
    let mut rng = Rng::new(3);
    let update = LowRankUpdate {
        a: v[2],
        b: v[3],
        scale,
        dropout: (p > 0.0).then_some((p, &mut rng)),
    };
    t.lora_linear(v[0], v[1], v.get(4).copied(), update)
}

#[test]
fn lora_linear_gradients_match_finite_differences() {
    // x (2, 3, 7), w (5, 7), A (2, 7), B (5, 2), bias (5): every input trains here, the frozen
    // weight's case is the same code with its gradient skipped.
    let shapes: [&[usize]; 5] = [&[2, 3, 7], &[5, 7], &[2, 7], &[5, 2], &[5]];
    for (p, with_bias) in [(0.0, false), (0.4, true)] {
        let inputs: Vec<(Tensor, bool)> = shapes[..4 + with_bias as usize]
            .iter()
            .enumerate()
            .map(|(i, s)| (randn(s, 20 + i as u64), true))
            .collect();
        GradCheck::default()
            .run(&inputs, |t, v| lora_linear_of(t, v, 1.5, p))
            .unwrap();
    }
}

#[test]
fn lora_linear_is_the_separate_ops_bit_for_bit() {
    // The arithmetic written as dropout, linear, scale, linear, add (how the decoder ran LoRA
    // before the op existed). Ranks on both sides of one GEMM depth block (the update added by
    // the GEMM, or formed alone and added). With x read by another projection too, the op adds
    // its whole dx onto x's running gradient at once, where the separate ops added their two
    // parts one after the other: there dx may differ by rounding, and only there.
    for (r, k, n) in [(4, 40, 24), (300, 320, 24)] {
        let inputs = [
            randn(&[6, k], 1),
            randn(&[n, k], 2),
            randn(&[r, k], 3),
            randn(&[n, r], 4),
            randn(&[n, k], 5),
        ];
        let run = |fused: bool, other_consumer: bool| {
            let mut t = Tape::new();
            let v: Vec<Var> = inputs.iter().map(|x| t.leaf(x.clone(), true)).collect();
            let y = if fused {
                lora_linear_of(&mut t, &v[..4], 0.5, 0.3).unwrap()
            } else {
                let base = t.linear(v[0], v[1], None).unwrap();
                let xd = t.dropout(v[0], 0.3, &mut Rng::new(3)).unwrap();
                let h = t.linear(xd, v[2], None).unwrap();
                let h = t.scale(h, 0.5).unwrap();
                let u = t.linear(h, v[3], None).unwrap();
                t.add(base, u).unwrap()
            };
            // x's other consumer, recorded later, so its gradient reaches x first (as V's
            // projection comes before K's and Q's on their shared input).
            let total = if other_consumer {
                let other = t.linear(v[0], v[4], None).unwrap();
                t.add(y, other).unwrap()
            } else {
                y
            };
            let value = t.value(total).to_vec();
            let grads = t.backward_from(total, randn(&[6, n], 6)).unwrap();
            let mut bits: Vec<Vec<u32>> = vec![value.iter().map(|f| f.to_bits()).collect()];
            for &var in &v[..4] {
                let g = grads.of(var).unwrap().to_vec();
                bits.push(g.iter().map(|f| f.to_bits()).collect());
            }
            bits
        };
        let (fused, separate) = (run(true, false), run(false, false));
        for (i, what) in ["output", "dx", "dW", "dA", "dB"].iter().enumerate() {
            assert!(fused[i] == separate[i], "r {r}: {what} differs");
        }
        let (fused, separate) = (run(true, true), run(false, true));
        for (i, what) in ["output", "dx", "dW", "dA", "dB"].iter().enumerate() {
            if *what != "dx" {
                assert!(
                    fused[i] == separate[i],
                    "r {r}, two consumers: {what} differs"
                );
                continue;
            }
            for (j, (&a, &b)) in fused[i].iter().zip(&separate[i]).enumerate() {
                let (a, b) = (f32::from_bits(a), f32::from_bits(b));
                let tolerance = 1e-5 * (1.0 + b.abs());
                assert!(
                    (a - b).abs() <= tolerance,
                    "r {r}, two consumers: dx[{j}] {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn overwrite_rows_gradients_match_finite_differences() {
    let (base, src) = (randn(&[6, 5], 1), randn(&[3, 5], 2));
    let worst = GradCheck::default()
        .run(&[(base, true), (src, true)], |t, v| {
            t.overwrite_rows(v[0], v[1], &[4, 0, 2])
        })
        .unwrap();
    assert!(worst.is_finite());
    // No row given: the output is the base, and src (0, D) is valid.
    let mut tape = Tape::new();
    let b = tape.leaf(randn(&[2, 3], 3), true);
    let s = tape.leaf(ilrec::Tensor::zeros(&[0, 3]), true);
    let out = tape.overwrite_rows(b, s, &[]).unwrap();
    assert_eq!(tape.value(out).to_vec(), tape.value(b).to_vec());
}

#[test]
fn overwrite_columns_gradients_match_finite_differences() {
    let (base, src) = (randn(&[4, 7], 4), randn(&[4, 2], 5));
    GradCheck::default()
        .run(&[(base, true), (src, true)], |t, v| {
            t.overwrite_columns(v[0], v[1], &[6, 1])
        })
        .unwrap();
}

#[test]
fn overwrite_errors_name_the_problem() {
    let mut tape = Tape::new();
    let base = tape.leaf(randn(&[3, 4], 6), false);
    let src = tape.leaf(randn(&[2, 4], 7), false);
    let twice = tape.overwrite_rows(base, src, &[1, 1]).unwrap_err();
    assert!(twice.to_string().contains("twice"), "{twice}");
    let out_of_range = tape.overwrite_rows(base, src, &[0, 3]).unwrap_err();
    assert!(
        matches!(out_of_range, Error::Index { .. }),
        "{out_of_range}"
    );
    let wrong = tape.overwrite_columns(base, src, &[0, 1]).unwrap_err();
    assert!(wrong.to_string().contains("shape"), "{wrong}");
}

/// The fixture base with PEFT's adapter (non-zero B, so A has a gradient), dropout 0.3 on every
/// adapter, and trainable rows of the embedding and the untied head.
fn adapted_model_with_dropout_and_token_rows() -> Llama {
    let mut model = Llama::from_dir(fixture("lora/base")).unwrap();
    load_adapter(&mut model, &fixture("lora/adapter")).unwrap();
    for layer in 0..model.blocks().len() {
        for p in Proj::ALL {
            if let Some(a) = model.blocks()[layer].adapter(p).copied() {
                let with_dropout = LowRank { dropout: 0.3, ..a };
                model.set_adapter(layer, p, Some(with_dropout)).unwrap();
            }
        }
    }
    // Token rows on a second model attach (the adapter above is already there), so add them
    // through a fresh attach on a plain clone and move the rows across.
    let mut rows_model = Llama::from_dir(fixture("lora/base")).unwrap();
    let cfg = LoraConfig {
        r: 1,
        targets: vec![Proj::Q],
        tokens: TrainableTokens {
            embed: vec![5, 9, 40],
            head: vec![9, 77],
        },
        ..LoraConfig::default()
    };
    attach(&mut rows_model, &cfg, 1).unwrap();
    for head in [false, true] {
        let rows = match head {
            false => rows_model.embed_rows(),
            true => rows_model.head_rows(),
        };
        let rows = rows.unwrap().clone();
        let name = rows_model.params.name(rows.delta).to_string();
        let value = rows_model.params.value(rows.delta).clone();
        let mut rng = Rng::new(head as u64);
        let noise = value
            .to_vec()
            .iter()
            .map(|v| v + 0.3 * rng.normal())
            .collect();
        let value = ilrec::Tensor::from_vec(noise, value.shape()).unwrap();
        let delta = model.params.add(&name, value, true).unwrap();
        let moved = ilrec::model::adapter::TokenRows { delta, ..rows };
        model.set_token_rows(head, Some(moved)).unwrap();
    }
    model
}

/// Loss of the batch (ids include the trainable tokens) with a fixed dropout seed.
fn loss_of(model: &Llama, input: &BatchInput, labels: &[i64]) -> (f32, ilrec::autograd::Grads) {
    let mut tape = Tape::new();
    let (loss, _) = model.lm_loss(&mut tape, input, labels).unwrap();
    let value = tape.value(loss).item().unwrap();
    (value, tape.backward(loss).unwrap())
}

#[test]
fn the_adapted_decoder_gradients_match_finite_differences() {
    let mut model = adapted_model_with_dropout_and_token_rows();
    let ids: Vec<u32> = vec![3, 5, 17, 9, 40, 200, 5, 11, 9, 77, 40, 5];
    let labels: Vec<i64> = ids.iter().map(|&x| x as i64).collect();
    let mut input = BatchInput::new(ids, 2, 6).unwrap();
    let (no_dropout, _) = loss_of(&model, &input, &labels);
    input.dropout_seed = Some(11); // training: the masks are a function of this seed
    let (loss, grads) = loss_of(&model, &input, &labels);
    assert_ne!(loss, no_dropout, "the dropout seed must switch dropout on");
    assert_eq!(
        loss,
        loss_of(&model, &input, &labels).0,
        "the same seed, the same masks"
    );
    model.params.accumulate(&grads).unwrap();
    let checked: Vec<ParamId> = model
        .params
        .ids()
        .filter(|&id| model.params.is_trainable(id))
        .collect();
    assert_eq!(checked.len(), 2 * 7 * model.blocks().len() + 2);
    let mut rng = Rng::new(5);
    let eps = 1e-2f32;
    for id in checked {
        let analytic = model.params.grad(id).unwrap().to_vec();
        let n = analytic.len();
        for _ in 0..3 {
            let i = rng.below(n);
            let value = model.params.value(id).clone();
            let at = |delta: f32| {
                let mut v = value.to_vec();
                v[i] += delta;
                let mut m = model.clone();
                m.params
                    .set_value(id, ilrec::Tensor::from_vec(v, value.shape()).unwrap())
                    .unwrap();
                loss_of(&m, &input, &labels).0 as f64
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
            let tol = 2e-3 + 2e-2 * numeric.abs();
            let name = model.params.name(id).to_string();
            assert!(
                (analytic[i] as f64 - numeric).abs() <= tol,
                "{name}[{i}]: analytic {}, numeric {numeric}",
                analytic[i]
            );
        }
    }
}
