//! Reductions, softmax / log_softmax and the losses: finite-difference gradients, values against
//! naive f64 references written here (and hand computations), stability, and error cases.

mod common;
use common::{assert_close, randn};

use ilrec::autograd::GradCheck;
use ilrec::{Error, Tape, Tensor};

/// Naive f64 sum over `axis` of a rank-3 tensor, by explicit index arithmetic.
fn naive_sum3(x: &[f32], s: [usize; 3], axis: usize) -> Vec<f64> {
    let mut out_shape = s;
    out_shape[axis] = 1;
    let mut out = vec![0.0; out_shape.iter().product()];
    for i in 0..s[0] {
        for j in 0..s[1] {
            for l in 0..s[2] {
                let mut o = [i, j, l];
                o[axis] = 0;
                out[(o[0] * out_shape[1] + o[1]) * out_shape[2] + o[2]] +=
                    x[(i * s[1] + j) * s[2] + l] as f64;
            }
        }
    }
    out
}

#[test]
fn sum_and_mean_on_every_axis_of_a_rank_3_tensor() {
    let s = [3, 4, 5];
    let x = randn(&s, 1);
    for axis in 0..3 {
        let want_sum = naive_sum3(&x.to_vec(), s, axis);
        let want_mean: Vec<f64> = want_sum.iter().map(|v| v / s[axis] as f64).collect();
        for keepdim in [false, true] {
            let mut shape = s.to_vec();
            if keepdim {
                shape[axis] = 1;
            } else {
                shape.remove(axis);
            }
            let what = format!("axis {axis} keepdim {keepdim}");
            let mut t = Tape::new();
            let xv = t.leaf(x.clone(), false);
            let sv = t.sum(xv, axis, keepdim).unwrap();
            let mv = t.mean(xv, axis, keepdim).unwrap();
            assert_eq!(t.shape(sv), shape.as_slice(), "{what}");
            assert_eq!(t.shape(mv), shape.as_slice(), "{what}");
            assert_close(&t.value(sv).to_vec(), &want_sum, 1e-6, &what);
            assert_close(&t.value(mv).to_vec(), &want_mean, 1e-6, &what);
            let check = GradCheck::default();
            let inputs = [(x.clone(), true)];
            check
                .run(&inputs, |t, v| t.sum(v[0], axis, keepdim))
                .unwrap();
            check
                .run(&inputs, |t, v| t.mean(v[0], axis, keepdim))
                .unwrap();
        }
    }
}

#[test]
fn reductions_of_rank_1_and_whole_tensors_give_shape_1() {
    let mut t = Tape::new();
    let x = t.leaf(
        Tensor::from_vec(vec![1.0, 2.0, 3.0, 6.0], &[4]).unwrap(),
        true,
    );
    let s = t.sum(x, 0, false).unwrap();
    assert_eq!(t.shape(s), &[1]);
    assert_eq!(t.value(s).to_vec(), vec![12.0]);
    let y = t.leaf(randn(&[2, 3, 2], 5), true);
    let sa = t.sum_all(y).unwrap();
    let ma = t.mean_all(y).unwrap();
    assert_eq!(t.shape(sa), &[1]);
    assert_eq!(t.shape(ma), &[1]);
    let want: f64 = t.value(y).to_vec().iter().map(|&v| v as f64).sum();
    assert_close(&t.value(sa).to_vec(), &[want], 1e-6, "sum_all");
    assert_close(&t.value(ma).to_vec(), &[want / 12.0], 1e-6, "mean_all");
    let check = GradCheck::default();
    let inputs = [(randn(&[3, 5], 6), true)];
    check.run(&inputs, |t, v| t.sum_all(v[0])).unwrap();
    check.run(&inputs, |t, v| t.mean_all(v[0])).unwrap();
}

