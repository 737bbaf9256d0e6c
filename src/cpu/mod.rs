//! CPU kernels. Everything here works on plain `f32` slices (row-major, explicit leading
//! dimensions) so it can be tested against naive loops, reused by every tensor op, and serve as
//! the oracle the CUDA kernels are checked against.
//!
//! - [`pool`]         persistent thread pool: `parallel_for` over task indices, caller takes part
//! - [`gemm`]         cache-blocked single-precision GEMM (packing + AVX-512 / AVX2+FMA / scalar
//!   microkernels chosen at run time), plain and batched
//! - [`peak`]         FMA-throughput probe: the GFLOP/s ceiling the GEMM is measured against
//! - [`elementwise`]  add, mul, scale, silu, axpy, ... over slices; the one vectorisable `exp_f32`
//! - [`softmax`]      row max / sum / log-sum-exp / softmax (every softmax of the crate)
//! - [`attention`]    fused attention forward and backward (AVX2+FMA and portable builds)
//! - [`thin`]         products with one side r <= ~64 wide (LoRA adapters), without packing
//! - [`dropout`]      dropout masks drawn from a seeded stream in parallel (the serial draws)
//! - [`isa`]          CPU feature detection, capped by `ILREC_NO_AVX512` / `ILREC_NO_SIMD`
//! - [`cache`]        the CPU's L2 size as the OS reports it (GEMM blocking)
//! - [`alloc`]        malloc tuning: freed training buffers stay in the process for reuse
//! - [`par`]          fixed work splits over the pool, disjoint writes into one buffer

pub mod alloc;
pub mod attention;
pub mod cache;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod isa;
pub mod par;
pub mod peak;
pub mod pool;
pub mod softmax;
pub mod thin;
