//! Finite-difference checks of the elementwise family and of the tape itself.

mod common;
use common::randn;

use ilrec::autograd::GradCheck;
use ilrec::rng::Rng;
use ilrec::{Params, Tape, Tensor};

/// Values bounded away from zero (for log, sqrt, div denominators).
fn positive(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand_uniform(shape, 0.5, 2.0, &mut Rng::new(seed))
}

#[test]
fn binary_ops_with_every_broadcast_kind() {
    let a_shape = [3, 5, 7];
    let b_shapes: [&[usize]; 5] = [&[3, 5, 7], &[7], &[1, 7], &[3, 5, 1], &[1]];
    for (s, b_shape) in b_shapes.iter().enumerate() {
        let a = randn(&a_shape, 10 + s as u64);
        let b = positive(b_shape, 20 + s as u64);
        let check = GradCheck::default();
        let inputs = [(a.clone(), true), (b.clone(), true)];
        check.run(&inputs, |t, v| t.add(v[0], v[1])).unwrap();
        check.run(&inputs, |t, v| t.sub(v[0], v[1])).unwrap();
        check.run(&inputs, |t, v| t.mul(v[0], v[1])).unwrap();
        check.run(&inputs, |t, v| t.div(v[0], v[1])).unwrap();
    }
}

#[test]
fn broadcast_refuses_incompatible_shapes_with_a_named_error() {
    let mut t = Tape::new();
    let a = t.leaf(Tensor::zeros(&[2, 3]), true);
    let b = t.leaf(Tensor::zeros(&[2]), true);
    let e = t.add(a, b).unwrap_err().to_string();
    assert!(
        e.contains("add") && e.contains("[2]") && e.contains("[2, 3]"),
        "{e}"
    );
}

#[test]
fn unary_ops() {
    let check = GradCheck::default();
    let x = randn(&[4, 9], 1);
    let p = positive(&[4, 9], 2);
    check.run(&[(x.clone(), true)], |t, v| t.exp(v[0])).unwrap();
    check.run(&[(p.clone(), true)], |t, v| t.log(v[0])).unwrap();
    check
        .run(&[(p.clone(), true)], |t, v| t.sqrt(v[0]))
        .unwrap();
    check
        .run(&[(x.clone(), true)], |t, v| t.silu(v[0]))
        .unwrap();
    check
        .run(&[(x.clone(), true)], |t, v| t.gelu(v[0]))
        .unwrap();
    check
        .run(&[(x.clone(), true)], |t, v| t.scale(v[0], -1.7))
        .unwrap();
    // relu: keep inputs away from the kink at 0, where finite differences are meaningless.
    let away: Vec<f32> = x
        .to_vec()
        .iter()
        .map(|&v| if v.abs() < 0.05 { v + 0.2 } else { v })
        .collect();
    let away = Tensor::from_vec(away, &[4, 9]).unwrap();
    check.run(&[(away, true)], |t, v| t.relu(v[0])).unwrap();
}

#[test]
fn activation_values_match_closed_forms() {
    // Independent references in f64.
    for &x in &[-30.0f32, -3.0, -0.5, 0.0, 0.7, 4.0, 30.0] {
        let xd = x as f64;
        let silu_ref = xd / (1.0 + (-xd).exp());
        assert!((ilrec::autograd::silu(x) as f64 - silu_ref).abs() < 1e-5 * (1.0 + silu_ref.abs()));
    }
    // erf at known points (tables): erf(0.5) = 0.5204998778, erf(1) = 0.8427007929, erf(2) = 0.9953222650
    for (x, e) in [
        (0.5f32, 0.520_499_877_8f64),
        (1.0, 0.842_700_792_9),
        (2.0, 0.995_322_265_0),
        (-1.0, -0.842_700_792_9),
    ] {
        assert!(
            (ilrec::autograd::erf(x) as f64 - e).abs() < 2e-7,
            "erf({x})"
        );
    }
}

#[test]
fn reused_node_accumulates_gradient() {
    // y = x*x + x  =>  dy/dx = 2x + 1, with x used three times.
    let x = randn(&[6], 3);
    GradCheck::default()
        .run(&[(x.clone(), true)], |t, v| {
            let sq = t.mul(v[0], v[0])?;
            t.add(sq, v[0])
        })
        .unwrap();
    let mut t = Tape::new();
    let xv = t.leaf(x.clone(), true);
    let sq = t.mul(xv, xv).unwrap();
    let y = t.add(sq, xv).unwrap();
    let g = t.backward_from(y, Tensor::full(&[6], 1.0)).unwrap();
    let gx = g.of(xv).unwrap().to_vec();
    for (gi, xi) in gx.iter().zip(x.to_vec()) {
        assert!((gi - (2.0 * xi + 1.0)).abs() < 1e-6);
    }
}

