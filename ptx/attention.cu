// Fused causal attention, forward and backward, flash-attention style: the CUDA side of
// Tape::attention (src/autograd/attention.rs, the reference; tests/attention_parity.rs checks
// these kernels against it). f32 throughout (SIMT, no tensor cores).
//
// Layouts (row-major): q, out, dq (B, Tq, Hq*D); k, v, dk, dv (B, Tk, Hkv*D); lse, delta
// (B, Hq, Tq); key_valid (B*Tk) ints, 0 = padding key (ignored when has_mask == 0).
// Query head h reads kv head h / (Hq / Hkv) (grouped-query attention). With `causal`, query i
// sits at absolute position Tk - Tq + i (KV-cache offset: the Tq new tokens are the last of the
// Tk keys) and sees keys 0 ..= Tk - Tq + i. A row that sees no key gets out = 0, lse = -inf and
// zero gradients, as on the CPU.
//
// Forward (grid: query tiles of Q_TILE rows x Hq x B; 4 warps, each owning ROWS_PER_WARP rows):
// the block's query rows sit in shared memory; keys and values stream through shared memory in
// tiles of 32 (lane j scores key j of the tile against the row by a dot product over D); each
// row keeps a running max m, a running sum l of exp(s - m) and an unnormalised output in
// registers (lane owns d = lane, lane + 32, ...), rescaled by exp(m_old - m_new) whenever the
// max grows (online softmax). The (B, Hq, Tq) scores are never stored; lse = m + ln l is.
//
// Backward, deterministic, no atomics, recomputing p = exp(s - lse):
//   delta_i = dO_i . O_i                                   (attention_backward_delta)
//   dV_j = sum_i p_ij dO_i,  dK_j = scale sum_i dS_ij q_i  (attention_backward_dkdv)
//       with dS_ij = p_ij (dO_i . v_j - delta_i); one block (one warp) owns a tile of 32 keys
//       of one (b, kv head) and walks every query row of every query head of the group that
//       can see the tile, in a fixed order, accumulating in shared memory (lane j owns row j);
//   dQ_i = scale sum_j dS_ij k_j                          (attention_backward_dq)
//       a separate pass with the forward's layout: each row owned by one warp.
//
// Limits (checked by src/cuda/attention.rs): D <= 128. Shared memory: forward and dq about
// 41 KB at D = 128; dkdv 4 x 32 x (D + 1) floats + 2 D = 66 KB at D = 128 (the launcher raises
// the kernel's dynamic shared-memory limit above 48 KB when needed).
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

#define KEY_TILE 32
#define ATT_WARPS 4
#define ROWS_PER_WARP 2
#define Q_TILE (ATT_WARPS * ROWS_PER_WARP)
#define MAX_D 128
#define PER_LANE (MAX_D / 32)  // output elements per lane

struct AttnDims {
    int tq, tk, hq, hkv, d, causal, has_mask;
    float scale;
};

// Offsets of row (b, i, head h) of q / out and of row (b, j, kv head g) of k / v.
__device__ __forceinline__ long long q_off(const AttnDims& a, int b, int i, int h) {
    return (((long long)b * a.tq + i) * a.hq + h) * a.d;
}
__device__ __forceinline__ long long kv_off(const AttnDims& a, int b, int j, int g) {
    return (((long long)b * a.tk + j) * a.hkv + g) * a.d;
}
__device__ __forceinline__ long long lse_off(const AttnDims& a, int b, int h, int i) {
    return ((long long)b * a.hq + h) * a.tq + i;
}
// Keys 0 .. visible_end(i) pass the causal mask for query row i.
__device__ __forceinline__ int visible_end(const AttnDims& a, int i) {
    return a.causal ? a.tk - a.tq + i + 1 : a.tk;
}
__device__ __forceinline__ bool key_visible(const AttnDims& a, const int* key_valid, int b, int i,
                                            int j) {
    return j < a.tk && j < visible_end(a, i) && (!a.has_mask || key_valid[(long long)b * a.tk + j]);
}

