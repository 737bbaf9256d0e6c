//! AVX2 + FMA thin-product tile: up to 6 rows x 16 columns (two ymm vectors per row) of C in
//! 12 accumulators (16 ymm registers: 12 + 2 for b + 1 broadcast); masked loads and stores at
//! the right edge. The same loops as the AVX-512 tile (see there for the why of each part).

use super::{KeepAt, Tile};
use std::arch::x86_64::*;

/// Rows of C per tile.
pub const MR: usize = 6;
/// Columns of C per tile (two ymm vectors).
pub const WIDTH: usize = 16;

/// Rows of b ahead that each depth step prefetches.
const PREFETCH_ROWS: usize = 16;

/// Depth of the piece of a dropped `a` copied at a time.
const STAGE: usize = 256;

type Acc<const NV: usize> = [[__m256; NV]; MR];

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

/// All-ones in the first `valid` lanes.
#[target_feature(enable = "avx2")]
unsafe fn first_lanes(valid: usize) -> __m256i {
    let valid = valid.min(8) as i32;
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

/// `values * scale` where `bits` keeps a lane, else 0 (the dropout's values).
#[target_feature(enable = "avx2")]
unsafe fn dropped(values: __m256, bits: u32, scale: f32) -> __m256 {
    _mm256_and_ps(
        _mm256_mul_ps(values, _mm256_set1_ps(scale)),
        bit_lanes(bits),
    )
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_nv<const NV: usize>(t: &Tile<'_>) {
    let masks: [__m256i; NV] = std::array::from_fn(|v| first_lanes(t.cols.saturating_sub(8 * v)));
    let zero = [[_mm256_setzero_ps(); NV]; MR];
    let acc = match t.a_keep {
        None => sums(t, &masks, zero),
        Some(keep) => dropped_a_sums(t, keep, &masks),
    };
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        for (v, &sum) in acc_row.iter().enumerate() {
            let dst = t.c.add(i * t.ldc + 8 * v);
            let mut out = sum;
            if let Some(keep) = &t.c_keep {
                out = dropped(out, keep.bits(i, 8 * v, 8) as u32, keep.keep.scale);
            }
            // Whole vectors of C are read and written plainly (a masked store is slow, on AMD
            // especially); only the right edge's are masked.
            let whole = t.cols >= 8 * (v + 1);
            if t.add {
                // C + sum: what sgemm's fma(1, C, sum) rounds to.
                let c = if whole {
                    _mm256_loadu_ps(dst)
                } else {
                    _mm256_maskload_ps(dst, masks[v])
                };
                out = _mm256_add_ps(c, out);
            }
            if whole {
                _mm256_storeu_ps(dst, out);
            } else {
                _mm256_maskstore_ps(dst, masks[v], out);
            }
        }
    }
}

/// [`sums_with`] with b read plainly or through its mask.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sums<const NV: usize>(t: &Tile<'_>, masks: &[__m256i; NV], init: Acc<NV>) -> Acc<NV> {
    // A tile of whole vectors loads b plainly: a masked load is two operations on Intel.
    let full = t.cols == 8 * NV;
    match (t.b_keep, full) {
        (None, true) => sums_with::<NV, false, true>(t, masks, init),
        (None, false) => sums_with::<NV, false, false>(t, masks, init),
        (Some(_), true) => sums_with::<NV, true, true>(t, masks, init),
        (Some(_), false) => sums_with::<NV, true, false>(t, masks, init),
    }
}

