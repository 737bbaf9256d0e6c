// Optimizer kernels: the CUDA side of src/optim.rs (AdamW, grad_norm, clip_grad_norm,
// scale_grads; the reference; tests/optim_parity.rs checks these kernels against it).
//
// adamw_step follows the CPU's adamw_update operation for operation, with explicit
// round-to-nearest intrinsics so that nvcc fuses nothing into an FMA: the result is meant to be
// the CPU's bit for bit. It updates the f32 master weights and moments in place and writes a
// bf16 copy of the new weights for the compute path. The bias-corrected step size and
// sqrt(1 - beta2^t) are computed on the host in f64 exactly as the CPU does.
//
// Gradient norm, two passes, fixed order, f64 like the CPU, no atomics:
//   sum_squares_partial: block b sums x[b*chunk .. (b+1)*chunk) into partial[offset + b];
//   sqrt_of_sum:         one block sums partial[0 .. parts) and writes sqrt as f32.
// clip_factor turns the norm into min(1, max_norm / (norm + 1e-6)) on the device (1 when the norm
// is not finite, as the CPU leaves gradients alone then), and scale_in_place multiplies by it.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

#define GRID_STRIDE_LOOP(i, n)                                                            \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)gridDim.x * blockDim.x)

// bf16 bits of x, round to nearest even (as half::bf16::from_f32; see gemm.cu).
__device__ __forceinline__ unsigned short f32_to_bf16_rne(float x) {
    unsigned bits = __float_as_uint(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((bits >> 16) | 0x0040u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (unsigned short)(bits >> 16);
}

extern "C" __global__ void adamw_step(float* __restrict__ p, const float* __restrict__ g,
                                      float* __restrict__ m, float* __restrict__ v,
                                      unsigned short* __restrict__ p_bf16, unsigned long long n,
                                      float keep, float one_m_b1, float beta2, float one_m_b2,
                                      float bias2_sqrt, float step_size, float eps) {
    GRID_STRIDE_LOOP(i, n) {
        float gi = g[i];
        float pi = __fmul_rn(p[i], keep);                                   // p *= 1 - lr wd
        float mi = __fadd_rn(m[i], __fmul_rn(one_m_b1, __fsub_rn(gi, m[i])));
        float vi = __fadd_rn(__fmul_rn(v[i], beta2), __fmul_rn(__fmul_rn(one_m_b2, gi), gi));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias2_sqrt), eps);
        pi = __fsub_rn(pi, __fdiv_rn(__fmul_rn(step_size, mi), denom));
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        p_bf16[i] = f32_to_bf16_rne(pi);
    }
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    sum_squares_partial(const float* __restrict__ x, unsigned long long n,
                        unsigned long long chunk, double* __restrict__ partial,
                        unsigned long long offset) {
    __shared__ double scratch[WARPS];
    unsigned long long first = blockIdx.x * chunk;
    unsigned long long end = min(first + chunk, n);
    double acc = 0.0;
    for (unsigned long long i = first + threadIdx.x; i < end; i += BLOCK)
        acc += (double)x[i] * (double)x[i];
    acc = block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) partial[offset + blockIdx.x] = acc;
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    sqrt_of_sum(const double* __restrict__ partial, unsigned long long parts,
                float* __restrict__ norm) {
    __shared__ double scratch[WARPS];
    double acc = 0.0;
    for (unsigned long long i = threadIdx.x; i < parts; i += BLOCK) acc += partial[i];
    acc = block_sum_f64(acc, scratch);
    if (threadIdx.x == 0) norm[0] = (float)sqrt(acc);
}

extern "C" __global__ void clip_factor(const float* __restrict__ norm, float max_norm,
                                       float* __restrict__ factor) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        float nv = norm[0];
        float f = max_norm / (nv + 1e-6f);
        factor[0] = (isfinite(nv) && f < 1.0f) ? f : 1.0f;
    }
}

// x *= factor[0] (a device scalar, so clipping needs no host round trip)
extern "C" __global__ void scale_in_place(float* __restrict__ x, const float* __restrict__ factor,
                                          unsigned long long n) {
    float f = factor[0];
    GRID_STRIDE_LOOP(i, n) { x[i] *= f; }
}