// rows x D of a (.., D)-strided matrix -> shared memory with row stride `stride`; rows beyond
// `valid_rows` are zeros.
__device__ __forceinline__ void stage_rows(float* dst, int stride, const float* src, long long step,
                                           int rows, int valid_rows, int d, int tid, int threads) {
    for (int e = tid; e < rows * d; e += threads) {
        int r = e / d, c = e % d;
        dst[r * stride + c] = r < valid_rows ? src[r * step + c] : 0.0f;
    }
}

// dot(a[0..d), b[0..d)) in ascending order (a, b in shared memory)
__device__ __forceinline__ float dot_d(const float* a, const float* b, int d) {
    float s = 0.0f;
    for (int c = 0; c < d; ++c) s = fmaf(a[c], b[c], s);
    return s;
}

// Shared-memory layout of the forward and dq kernels: K and V tiles (KEY_TILE, D + 1), then the
// block's query rows (Q_TILE, D) and, for dq, their output gradients (Q_TILE, D).
struct RowKernelSmem {
    float *k, *v, *q, *dout;
    __device__ RowKernelSmem(float* base, int d) {
        k = base;
        v = k + KEY_TILE * (d + 1);
        q = v + KEY_TILE * (d + 1);
        dout = q + Q_TILE * d;
    }
};

// Loads key/value tile j0 of (b, kv head g) into shared memory (zeros past Tk).
__device__ __forceinline__ void stage_kv_tile(const AttnDims& a, RowKernelSmem& sm, const float* k,
                                              const float* v, int b, int g, int j0) {
    int valid = min(KEY_TILE, a.tk - j0);
    long long step = (long long)a.hkv * a.d;
    stage_rows(sm.k, a.d + 1, k + kv_off(a, b, j0, g), step, KEY_TILE, valid, a.d, threadIdx.x,
               blockDim.x);
    stage_rows(sm.v, a.d + 1, v + kv_off(a, b, j0, g), step, KEY_TILE, valid, a.d, threadIdx.x,
               blockDim.x);
}

// ---------------------------------------------------------------------------------------------
// Forward

extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_forward(const float* __restrict__ q, const float* __restrict__ k,
                      const float* __restrict__ v, const int* __restrict__ key_valid,
                      float* __restrict__ out, float* __restrict__ lse, AttnDims a) {
    extern __shared__ float smem[];
    RowKernelSmem sm(smem, a.d);
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * Q_TILE;
    int g = h / (a.hq / a.hkv);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int rows_here = min(Q_TILE, a.tq - q0);
    stage_rows(sm.q, a.d, q + q_off(a, b, q0, h), (long long)a.hq * a.d, Q_TILE, rows_here, a.d,
               threadIdx.x, blockDim.x);

    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][PER_LANE];
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int e = 0; e < PER_LANE; ++e) acc[r][e] = 0.0f;
    }
    int key_end = min(a.tk, visible_end(a, q0 + rows_here - 1));  // keys any row may see
    for (int j0 = 0; j0 < key_end; j0 += KEY_TILE) {
        __syncthreads();  // the previous tile is no longer read (and the q rows are staged)
        stage_kv_tile(a, sm, k, v, b, g, j0);
        __syncthreads();
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            int local = warp * ROWS_PER_WARP + r, i = q0 + local;
            if (i >= a.tq) break;  // uniform per warp
            bool vis = key_visible(a, key_valid, b, i, j0 + lane);
            float s = vis ? a.scale * dot_d(sm.q + local * a.d, sm.k + lane * (a.d + 1), a.d)
                          : -INFINITY;
            float m_new = fmaxf(m[r], warp_max(s));
            if (m_new == -INFINITY) continue;  // nothing visible yet (uniform per warp)
            float rescale = expf(m[r] - m_new);
            float p = vis ? expf(s - m_new) : 0.0f;
            l[r] = l[r] * rescale + warp_sum(p);
            m[r] = m_new;
            for (int e = 0; e < PER_LANE; ++e) acc[r][e] *= rescale;
            for (int jj = 0; jj < KEY_TILE; ++jj) {
                float pj = __shfl_sync(0xffffffffu, p, jj);
                for (int e = 0; e < PER_LANE; ++e) {
                    int c = lane + 32 * e;
                    if (c < a.d) acc[r][e] = fmaf(pj, sm.v[jj * (a.d + 1) + c], acc[r][e]);
                }
            }
        }
    }
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        int i = q0 + warp * ROWS_PER_WARP + r;
        if (i >= a.tq) break;
        bool any = l[r] > 0.0f;
        float inv = any ? 1.0f / l[r] : 0.0f;
        for (int e = 0; e < PER_LANE; ++e) {
            int c = lane + 32 * e;
            if (c < a.d) out[q_off(a, b, i, h) + c] = acc[r][e] * inv;
        }
        if (lane == 0) lse[lse_off(a, b, h, i)] = any ? m[r] + logf(l[r]) : -INFINITY;
    }
}

