//! The thin products (`cpu::thin`: project, reduce, expand) against a naive f64 reference and
//! against `sgemm` with the same kernel family, bit for bit (the LoRA op relies on that), at odd
//! sizes (rows, depths and ranks that are not multiples of any vector width or tile, depths
//! over one depth block, ranks over one tile), padded row strides, every ISA this CPU runs,
//! and 1 and 2 threads.

use ilrec::cpu::dropout::{apply_mask, masked};
use ilrec::cpu::gemm::{depth_split, sgemm_with_isa, Isa};
use ilrec::cpu::pool::{num_threads, set_num_threads};
use ilrec::cpu::thin::{expand, project, reduce, Keep};
use std::sync::Mutex;

mod common;
use common::pseudo_random;

static THREADS_LOCK: Mutex<()> = Mutex::new(());

/// (m, k or n, r): odd sizes, a depth of 600 (two depth blocks on every kernel), ranks 1..70.
const SIZES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (7, 13, 5),
    (19, 37, 16),
    (33, 70, 17),
    (9, 600, 23),
    (13, 300, 50),
    (70, 129, 64),
    (5, 9, 70),
];

/// Every ISA and both thread counts, sizes in turn.
fn each_case(f: impl Fn(Isa, (usize, usize, usize))) {
    each_case_of(&SIZES, f)
}

/// [`each_case`] over other sizes.
fn each_case_of(sizes: &[(usize, usize, usize)], f: impl Fn(Isa, (usize, usize, usize))) {
    let _guard = THREADS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = num_threads();
    for threads in [1, 2] {
        set_num_threads(threads);
        for isa in Isa::all_supported() {
            for &dims in sizes {
                f(isa, dims);
            }
        }
    }
    set_num_threads(before);
}

/// `got[i, j]` against the f64 sum `want(i, j)` and its magnitude bound, for a (rows, cols)
/// result with row stride `ld`.
fn check_close(
    got: &[f32],
    ld: usize,
    rows: usize,
    cols: usize,
    want: impl Fn(usize, usize) -> (f64, f64),
) {
    for i in 0..rows {
        for j in 0..cols {
            let (w, bound) = want(i, j);
            let g = f64::from(got[i * ld + j]);
            assert!(
                (g - w).abs() <= 1e-5 * bound + 1e-6,
                "({i}, {j}): {g} vs {w}"
            );
        }
    }
}

#[test]
fn project_matches_naive_and_sgemm() {
    each_case(|isa, (m, k, r)| {
        let (ldx, ldp, ldc) = (k + 3, r + 1, r + 2);
        let (x, p) = (pseudo_random(m * ldx, 1), pseudo_random(k * ldp, 2));
        let mut c = vec![f32::NAN; m * ldc];
        project(isa, (m, k, r), (&x, ldx, None), &p, ldp, &mut c, ldc);
        check_close(&c, ldc, m, r, |i, j| {
            let terms = (0..k).map(|q| f64::from(x[i * ldx + q]) * f64::from(p[q * ldp + j]));
            terms.fold((0.0, 0.0), |(s, b), t| (s + t, b + t.abs()))
        });
        let mut want = vec![f32::NAN; m * ldc];
        #[rustfmt::skip]
        sgemm_with_isa(isa, false, false, m, r, k, 1.0, &x, ldx, &p, ldp, 0.0, &mut want, ldc);
        assert_bits(&c, &want, ldc, r, isa, (m, k, r));
    });
}

#[test]
fn reduce_matches_naive_and_sgemm() {
    each_case(|isa, (m, n, r)| {
        let (ldh, ldg, ldc) = (r + 1, n + 5, n + 2);
        let (h, g) = (pseudo_random(m * ldh, 3), pseudo_random(m * ldg, 4));
        let mut c = vec![f32::NAN; r * ldc];
        reduce(isa, (m, n, r), &h, ldh, (&g, ldg, None), &mut c, ldc);
        check_close(&c, ldc, r, n, |j, col| {
            let terms = (0..m).map(|i| f64::from(h[i * ldh + j]) * f64::from(g[i * ldg + col]));
            terms.fold((0.0, 0.0), |(s, b), t| (s + t, b + t.abs()))
        });
        let mut want = vec![f32::NAN; r * ldc];
        #[rustfmt::skip]
        sgemm_with_isa(isa, true, false, r, n, m, 1.0, &h, ldh, &g, ldg, 0.0, &mut want, ldc);
        assert_bits(&c, &want, ldc, n, isa, (m, n, r));
    });
}

