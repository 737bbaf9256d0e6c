//! Portable microkernel (any target; also forced with `ILREC_NO_SIMD=1` or `Isa::Scalar`).
//! A 4x8 register tile in plain Rust: the readable reference for what the SIMD kernels do.

/// Rows of C per call.
pub const MR: usize = 4;
/// Columns of C per call.
pub const NR: usize = 8;

/// C[0..4, 0..8] (row stride `ldc`) = alpha * (packed A sliver . packed B sliver) + beta * C.
/// `beta == 0` overwrites C without reading it.
///
/// # Safety
/// `a` holds `kc * MR` floats, `b` holds `kc * NR` floats, and `c` points at a 4 x 8 tile whose
/// rows are `ldc` floats apart, all valid for the call.
pub unsafe fn kernel_4x8(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    alpha: f32,
    beta: f32,
) {
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * NR);
    let mut acc = [[0.0f32; NR]; MR];
    for (a_col, b_row) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (acc_row, &a_val) in acc.iter_mut().zip(a_col) {
            for (acc_val, &b_val) in acc_row.iter_mut().zip(b_row) {
                *acc_val += a_val * b_val;
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let c_row = std::slice::from_raw_parts_mut(c.add(r * ldc), NR);
        for (c_val, &acc_val) in c_row.iter_mut().zip(acc_row) {
            *c_val = if beta == 0.0 {
                alpha * acc_val
            } else {
                alpha * acc_val + beta * *c_val
            };
        }
    }
}
