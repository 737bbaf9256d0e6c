//! Shape ops, embedding and the losses: finite-difference gradients, values against naive
//! references and hand computations written here, and error cases.

mod common;
use common::{assert_close, randn};

use ilrec::autograd::GradCheck;
use ilrec::rng::Rng;
use ilrec::{Error, Tape, Tensor};

// ---------------------------------------------------------------- cross-entropy and mse

#[test]
fn cross_entropy_hand_computed_with_an_ignored_row() {
    // Row 0: logits (0, ln2, ln3) -> softmax (1/6, 2/6, 3/6); target 2 -> loss ln 2.
    // Row 1: ignored. Row 2: equal logits -> softmax 1/3 each; target 0 -> loss ln 3.
    // Mean over the 2 counted rows: ln 6 / 2.
    let (l2, l3) = (2f32.ln(), 3f32.ln());
    let logits = vec![0.0, l2, l3, 7.0, -3.0, 1.0, 5.0, 5.0, 5.0];
    let mut t = Tape::new();
    let x = t.leaf(Tensor::from_vec(logits, &[3, 3]).unwrap(), true);
    let loss = t.cross_entropy(x, &[2, -100, 0]).unwrap();
    assert_eq!(t.shape(loss), &[1]);
    assert_close(&t.value(loss).to_vec(), &[6f64.ln() / 2.0], 1e-6, "loss");
    // d loss / d logits = (softmax - onehot) / count; the ignored row gets nothing.
    let g = t.backward(loss).unwrap();
    let want = [
        1.0 / 12.0,
        2.0 / 12.0,
        -3.0 / 12.0,
        0.0,
        0.0,
        0.0,
        -1.0 / 3.0,
        1.0 / 6.0,
        1.0 / 6.0,
    ];
    assert_close(&g.of(x).unwrap().to_vec(), &want, 1e-6, "gradient");
}

/// Naive f64 mean cross-entropy over non-ignored rows.
fn naive_cross_entropy(x: &[f32], v: usize, targets: &[i64]) -> f64 {
    let mut total = 0.0;
    let mut count = 0;
    for (row, &t) in x.chunks(v).zip(targets) {
        if t == -100 {
            continue;
        }
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a as f64));
        let lse = max
            + row
                .iter()
                .map(|&a| (a as f64 - max).exp())
                .sum::<f64>()
                .ln();
        total += lse - row[t as usize] as f64;
        count += 1;
    }
    total / count as f64
}

#[test]
fn cross_entropy_matches_naive_reference_and_finite_differences() {
    let (n, v) = (6, 11);
    let x = randn(&[n, v], 3);
    let targets = [3, -100, 0, 10, -100, 7];
    let mut t = Tape::new();
    let xv = t.leaf(x.clone(), false);
    let loss = t.cross_entropy(xv, &targets).unwrap();
    let want = naive_cross_entropy(&x.to_vec(), v, &targets);
    assert_close(&t.value(loss).to_vec(), &[want], 1e-6, "loss");
    GradCheck::default()
        .run(&[(x, true)], |t, vs| t.cross_entropy(vs[0], &targets))
        .unwrap();
}

#[test]
fn cross_entropy_over_a_wide_vocabulary_matches_naive_reference() {
    // Wide rows exercise the vectorised lanes of the row reductions, not only their tails.
    let (n, v) = (5, 1003);
    let x = Tensor::randn(&[n, v], 3.0, &mut Rng::new(21));
    let targets = [1002, 0, -100, 517, 8];
    let mut t = Tape::new();
    let xv = t.leaf(x.clone(), true);
    let loss = t.cross_entropy(xv, &targets).unwrap();
    let want = naive_cross_entropy(&x.to_vec(), v, &targets);
    assert_close(&t.value(loss).to_vec(), &[want], 1e-6, "loss");
    // Gradient against the f64 (softmax - onehot) / count.
    let g = t.backward(loss).unwrap().of(xv).unwrap().to_vec();
    let xd = x.to_vec();
    for (r, &tr) in targets.iter().enumerate() {
        let row = &xd[r * v..(r + 1) * v];
        let max = row.iter().fold(f64::NEG_INFINITY, |m, &a| m.max(a as f64));
        let z: f64 = row.iter().map(|&a| (a as f64 - max).exp()).sum();
        for c in 0..v {
            let want = if tr == -100 {
                0.0
            } else {
                let p = (row[c] as f64 - max).exp() / z;
                (p - if c as i64 == tr { 1.0 } else { 0.0 }) / 4.0
            };
            assert!((g[r * v + c] as f64 - want).abs() < 1e-7, "row {r} col {c}");
        }
    }
}

