// GEMM kernels: the CUDA side of src/cpu/gemm (the CPU sgemm is the reference;
// tests/gemm_parity.rs checks each kernel against it).
//
//   C[m,n] = alpha * op(A)[m,k] . op(B)[k,n] + beta * C        (row-major, like cpu::gemm)
//
// op(A) is A (stored m x k, row stride lda) or A^T (stored k x m); likewise B. beta == 0
// overwrites C (whatever C held, NaN included, is ignored). Batched: blockIdx.z selects item z,
// which starts at A + z*stride_a, B + z*stride_b, C + z*stride_c (element strides).
//
// Two paths:
// 1. gemm_bf16_{nn,nt,tn,tt}: bf16 inputs, f32 accumulation and output, on tensor cores
//    (mma.sync.m16n8k16, sm_80+). Tiles:
//      block tile  BM x BN x BK = 128 x 128 x 32, 256 threads = 8 warps as 2 (m) x 4 (n)
//      warp tile   64 x 32 = 4 x 4 mma tiles of 16 x 8, i.e. 64 f32 accumulators per thread
//      pipeline    2 shared-memory stages: cp.async fills stage s^1 while the warps compute
//                  on stage s (double buffering), 2 x (A tile + B tile) = 40 KB of shared memory
//    Operands go from shared memory to registers with ldmatrix; a transposed operand is kept in
//    shared memory in its global layout and read with ldmatrix.trans, so global loads are always
//    16-byte cp.async copies of contiguous rows. Requirements (checked by src/cuda/gemm.rs): the
//    leading dimensions and batch strides of A and B are multiples of 8 elements (16 bytes).
//    Edges (m, n, k not multiples of the tile) are zero-filled by cp.async's src-size operand.
// 2. gemm_f32: plain f32 SIMT GEMM, 16 x 16 tiles, one output per thread, k in ascending order
//    with fmaf. Slow; it exists to check the tensor-core path and the tape on the GPU in f32.
//
// Also: cast_f32_to_bf16 (round to nearest even, like half::bf16::from_f32), the conversion
// that produces the tensor-core operands from f32 activations.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

typedef unsigned short bf16_bits;  // bf16 as its 16-bit pattern (the Rust side uses u16)

#define BM 128
#define BN 128
#define BK 32
#define GEMM_THREADS 256
// Shared-memory row strides (elements). Rows of a tile are padded by 8 bf16 (16 bytes) so that
// the 8 row addresses of one ldmatrix fall in different banks, and every row stays 16-byte
// aligned for cp.async.
#define KROW (BK + 8)   // a tile stored (rows, BK): A untransposed, B transposed
#define MROW (BM + 8)   // a tile stored (BK, BM) or (BK, BN): A transposed, B untransposed
#define TILE_ELEMS (BM * KROW > BK * MROW ? BM * KROW : BK * MROW)

// ---------------------------------------------------------------------------------------------
// PTX wrappers

__device__ __forceinline__ unsigned smem_addr(const void* p) {
    return (unsigned)__cvta_generic_to_shared(p);
}

