//! Fused attention: the CPU `Tape::attention` (forward and backward) against an f64 reference
//! written here, then (feature `cuda`, GPU present) the flash-style CUDA kernels against the
//! CPU: output, saved log-sum-exp (against the f64 reference), dQ, dK, dV, and that two backward
//! runs give the same bits (no atomics).
//!
//! Cases cover grouped-query heads, the causal mask with a KV-cache offset (Tq < Tk), key
//! padding (including query rows that see no key at all, which must give zeros), a non-causal
//! call, head dims 32, 64 and 128, and lengths that are not multiples of the 32-key and 8-row
//! tiles, or longer than the CPU kernel's 64-row query blocks; and that the CPU results do not
//! depend on the thread count.

mod parity_common;

use ilrec::{Tape, Tensor};
use parity_common::*;

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    tq: usize,
    tk: usize,
    hq: usize,
    hkv: usize,
    d: usize,
    causal: bool,
    /// keys 0..pad of sequence 1 are padding (left padding)
    pad: usize,
}

const CASES: [Case; 5] = [
    Case {
        batch: 2,
        tq: 37,
        tk: 37,
        hq: 4,
        hkv: 2,
        d: 64,
        causal: true,
        pad: 3,
    },
    Case {
        batch: 1,
        tq: 5,
        tk: 70,
        hq: 3,
        hkv: 1,
        d: 32,
        causal: true,
        pad: 0,
    },
    Case {
        batch: 2,
        tq: 9,
        tk: 40,
        hq: 2,
        hkv: 2,
        d: 128,
        causal: false,
        pad: 6,
    },
    // Longer than the CPU kernel's 64-row query blocks: a block boundary, and blocks whose
    // keys stop at the causal edge.
    Case {
        batch: 2,
        tq: 100,
        tk: 100,
        hq: 6,
        hkv: 2,
        d: 64,
        causal: true,
        pad: 5,
    },
    // A KV-cache offset across block boundaries (Tq < Tk, both over 64).
    Case {
        batch: 1,
        tq: 70,
        tk: 131,
        hq: 2,
        hkv: 1,
        d: 32,
        causal: true,
        pad: 0,
    },
];

impl Case {
    fn key_valid(&self) -> Option<Vec<bool>> {
        (self.pad > 0).then(|| {
            (0..self.batch * self.tk)
                .map(|i| !(i / self.tk == 1 && i % self.tk < self.pad))
                .collect()
        })
    }
}

/// f64 forward and backward: (out, lse, dq, dk, dv).
fn reference(
    c: &Case,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dout: &[f32],
    valid: Option<&[bool]>,
) -> [Vec<f64>; 5] {
    let (d, scale) = (c.d, 1.0 / (c.d as f64).sqrt());
    let mut out = vec![0.0; q.len()];
    let mut lse = vec![f64::NEG_INFINITY; c.batch * c.hq * c.tq];
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    for b in 0..c.batch {
        for h in 0..c.hq {
            let g = h / (c.hq / c.hkv);
            for i in 0..c.tq {
                let qo = ((b * c.tq + i) * c.hq + h) * d;
                let ko = |j: usize| ((b * c.tk + j) * c.hkv + g) * d;
                let end = if c.causal { c.tk - c.tq + i + 1 } else { c.tk };
                let keys: Vec<usize> = (0..end)
                    .filter(|&j| valid.is_none_or(|m| m[b * c.tk + j]))
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let s: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        scale
                            * (0..d)
                                .map(|e| q[qo + e] as f64 * k[ko(j) + e] as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - mx).exp()).sum();
                lse[(b * c.hq + h) * c.tq + i] = mx + z.ln();
                let p: Vec<f64> = s.iter().map(|x| (x - mx).exp() / z).collect();
                for (&j, &pj) in keys.iter().zip(&p) {
                    for e in 0..d {
                        out[qo + e] += pj * v[ko(j) + e] as f64;
                    }
                }
                let dp: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        (0..d)
                            .map(|e| dout[qo + e] as f64 * v[ko(j) + e] as f64)
                            .sum()
                    })
                    .collect();
                let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for ((&j, &pj), &dpj) in keys.iter().zip(&p).zip(&dp) {
                    let ds = pj * (dpj - delta) * scale;
                    for e in 0..d {
                        dv[ko(j) + e] += pj * dout[qo + e] as f64;
                        dk[ko(j) + e] += ds * q[qo + e] as f64;
                        dq[qo + e] += ds * k[ko(j) + e] as f64;
                    }
                }
            }
        }
    }
    [out, lse, dq, dk, dv]
}

