// Row softmax in place, one block per row: the scale, then the block softmax (max, the sum of
// exponentials in double as the CPU twin, the normalisation).
#include "block_reduce.cuh"
#include "cuda_check.cuh"
#include "spill_cuda_ops.h"

__global__ static void softmax_kernel(float *x, int n, float scale) {
    float *r = x + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] *= scale; // each thread reads back only its own
    spill_block_softmax(r, n);
}

extern "C" int spill_cu_softmax(float *x, int rows, int n, float scale, void *stream, spill_err *err) {
    if (rows <= 0 || n <= 0) return spill_err_set(err, "softmax: %d rows of %d", rows, n);
    softmax_kernel<<<rows, SPILL_CU_ROW_THREADS, 0, (cudaStream_t)stream>>>(x, n, scale);
    SPILL_CU_LAUNCHED("softmax");
    return 0;
}
