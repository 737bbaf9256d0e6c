//! The row and elementwise kernel families (RMSNorm, RoPE, SwiGLU, embedding, softmax /
//! log_softmax, cross-entropy, AdamW, gradient norm and clipping), one test body each:
//! 1. the CPU op (the tape's forward and backward, or src/optim.rs) against an f64 reference
//!    written here;
//! 2. with feature `cuda` and a GPU, the CUDA kernels against the CPU result, within the
//!    tolerance stated at each test (or bit for bit where the kernel promises it).
//!
//! Sizes are small odd numbers (not multiples of the 256-thread blocks) plus a SmolLM2 width.

mod parity_common;

use ilrec::{Tape, Tensor, Var};
use parity_common::*;

/// Runs `f` on fresh leaves (all requiring gradients), backpropagates `seed`, and returns the
/// output values and each input's gradient.
fn tape_op(
    inputs: &[Tensor],
    f: impl Fn(&mut Tape, &[Var]) -> Var,
    seed: &[f32],
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let mut tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|t| tape.leaf(t.clone(), true)).collect();
    let out = f(&mut tape, &vars);
    let y = tape.value(out).to_vec();
    let shape = tape.shape(out).to_vec();
    let grads = tape
        .backward_from(out, Tensor::from_vec(seed.to_vec(), &shape).unwrap())
        .unwrap();
    let gs = vars
        .iter()
        .map(|&v| grads.of(v).expect("input without gradient").to_vec())
        .collect();
    (y, gs)
}

fn tensor(v: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.to_vec(), shape).unwrap()
}

// ---------------------------------------------------------------------------------------------
// RMSNorm

/// f64 RMSNorm forward, dx and dw, and per-element error scales of dw (sum of |terms|).
fn rms_norm_ref(x: &[f32], w: &[f32], g: &[f32], eps: f64) -> [Vec<f64>; 4] {
    let d = w.len();
    let (mut y, mut dx, mut dw, mut dw_scale) = (vec![], vec![], vec![0.0; d], vec![0.0; d]);
    for (xr, gr) in x.chunks(d).zip(g.chunks(d)) {
        let ms = xr.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (ms + eps).sqrt();
        let dot: f64 = (0..d)
            .map(|i| xr[i] as f64 * gr[i] as f64 * w[i] as f64)
            .sum();
        for i in 0..d {
            let (xi, gi, wi) = (xr[i] as f64, gr[i] as f64, w[i] as f64);
            y.push(xi * inv * wi);
            dx.push(inv * gi * wi - xi * inv.powi(3) * dot / d as f64);
            dw[i] += gi * xi * inv;
            dw_scale[i] += (gi * xi * inv).abs();
        }
    }
    [y, dx, dw, dw_scale]
}

#[test]
fn rms_norm_matches_reference_and_cuda() {
    let eps = 1e-5f32;
    for (rows, d) in [(3, 7), (300, 576)] {
        let (x, w, g) = (
            uniform(rows * d, 1, 2.0),
            uniform(d, 2, 1.5),
            uniform(rows * d, 3, 1.0),
        );
        let (y, grads) = tape_op(
            &[tensor(&x, &[rows, d]), tensor(&w, &[d])],
            |t, v| t.rms_norm(v[0], v[1], eps).unwrap(),
            &g,
        );
        let [y64, dx64, dw64, dw_scale] = rms_norm_ref(&x, &w, &g, eps as f64);
        // f32 row sums of D terms: relative 4 D eps on the values, absolute on the gradients.
        let tol = 4.0 * d as f64 * EPS_F32;
        assert_within("cpu rms_norm y", &y, &y64, tol, tol);
        assert_within("cpu rms_norm dx", &grads[0], &dx64, 4.0 * tol, tol);
        for (j, (&f, &w)) in grads[1].iter().zip(&dw64).enumerate() {
            let allowed = 2.0 * rows as f64 * EPS_F32 * dw_scale[j] + 1e-6;
            assert!(
                (f as f64 - w).abs() <= allowed,
                "cpu rms_norm dw[{j}]: {f} vs {w}"
            );
        }
        on_cuda!("rms_norm", |dev| {
            use ilrec::cuda::norm::{rms_norm_backward, rms_norm_forward};
            let (dx_, dw_, dg) = (dev.upload(&x)?, dev.upload(&w)?, dev.upload(&g)?);
            let (mut dy, mut inv) = (dev.zeros(x.len())?, dev.zeros(rows)?);
            rms_norm_forward(dev, &dx_, &dw_, eps, &mut dy, &mut inv)?;
            assert_near("cuda rms_norm y", &dy.download()?, &y, tol, tol);
            let (mut gx, mut gw) = (dev.zeros(x.len())?, dev.zeros(d)?);
            rms_norm_backward(dev, &dx_, &dw_, &inv, &dg, Some(&mut gx), Some(&mut gw))?;
            assert_near(
                "cuda rms_norm dx",
                &gx.download()?,
                &grads[0],
                4.0 * tol,
                tol,
            );
            let found = gw.download()?;
            for (j, (&f, &c)) in found.iter().zip(&grads[1]).enumerate() {
                let allowed = 4.0 * rows as f64 * EPS_F32 * dw_scale[j] + 1e-6;
                assert!(
                    (f - c).abs() as f64 <= allowed,
                    "cuda rms_norm dw[{j}]: {f} vs cpu {c}"
                );
            }
            // Deterministic: a second run gives the same bits.
            let mut gw2 = dev.zeros(d)?;
            rms_norm_backward(dev, &dx_, &dw_, &inv, &dg, None, Some(&mut gw2))?;
            assert_eq!(
                gw2.download()?,
                found,
                "cuda rms_norm dw differs between two runs"
            );
        });
    }
}