/// `init` plus the tile's sums over the depth (accumulators indexed by constants only).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sums_with<const NV: usize, const B_KEEP: bool, const FULL: bool>(
    t: &Tile<'_>,
    masks: &[__m256i; NV],
    init: Acc<NV>,
) -> Acc<NV> {
    let rows: [*const f32; MR] = std::array::from_fn(|i| {
        if i < t.rows {
            t.a.add(i * t.a_row)
        } else {
            t.a
        }
    });
    let mut acc = init;
    let mut b = t.b;
    for p in 0..t.depth {
        let off = p * t.a_step;
        let mut bv: [__m256; NV] = std::array::from_fn(|v| {
            if FULL {
                _mm256_loadu_ps(b.add(8 * v))
            } else {
                _mm256_maskload_ps(b.add(8 * v), masks[v])
            }
        });
        if let (true, Some(keep)) = (B_KEEP, &t.b_keep) {
            // The bits per vector here: one run per row, shifted out as the AVX-512 tile does,
            // made the masked reduce 5-10% slower with AVX2 (`bench adapter`, reduce_da).
            for (v, b_v) in bv.iter_mut().enumerate() {
                *b_v = dropped(*b_v, keep.bits(p, 8 * v, 8) as u32, keep.keep.scale);
            }
        }
        for (row, acc_row) in rows.iter().zip(acc.iter_mut()) {
            let a = _mm256_set1_ps(*row.add(off));
            for (acc_v, &b_v) in acc_row.iter_mut().zip(&bv) {
                *acc_v = _mm256_fmadd_ps(a, b_v, *acc_v);
            }
        }
        let ahead = b.wrapping_add(PREFETCH_ROWS * t.ldb);
        for v in 0..NV {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(8 * v) as *const i8);
        }
        b = b.add(t.ldb);
    }
    acc
}

/// The sums when a is read through a dropout mask: pieces of the tile's rows copied masked
/// into a buffer, 8 values at a time, the sums going on over the buffer in the same order.
#[target_feature(enable = "avx2,fma")]
unsafe fn dropped_a_sums<const NV: usize>(
    t: &Tile<'_>,
    keep: KeepAt<'_>,
    masks: &[__m256i; NV],
) -> Acc<NV> {
    let mut buf = [0.0f32; MR * STAGE];
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    for p0 in (0..t.depth).step_by(STAGE) {
        let depth = STAGE.min(t.depth - p0);
        for i in 0..t.rows {
            // a's rows are contiguous (a_step 1) wherever it carries a mask.
            let src = t.a.add(i * t.a_row + p0);
            let dst = buf.as_mut_ptr().add(i * STAGE);
            stage_dropped_row(src, dst, (&keep, i, p0), depth);
        }
        let piece = Tile {
            depth,
            a: buf.as_ptr(),
            a_row: STAGE,
            a_step: 1,
            b: t.b.add(p0 * t.ldb),
            b_keep: t.b_keep.map(|k| k.down(p0)),
            ..*t
        };
        acc = sums(&piece, masks, acc);
    }
    acc
}

/// Copies `depth` values of row i of a, from depth p0 (at `src`), into `dst` as the dropout
/// leaves them (`x * scale` or 0): whole runs of 64 with one mask read and plain loads, the
/// rest 8 at a time with masked loads (see the AVX-512 tile's `stage_dropped_row`).
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn stage_dropped_row(
    src: *const f32,
    dst: *mut f32,
    (keep, i, p0): (&KeepAt<'_>, usize, usize),
    depth: usize,
) {
    let scale = keep.keep.scale;
    let whole = depth / 64 * 64;
    for q0 in (0..whole).step_by(64) {
        let run = keep.bits(i, p0 + q0, 64);
        for v in 0..8 {
            let values = _mm256_loadu_ps(src.add(q0 + 8 * v));
            let out = dropped(values, (run >> (8 * v)) as u32, scale);
            _mm256_storeu_ps(dst.add(q0 + 8 * v), out);
        }
    }
    if whole == depth {
        return;
    }
    // The mask of the last values, zero past the piece's end.
    let run = keep.bits(i, p0 + whole, depth - whole);
    for q in (whole..depth).step_by(8) {
        let values = _mm256_maskload_ps(src.add(q), first_lanes(depth - q));
        let out = dropped(values, (run >> (q - whole)) as u32, scale);
        _mm256_storeu_ps(dst.add(q), out);
    }
}
