//! RMSNorm, LayerNorm and RoPE: values against naive f64 references written here, gradients by
//! finite differences, and the errors for bad shapes.

mod common;
use common::{assert_close, randn};

use ilrec::autograd::GradCheck;
use ilrec::{Tape, Tensor};

/// Runs a forward op on fresh leaves and returns its output values.
fn forward(inputs: &[Tensor], f: impl Fn(&mut Tape, &[ilrec::Var]) -> ilrec::Var) -> Vec<f32> {
    let mut tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|t| tape.leaf(t.clone(), false)).collect();
    let out = f(&mut tape, &vars);
    tape.value(out).to_vec()
}

// ---------------------------------------------------------------------------------------------
// Naive f64 references.

fn rms_norm_ref(x: &[f32], w: &[f32], eps: f64) -> Vec<f64> {
    let d = w.len();
    x.chunks(d)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &wi)| v as f64 * inv * wi as f64)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn layer_norm_ref(x: &[f32], w: &[f32], b: &[f32], eps: f64) -> Vec<f64> {
    let d = w.len();
    x.chunks(d)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            (0..d)
                .map(|i| (row[i] as f64 - mean) * inv * w[i] as f64 + b[i] as f64)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// rotate_half RoPE in f64 with angle sign `sign` (+1 applies, -1 undoes). `pos_of_row(r)` gives
/// the position of row r of the (rows, H*D) input.
fn rope_ref(
    x: &[f64],
    width: usize,
    head_dim: usize,
    pos_of_row: impl Fn(usize) -> usize,
    theta: f64,
    sign: f64,
) -> Vec<f64> {
    let half = head_dim / 2;
    let mut out = vec![0.0; x.len()];
    for (r, row) in x.chunks(width).enumerate() {
        for h in 0..width / head_dim {
            for i in 0..half {
                let inv_freq = theta.powf(-2.0 * i as f64 / head_dim as f64);
                let angle = sign * pos_of_row(r) as f64 * inv_freq;
                let (a, b) = (row[h * head_dim + i], row[h * head_dim + i + half]);
                out[r * width + h * head_dim + i] = a * angle.cos() - b * angle.sin();
                out[r * width + h * head_dim + i + half] = b * angle.cos() + a * angle.sin();
            }
        }
    }
    out
}

fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

#[test]
fn rms_norm_hand_computed_row() {
    // mean(x^2) = (1 + 4 + 9 + 16) / 4 = 7.5, so y = x / sqrt(7.5) * w.
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[1, 4]).unwrap();
    let w = Tensor::from_vec(vec![1.0, 0.5, -1.0, 2.0], &[4]).unwrap();
    let y = forward(&[x, w], |t, v| t.rms_norm(v[0], v[1], 0.0).unwrap());
    let r = 7.5f64.sqrt();
    assert_close(&y, &[1.0 / r, 1.0 / r, -3.0 / r, 8.0 / r], 1e-6, "rms_norm");
}

#[test]
fn rms_norm_values_match_f64_reference() {
    let (x, w) = (randn(&[3, 5, 13], 1), randn(&[13], 2));
    let y = forward(&[x.clone(), w.clone()], |t, v| {
        t.rms_norm(v[0], v[1], 1e-6).unwrap()
    });
    assert_close(
        &y,
        &rms_norm_ref(&x.to_vec(), &w.to_vec(), 1e-6),
        2e-6,
        "rms_norm",
    );
}

