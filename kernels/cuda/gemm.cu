// Weight matmuls through cuBLAS: W (rows x cols, row-major, F16, BF16 or F32) times the tokens' F32
// activations converted to W's type, accumulated in FP32 (cublasGemmEx; F32 weights without TF32).
// Row-major W is column-major W^T, so out^T (rows x n_tok) = W x^T is one GEMM with W transposed.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

struct spill_cu_blas {
    cublasHandle_t h;
};

__global__ static void to_f16(__half *o, const float *x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) o[i] = __float2half_rn(x[i]);
}

__global__ static void to_bf16(__nv_bfloat16 *o, const float *x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) o[i] = __float2bfloat16_rn(x[i]);
}

extern "C" int spill_cu_blas_create(spill_cu_blas **out, spill_err *err) {
    *out = nullptr;
    spill_cu_blas *b = (spill_cu_blas *)calloc(1, sizeof *b);
    if (!b) return spill_err_set(err, "out of memory");
    cublasStatus_t s = cublasCreate(&b->h);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(b);
        return spill_err_set(err, "cublasCreate failed: %s", cublasGetStatusString(s));
    }
    *out = b;
    return 0;
}

extern "C" void spill_cu_blas_destroy(spill_cu_blas *b) {
    if (!b) return;
    cublasDestroy(b->h);
    free(b);
}

extern "C" int spill_cu_gemm(spill_cu_blas *b, float *out, const void *w, spill_dtype wtype, int64_t rows, int64_t cols,
                             const float *x, int n_tok, void *scratch, void *stream, spill_err *err) {
    return spill_cu_gemm_ld(b, out, rows, w, wtype, rows, cols, x, n_tok, scratch, stream, err);
}

extern "C" int spill_cu_gemm_ld(spill_cu_blas *b, float *out, int64_t ldo, const void *w, spill_dtype wtype, int64_t rows,
                                int64_t cols, const float *x, int n_tok, void *scratch, void *stream, spill_err *err) {
    if (wtype != SPILL_DT_F16 && wtype != SPILL_DT_BF16 && wtype != SPILL_DT_F32)
        return spill_err_set(err, "gemm: %s weights; cuBLAS takes F32, F16 or BF16 (quantized weights are expanded "
                                  "at load)", spill_dtype_name(wtype));
    if (rows <= 0 || cols <= 0 || n_tok <= 0 || rows > INT32_MAX || cols > INT32_MAX || ldo < rows || ldo > INT32_MAX)
        return spill_err_set(err, "gemm: %lld x %lld by %d tokens into rows of %lld", (long long)rows, (long long)cols, n_tok,
                             (long long)ldo);
    cudaStream_t s = (cudaStream_t)stream;
    long long nx = (long long)n_tok * cols;
    const void *act = x;
    cudaDataType_t t = CUDA_R_32F;
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F_PEDANTIC; /* F32 weights: no TF32, so it matches the CPU */
    if (wtype != SPILL_DT_F32) {
        if (wtype == SPILL_DT_F16) to_f16<<<spill_cu_blocks(nx, 256), 256, 0, s>>>((__half *)scratch, x, nx);
        else to_bf16<<<spill_cu_blocks(nx, 256), 256, 0, s>>>((__nv_bfloat16 *)scratch, x, nx);
        SPILL_CU_LAUNCHED("gemm: activation conversion");
        act = scratch;
        t = wtype == SPILL_DT_F16 ? CUDA_R_16F : CUDA_R_16BF;
        ct = CUBLAS_COMPUTE_32F;
    }
    const float one = 1.0f, zero = 0.0f;
    SPILL_CUBLAS_TRY(cublasSetStream(b->h, s));
    SPILL_CUBLAS_TRY(cublasGemmEx(b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, n_tok, (int)cols, &one, w, t, (int)cols,
                                    act, t, (int)cols, &zero, out, CUDA_R_32F, (int)ldo, ct, CUBLAS_GEMM_DEFAULT));
    return 0;
}
