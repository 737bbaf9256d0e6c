//! Attention against a naive f64 softmax(Q K^T / sqrt(D) + mask) V written here, gradients by
//! finite differences in every masking / head-sharing setting, shape errors; dropout's mask,
//! statistics and gradient.

mod common;
use common::randn;

use ilrec::autograd::GradCheck;
use ilrec::rng::Rng;
use ilrec::{Tape, Tensor, Var};

/// One attention setting.
#[derive(Clone, Debug)]
struct Case {
    name: &'static str,
    batch: usize,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    key_valid: Option<Vec<bool>>,
}

impl Case {
    fn inputs(&self, seed: u64) -> [Tensor; 3] {
        [
            randn(&[self.batch, self.tq, self.hq * self.d], seed),
            randn(&[self.batch, self.tk, self.hkv * self.d], seed + 1),
            randn(&[self.batch, self.tk, self.hkv * self.d], seed + 2),
        ]
    }

    fn run(&self, tape: &mut Tape, v: &[Var]) -> ilrec::Result<Var> {
        tape.attention(
            v[0],
            v[1],
            v[2],
            self.hq,
            self.hkv,
            self.d,
            self.causal,
            self.key_valid.as_deref(),
        )
    }

    /// The naive reference: per (b, h, i), explicit masked scores, softmax, weighted sum, in f64.
    /// A row with no visible key outputs zeros (the op's documented convention).
    fn reference(&self, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f64> {
        let (d, hq, hkv) = (self.d, self.hq, self.hkv);
        let mut out = vec![0.0f64; q.len()];
        for b in 0..self.batch {
            for h in 0..hq {
                let g = h / (hq / hkv);
                for i in 0..self.tq {
                    let qrow = &q[((b * self.tq + i) * hq + h) * d..][..d];
                    let mut scores = vec![f64::NEG_INFINITY; self.tk];
                    for (j, s) in scores.iter_mut().enumerate() {
                        let causal_ok = !self.causal || j <= self.tk - self.tq + i;
                        let pad_ok = self.key_valid.as_ref().is_none_or(|m| m[b * self.tk + j]);
                        if causal_ok && pad_ok {
                            let krow = &k[((b * self.tk + j) * hkv + g) * d..][..d];
                            let dot: f64 = qrow
                                .iter()
                                .zip(krow)
                                .map(|(&x, &y)| x as f64 * y as f64)
                                .sum();
                            *s = dot / (d as f64).sqrt();
                        }
                    }
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    if max == f64::NEG_INFINITY {
                        continue;
                    }
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for (j, w) in weights.iter().enumerate() {
                        let vrow = &v[((b * self.tk + j) * hkv + g) * d..][..d];
                        for c in 0..d {
                            out[((b * self.tq + i) * hq + h) * d + c] += w / total * vrow[c] as f64;
                        }
                    }
                }
            }
        }
        out
    }
}

/// The setting every case starts from: two sequences of 5, 2 heads of width 4, no mask.
fn base_case() -> Case {
    Case {
        name: "",
        batch: 2,
        tq: 5,
        tk: 5,
        hq: 2,
        hkv: 2,
        d: 4,
        causal: false,
        key_valid: None,
    }
}

/// Key flags for two sequences of `tk` keys: left padding in sequence 0 (its first two keys),
/// right padding in sequence 1 (its last key).
fn padding(tk: usize) -> Vec<bool> {
    (0..2 * tk)
        .map(|r| {
            let (b, j) = (r / tk, r % tk);
            if b == 0 {
                j >= 2
            } else {
                j < tk - 1
            }
        })
        .collect()
}

fn cases() -> Vec<Case> {
    let base = base_case();
    vec![
        Case {
            name: "mha",
            ..base.clone()
        },
        Case {
            name: "mha causal",
            causal: true,
            d: 3,
            ..base.clone()
        },
        Case {
            name: "gqa",
            hq: 6,
            hkv: 2,
            d: 5,
            ..base.clone()
        },
        Case {
            name: "gqa causal",
            hq: 3,
            hkv: 1,
            tq: 7,
            tk: 7,
            causal: true,
            ..base.clone()
        },
        Case {
            name: "kv cache offset, causal",
            hq: 6,
            hkv: 2,
            tq: 3,
            tk: 8,
            causal: true,
            ..base.clone()
        },
        Case {
            name: "cross, tq < tk, not causal",
            tq: 2,
            tk: 7,
            ..base.clone()
        },
        Case {
            name: "padding",
            hq: 3,
            hkv: 1,
            key_valid: Some(padding(5)),
            ..base.clone()
        },
        Case {
            name: "padding causal (rows with no visible key)",
            hq: 4,
            hkv: 2,
            causal: true,
            key_valid: Some(padding(5)),
            ..base.clone()
        },
        Case {
            name: "padding + kv cache offset",
            tq: 2,
            tk: 6,
            hq: 6,
            hkv: 3,
            causal: true,
            key_valid: Some(padding(6)),
            ..base.clone()
        },
    ]
}

#[test]
fn attention_values_match_naive_reference() {
    for (n, case) in cases().iter().enumerate() {
        let [q, k, v] = case.inputs(100 + 10 * n as u64);
        let mut tape = Tape::new();
        let vars: Vec<Var> = [&q, &k, &v]
            .iter()
            .map(|t| tape.leaf((*t).clone(), false))
            .collect();
        let out = case.run(&mut tape, &vars).unwrap();
        assert_eq!(tape.shape(out), q.shape(), "{}", case.name);
        let got = tape.value(out).to_vec();
        let want = case.reference(&q.to_vec(), &k.to_vec(), &v.to_vec());
        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()),
                "{}: out[{i}] = {g}, reference {w}",
                case.name
            );
        }
    }
}

