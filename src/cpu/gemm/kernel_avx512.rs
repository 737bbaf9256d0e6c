//! AVX-512F microkernel: an 8 x 48 tile of C held in 24 zmm accumulators.
//!
//! Why: this machine's EPYC (Zen 5) executes 512-bit FMAs at full width, so AVX-512 doubles the
//! FMA peak over AVX2. With 32 zmm registers, 8x48 uses 24 accumulators + 3 for the B row + 1
//! broadcast; 24 independent chains cover FMA latency x 2 pipes, and each k step does 24 FMAs for
//! 3 vector loads + 8 broadcasts. 8 and 48 divide the model's sizes (512 rows, 576, 1536, 49152).

use std::arch::x86_64::*;

/// Rows of C per call.
pub const MR: usize = 8;
/// Columns of C per call (three zmm vectors).
pub const NR: usize = 48;
/// How many k steps ahead the B sliver is prefetched.
const PREFETCH_K: usize = 8;

/// C[0..8, 0..48] (row stride `ldc`) = alpha * (packed A sliver . packed B sliver) + beta * C.
/// `beta == 0` overwrites C without reading it.
///
/// # Safety
/// The CPU supports AVX-512F; `a` holds `kc * 8` floats, `b` holds `kc * 48` floats and is
/// 64-byte aligned; `c` points at an 8 x 48 tile with rows `ldc` floats apart.
#[target_feature(enable = "avx512f")]
pub unsafe fn kernel_8x48(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let mut acc = [[_mm512_setzero_ps(); 3]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // The B sliver streams from L2 (KC x 48 floats do not fit L1): ask for the row
        // PREFETCH_K steps ahead, three cache lines, so the loads below hit L1. (Near the end
        // of the sliver this names addresses past it: a prefetch never faults.)
        _mm_prefetch::<_MM_HINT_T0>(b.add(PREFETCH_K * NR) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(b.add(PREFETCH_K * NR + 16) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(b.add(PREFETCH_K * NR + 32) as *const i8);
        let b0 = _mm512_load_ps(b);
        let b1 = _mm512_load_ps(b.add(16));
        let b2 = _mm512_load_ps(b.add(32));
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let a_r = _mm512_set1_ps(*a.add(r));
            acc_row[0] = _mm512_fmadd_ps(a_r, b0, acc_row[0]);
            acc_row[1] = _mm512_fmadd_ps(a_r, b1, acc_row[1]);
            acc_row[2] = _mm512_fmadd_ps(a_r, b2, acc_row[2]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let alpha_v = _mm512_set1_ps(alpha);
    let beta_v = _mm512_set1_ps(beta);
    for (r, acc_row) in acc.iter().enumerate() {
        for (h, &acc_v) in acc_row.iter().enumerate() {
            let dst = c.add(r * ldc + 16 * h);
            let scaled = _mm512_mul_ps(alpha_v, acc_v);
            let out = if beta == 0.0 {
                scaled
            } else {
                _mm512_fmadd_ps(beta_v, _mm512_loadu_ps(dst), scaled)
            };
            _mm512_storeu_ps(dst, out);
        }
    }
}