#[test]
fn attention_matches_reference_and_cuda() {
    for (n, c) in CASES.iter().enumerate() {
        let seed = 30 + 5 * n as u64;
        let q = uniform(c.batch * c.tq * c.hq * c.d, seed, 1.0);
        let k = uniform(c.batch * c.tk * c.hkv * c.d, seed + 1, 1.0);
        let v = uniform(k.len(), seed + 2, 1.0);
        let dout = uniform(q.len(), seed + 3, 1.0);
        let valid = c.key_valid();
        let mut tape = Tape::new();
        let leaf = |t: &mut Tape, x: &[f32], tk: usize, h: usize| {
            t.leaf(
                Tensor::from_vec(x.to_vec(), &[c.batch, tk, h * c.d]).unwrap(),
                true,
            )
        };
        let (vq, vk, vv) = (
            leaf(&mut tape, &q, c.tq, c.hq),
            leaf(&mut tape, &k, c.tk, c.hkv),
            leaf(&mut tape, &v, c.tk, c.hkv),
        );
        let o = tape
            .attention(vq, vk, vv, c.hq, c.hkv, c.d, c.causal, valid.as_deref())
            .unwrap();
        let cpu_out = tape.value(o).to_vec();
        let grads = tape
            .backward_from(o, Tensor::from_vec(dout.clone(), tape.shape(o)).unwrap())
            .unwrap();
        let cpu_g: Vec<Vec<f32>> = [vq, vk, vv]
            .iter()
            .map(|&x| grads.of(x).unwrap().to_vec())
            .collect();
        let [out64, lse64, dq64, dk64, dv64] = reference(c, &q, &k, &v, &dout, valid.as_deref());
        // f32 dot products over D and sums over <= 70 keys of values of size 1: 1e-5 absolute
        // covers the rounding (and the CPU's <= 3 ulp exp) with a wide margin, still 10^4 times
        // below any real error.
        let what = format!("{c:?}");
        assert_within(
            &format!("cpu attention out {what}"),
            &cpu_out,
            &out64,
            1e-5,
            1e-5,
        );
        for (name, g, want) in [
            ("dq", &cpu_g[0], &dq64),
            ("dk", &cpu_g[1], &dk64),
            ("dv", &cpu_g[2], &dv64),
        ] {
            assert_within(&format!("cpu attention {name} {what}"), g, want, 2e-5, 1e-5);
        }
        // Rows that see no key (left padding under the causal mask) are zeros, not NaN.
        let mut empty_rows = 0;
        for (r, _) in lse64
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == f64::NEG_INFINITY)
        {
            let (b, h, i) = (r / (c.hq * c.tq), (r / c.tq) % c.hq, r % c.tq);
            let o = ((b * c.tq + i) * c.hq + h) * c.d;
            assert!(
                cpu_out[o..o + c.d].iter().all(|&x| x == 0.0),
                "cpu attention {what}: empty row {r} is not zero"
            );
            empty_rows += 1;
        }
        assert_eq!(
            empty_rows > 0,
            c.causal && c.pad > 0,
            "{what}: rows without keys"
        );
        on_cuda!(format!("attention {what}"), |dev| {
            cuda_case(
                dev,
                c,
                [&q, &k, &v, &dout],
                valid.as_deref(),
                &cpu_out,
                &cpu_g,
                &lse64,
            )?;
        });
    }
}

/// The device's row log-sum-exp against the f64 reference: -inf exactly where a row sees no
/// key, else within 1e-5 relative.
#[cfg(feature = "cuda")]
fn assert_lse_near(what: &str, found: &[f32], want: &[f64]) {
    for (i, (&f, &w)) in found.iter().zip(want).enumerate() {
        let ok = if w == f64::NEG_INFINITY {
            f == f32::NEG_INFINITY
        } else {
            (f as f64 - w).abs() <= 1e-5 * (1.0 + w.abs())
        };
        assert!(
            ok,
            "cuda attention lse {what}: row {i}: found {f}, expected {w}"
        );
    }
}

