// K and V of a step's tokens into the paged KV cache through the block table, in one launch for all
// of the step's sequences, each token at its own position in its own block list (twin:
// spill_kv_store_paged, token by token). blocks[b] holds T positions of K then T of V for one layer, of the cache's
// element type: F32, or F16 / BF16 rounded to nearest even as spill_fp32_to_fp16 / _bf16 round.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

template <typename E> __device__ static inline E kv_from_float(float x);
template <> __device__ inline float kv_from_float<float>(float x) { return x; }
template <> __device__ inline __half kv_from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ inline __nv_bfloat16 kv_from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename E>
__global__ static void kv_store_kernel(void *const *blocks, int T, int kv_dim, const int *pos, const int *table,
                                       const float *k, const float *v) {
    int t = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= kv_dim) return;
    int p = pos[t];
    E *kb = (E *)blocks[table[t] + p / T] + (long long)(p % T) * kv_dim;
    kb[i] = kv_from_float<E>(k[(long long)t * kv_dim + i]);
    kb[(long long)T * kv_dim + i] = kv_from_float<E>(v[(long long)t * kv_dim + i]);
}

extern "C" int spill_cu_kv_store(void *const *blocks, spill_dtype kv_type, int T, int kv_dim, const int *pos,
                                 const int *table, int n_tok, const float *k, const float *v, void *stream, spill_err *err) {
    if (n_tok <= 0 || kv_dim <= 0) return 0;
    if (T <= 0 || n_tok > 65535) return spill_err_set(err, "kv_store: %d tokens into blocks of %d", n_tok, T);
    dim3 grid(spill_cu_blocks(kv_dim, 128), (unsigned)n_tok);
    cudaStream_t st = (cudaStream_t)stream;
    switch (kv_type) {
    case SPILL_DT_F32: kv_store_kernel<float><<<grid, 128, 0, st>>>(blocks, T, kv_dim, pos, table, k, v); break;
    case SPILL_DT_F16: kv_store_kernel<__half><<<grid, 128, 0, st>>>(blocks, T, kv_dim, pos, table, k, v); break;
    case SPILL_DT_BF16: kv_store_kernel<__nv_bfloat16><<<grid, 128, 0, st>>>(blocks, T, kv_dim, pos, table, k, v); break;
    default: return spill_err_set(err, "kv_store: a KV cache of %s; f32, f16 or bf16", spill_dtype_name(kv_type));
    }
    SPILL_CU_LAUNCHED("kv_store");
    return 0;
}
