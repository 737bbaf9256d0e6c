//! CUDA back end (feature `cuda`): our own kernels, written in CUDA C in `ptx/*.cu`, compiled
//! ahead of time to PTX (committed, embedded here with `include_str!`) and launched through
//! cudarc's driver API. No nvcc or CUDA toolkit is needed to build; at run time only the
//! driver (libcuda) is, and its absence is a normal state reported as a value, never a panic.
//!
//! - [`device`]       opening a GPU, its stream, the PTX module cache, [`CudaBuffer`]
//! - [`elementwise`]  launch wrappers for `ptx/elementwise.cu`
//!
//! Each wrapper has the same contract as its CPU twin in [`crate::cpu`], which is the reference
//! the parity tests (tests/elementwise_parity.rs) check it against.

pub mod device;
pub mod elementwise;

pub use device::{CudaBuffer, CudaDevice, Probe, PtxModule};
