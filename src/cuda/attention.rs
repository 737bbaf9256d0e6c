//! Launch wrappers for `ptx/attention.cu`: fused causal attention (flash-attention style, f32),
//! the contract of `Tape::attention` (src/autograd/attention.rs): grouped-query heads, a causal
//! mask that places the Tq queries at the end of the Tk keys (KV-cache decoding), a key padding
//! mask, the row log-sum-exp saved for the backward pass.
//!
//! Backward is deterministic and atomic-free: a delta pass (dO . O per row), a pass in which one
//! block owns each tile of 32 keys of a (sequence, kv head) and accumulates its dK, dV over every
//! query row of the group in a fixed order, and a separate dQ pass that owns query rows.

use cudarc::driver::{sys, DeviceRepr, LaunchConfig, PushKernelArg};

use super::device::{driver_error, CudaBuffer, CudaDevice, CudaI32Buffer, PtxModule};
use super::launch::{check_i32, check_len, BLOCK_THREADS};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "attention",
    text: include_str!("../../ptx/attention.ptx"),
};

/// Largest head dimension the kernels hold per lane (`MAX_D` in attention.cu).
pub const MAX_HEAD_DIM: usize = 128;
/// Keys per shared-memory tile, query rows per block (`KEY_TILE`, `Q_TILE`), threads per block
/// of the row kernels (`ATT_WARPS * 32`).
const KEY_TILE: usize = 32;
const Q_TILE: usize = 8;
const ROW_THREADS: u32 = 128;
/// Shared memory a kernel may use without opting in.
const DEFAULT_SMEM: usize = 48 * 1024;

/// The sizes of one attention call. q: (batch, tq, n_heads * head_dim); k, v: (batch, tk,
/// n_kv_heads * head_dim).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    pub batch: usize,
    pub tq: usize,
    pub tk: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub causal: bool,
}

/// `struct AttnDims` of attention.cu, passed by value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct AttnDims {
    tq: i32,
    tk: i32,
    hq: i32,
    hkv: i32,
    d: i32,
    causal: i32,
    has_mask: i32,
    scale: f32,
}

// SAFETY: a plain #[repr(C)] struct of 4-byte scalars, the layout of AttnDims in attention.cu.
unsafe impl DeviceRepr for AttnDims {}

/// The device inputs of one call. `key_valid`: optional (batch * tk) flags, 0 = padding key.
pub struct AttentionInputs<'a> {
    pub q: &'a CudaBuffer,
    pub k: &'a CudaBuffer,
    pub v: &'a CudaBuffer,
    pub key_valid: Option<&'a CudaI32Buffer>,
}

impl AttentionShape {
    /// Validates against the buffers; returns the kernels' dims.
    fn check(&self, op: &'static str, x: &AttentionInputs) -> Result<AttnDims> {
        let s = *self;
        if s.n_heads == 0 || s.n_kv_heads == 0 || !s.n_heads.is_multiple_of(s.n_kv_heads) {
            return Err(Error::shape(
                op,
                format!(
                    "n_heads {} must be a positive multiple of n_kv_heads {}",
                    s.n_heads, s.n_kv_heads
                ),
            ));
        }
        if s.head_dim == 0 || s.head_dim > MAX_HEAD_DIM {
            return Err(Error::shape(op, format!("head_dim {} is outside 1..={MAX_HEAD_DIM}, the range the CUDA kernels hold per lane", s.head_dim)));
        }
        if s.causal && s.tq > s.tk {
            return Err(Error::shape(
                op,
                format!(
                    "causal attention needs Tq <= Tk, found Tq {} > Tk {}",
                    s.tq, s.tk
                ),
            ));
        }
        check_len(op, "q", s.batch * s.tq * s.n_heads * s.head_dim, x.q.len())?;
        check_len(
            op,
            "k",
            s.batch * s.tk * s.n_kv_heads * s.head_dim,
            x.k.len(),
        )?;
        check_len(op, "v", x.k.len(), x.v.len())?;
        if let Some(m) = x.key_valid {
            check_len(op, "key_valid", s.batch * s.tk, m.len())?;
        }
        for (what, v) in [
            ("batch", s.batch),
            ("tq", s.tq),
            ("tk", s.tk),
            ("q", x.q.len()),
            ("k", x.k.len()),
        ] {
            check_i32(op, what, v)?;
        }
        Ok(AttnDims {
            tq: s.tq as i32,
            tk: s.tk as i32,
            hq: s.n_heads as i32,
            hkv: s.n_kv_heads as i32,
            d: s.head_dim as i32,
            causal: s.causal as i32,
            has_mask: x.key_valid.is_some() as i32,
            scale: 1.0 / (s.head_dim as f32).sqrt(),
        })
    }

