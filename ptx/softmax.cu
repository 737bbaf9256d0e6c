// softmax and log_softmax over the last axis, forward and backward: the CUDA side of
// Tape::softmax / Tape::log_softmax (src/autograd/softmax.rs, the reference;
// tests/softmax_parity.rs checks these kernels against it).
//
// One block of BLOCK threads per row of `cols`. Forward shifts by the row max before exp (no
// overflow at any logit scale); a row that is entirely -inf gives softmax zeros, like the CPU.
// Backward, with y the output and g its gradient:
//   softmax:      dx = y * (g - sum(g * y))
//   log_softmax:  dx = g - exp(y) * sum(g)
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

extern "C" __global__ void __launch_bounds__(BLOCK)
    softmax_forward(const float* __restrict__ x, float* __restrict__ y, int cols) {
    __shared__ float scratch[WARPS];
    const float* xr = x + (long long)blockIdx.x * cols;
    float* yr = y + (long long)blockIdx.x * cols;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < cols; i += BLOCK) mx = fmaxf(mx, xr[i]);
    mx = block_max(mx, scratch);
    if (mx == -INFINITY) {  // fully masked row (uniform across the block)
        for (int i = threadIdx.x; i < cols; i += BLOCK) yr[i] = 0.0f;
        return;
    }
    float sum = 0.0f;
    for (int i = threadIdx.x; i < cols; i += BLOCK) {
        float e = expf(xr[i] - mx);
        yr[i] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum, scratch);
    // each thread rescales exactly the elements it wrote, so no barrier is needed
    for (int i = threadIdx.x; i < cols; i += BLOCK) yr[i] *= inv;
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    log_softmax_forward(const float* __restrict__ x, float* __restrict__ y, int cols) {
    __shared__ float scratch[WARPS];
    const float* xr = x + (long long)blockIdx.x * cols;
    float* yr = y + (long long)blockIdx.x * cols;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < cols; i += BLOCK) mx = fmaxf(mx, xr[i]);
    mx = block_max(mx, scratch);
    float lse = mx;  // -inf for a fully masked row, as the CPU's log_sum_exp
    if (mx != -INFINITY) {
        float sum = 0.0f;
        for (int i = threadIdx.x; i < cols; i += BLOCK) sum += expf(xr[i] - mx);
        lse = mx + logf(block_sum(sum, scratch));
    }
    for (int i = threadIdx.x; i < cols; i += BLOCK) yr[i] = xr[i] - lse;
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    softmax_backward(const float* __restrict__ y, const float* __restrict__ g,
                     float* __restrict__ dx, int cols) {
    __shared__ float scratch[WARPS];
    long long base = (long long)blockIdx.x * cols;
    float dot = 0.0f;
    for (int i = threadIdx.x; i < cols; i += BLOCK) dot += g[base + i] * y[base + i];
    dot = block_sum(dot, scratch);
    for (int i = threadIdx.x; i < cols; i += BLOCK) dx[base + i] = y[base + i] * (g[base + i] - dot);
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    log_softmax_backward(const float* __restrict__ y, const float* __restrict__ g,
                         float* __restrict__ dx, int cols) {
    __shared__ float scratch[WARPS];
    long long base = (long long)blockIdx.x * cols;
    float total = 0.0f;
    for (int i = threadIdx.x; i < cols; i += BLOCK) total += g[base + i];
    total = block_sum(total, scratch);
    for (int i = threadIdx.x; i < cols; i += BLOCK) dx[base + i] = g[base + i] - expf(y[base + i]) * total;
}
