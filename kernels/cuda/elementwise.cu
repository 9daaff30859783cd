// Element-wise ops: SwiGLU (silu(gate) * up) and the residual add.
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
