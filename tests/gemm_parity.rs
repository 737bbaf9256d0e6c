//! GEMM: the CPU sgemm against a naive f64 product, then (feature `cuda`, GPU present) the
//! bf16 tensor-core kernels and the f32 SIMT kernel against the CPU, for every transpose pair
//! the tape uses (nn, nt, tn) plus tt, batched, with sizes that are not multiples of the
//! 128 x 128 x 32 tiles.
//!
//! Tolerances. The bf16 path is compared with the CPU sgemm run on the same bf16-rounded
//! inputs, so the only difference is f32 accumulation order: per element
//! `|C_gpu - C_cpu| <= 2 k eps_f32 sum_p |a_ip b_pj| + 1e-6`. The f32 SIMT path: the same bound
//! on the unrounded inputs.

mod parity_common;

use half::bf16;
use ilrec::cpu::gemm::sgemm_batched;
use parity_common::*;

/// (batch, m, n, k): one odd shape inside a tile, one spanning several tiles with ragged edges
/// and a k that is not a multiple of 32 (nor of 8, to exercise cp.async's partial fill),
/// and a SmolLM2-like projection (576 -> 1536 at 100 tokens).
const SHAPES: [(usize, usize, usize, usize); 3] =
    [(1, 5, 7, 9), (3, 130, 200, 77), (1, 100, 1536, 576)];

/// The four transpose pairs: (trans_a, trans_b).
const TRANSPOSES: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// Element (r, c) of op(X) for X stored row-major with leading dimension ld.
fn at(x: &[f32], ld: usize, trans: bool, r: usize, c: usize) -> f32 {
    if trans {
        x[c * ld + r]
    } else {
        x[r * ld + c]
    }
}

/// One problem: inputs, alpha/beta, initial C, and its f64 reference and error scale.
struct Case {
    ta: bool,
    tb: bool,
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c0: Vec<f32>,
}

const ALPHA: f32 = 0.75;
const BETA: f32 = -0.5;

impl Case {
    fn new(ta: bool, tb: bool, (batch, m, n, k): (usize, usize, usize, usize), seed: u64) -> Case {
        Case {
            ta,
            tb,
            batch,
            m,
            n,
            k,
            a: uniform(batch * m * k, seed, 1.0),
            b: uniform(batch * k * n, seed + 1, 1.0),
            c0: uniform(batch * m * n, seed + 2, 1.0),
        }
    }
    fn lda(&self) -> usize {
        if self.ta {
            self.m
        } else {
            self.k
        }
    }
    fn ldb(&self) -> usize {
        if self.tb {
            self.k
        } else {
            self.n
        }
    }
    /// (f64 reference of alpha op(A) op(B) + beta C, error scale sum |alpha a b| + |beta c|).
    fn reference(&self, a: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (m, n, k) = (self.m, self.n, self.k);
        let (mut want, mut scale) = (Vec::new(), Vec::new());
        for z in 0..self.batch {
            let (az, bz) = (&a[z * m * k..], &b[z * k * n..]);
            for i in 0..m {
                for j in 0..n {
                    let (mut s, mut sa) = (0.0f64, 0.0f64);
                    for p in 0..k {
                        let prod = at(az, self.lda(), self.ta, i, p) as f64
                            * at(bz, self.ldb(), self.tb, p, j) as f64;
                        s += prod;
                        sa += prod.abs();
                    }
                    let c = self.c0[(z * m + i) * n + j] as f64;
                    want.push(ALPHA as f64 * s + BETA as f64 * c);
                    scale.push((ALPHA as f64 * sa).abs() + (BETA as f64 * c).abs());
                }
            }
        }
        (want, scale)
    }
    /// The CPU sgemm on (a, b).
    fn cpu(&self, a: &[f32], b: &[f32]) -> Vec<f32> {
        let (m, n, k) = (self.m, self.n, self.k);
        let mut c = self.c0.clone();
        #[rustfmt::skip]
        sgemm_batched(self.batch, self.ta, self.tb, m, n, k, ALPHA, a, self.lda(), m * k,
            b, self.ldb(), k * n, BETA, &mut c, n, m * n);
        c
    }
}

/// Asserts |found - want| <= 2 k eps scale + 1e-6 per element.
fn assert_gemm(what: &str, k: usize, found: &[f32], want: &[f64], scale: &[f64]) {
    for (i, ((&f, &w), &s)) in found.iter().zip(want).zip(scale).enumerate() {
        let allowed = 2.0 * k.max(1) as f64 * EPS_F32 * s + 1e-6;
        let err = (f as f64 - w).abs();
        assert!(
            err <= allowed,
            "{what}: element {i}: found {f:e}, expected {w:e} (error {err:e} > {allowed:e})"
        );
    }
}

fn round_bf16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect()
}

