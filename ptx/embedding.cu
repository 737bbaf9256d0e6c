// Token embedding forward (gather) and backward (deterministic segmented sum): the CUDA side of
// Tape::embedding (src/autograd/embedding.rs, the reference; tests/embedding_parity.rs checks
// these kernels against it).
//
// Forward: out[i, :] = weight[ids[i], :], one block per position i.
//
// Backward, sort-free and without atomics, by ownership: dweight starts zeroed (the launcher
// clears it), and the block of position i owns vocabulary row ids[i] if i is the FIRST position
// holding that id. The owner adds the gradient rows of every position j >= i with ids[j] ==
// ids[i], in ascending j, and writes the row once. Every row of dweight therefore has exactly one
// writer, and its sum is taken in position order, the order of the CPU's scatter-add, starting
// from the same 0.0: the result is the CPU's bit for bit. Cost O(n^2) id comparisons (16 M for
// 4096 tokens, read from cache), independent of the vocabulary size.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

#include "reduce.cuh"

extern "C" __global__ void __launch_bounds__(BLOCK)
    embedding_forward(const float* __restrict__ weight, const int* __restrict__ ids,
                      float* __restrict__ out, int dim) {
    long long i = blockIdx.x;
    const float* src = weight + (long long)ids[i] * dim;
    for (int c = threadIdx.x; c < dim; c += BLOCK) out[i * dim + c] = src[c];
}

extern "C" __global__ void __launch_bounds__(BLOCK)
    embedding_backward(const float* __restrict__ grad_out, const int* __restrict__ ids,
                       float* __restrict__ dweight, int n_ids, int dim) {
    int i = blockIdx.x;
    int id = ids[i];
    // Is there an earlier position with the same id? Then that position's block owns the row.
    int earlier = 0;
    for (int j = threadIdx.x; j < i; j += BLOCK) earlier |= (ids[j] == id);
    if (__syncthreads_or(earlier)) return;
    for (int c = threadIdx.x; c < dim; c += BLOCK) {
        float acc = 0.0f;
        for (int j = i; j < n_ids; ++j)
            if (ids[j] == id) acc += grad_out[(long long)j * dim + c];
        dweight[(long long)id * dim + c] = acc;
    }
}
