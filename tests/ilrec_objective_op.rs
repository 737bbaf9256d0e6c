//! The fused ILRec objective op on hand-made inputs: finite-difference gradients, reduction to
//! SFT, CPD's zero point, and a value computed independently in f64.

use ilrec::autograd::GradCheck;
use ilrec::ilrec::{crr_tokens, ItemVocab, ObjectiveWeights, PositionNegatives, ResponsePosition};
use ilrec::rng::Rng;
use ilrec::{Tape, Tensor};

const V: usize = 11;

fn positions() -> Vec<ResponsePosition> {
    let neg = |tokens: Vec<u32>, weights: Vec<f32>| PositionNegatives { tokens, weights };
    let rewards = |n: &PositionNegatives, y: u32, seed: u64| {
        let mut r = Rng::new(seed);
        crr_tokens(n, y)
            .iter()
            .map(|_| -3.0 * r.uniform() - 0.1)
            .collect::<Vec<f32>>()
    };
    let n0 = neg(vec![1, 4, 7], vec![0.5, 0.3, 0.2]);
    let n1 = neg(vec![9], vec![1.0]);
    vec![
        ResponsePosition {
            target: 3,
            crr_log_rewards: rewards(&n0, 3, 1),
            negatives: n0,
            item_position: true,
        },
        ResponsePosition {
            target: 0,
            crr_log_rewards: rewards(&n1, 0, 2),
            negatives: n1,
            item_position: true,
        },
        ResponsePosition {
            target: 2,
            negatives: PositionNegatives::default(),
            crr_log_rewards: vec![],
            item_position: false,
        },
    ]
}

fn weights() -> ObjectiveWeights {
    ObjectiveWeights {
        alpha: 0.7,
        lambda: 0.3,
        mu: 0.9,
        tau_r: 1.3,
    }
}

#[test]
fn gradients_match_finite_differences() {
    let mut rng = Rng::new(5);
    let z = Tensor::randn(&[3, V], 1.5, &mut rng);
    let l1 = Tensor::randn(&[3, V], 1.5, &mut rng);
    let l2 = Tensor::randn(&[3, V], 1.5, &mut rng);
    let pos = positions();
    let item_tokens = [0u32, 1, 2, 3, 4, 5, 7, 9];
    let check = GradCheck {
        samples_per_input: 64,
        ..GradCheck::default()
    };
    for vocab in [ItemVocab::Tokens(&item_tokens), ItemVocab::All] {
        // CPD's teacher is detached, so finite differences in z would see a dependence that the
        // objective deliberately ignores: check z with mu = 0 (CPO + CRR), ...
        let no_cpd = ObjectiveWeights {
            mu: 0.0,
            ..weights()
        };
        let inputs = [(z.clone(), true), (l1.clone(), false), (l2.clone(), false)];
        check
            .run(&inputs, |t, v| {
                Ok(
                    t.ilrec_objective(v[0], &[v[1], v[2]], &pos, vocab, &no_cpd)?
                        .0,
                )
            })
            .unwrap();
        // ... and the lens layers (which only CPD reads) with every term on, z held constant.
        let inputs = [(z.clone(), false), (l1.clone(), true), (l2.clone(), true)];
        check
            .run(&inputs, |t, v| {
                Ok(
                    t.ilrec_objective(v[0], &[v[1], v[2]], &pos, vocab, &weights())?
                        .0,
                )
            })
            .unwrap();
    }
}

/// Plain cross-entropy of the rows, in f64, written independently of the library.
fn reference_ce(z: &[f32], targets: &[u32]) -> f64 {
    let mut total = 0.0;
    for (r, &y) in targets.iter().enumerate() {
        let row: Vec<f64> = z[r * V..(r + 1) * V].iter().map(|&x| x as f64).collect();
        let m = row.iter().cloned().fold(f64::MIN, f64::max);
        let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
        total += lse - row[y as usize];
    }
    total / targets.len() as f64
}

