//! Launch wrappers for `ptx/optim.cu`: the contracts of src/optim.rs on device buffers.
//!
//! - [`adamw_step`]: one AdamW update of a parameter (f32 master weights and moments, in place)
//!   that also writes the bf16 copy used by the compute path; operation for operation the CPU's
//!   `adamw_update`, with the bias corrections computed here on the host in f64 as there.
//! - [`grad_norm`]: global L2 norm over several gradient buffers, two fixed-order passes in f64.
//! - [`clip_grad_norm`]: the norm, then `g *= min(1, max_norm / (norm + 1e-6))` with the factor
//!   computed on the device (no host round trip); [`scale_grads`] for a host scalar.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::device::{driver_error, CudaBf16Buffer, CudaBuffer, CudaDevice, PtxModule};
use super::launch::{check_len, elementwise_config, BLOCK_THREADS};
use crate::optim::AdamWConfig;
use crate::Result;

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "optim",
    text: include_str!("../../ptx/optim.ptx"),
};

/// Elements per block of the norm's first pass (fixed, so the summation order depends only on
/// each buffer's length).
pub const NORM_CHUNK: usize = 16_384;

/// One parameter's AdamW state on the device.
pub struct AdamWBuffers<'a> {
    /// f32 master weights, updated in place.
    pub param: &'a mut CudaBuffer,
    pub grad: &'a CudaBuffer,
    pub m: &'a mut CudaBuffer,
    pub v: &'a mut CudaBuffer,
    /// bf16 copy of the updated weights (written).
    pub param_bf16: &'a mut CudaBf16Buffer,
}

