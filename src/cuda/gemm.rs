//! Launch wrappers for `ptx/gemm.cu`: the contract of [`crate::cpu::gemm::sgemm_batched`]
//! (row-major, `C = alpha * op(A) . op(B) + beta * C`, `beta == 0` overwrites C), on the GPU.
//!
//! - [`gemm_bf16`]  bf16 A and B, f32 accumulation and C, on tensor cores (mma.sync m16n8k16,
//!   ldmatrix, cp.async double buffering; tiles 128 x 128 x 32, 8 warps of 64 x 32; sm_80+).
//!   Leading dimensions and batch strides of A and B must be multiples of 8 elements.
//! - [`gemm_f32`]   plain f32 SIMT GEMM (16 x 16 tiles), the checking path.
//! - [`cast_f32_to_bf16`]  round-to-nearest-even conversion of f32 activations to bf16 operands.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::device::{driver_error, CudaBf16Buffer, CudaBuffer, CudaDevice, PtxModule};
use super::launch::{check_i32, check_len, elementwise_config};
use crate::{Error, Result};

/// The compiled kernels, embedded at build time (regenerate with `bash ptx/build.sh`).
pub const PTX: PtxModule = PtxModule {
    name: "gemm",
    text: include_str!("../../ptx/gemm.ptx"),
};

/// Block tile of the tensor-core kernels (`BM`, `BN` in gemm.cu) and their thread count.
const TC_TILE_M: usize = 128;
const TC_TILE_N: usize = 128;
const TC_THREADS: u32 = 256;
/// Tile edge of the SIMT kernel (`SIMT_TILE`).
const SIMT_TILE: usize = 16;

/// The shape of one (batched) product, as in `cpu::gemm::sgemm_batched`: item `i` of A starts at
/// element `i * stride_a`, and likewise B and C. `batch == 1` ignores the strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl GemmShape {
    /// One dense product: A (m x k or k x m), B (k x n or n x k), C (m x n), no padding.
    pub fn dense(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> GemmShape {
        let lda = if trans_a { m } else { k };
        let ldb = if trans_b { k } else { n };
        GemmShape {
            trans_a,
            trans_b,
            m,
            n,
            k,
            lda,
            ldb,
            ldc: n,
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
        }
    }

    /// `batch` dense products stored back to back.
    pub fn dense_batched(
        batch: usize,
        trans_a: bool,
        trans_b: bool,
        m: usize,
        n: usize,
        k: usize,
    ) -> GemmShape {
        GemmShape {
            batch,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            ..GemmShape::dense(trans_a, trans_b, m, n, k)
        }
    }

    /// Checks the shape against the operand lengths: every leading dimension covers its row,
    /// every item of every operand lies inside its buffer, and C items do not overlap.
    fn check(&self, op: &'static str, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
        let (a_rows, a_cols) = if self.trans_a {
            (self.k, self.m)
        } else {
            (self.m, self.k)
        };
        let (b_rows, b_cols) = if self.trans_b {
            (self.n, self.k)
        } else {
            (self.k, self.n)
        };
        let operands = [
            ("A", a_rows, a_cols, self.lda, self.stride_a, a_len),
            ("B", b_rows, b_cols, self.ldb, self.stride_b, b_len),
            ("C", self.m, self.n, self.ldc, self.stride_c, c_len),
        ];
        for (what, rows, cols, ld, stride, len) in operands {
            if ld < cols.max(1) {
                return Err(Error::shape(
                    op,
                    format!("{what}: leading dimension {ld} is less than its {cols} columns"),
                ));
            }
            let item = if rows == 0 || cols == 0 {
                0
            } else {
                (rows - 1) * ld + cols
            };
            let needed = if self.batch == 0 {
                0
            } else {
                (self.batch - 1) * stride + item
            };
            if needed > len {
                return Err(Error::shape(
                    op,
                    format!("{what} has {len} elements; {} item(s) of {rows} x {cols} (ld {ld}, stride {stride}) need {needed}", self.batch),
                ));
            }
            if what == "C" && self.batch > 1 && stride < item {
                return Err(Error::shape(
                    op,
                    format!(
                        "stride_c = {stride} makes C items overlap (each needs {item} elements)"
                    ),
                ));
            }
        }
        for (what, v) in [("m", self.m), ("n", self.n), ("k", self.k)] {
            check_i32(op, what, v)?;
        }
        if self.batch > 65_535 {
            return Err(Error::shape(
                op,
                format!(
                    "batch {} exceeds the grid's 65535 items; split the call",
                    self.batch
                ),
            ));
        }
        Ok(())
    }

    /// True when there is nothing to compute or write.
    fn is_empty(&self) -> bool {
        self.batch == 0 || self.m == 0 || self.n == 0
    }

    /// Leading dimensions and batch strides as the kernels' `long long` arguments:
    /// (lda, stride_a, ldb, stride_b, ldc, stride_c).
    fn dims(&self) -> [i64; 6] {
        [
            self.lda as i64,
            self.stride_a as i64,
            self.ldb as i64,
            self.stride_b as i64,
            self.ldc as i64,
            self.stride_c as i64,
        ]
    }
}

