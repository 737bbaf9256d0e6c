// SwiGLU forward and backward: the CUDA side of cpu::elementwise::swiglu / swiglu_backward
// (the reference; tests/swiglu_parity.rs checks these kernels against them).
//
//   out    = silu(gate) * up,                      silu(x) = x * sigmoid(x)
//   d_gate = grad_out * up * sigmoid(x) * (1 + x * (1 - sigmoid(x)))
//   d_up   = grad_out * silu(gate)
//
// Grid-stride loops over n elements, 64-bit indices.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

#define GRID_STRIDE_LOOP(i, n)                                                            \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)gridDim.x * blockDim.x)

extern "C" __global__ void swiglu_forward(const float* __restrict__ gate,
                                          const float* __restrict__ up, float* __restrict__ out,
                                          unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float x = gate[i];
        out[i] = x * sigmoid_f32(x) * up[i];
    }
}

extern "C" __global__ void swiglu_backward(const float* __restrict__ gate,
                                           const float* __restrict__ up,
                                           const float* __restrict__ grad_out,
                                           float* __restrict__ d_gate, float* __restrict__ d_up,
                                           unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float x = gate[i], g = grad_out[i];
        float s = sigmoid_f32(x);
        d_up[i] = g * (x * s);
        d_gate[i] = g * up[i] * (s * (1.0f + x * (1.0f - s)));
    }
}
