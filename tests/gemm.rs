//! GEMM and thread-pool tests against independent references: a naive f64 triple loop for
//! every product, and explicit counting for the pool.
//!
//! Tests in this binary run on parallel threads and share the global thread count, so tests
//! that need a specific count take `THREADS_LOCK`; the kernel choice is a function argument
//! (`sgemm_with_isa`), never a process env var.

use ilrec::cpu::gemm::{
    depth_split, sgemm, sgemm_batched, sgemm_batched_with_isa, sgemm_new, sgemm_with_isa, Isa,
};
use ilrec::cpu::pool::{num_threads, parallel_for, set_num_threads};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

mod common;
use common::pseudo_random;

static THREADS_LOCK: Mutex<()> = Mutex::new(());

/// Runs `f` with the pool set to `n` threads, restoring the previous count afterwards.
fn with_threads(n: usize, f: impl FnOnce()) {
    let _guard = THREADS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let before = num_threads();
    set_num_threads(n);
    f();
    set_num_threads(before);
}

/// One test case: shapes, transposes, scalars and padded leading dimensions.
#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    alpha: f32,
    beta: f32,
    /// Extra elements per row beyond the tight leading dimension.
    pad: usize,
}

struct Operands {
    a: Vec<f32>,
    lda: usize,
    b: Vec<f32>,
    ldb: usize,
    c: Vec<f32>,
    ldc: usize,
}

fn operands(cs: Case, seed: u64) -> Operands {
    let (a_rows, a_cols) = if cs.ta { (cs.k, cs.m) } else { (cs.m, cs.k) };
    let (b_rows, b_cols) = if cs.tb { (cs.n, cs.k) } else { (cs.k, cs.n) };
    let (lda, ldb, ldc) = (a_cols + cs.pad, b_cols + cs.pad, cs.n + cs.pad);
    Operands {
        a: pseudo_random(a_rows * lda, seed),
        lda,
        b: pseudo_random(b_rows * ldb, seed + 1),
        ldb,
        c: pseudo_random(cs.m * ldc, seed + 2),
        ldc,
    }
}

/// The reference: the definition of GEMM, accumulated in f64.
fn naive(cs: Case, o: &Operands) -> Vec<f32> {
    let mut c = o.c.clone();
    for i in 0..cs.m {
        for j in 0..cs.n {
            let mut dot = 0.0f64;
            for p in 0..cs.k {
                let a = if cs.ta {
                    o.a[p * o.lda + i]
                } else {
                    o.a[i * o.lda + p]
                };
                let b = if cs.tb {
                    o.b[j * o.ldb + p]
                } else {
                    o.b[p * o.ldb + j]
                };
                dot += a as f64 * b as f64;
            }
            let old = if cs.beta == 0.0 {
                0.0
            } else {
                cs.beta as f64 * c[i * o.ldc + j] as f64
            };
            c[i * o.ldc + j] = (cs.alpha as f64 * dot + old) as f32;
        }
    }
    c
}

/// Compares the m x n part of C and checks that the padding columns were not touched.
fn assert_close(cs: Case, what: &str, got: &[f32], want: &[f32], before: &[f32], ldc: usize) {
    // |a|,|b| < 1: the f32 rounding error of a length-k dot grows ~ k * eps.
    let tol = 1e-5 * (cs.k as f32 + 1.0) * (cs.alpha.abs() + 1.0) + 1e-6;
    for i in 0..cs.m {
        for j in 0..ldc {
            let idx = i * ldc + j;
            if j < cs.n {
                let err = (got[idx] - want[idx]).abs();
                assert!(
                    err <= tol,
                    "{what} {cs:?}: C[{i},{j}] = {} but reference {} (err {err})",
                    got[idx],
                    want[idx]
                );
            } else {
                assert_eq!(
                    got[idx].to_bits(),
                    before[idx].to_bits(),
                    "{what} {cs:?}: padding C[{i},{j}] changed"
                );
            }
        }
    }
}

fn check_case(cs: Case, isa: Isa, seed: u64) {
    let o = operands(cs, seed);
    let want = naive(cs, &o);
    let mut got = o.c.clone();
    #[rustfmt::skip]
    sgemm_with_isa(isa, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha, &o.a, o.lda, &o.b, o.ldb, cs.beta, &mut got, o.ldc);
    assert_close(cs, isa.name(), &got, &want, &o.c, o.ldc);
}