    /// Grid of the row kernels (forward, dq): query tiles x heads x batch.
    fn row_config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                self.tq.div_ceil(Q_TILE) as u32,
                self.n_heads as u32,
                self.batch as u32,
            ),
            block_dim: (ROW_THREADS, 1, 1),
            shared_mem_bytes: ((2 * KEY_TILE * (self.head_dim + 1) + 2 * Q_TILE * self.head_dim)
                * 4) as u32,
        }
    }

    fn is_empty(&self) -> bool {
        self.batch == 0 || self.tq == 0 || self.tk == 0
    }
}

/// The mask argument: the flags, or a 1-element placeholder the kernels never read.
fn mask_or_placeholder<'a>(
    dev: &CudaDevice,
    m: Option<&'a CudaI32Buffer>,
    holder: &'a mut Option<CudaI32Buffer>,
) -> Result<&'a CudaI32Buffer> {
    match m {
        Some(m) => Ok(m),
        None => Ok(holder.insert(dev.upload_i32(&[1])?)),
    }
}

/// `out` (B, Tq, Hq*D) and `lse` (B, Hq, Tq; -inf for a row that sees no key).
pub fn attention_forward(
    dev: &CudaDevice,
    shape: &AttentionShape,
    x: &AttentionInputs,
    out: &mut CudaBuffer,
    lse: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::attention_forward";
    for buf in [x.q, x.k, x.v, &*out, &*lse] {
        dev.check_owns(OP, buf)?;
    }
    let dims = shape.check(OP, x)?;
    check_len(OP, "out", x.q.len(), out.len())?;
    check_len(OP, "lse", shape.batch * shape.n_heads * shape.tq, lse.len())?;
    if shape.is_empty() {
        return Ok(());
    }
    let mut holder = None;
    let mask = mask_or_placeholder(dev, x.key_valid, &mut holder)?;
    let func = dev.function(PTX, "attention_forward")?;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.q.slice)
        .arg(&x.k.slice)
        .arg(&x.v.slice)
        .arg(&mask.slice);
    args.arg(&mut out.slice).arg(&mut lse.slice).arg(&dims);
    // SAFETY: attention_forward(q, k, v, key_valid, out, lse, AttnDims); every buffer has the
    // length the shape implies (checked), head_dim <= MAX_D, shared memory sized for head_dim.
    unsafe { args.launch(shape.row_config()) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// The forward's saved results, and the output gradient.
pub struct AttentionSaved<'a> {
    pub out: &'a CudaBuffer,
    pub lse: &'a CudaBuffer,
    pub d_out: &'a CudaBuffer,
}

/// dq, dk, dv (shapes of q, k, v), each written whole.
pub struct AttentionGrads<'a> {
    pub dq: &'a mut CudaBuffer,
    pub dk: &'a mut CudaBuffer,
    pub dv: &'a mut CudaBuffer,
}