// ---------------------------------------------------------------------------------------------
// RoPE

/// rotate_half RoPE in f64 with rotation sign `sign`; row r has position pos(r).
fn rope_ref(
    x: &[f32],
    width: usize,
    d: usize,
    pos: impl Fn(usize) -> usize,
    theta: f64,
    sign: f64,
) -> Vec<f64> {
    let half = d / 2;
    let mut out = vec![0.0; x.len()];
    for (r, row) in x.chunks(width).enumerate() {
        for h in 0..width / d {
            for i in 0..half {
                let angle = pos(r) as f64 * theta.powf(-((2 * i) as f64) / d as f64);
                let (c, s) = (angle.cos(), sign * angle.sin());
                let (a, b) = (row[h * d + i] as f64, row[h * d + half + i] as f64);
                out[r * width + h * d + i] = a * c - b * s;
                out[r * width + h * d + half + i] = b * c + a * s;
            }
        }
    }
    out
}

#[test]
fn rope_matches_reference_and_cuda() {
    let (heads, d, theta) = (3, 64, 10_000.0f32);
    for (batch, seq, per_token) in [(1, 5, false), (2, 37, false), (3, 19, true)] {
        let width = heads * d;
        let x = uniform(batch * seq * width, 4, 1.0);
        let g = uniform(x.len(), 5, 1.0);
        let positions: Vec<usize> = if per_token {
            (0..batch * seq).map(|r| 200 + 3 * r).collect() // e.g. KV-cache offsets
        } else {
            (0..seq).collect()
        };
        let pos = |r: usize| {
            if per_token {
                positions[r]
            } else {
                positions[r % seq]
            }
        };
        let (y, grads) = tape_op(
            &[tensor(&x, &[batch, seq, width])],
            |t, v| t.rope(v[0], heads, d, &positions, theta).unwrap(),
            &g,
        );
        // The CPU rounds the angle to f32 (as HF does): at positions up to ~300 that is an
        // absolute angle error up to ~2e-5, hence the absolute tolerance.
        assert_within(
            "cpu rope",
            &y,
            &rope_ref(&x, width, d, pos, theta as f64, 1.0),
            1e-4,
            1e-5,
        );
        assert_within(
            "cpu rope backward",
            &grads[0],
            &rope_ref(&g, width, d, pos, theta as f64, -1.0),
            1e-4,
            1e-5,
        );
        on_cuda!("rope", |dev| {
            use ilrec::cuda::rope::{rope, RopeShape};
            let shape = RopeShape {
                batch,
                seq,
                n_heads: heads,
                head_dim: d,
                theta,
            };
            let p: Vec<i32> = positions.iter().map(|&p| p as i32).collect();
            let (dx, dp) = (dev.upload(&x)?, dev.upload_i32(&p)?);
            let mut out = dev.zeros(x.len())?;
            rope(dev, &shape, &dx, &dp, false, &mut out)?;
            // powf / cosf / sinf are within 2 ulp on the GPU: an angle error of a few ulp of
            // the angle (~1e-4 at 300) on values of size 1.
            assert_near("cuda rope", &out.download()?, &y, 2e-4, 1e-5);
            let dg = dev.upload(&g)?;
            rope(dev, &shape, &dg, &dp, true, &mut out)?;
            assert_near(
                "cuda rope backward",
                &out.download()?,
                &grads[0],
                2e-4,
                1e-5,
            );
        });
    }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU

fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn swiglu_matches_reference_and_cuda() {
    for n in [1, 7, 100_003] {
        let (gate, up, go) = (uniform(n, 6, 10.0), uniform(n, 7, 3.0), uniform(n, 8, 2.0));
        let mut out = vec![0.0; n];
        ilrec::cpu::elementwise::swiglu(&gate, &up, &mut out);
        let (mut d_gate, mut d_up) = (vec![0.0; n], vec![0.0; n]);
        ilrec::cpu::elementwise::swiglu_backward(&gate, &up, &go, &mut d_gate, &mut d_up);
        let (mut want, mut want_dg, mut want_du, mut scale) = (vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let (x, u, g) = (gate[i] as f64, up[i] as f64, go[i] as f64);
            let s = sigmoid64(x);
            want.push(x * s * u);
            want_du.push(g * x * s);
            want_dg.push(g * u * (s + x * s * (1.0 - s)));
            scale.push((g * u).abs() * (s + x.abs() * s * (1.0 - s))); // cancellation scale
        }
        // a handful of roundings plus a <= 3 ulp exp, each relative to the result (or, for the
        // gate gradient, to the size of the terms that cancel)
        assert_within("cpu swiglu", &out, &want, 1e-30, 16.0 * EPS_F32);
        assert_within("cpu swiglu d_up", &d_up, &want_du, 1e-30, 16.0 * EPS_F32);
        for i in 0..n {
            let allowed = 16.0 * EPS_F32 * scale[i] + 1e-30;
            assert!(
                (d_gate[i] as f64 - want_dg[i]).abs() <= allowed,
                "cpu swiglu d_gate[{i}]"
            );
        }
        on_cuda!("swiglu", |dev| {
            use ilrec::cuda::swiglu::{swiglu, swiglu_backward};
            let (dg, du, dgo) = (dev.upload(&gate)?, dev.upload(&up)?, dev.upload(&go)?);
            let mut dout = dev.zeros(n)?;
            swiglu(dev, &dg, &du, &mut dout)?;
            assert_near(
                "cuda swiglu",
                &dout.download()?,
                &out,
                1e-30,
                32.0 * EPS_F32,
            );
            let (mut ddg, mut ddu) = (dev.zeros(n)?, dev.zeros(n)?);
            swiglu_backward(dev, &dg, &du, &dgo, &mut ddg, &mut ddu)?;
            assert_near(
                "cuda swiglu d_up",
                &ddu.download()?,
                &d_up,
                1e-30,
                32.0 * EPS_F32,
            );
            let found = ddg.download()?;
            for i in 0..n {
                let allowed = 32.0 * EPS_F32 * scale[i] + 1e-30;
                assert!(
                    ((found[i] - d_gate[i]) as f64).abs() <= allowed,
                    "cuda swiglu d_gate[{i}]"
                );
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Embedding

#[test]
fn embedding_matches_reference_and_cuda() {
    let (vocab, dim) = (50, 72);
    // repeated ids (the same token several times), and ids never used
    let ids: Vec<u32> = (0..300u32).map(|i| (i * 7 + i / 13) % 37).collect();
    let w = uniform(vocab * dim, 9, 1.0);
    let g = uniform(ids.len() * dim, 10, 1.0);
    let (y, grads) = tape_op(
        &[tensor(&w, &[vocab, dim])],
        |t, v| t.embedding(v[0], &ids, &[ids.len()]).unwrap(),
        &g,
    );
    let want_y: Vec<f64> = ids
        .iter()
        .flat_map(|&id| w[id as usize * dim..][..dim].iter().map(|&v| v as f64))
        .collect();
    assert_within("cpu embedding", &y, &want_y, 0.0, 0.0);
    let mut want_dw = vec![0.0f64; vocab * dim];
    for (i, &id) in ids.iter().enumerate() {
        for c in 0..dim {
            want_dw[id as usize * dim + c] += g[i * dim + c] as f64;
        }
    }
    assert_within("cpu embedding dw", &grads[0], &want_dw, 1e-5, 1e-5);
    on_cuda!("embedding", |dev| {
        use ilrec::cuda::embedding::{embedding_backward, embedding_forward, upload_ids};
        let dids = upload_ids(dev, &ids, vocab)?;
        let (dw, dg) = (dev.upload(&w)?, dev.upload(&g)?);
        let mut out = dev.zeros(ids.len() * dim)?;
        embedding_forward(dev, &dw, dim, &dids, &mut out)?;
        assert_eq!(
            out.download()?,
            y,
            "cuda embedding forward differs from the CPU"
        );
        let mut gw = dev.upload(&vec![f32::NAN; vocab * dim])?; // must be fully overwritten
        embedding_backward(dev, &dg, dim, &dids, &mut gw)?;
        // Same additions in the same order as the CPU scatter-add: bit for bit.
        assert_eq!(
            gw.download()?,
            grads[0],
            "cuda embedding backward differs from the CPU"
        );
        assert!(
            upload_ids(dev, &[3, 50], vocab).is_err(),
            "id 50 of a 50-token vocabulary accepted"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// softmax / log_softmax

#[test]
fn softmax_and_log_softmax_match_reference_and_cuda() {
    for (rows, cols) in [(3, 5), (17, 1000)] {
        let mut x = uniform(rows * cols, 11, 8.0);
        x[0] += 1e4; // shift stability
        let g = uniform(rows * cols, 12, 1.0);
        for log in [false, true] {
            let name = if log { "log_softmax" } else { "softmax" };
            let (y, grads) = tape_op(
                &[tensor(&x, &[rows, cols])],
                |t, v| {
                    if log {
                        t.log_softmax(v[0]).unwrap()
                    } else {
                        t.softmax(v[0]).unwrap()
                    }
                },
                &g,
            );
            let (mut want, mut want_dx) = (vec![], vec![]);
            for (xr, gr) in x.chunks(cols).zip(g.chunks(cols)) {
                let mx = xr.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
                let z: f64 = xr.iter().map(|&v| (v as f64 - mx).exp()).sum();
                let p: Vec<f64> = xr.iter().map(|&v| (v as f64 - mx).exp() / z).collect();
                let gsum: f64 = gr.iter().map(|&v| v as f64).sum();
                let gp: f64 = gr.iter().zip(&p).map(|(&a, b)| a as f64 * b).sum();
                for i in 0..cols {
                    if log {
                        want.push(xr[i] as f64 - mx - z.ln());
                        want_dx.push(gr[i] as f64 - p[i] * gsum);
                    } else {
                        want.push(p[i]);
                        want_dx.push(p[i] * (gr[i] as f64 - gp));
                    }
                }
            }
            // exp within 3 ulp plus row sums of `cols` terms; log values are shifted by up to
            // 1e4 (x[0]), so their absolute error scales with that.
            let tol = 8.0 * cols as f64 * EPS_F32;
            let atol = if log { 1e4 * EPS_F32 * 4.0 } else { 1e-7 };
            assert_within(&format!("cpu {name}"), &y, &want, atol, tol);
            assert_within(
                &format!("cpu {name} backward"),
                &grads[0],
                &want_dx,
                1e-6,
                tol,
            );
            on_cuda!(name, |dev| {
                use ilrec::cuda::softmax::{backward, forward, SoftmaxKind};
                let kind = if log {
                    SoftmaxKind::LogSoftmax
                } else {
                    SoftmaxKind::Softmax
                };
                let (dx, dg) = (dev.upload(&x)?, dev.upload(&g)?);
                let mut dy = dev.zeros(x.len())?;
                forward(dev, kind, &dx, cols, &mut dy)?;
                assert_near(
                    &format!("cuda {name}"),
                    &dy.download()?,
                    &y,
                    atol,
                    2.0 * tol,
                );
                let dyc = dev.upload(&y)?; // backward from the CPU's y: only the backward differs
                let mut gx = dev.zeros(x.len())?;
                backward(dev, kind, &dyc, &dg, cols, &mut gx)?;
                assert_near(
                    &format!("cuda {name} backward"),
                    &gx.download()?,
                    &grads[0],
                    1e-6,
                    2.0 * tol,
                );
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-entropy

#[test]
fn cross_entropy_matches_reference_and_cuda() {
    for (rows, vocab) in [(4, 9), (33, 49_152)] {
        let x = uniform(rows * vocab, 13, 6.0);
        let targets: Vec<i64> = (0..rows as i64)
            .map(|r| {
                if r % 5 == 3 {
                    -100
                } else {
                    (r * 7919) % vocab as i64
                }
            })
            .collect();
        let (loss, grads) = tape_op(
            &[tensor(&x, &[rows, vocab])],
            |t, v| t.cross_entropy(v[0], &targets).unwrap(),
            &[1.5],
        );
        let count = targets.iter().filter(|&&t| t != -100).count() as f64;
        let (mut total, mut want_dx) = (0.0f64, vec![0.0f64; rows * vocab]);
        for (r, &t) in targets.iter().enumerate() {
            if t == -100 {
                continue;
            }
            let xr = &x[r * vocab..][..vocab];
            let mx = xr.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let lse = mx + xr.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
            total += lse - xr[t as usize] as f64;
            for i in 0..vocab {
                let onehot = if i == t as usize { 1.0 } else { 0.0 };
                want_dx[r * vocab + i] = 1.5 / count * ((xr[i] as f64 - lse).exp() - onehot);
            }
        }
        let tol = 8.0 * vocab as f64 * EPS_F32;
        assert_within("cpu cross_entropy", &loss, &[total / count], 0.0, tol);
        assert_within("cpu cross_entropy dx", &grads[0], &want_dx, 1e-9, tol);
        on_cuda!("cross_entropy", |dev| {
            use ilrec::cuda::cross_entropy::{cross_entropy_backward, cross_entropy_forward};
            let dx = dev.upload(&x)?;
            let mut dloss = dev.zeros(1)?;
            let saved = cross_entropy_forward(dev, &dx, vocab, &targets, &mut dloss)?;
            assert_near(
                "cuda cross_entropy",
                &dloss.download()?,
                &loss,
                0.0,
                2.0 * tol,
            );
            let mut gx = dev.upload(&vec![f32::NAN; x.len()])?; // ignored rows must be zeroed
            cross_entropy_backward(dev, &dx, &saved, &dev.upload(&[1.5])?, &mut gx)?;
            assert_near(
                "cuda cross_entropy dx",
                &gx.download()?,
                &grads[0],
                1e-9,
                2.0 * tol,
            );
            let all_ignored = vec![-100i64; rows];
            assert!(cross_entropy_forward(dev, &dx, vocab, &all_ignored, &mut dloss).is_err());
        });
    }
}

// ---------------------------------------------------------------------------------------------
// AdamW, gradient norm, clipping

#[test]
fn adamw_matches_reference_and_cuda() {
    use ilrec::optim::{AdamW, AdamWConfig};
    let n = 10_007;
    let c = AdamWConfig {
        lr: 3e-3,
        weight_decay: 0.1,
        ..AdamWConfig::default()
    };
    let p0 = uniform(n, 14, 1.0);
    let grads_per_step: Vec<Vec<f32>> = (0..3).map(|s| uniform(n, 15 + s, 0.5)).collect();
    // CPU: three steps through Params + AdamW.
    let mut params = ilrec::Params::new();
    let id = params.add("w", tensor(&p0, &[n]), true).unwrap();
    let mut opt = AdamW::new(c);
    for g in &grads_per_step {
        params.zero_grad();
        let mut tape = Tape::new();
        let w = tape.param(&params, id);
        let ones = tape.constant(Tensor::full(&[n], 1.0));
        let y = tape.mul(w, ones).unwrap();
        params
            .accumulate(&tape.backward_from(y, tensor(g, &[n])).unwrap())
            .unwrap();
        opt.step(&mut params, c.lr).unwrap();
    }
    let cpu_p = params.value(id).to_vec();
    // f64 reference of the same three steps.
    let (mut p, mut m, mut v) = (
        p0.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        vec![0.0; n],
        vec![0.0; n],
    );
    let (b1, b2, lr, wd, eps) = (
        c.beta1 as f64,
        c.beta2 as f64,
        c.lr as f64,
        c.weight_decay as f64,
        c.eps as f64,
    );
    for (t, g) in grads_per_step.iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..n {
            let gi = g[i] as f64;
            p[i] *= 1.0 - lr * wd;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let denom = (v[i] / (1.0 - b2.powi(t))).sqrt() + eps;
            p[i] -= lr / (1.0 - b1.powi(t)) * m[i] / denom;
        }
    }
    // f32 arithmetic over 3 steps; the update is lr-sized, so its relative error is what counts
    assert_within("cpu adamw", &cpu_p, &p, 1e-3 * lr * 3.0, 4.0 * EPS_F32);
    on_cuda!("adamw", |dev| {
        use ilrec::cuda::optim::{adamw_step, AdamWBuffers};
        let (mut dp, mut dm, mut dv) = (dev.upload(&p0)?, dev.zeros(n)?, dev.zeros(n)?);
        let mut dp16 = dev.zeros_bf16(n)?;
        for (t, g) in grads_per_step.iter().enumerate() {
            let dg = dev.upload(g)?;
            let bufs = AdamWBuffers {
                param: &mut dp,
                grad: &dg,
                m: &mut dm,
                v: &mut dv,
                param_bf16: &mut dp16,
            };
            adamw_step(dev, bufs, &c, c.lr, c.weight_decay, t as u64 + 1)?;
        }
        // The kernel follows the CPU operation for operation with no FMA: bit for bit.
        let found = dp.download()?;
        assert_eq!(
            found, cpu_p,
            "cuda adamw master weights differ from the CPU"
        );
        let want16: Vec<half::bf16> = cpu_p.iter().map(|&x| half::bf16::from_f32(x)).collect();
        assert_eq!(
            dp16.download()?,
            want16,
            "cuda adamw bf16 copy is not bf16(master)"
        );
    });
}

#[test]
fn grad_norm_and_clipping_match_reference_and_cuda() {
    use ilrec::optim::{clip_grad_norm, grad_norm};
    let sizes = [5usize, 70_001, 16_384];
    let gs: Vec<Vec<f32>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| uniform(n, 20 + i as u64, 1.0))
        .collect();
    let mut params = ilrec::Params::new();
    let mut tape = Tape::new();
    let mut outs = vec![];
    for (i, g) in gs.iter().enumerate() {
        let id = params
            .add(&format!("p{i}"), Tensor::zeros(&[g.len()]), true)
            .unwrap();
        let w = tape.param(&params, id);
        outs.push((w, g));
    }
    for (w, g) in outs {
        let ones = tape.constant(Tensor::full(&[g.len()], 1.0));
        let y = tape.mul(w, ones).unwrap();
        params
            .accumulate(&tape.backward_from(y, tensor(g, &[g.len()])).unwrap())
            .unwrap();
    }
    let want: f64 = gs
        .iter()
        .flatten()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let cpu_norm = grad_norm(&params);
    assert_within("cpu grad_norm", &[cpu_norm], &[want], 0.0, 2.0 * EPS_F32);
    let max_norm = (want / 3.0) as f32; // forces clipping
    let mut clipped = params.clone();
    clip_grad_norm(&mut clipped, max_norm).unwrap();
    on_cuda!("grad_norm", |dev| {
        use ilrec::cuda::optim::{clip_grad_norm as cuda_clip, grad_norm as cuda_norm};
        let mut bufs = gs
            .iter()
            .map(|g| dev.upload(g))
            .collect::<ilrec::Result<Vec<_>>>()?;
        let mut norm = dev.zeros(1)?;
        cuda_norm(dev, &bufs.iter().collect::<Vec<_>>(), &mut norm)?;
        // f64 sums in another fixed order, rounded once to f32: within an ulp.
        assert_near(
            "cuda grad_norm",
            &norm.download()?,
            &[cpu_norm],
            0.0,
            2.0 * EPS_F32,
        );
        let mut refs: Vec<&mut ilrec::cuda::CudaBuffer> = bufs.iter_mut().collect();
        cuda_clip(dev, &mut refs, max_norm, &mut norm)?;
        for (i, b) in bufs.iter().enumerate() {
            let id = clipped.id(&format!("p{i}")).unwrap();
            let cpu = clipped.grad(id).unwrap().to_vec();
            assert_near(
                &format!("cuda clip p{i}"),
                &b.download()?,
                &cpu,
                0.0,
                4.0 * EPS_F32,
            );
        }
    });
}