/// Shapes that are not multiples of any kernel's MR, NR or blocking sizes.
const SHAPES: [(usize, usize, usize); 6] = [
    (1, 1, 1),
    (7, 13, 5),
    (67, 131, 257),
    (300, 17, 600),
    (9, 50, 300),
    (130, 97, 1),
];

fn all_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (idx, &(m, n, k)) in SHAPES.iter().enumerate() {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            // Alternate plain (alpha 1, beta 0, tight) and general (alpha, beta, padded) cases.
            let general = (idx + ta as usize + tb as usize) % 2 == 1;
            let (alpha, beta, pad) = if general {
                (-0.75, 0.5, 3)
            } else {
                (1.0, 0.0, 0)
            };
            cases.push(Case {
                m,
                n,
                k,
                ta,
                tb,
                alpha,
                beta,
                pad,
            });
            cases.push(Case {
                m,
                n,
                k,
                ta,
                tb,
                alpha: 1.5,
                beta: -1.0,
                pad: 1,
            });
        }
    }
    cases
}

fn check_all(threads: usize) {
    with_threads(threads, || {
        for isa in Isa::all_supported() {
            for (i, cs) in all_cases().into_iter().enumerate() {
                check_case(cs, isa, i as u64);
            }
        }
    });
}

#[test]
fn sgemm_matches_naive_one_thread() {
    check_all(1);
}

#[test]
fn sgemm_matches_naive_many_threads() {
    check_all(3);
}

#[test]
fn scalar_kernel_is_always_available_and_correct() {
    assert!(Isa::all_supported().contains(&Isa::Scalar));
    let cs = Case {
        m: 33,
        n: 29,
        k: 70,
        ta: true,
        tb: false,
        alpha: 2.0,
        beta: 0.25,
        pad: 2,
    };
    check_case(cs, Isa::Scalar, 7);
}

#[test]
fn large_model_like_shapes_match_naive() {
    // Big enough to be split between threads and to use several depth / column blocks.
    with_threads(2, || {
        for isa in Isa::all_supported() {
            for (ta, tb) in [(false, true), (false, false), (true, false)] {
                let cs = Case {
                    m: 96,
                    n: 3100,
                    k: 700,
                    ta,
                    tb,
                    alpha: 1.0,
                    beta: 0.0,
                    pad: 0,
                };
                check_case(cs, isa, 11);
                let tall = Case {
                    m: 400,
                    n: 40,
                    k: 520,
                    ta,
                    tb,
                    alpha: 0.5,
                    beta: 1.0,
                    pad: 0,
                };
                check_case(tall, isa, 12);
                // Wide / tall enough to be cut into more parts than threads.
                let (alpha, beta, pad) = (1.0, 0.5, 1);
                let very_wide = Case {
                    m: 9,
                    n: 9300,
                    k: 40,
                    ta,
                    tb,
                    alpha,
                    beta,
                    pad,
                };
                check_case(very_wide, isa, 13);
                let very_tall = Case {
                    m: 9300,
                    n: 9,
                    k: 40,
                    ta,
                    tb,
                    alpha,
                    beta,
                    pad,
                };
                check_case(very_tall, isa, 14);
                // Few rows, many columns, a deep product: each thread's B blocks are sized to
                // the L2 (several per part, the last one narrower), two depth blocks.
                let few_rows_wide = Case {
                    m: 9,
                    n: 6300,
                    k: 700,
                    ta,
                    tb,
                    alpha: -0.75,
                    beta: 0.5,
                    pad: 1,
                };
                check_case(few_rows_wide, isa, 15);
            }
        }
    });
}

#[test]
fn beta_zero_overwrites_nan_in_c() {
    for isa in Isa::all_supported() {
        let (m, n, k) = (10, 20, 30);
        let a = pseudo_random(m * k, 1);
        let b = pseudo_random(k * n, 2);
        let mut c = vec![f32::NAN; m * n];
        sgemm_with_isa(
            isa, false, false, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n,
        );
        assert!(
            c.iter().all(|v| v.is_finite()),
            "{}: NaN from C leaked through beta = 0",
            isa.name()
        );
    }
}

