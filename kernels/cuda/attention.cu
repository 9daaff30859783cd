// Flash-decoding attention over the paged KV cache; the CPU twin is kernels/flash.c, step for step.
// One block per (split of the positions, KV head, query token): it loads a tile of SPILL_FLASH_TILE
// K and V rows into shared memory once and scores it against every query head of the KV head's
// group, keeping an online softmax (running max, running sum, unnormalised output) per head. There is
// no scores scratch: memory is bounded by the model's shape, not by the context (128k fits). At small
// batch the positions are split so that the GPU gets about SPILL_FLASH_BLOCKS blocks; the splits'
// partial results are then weighed together by a second small kernel.
#include <math.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

#define FLASH_THREADS 128

// shared memory, in floats: q and o of the group, K tile (rows padded by one against bank conflicts),
// V tile, the tile's scores per head, and max, sum, correction per head
static size_t flash_shared_floats(int group, int hd) {
    return 2 * (size_t)group * hd + (size_t)SPILL_FLASH_TILE * (hd + 1) + (size_t)SPILL_FLASH_TILE * hd +
           (size_t)group * SPILL_FLASH_TILE + 3 * (size_t)group;
}

__global__ static void __launch_bounds__(FLASH_THREADS)
    flash_kernel(float *out, float *partial, const float *q, const float *const *blocks, int T, int pos0, int n_heads,
                 int group, int hd, int kv_dim, float scale, int splits, int chunk) {
    extern __shared__ float sh[];
    const int sp = blockIdx.x, kvh = blockIdx.y, t = blockIdx.z, gh = group * hd, ks = hd + 1;
    float *q_s = sh, *o_s = q_s + gh, *k_s = o_s + gh, *v_s = k_s + SPILL_FLASH_TILE * ks;
    float *s_s = v_s + SPILL_FLASH_TILE * hd, *m_s = s_s + group * SPILL_FLASH_TILE, *l_s = m_s + group, *c_s = l_s + group;
    const int len = pos0 + t + 1, p0 = sp * chunk, p1 = min(p0 + chunk, len);
    const float *qt = q + ((size_t)t * n_heads + (size_t)kvh * group) * hd;
    for (int i = threadIdx.x; i < gh; i += blockDim.x) q_s[i] = qt[i], o_s[i] = 0;
    for (int g = threadIdx.x; g < group; g += blockDim.x) m_s[g] = -INFINITY, l_s[g] = 0;
    __syncthreads();
    for (int pt = p0; pt < p1; pt += SPILL_FLASH_TILE) {
        const int n = min(SPILL_FLASH_TILE, p1 - pt);
        // the tile's K and V rows, coalesced: consecutive threads read consecutive values of a row
        for (int i = threadIdx.x; i < n * hd; i += blockDim.x) {
            int j = i / hd, d = i % hd, p = pt + j;
            const float *kb = blocks[p / T] + (size_t)(p % T) * kv_dim + (size_t)kvh * hd;
            k_s[j * ks + d] = kb[d];
            v_s[j * hd + d] = kb[(size_t)T * kv_dim + d];
        }
        __syncthreads();
        for (int i = threadIdx.x; i < group * n; i += blockDim.x) {
            int g = i / n, j = i % n;
            float d = 0;
            for (int e = 0; e < hd; e++) d = fmaf(q_s[g * hd + e], k_s[j * ks + e], d);
            s_s[g * SPILL_FLASH_TILE + j] = d * scale;
        }
        __syncthreads();
        for (int g = threadIdx.x; g < group; g += blockDim.x) {
            float *sg = s_s + g * SPILL_FLASH_TILE, mx = m_s[g];
            for (int j = 0; j < n; j++)
                if (sg[j] > mx) mx = sg[j];
            float corr = m_s[g] == -INFINITY ? 0.0f : expf(m_s[g] - mx), sum = 0;
            for (int j = 0; j < n; j++) {
                sg[j] = expf(sg[j] - mx);
                sum += sg[j];
            }
            l_s[g] = l_s[g] * corr + sum, m_s[g] = mx, c_s[g] = corr;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < gh; i += blockDim.x) {
            int g = i / hd, d = i % hd;
            const float *sg = s_s + g * SPILL_FLASH_TILE;
            float acc = o_s[i] * c_s[g];
            for (int j = 0; j < n; j++) acc = fmaf(sg[j], v_s[j * hd + d], acc);
            o_s[i] = acc;
        }
        __syncthreads();
    }
    const size_t r0 = (size_t)t * n_heads + (size_t)kvh * group;
    for (int i = threadIdx.x; i < gh; i += blockDim.x) {
        int g = i / hd, d = i % hd;
        if (splits == 1)
            out[(r0 + g) * hd + d] = o_s[i] / l_s[g];
        else
            partial[((r0 + g) * splits + sp) * hd + d] = o_s[i];
    }
    if (splits > 1) {
        float *ml = partial + (size_t)gridDim.z * n_heads * splits * hd;
        for (int g = threadIdx.x; g < group; g += blockDim.x) {
            ml[2 * ((r0 + g) * splits + sp)] = m_s[g];
            ml[2 * ((r0 + g) * splits + sp) + 1] = l_s[g];
        }
    }
}

