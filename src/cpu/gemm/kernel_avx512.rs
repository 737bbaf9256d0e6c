//! AVX-512F microkernels: an 8 x 48 tile of C in 24 zmm accumulators, and an 8 x 32 one (16)
//! for products whose width 48 would pad (attention's 64 and 128 columns).
//!
//! Why: this machine's EPYC (Zen 5) executes 512-bit FMAs at full width, so AVX-512 doubles the
//! FMA peak over AVX2. With 32 zmm registers, 8x48 uses 24 accumulators + 3 for the B row + 1
//! broadcast; 24 independent chains cover FMA latency x 2 pipes, and each k step does 24 FMAs for
//! 3 vector loads + 8 broadcasts. 8 and 48 divide the model's sizes (512 rows, 576, 1536, 49152).
//! 8x32 does 16 FMAs for 2 loads + 8 broadcasts: a little more load per FMA, still bound by the
//! FMAs, and a width of 64 (a head's dimension, a block of keys) in two whole tiles instead of a
//! whole and a third-full one (see `Problem::run_unsplit`). Both form every element of C the same
//! way (one chain of multiply-adds over the depth), so the choice changes no result.

use std::arch::x86_64::*;

/// Rows of C per call.
pub const MR: usize = 8;
/// Columns of C per call of the wide kernel (three zmm vectors).
pub const NR: usize = 48;
/// Columns of C per call of the narrow kernel (two zmm vectors).
pub const NR_NARROW: usize = 32;
/// How many k steps ahead the B sliver is prefetched.
const PREFETCH_K: usize = 8;

/// C[0..8, 0..16 V] (row stride `ldc`) = alpha * (packed A sliver . packed B sliver) + beta * C,
/// V zmm vectors per row of the tile: `kernel_8x16v::<3>` is the 8 x 48 kernel ([`NR`]),
/// `kernel_8x16v::<2>` the 8 x 32 one ([`NR_NARROW`]). `beta == 0` overwrites C without
/// reading it.
///
/// # Safety
/// The CPU supports AVX-512F; `a` holds `kc * 8` floats, `b` holds `kc * 16 V` floats and is
/// 64-byte aligned; `c` points at an 8 x 16 V tile with rows `ldc` floats apart.
#[target_feature(enable = "avx512f")]
pub unsafe fn kernel_8x16v<const V: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let width = 16 * V;
    let mut acc = [[_mm512_setzero_ps(); V]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // The B sliver streams from L2 (KC x 48 floats do not fit L1): ask for the row
        // PREFETCH_K steps ahead, one cache line per vector, so the loads below hit L1. (Near
        // the end of the sliver this names addresses past it: a prefetch never faults.)
        let mut b_row = [_mm512_setzero_ps(); V];
        for (h, b_h) in b_row.iter_mut().enumerate() {
            _mm_prefetch::<_MM_HINT_T0>(b.add(PREFETCH_K * width + 16 * h) as *const i8);
            *b_h = _mm512_load_ps(b.add(16 * h));
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let a_r = _mm512_set1_ps(*a.add(r));
            for (acc_h, &b_h) in acc_row.iter_mut().zip(&b_row) {
                *acc_h = _mm512_fmadd_ps(a_r, b_h, *acc_h);
            }
        }
        a = a.add(MR);
        b = b.add(width);
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
