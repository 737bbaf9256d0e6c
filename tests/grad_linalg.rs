//! matmul / linear (and the sgemm contract beneath them): finite-difference gradients, values
//! against naive f64 triple loops written here, and shape errors.

mod common;
use common::{assert_close, randn};

use ilrec::autograd::GradCheck;
use ilrec::cpu::gemm::{sgemm, sgemm_batched};
use ilrec::rng::Rng;
use ilrec::{Error, Tape, Tensor};

/// Element (i, j) of op(X) where X is stored row-major with row length `cols`.
fn at(x: &[f32], cols: usize, trans: bool, i: usize, j: usize) -> f64 {
    (if trans {
        x[j * cols + i]
    } else {
        x[i * cols + j]
    }) as f64
}

/// Naive f64 batched op(A) . op(B); a, b stored (batch, ., .).
#[allow(clippy::too_many_arguments)]
fn naive_matmul(
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
) -> Vec<f64> {
    let a_cols = if ta { m } else { k };
    let b_cols = if tb { k } else { n };
    let mut out = vec![0.0; batch * m * n];
    for bi in 0..batch {
        let ab = &a[bi * m * k..];
        let bb = &b[bi * k * n..];
        for i in 0..m {
            for j in 0..n {
                out[(bi * m + i) * n + j] = (0..k)
                    .map(|p| at(ab, a_cols, ta, i, p) * at(bb, b_cols, tb, p, j))
                    .sum();
            }
        }
    }
    out
}

/// Stored shape of an operand: (rows, cols) of op(X), swapped when transposed, batch in front.
fn stored(batch: Option<usize>, rows: usize, cols: usize, trans: bool) -> Vec<usize> {
    let (r, c) = if trans { (cols, rows) } else { (rows, cols) };
    match batch {
        Some(b) => vec![b, r, c],
        None => vec![r, c],
    }
}

#[test]
fn matmul_all_transposes_2d_and_batched_values_and_gradients() {
    let sizes = [(5, 7, 3), (1, 1, 1), (4, 1, 6), (2, 9, 1)];
    let mut seed = 1;
    for batch in [None, Some(1), Some(3)] {
        for &(m, k, n) in &sizes {
            for ta in [false, true] {
                for tb in [false, true] {
                    seed += 2;
                    let a = randn(&stored(batch, m, k, ta), seed);
                    let b = randn(&stored(batch, k, n, tb), seed + 1);
                    let what = format!("batch {batch:?} m{m} k{k} n{n} ta {ta} tb {tb}");
                    let mut t = Tape::new();
                    let (av, bv) = (t.leaf(a.clone(), false), t.leaf(b.clone(), false));
                    let c = t.matmul(av, bv, ta, tb).unwrap();
                    let want_shape = match batch {
                        Some(bs) => vec![bs, m, n],
                        None => vec![m, n],
                    };
                    assert_eq!(t.shape(c), want_shape.as_slice(), "{what}");
                    let want = naive_matmul(
                        &a.to_vec(),
                        &b.to_vec(),
                        batch.unwrap_or(1),
                        m,
                        k,
                        n,
                        ta,
                        tb,
                    );
                    assert_close(&t.value(c).to_vec(), &want, 1e-5, &what);
                    GradCheck::default()
                        .run(&[(a, true), (b, true)], |t, v| t.matmul(v[0], v[1], ta, tb))
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                }
            }
        }
    }
}

#[test]
fn matmul_gradient_of_one_operand_only() {
    // needs = [false, true] and [true, false] take separate code paths in the backward.
    let a = randn(&[3, 4], 50);
    let b = randn(&[4, 2], 51);
    let check = GradCheck::default();
    check
        .run(&[(a.clone(), false), (b.clone(), true)], |t, v| {
            t.matmul(v[0], v[1], false, false)
        })
        .unwrap();
    check
        .run(&[(a, true), (b, false)], |t, v| {
            t.matmul(v[0], v[1], false, false)
        })
        .unwrap();
}

