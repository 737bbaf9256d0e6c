//! CPU kernels: plain functions over slices, the readable reference for every op and the oracle
//! the CUDA kernels are tested against.

pub mod elementwise;
