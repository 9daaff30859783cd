// The k largest logits on the device, for top-k sampling without copying the vocabulary back: k
// rounds of one block's (value, index) reduction, each round taking the best element ranked below the
// previous round's winner. Order: larger value first, the lower index first among equals (the CPU
// twin spill_topk's order). NaN counts as -inf. O(k * n / 1024) per thread: meant for
// k up to a few hundred.
#include <float.h>

#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

// (v, i) ranks before (w, j)
__device__ static bool before(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

__global__ static void topk_kernel(const float *x, int n, int k, int *idx, float *val) {
    __shared__ float bv[1024];
    __shared__ int bi[1024];
    __shared__ float pv;
    __shared__ int pi;
    if (threadIdx.x == 0) pv = FLT_MAX, pi = -1;
    __syncthreads();
    for (int r = 0; r < k; r++) {
        /* -inf, not -FLT_MAX: a masked logit (-inf) must still beat "nothing", or with fewer than k
           finite values a round would return index n, past the end (issue 21) */
        float v = -INFINITY;
        int id = n; /* past the end: loses every comparison */
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float xi = x[i];
            if (xi != xi) xi = -INFINITY; /* NaN */
            if (before(pv, pi, xi, i) && before(xi, i, v, id)) v = xi, id = i;
        }
        bv[threadIdx.x] = v;
        bi[threadIdx.x] = id;
        __syncthreads();
        for (int s = blockDim.x / 2; s > 0; s >>= 1) {
            if ((int)threadIdx.x < s && before(bv[threadIdx.x + s], bi[threadIdx.x + s], bv[threadIdx.x], bi[threadIdx.x]))
                bv[threadIdx.x] = bv[threadIdx.x + s], bi[threadIdx.x] = bi[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            idx[r] = bi[0];
            val[r] = bv[0];
            pv = bv[0], pi = bi[0];
        }
        __syncthreads();
    }
}

extern "C" int spill_cu_topk(const float *x, int n, int k, int *idx, float *val, void *stream, spill_err *err) {
    if (n <= 0 || k <= 0 || k > n) return spill_err_set(err, "top-k: %d of %d values", k, n);
    topk_kernel<<<1, 1024, 0, (cudaStream_t)stream>>>(x, n, k, idx, val);
    SPILL_CU_LAUNCHED("topk");
    return 0;
}
