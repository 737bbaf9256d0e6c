//! Launch wrappers for `ptx/softmax.cu`: softmax and log_softmax over the last axis, forward
//! and backward, the contract of `Tape::softmax` / `Tape::log_softmax` on (rows, cols) buffers.

use cudarc::driver::PushKernelArg;

use super::device::{driver_error, CudaBuffer, CudaDevice, PtxModule};
use super::launch::{check_i32, check_len, rows_config};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "softmax",
    text: include_str!("../../ptx/softmax.ptx"),
};

/// Which of the two functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftmaxKind {
    Softmax,
    LogSoftmax,
}

/// Launches `kernel(a, b, out, cols)` over `a.len() / cols` rows, after the checks.
fn launch_rows(
    dev: &CudaDevice,
    op: &'static str,
    kernel: &'static str,
    inputs: &[&CudaBuffer],
    out: &mut CudaBuffer,
    cols: usize,
) -> Result<()> {
    let n = inputs[0].len();
    for buf in inputs {
        dev.check_owns(op, *buf)?;
        check_len(op, "input", n, buf.len())?;
    }
    dev.check_owns(op, out)?;
    check_len(op, "out", n, out.len())?;
    if cols == 0 || !n.is_multiple_of(cols) {
        return Err(Error::shape(
            op,
            format!("{n} elements are not whole rows of {cols}"),
        ));
    }
    let (rows, cols_arg) = (
        check_i32(op, "rows", n / cols)? as usize,
        check_i32(op, "cols", cols)?,
    );
    if rows == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, kernel)?;
    let mut args = dev.stream().launch_builder(&func);
    for buf in inputs {
        args.arg(&buf.slice);
    }
    args.arg(&mut out.slice).arg(&cols_arg);
    // SAFETY: every kernel of softmax.cu takes (inputs..., out, int cols) with one block per
    // row; all buffers hold rows * cols floats.
    unsafe { args.launch(rows_config(rows)) }.map_err(|e| driver_error(op, e))?;
    Ok(())
}

/// `y = softmax(x)` or `log_softmax(x)` per row of `cols`.
pub fn forward(
    dev: &CudaDevice,
    kind: SoftmaxKind,
    x: &CudaBuffer,
    cols: usize,
    y: &mut CudaBuffer,
) -> Result<()> {
    let (op, kernel) = match kind {
        SoftmaxKind::Softmax => ("cuda::softmax", "softmax_forward"),
        SoftmaxKind::LogSoftmax => ("cuda::log_softmax", "log_softmax_forward"),
    };
    launch_rows(dev, op, kernel, &[x], y, cols)
}

/// `dx` from the forward output `y` and its gradient `g`.
pub fn backward(
    dev: &CudaDevice,
    kind: SoftmaxKind,
    y: &CudaBuffer,
    g: &CudaBuffer,
    cols: usize,
    dx: &mut CudaBuffer,
) -> Result<()> {
    let (op, kernel) = match kind {
        SoftmaxKind::Softmax => ("cuda::softmax_backward", "softmax_backward"),
        SoftmaxKind::LogSoftmax => ("cuda::log_softmax_backward", "log_softmax_backward"),
    };
    launch_rows(dev, op, kernel, &[y, g], dx, cols)
}
