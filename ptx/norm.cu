// RMSNorm forward and backward: the CUDA side of Tape::rms_norm (src/autograd/norm.rs, the
// reference; tests/norm_parity.rs checks these kernels against it).
//
//   y = x * inv_rms * w,   inv_rms = 1 / sqrt(mean(x^2) + eps)       per row of D
//   dx = inv * g * w - x * inv^3 * mean(x * g * w)
//   dw = sum over rows of g * x * inv
//
// Forward and dx: one block of BLOCK threads per row, block reductions of reduce.cuh.
// dw: deterministic two-pass reduction, no float atomics. Pass 1 splits the rows into `parts`
// contiguous ranges; block (p, column block) sums its range row by row for its columns into
// partial[p][col]. Pass 2 adds the parts in order p = 0, 1, ... per column.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

extern "C" __global__ void __launch_bounds__(BLOCK)
    rms_norm_forward(const float* __restrict__ x, const float* __restrict__ w,
                     float* __restrict__ y, float* __restrict__ inv_rms, int d, float eps) {
    __shared__ float scratch[WARPS];
    long long row = blockIdx.x;
    const float* xr = x + row * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += BLOCK) ss += xr[i] * xr[i];
    ss = block_sum(ss, scratch);
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    if (threadIdx.x == 0) inv_rms[row] = inv;
    for (int i = threadIdx.x; i < d; i += BLOCK) y[row * d + i] = (xr[i] * inv) * w[i];
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    rms_norm_backward_dx(const float* __restrict__ x, const float* __restrict__ w,
                         const float* __restrict__ g, const float* __restrict__ inv_rms,
                         float* __restrict__ dx, int d) {
    __shared__ float scratch[WARPS];
    long long row = blockIdx.x;
    const float* xr = x + row * d;
    const float* gr = g + row * d;
    float dot = 0.0f;
    for (int i = threadIdx.x; i < d; i += BLOCK) dot += xr[i] * gr[i] * w[i];
    dot = block_sum(dot, scratch);
    float inv = inv_rms[row];
    float c = inv * inv * inv * dot / (float)d;
    for (int i = threadIdx.x; i < d; i += BLOCK) dx[row * d + i] = inv * gr[i] * w[i] - xr[i] * c;
}

// Pass 1: grid (parts, ceil(d / BLOCK)); partial is (parts, d).
extern "C" __global__ void __launch_bounds__(BLOCK)
    rms_norm_backward_dw_partial(const float* __restrict__ x, const float* __restrict__ g,
                                 const float* __restrict__ inv_rms, float* __restrict__ partial,
                                 int rows, int d, int rows_per_part) {
    int col = blockIdx.y * BLOCK + threadIdx.x;
    if (col >= d) return;
    long long first = (long long)blockIdx.x * rows_per_part;
    long long end = min(first + rows_per_part, (long long)rows);
    float acc = 0.0f;
    for (long long r = first; r < end; ++r) acc += g[r * d + col] * x[r * d + col] * inv_rms[r];
    partial[(long long)blockIdx.x * d + col] = acc;
}

// Pass 2: dw[col] = sum_p partial[p][col], p in order; grid-stride over columns.
extern "C" __global__ void __launch_bounds__(BLOCK)
    rms_norm_backward_dw_reduce(const float* __restrict__ partial, float* __restrict__ dw,
                                int parts, int d) {
    for (int col = blockIdx.x * BLOCK + threadIdx.x; col < d; col += gridDim.x * BLOCK) {
        float acc = 0.0f;
        for (int p = 0; p < parts; ++p) acc += partial[(long long)p * d + col];
        dw[col] = acc;
    }
}