#[test]
fn cross_entropy_is_stable_for_huge_logits() {
    let base = randn(&[2, 5], 4).to_vec();
    let targets = [1, 4];
    let want = naive_cross_entropy(&base, 5, &targets);
    for shift in [1e4f32, -1e4] {
        let shifted: Vec<f32> = base.iter().map(|a| a + shift).collect();
        let mut t = Tape::new();
        let x = t.leaf(Tensor::from_vec(shifted, &[2, 5]).unwrap(), true);
        let loss = t.cross_entropy(x, &targets).unwrap();
        assert_close(&t.value(loss).to_vec(), &[want], 5e-3, "shifted loss");
        let g = t.backward(loss).unwrap();
        assert!(g.of(x).unwrap().to_vec().iter().all(|v| v.is_finite()));
    }
}

#[test]
fn cross_entropy_errors() {
    let mut t = Tape::new();
    let x = t.leaf(Tensor::zeros(&[2, 4]), true);
    // Every row ignored: the mean is undefined, and the message says why.
    let e = t.cross_entropy(x, &[-100, -100]).unwrap_err();
    assert!(e.to_string().contains("-100"), "{e}");
    // A target outside the vocabulary, and a negative one other than -100.
    for bad in [4i64, -1] {
        match t.cross_entropy(x, &[0, bad]) {
            Err(Error::Index { op, index, bound }) => {
                assert_eq!((op, index, bound), ("cross_entropy", bad, 4))
            }
            other => panic!("expected an index error, got {other:?}"),
        }
    }
    assert!(matches!(t.cross_entropy(x, &[0]), Err(Error::Shape { .. })));
    let x3 = t.leaf(Tensor::zeros(&[1, 2, 4]), true);
    assert!(matches!(
        t.cross_entropy(x3, &[0]),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn mse_values_gradients_and_errors() {
    let mut t = Tape::new();
    let a = t.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap(), true);
    let b = t.leaf(Tensor::from_vec(vec![1.0, 0.0, 6.0], &[3]).unwrap(), true);
    let l = t.mse(a, b).unwrap();
    // (0 + 4 + 9) / 3; d/da = 2 (a - b) / 3 = (0, 4/3, -2), d/db = -d/da.
    assert_close(&t.value(l).to_vec(), &[13.0 / 3.0], 1e-6, "mse");
    let g = t.backward(l).unwrap();
    assert_close(
        &g.of(a).unwrap().to_vec(),
        &[0.0, 4.0 / 3.0, -2.0],
        1e-6,
        "da",
    );
    assert_close(
        &g.of(b).unwrap().to_vec(),
        &[0.0, -4.0 / 3.0, 2.0],
        1e-6,
        "db",
    );
    let inputs = [(randn(&[3, 4], 1), true), (randn(&[3, 4], 2), true)];
    GradCheck::default()
        .run(&inputs, |t, v| t.mse(v[0], v[1]))
        .unwrap();
    let c = t.leaf(Tensor::zeros(&[4]), true);
    let e = t.mse(a, c).unwrap_err().to_string();
    assert!(
        e.contains("mse") && e.contains("[3]") && e.contains("[4]"),
        "{e}"
    );
}

// ---------------------------------------------------------------- shape ops

#[test]
fn reshape_shares_data_and_reshapes_the_gradient_back() {
    let x = randn(&[2, 3, 4], 5);
    let mut t = Tape::new();
    let xv = t.leaf(x.clone(), false);
    let y = t.reshape(xv, &[6, 4]).unwrap();
    assert_eq!(t.value(y).to_vec(), x.to_vec());
    assert!(matches!(t.reshape(xv, &[5, 5]), Err(Error::Shape { .. })));
    GradCheck::default()
        .run(&[(x, true)], |t, v| t.reshape(v[0], &[4, 6]))
        .unwrap();
}

#[test]
fn transpose_every_axis_pair_of_a_rank_3_tensor() {
    let s = [2, 3, 4];
    let x = randn(&s, 6);
    let xd = x.to_vec();
    for (d0, d1) in [(0, 1), (0, 2), (1, 2), (2, 0), (1, 1)] {
        let mut t = Tape::new();
        let xv = t.leaf(x.clone(), false);
        let y = t.transpose(xv, d0, d1).unwrap();
        let mut ys = s;
        ys.swap(d0, d1);
        assert_eq!(t.shape(y), &ys);
        let yd = t.value(y).to_vec();
        // y[idx with d0, d1 swapped] == x[idx]
        for i in 0..s[0] {
            for j in 0..s[1] {
                for l in 0..s[2] {
                    let mut o = [i, j, l];
                    o.swap(d0, d1);
                    let yi = (o[0] * ys[1] + o[1]) * ys[2] + o[2];
                    assert_eq!(yd[yi], xd[(i * s[1] + j) * s[2] + l], "({d0},{d1})");
                }
            }
        }
        GradCheck::default()
            .run(&[(x.clone(), true)], |t, v| t.transpose(v[0], d0, d1))
            .unwrap();
    }
    let mut t = Tape::new();
    let xv = t.leaf(x, false);
    assert!(matches!(t.transpose(xv, 0, 3), Err(Error::Shape { .. })));
}

#[test]
fn concat_split_round_trip_on_every_axis() {
    for axis in 0..3 {
        let mut sa = [2, 3, 4];
        let mut sb = [2, 3, 4];
        sa[axis] = 1;
        sb[axis] = 2;
        let (a, b) = (randn(&sa, 7), randn(&sb, 8));
        let c = randn(&sb, 9);
        let mut t = Tape::new();
        let vars = [
            t.leaf(a.clone(), false),
            t.leaf(b.clone(), false),
            t.leaf(c.clone(), false),
        ];
        let joined = t.concat(&vars, axis).unwrap();
        let mut sj = sa;
        sj[axis] = 5;
        assert_eq!(t.shape(joined), &sj);
        let parts = t.split(joined, axis, &[1, 2, 2]).unwrap();
        for (p, orig) in parts.iter().zip([&a, &b, &c]) {
            assert_eq!(t.value(*p).to_vec(), orig.to_vec(), "axis {axis}");
        }
        let check = GradCheck::default();
        let inputs = [(a, true), (b, true), (c, true)];
        check.run(&inputs, |t, v| t.concat(v, axis)).unwrap();
        // Split pieces used unequally: the gradient sums each piece's contribution.
        check
            .run(&[(randn(&sj, 10), true)], |t, v| {
                let p = t.split(v[0], axis, &[2, 3])?;
                let q = t.scale(p[1], 3.0)?;
                let both = t.concat(&[q, p[0]], axis)?;
                t.sum_all(both)
            })
            .unwrap();
    }
}

#[test]
fn split_pieces_add_exactly_into_their_rows_of_the_gradient() {
    // Along axis 0 each piece's gradient goes straight into its rows of x's gradient (the
    // tape's deferred pieces, autograd/pieces.rs). Pieces: rows 0..1 unused (zero gradient),
    // 1..3 used twice, 3..6 once; x also used directly before and after the split, so its
    // gradient has a dense part recorded before or after the pieces. Every value is a small
    // integer: the expected gradient is exact.
    let x = randn(&[6, 5], 21);
    for direct_first in [false, true] {
        let mut t = Tape::new();
        let xv = t.leaf(x.clone(), true);
        let mut terms = Vec::new();
        if direct_first {
            let d = t.scale(xv, 2.0).unwrap();
            terms.push(t.sum_all(d).unwrap());
        }
        let p = t.split(xv, 0, &[1, 2, 3]).unwrap();
        let p1 = t.scale(p[1], 3.0).unwrap();
        terms.push(t.sum_all(p1).unwrap());
        terms.push(t.sum_all(p[1]).unwrap());
        let p2 = t.scale(p[2], -1.0).unwrap();
        terms.push(t.sum_all(p2).unwrap());
        if !direct_first {
            let d = t.scale(xv, 2.0).unwrap();
            terms.push(t.sum_all(d).unwrap());
        }
        let mut total = terms[0];
        for &term in &terms[1..] {
            total = t.add(total, term).unwrap();
        }
        let g = t.backward(total).unwrap();
        let want: Vec<f32> = (0..30)
            .map(|i| match i / 5 {
                0 => 2.0,
                1 | 2 => 6.0,
                _ => 1.0,
            })
            .collect();
        assert_eq!(
            g.of(xv).unwrap().to_vec(),
            want,
            "direct use first: {direct_first}"
        );
    }
    // A split of a constant records no gradient path at all.
    let mut t = Tape::new();
    let c = t.constant(x.clone());
    let w = t.leaf(randn(&[6, 5], 22), true);
    let p = t.split(c, 0, &[2, 4]).unwrap();
    assert!(!t.requires_grad(p[0]) && !t.requires_grad(p[1]));
    let prod = t.mul(w, c).unwrap();
    let total = t.sum_all(prod).unwrap();
    assert_eq!(
        t.backward(total).unwrap().of(w).unwrap().to_vec(),
        x.to_vec()
    );
}

#[test]
fn concat_hand_value_and_errors() {
    let mut t = Tape::new();
    let a = t.leaf(
        Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap(),
        false,
    );
    let b = t.leaf(Tensor::from_vec(vec![5.0, 6.0], &[2, 1]).unwrap(), false);
    let c = t.concat(&[a, b], 1).unwrap();
    assert_eq!(t.value(c).to_vec(), vec![1.0, 2.0, 5.0, 3.0, 4.0, 6.0]);
    let e = t.concat(&[a, b], 0).unwrap_err().to_string();
    assert!(e.contains("concat") && e.contains("[2, 1]"), "{e}");
    assert!(matches!(t.concat(&[], 0), Err(Error::Shape { .. })));
    let e = t.split(a, 1, &[1, 2]).unwrap_err().to_string();
    assert!(e.contains("split") && e.contains("[1, 2]"), "{e}");
}

#[test]
fn index_select_with_duplicates_accumulates() {
    let x = randn(&[5, 2, 3], 12);
    let idx = [4, 0, 4, 2, 4];
    let mut t = Tape::new();
    let xv = t.leaf(x.clone(), true);
    let y = t.index_select(xv, &idx).unwrap();
    assert_eq!(t.shape(y), &[5, 2, 3]);
    let xd = x.to_vec();
    let want: Vec<f32> = idx
        .iter()
        .flat_map(|&r| xd[r * 6..r * 6 + 6].to_vec())
        .collect();
    assert_eq!(t.value(y).to_vec(), want);
    // Gradient of sum: each source row gets its number of picks (row 4 three times).
    let s = t.sum_all(y).unwrap();
    let g = t.backward(s).unwrap().of(xv).unwrap().to_vec();
    let counts = [1.0, 0.0, 1.0, 0.0, 3.0];
    for (r, c) in counts.iter().enumerate() {
        assert!(g[r * 6..r * 6 + 6].iter().all(|v| v == c), "row {r}");
    }
    GradCheck::default()
        .run(&[(x, true)], |t, v| t.index_select(v[0], &idx))
        .unwrap();
    let mut t = Tape::new();
    let xv = t.leaf(Tensor::zeros(&[3, 2]), true);
    match t.index_select(xv, &[0, 3]) {
        Err(Error::Index { op, index, bound }) => {
            assert_eq!((op, index, bound), ("index_select", 3, 3))
        }
        other => panic!("expected an index error, got {other:?}"),
    }
}

#[test]
fn gather_last_values_duplicates_and_errors() {
    let (r, c, k) = (3, 5, 4);
    let x = randn(&[r, c], 13);
    let idx = [0, 4, 4, 1, 2, 2, 2, 3, 1, 0, 3, 4];
    let mut t = Tape::new();
    let xv = t.leaf(x.clone(), false);
    let y = t.gather_last(xv, &idx, k).unwrap();
    assert_eq!(t.shape(y), &[r, k]);
    let xd = x.to_vec();
    for row in 0..r {
        for j in 0..k {
            assert_eq!(
                t.value(y).to_vec()[row * k + j],
                xd[row * c + idx[row * k + j]]
            );
        }
    }
    GradCheck::default()
        .run(&[(x, true)], |t, v| t.gather_last(v[0], &idx, k))
        .unwrap();
    assert!(matches!(
        t.gather_last(xv, &idx[..5], k),
        Err(Error::Shape { .. })
    ));
    let mut bad = idx;
    bad[7] = 5;
    match t.gather_last(xv, &bad, k) {
        Err(Error::Index { op, index, bound }) => {
            assert_eq!((op, index, bound), ("gather_last", 5, 5))
        }
        other => panic!("expected an index error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- embedding

#[test]
fn embedding_rows_shape_and_accumulated_gradient() {
    let (v, d) = (6, 3);
    let w = randn(&[v, d], 14);
    let ids = [2u32, 5, 2, 0, 2, 5];
    let mut t = Tape::new();
    let wv = t.leaf(w.clone(), true);
    let e = t.embedding(wv, &ids, &[2, 3]).unwrap();
    assert_eq!(t.shape(e), &[2, 3, d]);
    let wd = w.to_vec();
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| wd[i as usize * d..(i as usize + 1) * d].to_vec())
        .collect();
    assert_eq!(t.value(e).to_vec(), want);
    // Upstream gradient: position p gets value p + 1 in every column; id 2 is at positions
    // 0, 2, 4 -> 1 + 3 + 5 = 9; id 5 at 1, 5 -> 2 + 6 = 8; id 0 at 3 -> 4; others 0.
    let seed: Vec<f32> = (0..6).flat_map(|p| vec![p as f32 + 1.0; d]).collect();
    let g = t
        .backward_from(e, Tensor::from_vec(seed, &[2, 3, d]).unwrap())
        .unwrap();
    let gw = g.of(wv).unwrap().to_vec();
    let per_row = [4.0, 0.0, 9.0, 0.0, 0.0, 8.0];
    for (row, want) in per_row.iter().enumerate() {
        assert!(
            gw[row * d..(row + 1) * d].iter().all(|x| x == want),
            "row {row}: {gw:?}"
        );
    }
    GradCheck::default()
        .run(&[(w, true)], |t, vs| t.embedding(vs[0], &ids, &[6]))
        .unwrap();
}

#[test]
fn row_gradients_of_a_tied_table_add_into_its_dense_gradient_exactly() {
    // A tied table W (V, D) used three ways, as SmolLM2's embedding / LM head is: looked up by
    // ids (embedding), multiplied (the head: dense dW), and row-selected (the lens head on SID
    // columns). The row gradients are deferred pieces the tape adds into the dense one when it
    // reaches W (or into zeros when no dense gradient comes). Integer values: the sums are exact.
    let (v, d) = (5, 2);
    let w = Tensor::from_vec((0..10).map(|i| (i % 4) as f32).collect(), &[v, d]).unwrap();
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, -1.0], &[2, d]).unwrap();
    let (ids, cols) = ([1u32, 3, 1], [4usize, 1]);
    for with_head in [false, true] {
        for head_first in [false, true] {
            let mut t = Tape::new();
            let wv = t.leaf(w.clone(), true);
            let xv = t.constant(x.clone());
            let mut terms = Vec::new();
            let head = |t: &mut Tape| {
                let z = t.linear(xv, wv, None).unwrap(); // (2, V): dW[v] = x[0] + x[1]
                t.sum_all(z).unwrap()
            };
            if with_head && head_first {
                terms.push(head(&mut t));
            }
            let e = t.embedding(wv, &ids, &[3]).unwrap();
            terms.push(t.sum_all(e).unwrap());
            let picked = t.index_select(wv, &cols).unwrap();
            let twice = t.scale(picked, 2.0).unwrap();
            terms.push(t.sum_all(twice).unwrap());
            if with_head && !head_first {
                terms.push(head(&mut t));
            }
            let mut total = terms[0];
            for &term in &terms[1..] {
                total = t.add(total, term).unwrap();
            }
            let g = t.backward(total).unwrap().of(wv).unwrap().to_vec();
            let (emb_count, sel_count) = ([0.0, 2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]);
            let dense = match with_head {
                true => [4.0, 1.0],
                false => [0.0, 0.0],
            };
            let want: Vec<f32> = (0..v * d)
                .map(|i| dense[i % d] + emb_count[i / d] + 2.0 * sel_count[i / d])
                .collect();
            assert_eq!(
                g, want,
                "head: {with_head}, head recorded first: {head_first}"
            );
        }
    }
}

#[test]
fn embedding_errors() {
    let mut t = Tape::new();
    let w = t.leaf(Tensor::zeros(&[4, 2]), true);
    match t.embedding(w, &[1, 4], &[2]) {
        Err(Error::Index { op, index, bound }) => {
            assert_eq!((op, index, bound), ("embedding", 4, 4))
        }
        other => panic!("expected an index error, got {other:?}"),
    }
    let e = t.embedding(w, &[1, 2, 3], &[2, 2]).unwrap_err().to_string();
    assert!(e.contains("embedding") && e.contains("[2, 2]"), "{e}");
    let w1 = t.leaf(Tensor::zeros(&[4]), true);
    assert!(matches!(
        t.embedding(w1, &[0], &[1]),
        Err(Error::Shape { .. })
    ));
}
