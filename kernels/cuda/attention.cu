// Flash-decoding attention over the paged KV cache; the CPU twin is kernels/flash.c, step for step.
// One block per (split of the positions, KV head, tile of up to SPILL_FLASH_QTILE query tokens of one
// sequence: a step of many sequences is one launch over all their tiles, each tile naming its tokens,
// positions and block list in a device array): it
// loads a tile of SPILL_FLASH_TILE K and V rows into shared memory once and scores it against every
// query head of the KV head's group for every token of its tile (causal within the tile), keeping an
// online softmax (running max, running sum, unnormalised output) per row. There is
// no scores scratch: memory is bounded by the model's shape, not by the context (128k fits). At small
// batch the positions are split so that the GPU gets about SPILL_FLASH_BLOCKS blocks; the splits'
// partial results are then weighed together by a second small kernel. The cache's elements are F32,
// F16 or BF16 (the kernel is a template on the type); they are widened to F32 as the tile is loaded,
// so every sum is in F32, as in the twin.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

#define FLASH_THREADS 128

// shared memory, in floats, for `rows` query rows (tokens x group): q and o of the rows, the K tile
// (rows padded by one against bank conflicts), the V tile, the tile's scores per row, and max, sum,
// correction per row
static size_t flash_shared_floats(int rows, int hd) {
    return 2 * (size_t)rows * hd + (size_t)SPILL_FLASH_TILE * (hd + 1) + (size_t)SPILL_FLASH_TILE * hd +
           (size_t)rows * SPILL_FLASH_TILE + 3 * (size_t)rows;
}

template <typename E> __device__ static inline float kv_to_float(E x);
template <> __device__ inline float kv_to_float<float>(float x) { return x; }
template <> __device__ inline float kv_to_float<__half>(__half x) { return __half2float(x); }
template <> __device__ inline float kv_to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

