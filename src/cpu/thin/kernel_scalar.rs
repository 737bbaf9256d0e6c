//! Portable thin-product tile (any target; `ILREC_NO_SIMD=1` or `Isa::Scalar`): the readable
//! reference for the SIMD tiles. `acc += a * b` is a multiply then an add (two roundings), as in
//! the portable GEMM kernel, so the results match `sgemm` with the same `Isa`.

use super::{KeepAt, Tile};

/// Rows of C per tile.
pub const MR: usize = 4;
/// Columns of C per tile.
pub const WIDTH: usize = 8;

/// `v * scale` if element (i, j) of the mask is kept, else 0; `v` without a mask.
fn dropped(keep: Option<&KeepAt<'_>>, (i, j): (usize, usize), v: f32) -> f32 {
    match keep {
        None => v,
        Some(k) if k.bits(i, j, 1) == 1 => v * k.keep.scale,
        Some(_) => 0.0,
    }
}

/// Computes one tile (see [`Tile`]).
///
/// # Safety
/// The tile's pointers cover its rows, columns and depth.
pub unsafe fn tile(t: &Tile<'_>) {
    let mut acc = [[0.0f32; WIDTH]; MR];
    let (a_keep, b_keep) = (t.a_keep.as_ref(), t.b_keep.as_ref());
    for (i, acc_row) in acc.iter_mut().enumerate().take(t.rows) {
        let a = t.a.add(i * t.a_row);
        for p in 0..t.depth {
            let a_ip = dropped(a_keep, (i, p), *a.add(p * t.a_step));
            let b = std::slice::from_raw_parts(t.b.add(p * t.ldb), t.cols);
            for (col, (acc_v, &b_v)) in acc_row.iter_mut().zip(b).enumerate() {
                *acc_v += a_ip * dropped(b_keep, (p, col), b_v);
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        let c = std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), t.cols);
        for (col, (c_v, &sum)) in c.iter_mut().zip(acc_row).enumerate() {
            let out = dropped(t.c_keep.as_ref(), (i, col), sum);
            *c_v = if t.add { *c_v + out } else { out };
        }
    }
}
