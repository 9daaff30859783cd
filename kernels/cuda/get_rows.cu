// Embedding lookup: rows of a table, dequantized to F32 (the token embedding may be quantized). One
// thread per piece of 8 values, decoded by kernels/cuda/dequant.cuh as the GEMV decodes them.
#include "cuda_check.cuh"
#include "dequant.cuh"
#include "spill_cuda_ops.h"

__global__ static void get_rows_kernel(float *out, const uint8_t *table, int type, long long cols, size_t row_bytes,
                                       const int *ids, int n) {
    const long long nch = (cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK;
    long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (k >= (long long)n * nch) return;
    int r = (int)(k / nch);
    long long c = k % nch;
    float v[SPILL_DQ_CHUNK];
    int m = spill_dq_chunk(type, table + (size_t)ids[r] * row_bytes, cols, c, v);
    float *o = out + (size_t)r * cols + (size_t)c * SPILL_DQ_CHUNK;
#pragma unroll
    for (int j = 0; j < SPILL_DQ_CHUNK; j++)
        if (j < m) o[j] = v[j];
}

extern "C" int spill_cu_get_rows(float *out, const void *table, spill_dtype type, int64_t cols, const int *ids, int n,
                                 void *stream, spill_err *err) {
    if (!spill_dq_supported(type))
        return spill_err_set(err, "get_rows: type %s is not supported on the GPU", spill_dtype_name(type));
    size_t rb = (size_t)spill_dtype_row_bytes(type, (uint64_t)cols);
    if (!rb || n <= 0) return spill_err_set(err, "get_rows: %d rows of %lld %s values", n, (long long)cols,
                                            spill_dtype_name(type));
    long long total = (long long)n * ((cols + SPILL_DQ_CHUNK - 1) / SPILL_DQ_CHUNK);
    get_rows_kernel<<<spill_cu_blocks(total, 256), 256, 0, (cudaStream_t)stream>>>(out, (const uint8_t *)table, (int)type,
                                                                                   cols, rb, ids, n);
    SPILL_CU_LAUNCHED("get_rows");
    return 0;
}