#[cfg(feature = "cuda")]
fn cuda_case(
    dev: &ilrec::cuda::CudaDevice,
    c: &Case,
    [q, k, v, dout]: [&[f32]; 4],
    valid: Option<&[bool]>,
    cpu_out: &[f32],
    cpu_g: &[Vec<f32>],
    lse64: &[f64],
) -> ilrec::Result<()> {
    use ilrec::cuda::attention::*;
    let shape = AttentionShape {
        batch: c.batch,
        tq: c.tq,
        tk: c.tk,
        n_heads: c.hq,
        n_kv_heads: c.hkv,
        head_dim: c.d,
        causal: c.causal,
    };
    let (dq_, dk_, dv_, ddo) = (
        dev.upload(q)?,
        dev.upload(k)?,
        dev.upload(v)?,
        dev.upload(dout)?,
    );
    let mask = valid
        .map(|m| dev.upload_i32(&m.iter().map(|&b| b as i32).collect::<Vec<_>>()))
        .transpose()?;
    let x = AttentionInputs {
        q: &dq_,
        k: &dk_,
        v: &dv_,
        key_valid: mask.as_ref(),
    };
    let (mut out, mut lse) = (
        dev.upload(&vec![f32::NAN; q.len()])?,
        dev.zeros(lse64.len())?,
    );
    attention_forward(dev, &shape, &x, &mut out, &mut lse)?;
    let what = format!("{c:?}");
    assert_near(
        &format!("cuda attention out {what}"),
        &out.download()?,
        cpu_out,
        1e-5,
        1e-5,
    );
    assert_lse_near(&what, &lse.download()?, lse64);
    let run_backward = || -> ilrec::Result<[Vec<f32>; 3]> {
        let nan = |n: usize| dev.upload(&vec![f32::NAN; n]);
        let (mut dq, mut dk, mut dv) = (nan(q.len())?, nan(k.len())?, nan(v.len())?);
        let saved = AttentionSaved {
            out: &out,
            lse: &lse,
            d_out: &ddo,
        };
        attention_backward(
            dev,
            &shape,
            &x,
            &saved,
            AttentionGrads {
                dq: &mut dq,
                dk: &mut dk,
                dv: &mut dv,
            },
        )?;
        Ok([dq.download()?, dk.download()?, dv.download()?])
    };
    let first = run_backward()?;
    for (name, found, cpu) in [
        ("dq", &first[0], &cpu_g[0]),
        ("dk", &first[1], &cpu_g[1]),
        ("dv", &first[2], &cpu_g[2]),
    ] {
        assert_near(
            &format!("cuda attention {name} {what}"),
            found,
            cpu,
            2e-5,
            1e-5,
        );
    }
    assert!(
        run_backward()? == first,
        "cuda attention backward {what}: two runs differ"
    );
    Ok(())
}

/// The CPU kernels split the work by (sequence, kv head) only: 1 and 2 threads give the same
/// bits for the output and every gradient.
#[test]
fn cpu_attention_does_not_depend_on_the_thread_count() {
    let c = CASES[3];
    let q = uniform(c.batch * c.tq * c.hq * c.d, 7, 1.0);
    let k = uniform(c.batch * c.tk * c.hkv * c.d, 8, 1.0);
    let v = uniform(k.len(), 9, 1.0);
    let dout = uniform(q.len(), 10, 1.0);
    let valid = c.key_valid();
    let run = |threads: usize| {
        ilrec::cpu::pool::set_num_threads(threads);
        let mut tape = Tape::new();
        let mut leaf = |x: &[f32], tk: usize, h: usize| {
            tape.leaf(
                Tensor::from_vec(x.to_vec(), &[c.batch, tk, h * c.d]).unwrap(),
                true,
            )
        };
        let (vq, vk, vv) = (
            leaf(&q, c.tq, c.hq),
            leaf(&k, c.tk, c.hkv),
            leaf(&v, c.tk, c.hkv),
        );
        let o = tape
            .attention(vq, vk, vv, c.hq, c.hkv, c.d, c.causal, valid.as_deref())
            .unwrap();
        let seed = Tensor::from_vec(dout.clone(), tape.shape(o)).unwrap();
        let grads = tape.backward_from(o, seed).unwrap();
        let mut all = vec![tape.value(o).to_vec()];
        all.extend([vq, vk, vv].iter().map(|&x| grads.of(x).unwrap().to_vec()));
        all
    };
    let (one, two) = (run(1), run(2));
    for (what, (a, b)) in ["out", "dq", "dk", "dv"].iter().zip(one.iter().zip(&two)) {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: 1 and 2 threads differ");
    }
}
