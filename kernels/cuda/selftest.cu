// A kernel that must run before any other is trusted: it catches a build whose SASS/PTX does not
// fit the GPU (cudaErrorNoKernelImageForDevice) with a message instead of wrong results later.
#include "spill_cuda.h"

#include <cuda_runtime.h>

#define SPILL_CUDA_TRY(call)                                                                                  \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) {                                                                              \
            rc = spill_err_set(err, "%s failed: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
            goto out;                                                                                         \
        }                                                                                                     \
    } while (0)

__global__ static void spill_selftest_kernel(unsigned *out, unsigned n) {
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i * 2654435761u + 12345u;
}

extern "C" int spill_cuda_selftest(int device, spill_err *err) {
    enum { N = 4096 };
    unsigned *d = NULL, h[N];
    int rc = 0;
    SPILL_CUDA_TRY(cudaSetDevice(device));
    SPILL_CUDA_TRY(cudaMalloc(&d, N * sizeof(unsigned)));
    spill_selftest_kernel<<<N / 256, 256>>>(d, N);
    SPILL_CUDA_TRY(cudaGetLastError());
    SPILL_CUDA_TRY(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    for (unsigned i = 0; i < N; i++)
        if (h[i] != i * 2654435761u + 12345u) {
            rc = spill_err_set(err, "the self-test kernel wrote %u at %u, expected %u", h[i], i, i * 2654435761u + 12345u);
            break;
        }
out:
    if (d) cudaFree(d);
    return rc;
}