#[test]
fn rms_norm_gradients_wrt_x_and_weight() {
    for (k, shape) in [[5usize, 7], [3, 1], [2, 33]].iter().enumerate() {
        let x = randn(shape, 10 + k as u64);
        let w = randn(&[shape[1]], 20 + k as u64);
        GradCheck::default()
            .run(&[(x, true), (w, true)], |t, v| t.rms_norm(v[0], v[1], 1e-5))
            .unwrap();
    }
    // Only the weight (x frozen) and only x (weight frozen) take the other branches.
    let (x, w) = (randn(&[4, 9], 3), randn(&[9], 4));
    let check = GradCheck::default();
    check
        .run(&[(x.clone(), false), (w.clone(), true)], |t, v| {
            t.rms_norm(v[0], v[1], 1e-5)
        })
        .unwrap();
    check
        .run(&[(x, true), (w, false)], |t, v| {
            t.rms_norm(v[0], v[1], 1e-5)
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// LayerNorm

#[test]
fn layer_norm_values_match_f64_reference() {
    // An offset of 100 makes the naive E[x^2] - E[x]^2 variance lose digits in f32.
    let x: Vec<f32> = randn(&[4, 3, 11], 5)
        .to_vec()
        .iter()
        .map(|v| v + 100.0)
        .collect();
    let x = Tensor::from_vec(x, &[4, 3, 11]).unwrap();
    let (w, b) = (randn(&[11], 6), randn(&[11], 7));
    let y = forward(&[x.clone(), w.clone(), b.clone()], |t, v| {
        t.layer_norm(v[0], v[1], v[2], 1e-5).unwrap()
    });
    let want = layer_norm_ref(&x.to_vec(), &w.to_vec(), &b.to_vec(), 1e-5);
    assert_close(&y, &want, 1e-4, "layer_norm");
}

#[test]
fn layer_norm_hand_computed_row() {
    // x = [1, 3]: mean 2, biased var 1, so xhat = [-1, 1].
    let x = Tensor::from_vec(vec![1.0, 3.0], &[1, 2]).unwrap();
    let w = Tensor::from_vec(vec![2.0, 3.0], &[2]).unwrap();
    let b = Tensor::from_vec(vec![0.5, -0.5], &[2]).unwrap();
    let y = forward(&[x, w, b], |t, v| {
        t.layer_norm(v[0], v[1], v[2], 0.0).unwrap()
    });
    assert_close(&y, &[-1.5, 2.5], 1e-6, "layer_norm");
}

#[test]
fn layer_norm_gradients_wrt_x_weight_bias() {
    let shapes: [&[usize]; 3] = [&[5, 7], &[3, 2], &[2, 3, 17]];
    for (k, shape) in shapes.iter().enumerate() {
        let d = *shape.last().unwrap();
        let x = randn(shape, 30 + k as u64);
        let (w, b) = (randn(&[d], 40 + k as u64), randn(&[d], 50 + k as u64));
        GradCheck::default()
            .run(&[(x, true), (w, true), (b, true)], |t, v| {
                t.layer_norm(v[0], v[1], v[2], 1e-5)
            })
            .unwrap();
    }
}

#[test]
fn norms_refuse_mismatched_parameters() {
    let mut t = Tape::new();
    let x = t.leaf(Tensor::zeros(&[2, 5]), true);
    let w4 = t.leaf(Tensor::zeros(&[4]), true);
    let w5 = t.leaf(Tensor::zeros(&[5]), true);
    let e = t.rms_norm(x, w4, 1e-6).unwrap_err().to_string();
    assert!(
        e.contains("rms_norm") && e.contains("[4]") && e.contains("[2, 5]"),
        "{e}"
    );
    let e = t.layer_norm(x, w5, w4, 1e-6).unwrap_err().to_string();
    assert!(
        e.contains("layer_norm") && e.contains("bias") && e.contains("[4]"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// RoPE

#[test]
fn rope_values_match_rotate_half_reference() {
    let (b, t, h, d) = (2, 5, 3, 8);
    let x = randn(&[b, t, h * d], 60);
    let positions = [0usize, 1, 2, 7, 40];
    let y = forward(std::slice::from_ref(&x), |tp, v| {
        tp.rope(v[0], h, d, &positions, 10_000.0).unwrap()
    });
    let want = rope_ref(
        &to_f64(&x.to_vec()),
        h * d,
        d,
        |r| positions[r % t],
        10_000.0,
        1.0,
    );
    assert_close(&y, &want, 1e-5, "rope");
}

#[test]
fn rope_per_token_positions_and_cache_offsets() {
    let (b, t, h, d) = (3, 4, 2, 6);
    let x = randn(&[b, t, h * d], 61);
    // One position per token: left padding shifts each sequence differently.
    let positions: Vec<usize> = (0..b * t).map(|r| (r % t + 3 * (r / t)) % 9).collect();
    let y = forward(std::slice::from_ref(&x), |tp, v| {
        tp.rope(v[0], h, d, &positions, 500.0).unwrap()
    });
    let want = rope_ref(&to_f64(&x.to_vec()), h * d, d, |r| positions[r], 500.0, 1.0);
    assert_close(&y, &want, 1e-5, "rope per token");

    // KV-cache decoding: the last token alone at position T-1 equals the last row of the full
    // sequence rotated with positions 0..T.
    let full_positions: Vec<usize> = (0..t).collect();
    let full = forward(std::slice::from_ref(&x), |tp, v| {
        tp.rope(v[0], h, d, &full_positions, 500.0).unwrap()
    });
    let xs = x.to_vec();
    let w = h * d;
    for s in 0..b {
        let last = &xs[(s * t + t - 1) * w..(s * t + t) * w];
        let one = Tensor::from_vec(last.to_vec(), &[1, 1, w]).unwrap();
        let y1 = forward(&[one], |tp, v| {
            tp.rope(v[0], h, d, &[t - 1], 500.0).unwrap()
        });
        assert_eq!(y1, full[(s * t + t - 1) * w..(s * t + t) * w].to_vec());
    }
}

/// The rotation table is reused while positions and frequencies repeat (a thread keeps its
/// last one): calls that alternate positions, or keep the positions and change theta, or change
/// only the head size, must each get their own table. Every output (and gradient) is compared
/// with the f64 reference, so a stale table shows as a wrong rotation.
#[test]
fn rope_calls_in_a_row_never_reuse_another_calls_table() {
    let (t, h) = (6, 2);
    let a: Vec<usize> = (0..t).collect();
    let b: Vec<usize> = (10..10 + t).collect();
    let calls: [(&[usize], f32, usize); 6] = [
        (&a, 10_000.0, 8),
        (&a, 10_000.0, 8),
        (&b, 10_000.0, 8),
        (&a, 10_000.0, 8),
        (&a, 500.0, 8),
        (&a, 500.0, 4),
    ];
    for (i, &(positions, theta, d)) in calls.iter().enumerate() {
        let x = randn(&[1, t, h * d], 70 + i as u64);
        let g = randn(&[1, t, h * d], 80 + i as u64);
        let mut tape = Tape::new();
        let xv = tape.leaf(x.clone(), true);
        let y = tape.rope(xv, h, d, positions, theta).unwrap();
        let grads = tape.backward_from(y, g.clone()).unwrap();
        let want = rope_ref(
            &to_f64(&x.to_vec()),
            h * d,
            d,
            |r| positions[r],
            theta.into(),
            1.0,
        );
        assert_close(&tape.value(y).to_vec(), &want, 1e-5, &format!("call {i}"));
        // The gradient is the inverse rotation of g, from the same table.
        let want_g = rope_ref(
            &to_f64(&g.to_vec()),
            h * d,
            d,
            |r| positions[r],
            theta.into(),
            -1.0,
        );
        let got_g = grads.of(xv).expect("x has a gradient").to_vec();
        assert_close(&got_g, &want_g, 1e-5, &format!("call {i} gradient"));
    }
}

#[test]
fn rope_is_undone_by_the_opposite_rotation() {
    let (t, h, d) = (7, 2, 10);
    let x = randn(&[1, t, h * d], 62);
    let positions = [3usize, 9, 27, 81, 100, 1000, 5];
    let y = forward(std::slice::from_ref(&x), |tp, v| {
        tp.rope(v[0], h, d, &positions, 10_000.0).unwrap()
    });
    let back = rope_ref(&to_f64(&y), h * d, d, |r| positions[r], 10_000.0, -1.0);
    assert_close(&x.to_vec(), &back, 1e-4, "rope inverse");
}

#[test]
fn rope_scores_depend_only_on_relative_position() {
    // <rope(q, m), rope(k, n)> is a function of m - n: the reason RoPE exists.
    let (h, d) = (1, 8);
    let q = randn(&[1, 1, d], 63);
    let k = randn(&[1, 1, d], 64);
    let score = |m: usize, n: usize| {
        let rq = forward(std::slice::from_ref(&q), |tp, v| {
            tp.rope(v[0], h, d, &[m], 100.0).unwrap()
        });
        let rk = forward(std::slice::from_ref(&k), |tp, v| {
            tp.rope(v[0], h, d, &[n], 100.0).unwrap()
        });
        rq.iter().zip(&rk).map(|(a, b)| a * b).sum::<f32>()
    };
    let base = score(5, 2);
    assert!((score(13, 10) - base).abs() < 1e-4);
    assert!((score(3, 0) - base).abs() < 1e-4);
    assert!(
        (score(6, 2) - base).abs() > 1e-3,
        "a different offset changes the score"
    );
}

#[test]
fn rope_gradient_is_checked_by_finite_differences() {
    let x = randn(&[2, 3, 5 * 6], 65);
    GradCheck::default()
        .run(&[(x.clone(), true)], |t, v| {
            t.rope(v[0], 5, 6, &[4, 0, 11], 10_000.0)
        })
        .unwrap();
    let per_token = [1usize, 2, 3, 7, 8, 9];
    GradCheck::default()
        .run(&[(x, true)], |t, v| t.rope(v[0], 5, 6, &per_token, 10.0))
        .unwrap();
}

#[test]
fn rope_refuses_bad_arguments() {
    let mut t = Tape::new();
    let x = t.leaf(Tensor::zeros(&[2, 3, 12]), true);
    let e = t.rope(x, 2, 5, &[0, 1, 2], 1e4).unwrap_err().to_string();
    assert!(e.contains("rope") && e.contains("even"), "{e}");
    let e = t.rope(x, 3, 6, &[0, 1, 2], 1e4).unwrap_err().to_string();
    assert!(e.contains("rope") && e.contains("[2, 3, 12]"), "{e}");
    let e = t.rope(x, 2, 6, &[0, 1], 1e4).unwrap_err().to_string();
    assert!(e.contains("rope") && e.contains("positions"), "{e}");
    assert!(t.rope(x, 2, 6, &[0, 1, 2], 0.0).is_err());
    assert!(t.rope(x, 2, 6, &[0; 6], 1e4).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Qwen3's per-head q/k RMSNorm (a (B*T*H, head_dim) view of the RMSNorm op).

#[test]
fn per_head_rms_norm_normalises_each_head_with_a_shared_scale() {
    use ilrec::model::qk_norm::per_head_rms_norm;
    let (b, t, h, hd) = (2, 3, 4, 6);
    let x = randn(&[b, t, h * hd], 81);
    let w = randn(&[hd], 82);
    let y = forward(&[x.clone(), w.clone()], |tp, v| {
        per_head_rms_norm(tp, v[0], v[1], hd, 1e-6).unwrap()
    });
    // Every head of every token is its own row of hd values, all scaled by the same w.
    let want = rms_norm_ref(&x.to_vec(), &w.to_vec(), 1e-6);
    assert_close(&y, &want, 1e-5, "per-head rms_norm");
    GradCheck::default()
        .run(&[(x.clone(), true), (w, true)], |tp, v| {
            per_head_rms_norm(tp, v[0], v[1], hd, 1e-6)
        })
        .unwrap();
    let mut tape = Tape::new();
    let xv = tape.leaf(x, false);
    let bad = tape.leaf(Tensor::zeros(&[5]), false);
    let e = per_head_rms_norm(&mut tape, xv, bad, 5, 1e-6).unwrap_err();
    assert!(e.to_string().contains("heads of 5"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// RoPE with given (scaled) inverse frequencies.

#[test]
fn rope_with_default_frequencies_is_plain_rope_bit_for_bit() {
    let (h, d) = (3, 8);
    let x = randn(&[2, 5, h * d], 91);
    let positions = [0usize, 3, 4, 9, 17];
    let inv_freq = ilrec::autograd::default_inv_freq(d, 10_000.0);
    let plain = forward(std::slice::from_ref(&x), |tp, v| {
        tp.rope(v[0], h, d, &positions, 10_000.0).unwrap()
    });
    let given = forward(&[x], |tp, v| {
        tp.rope_with_inv_freq(v[0], h, d, &positions, &inv_freq)
            .unwrap()
    });
    assert_eq!(plain, given);
}

#[test]
fn rope_with_llama3_frequencies_rotates_by_them_and_has_a_checked_gradient() {
    use ilrec::model::rope_scaling::RopeScaling;
    let (h, d, theta) = (2, 16, 500_000.0f32);
    let scaling = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    };
    let inv_freq = scaling.inv_freq(d, theta);
    let x = randn(&[1, 4, h * d], 92);
    let positions = [1usize, 5, 20, 63];
    let y = forward(std::slice::from_ref(&x), |tp, v| {
        tp.rope_with_inv_freq(v[0], h, d, &positions, &inv_freq)
            .unwrap()
    });
    // rotate_half with angle pos * inv_freq[i], in f64.
    let xs = x.to_vec();
    let mut want = vec![0.0f64; xs.len()];
    for (r, &p) in positions.iter().enumerate() {
        for head in 0..h {
            let base = r * h * d + head * d;
            for i in 0..d / 2 {
                let a = p as f64 * inv_freq[i] as f64;
                let (x1, x2) = (xs[base + i] as f64, xs[base + i + d / 2] as f64);
                want[base + i] = x1 * a.cos() - x2 * a.sin();
                want[base + i + d / 2] = x2 * a.cos() + x1 * a.sin();
            }
        }
    }
    assert_close(&y, &want, 1e-5, "llama3 rope");
    GradCheck::default()
        .run(&[(x, true)], |tp, v| {
            tp.rope_with_inv_freq(v[0], h, d, &positions, &inv_freq)
        })
        .unwrap();
    let mut tape = Tape::new();
    let xv = tape.leaf(Tensor::zeros(&[1, 4, h * d]), false);
    let e = tape
        .rope_with_inv_freq(xv, h, d, &positions, &inv_freq[1..])
        .unwrap_err();
    assert!(e.to_string().contains("inverse frequencies"), "{e}");
}