#[test]
fn params_get_gradients_and_accumulate_across_tapes() {
    let mut params = Params::new();
    let w = params
        .add(
            "w",
            Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3]).unwrap(),
            true,
        )
        .unwrap();
    let frozen = params
        .add(
            "frozen",
            Tensor::from_vec(vec![5.0; 3], &[3]).unwrap(),
            false,
        )
        .unwrap();
    for _ in 0..2 {
        let mut t = Tape::new();
        let wv = t.param(&params, w);
        let fv = t.param(&params, frozen);
        let y = t.mul(wv, fv).unwrap();
        let g = t.backward_from(y, Tensor::full(&[3], 1.0)).unwrap();
        params.accumulate(&g).unwrap();
    }
    // d/dw sum(w * f) = f = 5, twice.
    assert_eq!(params.grad(w).unwrap().to_vec(), vec![10.0; 3]);
    assert!(params.grad(frozen).is_none());
    assert!(params.params_without_gradient().is_empty());
    params.zero_grad();
    assert_eq!(params.params_without_gradient(), vec!["w".to_string()]);
}

#[test]
fn op_without_backward_fails_loudly_when_a_parameter_depends_on_it() {
    let mut params = Params::new();
    let w = params
        .add("w", Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap(), true)
        .unwrap();
    let mut t = Tape::new();
    let wv = t.param(&params, w);
    let v = t.value(wv).clone();
    let frozen_path = t.record_no_backward("argmax_like", v, &[wv]);
    let e = t
        .backward_from(frozen_path, Tensor::full(&[2], 1.0))
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        e.contains("argmax_like") && e.contains("no backward"),
        "{e}"
    );
}

#[test]
fn no_grad_values_are_constants() {
    let mut t = Tape::new();
    let x = t.leaf(randn(&[3], 4), true);
    let c = t.no_grad(|t| t.exp(x)).unwrap();
    assert!(!t.requires_grad(c));
    let y = t.mul(x, c).unwrap();
    let g = t.backward_from(y, Tensor::full(&[3], 1.0)).unwrap();
    // d/dx (x * const) = const = exp(x): the no_grad branch contributes nothing.
    let gx = g.of(x).unwrap().to_vec();
    let ex: Vec<f32> = t.value(x).to_vec().iter().map(|v| v.exp()).collect();
    for (a, b) in gx.iter().zip(ex) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn gradcheck_catches_a_wrong_backward() {
    // An op claiming d(x^2)/dx = x (half the truth) must be rejected.
    let x = randn(&[5], 9);
    let r = GradCheck::default().run(&[(x, true)], |t, v| {
        let xv = t.value(v[0]).clone();
        let y = Tensor::from_vec(xv.to_vec().iter().map(|a| a * a).collect(), xv.shape())?;
        Ok(t.record("bad_square", y, &[v[0]], move |g, _| {
            let gx: Vec<f32> = g
                .to_vec()
                .iter()
                .zip(xv.to_vec())
                .map(|(g, x)| g * x)
                .collect();
            Ok(vec![Some(Tensor::from_vec(gx, xv.shape())?)])
        }))
    });
    assert!(r.is_err());
}

#[test]
fn swiglu_gradients_values_and_errors() {
    // Odd sizes, and more than one pool chunk (16384 elements) so the parallel split is exercised
    // for the values; the finite-difference check uses a small tensor.
    let (g, u) = (randn(&[5, 7], 41), randn(&[5, 7], 42));
    let check = GradCheck::default();
    check
        .run(&[(g.clone(), true), (u.clone(), true)], |t, v| {
            t.swiglu(v[0], v[1])
        })
        .unwrap();
    check
        .run(&[(g.clone(), true), (u.clone(), false)], |t, v| {
            t.swiglu(v[0], v[1])
        })
        .unwrap();
    check
        .run(&[(g, false), (u, true)], |t, v| t.swiglu(v[0], v[1]))
        .unwrap();

    // Values and gradients against silu(g) * u written out in f64.
    let n = 3 * 16384 + 17;
    let (g, u, up) = (randn(&[n], 43), randn(&[n], 44), randn(&[n], 45));
    let mut tape = Tape::new();
    let (gv, uv) = (tape.leaf(g.clone(), true), tape.leaf(u.clone(), true));
    let y = tape.swiglu(gv, uv).unwrap();
    let out = tape.value(y).to_vec();
    let grads = tape.backward_from(y, up.clone()).unwrap();
    let (dg, du) = (
        grads.of(gv).unwrap().to_vec(),
        grads.of(uv).unwrap().to_vec(),
    );
    let (g, u, up) = (g.to_vec(), u.to_vec(), up.to_vec());
    for i in 0..n {
        let (x, w, o) = (g[i] as f64, u[i] as f64, up[i] as f64);
        let s = 1.0 / (1.0 + (-x).exp());
        let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-5 * (1.0 + b.abs());
        assert!(close(out[i], x * s * w), "value {i}");
        assert!(close(du[i], o * x * s), "d_up {i}");
        assert!(
            close(dg[i], o * w * s * (1.0 + x * (1.0 - s))),
            "d_gate {i}"
        );
    }

    let mut tape = Tape::new();
    let a = tape.leaf(randn(&[2, 3], 1), true);
    let b = tape.leaf(randn(&[3, 2], 2), true);
    let e = tape.swiglu(a, b).unwrap_err().to_string();
    assert!(
        e.contains("swiglu") && e.contains("[2, 3]") && e.contains("[3, 2]"),
        "{e}"
    );
}