// Copies `src_bytes` (0..16) bytes from global to shared memory and zero-fills the rest of 16.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 b16 matrices; lane l gives the row address of row (l % 8) of matrix (l / 8).
__device__ __forceinline__ void ldmatrix_x4(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned r[4], const void* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

// d += a (16x16, row) . b (16x8, col), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_bf16_16816(float d[4], const unsigned a[4], unsigned b0,
                                               unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ---------------------------------------------------------------------------------------------
// Global -> shared tile loads

// Copies a (ROWS, COLS) tile of a row-major matrix (row stride ld) whose top-left element is
// (row0, col0) into shared memory with row stride SROW, zero-filling outside rows x cols.
template <int ROWS, int COLS, int SROW>
__device__ __forceinline__ void load_tile(bf16_bits* dst, const bf16_bits* src, long long ld,
                                          int row0, int col0, int rows, int cols) {
    constexpr int CHUNKS_PER_ROW = COLS / 8;  // 16-byte chunks
    constexpr int CHUNKS = ROWS * CHUNKS_PER_ROW;
    for (int c = threadIdx.x; c < CHUNKS; c += GEMM_THREADS) {
        int r = c / CHUNKS_PER_ROW, col = (c % CHUNKS_PER_ROW) * 8;
        int grow = row0 + r, gcol = col0 + col;
        int valid = (grow < rows) ? min(max(cols - gcol, 0), 8) : 0;
        // With nothing to read, point at the matrix start: cp.async reads 0 bytes of it.
        const bf16_bits* p = valid > 0 ? src + grow * ld + gcol : src;
        cp_async_16(dst + r * SROW + col, p, valid * 2);
    }
}

// The A tile of block row m0 at depth k0: (BM, BK) from A (m x k), or (BK, BM) from A^T's
// storage (k x m).
template <bool TRANS_A>
__device__ __forceinline__ void load_a(bf16_bits* dst, const bf16_bits* a, long long lda, int m0,
                                       int k0, int m, int k) {
    if (TRANS_A) load_tile<BK, BM, MROW>(dst, a, lda, k0, m0, k, m);
    else         load_tile<BM, BK, KROW>(dst, a, lda, m0, k0, m, k);
}

// The B tile of block column n0 at depth k0: (BK, BN) from B (k x n), or (BN, BK) from B^T's
// storage (n x k).
template <bool TRANS_B>
__device__ __forceinline__ void load_b(bf16_bits* dst, const bf16_bits* b, long long ldb, int n0,
                                       int k0, int n, int k) {
    if (TRANS_B) load_tile<BN, BK, KROW>(dst, b, ldb, n0, k0, n, k);
    else         load_tile<BK, BN, MROW>(dst, b, ldb, k0, n0, k, n);
}

// ---------------------------------------------------------------------------------------------
// Shared -> register fragments (PTX ISA "Matrix fragments for mma.m16n8k16")

// A fragment of the 16x16 sub-tile at (mi, kk) of the block tile. Untransposed storage (m, k):
// matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15) in fragment order a0..a3, lane l addresses row
// l % 16 at k offset (l / 16) * 8. Transposed storage (k, m): the same matrices read with
// .trans, lane l addresses k row (l % 8) + (l / 16) * 8 at m offset ((l / 8) % 2) * 8.
template <bool TRANS_A>
__device__ __forceinline__ void load_a_frag(unsigned frag[4], const bf16_bits* tile, int mi,
                                            int kk) {
    int lane = threadIdx.x % 32;
    if (TRANS_A) {
        int krow = kk + (lane % 8) + (lane / 16) * 8, mcol = mi + ((lane / 8) % 2) * 8;
        ldmatrix_x4_trans(frag, tile + krow * MROW + mcol);
    } else {
        int mrow = mi + lane % 16, kcol = kk + (lane / 16) * 8;
        ldmatrix_x4(frag, tile + mrow * KROW + kcol);
    }
}

// B fragments of two adjacent 16x8 sub-tiles at (kk, ni) and (kk, ni + 8): frag[0], frag[1]
// are b0, b1 of the first, frag[2], frag[3] of the second. Transposed storage (n, k): lane l
// addresses n row (l % 8) + (l / 16) * 8 at k offset ((l / 8) % 2) * 8. Untransposed storage
// (k, n), read with .trans: lane l addresses k row (l % 8) + ((l / 8) % 2) * 8 at n offset
// (l / 16) * 8.
template <bool TRANS_B>
__device__ __forceinline__ void load_b_frags(unsigned frag[4], const bf16_bits* tile, int kk,
                                             int ni) {
    int lane = threadIdx.x % 32;
    if (TRANS_B) {
        int nrow = ni + (lane % 8) + (lane / 16) * 8, kcol = kk + ((lane / 8) % 2) * 8;
        ldmatrix_x4(frag, tile + nrow * KROW + kcol);
    } else {
        int krow = kk + (lane % 8) + ((lane / 8) % 2) * 8, ncol = ni + (lane / 16) * 8;
        ldmatrix_x4_trans(frag, tile + krow * MROW + ncol);
    }
}

// ---------------------------------------------------------------------------------------------
// The tensor-core kernel

#define WARP_M 64
#define WARP_N 32
#define MMA_M (WARP_M / 16)  // 4 mma tiles down
#define MMA_N (WARP_N / 8)   // 4 mma tiles across

// acc[i][j] += the warp's mma tiles for one BK-deep stage.
template <bool TRANS_A, bool TRANS_B>
__device__ __forceinline__ void mma_stage(float acc[MMA_M][MMA_N][4], const bf16_bits* a_tile,
                                          const bf16_bits* b_tile, int warp_m0, int warp_n0) {
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
        unsigned a_frag[MMA_M][4], b_frag[MMA_N / 2][4];
#pragma unroll
        for (int i = 0; i < MMA_M; ++i) load_a_frag<TRANS_A>(a_frag[i], a_tile, warp_m0 + 16 * i, kk);
#pragma unroll
        for (int j = 0; j < MMA_N / 2; ++j)
            load_b_frags<TRANS_B>(b_frag[j], b_tile, kk, warp_n0 + 16 * j);
#pragma unroll
        for (int i = 0; i < MMA_M; ++i)
#pragma unroll
            for (int j = 0; j < MMA_N; ++j)
                mma_bf16_16816(acc[i][j], a_frag[i], b_frag[j / 2][(j % 2) * 2],
                               b_frag[j / 2][(j % 2) * 2 + 1]);
    }
}