// ---------------------------------------------------------------------------------------------
// Backward

// delta[b, h, i] = dO_i . O_i; one warp per (b, i, h) row, BLOCK / 32 rows per block.
extern "C" __global__ void __launch_bounds__(BLOCK)
    attention_backward_delta(const float* __restrict__ out, const float* __restrict__ d_out,
                             float* __restrict__ delta, AttnDims a, int batch) {
    long long row = (long long)blockIdx.x * WARPS + threadIdx.x / 32;  // (b, i, h) row index
    int lane = threadIdx.x % 32;
    if (row >= (long long)batch * a.tq * a.hq) return;
    float s = 0.0f;
    for (int c = lane; c < a.d; c += 32) s += d_out[row * a.d + c] * out[row * a.d + c];
    s = warp_sum(s);
    int h = (int)(row % a.hq);
    long long bi = row / a.hq;
    int i = (int)(bi % a.tq), b = (int)(bi / a.tq);
    if (lane == 0) delta[lse_off(a, b, h, i)] = s;
}

// dK, dV of one tile of KEY_TILE keys of (b, kv head g); one warp per block, lane j owns key j.
// grid: (ceil(Tk / KEY_TILE), Hkv, B).
extern "C" __global__ void __launch_bounds__(32)
    attention_backward_dkdv(const float* __restrict__ q, const float* __restrict__ k,
                            const float* __restrict__ v, const int* __restrict__ key_valid,
                            const float* __restrict__ d_out, const float* __restrict__ lse,
                            const float* __restrict__ delta, float* __restrict__ dk,
                            float* __restrict__ dv, AttnDims a) {
    extern __shared__ float smem[];
    int stride = a.d + 1;
    float *ks = smem, *vs = ks + KEY_TILE * stride, *dks = vs + KEY_TILE * stride;
    float *dvs = dks + KEY_TILE * stride, *q_row = dvs + KEY_TILE * stride, *do_row = q_row + a.d;
    int b = blockIdx.z, g = blockIdx.y, j0 = blockIdx.x * KEY_TILE, lane = threadIdx.x;
    int valid = min(KEY_TILE, a.tk - j0);
    long long step = (long long)a.hkv * a.d;
    stage_rows(ks, stride, k + kv_off(a, b, j0, g), step, KEY_TILE, valid, a.d, lane, 32);
    stage_rows(vs, stride, v + kv_off(a, b, j0, g), step, KEY_TILE, valid, a.d, lane, 32);
    for (int e = lane; e < KEY_TILE * stride; e += 32) dks[e] = dvs[e] = 0.0f;
    __syncwarp();
    int group = a.hq / a.hkv;
    // Under the causal mask, query i sees key j0 only if Tk - Tq + i >= j0.
    int i_first = a.causal ? max(0, j0 - (a.tk - a.tq)) : 0;
    int j = j0 + lane;
    for (int h = g * group; h < (g + 1) * group; ++h) {
        for (int i = i_first; i < a.tq; ++i) {
            long long qo = q_off(a, b, i, h);
            for (int c = lane; c < a.d; c += 32) {
                q_row[c] = q[qo + c];
                do_row[c] = d_out[qo + c];
            }
            __syncwarp();
            if (key_visible(a, key_valid, b, i, j)) {
                float s = a.scale * dot_d(q_row, ks + lane * stride, a.d);
                float p = expf(s - lse[lse_off(a, b, h, i)]);
                float dp = dot_d(do_row, vs + lane * stride, a.d);
                float ds = p * (dp - delta[lse_off(a, b, h, i)]) * a.scale;
                for (int c = 0; c < a.d; ++c) {
                    dvs[lane * stride + c] = fmaf(p, do_row[c], dvs[lane * stride + c]);
                    dks[lane * stride + c] = fmaf(ds, q_row[c], dks[lane * stride + c]);
                }
            }
            __syncwarp();  // q_row / do_row are rewritten next
        }
    }
    for (int e = lane; e < valid * a.d; e += 32) {
        int r = e / a.d, c = e % a.d;
        long long o = kv_off(a, b, j0 + r, g) + c;
        dk[o] = dks[r * stride + c];
        dv[o] = dvs[r * stride + c];
    }
}

