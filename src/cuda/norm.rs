//! Launch wrappers for `ptx/norm.cu`: RMSNorm forward and backward, the contract of
//! `Tape::rms_norm` (src/autograd/norm.rs) on (rows, D) device buffers.
//!
//! The weight gradient is reduced deterministically without atomics: rows are split into at most
//! [`DW_PARTS`] contiguous ranges whose column sums land in a (parts, D) scratch buffer, then
//! added in part order. The split depends only on `rows`, so a given shape always gives the same
//! bits.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::device::{driver_error, CudaBuffer, CudaDevice, PtxModule};
use super::launch::{check_i32, check_len, rows_config, BLOCK_THREADS};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "norm",
    text: include_str!("../../ptx/norm.ptx"),
};

/// Most row ranges of the weight-gradient reduction (enough blocks to fill a GPU at D = 576).
pub const DW_PARTS: usize = 128;

/// (rows, D) of `x` given the weight length D; checks the buffers that share that shape.
fn rows_of(op: &'static str, x: &CudaBuffer, d: usize) -> Result<usize> {
    if d == 0 || !x.len().is_multiple_of(d) {
        return Err(Error::shape(
            op,
            format!(
                "x has {} elements, not a whole number of rows of weight's D = {d}",
                x.len()
            ),
        ));
    }
    check_i32(op, "rows", x.len() / d)?;
    Ok(x.len() / d)
}

/// `y = x * inv_rms * w` per row; writes `inv_rms` (rows) for the backward pass.
pub fn rms_norm_forward(
    dev: &CudaDevice,
    x: &CudaBuffer,
    w: &CudaBuffer,
    eps: f32,
    y: &mut CudaBuffer,
    inv_rms: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::rms_norm_forward";
    for buf in [x, w, &*y, &*inv_rms] {
        dev.check_owns(OP, buf)?;
    }
    let d = w.len();
    let rows = rows_of(OP, x, d)?;
    check_len(OP, "y", x.len(), y.len())?;
    check_len(OP, "inv_rms", rows, inv_rms.len())?;
    if rows == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, "rms_norm_forward")?;
    let d_arg = d as i32;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.slice)
        .arg(&w.slice)
        .arg(&mut y.slice)
        .arg(&mut inv_rms.slice);
    args.arg(&d_arg).arg(&eps);
    // SAFETY: rms_norm_forward(x, w, y, inv_rms, int d, float eps); one block per row, lengths
    // checked above.
    unsafe { args.launch(rows_config(rows)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `dx` and `dw` of RMSNorm given the output gradient `g`; either may be skipped (`None`).
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward(
    dev: &CudaDevice,
    x: &CudaBuffer,
    w: &CudaBuffer,
    inv_rms: &CudaBuffer,
    g: &CudaBuffer,
    dx: Option<&mut CudaBuffer>,
    dw: Option<&mut CudaBuffer>,
) -> Result<()> {
    const OP: &str = "cuda::rms_norm_backward";
    for buf in [x, w, inv_rms, g] {
        dev.check_owns(OP, buf)?;
    }
    let d = w.len();
    let rows = rows_of(OP, x, d)?;
    check_len(OP, "g", x.len(), g.len())?;
    check_len(OP, "inv_rms", rows, inv_rms.len())?;
    if let Some(dx) = dx {
        dev.check_owns(OP, dx)?;
        check_len(OP, "dx", x.len(), dx.len())?;
        if rows > 0 {
            let func = dev.function(PTX, "rms_norm_backward_dx")?;
            let d_arg = d as i32;
            let mut args = dev.stream().launch_builder(&func);
            args.arg(&x.slice)
                .arg(&w.slice)
                .arg(&g.slice)
                .arg(&inv_rms.slice);
            args.arg(&mut dx.slice).arg(&d_arg);
            // SAFETY: rms_norm_backward_dx(x, w, g, inv_rms, dx, int d); lengths checked.
            unsafe { args.launch(rows_config(rows)) }.map_err(|e| driver_error(OP, e))?;
        }
    }
    if let Some(dw) = dw {
        dev.check_owns(OP, dw)?;
        check_len(OP, "dw", d, dw.len())?;
        rms_norm_dw(dev, x, inv_rms, g, rows, d, dw)?;
    }
    Ok(())
}

/// The two passes of the weight gradient (see the module docs).
fn rms_norm_dw(
    dev: &CudaDevice,
    x: &CudaBuffer,
    inv_rms: &CudaBuffer,
    g: &CudaBuffer,
    rows: usize,
    d: usize,
    dw: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::rms_norm_backward (dw)";
    // With no rows the parts are empty and pass 2 writes zeros, as the CPU's sum does.
    let parts = rows.clamp(1, DW_PARTS);
    let rows_per_part = rows.div_ceil(parts).max(1);
    let mut partial = dev.zeros(parts * d)?; // (parts, D)
    let col_blocks = d.div_ceil(BLOCK_THREADS as usize) as u32;
    let (rows_arg, d_arg, rpp_arg, parts_arg) =
        (rows as i32, d as i32, rows_per_part as i32, parts as i32);
    let pass1 = dev.function(PTX, "rms_norm_backward_dw_partial")?;
    let mut args = dev.stream().launch_builder(&pass1);
    args.arg(&x.slice)
        .arg(&g.slice)
        .arg(&inv_rms.slice)
        .arg(&mut partial.slice);
    args.arg(&rows_arg).arg(&d_arg).arg(&rpp_arg);
    let cfg = LaunchConfig {
        grid_dim: (parts as u32, col_blocks, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: rms_norm_backward_dw_partial(x, g, inv_rms, partial, rows, d, rows_per_part);
    // partial holds parts * d floats, parts * rows_per_part >= rows.
    unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;
    let pass2 = dev.function(PTX, "rms_norm_backward_dw_reduce")?;
    let mut args = dev.stream().launch_builder(&pass2);
    args.arg(&partial.slice)
        .arg(&mut dw.slice)
        .arg(&parts_arg)
        .arg(&d_arg);
    let cfg = LaunchConfig {
        grid_dim: (col_blocks, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: rms_norm_backward_dw_reduce(partial, dw, parts, d); dw holds d floats.
    unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}