/// The AdamW update for this parameter's `step` (1-based: steps it has received a gradient),
/// at learning rate `lr`, decayed by `weight_decay` (0 for the no-decay set).
pub fn adamw_step(
    dev: &CudaDevice,
    bufs: AdamWBuffers,
    c: &AdamWConfig,
    lr: f32,
    weight_decay: f32,
    step: u64,
) -> Result<()> {
    const OP: &str = "cuda::adamw_step";
    let n = bufs.param.len();
    for (what, len) in [
        ("grad", bufs.grad.len()),
        ("m", bufs.m.len()),
        ("v", bufs.v.len()),
    ] {
        check_len(OP, what, n, len)?;
    }
    check_len(OP, "param_bf16", n, bufs.param_bf16.len())?;
    dev.check_owns(OP, bufs.param)?;
    dev.check_owns(OP, bufs.grad)?;
    dev.check_owns(OP, bufs.m)?;
    dev.check_owns(OP, bufs.v)?;
    dev.check_owns(OP, bufs.param_bf16)?;
    if n == 0 {
        return Ok(());
    }
    // As src/optim.rs adamw_update: bias corrections in f64, then f32.
    let t = step.min(i32::MAX as u64) as i32;
    let bias1 = 1.0 - (c.beta1 as f64).powi(t);
    let bias2_sqrt = (1.0 - (c.beta2 as f64).powi(t)).sqrt() as f32;
    let step_size = (lr as f64 / bias1) as f32;
    let keep = 1.0 - lr * weight_decay;
    let (one_m_b1, one_m_b2) = (1.0 - c.beta1, 1.0 - c.beta2);
    let func = dev.function(PTX, "adamw_step")?;
    let n_arg = n as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&mut bufs.param.slice).arg(&bufs.grad.slice);
    args.arg(&mut bufs.m.slice)
        .arg(&mut bufs.v.slice)
        .arg(&mut bufs.param_bf16.slice);
    args.arg(&n_arg)
        .arg(&keep)
        .arg(&one_m_b1)
        .arg(&c.beta2)
        .arg(&one_m_b2);
    args.arg(&bias2_sqrt).arg(&step_size).arg(&c.eps);
    // SAFETY: adamw_step(p, g, m, v, p_bf16, n, keep, one_m_b1, beta2, one_m_b2, bias2_sqrt,
    // step_size, eps); all five buffers hold n elements (checked).
    unsafe { args.launch(elementwise_config(n)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `norm[0]` = sqrt(sum of squares of every element of every buffer in `grads`), f64 sums.
pub fn grad_norm(dev: &CudaDevice, grads: &[&CudaBuffer], norm: &mut CudaBuffer) -> Result<()> {
    const OP: &str = "cuda::grad_norm";
    dev.check_owns(OP, norm)?;
    check_len(OP, "norm", 1, norm.len())?;
    let parts: usize = grads.iter().map(|g| g.len().div_ceil(NORM_CHUNK)).sum();
    let mut partial = dev
        .stream()
        .alloc_zeros::<f64>(parts.max(1))
        .map_err(|e| driver_error(OP, e))?;
    let pass1 = dev.function(PTX, "sum_squares_partial")?;
    let mut offset = 0u64;
    for g in grads {
        dev.check_owns(OP, *g)?;
        let blocks = g.len().div_ceil(NORM_CHUNK);
        if blocks == 0 {
            continue;
        }
        let (n_arg, chunk_arg) = (g.len() as u64, NORM_CHUNK as u64);
        let mut args = dev.stream().launch_builder(&pass1);
        args.arg(&g.slice)
            .arg(&n_arg)
            .arg(&chunk_arg)
            .arg(&mut partial)
            .arg(&offset);
        let cfg = LaunchConfig {
            grid_dim: (blocks as u32, 1, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        // SAFETY: sum_squares_partial(x, n, chunk, partial, offset); partial holds `parts`
        // doubles and this buffer's blocks land at offset .. offset + blocks <= parts.
        unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;
        offset += blocks as u64;
    }
    let pass2 = dev.function(PTX, "sqrt_of_sum")?;
    let parts_arg = parts as u64;
    let mut args = dev.stream().launch_builder(&pass2);
    args.arg(&partial).arg(&parts_arg).arg(&mut norm.slice);
    let one_block = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: sqrt_of_sum(partial, parts, norm); norm holds 1 float.
    unsafe { args.launch(one_block) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// Computes the global norm into `norm` and scales every gradient by
/// `min(1, max_norm / (norm + 1e-6))` (left alone when the norm is not finite), as
/// `optim::clip_grad_norm`.
pub fn clip_grad_norm(
    dev: &CudaDevice,
    grads: &mut [&mut CudaBuffer],
    max_norm: f32,
    norm: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::clip_grad_norm";
    {
        let shared: Vec<&CudaBuffer> = grads.iter().map(|g| &**g).collect();
        grad_norm(dev, &shared, norm)?;
    }
    let mut factor = dev.zeros(1)?;
    let func = dev.function(PTX, "clip_factor")?;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&norm.slice).arg(&max_norm).arg(&mut factor.slice);
    // SAFETY: clip_factor(norm, float max_norm, factor); both hold 1 float.
    unsafe { args.launch(LaunchConfig::for_num_elems(1)) }.map_err(|e| driver_error(OP, e))?;
    for g in grads.iter_mut() {
        scale_by_device_scalar(dev, g, &factor)?;
    }
    Ok(())
}

/// `x *= factor[0]`, the factor a 1-element device buffer.
pub fn scale_by_device_scalar(
    dev: &CudaDevice,
    x: &mut CudaBuffer,
    factor: &CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::scale_in_place";
    dev.check_owns(OP, x)?;
    dev.check_owns(OP, factor)?;
    check_len(OP, "factor", 1, factor.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let func = dev.function(PTX, "scale_in_place")?;
    let cfg = elementwise_config(x.len());
    let n = x.len() as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&mut x.slice).arg(&factor.slice).arg(&n);
    // SAFETY: scale_in_place(x, factor, n); x holds n floats, factor 1.
    unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// Multiplies every gradient by the host scalar `s` (gradient accumulation), as
/// `optim::scale_grads`.
pub fn scale_grads(dev: &CudaDevice, grads: &mut [&mut CudaBuffer], s: f32) -> Result<()> {
    let factor = dev.upload(&[s])?;
    for g in grads.iter_mut() {
        scale_by_device_scalar(dev, g, &factor)?;
    }
    Ok(())
}