#[test]
fn the_cpd_teacher_receives_no_gradient() {
    // Only CPD on: the gradient into z must be exactly zero although CPD's value depends on z.
    let mut rng = Rng::new(8);
    let z = Tensor::randn(&[3, V], 1.5, &mut rng);
    let lens = Tensor::randn(&[3, V], 1.5, &mut rng);
    let only_cpd = ObjectiveWeights {
        alpha: 0.0,
        lambda: 0.0,
        mu: 1.0,
        tau_r: 1.0,
    };
    let pos: Vec<ResponsePosition> = positions()
        .into_iter()
        .map(|p| ResponsePosition {
            negatives: PositionNegatives::default(),
            crr_log_rewards: vec![],
            ..p
        })
        .collect();
    let ce_only = ObjectiveWeights {
        mu: 0.0,
        ..only_cpd
    };
    let mut grads = Vec::new();
    for w in [only_cpd, ce_only] {
        let mut t = Tape::new();
        let zv = t.leaf(z.clone(), true);
        let lv = t.leaf(lens.clone(), true);
        let (loss, terms) = t
            .ilrec_objective(zv, &[lv], &pos, ItemVocab::All, &w)
            .unwrap();
        if w.mu > 0.0 {
            assert!(terms.cpd > 1e-3);
        }
        grads.push(t.backward(loss).unwrap().of(zv).unwrap().to_vec());
    }
    assert_eq!(
        grads[0], grads[1],
        "CPD must not change the gradient of the final logits"
    );
}

#[test]
fn zero_coefficients_reduce_to_sft_cross_entropy() {
    let mut rng = Rng::new(6);
    let z = Tensor::randn(&[3, V], 2.0, &mut rng);
    let lens = Tensor::randn(&[3, V], 2.0, &mut rng);
    let pos = positions();
    let sft = ObjectiveWeights {
        alpha: 0.0,
        lambda: 0.0,
        mu: 0.0,
        tau_r: 1.0,
    };
    let mut t = Tape::new();
    let zv = t.leaf(z.clone(), true);
    let lv = t.leaf(lens, true);
    let (loss, terms) = t
        .ilrec_objective(zv, &[lv], &pos, ItemVocab::All, &sft)
        .unwrap();
    let want = reference_ce(z.data().unwrap(), &[3, 0, 2]);
    assert!(
        (terms.total as f64 - want).abs() < 1e-5,
        "{} vs {want}",
        terms.total
    );
    assert_eq!(terms.total, terms.ce);
    let g = t.backward(loss).unwrap();
    // SFT: no gradient reaches the lens layers, and dz = (softmax - onehot) / n.
    assert!(g.of(lv).unwrap().to_vec().iter().all(|&x| x == 0.0));
    let gz = g.of(zv).unwrap().to_vec();
    let zd = z.to_vec();
    for (r, &y) in [3usize, 0, 2].iter().enumerate() {
        let row = &zd[r * V..(r + 1) * V];
        let m = row.iter().cloned().fold(f32::MIN, f32::max);
        let s: f32 = row.iter().map(|x| (x - m).exp()).sum();
        for v in 0..V {
            let want = ((row[v] - m).exp() / s - if v == y { 1.0 } else { 0.0 }) / 3.0;
            assert!((gz[r * V + v] - want).abs() < 1e-6);
        }
    }
}

#[test]
fn cpd_vanishes_when_the_lens_layer_is_the_final_layer() {
    let z = Tensor::randn(&[3, V], 1.0, &mut Rng::new(7));
    let mut t = Tape::new();
    let zv = t.leaf(z.clone(), true);
    let lv = t.leaf(z, true);
    let (loss, terms) = t
        .ilrec_objective(zv, &[lv], &positions(), ItemVocab::All, &weights())
        .unwrap();
    assert!(terms.cpd.abs() < 1e-6, "cpd {}", terms.cpd);
    let g = t.backward(loss).unwrap();
    assert!(g.of(lv).unwrap().to_vec().iter().all(|x| x.abs() < 1e-7));
}

