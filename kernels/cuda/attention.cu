// Causal attention over the paged KV cache: one block per (query token, head). Threads score the
// positions (dot products with the keys found through the block table), the block reduces the
// softmax in double as the CPU does, then each thread accumulates one output dimension over the
// positions. Correct first; flash-style tiling is a later step.
#include "block_reduce.cuh"
#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void attention_kernel(float *out, const float *q, const float *const *blocks, int T, int pos0,
                                        int n_heads, int group, int hd, int kv_dim, float scale, float *scores, int ctx) {
    int t = blockIdx.x / n_heads, h = blockIdx.x % n_heads, kvh = h / group;
    int len = pos0 + t + 1;
    const float *qv = q + ((size_t)t * n_heads + h) * hd;
    float *sc = scores + (size_t)blockIdx.x * ctx;
    for (int p = threadIdx.x; p < len; p += blockDim.x) {
        const float *k = blocks[p / T] + (size_t)(p % T) * kv_dim + (size_t)kvh * hd;
        float s = 0;
        for (int d = 0; d < hd; d++) s = fmaf(qv[d], k[d], s);
        sc[p] = s * scale;
    }
    spill_block_softmax(sc, len); // ends synchronized: every thread may read every weight
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0;
        for (int p = 0; p < len; p++) {
            const float *v = blocks[p / T] + (size_t)T * kv_dim + (size_t)(p % T) * kv_dim + (size_t)kvh * hd;
            o = fmaf(sc[p], v[d], o);
        }
        out[((size_t)t * n_heads + h) * hd + d] = o;
    }
}

extern "C" int spill_cu_attention(float *out, const float *q, const float *const *blocks, int T, int n_tok, int pos0,
                                  int n_heads, int n_kv_heads, int head_dim, float scale, float *scores, void *stream,
                                  spill_err *err) {
    if (n_tok <= 0 || pos0 < 0 || T <= 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads || head_dim <= 0)
        return spill_err_set(err, "attention: %d tokens at %d, %d heads (%d kv) of %d, blocks of %d", n_tok, pos0, n_heads,
                             n_kv_heads, head_dim, T);
    attention_kernel<<<n_tok * n_heads, SPILL_CU_ROW_THREADS, 0, (cudaStream_t)stream>>>(out, q, blocks, T, pos0, n_heads,
                                                                        n_heads / n_kv_heads, head_dim,
                                                                        n_kv_heads * head_dim, scale, scores,
                                                                        pos0 + n_tok);
    SPILL_CU_LAUNCHED("attention");
    return 0;
}
