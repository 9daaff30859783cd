// Quantized weights on the GPU, as the file holds them (see kernels/spill_kernels.h: spill_gemv and
// spill_dequant_bf16 are the CPU twins, kernels/gemv.c).
// Decode (a few tokens): a fused dequantize-GEMV. Decode reads every weight once per token, so bytes
// are speed: a Q4 weight read as Q4 moves a quarter of what its F16 expansion would. One warp per row;
// lane L decodes pieces L, L+32, ... of 8 values (kernels/cuda/dequant.cuh) into registers and
// multiplies them with each token's activations; the lanes are summed by a butterfly of shuffles.
// A warp's 32 lanes thus read 256 consecutive values of the row and of each token's activations at a
// time (one Q4_K super-block; the activations as two float4 loads a lane where they are aligned).
// Prefill (many tokens): a weight is reused by every token, so rows are expanded to BF16 tiles that
// cuBLAS multiplies (spill_cu_gemm_ld); BF16 because F16 overflows past 65504.
#include <cuda_bf16.h>

#include "cuda_check.cuh"
#include "dequant.cuh"
#include "spill_cuda_ops.h"

#define GEMV_WARPS 4

template <int NT>
__global__ static void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(float *out, long long ldo, const uint8_t *w, int type, long long rows, long long cols, size_t rb,
                const float *x, int xvec) {
    const long long r = (long long)blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (r >= rows) return; // a whole warp leaves together: the shuffles below see full warps
    const uint8_t *row = w + (size_t)r * rb;
    const long long np = (cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK;
    float acc[NT], v[SPILL_DQ_CHUNK], xv[SPILL_DQ_CHUNK];
    for (int t = 0; t < NT; t++) acc[t] = 0;
    for (long long c = lane; c < np; c += 32) {
        int n = spill_dq_chunk(type, row, cols, c, v);
        for (int t = 0; t < NT; t++) {
            const float *xc = x + (size_t)t * cols + (size_t)c * SPILL_DQ_CHUNK;
            if (xvec) { // 16-byte aligned, whole pieces: two 16-byte loads
                const float4 a = ((const float4 *)xc)[0], b = ((const float4 *)xc)[1];
                xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w, xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
            } else {
#pragma unroll
                for (int j = 0; j < SPILL_DQ_CHUNK; j++) xv[j] = j < n ? xc[j] : 0.0f;
            }
            float a = acc[t];
#pragma unroll
            for (int j = 0; j < SPILL_DQ_CHUNK; j++) // constant indices keep v in registers
                if (j < n) a = fmaf(v[j], xv[j], a);
            acc[t] = a;
        }
    }
    for (int off = 16; off; off >>= 1)
        for (int t = 0; t < NT; t++) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
    if (lane == 0)
        for (int t = 0; t < NT; t++) out[(size_t)t * ldo + r] = acc[t];
}

template <int NT>
static void gemv_launch(float *out, long long ldo, const uint8_t *w, int type, long long rows, long long cols, size_t rb,
                        const float *x, cudaStream_t stream) {
    const int xvec = ((uintptr_t)x & 15) == 0 && cols % SPILL_DQ_CHUNK == 0;
    gemv_kernel<NT><<<spill_cu_blocks(rows, GEMV_WARPS), GEMV_WARPS * 32, 0, stream>>>(out, ldo, w, type, rows, cols, rb, x,
                                                                                        xvec);
}

static int check_shape(const char *what, spill_dtype type, int64_t rows, int64_t cols, size_t *rb, spill_err *err) {
    *rb = (size_t)spill_dtype_row_bytes(type, (uint64_t)cols);
    if (!spill_dq_supported(type) || !*rb || rows <= 0)
        return spill_err_set(err, "%s: %lld x %lld %s weights are not supported on the GPU", what, (long long)rows,
                             (long long)cols, spill_dtype_name(type));
    return 0;
}

extern "C" int spill_cu_gemv(float *out, int64_t ldo, const void *w, spill_dtype type, int64_t rows, int64_t cols,
                             const float *x, int n_tok, void *stream, spill_err *err) {
    size_t rb;
    if (check_shape("gemv", type, rows, cols, &rb, err)) return -1;
    if (n_tok < 1 || n_tok > SPILL_GEMV_MAX_TOK || ldo < rows)
        return spill_err_set(err, "gemv: %d tokens (1..%d), output rows %lld apart for %lld rows", n_tok, SPILL_GEMV_MAX_TOK,
                             (long long)ldo, (long long)rows);
    const uint8_t *wb = (const uint8_t *)w;
    cudaStream_t st = (cudaStream_t)stream;
    switch (n_tok) { // one kernel per token count: the accumulators stay in registers
    case 1: gemv_launch<1>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    case 2: gemv_launch<2>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    case 3: gemv_launch<3>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    case 4: gemv_launch<4>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    case 5: gemv_launch<5>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    case 6: gemv_launch<6>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    case 7: gemv_launch<7>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    default: gemv_launch<8>(out, ldo, wb, type, rows, cols, rb, x, st); break;
    }
    static_assert(SPILL_GEMV_MAX_TOK == 8, "one case per token count");
    SPILL_CU_LAUNCHED("gemv");
    return 0;
}

// one thread per piece of 8 values
__global__ static void dequant_bf16_kernel(__nv_bfloat16 *out, const uint8_t *w, int type, long long rows, long long cols,
                                           size_t rb) {
    const long long nch = (cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK;
    const long long k = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= rows * nch) return;
    const long long r = k / nch, c = k % nch;
    float v[SPILL_DQ_CHUNK];
    int n = spill_dq_chunk(type, w + (size_t)r * rb, cols, c, v);
    __nv_bfloat16 *o = out + (size_t)r * cols + (size_t)c * SPILL_DQ_CHUNK;
#pragma unroll
    for (int j = 0; j < SPILL_DQ_CHUNK; j++)
        if (j < n) o[j] = __float2bfloat16_rn(v[j]);
}

extern "C" int spill_cu_dequant_bf16(void *out, const void *w, spill_dtype type, int64_t rows, int64_t cols, void *stream,
                                     spill_err *err) {
    size_t rb;
    if (check_shape("dequant_bf16", type, rows, cols, &rb, err)) return -1;
    long long n = rows * ((cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK);
    dequant_bf16_kernel<<<spill_cu_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>((__nv_bfloat16 *)out, (const uint8_t *)w,
                                                                                   (int)type, rows, cols, rb);
    SPILL_CU_LAUNCHED("dequant_bf16");
    return 0;
}
