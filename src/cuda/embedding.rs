//! Launch wrappers for `ptx/embedding.cu`: the contract of `Tape::embedding`
//! (src/autograd/embedding.rs). Backward is a deterministic segmented sum by row ownership (no
//! sort, no atomics): the same bits as the CPU's scatter-add.

use cudarc::driver::PushKernelArg;

use super::device::{driver_error, CudaBuffer, CudaDevice, CudaI32Buffer, PtxModule};
use super::launch::{check_i32, check_len, rows_config};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "embedding",
    text: include_str!("../../ptx/embedding.ptx"),
};

/// Token ids on the device, each checked against `vocab` when uploaded.
pub struct DeviceIds {
    ids: CudaI32Buffer,
    vocab: usize,
}

impl DeviceIds {
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no ids.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Uploads token ids after checking each against the vocabulary (on the host, where ids come
/// from: a device kernel could not report a bad id as an error value).
pub fn upload_ids(dev: &CudaDevice, ids: &[u32], vocab: usize) -> Result<DeviceIds> {
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(Error::Index {
            op: "cuda::embedding",
            index: bad as i64,
            bound: vocab,
        });
    }
    check_i32("cuda::embedding", "vocab", vocab)?;
    check_i32("cuda::embedding", "number of ids", ids.len())?;
    let as_i32: Vec<i32> = ids.iter().map(|&id| id as i32).collect();
    Ok(DeviceIds {
        ids: dev.upload_i32(&as_i32)?,
        vocab,
    })
}

/// `out[i, :] = weight[ids[i], :]`; weight (V, dim), out (ids, dim). `ids` from [`upload_ids`].
pub fn embedding_forward(
    dev: &CudaDevice,
    weight: &CudaBuffer,
    dim: usize,
    ids: &DeviceIds,
    out: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::embedding_forward";
    dev.check_owns(OP, weight)?;
    dev.check_owns(OP, &ids.ids)?;
    dev.check_owns(OP, out)?;
    check_dims(OP, weight, dim, ids.vocab)?;
    check_len(OP, "out", ids.len() * dim, out.len())?;
    if ids.is_empty() || dim == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, "embedding_forward")?;
    let dim_arg = dim as i32;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&weight.slice)
        .arg(&ids.ids.slice)
        .arg(&mut out.slice)
        .arg(&dim_arg);
    // SAFETY: embedding_forward(weight, ids, out, int dim); one block per id, ids < V checked
    // by upload_ids, out holds ids * dim floats.
    unsafe { args.launch(rows_config(ids.len())) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `dweight` (V, dim) = the sum of the `grad_out` rows (ids, dim) of every position holding
/// each id; rows of ids that do not occur are zero.
pub fn embedding_backward(
    dev: &CudaDevice,
    grad_out: &CudaBuffer,
    dim: usize,
    ids: &DeviceIds,
    dweight: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::embedding_backward";
    dev.check_owns(OP, grad_out)?;
    dev.check_owns(OP, &ids.ids)?;
    dev.check_owns(OP, dweight)?;
    check_dims(OP, dweight, dim, ids.vocab)?;
    check_len(OP, "grad_out", ids.len() * dim, grad_out.len())?;
    dev.stream()
        .memset_zeros(&mut dweight.slice)
        .map_err(|e| driver_error(OP, e))?;
    if ids.is_empty() || dim == 0 {
        return Ok(());
    }
    let func = dev.function(PTX, "embedding_backward")?;
    let (n_arg, dim_arg) = (ids.len() as i32, dim as i32);
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&grad_out.slice)
        .arg(&ids.ids.slice)
        .arg(&mut dweight.slice);
    args.arg(&n_arg).arg(&dim_arg);
    // SAFETY: embedding_backward(grad_out, ids, dweight, int n_ids, int dim); one block per
    // id, every id < V (upload_ids), dweight holds V * dim floats.
    unsafe { args.launch(rows_config(ids.len())) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// A (V, dim) table with the V the ids were checked against.
fn check_dims(op: &'static str, table: &CudaBuffer, dim: usize, vocab: usize) -> Result<()> {
    if dim == 0 || table.len() != vocab * dim {
        return Err(Error::shape(
            op,
            format!(
                "table has {} elements, expected (V, dim) = ({vocab}, {dim})",
                table.len()
            ),
        ));
    }
    check_i32(op, "dim", dim)?;
    Ok(())
}
