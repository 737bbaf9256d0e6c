//! AVX2 + FMA microkernel: a 6 x 16 tile of C held in 12 ymm accumulators.
//!
//! Why 6x16: x86-64 has 16 ymm registers; 12 accumulators + 2 for the B row + 1 broadcast of A
//! leaves one spare. 12 independent FMA chains cover the FMA latency (4 cycles) x 2 FMA pipes,
//! and each k step does 12 FMAs for 2 vector loads + 6 broadcasts.

use std::arch::x86_64::*;

/// Rows of C per call.
pub const MR: usize = 6;
/// Columns of C per call (two ymm vectors).
pub const NR: usize = 16;

/// C[0..6, 0..16] (row stride `ldc`) = alpha * (packed A sliver . packed B sliver) + beta * C.
/// `beta == 0` overwrites C without reading it.
///
/// # Safety
/// The CPU supports AVX2 and FMA; `a` holds `kc * 6` floats, `b` holds `kc * 16` floats and is
/// 32-byte aligned; `c` points at a 6 x 16 tile with rows `ldc` floats apart.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn kernel_6x16(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    // Ask for the C tile now (6 rows of 64 bytes, each possibly over two lines): the k loop
    // hides the miss, and the read-modify-write at the end then hits L1.
    for r in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + NR - 1) as *const i8);
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm256_load_ps(b);
        let b1 = _mm256_load_ps(b.add(8));
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let a_r = _mm256_broadcast_ss(&*a.add(r));
            acc_row[0] = _mm256_fmadd_ps(a_r, b0, acc_row[0]);
            acc_row[1] = _mm256_fmadd_ps(a_r, b1, acc_row[1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let alpha_v = _mm256_set1_ps(alpha);
    let beta_v = _mm256_set1_ps(beta);
    for (r, acc_row) in acc.iter().enumerate() {
        for (h, &acc_v) in acc_row.iter().enumerate() {
            let dst = c.add(r * ldc + 8 * h);
            let scaled = _mm256_mul_ps(alpha_v, acc_v);
            let out = if beta == 0.0 {
                scaled
            } else {
                _mm256_fmadd_ps(beta_v, _mm256_loadu_ps(dst), scaled)
            };
            _mm256_storeu_ps(dst, out);
        }
    }
}
