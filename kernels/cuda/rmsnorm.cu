// RMSNorm: one block per row; the sum of squares reduced in double, as the CPU twin does. The rows
// may be gathered through an index array (the head's kept tokens, in one launch).
#include "block_reduce.cuh"
#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void rmsnorm_kernel(float *out, const float *x, const int *rows, const float *w, int dim, float eps) {
    const float *xr = x + (size_t)(rows ? rows[blockIdx.x] : blockIdx.x) * dim;
    float *yr = out + (size_t)blockIdx.x * dim;
    double s = 0;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += (double)(xr[i] * xr[i]);
    s = spill_block_sum(s);
    float scale = 1.0f / sqrtf((float)(s / dim) + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = (xr[i] * scale) * w[i];
}

extern "C" int spill_cu_rmsnorm(float *out, const float *x, const float *w, int n_rows, int dim, float eps, void *stream,
                                spill_err *err) {
    if (n_rows <= 0 || dim <= 0) return spill_err_set(err, "rmsnorm: %d rows of %d", n_rows, dim);
    rmsnorm_kernel<<<n_rows, SPILL_CU_ROW_THREADS, 0, (cudaStream_t)stream>>>(out, x, NULL, w, dim, eps);
    SPILL_CU_LAUNCHED("rmsnorm");
    return 0;
}

extern "C" int spill_cu_rmsnorm_rows(float *out, const float *x, const int *rows, const float *w, int n_rows, int dim,
                                     float eps, void *stream, spill_err *err) {
    if (n_rows <= 0 || dim <= 0) return spill_err_set(err, "rmsnorm: %d rows of %d", n_rows, dim);
    rmsnorm_kernel<<<n_rows, SPILL_CU_ROW_THREADS, 0, (cudaStream_t)stream>>>(out, x, rows, w, dim, eps);
    SPILL_CU_LAUNCHED("rmsnorm");
    return 0;
}
