//! Launch helpers shared by the kernel families after `elementwise`: length checks that return
//! errors (a device buffer cannot be checked by a later reader), and the two grid shapes the
//! kernels use (a grid-stride loop over elements, one block per row).

use cudarc::driver::LaunchConfig;

use crate::{Error, Result};

/// Threads per block of the elementwise and row kernels: a multiple of the 32-thread warp that
/// matches `BLOCK` in the .cu files (their block reductions assume it).
pub(crate) const BLOCK_THREADS: u32 = 256;

/// Upper bound on blocks of a grid-stride loop (any length is still covered).
const MAX_BLOCKS: usize = 65_535;

/// Returns a shape error unless `found == expected`.
pub(crate) fn check_len(op: &'static str, what: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        return Ok(());
    }
    Err(Error::shape(
        op,
        format!("{what} has {found} elements, expected {expected}"),
    ))
}

/// Returns a shape error unless `value` fits the kernels' 32-bit `int` sizes.
pub(crate) fn check_i32(op: &'static str, what: &str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::shape(
            op,
            format!("{what} = {value} exceeds the kernels' 32-bit size limit (2^31 - 1)"),
        )
    })
}

/// One thread per element, at most `MAX_BLOCKS` blocks, then grid-stride.
pub(crate) fn elementwise_config(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK_THREADS as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of `BLOCK_THREADS` per row (rows <= 2^31 - 1, checked by the caller).
pub(crate) fn rows_config(rows: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}
