//! Launch wrappers for the kernels in `ptx/elementwise.cu`: the same contracts as
//! [`crate::cpu::elementwise`], on [`CudaBuffer`]s. Unlike the CPU kernels, a length mismatch
//! here is returned as an error: buffers on the device cannot be checked by a later reader.
//!
//! Launches are asynchronous: a wrapper returns once the kernel is queued on the device's stream;
//! [`CudaBuffer::download`] (or [`CudaDevice::synchronize`]) waits for it.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::device::{driver_error, CudaBuffer, CudaDevice, PtxModule};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "elementwise",
    text: include_str!("../../ptx/elementwise.ptx"),
};

/// Threads per block: a multiple of the 32-thread warp, small enough for full occupancy on
/// sm_80/sm_90 with these register-light kernels.
const BLOCK_THREADS: u32 = 256;
/// Upper bound on blocks: the kernels are grid-stride loops, so a bounded grid covers any length
/// while keeping each thread busy with several elements on very large buffers.
const MAX_BLOCKS: u32 = 65_535;

/// One thread per element up to `MAX_BLOCKS` blocks, then grid-stride.
fn launch_config(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK_THREADS as usize).min(MAX_BLOCKS as usize) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Returns a shape error unless `found == expected`.
fn check_len(op: &'static str, what: &str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        return Ok(());
    }
    Err(Error::shape(
        op,
        format!("{what} has {found} elements, expected {expected}"),
    ))
}

/// Checks a binary op's operands: same device, same length.
fn check_binary(
    dev: &CudaDevice,
    op: &'static str,
    a: &CudaBuffer,
    b: &CudaBuffer,
    out: &CudaBuffer,
) -> Result<()> {
    for buf in [a, b, out] {
        dev.check_owns(op, buf)?;
    }
    check_len(op, "b", a.len(), b.len())?;
    check_len(op, "out", a.len(), out.len())
}

/// Launches `kernel(a, b, out, n)`.
fn launch_binary(
    dev: &CudaDevice,
    op: &'static str,
    kernel: &'static str,
    a: &CudaBuffer,
    b: &CudaBuffer,
    out: &mut CudaBuffer,
) -> Result<()> {
    check_binary(dev, op, a, b, out)?;
    let n = a.len();
    if n == 0 {
        return Ok(()); // a zero-block grid is an invalid launch
    }
    let func = dev.function(PTX, kernel)?;
    let n_arg = n as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&a.slice)
        .arg(&b.slice)
        .arg(&mut out.slice)
        .arg(&n_arg);
    // SAFETY: `kernel` takes (const float*, const float*, float*, unsigned long long) in
    // ptx/elementwise.cu, and all three buffers were checked to hold `n` floats.
    unsafe { args.launch(launch_config(n)) }.map_err(|e| driver_error(op, e))?;
    Ok(())
}

/// `out = a + b`
pub fn add(dev: &CudaDevice, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
    launch_binary(dev, "cuda::add", "add_f32", a, b, out)
}

/// `out = a - b`
pub fn sub(dev: &CudaDevice, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
    launch_binary(dev, "cuda::sub", "sub_f32", a, b, out)
}

/// `out = a * b`
pub fn mul(dev: &CudaDevice, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
    launch_binary(dev, "cuda::mul", "mul_f32", a, b, out)
}

/// `out = a / b`
pub fn div(dev: &CudaDevice, a: &CudaBuffer, b: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
    launch_binary(dev, "cuda::div", "div_f32", a, b, out)
}

/// `out = s * a`
pub fn scale(dev: &CudaDevice, a: &CudaBuffer, s: f32, out: &mut CudaBuffer) -> Result<()> {
    const OP: &str = "cuda::scale";
    dev.check_owns(OP, a)?;
    dev.check_owns(OP, out)?;
    check_len(OP, "out", a.len(), out.len())?;
    let n = a.len();
    if n == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, "scale_f32")?;
    let n_arg = n as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&a.slice).arg(&s).arg(&mut out.slice).arg(&n_arg);
    // SAFETY: scale_f32(const float*, float, float*, unsigned long long); lengths checked.
    unsafe { args.launch(launch_config(n)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `out = x * sigmoid(x)`
pub fn silu(dev: &CudaDevice, x: &CudaBuffer, out: &mut CudaBuffer) -> Result<()> {
    const OP: &str = "cuda::silu";
    dev.check_owns(OP, x)?;
    dev.check_owns(OP, out)?;
    check_len(OP, "out", x.len(), out.len())?;
    let n = x.len();
    if n == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, "silu_f32")?;
    let n_arg = n as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.slice).arg(&mut out.slice).arg(&n_arg);
    // SAFETY: silu_f32(const float*, float*, unsigned long long); lengths checked.
    unsafe { args.launch(launch_config(n)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `grad_in = grad_out * silu'(x)`
pub fn silu_backward(
    dev: &CudaDevice,
    x: &CudaBuffer,
    grad_out: &CudaBuffer,
    grad_in: &mut CudaBuffer,
) -> Result<()> {
    // Same argument layout as a binary op: (x, grad_out) -> grad_in.
    launch_binary(
        dev,
        "cuda::silu_backward",
        "silu_backward_f32",
        x,
        grad_out,
        grad_in,
    )
}

/// `y += alpha * x`
pub fn axpy(dev: &CudaDevice, alpha: f32, x: &CudaBuffer, y: &mut CudaBuffer) -> Result<()> {
    const OP: &str = "cuda::axpy";
    dev.check_owns(OP, x)?;
    dev.check_owns(OP, y)?;
    check_len(OP, "y", x.len(), y.len())?;
    let n = x.len();
    if n == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, "axpy_f32")?;
    let n_arg = n as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&alpha).arg(&x.slice).arg(&mut y.slice).arg(&n_arg);
    // SAFETY: axpy_f32(float, const float*, float*, unsigned long long); lengths checked.
    unsafe { args.launch(launch_config(n)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}