#[test]
fn k_zero_and_alpha_zero_only_scale_c() {
    let mut c = vec![2.0f32; 6];
    sgemm(false, false, 2, 3, 0, 1.0, &[], 0, &[], 3, 0.5, &mut c, 3);
    assert_eq!(c, vec![1.0; 6]);
    let mut c = vec![f32::NAN; 6];
    sgemm(
        false, false, 2, 3, 4, 0.0, &[1.0; 8], 4, &[1.0; 12], 3, 0.0, &mut c, 3,
    );
    assert_eq!(c, vec![0.0; 6]);
}

/// `sgemm_new` (C never zero-filled) is `sgemm` with alpha 1, beta 0, bit for bit, on every
/// shape and transpose of the suite (edge tiles included), k = 0 and empty C, on 1 and 2
/// threads. Before each call a NaN-filled vector of C's size is freed, so that the allocator
/// most likely hands the same memory back: an element the product failed to write then shows
/// as NaN instead of a zero that a fresh page would give.
#[test]
fn sgemm_new_is_sgemm_with_beta_zero() {
    let mut cases = all_cases();
    for (m, n) in [(0, 5), (5, 0), (3, 4)] {
        let k = 0;
        cases.push(Case {
            m,
            n,
            k,
            ta: false,
            tb: true,
            alpha: 1.0,
            beta: 0.0,
            pad: 0,
        });
    }
    for threads in [1, 2] {
        with_threads(threads, || {
            for (i, &cs) in cases.iter().enumerate() {
                let o = operands(Case { pad: 0, ..cs }, 40 + i as u64);
                let mut want = vec![f32::NAN; cs.m * cs.n];
                #[rustfmt::skip]
                sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1.0, &o.a, o.lda, &o.b, o.ldb, 0.0, &mut want, cs.n.max(1));
                drop(std::hint::black_box(vec![f32::NAN; cs.m * cs.n]));
                let got = sgemm_new(cs.ta, cs.tb, cs.m, cs.n, cs.k, &o.a, o.lda, &o.b, o.ldb);
                assert_eq!(got.len(), want.len(), "{cs:?}");
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.to_bits() == w.to_bits());
                assert!(
                    same,
                    "{cs:?}, {threads} threads: sgemm_new differs from sgemm"
                );
            }
        });
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    // The first case has more row tiles than column tiles but is wider than tall: split by rows
    // on 2 threads, or by columns with the AVX-512 kernel (`split_by_cols`). The second has few
    // rows and many columns: on 1 thread its B blocks are sized to the L2, on 2 threads each
    // half is narrower than a block and keeps the usual one. Neither the split nor column
    // blocking changes a sum, so the bits must not change.
    let shapes = [(200, 700, 600), (20, 4000, 600)];
    for (m, n, k) in shapes {
        let cs = Case {
            m,
            n,
            k,
            ta: false,
            tb: true,
            alpha: 1.0,
            beta: 0.0,
            pad: 0,
        };
        let o = operands(cs, 5);
        let run = |threads| {
            let mut c = o.c.clone();
            let (a, b) = (&o.a, &o.b);
            with_threads(threads, || {
                let (ta, tb) = (cs.ta, cs.tb);
                sgemm(ta, tb, m, n, k, 1.0, a, o.lda, b, o.ldb, 0.0, &mut c, o.ldc);
            });
            c
        };
        let one = run(1);
        let two = run(2);
        assert!(
            one.iter()
                .zip(&two)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{cs:?}: 1 vs 2 threads differ bitwise"
        );
        assert_close(cs, "threads", &one, &naive(cs, &o), &o.c, o.ldc);
    }
}

