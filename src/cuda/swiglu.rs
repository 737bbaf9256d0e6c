//! Launch wrappers for `ptx/swiglu.cu`: `silu(gate) * up` and its two gradients, the contract
//! of `cpu::elementwise::swiglu` / `swiglu_backward` on device buffers.

use cudarc::driver::PushKernelArg;

use super::device::{driver_error, CudaBuffer, CudaDevice, PtxModule};
use super::launch::{check_len, elementwise_config};
use crate::Result;

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "swiglu",
    text: include_str!("../../ptx/swiglu.ptx"),
};

/// `out = silu(gate) * up`
pub fn swiglu(
    dev: &CudaDevice,
    gate: &CudaBuffer,
    up: &CudaBuffer,
    out: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::swiglu";
    for buf in [gate, up, &*out] {
        dev.check_owns(OP, buf)?;
    }
    check_len(OP, "up", gate.len(), up.len())?;
    check_len(OP, "out", gate.len(), out.len())?;
    if gate.is_empty() {
        return Ok(());
    }
    let func = dev.function(PTX, "swiglu_forward")?;
    let n = gate.len() as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&gate.slice)
        .arg(&up.slice)
        .arg(&mut out.slice)
        .arg(&n);
    // SAFETY: swiglu_forward(gate, up, out, unsigned long long n); lengths checked.
    unsafe { args.launch(elementwise_config(gate.len())) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `d_gate = grad_out * up * silu'(gate)`, `d_up = grad_out * silu(gate)`
pub fn swiglu_backward(
    dev: &CudaDevice,
    gate: &CudaBuffer,
    up: &CudaBuffer,
    grad_out: &CudaBuffer,
    d_gate: &mut CudaBuffer,
    d_up: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::swiglu_backward";
    for buf in [gate, up, grad_out, &*d_gate, &*d_up] {
        dev.check_owns(OP, buf)?;
    }
    for (what, len) in [("up", up.len()), ("grad_out", grad_out.len())] {
        check_len(OP, what, gate.len(), len)?;
    }
    check_len(OP, "d_gate", gate.len(), d_gate.len())?;
    check_len(OP, "d_up", gate.len(), d_up.len())?;
    if gate.is_empty() {
        return Ok(());
    }
    let func = dev.function(PTX, "swiglu_backward")?;
    let n = gate.len() as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&gate.slice).arg(&up.slice).arg(&grad_out.slice);
    args.arg(&mut d_gate.slice).arg(&mut d_up.slice).arg(&n);
    // SAFETY: swiglu_backward(gate, up, grad_out, d_gate, d_up, n); lengths checked.
    unsafe { args.launch(elementwise_config(gate.len())) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}
