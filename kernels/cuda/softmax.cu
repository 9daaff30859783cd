// Row softmax in place, one block per row: max, then the sum of exponentials in double (as the
// CPU twin), then the normalisation.
#include <float.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void softmax_kernel(float *x, int n, float scale) {
    __shared__ float mx[256];
    __shared__ double sm[256];
    float *r = x + (size_t)blockIdx.x * n;
    float m = -FLT_MAX;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        r[i] *= scale;
        m = fmaxf(m, r[i]);
    }
    mx[threadIdx.x] = m;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) mx[threadIdx.x] = fmaxf(mx[threadIdx.x], mx[threadIdx.x + k]);
        __syncthreads();
    }
    m = mx[0];
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        r[i] = expf(r[i] - m);
        s += r[i];
    }
    sm[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) sm[threadIdx.x] += sm[threadIdx.x + k];
        __syncthreads();
    }
    float inv = (float)(1.0 / sm[0]);
    for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] *= inv;
}

extern "C" int spill_cu_softmax(float *x, int rows, int n, float scale, void *stream, spill_err *err) {
    if (rows <= 0 || n <= 0) return spill_err_set(err, "softmax: %d rows of %d", rows, n);
    softmax_kernel<<<rows, 256, 0, (cudaStream_t)stream>>>(x, n, scale);
    SPILL_CU_LAUNCHED("softmax");
    return 0;
}