#[test]
fn matmul_hand_computed() {
    // [[1,2],[3,4]] . [[5,6],[7,8]] = [[19,22],[43,50]]; gradient of sum(C) w.r.t. A is
    // row sums of B repeated: [[11,15],[11,15]]; w.r.t. B column sums of A: [[4,4],[6,6]].
    let mut t = Tape::new();
    let a = t.leaf(
        Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap(),
        true,
    );
    let b = t.leaf(
        Tensor::from_vec(vec![5.0, 6.0, 7.0, 8.0], &[2, 2]).unwrap(),
        true,
    );
    let c = t.matmul(a, b, false, false).unwrap();
    assert_eq!(t.value(c).to_vec(), vec![19.0, 22.0, 43.0, 50.0]);
    let g = t.backward_from(c, Tensor::full(&[2, 2], 1.0)).unwrap();
    assert_eq!(g.of(a).unwrap().to_vec(), vec![11.0, 15.0, 11.0, 15.0]);
    assert_eq!(g.of(b).unwrap().to_vec(), vec![4.0, 4.0, 6.0, 6.0]);
}

#[test]
fn matmul_shape_errors_name_the_op_and_shapes() {
    let mut t = Tape::new();
    let a = t.leaf(Tensor::zeros(&[2, 3]), true);
    let b = t.leaf(Tensor::zeros(&[4, 5]), true);
    let e = t.matmul(a, b, false, false).unwrap_err().to_string();
    assert!(
        e.contains("matmul") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    // With b transposed, (2,3) . (5,4)^T still has inner 3 vs 5... and (4,3)^T fits.
    let b2 = t.leaf(Tensor::zeros(&[4, 3]), true);
    assert!(t.matmul(a, b2, false, true).is_ok());
    let a3 = t.leaf(Tensor::zeros(&[2, 2, 3]), true);
    let b3 = t.leaf(Tensor::zeros(&[3, 3, 4]), true);
    let e = t.matmul(a3, b3, false, false).unwrap_err().to_string();
    assert!(e.contains("batch"), "{e}");
    assert!(matches!(
        t.matmul(a, b3, false, false),
        Err(Error::Shape { .. })
    ));
    let v = t.leaf(Tensor::zeros(&[3]), true);
    assert!(matches!(
        t.matmul(v, v, false, false),
        Err(Error::Shape { .. })
    ));
}

/// Naive f64 x . w^T + b, x seen as (m, k).
fn naive_linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|p| x[i * k + p] as f64 * w[j * k + p] as f64)
                .sum();
            out[i * n + j] = dot + b.map_or(0.0, |b| b[j] as f64);
        }
    }
    out
}

