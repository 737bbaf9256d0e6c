//! CPU kernels: plain functions over slices (no tape, no shapes beyond the sizes passed). They are
//! the readable reference for every op and the oracle the CUDA kernels are tested against.
//!
//! - [`elementwise`]: add, mul, scale, silu, axpy, ... over slices.
//! - [`gemm`]: single-precision matrix multiply (row-major, optional transposes, batched).

pub mod elementwise;
pub mod gemm;