/// Fails unless the tensor-core path's alignment holds: every row and item of A and B starts on
/// a 16-byte boundary (cp.async copies 16 bytes at a time).
fn check_bf16_alignment(op: &'static str, s: &GemmShape) -> Result<()> {
    let strides = [("lda", s.lda), ("ldb", s.ldb)];
    let batch_strides = [("stride_a", s.stride_a), ("stride_b", s.stride_b)];
    let checked = strides
        .iter()
        .chain(if s.batch > 1 { &batch_strides[..] } else { &[] });
    for (what, v) in checked {
        if v % 8 != 0 {
            return Err(Error::shape(
                op,
                format!("{what} = {v} is not a multiple of 8 bf16 elements (16 bytes), which the tensor-core path needs for cp.async; pad the operand or use gemm_f32"),
            ));
        }
    }
    Ok(())
}

/// `C = alpha * op(A) . op(B) + beta * C` with bf16 A, B and f32 C, on tensor cores.
pub fn gemm_bf16(
    dev: &CudaDevice,
    shape: &GemmShape,
    alpha: f32,
    a: &CudaBf16Buffer,
    b: &CudaBf16Buffer,
    beta: f32,
    c: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::gemm_bf16";
    dev.check_owns(OP, a)?;
    dev.check_owns(OP, b)?;
    dev.check_owns(OP, c)?;
    shape.check(OP, a.len(), b.len(), c.len())?;
    check_bf16_alignment(OP, shape)?;
    if shape.is_empty() {
        return Ok(());
    }
    let kernel = match (shape.trans_a, shape.trans_b) {
        (false, false) => "gemm_bf16_nn",
        (false, true) => "gemm_bf16_nt",
        (true, false) => "gemm_bf16_tn",
        (true, true) => "gemm_bf16_tt",
    };
    let func = dev.function(PTX, kernel)?;
    let (m, n, k) = (shape.m as i32, shape.n as i32, shape.k as i32);
    let [lda, sa, ldb, sb, ldc, sc] = shape.dims();
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&m).arg(&n).arg(&k).arg(&alpha);
    args.arg(&a.slice).arg(&lda).arg(&sa);
    args.arg(&b.slice).arg(&ldb).arg(&sb);
    args.arg(&beta).arg(&mut c.slice).arg(&ldc).arg(&sc);
    let cfg = LaunchConfig {
        grid_dim: (
            shape.n.div_ceil(TC_TILE_N) as u32,
            shape.m.div_ceil(TC_TILE_M) as u32,
            shape.batch as u32,
        ),
        block_dim: (TC_THREADS, 1, 1),
        shared_mem_bytes: 0, // 40 KB static
    };
    // SAFETY: the argument list matches GEMM_BF16_ENTRY in gemm.cu (int m, n, k; float alpha;
    // a, lda, stride_a; b, ldb, stride_b; float beta; c, ldc, stride_c); every item of every
    // operand lies inside its buffer (GemmShape::check) and rows are 16-byte aligned.
    unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `C = alpha * op(A) . op(B) + beta * C` in f32 (SIMT, no tensor cores).
pub fn gemm_f32(
    dev: &CudaDevice,
    shape: &GemmShape,
    alpha: f32,
    a: &CudaBuffer,
    b: &CudaBuffer,
    beta: f32,
    c: &mut CudaBuffer,
) -> Result<()> {
    const OP: &str = "cuda::gemm_f32";
    for buf in [a, b, &*c] {
        dev.check_owns(OP, buf)?;
    }
    shape.check(OP, a.len(), b.len(), c.len())?;
    if shape.is_empty() {
        return Ok(());
    }
    let func = dev.function(PTX, "gemm_f32")?;
    let (ta, tb) = (shape.trans_a as i32, shape.trans_b as i32);
    let (m, n, k) = (shape.m as i32, shape.n as i32, shape.k as i32);
    let [lda, sa, ldb, sb, ldc, sc] = shape.dims();
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&ta).arg(&tb).arg(&m).arg(&n).arg(&k).arg(&alpha);
    args.arg(&a.slice).arg(&lda).arg(&sa);
    args.arg(&b.slice).arg(&ldb).arg(&sb);
    args.arg(&beta).arg(&mut c.slice).arg(&ldc).arg(&sc);
    let cfg = LaunchConfig {
        grid_dim: (
            shape.n.div_ceil(SIMT_TILE) as u32,
            shape.m.div_ceil(SIMT_TILE) as u32,
            shape.batch as u32,
        ),
        block_dim: (SIMT_TILE as u32, SIMT_TILE as u32, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: matches gemm_f32 in gemm.cu; operand extents checked by GemmShape::check.
    unsafe { args.launch(cfg) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}

/// `out[i] = bf16(x[i])`, round to nearest even (as `half::bf16::from_f32`).
pub fn cast_f32_to_bf16(dev: &CudaDevice, x: &CudaBuffer, out: &mut CudaBf16Buffer) -> Result<()> {
    const OP: &str = "cuda::cast_f32_to_bf16";
    dev.check_owns(OP, x)?;
    dev.check_owns(OP, out)?;
    check_len(OP, "out", x.len(), out.len())?;
    if x.is_empty() {
        return Ok(());
    }
    let func = dev.function(PTX, "cast_f32_to_bf16")?;
    let n = x.len() as u64;
    let mut args = dev.stream().launch_builder(&func);
    args.arg(&x.slice).arg(&mut out.slice).arg(&n);
    // SAFETY: cast_f32_to_bf16(const float*, unsigned short*, unsigned long long); same lengths.
    unsafe { args.launch(elementwise_config(x.len())) }.map_err(|e| driver_error(OP, e))?;
    Ok(())
}
