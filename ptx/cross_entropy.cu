// Cross-entropy fused over the vocabulary, forward and backward: the CUDA side of
// Tape::cross_entropy (src/autograd/loss.rs, the reference; tests/cross_entropy_parity.rs checks
// these kernels against it). Softmax is never materialised.
//
// Forward, one block per row of V logits (target -100 = ignored row):
//   each thread runs an online log-sum-exp (running max m, sum s of exp(x - m)) over its
//   strided logits in one pass; the block combines the (m, s) pairs by a fixed butterfly;
//   lse = m + ln s, row_loss = lse - x[target] (0 for an ignored row; lse is NaN there).
// ce_mean adds the row losses in f64 in a fixed order (one block) and divides by `count`, the
// number of non-ignored rows (validated on the host, where the targets come from).
// Backward, one block per row: dx = (g / count) * (exp(x - lse) - onehot(target)), written row
// by row straight from the logits and the saved lse; ignored rows get zeros.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

#define IGNORE_INDEX (-100)

// (m1, s1) + (m2, s2) -> the pair of the union. Symmetric in its arguments (explicit
// round-to-nearest operations keep the compiler from fusing one product into an FMA, which
// would make the butterfly's two partners disagree).
__device__ __forceinline__ void lse_combine(float& m, float& s, float m2, float s2) {
    float mx = fmaxf(m, m2);
    if (mx == -INFINITY) {
        s = 0.0f;
    } else {
        s = __fadd_rn(__fmul_rn(s, expf(m - mx)), __fmul_rn(s2, expf(m2 - mx)));
    }
    m = mx;
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    cross_entropy_forward(const float* __restrict__ logits, const int* __restrict__ targets,
                          float* __restrict__ lse_out, float* __restrict__ row_loss, int vocab) {
    __shared__ float scratch_m[WARPS], scratch_s[WARPS];
    long long row = blockIdx.x;
    int t = targets[row];
    if (t == IGNORE_INDEX) {  // uniform across the block
        if (threadIdx.x == 0) {
            lse_out[row] = __int_as_float(0x7fc00000);  // NaN: never read
            row_loss[row] = 0.0f;
        }
        return;
    }
    const float* xr = logits + row * vocab;
    float m = -INFINITY, s = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += BLOCK) {
        float x = xr[i];
        if (x == -INFINITY) continue;
        if (x > m) {
            s = s * expf(m - x) + 1.0f;
            m = x;
        } else {
            s += expf(x - m);
        }
    }
#pragma unroll
    for (int k = 16; k > 0; k /= 2)
        lse_combine(m, s, __shfl_xor_sync(0xffffffffu, m, k), __shfl_xor_sync(0xffffffffu, s, k));
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) {
        scratch_m[warp] = m;
        scratch_s[warp] = s;
    }
    __syncthreads();
    if (warp == 0) {
        m = lane < WARPS ? scratch_m[lane] : -INFINITY;
        s = lane < WARPS ? scratch_s[lane] : 0.0f;
#pragma unroll
        for (int k = 16; k > 0; k /= 2)
            lse_combine(m, s, __shfl_xor_sync(0xffffffffu, m, k),
                        __shfl_xor_sync(0xffffffffu, s, k));
        if (lane == 0) {
            float lse = m + logf(s);
            lse_out[row] = lse;
            row_loss[row] = lse - xr[t];
        }
    }
}

// loss[0] = sum(row_loss) / count, one block, f64 partial sums in a fixed order.
extern "C" __global__ void __launch_bounds__(BLOCK)
    cross_entropy_mean(const float* __restrict__ row_loss, int rows, int count,
                       float* __restrict__ loss) {
    __shared__ double scratch[WARPS];
    double total = 0.0;
    for (int r = threadIdx.x; r < rows; r += BLOCK) total += (double)row_loss[r];
    total = block_sum_f64(total, scratch);
    if (threadIdx.x == 0) loss[0] = (float)(total / (double)count);
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    cross_entropy_backward(const float* __restrict__ logits, const int* __restrict__ targets,
                           const float* __restrict__ lse, const float* __restrict__ grad_loss,
                           float* __restrict__ dx, int vocab, int count) {
    long long row = blockIdx.x;
    int t = targets[row];
    float* dr = dx + row * vocab;
    if (t == IGNORE_INDEX) {
        for (int i = threadIdx.x; i < vocab; i += BLOCK) dr[i] = 0.0f;
        return;
    }
    const float* xr = logits + row * vocab;
    float scale = grad_loss[0] / (float)count, l = lse[row];
    for (int i = threadIdx.x; i < vocab; i += BLOCK) {
        float d = scale * expf(xr[i] - l);
        dr[i] = i == t ? d - scale : d;
    }
}
