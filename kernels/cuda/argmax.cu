// Greedy sampling on the device: one block reduces (value, index) pairs; the lowest index wins ties,
// as the CPU's first-largest scan does.
#include <float.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void argmax_kernel(const float *x, int n, int *out) {
    __shared__ float bv[1024];
    __shared__ int bi[1024];
    float v = -FLT_MAX;
    int idx = n; /* past the end: loses every comparison */
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (x[i] > v || (x[i] == v && i < idx)) v = x[i], idx = i;
    bv[threadIdx.x] = v;
    bi[threadIdx.x] = idx;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) {
            float w = bv[threadIdx.x + k];
            int j = bi[threadIdx.x + k];
            if (w > bv[threadIdx.x] || (w == bv[threadIdx.x] && j < bi[threadIdx.x])) bv[threadIdx.x] = w, bi[threadIdx.x] = j;
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = bi[0] < n ? bi[0] : 0;
}

extern "C" int spill_cu_argmax(const float *x, int n, int *out, void *stream, spill_err *err) {
    if (n <= 0) return spill_err_set(err, "argmax of %d values", n);
    argmax_kernel<<<1, 1024, 0, (cudaStream_t)stream>>>(x, n, out);
    SPILL_CU_LAUNCHED("argmax");
    return 0;
}
