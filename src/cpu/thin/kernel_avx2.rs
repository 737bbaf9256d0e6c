//! AVX2 + FMA thin-product tile: up to 6 rows x 16 columns (two ymm vectors per row) of C in
//! 12 accumulators (16 ymm registers: 12 + 2 for b + 1 broadcast); masked loads and stores at
//! the right edge. The same loop as the AVX-512 tile.

use super::Tile;
use std::arch::x86_64::*;

/// Rows of C per tile.
pub const MR: usize = 6;
/// Columns of C per tile (two ymm vectors).
pub const WIDTH: usize = 16;

/// Rows of b ahead that each depth step prefetches (~a memory latency of depth steps).
const PREFETCH_ROWS: usize = 16;

/// Computes one tile (see [`Tile`]).
///
/// # Safety
/// The CPU supports AVX2 and FMA; the tile's pointers cover its rows, columns and depth.
pub unsafe fn tile(t: &Tile<'_>) {
    if t.cols <= 8 {
        tile_nv::<1>(t)
    } else {
        tile_nv::<2>(t)
    }
}

/// All-ones in the lanes of vector `v` that hold one of the tile's `cols` columns.
#[target_feature(enable = "avx2")]
unsafe fn lanes(cols: usize, v: usize) -> __m256i {
    let valid = cols.saturating_sub(8 * v).min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(valid),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// All-ones in the lanes whose bit of `bits` is set (bit l for lane l).
#[target_feature(enable = "avx2")]
unsafe fn bit_lanes(bits: u32) -> __m256 {
    let lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    let set = _mm256_and_si256(_mm256_set1_epi32(bits as i32), lane_bit);
    _mm256_castsi256_ps(_mm256_cmpeq_epi32(set, lane_bit))
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_nv<const NV: usize>(t: &Tile<'_>) {
    let masks: [__m256i; NV] = std::array::from_fn(|v| lanes(t.cols, v));
    let acc = sums::<NV>(t, &masks);
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        for (v, &sum) in acc_row.iter().enumerate() {
            let dst = t.c.add(i * t.ldc + 8 * v);
            // C + sum: what sgemm's fma(1, C, sum) rounds to.
            let mut out = if t.add {
                _mm256_add_ps(_mm256_maskload_ps(dst, masks[v]), sum)
            } else {
                sum
            };
            if let Some(keep) = &t.keep {
                let kept = bit_lanes(t.keep_bits(keep, i, 8 * v, 8));
                out = _mm256_and_ps(_mm256_mul_ps(out, _mm256_set1_ps(keep.scale)), kept);
            }
            _mm256_maskstore_ps(dst, masks[v], out);
        }
    }
}

/// The tile's sums over the depth, in a function of their own for the reason given in the
/// AVX-512 tile (accumulators indexed by constants only stay in registers).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sums<const NV: usize>(t: &Tile<'_>, masks: &[__m256i; NV]) -> [[__m256; NV]; MR] {
    // Rows past the tile's end read row 0 (their sums are dropped): no branch in the loop.
    let rows: [*const f32; MR] = std::array::from_fn(|i| {
        if i < t.rows {
            t.a.add(i * t.a_row)
        } else {
            t.a
        }
    });
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let mut b = t.b;
    for p in 0..t.depth {
        let off = p * t.a_step;
        let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_maskload_ps(b.add(8 * v), masks[v]));
        for (row, acc_row) in rows.iter().zip(acc.iter_mut()) {
            let a = _mm256_set1_ps(*row.add(off));
            for (acc_v, &b_v) in acc_row.iter_mut().zip(&bv) {
                *acc_v = _mm256_fmadd_ps(a, b_v, *acc_v);
            }
        }
        // b streamed row by row from memory (reduce: rows of G a row stride apart, which the
        // hardware prefetcher does not follow): ask for the row PREFETCH_ROWS ahead now.
        let ahead = b.wrapping_add(PREFETCH_ROWS * t.ldb);
        for v in 0..NV {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(8 * v) as *const i8);
        }
        b = b.add(t.ldb);
    }
    acc
}
