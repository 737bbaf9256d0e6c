//! Portable thin-product tile (any target; `ILREC_NO_SIMD=1` or `Isa::Scalar`): the readable
//! reference for the SIMD tiles. `acc += a * b` is a multiply then an add (two roundings), as in
//! the portable GEMM kernel, so the results match `sgemm` with the same `Isa`.

use super::Tile;

/// Rows of C per tile.
pub const MR: usize = 4;
/// Columns of C per tile.
pub const WIDTH: usize = 8;

/// Computes one tile (see [`Tile`]).
///
/// # Safety
/// The tile's pointers cover its rows, columns and depth.
pub unsafe fn tile(t: &Tile<'_>) {
    let mut acc = [[0.0f32; WIDTH]; MR];
    for (i, acc_row) in acc.iter_mut().enumerate().take(t.rows) {
        let a = t.a.add(i * t.a_row);
        for p in 0..t.depth {
            let a_ip = *a.add(p * t.a_step);
            let b = std::slice::from_raw_parts(t.b.add(p * t.ldb), t.cols);
            for (acc_v, &b_v) in acc_row.iter_mut().zip(b) {
                *acc_v += a_ip * b_v;
            }
        }
    }
    for (i, acc_row) in acc.iter().enumerate().take(t.rows) {
        let c = std::slice::from_raw_parts_mut(t.c.add(i * t.ldc), t.cols);
        let bits = t
            .keep
            .as_ref()
            .map(|k| (t.keep_bits(k, i, 0, t.cols), k.scale));
        for (col, (c_v, &sum)) in c.iter_mut().zip(acc_row).enumerate() {
            let out = if t.add { *c_v + sum } else { sum };
            *c_v = match bits {
                Some((bits, scale)) if (bits >> col) & 1 == 1 => out * scale,
                Some(_) => 0.0,
                None => out,
            };
        }
    }
}