/// A deep product (the LM head's dX shape class: k >= 8192, C at least 256 x 256) is summed
/// in two depth segments; with every transpose, alpha, beta and padded strides, the second
/// segment must read the right depths of A and B (a wrong offset sums other elements: errors
/// of order sqrt(k), far beyond the tolerance), and 1 and 2 threads must give the same bits
/// (two threads run the segments side by side, one runs them in turn).
#[test]
fn deep_products_are_split_in_depth_correctly_and_independently_of_threads() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let cs = Case {
            m: 256,
            n: 262,
            k: 8229,
            ta,
            tb,
            alpha: 0.5,
            beta: 0.75,
            pad: 3,
        };
        let o = operands(cs, 11);
        let want = naive(cs, &o);
        for isa in Isa::all_supported() {
            assert!(
                depth_split(isa, cs.m, cs.n, cs.k).is_some(),
                "{cs:?} is not split with {}: the test no longer covers the split",
                isa.name()
            );
            let run = |threads| {
                let mut c = o.c.clone();
                with_threads(threads, || {
                    #[rustfmt::skip]
                    sgemm_with_isa(isa, ta, tb, cs.m, cs.n, cs.k, cs.alpha, &o.a, o.lda, &o.b, o.ldb, cs.beta, &mut c, o.ldc);
                });
                c
            };
            let (one, two) = (run(1), run(2));
            assert_close(cs, isa.name(), &two, &want, &o.c, o.ldc);
            assert!(
                one.iter()
                    .zip(&two)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{cs:?} {}: 1 vs 2 threads differ bitwise",
                isa.name()
            );
        }
    }
}

