//! CPU kernels: plain slices in, plain slices out, no tape and no shapes beyond the sizes passed.
//! The autograd ops in `crate::autograd` call these for their heavy lifting.
//!
//! - [`gemm`]: single-precision matrix multiply (row-major, optional transposes, batched).

pub mod gemm;
