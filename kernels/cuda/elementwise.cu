// Element-wise ops: SwiGLU (silu(gate) * up), the residual add and a bias added to every row.
#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void swiglu_kernel(float *out, const float *g, const float *u, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ static void add_kernel(float *out, const float *x, long long n) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] += x[i];
}

__global__ static void add_rows_kernel(float *out, const float *bias, long long n, int cols) {
    long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    if (i < n) out[i] += bias[i % cols];
}

extern "C" int spill_cu_swiglu(float *out, const float *gate, const float *up, int64_t n, void *stream, spill_err *err) {
    if (n <= 0) return 0;
    swiglu_kernel<<<spill_cu_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(out, gate, up, n);
    SPILL_CU_LAUNCHED("swiglu");
    return 0;
}

extern "C" int spill_cu_add(float *out, const float *x, int64_t n, void *stream, spill_err *err) {
    if (n <= 0) return 0;
    add_kernel<<<spill_cu_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(out, x, n);
    SPILL_CU_LAUNCHED("add");
    return 0;
}

extern "C" int spill_cu_add_rows(float *out, const float *bias, int rows, int cols, void *stream, spill_err *err) {
    long long n = (long long)rows * cols;
    if (n <= 0) return 0;
    add_rows_kernel<<<spill_cu_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(out, bias, n, cols);
    SPILL_CU_LAUNCHED("add_rows");
    return 0;
}
