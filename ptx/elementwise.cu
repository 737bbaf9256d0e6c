// Elementwise f32 kernels: the CUDA side of src/cpu/elementwise.rs (the CPU code is the
// reference; tests/elementwise_parity.rs checks each kernel against it).
//
// Every kernel is a grid-stride loop over `n` elements, so any grid size covers any length
// and the launcher can cap the grid (src/cuda/elementwise.rs). `n` and the index are 64-bit:
// a 32-bit index would silently wrap on buffers of more than 2^31 floats.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#define GRID_STRIDE_LOOP(i, n)                                                        \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; \
         i < (n); i += (unsigned long long)gridDim.x * blockDim.x)

// out = a + b
extern "C" __global__ void add_f32(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ out, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = a[i] + b[i]; }
}

// out = a - b
extern "C" __global__ void sub_f32(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ out, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = a[i] - b[i]; }
}

// out = a * b
extern "C" __global__ void mul_f32(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ out, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = a[i] * b[i]; }
}

// out = a / b (IEEE division: nvcc without --use_fast_math, like the CPU)
extern "C" __global__ void div_f32(const float* __restrict__ a, const float* __restrict__ b,
                                   float* __restrict__ out, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = a[i] / b[i]; }
}

// out = s * a
extern "C" __global__ void scale_f32(const float* __restrict__ a, float s,
                                     float* __restrict__ out, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) { out[i] = s * a[i]; }
}

// sigmoid(x) = 1 / (1 + e^-x). For x below about -88.7, e^-x overflows to +inf and the result
// is 0, the correct limit; for large x, e^-x vanishes and the result rounds to 1. No branch,
// and no NaN for finite x. (The CPU version flushes at slightly different points; the parity
// test allows for that with an absolute floor far below anything that matters.)
__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// out = x * sigmoid(x)
extern "C" __global__ void silu_f32(const float* __restrict__ x, float* __restrict__ out,
                                    unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float xi = x[i];
        out[i] = xi * sigmoid(xi);
    }
}

// grad_in = grad_out * d silu / dx, where d silu / dx = s * (1 + x * (1 - s)), s = sigmoid(x)
extern "C" __global__ void silu_backward_f32(const float* __restrict__ x,
                                             const float* __restrict__ grad_out,
                                             float* __restrict__ grad_in, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) {
        float xi = x[i];
        float s = sigmoid(xi);
        grad_in[i] = grad_out[i] * (s * (1.0f + xi * (1.0f - s)));
    }
}

// y += alpha * x (gradient accumulation). __restrict__ holds: the Rust wrapper takes x as
// &CudaBuffer and y as &mut CudaBuffer, so they cannot be the same buffer.
extern "C" __global__ void axpy_f32(float alpha, const float* __restrict__ x,
                                    float* __restrict__ y, unsigned long long n) {
    GRID_STRIDE_LOOP(i, n) { y[i] += alpha * x[i]; }
}