#[test]
fn reduction_errors() {
    let mut t = Tape::new();
    let x = t.leaf(Tensor::zeros(&[2, 3]), true);
    let e = t.sum(x, 2, false).unwrap_err().to_string();
    assert!(
        e.contains("sum") && e.contains("axis 2") && e.contains("[2, 3]"),
        "{e}"
    );
    let empty = t.leaf(Tensor::zeros(&[2, 0]), true);
    assert!(matches!(t.mean(empty, 1, false), Err(Error::Shape { .. })));
    assert!(matches!(t.mean_all(empty), Err(Error::Shape { .. })));
    // The sum of nothing is 0, not an error.
    let s = t.sum(empty, 1, true).unwrap();
    assert_eq!(t.value(s).to_vec(), vec![0.0, 0.0]);
}

/// Naive f64 softmax of one row.
fn naive_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_and_log_softmax_values_and_gradients() {
    for shape in [vec![4, 7], vec![2, 3, 5], vec![1, 1], vec![9], vec![3, 37]] {
        let x = randn(&shape, 11);
        let cols = *shape.last().unwrap();
        let want: Vec<f64> = x.to_vec().chunks(cols).flat_map(naive_softmax).collect();
        let want_log: Vec<f64> = want.iter().map(|p| p.ln()).collect();
        let mut t = Tape::new();
        let xv = t.leaf(x.clone(), false);
        let y = t.softmax(xv).unwrap();
        let ly = t.log_softmax(xv).unwrap();
        assert_close(&t.value(y).to_vec(), &want, 1e-6, "softmax");
        assert_close(&t.value(ly).to_vec(), &want_log, 1e-6, "log_softmax");
        let check = GradCheck::default();
        let inputs = [(x, true)];
        check.run(&inputs, |t, v| t.softmax(v[0])).unwrap();
        check.run(&inputs, |t, v| t.log_softmax(v[0])).unwrap();
    }
}

#[test]
fn softmax_is_stable_under_huge_shifts() {
    // Adding 1e4 to a row (or -1e4) must not change softmax; naive exp would overflow to inf.
    let base = [0.5f32, -1.0, 2.0, 0.0, 1.25];
    let want = naive_softmax(&base);
    for shift in [1e4f32, -1e4, 3e4] {
        let row: Vec<f32> = base.iter().map(|v| v + shift).collect();
        let mut t = Tape::new();
        let x = t.leaf(Tensor::from_vec(row.clone(), &[1, 5]).unwrap(), false);
        let y = t.softmax(x).unwrap();
        let ly = t.log_softmax(x).unwrap();
        // Rounding of v + shift in f32 costs ~shift * 2^-24 ~ 1e-3 in the logits.
        assert_close(&t.value(y).to_vec(), &want, 5e-3, "softmax shifted");
        let wl: Vec<f64> = want.iter().map(|p| p.ln()).collect();
        assert_close(&t.value(ly).to_vec(), &wl, 5e-3, "log_softmax shifted");
        assert!(t.value(ly).to_vec().iter().all(|v| v.is_finite()));
        let inputs = [(Tensor::from_vec(row, &[1, 5]).unwrap(), true)];
        // f32 spacing at 1e4 is ~1e-3: use a step much larger than that.
        let check = GradCheck {
            eps: 0.25,
            abs_tol: 2e-2,
            rel_tol: 5e-2,
            ..GradCheck::default()
        };
        check.run(&inputs, |t, v| t.softmax(v[0])).unwrap();
        check.run(&inputs, |t, v| t.log_softmax(v[0])).unwrap();
    }
    // Widely spread logits in one row: exp(-2e4) underflows to 0, log_softmax stays exact.
    let mut t = Tape::new();
    let x = t.leaf(
        Tensor::from_vec(vec![1e4, -1e4, 0.0], &[1, 3]).unwrap(),
        false,
    );
    let ly = t.log_softmax(x).unwrap();
    assert_eq!(t.value(ly).to_vec(), vec![0.0, -2e4, -1e4]);
}
