// RoPE: one thread per rotated pair, each token at its own position (a step's sequences in one launch). Frequencies as the CPU twin computes them: base^(-2i/d) built by
// repeated multiplication (ggml's way) when no table is given, else theta = pos * inv_freq[i].
#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void rope_kernel(float *x, int n_tok, int n_heads, int head_dim, int half, const int *pos, float theta_scale,
                                   const float *inv_freq, int adjacent) {
    long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    long long total = (long long)n_tok * n_heads * half;
    if (k >= total) return;
    int i = (int)(k % half);
    long long th = k / half;
    int h = (int)(th % n_heads), t = (int)(th / n_heads);
    float theta;
    if (inv_freq) {
        theta = (float)pos[t] * inv_freq[i];
    } else {
        theta = (float)pos[t];
        for (int j = 0; j < i; j++) theta *= theta_scale;
    }
    float c = cosf(theta), s = sinf(theta);
    float *v = x + ((size_t)t * n_heads + h) * head_dim;
    int a = adjacent ? 2 * i : i, b = adjacent ? 2 * i + 1 : i + half;
    float x0 = v[a], x1 = v[b];
    v[a] = fmaf(x0, c, -(x1 * s)); /* the CPU twin rounds the same way */
    v[b] = fmaf(x0, s, x1 * c);
}

extern "C" int spill_cu_rope(float *x, int n_tok, int n_heads, int head_dim, int rot_dims, const int *pos, float base,
                             const float *inv_freq, int adjacent, void *stream, spill_err *err) {
    if (n_tok <= 0 || n_heads <= 0 || rot_dims <= 0 || rot_dims > head_dim || rot_dims % 2)
        return spill_err_set(err, "rope: %d tokens, %d heads of %d, %d rotated", n_tok, n_heads, head_dim, rot_dims);
    long long total = (long long)n_tok * n_heads * (rot_dims / 2);
    float theta_scale = powf(base, -2.0f / (float)rot_dims);
    rope_kernel<<<spill_cu_blocks(total, 256), 256, 0, (cudaStream_t)stream>>>(x, n_tok, n_heads, head_dim, rot_dims / 2,
                                                                               pos, theta_scale, inv_freq, adjacent);
    SPILL_CU_LAUNCHED("rope");
    return 0;
}
