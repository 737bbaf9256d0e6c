//! CUDA back end (feature `cuda`): our own kernels, written in CUDA C in `ptx/*.cu`, compiled
//! ahead of time to PTX (committed, embedded here with `include_str!`) and launched through
//! cudarc's driver API. No nvcc or CUDA toolkit is needed to build; at run time only the
//! driver (libcuda) is, and its absence is a normal state reported as a value, never a panic.
//!
//! - [`device`]       opening a GPU, its stream, the PTX module cache, [`CudaBuffer`] (f32),
//!   [`CudaBf16Buffer`], [`CudaI32Buffer`]
//! - `launch`         length checks and grid shapes shared by the wrappers
//! - [`elementwise`]  launch wrappers for `ptx/elementwise.cu`
//! - [`gemm`]         bf16 tensor-core GEMM (nn, nt, tn, tt; batched), f32 SIMT GEMM, f32 -> bf16
//! - [`norm`]         RMSNorm forward / backward (deterministic two-pass weight gradient)
//! - [`rope`]         rotary position embedding (backward = inverse rotation)
//! - [`swiglu`]       silu(gate) * up and its gradients
//! - [`embedding`]    gather, and the backward as a sort-free, atomic-free segmented sum
//! - [`softmax`]      softmax / log_softmax forward and backward
//! - [`cross_entropy`] mean cross-entropy fused over the vocabulary (online log-sum-exp)
//! - [`optim`]        AdamW (f32 master weights, bf16 copy), gradient norm, clipping, scaling
//! - [`attention`]    fused causal attention (GQA, KV-cache offset, key padding), fwd + bwd
//!
//! Each wrapper has the same contract as its CPU twin in [`crate::cpu`] or [`crate::autograd`],
//! which is the reference the parity tests (tests/*_parity.rs) check it against. As of this
//! writing none of the kernels after `elementwise` has run on a GPU: they compile, assemble for
//! sm_80 and sm_90, and their parity tests are written, but no GPU was available (issue 19).

pub mod attention;
pub mod cross_entropy;
pub mod device;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
mod launch;
pub mod norm;
pub mod optim;
pub mod rope;
pub mod softmax;
pub mod swiglu;

pub use device::{
    CudaBf16Buffer, CudaBuffer, CudaDevice, CudaI32Buffer, OnDevice, Probe, PtxModule,
};
