//! Launch wrapper for `ptx/rope.cu`: rotary position embedding, the contract of `Tape::rope`
//! (src/autograd/rope.rs) on a (B, T, H*D) device buffer. Backward is the same rotation with
//! `inverse = true`.

use cudarc::driver::PushKernelArg;

use super::device::{driver_error, CudaBuffer, CudaDevice, CudaI32Buffer, PtxModule};
use super::launch::{check_i32, check_len, elementwise_config};
use crate::{Error, Result};

/// The compiled kernel, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "rope",
    text: include_str!("../../ptx/rope.ptx"),
};

/// The sizes of one RoPE call: x is (batch, seq, n_heads * head_dim).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeShape {
    pub batch: usize,
    pub seq: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub theta: f32,
}

/// `out = rope(x)` (or its inverse, the backward pass, with `inverse`). `positions` holds T
/// positions shared by the batch, or B*T (one per token), as on the CPU.
pub fn rope(
    dev: &CudaDevice,
    shape: &RopeShape,
    x: &CudaBuffer,
    positions: &CudaI32Buffer,
    inverse: bool,
    out: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::rope";
    dev.check_owns(OP, x)?;
    dev.check_owns(OP, positions)?;
    dev.check_owns(OP, out)?;
    let RopeShape {
        batch,
        seq,
        n_heads,
        head_dim,
        theta,
    } = *shape;
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return Err(Error::shape(
            OP,
            format!("head_dim must be even and positive, got {head_dim}"),
        ));
    }
    if !(theta > 0.0 && theta.is_finite()) {
        return Err(Error::config(
            format!("{OP}: theta must be a positive finite number, got {theta}"),
            "use the model config's rope_theta (e.g. 10000)",
        ));
    }
    let rows = batch * seq;
    check_len(OP, "x", rows * n_heads * head_dim, x.len())?;
    check_len(OP, "out", x.len(), out.len())?;
    if positions.len() != seq && positions.len() != rows {
        return Err(Error::shape(
            OP,
            format!(
                "positions has {} entries; expected T = {seq} or B*T = {rows}",
                positions.len()
            ),
        ));
    }
    if x.is_empty() {
        return Ok(());
    }
    // Same rule as the CPU: per-token positions only when they differ from the shared form.
    let per_token = (positions.len() == rows && batch > 1) as i32;
    let func = dev.function(PTX, "rope_rotate")?;
    let (seq_arg, rows_arg) = (check_i32(OP, "seq", seq)?, rows as i64);
    let (heads_arg, d_arg) = (n_heads as i32, head_dim as i32);
    let sin_sign = if inverse { -1.0f32 } else { 1.0 };
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.slice)
        .arg(&mut out.slice)
        .arg(&positions.slice)
        .arg(&per_token);
    args.arg(&seq_arg)
        .arg(&rows_arg)
        .arg(&heads_arg)
        .arg(&d_arg)
        .arg(&theta)
        .arg(&sin_sign);
    // SAFETY: rope_rotate(x, out, positions, int per_token, int seq, long long rows, int
    // n_heads, int head_dim, float theta, float sin_sign); lengths checked above.
    unsafe { args.launch(elementwise_config(x.len() / 2)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}
