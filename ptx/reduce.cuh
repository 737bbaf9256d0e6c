// Deterministic block reductions shared by the row kernels (included, not compiled on its own).
//
// Order is fixed by the thread layout alone: each thread folds its strided elements in index
// order, a warp combines lanes by an xor butterfly (every pairing is symmetric, a + b == b + a,
// so all lanes end with the same bits), then warp 0 combines the per-warp results the same
// way. No atomics: the same inputs give the same bits on every run.
//
// Every kernel that uses these runs with BLOCK threads (the launchers in src/cuda/ use 256).

#pragma once

#define BLOCK 256
#define WARPS (BLOCK / 32)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

__device__ __forceinline__ double warp_sum_f64(double v) {
#pragma unroll
    for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int m = 16; m > 0; m /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

// Sum of v over the block, returned to every thread. `scratch` holds WARPS floats; the trailing
// barrier lets the caller reuse it at once.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = warp_sum(lane < WARPS ? scratch[lane] : 0.0f);
    __syncthreads();
    return total;
}

__device__ __forceinline__ double block_sum_f64(double v, double* scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum_f64(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double total = warp_sum_f64(lane < WARPS ? scratch[lane] : 0.0);
    __syncthreads();
    return total;
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float total = warp_max(lane < WARPS ? scratch[lane] : -INFINITY);
    __syncthreads();
    return total;
}

// sigmoid(x) = 1 / (1 + e^-x), as in elementwise.cu (no NaN for finite x).
__device__ __forceinline__ float sigmoid_f32(float x) { return 1.0f / (1.0f + expf(-x)); }