/// The three backward passes (see the module docs).
pub fn attention_backward(
    dev: &CudaDevice,
    shape: &AttentionShape,
    x: &AttentionInputs,
    saved: &AttentionSaved,
    grads: AttentionGrads,
) -> Result<()> {
    const OP: &str = "cuda::attention_backward";
    let dims = check_backward(OP, dev, shape, x, saved, &grads)?;
    let rows = shape.batch * shape.n_heads * shape.tq;
    if shape.is_empty() {
        // No query or no key: every gradient is zero.
        for g in [grads.dq, grads.dk, grads.dv] {
            dev.stream()
                .memset_zeros(&mut g.slice)
                .map_err(|e| driver_error(OP, e))?;
        }
        return Ok(());
    }
    let mut holder = None;
    let mask = mask_or_placeholder(dev, x.key_valid, &mut holder)?;
    let mut delta = dev.zeros(rows)?; // (B, Hq, Tq)
    launch_delta(dev, &dims, shape.batch, saved, rows, &mut delta)?;

    let func = dev.function(PTX, "attention_backward_dkdv")?;
    let smem = (4 * KEY_TILE * (shape.head_dim + 1) + 2 * shape.head_dim) * 4;
    if smem > DEFAULT_SMEM {
        func.set_attribute(
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .map_err(|e| {
            driver_error(
                &format!("{OP}: raising the shared-memory limit to {smem} bytes"),
                e,
            )
        })?;
    }
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.q.slice)
        .arg(&x.k.slice)
        .arg(&x.v.slice)
        .arg(&mask.slice);
    args.arg(&saved.d_out.slice)
        .arg(&saved.lse.slice)
        .arg(&delta.slice);
    args.arg(&mut grads.dk.slice)
        .arg(&mut grads.dv.slice)
        .arg(&dims);
    let cfg = LaunchConfig {
        grid_dim: (
            shape.tk.div_ceil(KEY_TILE) as u32,
            shape.n_kv_heads as u32,
            shape.batch as u32,
        ),
        block_dim: (32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    // SAFETY: attention_backward_dkdv(q, k, v, key_valid, d_out, lse, delta, dk, dv, AttnDims);
    // lengths checked, shared memory sized for head_dim (limit raised above when needed).
    unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;

    let func = dev.function(PTX, "attention_backward_dq")?;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.q.slice)
        .arg(&x.k.slice)
        .arg(&x.v.slice)
        .arg(&mask.slice);
    args.arg(&saved.d_out.slice)
        .arg(&saved.lse.slice)
        .arg(&delta.slice);
    args.arg(&mut grads.dq.slice).arg(&dims);
    // SAFETY: attention_backward_dq(q, k, v, key_valid, d_out, lse, delta, dq, AttnDims).
    unsafe { args.launch(shape.row_config()) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// Validates the backward's buffers (all on `dev`, each the length the shape implies); returns
/// the kernels' dims.
fn check_backward(
    op: &'static str,
    dev: &CudaDevice,
    shape: &AttentionShape,
    x: &AttentionInputs,
    saved: &AttentionSaved,
    grads: &AttentionGrads,
) -> Result<AttnDims> {
    for buf in [
        x.q,
        x.k,
        x.v,
        saved.out,
        saved.lse,
        saved.d_out,
        &*grads.dq,
        &*grads.dk,
        &*grads.dv,
    ] {
        dev.check_owns(op, buf)?;
    }
    let dims = shape.check(op, x)?;
    for (what, len) in [
        ("out", saved.out.len()),
        ("d_out", saved.d_out.len()),
        ("dq", grads.dq.len()),
    ] {
        check_len(op, what, x.q.len(), len)?;
    }
    check_len(op, "dk", x.k.len(), grads.dk.len())?;
    check_len(op, "dv", x.k.len(), grads.dv.len())?;
    let rows = shape.batch * shape.n_heads * shape.tq;
    check_len(op, "lse", rows, saved.lse.len())?;
    Ok(dims)
}

/// delta = dO . O per (b, h, i) row, one warp per row.
fn launch_delta(
    dev: &CudaDevice,
    dims: &AttnDims,
    batch: usize,
    saved: &AttentionSaved,
    rows: usize,
    delta: &mut CudaBuffer,
) -> Result<()> {
    let func = dev.function(PTX, "attention_backward_delta")?;
    let batch_arg = batch as i32;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&saved.out.slice)
        .arg(&saved.d_out.slice)
        .arg(&mut delta.slice);
    args.arg(dims).arg(&batch_arg);
    let warps_per_block = (BLOCK_THREADS / 32) as usize;
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(warps_per_block) as u32, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: attention_backward_delta(out, d_out, delta, AttnDims, int batch); out and d_out
    // hold rows * D floats, delta rows.
    unsafe { args.launch(cfg) }.map_err(|e| driver_error("cuda::attention_backward (delta)", e))?;
    Ok(())
}