#[test]
fn attention_gradients_wrt_q_k_v() {
    for (n, case) in cases().iter().enumerate() {
        let [q, k, v] = case.inputs(200 + 10 * n as u64);
        let check = GradCheck {
            samples_per_input: 40,
            ..GradCheck::default()
        };
        check
            .run(&[(q, true), (k, true), (v, true)], |t, vars| {
                case.run(t, vars)
            })
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}

#[test]
fn attention_gradient_of_one_input_only() {
    // needs = [false, true, false] etc. must still give correct gradients for the one asked.
    let case = &cases()[4];
    let [q, k, v] = case.inputs(300);
    for wanted in 0..3 {
        let inputs: Vec<(Tensor, bool)> = [&q, &k, &v]
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).clone(), i == wanted))
            .collect();
        GradCheck::default()
            .run(&inputs, |t, vars| case.run(t, vars))
            .unwrap();
    }
}

#[test]
fn a_query_that_sees_no_key_outputs_zero_and_gets_zero_gradient() {
    // Sequence 0 is left-padded by two: under the causal mask its first two queries see only
    // padding.
    let case = &cases()[7];
    let [q, k, v] = case.inputs(400);
    let mut tape = Tape::new();
    let vars = [tape.leaf(q, true), tape.leaf(k, true), tape.leaf(v, true)];
    let out = case.run(&mut tape, &vars).unwrap();
    let row = case.hq * case.d;
    let values = tape.value(out).to_vec();
    assert!(values[..2 * row].iter().all(|&x| x == 0.0));
    assert!(values[2 * row..3 * row].iter().any(|&x| x != 0.0));
    let grads = tape
        .backward_from(out, Tensor::full(&[2, 5, row], 1.0))
        .unwrap();
    let dq = grads.of(vars[0]).unwrap().to_vec();
    assert!(dq[..2 * row].iter().all(|&x| x == 0.0));
    assert!(dq.iter().all(|x| x.is_finite()));
}

#[test]
fn attention_at_the_smollm2_shape_matches_reference() {
    // B=1 of the benchmark shape (T=128, D=64, Hq=9, Hkv=3), causal: long rows, real head_dim.
    let case = Case {
        name: "smollm2",
        batch: 1,
        tq: 128,
        tk: 128,
        hq: 9,
        hkv: 3,
        d: 64,
        causal: true,
        key_valid: None,
    };
    let [q, k, v] = case.inputs(500);
    let mut tape = Tape::inference();
    let vars = [
        tape.leaf(q.clone(), false),
        tape.leaf(k.clone(), false),
        tape.leaf(v.clone(), false),
    ];
    let out = case.run(&mut tape, &vars).unwrap();
    let want = case.reference(&q.to_vec(), &k.to_vec(), &v.to_vec());
    let got = tape.value(out).to_vec();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "max abs error {worst}");
}