// one block per (token, head): the splits' outputs weighed by exp(max - overall max)
__global__ static void flash_combine_kernel(float *out, const float *partial, int rows, int splits, int hd) {
    const size_t r = blockIdx.x;
    const float *ml = partial + (size_t)rows * splits * hd;
    float M = -INFINITY;
    for (int sp = 0; sp < splits; sp++) M = fmaxf(M, ml[2 * (r * splits + sp)]);
    float L = 0;
    for (int sp = 0; sp < splits; sp++) {
        float m = ml[2 * (r * splits + sp)];
        if (m != -INFINITY) L += ml[2 * (r * splits + sp) + 1] * expf(m - M);
    }
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0;
        for (int sp = 0; sp < splits; sp++) {
            float m = ml[2 * (r * splits + sp)];
            if (m != -INFINITY) acc = fmaf(partial[(r * splits + sp) * hd + d], expf(m - M), acc);
        }
        out[r * hd + d] = acc / L;
    }
}

extern "C" int spill_cu_attention(float *out, const float *q, const float *const *blocks, int T, int n_tok, int pos0,
                                  int n_heads, int n_kv_heads, int head_dim, float scale, float *partial, void *stream,
                                  spill_err *err) {
    if (n_tok <= 0 || n_tok > 65535 || pos0 < 0 || T <= 0 || n_heads <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads ||
        head_dim <= 0)
        return spill_err_set(err, "attention: %d tokens at %d, %d heads (%d kv) of %d, blocks of %d", n_tok, pos0, n_heads,
                             n_kv_heads, head_dim, T);
    const int group = n_heads / n_kv_heads, max_len = pos0 + n_tok;
    const int splits = spill_flash_splits(n_tok, n_kv_heads, max_len), chunk = spill_flash_chunk(max_len, splits);
    const size_t shared = sizeof(float) * flash_shared_floats(group, head_dim);
    if (shared > 48 * 1024 && SPILL_CU_CHECK(cudaFuncSetAttribute((const void *)flash_kernel,
                                                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared),
                                             err))
        return -1;
    dim3 grid((unsigned)splits, (unsigned)n_kv_heads, (unsigned)n_tok);
    flash_kernel<<<grid, FLASH_THREADS, shared, (cudaStream_t)stream>>>(out, partial, q, blocks, T, pos0, n_heads, group,
                                                                         head_dim, n_kv_heads * head_dim, scale, splits,
                                                                         chunk);
    SPILL_CU_LAUNCHED("attention");
    if (splits > 1) {
        flash_combine_kernel<<<n_tok * n_heads, FLASH_THREADS, 0, (cudaStream_t)stream>>>(out, partial, n_tok * n_heads,
                                                                                          splits, head_dim);
        SPILL_CU_LAUNCHED("attention: combining the splits");
    }
    return 0;
}