#[test]
fn gemm_cpu_matches_reference_and_cuda_matches_cpu() {
    let mut seed = 10;
    for (ta, tb) in TRANSPOSES {
        for shape in SHAPES {
            seed += 3;
            let case = Case::new(ta, tb, shape, seed);
            let tag = format!(
                "{}{} {:?}",
                if ta { "t" } else { "n" },
                if tb { "t" } else { "n" },
                shape
            );
            // 1. CPU f32 against f64, on the raw inputs and on the bf16-rounded ones.
            let (want, scale) = case.reference(&case.a, &case.b);
            let cpu_f32 = case.cpu(&case.a, &case.b);
            assert_gemm(&format!("cpu sgemm {tag}"), case.k, &cpu_f32, &want, &scale);
            let (a16, b16) = (round_bf16(&case.a), round_bf16(&case.b));
            let (want16, scale16) = case.reference(&a16, &b16);
            let cpu_bf16 = case.cpu(&a16, &b16);
            assert_gemm(
                &format!("cpu sgemm on bf16 inputs {tag}"),
                case.k,
                &cpu_bf16,
                &want16,
                &scale16,
            );
            // 2. CUDA against the CPU.
            on_cuda!(format!("gemm {tag}"), |dev| {
                cuda_gemm_case(dev, &case, &tag, &cpu_f32, &cpu_bf16, &scale, &scale16)?;
            });
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_gemm_case(
    dev: &ilrec::cuda::CudaDevice,
    case: &Case,
    tag: &str,
    cpu_f32: &[f32],
    cpu_bf16: &[f32],
    scale: &[f64],
    scale16: &[f64],
) -> ilrec::Result<()> {
    use ilrec::cuda::gemm::{cast_f32_to_bf16, gemm_bf16, gemm_f32, GemmShape};
    let shape = GemmShape::dense_batched(case.batch, case.ta, case.tb, case.m, case.n, case.k);
    let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    let (da, db) = (dev.upload(&case.a)?, dev.upload(&case.b)?);
    // f32 SIMT path
    let mut dc = dev.upload(&case.c0)?;
    gemm_f32(dev, &shape, ALPHA, &da, &db, BETA, &mut dc)?;
    assert_gemm(
        &format!("cuda gemm_f32 {tag}"),
        case.k,
        &dc.download()?,
        &as_f64(cpu_f32),
        scale,
    );
    // bf16 tensor-core path, operands converted on the device (which must round as the host)
    let (mut a16, mut b16) = (dev.zeros_bf16(case.a.len())?, dev.zeros_bf16(case.b.len())?);
    cast_f32_to_bf16(dev, &da, &mut a16)?;
    cast_f32_to_bf16(dev, &db, &mut b16)?;
    let host16: Vec<u16> = case
        .a
        .iter()
        .map(|&v| bf16::from_f32(v).to_bits())
        .collect();
    let dev16: Vec<u16> = a16.download()?.iter().map(|v| v.to_bits()).collect();
    assert_eq!(
        dev16, host16,
        "cast_f32_to_bf16 {tag}: device rounding differs from half::bf16"
    );
    let mut dc = dev.upload(&case.c0)?;
    if shape.lda.is_multiple_of(8)
        && shape.ldb.is_multiple_of(8)
        && (case.batch == 1
            || (shape.stride_a.is_multiple_of(8) && shape.stride_b.is_multiple_of(8)))
    {
        gemm_bf16(dev, &shape, ALPHA, &a16, &b16, BETA, &mut dc)?;
        assert_gemm(
            &format!("cuda gemm_bf16 {tag}"),
            case.k,
            &dc.download()?,
            &as_f64(cpu_bf16),
            scale16,
        );
    } else {
        // The tensor-core path must refuse misaligned operands with an error, not misread them.
        let err = gemm_bf16(dev, &shape, ALPHA, &a16, &b16, BETA, &mut dc).unwrap_err();
        assert!(
            err.to_string().contains("multiple of 8"),
            "{tag}: unexpected error {err}"
        );
    }
    Ok(())
}

/// Shapes aligned for the tensor-core path, so that every transpose pair runs through it (the
/// ragged shapes above mostly exercise the refusal): k and the leading dimensions multiples of 8
/// but not of the 32-deep tile, m and n off the 128 tile.
#[test]
fn gemm_bf16_aligned_shapes_match_cpu() {
    let mut seed = 100;
    for (ta, tb) in TRANSPOSES {
        for shape in [(2, 136, 72, 40), (1, 264, 136, 520)] {
            seed += 3;
            let case = Case::new(ta, tb, shape, seed);
            let tag = format!(
                "{}{} {:?}",
                if ta { "t" } else { "n" },
                if tb { "t" } else { "n" },
                shape
            );
            let (a16, b16) = (round_bf16(&case.a), round_bf16(&case.b));
            let (want16, scale16) = case.reference(&a16, &b16);
            let cpu_bf16 = case.cpu(&a16, &b16);
            assert_gemm(
                &format!("cpu sgemm on bf16 inputs {tag}"),
                case.k,
                &cpu_bf16,
                &want16,
                &scale16,
            );
            on_cuda!(format!("gemm_bf16 {tag}"), |dev| {
                use ilrec::cuda::gemm::{gemm_bf16, GemmShape};
                let shape = GemmShape::dense_batched(case.batch, ta, tb, case.m, case.n, case.k);
                let to16 = |v: &[f32]| v.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>();
                let (da, db) = (
                    dev.upload_bf16(&to16(&case.a))?,
                    dev.upload_bf16(&to16(&case.b))?,
                );
                let mut dc = dev.upload(&case.c0)?;
                gemm_bf16(dev, &shape, ALPHA, &da, &db, BETA, &mut dc)?;
                let want: Vec<f64> = cpu_bf16.iter().map(|&x| x as f64).collect();
                assert_gemm(
                    &format!("cuda gemm_bf16 {tag}"),
                    case.k,
                    &dc.download()?,
                    &want,
                    &scale16,
                );
            });
        }
    }
}

/// The tolerance can fail: one wrong element beyond 2 k eps of its scale is caught.
#[test]
#[should_panic(expected = "element 3")]
fn gemm_tolerance_rejects_a_small_error() {
    let case = Case::new(false, false, (1, 4, 4, 64), 7);
    let (want, scale) = case.reference(&case.a, &case.b);
    let mut c = case.cpu(&case.a, &case.b);
    c[3] += (200.0 * EPS_F32 * scale[3]) as f32 + 1e-5;
    assert_gemm("cpu sgemm", case.k, &c, &want, &scale);
}