// C = alpha * acc + beta * C for the warp's tiles. Accumulator layout of an m16n8 tile: thread
// (group g = lane / 4, t = lane % 4) holds rows g and g + 8, columns 2t and 2t + 1.
__device__ __forceinline__ void store_c(float acc[MMA_M][MMA_N][4], float* c, long long ldc,
                                        int row0, int col0, int m, int n, float alpha,
                                        float beta) {
    int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
#pragma unroll
    for (int i = 0; i < MMA_M; ++i)
#pragma unroll
        for (int j = 0; j < MMA_N; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                int row = row0 + 16 * i + g + (e / 2) * 8, col = col0 + 8 * j + 2 * t + e % 2;
                if (row < m && col < n) {
                    float* p = c + row * ldc + col;
                    float v = alpha * acc[i][j][e];
                    *p = beta == 0.0f ? v : v + beta * *p;
                }
            }
}

template <bool TRANS_A, bool TRANS_B>
__device__ void gemm_bf16(int m, int n, int k, float alpha, const bf16_bits* a, long long lda,
                          long long stride_a, const bf16_bits* b, long long ldb,
                          long long stride_b, float beta, float* c, long long ldc,
                          long long stride_c) {
    __shared__ __align__(16) bf16_bits a_tiles[2][TILE_ELEMS];
    __shared__ __align__(16) bf16_bits b_tiles[2][TILE_ELEMS];
    a += blockIdx.z * stride_a;
    b += blockIdx.z * stride_b;
    c += blockIdx.z * stride_c;
    int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
    int warp = threadIdx.x / 32;
    int warp_m0 = (warp / 4) * WARP_M, warp_n0 = (warp % 4) * WARP_N;

    float acc[MMA_M][MMA_N][4];
#pragma unroll
    for (int i = 0; i < MMA_M; ++i)
#pragma unroll
        for (int j = 0; j < MMA_N; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

    int k_tiles = (k + BK - 1) / BK;
    if (k_tiles > 0) {
        load_a<TRANS_A>(a_tiles[0], a, lda, m0, 0, m, k);
        load_b<TRANS_B>(b_tiles[0], b, ldb, n0, 0, n, k);
        cp_async_commit();
    }
    for (int kt = 0; kt < k_tiles; ++kt) {
        int stage = kt % 2;
        if (kt + 1 < k_tiles) {
            // Stage 1 - stage was last read in iteration kt - 1, which ended with a barrier.
            load_a<TRANS_A>(a_tiles[1 - stage], a, lda, m0, (kt + 1) * BK, m, k);
            load_b<TRANS_B>(b_tiles[1 - stage], b, ldb, n0, (kt + 1) * BK, n, k);
            cp_async_commit();
            cp_async_wait<1>();  // everything but the copy just issued has landed
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();  // this stage's copies by every thread are visible
        mma_stage<TRANS_A, TRANS_B>(acc, a_tiles[stage], b_tiles[stage], warp_m0, warp_n0);
        __syncthreads();  // nobody still reads this stage when the next iteration refills it
    }
    store_c(acc, c, ldc, m0 + warp_m0, n0 + warp_n0, m, n, alpha, beta);
}

#define GEMM_BF16_ENTRY(name, ta, tb)                                                           \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                  \
        name(int m, int n, int k, float alpha, const bf16_bits* __restrict__ a, long long lda,  \
             long long stride_a, const bf16_bits* __restrict__ b, long long ldb,                \
             long long stride_b, float beta, float* __restrict__ c, long long ldc,              \
             long long stride_c) {                                                              \
        gemm_bf16<ta, tb>(m, n, k, alpha, a, lda, stride_a, b, ldb, stride_b, beta, c, ldc,     \
                          stride_c);                                                            \
    }

GEMM_BF16_ENTRY(gemm_bf16_nn, false, false)  // C = A . B      (linear forward: x . W^T is nt)
GEMM_BF16_ENTRY(gemm_bf16_nt, false, true)   // C = A . B^T
GEMM_BF16_ENTRY(gemm_bf16_tn, true, false)   // C = A^T . B    (weight gradients)
GEMM_BF16_ENTRY(gemm_bf16_tt, true, true)    // C = A^T . B^T

// ---------------------------------------------------------------------------------------------
// f32 SIMT GEMM (checking path)

#define SIMT_TILE 16

// Element (row, col) of op(X) where X is stored row-major with stride ld.
__device__ __forceinline__ float op_elem(const float* x, long long ld, bool trans, int row,
                                         int col) {
    return trans ? x[col * ld + row] : x[row * ld + col];
}

extern "C" __global__ void gemm_f32(int trans_a, int trans_b, int m, int n, int k, float alpha,
                                    const float* __restrict__ a, long long lda,
                                    long long stride_a, const float* __restrict__ b,
                                    long long ldb, long long stride_b, float beta,
                                    float* __restrict__ c, long long ldc, long long stride_c) {
    __shared__ float a_tile[SIMT_TILE][SIMT_TILE + 1];  // (m, k), +1 against bank conflicts
    __shared__ float b_tile[SIMT_TILE][SIMT_TILE + 1];  // (k, n)
    a += blockIdx.z * stride_a;
    b += blockIdx.z * stride_b;
    c += blockIdx.z * stride_c;
    int tx = threadIdx.x, ty = threadIdx.y;
    int row = blockIdx.y * SIMT_TILE + ty, col = blockIdx.x * SIMT_TILE + tx;
    float sum = 0.0f;
    for (int k0 = 0; k0 < k; k0 += SIMT_TILE) {
        int ka = k0 + tx, kb = k0 + ty;
        a_tile[ty][tx] = (row < m && ka < k) ? op_elem(a, lda, trans_a, row, ka) : 0.0f;
        b_tile[ty][tx] = (kb < k && col < n) ? op_elem(b, ldb, trans_b, kb, col) : 0.0f;
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < SIMT_TILE; ++kk) sum = fmaf(a_tile[ty][kk], b_tile[kk][tx], sum);
        __syncthreads();
    }
    if (row < m && col < n) {
        float* p = c + row * ldc + col;
        float v = alpha * sum;
        *p = beta == 0.0f ? v : v + beta * *p;
    }
}

// bf16(x), round to nearest even, as half::bf16::from_f32: add 0x7fff plus the lowest kept bit,
// then truncate; a NaN keeps its sign and top payload bits and is made quiet. (Written out
// rather than taken from cuda_bf16.h, whose headers the pip-installed toolchain lacks.)
__device__ __forceinline__ bf16_bits f32_to_bf16_rne(float x) {
    unsigned bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (bf16_bits)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (bf16_bits)(bits >> 16);
}

// out[i] = bf16(x[i])
extern "C" __global__ void cast_f32_to_bf16(const float* __restrict__ x,
                                            bf16_bits* __restrict__ out, unsigned long long n) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        out[i] = f32_to_bf16_rne(x[i]);
    }
}
