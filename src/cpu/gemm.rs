//! Single-precision GEMM (general matrix multiply), row-major:
//!
//! `C[m, n] = alpha * op(A)[m, k] . op(B)[k, n] + beta * C`
//!
//! where `op(A) = A` (stored m x k with row stride `lda`) or `A^T` (A stored k x m with row stride
//! `lda`), and likewise for B. `beta == 0` overwrites C without reading it (so NaN garbage in an
//! uninitialised C does not leak through `0 * NaN`).
//!
//! This is the plain triple-loop reference implementation of the contract: correct for every
//! size and stride, deliberately simple. A cache-blocked AVX2/FMA version with the identical
//! contract replaces it; keep the two interchangeable.
//!
//! Slices too short for the sizes and strides given are a programming error (the callers in the
//! autograd ops validate shapes first), so they panic through normal slice indexing.

/// `C = alpha * op(A) . op(B) + beta * C` for one matrix triple. See the module docs.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    // Element (row, col) of op(A) and op(B), reading through the transpose flag.
    let a_at = |i: usize, p: usize| {
        if trans_a {
            a[p * lda + i]
        } else {
            a[i * lda + p]
        }
    };
    let b_at = |p: usize, j: usize| {
        if trans_b {
            b[j * ldb + p]
        } else {
            b[p * ldb + j]
        }
    };
    for i in 0..m {
        for j in 0..n {
            let mut dot = 0.0f32;
            for p in 0..k {
                dot += a_at(i, p) * b_at(p, j);
            }
            let out = &mut c[i * ldc + j];
            *out = if beta == 0.0 {
                alpha * dot
            } else {
                alpha * dot + beta * *out
            };
        }
    }
}

/// `batch` independent GEMMs; matrix `i` of A starts at `i * stride_a` (likewise B and C).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_batched(
    batch: usize,
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    stride_a: usize,
    b: &[f32],
    ldb: usize,
    stride_b: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
    stride_c: usize,
) {
    for i in 0..batch {
        sgemm(
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha,
            &a[i * stride_a..],
            lda,
            &b[i * stride_b..],
            ldb,
            beta,
            &mut c[i * stride_c..],
            ldc,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_2x2_with_every_transpose_and_beta() {
        // A = [[1,2],[3,4]], B = [[5,6],[7,8]].
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let cases = [
            (false, false, [19.0, 22.0, 43.0, 50.0]), // A B
            (true, false, [26.0, 30.0, 38.0, 44.0]),  // A^T B
            (false, true, [17.0, 23.0, 39.0, 53.0]),  // A B^T
            (true, true, [23.0, 31.0, 34.0, 46.0]),   // A^T B^T
        ];
        for (ta, tb, want) in cases {
            let mut c = [f32::NAN; 4];
            sgemm(ta, tb, 2, 2, 2, 1.0, &a, 2, &b, 2, 0.0, &mut c, 2);
            assert_eq!(c, want, "trans_a {ta} trans_b {tb}");
            // alpha = 2, beta = 1 on top of the previous result: 3x.
            sgemm(ta, tb, 2, 2, 2, 2.0, &a, 2, &b, 2, 1.0, &mut c, 2);
            assert_eq!(c, want.map(|x| 3.0 * x));
        }
    }

    #[test]
    fn strides_and_batches() {
        // Two batches of a 1x2 . 2x1 product, with padded row strides.
        let a = [1.0, 2.0, 99.0, 3.0, 4.0, 99.0]; // lda 3, stride 3
        let b = [5.0, 99.0, 6.0, 99.0, 7.0, 99.0, 8.0, 99.0]; // ldb 2, stride 4
        let mut c = [0.0; 2];
        sgemm_batched(
            2, false, false, 1, 1, 2, 1.0, &a, 3, 3, &b, 2, 4, 0.0, &mut c, 1, 1,
        );
        assert_eq!(c, [17.0, 53.0]);
    }
}
