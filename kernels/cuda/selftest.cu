// A kernel that must run before any other is trusted: it catches a build whose SASS/PTX does not
// fit the GPU (cudaErrorNoKernelImageForDevice) with a message instead of wrong results later.
#include "spill_cuda.h"

#include <cuda_runtime.h>

#include "spill_cuda_check.h"


__global__ static void spill_selftest_kernel(unsigned *out, unsigned n) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i * 2654435761u + 12345u;
}

extern "C" int spill_cuda_selftest(int device, spill_err *err) {
    enum { N = 4096 };
    unsigned *d = NULL, h[N];
    int rc = 0;
    if ((rc = SPILL_CU_CHECK(cudaSetDevice(device), err))) goto out;
    if ((rc = SPILL_CU_CHECK(cudaMalloc(&d, N * sizeof(unsigned)), err))) goto out;
    spill_selftest_kernel<<<N / 256, 256>>>(d, N);
    if ((rc = SPILL_CU_CHECK(cudaGetLastError(), err))) goto out;
    if ((rc = SPILL_CU_CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), err))) goto out;
    for (unsigned i = 0; i < N; i++)
        if (h[i] != i * 2654435761u + 12345u) {
            rc = spill_err_set(err, "the self-test kernel wrote %u at %u, expected %u", h[i], i, i * 2654435761u + 12345u);
            break;
        }
out:
    if (d) cudaFree(d);
    return rc;
}
