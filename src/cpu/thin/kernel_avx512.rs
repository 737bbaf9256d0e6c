//! AVX-512F thin-product tile: up to 8 rows x 48 columns (three zmm vectors per row) of C in
//! 24 accumulators; each depth step loads a row of b (1-3 vectors, masked at the right edge)
//! and broadcasts 8 values of a. Nothing is packed: a and b are read where they lie.

use super::Tile;
use std::arch::x86_64::*;

/// Rows of C per tile.
pub const MR: usize = 8;
/// Columns of C per tile (three zmm vectors).
pub const WIDTH: usize = 48;

/// Rows of b ahead that each depth step prefetches (~a memory latency of depth steps).
const PREFETCH_ROWS: usize = 16;

/// Computes one tile (see [`Tile`]), with as many vectors per row as its columns need.
///
/// # Safety
/// The CPU supports AVX-512F; the tile's pointers cover its rows, columns and depth.
pub unsafe fn tile(t: &Tile<'_>) {
    match t.cols.div_ceil(16) {
        1 => tile_nv::<1>(t),
        2 => tile_nv::<2>(t),
        _ => tile_nv::<3>(t),
    }
}

/// Lanes of vector `v` that hold one of the tile's `cols` columns.
fn lanes(cols: usize, v: usize) -> __mmask16 {
    let valid = cols.saturating_sub(16 * v).min(16);
    ((1u32 << valid) - 1) as __mmask16
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_nv<const NV: usize>(t: &Tile<'_>) {
    let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes(t.cols, v));
    let acc = sums::<NV>(t, &masks);
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        for (v, &sum) in acc_row.iter().enumerate() {
            let dst = t.c.add(i * t.ldc + 16 * v);
            // C + sum: what sgemm's fma(1, C, sum) rounds to.
            let mut out = if t.add {
                _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], dst), sum)
            } else {
                sum
            };
            if let Some(keep) = &t.keep {
                let bits = t.keep_bits(keep, i, 16 * v, 16) as __mmask16;
                out = _mm512_maskz_mul_ps(bits, out, _mm512_set1_ps(keep.scale));
            }
            _mm512_mask_storeu_ps(dst, masks[v], out);
        }
    }
}

/// The tile's sums over the depth. Its own function so that the accumulators are only ever
/// indexed by constants (the store loop above stops at a run-time row count): otherwise the
/// compiler keeps the array in memory and stores all 24 vectors at every depth step.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sums<const NV: usize>(t: &Tile<'_>, masks: &[__mmask16; NV]) -> [[__m512; NV]; MR] {
    // Rows past the tile's end read row 0 (their sums are dropped): no branch in the loop.
    let rows: [*const f32; MR] = std::array::from_fn(|i| {
        if i < t.rows {
            t.a.add(i * t.a_row)
        } else {
            t.a
        }
    });
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let mut b = t.b;
    for p in 0..t.depth {
        let off = p * t.a_step;
        let bv: [__m512; NV] =
            std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], b.add(16 * v)));
        for (row, acc_row) in rows.iter().zip(acc.iter_mut()) {
            let a = _mm512_set1_ps(*row.add(off));
            for (acc_v, &b_v) in acc_row.iter_mut().zip(&bv) {
                *acc_v = _mm512_fmadd_ps(a, b_v, *acc_v);
            }
        }
        // b streamed row by row from memory (reduce: rows of G a row stride apart, which the
        // hardware prefetcher does not follow): ask for the row PREFETCH_ROWS ahead now.
        let ahead = b.wrapping_add(PREFETCH_ROWS * t.ldb);
        for v in 0..NV {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(16 * v) as *const i8);
        }
        b = b.add(t.ldb);
    }
    acc
}
