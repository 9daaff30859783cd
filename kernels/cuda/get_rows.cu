// Embedding lookup: rows of a table, dequantized to F32 (the token embedding may be quantized). One
// thread per output value; the block formats are those of kernels/spill_kernels.h.
#include <cuda_fp16.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__device__ static float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ static float bf2f(uint16_t h) { return __uint_as_float((unsigned)h << 16); }

__global__ static void get_rows_kernel(float *out, const uint8_t *table, int type, long long cols, size_t row_bytes,
                                       const int *ids, int n) {
    long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (k >= (long long)n * cols) return;
    int r = (int)(k / cols);
    long long c = k % cols;
    const uint8_t *row = table + (size_t)ids[r] * row_bytes;
    float v;
    switch (type) {
    case SPILL_DT_F32: v = ((const float *)row)[c]; break;
    case SPILL_DT_F16: v = h2f(((const uint16_t *)row)[c]); break;
    case SPILL_DT_BF16: v = bf2f(((const uint16_t *)row)[c]); break;
    case SPILL_DT_Q8_0: {
        const spill_block_q8_0 *b = (const spill_block_q8_0 *)row + c / SPILL_QK;
        v = h2f(b->d) * (float)b->qs[c % SPILL_QK];
        break;
    }
    case SPILL_DT_Q4_0: {
        const spill_block_q4_0 *b = (const spill_block_q4_0 *)row + c / SPILL_QK;
        int j = (int)(c % SPILL_QK);
        int q = j < 16 ? (b->qs[j] & 15) : (b->qs[j - 16] >> 4);
        v = h2f(b->d) * (float)(q - 8);
        break;
    }
    default: { /* Q4_1 */
        const spill_block_q4_1 *b = (const spill_block_q4_1 *)row + c / SPILL_QK;
        int j = (int)(c % SPILL_QK);
        int q = j < 16 ? (b->qs[j] & 15) : (b->qs[j - 16] >> 4);
        v = h2f(b->d) * (float)q + h2f(b->m);
        break;
    }
    }
    out[k] = v;
}

extern "C" int spill_cu_get_rows(float *out, const void *table, spill_dtype type, int64_t cols, const int *ids, int n,
                                 void *stream, spill_err *err) {
    if (type != SPILL_DT_F32 && type != SPILL_DT_F16 && type != SPILL_DT_BF16 && type != SPILL_DT_Q8_0 &&
        type != SPILL_DT_Q4_0 && type != SPILL_DT_Q4_1)
        return spill_err_set(err, "get_rows: type %s is not supported on the GPU", spill_dtype_name(type));
    size_t rb = (size_t)spill_dtype_row_bytes(type, (uint64_t)cols);
    if (!rb || n <= 0) return spill_err_set(err, "get_rows: %d rows of %lld %s values", n, (long long)cols,
                                            spill_dtype_name(type));
    long long total = (long long)n * cols;
    get_rows_kernel<<<spill_cu_blocks(total, 256), 256, 0, (cudaStream_t)stream>>>(out, (const uint8_t *)table, (int)type,
                                                                                   cols, rb, ids, n);
    SPILL_CU_LAUNCHED("get_rows");
    return 0;
}
