// Rotary position embedding forward and backward: the CUDA side of Tape::rope
// (src/autograd/rope.rs, the reference; tests/rope_parity.rs checks this kernel against it).
//
// x: (rows = B*T, H*D). In each head, element i < D/2 and element i + D/2 are rotated by
// angle = pos * inv_freq[i], inv_freq[i] = 1 / theta^(2i/D), computed in f32 as the CPU does:
//   out[i]       = x[i] cos - x[i + D/2] sin
//   out[i + D/2] = x[i + D/2] cos + x[i] sin
// Backward is the inverse rotation: the same kernel with sin_sign = -1.
// Position of row r: positions[r] when `per_token`, else positions[r % seq] (shared by the
// batch). One thread per rotated pair, grid-stride.
//
// Regenerate the committed PTX with `bash ptx/build.sh` (nvcc 13.0, -arch=sm_80).

extern "C" __global__ void rope_rotate(const float* __restrict__ x, float* __restrict__ out,
                                       const int* __restrict__ positions, int per_token, int seq,
                                       long long rows, int n_heads, int head_dim, float theta,
                                       float sin_sign) {
    int half = head_dim / 2;
    long long pairs = rows * n_heads * half;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < pairs;
         t += (long long)gridDim.x * blockDim.x) {
        int i = (int)(t % half);
        long long head_row = t / half;  // (row, head)
        long long row = head_row / n_heads;
        int pos = per_token ? positions[row] : positions[row % seq];
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)head_dim);
        float angle = (float)pos * inv_freq;
        float c = cosf(angle), s = sin_sign * sinf(angle);
        long long base = head_row * head_dim;
        float x1 = x[base + i], x2 = x[base + half + i];
        out[base + i] = x1 * c - x2 * s;
        out[base + half + i] = x2 * c + x1 * s;
    }
}