#[test]
fn attention_refuses_bad_heads_and_shapes() {
    let mut t = Tape::new();
    let q = t.leaf(Tensor::zeros(&[2, 3, 4 * 8]), true);
    let k = t.leaf(Tensor::zeros(&[2, 5, 3 * 8]), true);
    let e = t
        .attention(q, k, k, 4, 3, 8, false, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("attention") && e.contains("multiple"), "{e}");

    let k2 = t.leaf(Tensor::zeros(&[2, 5, 2 * 8]), true);
    let v_wrong = t.leaf(Tensor::zeros(&[2, 6, 2 * 8]), true);
    let e = t
        .attention(q, k2, v_wrong, 4, 2, 8, false, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("attention") && e.contains("[2, 5, 16]") && e.contains("[2, 6, 16]"),
        "{e}"
    );
    // q width not Hq * D.
    let e = t
        .attention(q, k2, k2, 4, 2, 7, false, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("attention") && e.contains("[2, 3, 32]"), "{e}");
    // Batch mismatch.
    let k_b = t.leaf(Tensor::zeros(&[1, 5, 2 * 8]), true);
    assert!(t.attention(q, k_b, k_b, 4, 2, 8, false, None).is_err());
    // Causal with more queries than keys.
    let k_short = t.leaf(Tensor::zeros(&[2, 2, 2 * 8]), true);
    let e = t
        .attention(q, k_short, k_short, 4, 2, 8, true, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Tq <= Tk"), "{e}");
    // Mask of the wrong length.
    let e = t
        .attention(q, k2, k2, 4, 2, 8, false, Some(&[true; 7]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("key_valid") && e.contains("10"), "{e}");
    assert!(t
        .attention(q, k2, k2, 4, 2, 8, true, Some(&[true; 10]))
        .is_ok());
}

// ---------------------------------------------------------------------------------------------
// Dropout

fn dropout_values(x: &Tensor, p: f32, seed: u64) -> Vec<f32> {
    let mut tape = Tape::new();
    let v = tape.leaf(x.clone(), false);
    let out = tape.dropout(v, p, &mut Rng::new(seed)).unwrap();
    tape.value(out).to_vec()
}

#[test]
fn dropout_mask_is_fixed_by_the_seed() {
    let x = Tensor::full(&[64, 33], 1.0);
    assert_eq!(dropout_values(&x, 0.3, 7), dropout_values(&x, 0.3, 7));
    assert_ne!(dropout_values(&x, 0.3, 7), dropout_values(&x, 0.3, 8));
}

#[test]
fn dropout_keeps_about_one_minus_p_and_preserves_the_mean() {
    let n = 200_000;
    for &p in &[0.1f32, 0.5, 0.9] {
        let x = Tensor::full(&[n], 2.0);
        let y = dropout_values(&x, p, 11);
        let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        // Binomial standard deviation sqrt(p(1-p)/n) <= 0.0012; allow 5 of them.
        assert!(
            (kept - (1.0 - p as f64)).abs() < 0.006,
            "p {p}: kept {kept}"
        );
        let scale = 1.0 / (1.0 - p);
        assert!(y.iter().all(|&v| v == 0.0 || v == 2.0 * scale));
        let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!(
            (mean - 2.0).abs() < 0.06 * scale as f64,
            "p {p}: mean {mean}"
        );
    }
}

#[test]
fn dropout_gradient_is_the_scaled_mask() {
    let x = randn(&[7, 13], 12);
    let (p, seed) = (0.4f32, 99u64);
    // The closure re-creates the rng, so every evaluation draws the same mask.
    GradCheck::default()
        .run(&[(x.clone(), true)], |t, v| {
            t.dropout(v[0], p, &mut Rng::new(seed))
        })
        .unwrap();
    // Explicitly: with upstream ones, dx = mask / (1 - p), where the mask is read off the output.
    let mut tape = Tape::new();
    let xv = tape.leaf(x.clone(), true);
    let out = tape.dropout(xv, p, &mut Rng::new(seed)).unwrap();
    let y = tape.value(out).to_vec();
    let grads = tape
        .backward_from(out, Tensor::full(&[7, 13], 1.0))
        .unwrap();
    let dx = grads.of(xv).unwrap().to_vec();
    for (i, (&yi, &gi)) in y.iter().zip(&dx).enumerate() {
        let want = if yi != 0.0 { 1.0 / (1.0 - p) } else { 0.0 };
        assert_eq!(gi, want, "element {i}");
    }
}

#[test]
fn dropout_with_p_zero_is_an_identity_that_draws_nothing() {
    let x = randn(&[3, 5], 13);
    let mut rng = Rng::new(5);
    let mut tape = Tape::new();
    let v = tape.leaf(x.clone(), true);
    let out = tape.dropout(v, 0.0, &mut rng).unwrap();
    assert_eq!(tape.value(out).to_vec(), x.to_vec());
    assert_eq!(
        rng.next_u64(),
        Rng::new(5).next_u64(),
        "no random numbers drawn"
    );
    let g = randn(&[3, 5], 14);
    let grads = tape.backward_from(out, g.clone()).unwrap();
    assert_eq!(grads.of(v).unwrap().to_vec(), g.to_vec());
}

#[test]
fn dropout_refuses_p_outside_zero_one() {
    let mut tape = Tape::new();
    let v = tape.leaf(Tensor::zeros(&[4]), true);
    for p in [1.0f32, 1.5, -0.1, f32::NAN] {
        let e = tape
            .dropout(v, p, &mut Rng::new(0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dropout") && e.contains("[0, 1)"), "p {p}: {e}");
    }
}