#[test]
fn cpo_penalty_value_matches_an_independent_computation() {
    // One position, V = 4, y = 0, N = {2 (w 0.25), 3 (w 0.75)}; z[3] < 0 so |z| matters.
    let z = vec![1.0f32, 0.5, 2.0, -1.5];
    let alpha = 0.8f32;
    let mut zp: Vec<f64> = z.iter().map(|&x| x as f64).collect();
    zp[2] += (alpha * 0.25 * 2.0) as f64;
    zp[3] += (alpha * 0.75 * 1.5) as f64; // the |z| form penalises a negative logit too
    let lse = zp.iter().map(|x| x.exp()).sum::<f64>().ln();
    let want = lse - zp[0];
    let pos = vec![ResponsePosition {
        target: 0,
        negatives: PositionNegatives {
            tokens: vec![2, 3],
            weights: vec![0.25, 0.75],
        },
        crr_log_rewards: vec![-1.0, -2.0, -3.0],
        item_position: false,
    }];
    let mut t = Tape::new();
    let zv = t.leaf(Tensor::from_vec(z, &[1, 4]).unwrap(), true);
    let w = ObjectiveWeights {
        alpha,
        lambda: 0.0,
        mu: 0.0,
        tau_r: 1.0,
    };
    let (_, terms) = t
        .ilrec_objective(zv, &[], &pos, ItemVocab::All, &w)
        .unwrap();
    assert!((terms.ce as f64 - want).abs() < 1e-6);
    assert_eq!(terms.positions_with_negatives, 1);
    assert!((terms.mean_negatives - 2.0).abs() < 1e-6);
}

#[test]
fn bad_inputs_are_errors() {
    let mut t = Tape::new();
    let zv = t.leaf(Tensor::zeros(&[2, V]), true);
    let w = weights();
    // wrong number of positions
    assert!(t
        .ilrec_objective(zv, &[], &positions(), ItemVocab::All, &w)
        .is_err());
    // target out of range
    let bad = vec![
        ResponsePosition {
            target: 99,
            ..Default::default()
        };
        2
    ];
    assert!(t
        .ilrec_objective(zv, &[], &bad, ItemVocab::All, &w)
        .is_err());
    // negative equal to the truth
    let bad = vec![
        ResponsePosition {
            target: 1,
            negatives: PositionNegatives {
                tokens: vec![1],
                weights: vec![1.0]
            },
            crr_log_rewards: vec![0.0],
            item_position: false
        };
        2
    ];
    assert!(t
        .ilrec_objective(zv, &[], &bad, ItemVocab::All, &w)
        .is_err());
}

