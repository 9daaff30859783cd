// Reductions over one thread block, shared by the kernels that work a row per block (RMSNorm,
// softmax, attention). blockDim.x must be a power of two of at most SPILL_CU_ROW_THREADS; every
// thread of the block calls them and every thread gets the block's result. Sums are in double, as
// the CPU twins keep them.
#pragma once
#include <float.h>

#define SPILL_CU_ROW_THREADS 256

__device__ inline float spill_block_max(float v) {
    __shared__ float buf[SPILL_CU_ROW_THREADS];
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + k]);
        __syncthreads();
    }
    float r = buf[0];
    __syncthreads(); // every thread has read it before the next call writes buf again
    return r;
}

__device__ inline double spill_block_sum(double v) {
    __shared__ double buf[SPILL_CU_ROW_THREADS];
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k >>= 1) {
        if ((int)threadIdx.x < k) buf[threadIdx.x] += buf[threadIdx.x + k];
        __syncthreads();
    }
    double r = buf[0];
    __syncthreads();
    return r;
}

// r[0..n) becomes its softmax, as spill_softmax does after scaling: max, exp(r - max), the sum in
// double, each value times the float of 1/sum. Ends with the block synchronized, so that any thread
// may then read any r[i].
__device__ inline void spill_block_softmax(float *r, int n) {
    float m = -FLT_MAX;
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, r[i]);
    m = spill_block_max(m);
    double s = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        r[i] = expf(r[i] - m);
        s += r[i];
    }
    float inv = (float)(1.0 / spill_block_sum(s));
    for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] *= inv;
    __syncthreads();
}
