//! Launch wrappers for `ptx/cross_entropy.cu`: mean cross-entropy fused over the vocabulary,
//! the contract of `Tape::cross_entropy` (src/autograd/loss.rs): targets of -100 are ignored,
//! the loss is the mean over the other rows, softmax is never materialised.
//!
//! The targets are validated on the host (the same errors as the CPU) and uploaded once; the
//! forward leaves the loss and the per-row log-sum-exp on the device, and the backward reads the
//! loss gradient from a device scalar, so a training step needs no host round trip here.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::device::{driver_error, CudaBuffer, CudaDevice, CudaI32Buffer, PtxModule};
use super::launch::{check_i32, check_len, rows_config, BLOCK_THREADS};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "cross_entropy",
    text: include_str!("../../ptx/cross_entropy.ptx"),
};

/// The target that marks a row as ignored (Hugging Face's `ignore_index`, as in
/// src/autograd/loss.rs).
const IGNORE_INDEX: i64 = -100;

/// What the forward pass keeps for the backward pass.
pub struct CrossEntropySaved {
    targets: CudaI32Buffer,
    /// (rows) log-sum-exp of each row (NaN for ignored rows).
    pub lse: CudaBuffer,
    rows: usize,
    vocab: usize,
    /// Rows whose target is not ignored (the mean's denominator).
    pub count: usize,
}

/// Checks targets as the CPU does (one per row, in range or -100, at least one not ignored) and
/// returns the number of counted rows.
fn count_targets(op: &'static str, targets: &[i64], rows: usize, vocab: usize) -> Result<usize> {
    check_len(op, "targets", rows, targets.len())?;
    if let Some(&bad) = targets
        .iter()
        .find(|&&t| t != IGNORE_INDEX && (t < 0 || t as u64 >= vocab as u64))
    {
        return Err(Error::Index {
            op,
            index: bad,
            bound: vocab,
        });
    }
    let count = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
    if count == 0 {
        return Err(Error::config(
            format!("{op}: all {rows} targets are {IGNORE_INDEX} (ignored), so the mean loss over them is undefined"),
            "make sure each batch has at least one supervised token",
        ));
    }
    Ok(count)
}

/// `loss[0]` = mean over counted rows of `logsumexp(logits_r) - logits_r[target_r]`;
/// logits (rows, vocab).
pub fn cross_entropy_forward(
    dev: &CudaDevice,
    logits: &CudaBuffer,
    vocab: usize,
    targets: &[i64],
    loss: &mut CudaBuffer,
) -> Result<CrossEntropySaved> {
    const OP: &str = "cuda::cross_entropy_forward";
    dev.check_owns(OP, logits)?;
    dev.check_owns(OP, loss)?;
    check_len(OP, "loss", 1, loss.len())?;
    if vocab == 0 || !logits.len().is_multiple_of(vocab) {
        return Err(Error::shape(
            OP,
            format!("logits ({}) are not whole rows of {vocab}", logits.len()),
        ));
    }
    let rows = logits.len() / vocab;
    check_i32(OP, "rows", rows)?;
    let count = count_targets(OP, targets, rows, vocab)?;
    let as_i32: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
    check_i32(OP, "vocab", vocab)?;
    let targets = dev.upload_i32(&as_i32)?;
    let mut row_loss = dev.zeros(rows)?; // (rows)
    let mut lse = dev.zeros(rows)?;
    let func = dev.function(PTX, "cross_entropy_forward")?;
    let vocab_arg = vocab as i32;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&logits.slice)
        .arg(&targets.slice)
        .arg(&mut lse.slice);
    args.arg(&mut row_loss.slice).arg(&vocab_arg);
    // SAFETY: cross_entropy_forward(logits, targets, lse, row_loss, int vocab); one block per
    // row, targets in range or -100 (checked), every buffer sized rows (or rows * vocab).
    unsafe { args.launch(rows_config(rows)) }.map_err(|e| driver_error(OP, e))?;
    let func = dev.function(PTX, "cross_entropy_mean")?;
    let (rows_arg, count_arg) = (rows as i32, count as i32);
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&row_loss.slice)
        .arg(&rows_arg)
        .arg(&count_arg)
        .arg(&mut loss.slice);
    let one_block = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: cross_entropy_mean(row_loss, int rows, int count, loss); loss holds 1 float.
    unsafe { args.launch(one_block) }.map_err(|e| driver_error(OP, e))?;
    Ok(CrossEntropySaved {
        targets,
        lse,
        rows,
        vocab,
        count,
    })
}

/// `dx = grad_loss[0] / count * (softmax(logits) - onehot(target))` per counted row, zeros for
/// ignored rows; `grad_loss` is the loss's gradient as a 1-element device buffer.
pub fn cross_entropy_backward(
    dev: &CudaDevice,
    logits: &CudaBuffer,
    saved: &CrossEntropySaved,
    grad_loss: &CudaBuffer,
    dx: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::cross_entropy_backward";
    for buf in [logits, grad_loss, &*dx, &saved.lse] {
        dev.check_owns(OP, buf)?;
    }
    check_len(OP, "logits", saved.rows * saved.vocab, logits.len())?;
    check_len(OP, "dx", logits.len(), dx.len())?;
    check_len(OP, "grad_loss", 1, grad_loss.len())?;
    let func = dev.function(PTX, "cross_entropy_backward")?;
    let (vocab_arg, count_arg) = (saved.vocab as i32, saved.count as i32);
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&logits.slice)
        .arg(&saved.targets.slice)
        .arg(&saved.lse.slice);
    args.arg(&grad_loss.slice)
        .arg(&mut dx.slice)
        .arg(&vocab_arg)
        .arg(&count_arg);
    // SAFETY: cross_entropy_backward(logits, targets, lse, grad_loss, dx, int vocab, int
    // count); shapes are those of the forward call that made `saved`.
    unsafe { args.launch(rows_config(saved.rows)) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}