/// Products deep enough for `sgemm` to sum in two depth segments (two sides of 256 or more,
/// depth >= 8192: a LoRA rank of 256 over 8192 rows) follow the same split, so they keep
/// sgemm's bits, read through a mask too; naive sums check the second segment's offsets.
#[test]
fn deep_products_follow_sgemms_depth_split() {
    // project: C (m, r) = Xd (m, k) P (k, r); reduce: C (r, m) = P^T Gd with G = X^T (k, m).
    let (m, k, r) = (256, 8229, 257);
    let (x, p) = (pseudo_random(m * k, 21), pseudo_random(k * r, 22));
    let g: Vec<f32> = (0..k * m).map(|e| x[(e % m) * k + e / m]).collect();
    let (x_bits, g_bits) = (random_mask(m * k, 23), random_mask(k * m, 24));
    let x_keep = Keep {
        bits: &x_bits,
        row_len: k,
        scale: 1.25,
    };
    let g_keep = Keep {
        bits: &g_bits,
        row_len: m,
        scale: 1.25,
    };
    let (xd, gd) = (masked(&x, &x_bits, 1.25), masked(&g, &g_bits, 1.25));
    // Naive sums (value, magnitude) once: project's (i, j), reduce's (j, col).
    let sum = |terms: &mut dyn Iterator<Item = f64>| {
        terms.fold((0.0, 0.0), |(s, b), t| (s + t, b + t.abs()))
    };
    let naive_project: Vec<(f64, f64)> = (0..m * r)
        .map(|e| {
            sum(&mut (0..k).map(|q| f64::from(xd[e / r * k + q]) * f64::from(p[q * r + e % r])))
        })
        .collect();
    let naive_reduce: Vec<(f64, f64)> = (0..r * m)
        .map(|e| {
            sum(&mut (0..k).map(|i| f64::from(p[i * r + e / m]) * f64::from(gd[i * m + e % m])))
        })
        .collect();
    each_case_of(&[(m, k, r)], |isa, (m, k, r)| {
        assert!(
            depth_split(isa, m, r, k).is_some(),
            "not split: the test covers nothing"
        );
        let mut c = vec![f32::NAN; m * r];
        project(isa, (m, k, r), (&x, k, Some(x_keep)), &p, r, &mut c, r);
        check_close(&c, r, m, r, |i, j| naive_project[i * r + j]);
        let mut want = vec![f32::NAN; m * r];
        sgemm_with_isa(
            isa, false, false, m, r, k, 1.0, &xd, k, &p, r, 0.0, &mut want, r,
        );
        assert_bits(&c, &want, r, r, isa, (m, k, r));

        let mut c = vec![f32::NAN; r * m];
        reduce(isa, (k, m, r), &p, r, (&g, m, Some(g_keep)), &mut c, m);
        check_close(&c, m, r, m, |j, col| naive_reduce[j * m + col]);
        let mut want = vec![f32::NAN; r * m];
        sgemm_with_isa(
            isa, true, false, r, m, k, 1.0, &p, r, &gd, m, 0.0, &mut want, m,
        );
        assert_bits(&c, &want, m, m, isa, (k, m, r));
    });
}

#[test]
fn expand_matches_naive_and_sgemm() {
    each_case(|isa, (m, n, r)| {
        let (ldh, ldq, ldy) = (r + 2, n + 1, n + 3);
        let (h, q) = (pseudo_random(m * ldh, 5), pseudo_random(r * ldq, 6));
        let y0 = pseudo_random(m * ldy, 7);
        for add in [false, true] {
            let mut y = y0.clone();
            expand(isa, (m, n, r), &h, ldh, &q, ldq, add, None, &mut y, ldy);
            check_close(&y, ldy, m, n, |i, col| {
                let terms = (0..r).map(|j| f64::from(h[i * ldh + j]) * f64::from(q[j * ldq + col]));
                let start = if add {
                    f64::from(y0[i * ldy + col])
                } else {
                    0.0
                };
                terms.fold((start, start.abs()), |(s, b), t| (s + t, b + t.abs()))
            });
            let mut want = y0.clone();
            let beta = if add { 1.0 } else { 0.0 };
            #[rustfmt::skip]
            sgemm_with_isa(isa, false, false, m, n, r, 1.0, &h, ldh, &q, ldq, beta, &mut want, ldy);
            assert_bits(&y, &want, ldy, n, isa, (m, n, r));
        }
    });
}