// grid (split, KV head, tile); row qr = ti * group + g is token t0 + ti, head kvh * group + g
template <typename E>
__global__ static void __launch_bounds__(FLASH_THREADS)
    flash_kernel(float *out, float *partial, const float *q, const void *const *table, const spill_flash_tile *tiles,
                 int T, int n_tok, int n_heads, int group, int hd, int kv_dim, float scale, int splits, int chunk) {
    extern __shared__ float sh[];
    const spill_flash_tile tile = tiles[blockIdx.z];
    const void *const *blocks = table + tile.table;
    const int sp = blockIdx.x, kvh = blockIdx.y, t0 = tile.t0;
    const int nt = tile.nt, rows = nt * group, rh = rows * hd, ks = hd + 1;
    float *q_s = sh, *o_s = q_s + rh, *k_s = o_s + rh, *v_s = k_s + SPILL_FLASH_TILE * ks;
    float *s_s = v_s + SPILL_FLASH_TILE * hd, *m_s = s_s + rows * SPILL_FLASH_TILE, *l_s = m_s + rows, *c_s = l_s + rows;
    const int len0 = tile.pos0 + 1, p0 = sp * chunk, p1 = min(p0 + chunk, len0 + nt - 1);
    for (int i = threadIdx.x; i < rh; i += blockDim.x) {
        int ti = i / (group * hd), rest = i % (group * hd);
        q_s[i] = q[((size_t)(t0 + ti) * n_heads + (size_t)kvh * group) * hd + rest];
        o_s[i] = 0;
    }
    for (int r = threadIdx.x; r < rows; r += blockDim.x) m_s[r] = -INFINITY, l_s[r] = 0;
    __syncthreads();
    for (int pt = p0; pt < p1; pt += SPILL_FLASH_TILE) {
        const int n = min(SPILL_FLASH_TILE, p1 - pt);
        // the tile's K and V rows, coalesced: consecutive threads read consecutive values of a row
        for (int i = threadIdx.x; i < n * hd; i += blockDim.x) {
            int j = i / hd, d = i % hd, p = pt + j;
            const E *kb = (const E *)blocks[p / T] + (size_t)(p % T) * kv_dim + (size_t)kvh * hd;
            k_s[j * ks + d] = kv_to_float<E>(kb[d]);
            v_s[j * hd + d] = kv_to_float<E>(kb[(size_t)T * kv_dim + d]);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < rows * n; i += blockDim.x) {
            int r = i / n, j = i % n;
            float d = -INFINITY; // causal: token t0 + r / group sees positions below len0 + r / group
            if (pt + j < len0 + r / group) {
                d = 0;
                for (int e = 0; e < hd; e++) d = fmaf(q_s[r * hd + e], k_s[j * ks + e], d);
                d *= scale;
            }
            s_s[r * SPILL_FLASH_TILE + j] = d;
        }
        __syncthreads();
        for (int r = threadIdx.x; r < rows; r += blockDim.x) {
            float *sr = s_s + r * SPILL_FLASH_TILE, mx = m_s[r];
            for (int j = 0; j < n; j++)
                if (sr[j] > mx) mx = sr[j];
            if (mx == -INFINITY) { // nothing this row may see yet: it stays as it is
                c_s[r] = 1;
                for (int j = 0; j < n; j++) sr[j] = 0;
                continue;
            }
            float corr = m_s[r] == -INFINITY ? 0.0f : expf(m_s[r] - mx), sum = 0;
            for (int j = 0; j < n; j++) {
                sr[j] = expf(sr[j] - mx);
                sum += sr[j];
            }
            l_s[r] = l_s[r] * corr + sum, m_s[r] = mx, c_s[r] = corr;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < rh; i += blockDim.x) {
            int r = i / hd, d = i % hd;
            const float *sr = s_s + r * SPILL_FLASH_TILE;
            float acc = o_s[i] * c_s[r];
            for (int j = 0; j < n; j++) acc = fmaf(sr[j], v_s[j * hd + d], acc);
            o_s[i] = acc;
        }
        __syncthreads();
    }
    float *ml = partial + (size_t)n_tok * n_heads * splits * hd;
    for (int i = threadIdx.x; i < rh; i += blockDim.x) {
        int r = i / hd, d = i % hd;
        size_t row = (size_t)(t0 + r / group) * n_heads + (size_t)kvh * group + r % group;
        if (splits == 1)
            out[row * hd + d] = o_s[i] / l_s[r];
        else
            partial[(row * splits + sp) * hd + d] = o_s[i];
    }
    if (splits > 1)
        for (int r = threadIdx.x; r < rows; r += blockDim.x) {
            size_t row = (size_t)(t0 + r / group) * n_heads + (size_t)kvh * group + r % group;
            ml[2 * (row * splits + sp)] = m_s[r];
            ml[2 * (row * splits + sp) + 1] = l_s[r];
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

// one element type's launch of the flash kernel (its shared memory raised past 48 KiB when needed)
template <typename E>
static int flash_launch(dim3 grid, size_t shared, cudaStream_t stream, float *out, float *partial, const float *q,
                        const void *const *blocks, const spill_flash_tile *tiles, int T, int n_tok, int n_heads, int group,
                        int hd, int kv_dim, float scale, int splits, int chunk, spill_err *err) {
    if (shared > 48 * 1024 && SPILL_CU_CHECK(cudaFuncSetAttribute((const void *)flash_kernel<E>,
                                                                  cudaFuncAttributeMaxDynamicSharedMemorySize, (int)shared),
                                             err))
        return -1;
    flash_kernel<E><<<grid, FLASH_THREADS, shared, stream>>>(out, partial, q, blocks, tiles, T, n_tok, n_heads, group,
                                                             hd, kv_dim, scale, splits, chunk);
    SPILL_CU_LAUNCHED("attention");
    return 0;
}

extern "C" int spill_cu_attention(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T,
                                  const spill_flash_tile *tiles, int n_tiles, int n_tok, int max_len, int n_heads,
                                  int n_kv_heads, int head_dim, float scale, float *partial, void *stream, spill_err *err) {
    if (n_tiles <= 0 || n_tiles > 65535 || n_tiles > n_tok || max_len <= 0 || T <= 0 || n_heads <= 0 || n_kv_heads <= 0 ||
        n_heads % n_kv_heads || head_dim <= 0)
        return spill_err_set(err, "attention: %d tiles of %d tokens, %d positions, %d heads (%d kv) of %d, blocks of %d",
                             n_tiles, n_tok, max_len, n_heads, n_kv_heads, head_dim, T);
    if (kv_type != SPILL_DT_F32 && kv_type != SPILL_DT_F16 && kv_type != SPILL_DT_BF16)
        return spill_err_set(err, "attention: a KV cache of %s; f32, f16 or bf16", spill_dtype_name(kv_type));
    const int group = n_heads / n_kv_heads;
    const int splits = spill_flash_splits(n_tiles, n_kv_heads, max_len), chunk = spill_flash_chunk(max_len, splits);
    /* the widest tile: every tile holds a token, so none holds more than the tokens the others leave */
    const int widest = min(SPILL_FLASH_QTILE, n_tok - n_tiles + 1);
    const size_t shared = sizeof(float) * flash_shared_floats(widest * group, head_dim);
    dim3 grid((unsigned)splits, (unsigned)n_kv_heads, (unsigned)n_tiles);
    cudaStream_t st = (cudaStream_t)stream;
    const int kv_dim = n_kv_heads * head_dim;
    int rc = kv_type == SPILL_DT_F16
                 ? flash_launch<__half>(grid, shared, st, out, partial, q, blocks, tiles, T, n_tok, n_heads, group, head_dim,
                                        kv_dim, scale, splits, chunk, err)
             : kv_type == SPILL_DT_BF16
                 ? flash_launch<__nv_bfloat16>(grid, shared, st, out, partial, q, blocks, tiles, T, n_tok, n_heads, group,
                                               head_dim, kv_dim, scale, splits, chunk, err)
                 : flash_launch<float>(grid, shared, st, out, partial, q, blocks, tiles, T, n_tok, n_heads, group, head_dim,
                                       kv_dim, scale, splits, chunk, err);
    if (rc) return -1;
    if (splits > 1) {
        flash_combine_kernel<<<n_tok * n_heads, FLASH_THREADS, 0, (cudaStream_t)stream>>>(out, partial, n_tok * n_heads,
                                                                                          splits, head_dim);
        SPILL_CU_LAUNCHED("attention: combining the splits");
    }
    return 0;
}
