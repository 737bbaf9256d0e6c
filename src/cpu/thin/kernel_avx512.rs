//! AVX-512F thin-product tile: up to 8 rows x 48 columns (three zmm vectors per row) of C in
//! 24 accumulators; each depth step loads a row of b (1-3 vectors, masked at the right edge)
//! and broadcasts 8 values of a. Nothing is packed: a and b are read where they lie.

use super::{KeepAt, Tile};
use std::arch::x86_64::*;

/// Rows of C per tile.
pub const MR: usize = 8;
/// Columns of C per tile (three zmm vectors).
pub const WIDTH: usize = 48;

/// Rows of b ahead that each depth step prefetches (~a memory latency of depth steps).
const PREFETCH_ROWS: usize = 16;

/// Depth of the piece of a dropped `a` copied at a time (MR x STAGE floats: 8 KB, in L1).
const STAGE: usize = 256;

type Acc<const NV: usize> = [[__m512; NV]; MR];

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
    let zero = [[_mm512_setzero_ps(); NV]; MR];
    let acc = match t.a_keep {
        None => sums(t, &masks, zero),
        Some(keep) => dropped_a_sums(t, keep, &masks),
    };
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        let kept_row = t.c_keep.map(|keep| keep.bits(i, 0, t.cols));
        for (v, &sum) in acc_row.iter().enumerate() {
            let dst = t.c.add(i * t.ldc + 16 * v);
            let mut out = sum;
            if let (Some(keep), Some(kept)) = (&t.c_keep, kept_row) {
                let bits = (kept >> (16 * v)) as __mmask16;
                out = _mm512_maskz_mul_ps(bits, out, _mm512_set1_ps(keep.keep.scale));
            }
            if t.add {
                // C + sum: what sgemm's fma(1, C, sum) rounds to.
                out = _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], dst), out);
            }
            _mm512_mask_storeu_ps(dst, masks[v], out);
        }
    }
}

/// [`sums`] with b read plainly or through its mask.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sums<const NV: usize>(t: &Tile<'_>, masks: &[__mmask16; NV], init: Acc<NV>) -> Acc<NV> {
    match t.b_keep {
        None => sums_with::<NV, false>(t, masks, init),
        Some(_) => sums_with::<NV, true>(t, masks, init),
    }
}

/// `init` plus the tile's sums over the depth. Its own function so that the accumulators are
/// only ever indexed by constants (the store loop above stops at a run-time row count):
/// otherwise the compiler keeps the array in memory and stores all 24 vectors at every step.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn sums_with<const NV: usize, const B_KEEP: bool>(
    t: &Tile<'_>,
    masks: &[__mmask16; NV],
    init: Acc<NV>,
) -> Acc<NV> {
    // Rows past the tile's end read row 0 (their sums are dropped): no branch in the loop.
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
        let mut bv: [__m512; NV] =
            std::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], b.add(16 * v)));
        if let (true, Some(keep)) = (B_KEEP, &t.b_keep) {
            let kept = keep.bits(p, 0, t.cols);
            for (v, b_v) in bv.iter_mut().enumerate() {
                let bits = (kept >> (16 * v)) as __mmask16;
                *b_v = _mm512_maskz_mul_ps(bits, *b_v, _mm512_set1_ps(keep.keep.scale));
            }
        }
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

/// The sums when a is read through a dropout mask: a piece of STAGE depth steps of the tile's
/// rows is copied masked (`x * scale` or 0, 16 at a time) into a buffer, and the sums go on
/// over the buffer, in the same order.
#[target_feature(enable = "avx512f")]
unsafe fn dropped_a_sums<const NV: usize>(
    t: &Tile<'_>,
    keep: KeepAt<'_>,
    masks: &[__mmask16; NV],
) -> Acc<NV> {
    let mut buf = [0.0f32; MR * STAGE];
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
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
/// leaves them (`x * scale` or 0).
///
/// Whole runs of 64 values take their mask in one read and shift it out per vector with
/// constant shifts (four loads, masked multiplies and stores); the rest, up to 63 values, go
/// 16 at a time with masked loads. Done 16 at a time throughout (the first form), the copy cost
/// about as much as the multiply-adds the values then feed: the masked project was ~1.5x the
/// unmasked one.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn stage_dropped_row(
    src: *const f32,
    dst: *mut f32,
    (keep, i, p0): (&KeepAt<'_>, usize, usize),
    depth: usize,
) {
    let scale = _mm512_set1_ps(keep.keep.scale);
    let whole = depth / 64 * 64;
    for q0 in (0..whole).step_by(64) {
        let run = keep.bits(i, p0 + q0, 64);
        for v in 0..4 {
            let values = _mm512_loadu_ps(src.add(q0 + 16 * v));
            let kept = (run >> (16 * v)) as __mmask16;
            _mm512_storeu_ps(
                dst.add(q0 + 16 * v),
                _mm512_maskz_mul_ps(kept, values, scale),
            );
        }
    }
    if whole == depth {
        return;
    }
    // The mask of the last values, zero past the piece's end.
    let run = keep.bits(i, p0 + whole, depth - whole);
    for q in (whole..depth).step_by(16) {
        let n = (depth - q).min(16);
        let load = ((1u32 << n) - 1) as __mmask16;
        let values = _mm512_maskz_loadu_ps(load, src.add(q));
        let kept = (run >> (q - whole)) as __mmask16;
        _mm512_storeu_ps(dst.add(q), _mm512_maskz_mul_ps(kept, values, scale));
    }
}