/// The dropout mask applied by `expand` is `apply_mask` on the finished product, which is then
/// added onto Y (when `add`), also for ranks that span several depth blocks of every kernel.
#[test]
fn expand_with_mask_is_sgemm_then_apply_mask_then_add() {
    let sizes: Vec<_> = SIZES
        .iter()
        .copied()
        .chain([(11, 37, 700), (4, 20, 300)])
        .collect();
    each_case_of(&sizes, |isa, (m, n, r)| {
        let (h, q) = (pseudo_random(m * r, 8), pseudo_random(r * n, 9));
        let bits = random_mask(m * n, 10);
        let scale = 1.0 / 0.9;
        for add in [false, true] {
            let y0 = pseudo_random(m * n, 11);
            let mut y = y0.clone();
            let keep = Keep {
                bits: &bits,
                row_len: n,
                scale,
            };
            expand(isa, (m, n, r), &h, r, &q, n, add, Some(keep), &mut y, n);
            let mut want = vec![f32::NAN; m * n];
            sgemm_with_isa(
                isa, false, false, m, n, r, 1.0, &h, r, &q, n, 0.0, &mut want, n,
            );
            apply_mask(&mut want, &bits, scale);
            if add {
                want.iter_mut().zip(&y0).for_each(|(w, &y)| *w += y);
            }
            assert_bits(&y, &want, n, n, isa, (m, n, r));
        }
    });
}

/// Same bits everywhere, the padding past `cols` in each row included (left untouched).
fn assert_bits(
    got: &[f32],
    want: &[f32],
    ld: usize,
    cols: usize,
    isa: Isa,
    dims: (usize, usize, usize),
) {
    assert!(cols <= ld);
    for (row, (g, w)) in got.chunks(ld).zip(want.chunks(ld)).enumerate() {
        for (col, (g, w)) in g.iter().zip(w).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{isa:?} {dims:?} ({row}, {col}): {g} vs {w}"
            );
        }
    }
}

/// A mask of `len` bits, about half of them set.
fn random_mask(len: usize, seed: u64) -> Vec<u64> {
    pseudo_random(len.div_ceil(64) * 2, seed)
        .chunks(2)
        .map(|w| (w[0].to_bits() as u64) << 32 ^ w[1].to_bits() as u64)
        .collect()
}

/// project reading X through a mask is project (and sgemm) on the dropped X written out.
#[test]
fn project_through_a_mask_is_project_on_the_dropped_values() {
    each_case(|isa, (m, k, r)| {
        let (x, p) = (pseudo_random(m * k, 12), pseudo_random(k * r, 13));
        let bits = random_mask(m * k, 14);
        let scale = 1.0 / 0.95;
        let keep = Keep {
            bits: &bits,
            row_len: k,
            scale,
        };
        let mut c = vec![f32::NAN; m * r];
        project(isa, (m, k, r), (&x, k, Some(keep)), &p, r, &mut c, r);
        let xd = masked(&x, &bits, scale);
        let mut want = vec![f32::NAN; m * r];
        sgemm_with_isa(
            isa, false, false, m, r, k, 1.0, &xd, k, &p, r, 0.0, &mut want, r,
        );
        assert_bits(&c, &want, r, r, isa, (m, k, r));
    });
}

/// reduce reading G through a mask is reduce (and sgemm) on the dropped G written out.
#[test]
fn reduce_through_a_mask_is_reduce_on_the_dropped_values() {
    each_case(|isa, (m, n, r)| {
        let (h, g) = (pseudo_random(m * r, 15), pseudo_random(m * n, 16));
        let bits = random_mask(m * n, 17);
        let scale = 1.0 / 0.9;
        let keep = Keep {
            bits: &bits,
            row_len: n,
            scale,
        };
        let mut c = vec![f32::NAN; r * n];
        reduce(isa, (m, n, r), &h, r, (&g, n, Some(keep)), &mut c, n);
        let gd = masked(&g, &bits, scale);
        let mut want = vec![f32::NAN; r * n];
        sgemm_with_isa(
            isa, true, false, r, n, m, 1.0, &h, r, &gd, n, 0.0, &mut want, n,
        );
        assert_bits(&c, &want, n, n, isa, (m, n, r));
    });
}