#[test]
fn linear_rank_1_2_3_with_and_without_bias() {
    let (k, n) = (7, 5);
    let x_shapes: [&[usize]; 4] = [&[k], &[3, k], &[2, 3, k], &[1, 1, k]];
    for (s, x_shape) in x_shapes.iter().enumerate() {
        for with_bias in [false, true] {
            let seed = 100 + 10 * s as u64 + with_bias as u64;
            let x = randn(x_shape, seed);
            let w = randn(&[n, k], seed + 1);
            let b = randn(&[n], seed + 2);
            let m = x.numel() / k;
            let what = format!("x {x_shape:?} bias {with_bias}");

            let mut t = Tape::new();
            let (xv, wv, bv) = (
                t.leaf(x.clone(), false),
                t.leaf(w.clone(), false),
                t.leaf(b.clone(), false),
            );
            let y = t.linear(xv, wv, with_bias.then_some(bv)).unwrap();
            let mut want_shape = x_shape.to_vec();
            *want_shape.last_mut().unwrap() = n;
            assert_eq!(t.shape(y), want_shape.as_slice(), "{what}");
            let bias = b.to_vec();
            let want = naive_linear(
                &x.to_vec(),
                &w.to_vec(),
                with_bias.then_some(&bias[..]),
                m,
                k,
                n,
            );
            assert_close(&t.value(y).to_vec(), &want, 1e-5, &what);

            let mut inputs = vec![(x, true), (w, true)];
            if with_bias {
                inputs.push((b, true));
            }
            GradCheck::default()
                .run(&inputs, |t, v| t.linear(v[0], v[1], v.get(2).copied()))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

#[test]
fn linear_frozen_weight_and_bias_gradient_only() {
    // Only some inputs need gradients: the others must come back as None without error.
    let x = randn(&[4, 3], 7);
    let w = randn(&[2, 3], 8);
    let b = randn(&[2], 9);
    GradCheck::default()
        .run(
            &[(x.clone(), true), (w.clone(), false), (b.clone(), false)],
            |t, v| t.linear(v[0], v[1], Some(v[2])),
        )
        .unwrap();
    GradCheck::default()
        .run(&[(x, false), (w, false), (b, true)], |t, v| {
            t.linear(v[0], v[1], Some(v[2]))
        })
        .unwrap();
}

#[test]
fn linear_shape_errors() {
    let mut t = Tape::new();
    let x = t.leaf(Tensor::zeros(&[2, 3]), true);
    let w = t.leaf(Tensor::zeros(&[4, 5]), true);
    let e = t.linear(x, w, None).unwrap_err().to_string();
    assert!(
        e.contains("linear") && e.contains("[2, 3]") && e.contains("[4, 5]"),
        "{e}"
    );
    let w_ok = t.leaf(Tensor::zeros(&[4, 3]), true);
    let bad_bias = t.leaf(Tensor::zeros(&[3]), true);
    let e = t.linear(x, w_ok, Some(bad_bias)).unwrap_err().to_string();
    assert!(e.contains("bias") && e.contains("[3]"), "{e}");
    let w_1d = t.leaf(Tensor::zeros(&[3]), true);
    assert!(matches!(t.linear(x, w_1d, None), Err(Error::Shape { .. })));
}

#[test]
fn sgemm_contract_with_padded_strides_alpha_and_beta() {
    // The contract the blocked GEMM must also honour: row strides larger than the row, alpha,
    // beta != 0 accumulating, beta == 0 overwriting even NaN.
    let mut rng = Rng::new(42);
    for &(m, n, k) in &[(5, 7, 3), (1, 1, 1), (17, 9, 33), (3, 4, 0)] {
        for ta in [false, true] {
            for tb in [false, true] {
                let (ar, ac) = if ta { (k, m) } else { (m, k) };
                let (br, bc) = if tb { (n, k) } else { (k, n) };
                let (lda, ldb, ldc) = (ac + 2, bc + 1, n + 3);
                let a: Vec<f32> = (0..ar * lda).map(|_| rng.normal()).collect();
                let b: Vec<f32> = (0..br * ldb).map(|_| rng.normal()).collect();
                let c0: Vec<f32> = (0..m * ldc).map(|_| rng.normal()).collect();
                let (alpha, beta) = (0.5f32, -1.5f32);
                let mut c = c0.clone();
                sgemm(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut c, ldc);
                let mut c_nan = vec![f32::NAN; m * ldc];
                sgemm(
                    ta, tb, m, n, k, alpha, &a, lda, &b, ldb, 0.0, &mut c_nan, ldc,
                );
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|p| at(&a, lda, ta, i, p) * at(&b, ldb, tb, p, j))
                            .sum();
                        let want = alpha as f64 * dot + beta as f64 * c0[i * ldc + j] as f64;
                        let got = c[i * ldc + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "m{m} n{n} k{k} ta{ta} tb{tb} ({i},{j})"
                        );
                        let got0 = c_nan[i * ldc + j] as f64;
                        assert!((got0 - alpha as f64 * dot).abs() < 1e-4 * (1.0 + dot.abs()));
                    }
                    // Padding columns of C are never written.
                    for j in n..ldc {
                        assert_eq!(c[i * ldc + j].to_bits(), c0[i * ldc + j].to_bits());
                    }
                }
            }
        }
    }
}

#[test]
fn sgemm_batched_matches_per_matrix_calls() {
    let mut rng = Rng::new(3);
    let (batch, m, n, k) = (3, 4, 5, 6);
    let (sa, sb, sc) = (m * k + 3, k * n + 1, m * n + 2);
    let a: Vec<f32> = (0..batch * sa).map(|_| rng.normal()).collect();
    let b: Vec<f32> = (0..batch * sb).map(|_| rng.normal()).collect();
    let mut c = vec![0.0f32; batch * sc];
    sgemm_batched(
        batch, false, false, m, n, k, 1.0, &a, k, sa, &b, n, sb, 0.0, &mut c, n, sc,
    );
    for bi in 0..batch {
        let want = naive_matmul(
            &a[bi * sa..bi * sa + m * k],
            &b[bi * sb..bi * sb + k * n],
            1,
            m,
            k,
            n,
            false,
            false,
        );
        assert_close(
            &c[bi * sc..bi * sc + m * n],
            &want,
            1e-5,
            &format!("batch {bi}"),
        );
    }
}