#[test]
fn parts_with_the_batch_normaliser_add_up_to_the_whole_batch() {
    use ilrec::ilrec::Normalizer;
    let mut rng = Rng::new(11);
    let z = Tensor::randn(&[3, V], 1.5, &mut rng);
    let lens = Tensor::randn(&[3, V], 1.5, &mut rng);
    let pos = positions();
    let rows = |t: &Tensor, r: std::ops::Range<usize>| {
        Tensor::from_vec(t.to_vec()[r.start * V..r.end * V].to_vec(), &[r.len(), V]).unwrap()
    };
    // whole batch
    let mut t = Tape::new();
    let (zv, lv) = (t.leaf(z.clone(), true), t.leaf(lens.clone(), true));
    let (loss, whole) = t
        .ilrec_objective(zv, &[lv], &pos, ItemVocab::All, &weights())
        .unwrap();
    let g = t.backward(loss).unwrap();
    let (gz, gl) = (g.of(zv).unwrap().to_vec(), g.of(lv).unwrap().to_vec());
    // two parts: rows 0..1 and 1..3, normalised by the whole batch's counts
    let norm = Normalizer::of(&pos, 1);
    let mut merged = ilrec::ilrec::ObjectiveTerms::default();
    let (mut pz, mut pl) = (Vec::new(), Vec::new());
    for r in [0..1, 1..3] {
        let mut t = Tape::new();
        let (zv, lv) = (
            t.leaf(rows(&z, r.clone()), true),
            t.leaf(rows(&lens, r.clone()), true),
        );
        let (loss, terms) = t
            .ilrec_objective_part(zv, &[lv], &pos[r], ItemVocab::All, &weights(), norm)
            .unwrap();
        merged.merge(&terms);
        let g = t.backward(loss).unwrap();
        pz.extend(g.of(zv).unwrap().to_vec());
        pl.extend(g.of(lv).unwrap().to_vec());
    }
    for (a, b) in [
        (whole.total, merged.total),
        (whole.ce, merged.ce),
        (whole.crr, merged.crr),
        (whole.cpd, merged.cpd),
    ] {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    assert_eq!(
        (whole.positions, whole.positions_with_negatives),
        (merged.positions, merged.positions_with_negatives)
    );
    assert!((whole.mean_negatives - merged.mean_negatives).abs() < 1e-6);
    assert_eq!(gz, pz);
    assert_eq!(gl, pl);
}

#[test]
fn without_crr_the_cf_rewards_may_be_left_out() {
    let z = Tensor::randn(&[3, V], 1.0, &mut Rng::new(12));
    let no_rewards: Vec<ResponsePosition> = positions()
        .into_iter()
        .map(|p| ResponsePosition {
            crr_log_rewards: vec![],
            ..p
        })
        .collect();
    let run = |w: ObjectiveWeights, pos: &[ResponsePosition]| {
        let mut t = Tape::new();
        let zv = t.leaf(z.clone(), true);
        t.ilrec_objective(zv, &[], pos, ItemVocab::All, &w)
            .map(|(_, terms)| terms)
    };
    let wo_crr = ObjectiveWeights {
        lambda: 0.0,
        ..weights()
    };
    let a = run(wo_crr, &no_rewards).unwrap();
    let b = run(wo_crr, &positions()).unwrap();
    assert_eq!(a.ce, b.ce);
    assert_eq!(a.total, b.total);
    // with CRR on, missing rewards are an error, not a silent zero
    assert!(run(weights(), &no_rewards).is_err());
}

/// The columns of `t` (rows, V) at `tokens`: (rows, tokens.len()).
fn columns_of(t: &Tensor, tokens: &[u32]) -> Tensor {
    let v = t.shape()[1];
    let data = t.data().unwrap();
    let out: Vec<f32> = (0..t.shape()[0])
        .flat_map(|r| tokens.iter().map(move |&c| data[r * v + c as usize]))
        .collect();
    Tensor::from_vec(out, &[t.shape()[0], tokens.len()]).unwrap()
}

/// A lens computed on the item columns only (`ItemVocab::Columns`, SID mode) is the same
/// objective as the full lens read at those columns (`ItemVocab::Tokens`): same value, same
/// gradient of z, and the lens gradient is the full one's item columns (zero elsewhere).
#[test]
fn a_lens_on_item_columns_equals_the_full_lens_at_those_columns() {
    let mut rng = Rng::new(9);
    let z = Tensor::randn(&[3, V], 1.5, &mut rng);
    let lens = Tensor::randn(&[3, V], 1.5, &mut rng);
    let items = [0u32, 1, 2, 3, 4, 5, 7, 9];
    let pos = positions();
    let run = |lens: &Tensor, vocab: ItemVocab| {
        let mut t = Tape::new();
        let (zv, lv) = (t.leaf(z.clone(), true), t.leaf(lens.clone(), true));
        let (loss, terms) = t
            .ilrec_objective(zv, &[lv], &pos, vocab, &weights())
            .unwrap();
        let grads = t.backward(loss).unwrap();
        let g = |v| grads.of(v).unwrap().data().unwrap().to_vec();
        (terms.total, g(zv), g(lv))
    };
    let (full_loss, full_gz, full_gl) = run(&lens, ItemVocab::Tokens(&items));
    let narrow = columns_of(&lens, &items);
    let (loss, gz, gl) = run(&narrow, ItemVocab::Columns(&items));
    assert!((loss - full_loss).abs() < 1e-6, "{loss} vs {full_loss}");
    assert!(full_gz.iter().zip(&gz).all(|(a, b)| (a - b).abs() < 1e-6));
    let full_at_items = columns_of(&Tensor::from_vec(full_gl.clone(), &[3, V]).unwrap(), &items);
    let full_at_items = full_at_items.data().unwrap();
    assert!(full_at_items
        .iter()
        .zip(&gl)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    assert!(
        gl.iter().any(|&g| g != 0.0),
        "CPD must reach the narrow lens"
    );
    // The full gradient has nothing outside the item columns, so nothing is lost.
    let outside: f32 = (0..3 * V)
        .filter(|i| !items.contains(&((i % V) as u32)))
        .map(|i| full_gl[i].abs())
        .sum();
    assert_eq!(outside, 0.0);
    // A lens of the wrong width is refused.
    let mut t = Tape::new();
    let (zv, lv) = (t.leaf(z.clone(), true), t.leaf(lens.clone(), true));
    assert!(t
        .ilrec_objective(zv, &[lv], &pos, ItemVocab::Columns(&items), &weights())
        .is_err());
}