/// A narrow product (64 columns: the AVX-512 path picks its 8x32 kernel) gives the same bits as
/// the same columns of a wide one (576: the 8x48 kernel): the kernel's width groups columns and
/// changes no sum, on every ISA, with B stored either way.
#[test]
fn narrow_and_wide_products_agree_bitwise_on_shared_columns() {
    let (m, k, narrow, wide) = (40, 300, 64, 576);
    let a = pseudo_random(m * k, 31);
    for tb in [false, true] {
        // B (k x wide), or B^T stored (wide x k); the narrow product reads its first columns.
        let b_wide = pseudo_random(k * wide, 32);
        let b_narrow: Vec<f32> = if tb {
            b_wide[..narrow * k].to_vec()
        } else {
            b_wide
                .chunks(wide)
                .flat_map(|row| row[..narrow].to_vec())
                .collect()
        };
        let (ldb_wide, ldb_narrow) = if tb { (k, k) } else { (wide, narrow) };
        for isa in Isa::all_supported() {
            let mut c_wide = vec![0.0f32; m * wide];
            let mut c_narrow = vec![0.0f32; m * narrow];
            #[rustfmt::skip]
            sgemm_with_isa(isa, false, tb, m, wide, k, 1.0, &a, k, &b_wide, ldb_wide, 0.0, &mut c_wide, wide);
            #[rustfmt::skip]
            sgemm_with_isa(isa, false, tb, m, narrow, k, 1.0, &a, k, &b_narrow, ldb_narrow, 0.0, &mut c_narrow, narrow);
            for (i, row) in c_narrow.chunks(narrow).enumerate() {
                for (j, v) in row.iter().enumerate() {
                    assert_eq!(
                        v.to_bits(),
                        c_wide[i * wide + j].to_bits(),
                        "{} tb={tb}: C[{i},{j}] narrow {v} vs wide {}",
                        isa.name(),
                        c_wide[i * wide + j]
                    );
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "needs")]
fn short_slice_panics_with_message() {
    let mut c = vec![0.0f32; 4];
    sgemm(
        false, false, 2, 2, 3, 1.0, &[1.0; 5], 3, &[1.0; 6], 2, 0.0, &mut c, 2,
    );
}

/// Batched: attention-like shapes, padded strides between items, checked item by item.
fn check_batched(isa: Isa, batch: usize, cs: Case) {
    let gap = 5; // unused elements between items, must stay untouched
    let one = operands(cs, 0);
    let (sa, sb, sc) = (one.a.len() + gap, one.b.len() + gap, one.c.len() + gap);
    let a = pseudo_random(batch * sa, 21);
    let b = pseudo_random(batch * sb, 22);
    let c0 = pseudo_random(batch * sc, 23);
    let mut c = c0.clone();
    #[rustfmt::skip]
    sgemm_batched_with_isa(isa, batch, cs.ta, cs.tb, cs.m, cs.n, cs.k, cs.alpha,
        &a, one.lda, sa, &b, one.ldb, sb, cs.beta, &mut c, one.ldc, sc);
    for i in 0..batch {
        let item = Operands {
            a: a[i * sa..i * sa + one.a.len()].to_vec(),
            lda: one.lda,
            b: b[i * sb..i * sb + one.b.len()].to_vec(),
            ldb: one.ldb,
            c: c0[i * sc..i * sc + one.c.len()].to_vec(),
            ldc: one.ldc,
        };
        let want = naive(cs, &item);
        assert_close(
            cs,
            "batched",
            &c[i * sc..i * sc + one.c.len()],
            &want,
            &item.c,
            one.ldc,
        );
        assert_eq!(
            &c[i * sc + one.c.len()..(i + 1) * sc],
            &c0[i * sc + one.c.len()..(i + 1) * sc],
            "gap of item {i} written"
        );
    }
}

#[test]
fn sgemm_batched_matches_naive() {
    with_threads(2, || {
        for isa in Isa::all_supported() {
            // Scores = Q K^T per head, then context = P V (scaled-down attention shapes).
            let scores = Case {
                m: 37,
                n: 37,
                k: 16,
                ta: false,
                tb: true,
                alpha: 0.25,
                beta: 0.0,
                pad: 0,
            };
            let context = Case {
                m: 37,
                n: 16,
                k: 37,
                ta: false,
                tb: false,
                alpha: 1.0,
                beta: 0.0,
                pad: 0,
            };
            let grad = Case {
                m: 37,
                n: 16,
                k: 37,
                ta: true,
                tb: false,
                alpha: 1.0,
                beta: 1.0,
                pad: 2,
            };
            for batch in [1, 5] {
                check_batched(isa, batch, scores);
                check_batched(isa, batch, context);
                check_batched(isa, batch, grad);
            }
        }
    });
}

#[test]
fn sgemm_batched_public_entry_point() {
    // Two 2x2 products with hand-computed answers: [[1,2],[3,4]] . I and . [[0,1],[1,0]].
    let a = [1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0];
    let b = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    let mut c = [9.0f32; 8];
    sgemm_batched(
        2, false, false, 2, 2, 2, 1.0, &a, 2, 4, &b, 2, 4, 0.0, &mut c, 2, 4,
    );
    assert_eq!(c, [1.0, 2.0, 3.0, 4.0, 2.0, 1.0, 4.0, 3.0]);
}

#[test]
fn parallel_for_runs_every_index_exactly_once() {
    with_threads(2, || {
        for n_tasks in [0, 1, 2, 3, 17, 1000] {
            let counts: Vec<AtomicUsize> = (0..n_tasks).map(|_| AtomicUsize::new(0)).collect();
            parallel_for(n_tasks, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "n_tasks = {n_tasks}"
            );
        }
    });
}

#[test]
fn parallel_for_nested_calls_complete() {
    with_threads(3, || {
        let total = AtomicUsize::new(0);
        parallel_for(4, &|i| {
            parallel_for(5, &|j| {
                total.fetch_add(i * 5 + j + 1, Ordering::Relaxed);
            });
        });
        // Sum of 1..=20.
        assert_eq!(total.load(Ordering::Relaxed), 210);
    });
}

#[test]
fn parallel_for_many_small_jobs() {
    // Back-to-back jobs exercise the epoch hand-off (a worker must never skip or repeat one).
    with_threads(2, || {
        let total = AtomicUsize::new(0);
        for _ in 0..2000 {
            parallel_for(3, &|i| {
                total.fetch_add(i + 1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 2000 * 6);
    });
}

#[test]
fn parallel_for_propagates_panics() {
    with_threads(2, || {
        let result = std::panic::catch_unwind(|| {
            parallel_for(8, &|i| {
                if i == 5 {
                    panic!("task five fails");
                }
            })
        });
        assert!(result.is_err());
        // The pool still works afterwards.
        let total = AtomicUsize::new(0);
        parallel_for(8, &|_| {
            total.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 8);
    });
}

#[test]
fn parallel_for_from_concurrent_threads_and_spawned_threads() {
    with_threads(2, || {
        let total = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50 {
                        parallel_for(10, &|i| {
                            total.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 45);
        // A task that spawns a thread which itself calls parallel_for must not deadlock.
        let inner = AtomicUsize::new(0);
        parallel_for(2, &|_| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    parallel_for(3, &|_| {
                        inner.fetch_add(1, Ordering::Relaxed);
                    })
                });
            });
        });
        assert_eq!(inner.load(Ordering::Relaxed), 6);
    });
}
