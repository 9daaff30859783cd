// K and V of a step's tokens into the paged KV cache through the block table, in one launch (twin:
// spill_kv_store_paged). blocks[b] holds T positions of K then T of V for one layer.
#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void kv_store_kernel(float *const *blocks, int T, int kv_dim, int pos0, const float *k, const float *v) {
    int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= kv_dim) return;
    int p = pos0 + t;
    float *kb = blocks[p / T] + (long long)(p % T) * kv_dim;
    kb[i] = k[(long long)t * kv_dim + i];
    kb[(long long)T * kv_dim + i] = v[(long long)t * kv_dim + i];
}

extern "C" int spill_cu_kv_store(float *const *blocks, int T, int kv_dim, int pos0, int n_tok, const float *k, const float *v,
                                 void *stream, spill_err *err) {
    if (n_tok <= 0 || kv_dim <= 0) return 0;
    if (T <= 0 || pos0 < 0 || n_tok > 65535)
        return spill_err_set(err, "kv_store: %d tokens at %d into blocks of %d", n_tok, pos0, T);
    dim3 grid(spill_cu_blocks(kv_dim, 128), (unsigned)n_tok);
    kv_store_kernel<<<grid, 128, 0, (cudaStream_t)stream>>>(blocks, T, kv_dim, pos0, k, v);
    SPILL_CU_LAUNCHED("kv_store");
    return 0;
}