// dQ; the forward's grid and layout, each row owned by one warp.
extern "C" __global__ void __launch_bounds__(ATT_WARPS * 32)
    attention_backward_dq(const float* __restrict__ q, const float* __restrict__ k,
                          const float* __restrict__ v, const int* __restrict__ key_valid,
                          const float* __restrict__ d_out, const float* __restrict__ lse,
                          const float* __restrict__ delta, float* __restrict__ dq, AttnDims a) {
    extern __shared__ float smem[];
    RowKernelSmem sm(smem, a.d);
    int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * Q_TILE;
    int g = h / (a.hq / a.hkv);
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    int rows_here = min(Q_TILE, a.tq - q0);
    long long step = (long long)a.hq * a.d;
    stage_rows(sm.q, a.d, q + q_off(a, b, q0, h), step, Q_TILE, rows_here, a.d, threadIdx.x,
               blockDim.x);
    stage_rows(sm.dout, a.d, d_out + q_off(a, b, q0, h), step, Q_TILE, rows_here, a.d,
               threadIdx.x, blockDim.x);
    float acc[ROWS_PER_WARP][PER_LANE];
    for (int r = 0; r < ROWS_PER_WARP; ++r)
        for (int e = 0; e < PER_LANE; ++e) acc[r][e] = 0.0f;
    int key_end = min(a.tk, visible_end(a, q0 + rows_here - 1));
    for (int j0 = 0; j0 < key_end; j0 += KEY_TILE) {
        __syncthreads();
        stage_kv_tile(a, sm, k, v, b, g, j0);
        __syncthreads();
        for (int r = 0; r < ROWS_PER_WARP; ++r) {
            int local = warp * ROWS_PER_WARP + r, i = q0 + local;
            if (i >= a.tq) break;
            float ds = 0.0f;
            if (key_visible(a, key_valid, b, i, j0 + lane)) {
                float s = a.scale * dot_d(sm.q + local * a.d, sm.k + lane * (a.d + 1), a.d);
                float p = expf(s - lse[lse_off(a, b, h, i)]);
                float dp = dot_d(sm.dout + local * a.d, sm.v + lane * (a.d + 1), a.d);
                ds = p * (dp - delta[lse_off(a, b, h, i)]);
            }
            for (int jj = 0; jj < KEY_TILE; ++jj) {
                float dsj = __shfl_sync(0xffffffffu, ds, jj);
                for (int e = 0; e < PER_LANE; ++e) {
                    int c = lane + 32 * e;
                    if (c < a.d) acc[r][e] = fmaf(dsj, sm.k[jj * (a.d + 1) + c], acc[r][e]);
                }
            }
        }
    }
    for (int r = 0; r < ROWS_PER_WARP; ++r) {
        int i = q0 + warp * ROWS_PER_WARP + r;
        if (i >= a.tq) break;
        for (int e = 0; e < PER_LANE; ++e) {
            int c = lane + 32 * e;
            if (c < a.d) dq[q_off(a, b, i, h) + c] = acc[r][e] * a.scale;
        }
    }
}
