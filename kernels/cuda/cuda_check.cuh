// One check for every CUDA and cuBLAS call in kernels/cuda: a failure becomes an error naming the call.
#pragma once
#include <cuda_runtime.h>

#include "spill_common.h"

#define SPILL_CU_CHECK(call)                                                                                   \
    do {                                                                                                       \
        cudaError_t e_ = (call);                                                                               \
        if (e_ != cudaSuccess)                                                                                 \
            return spill_err_set(err, "%s failed: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
    } while (0)

// after a launch: the launch itself (bad configuration, no kernel image for this GPU)
#define SPILL_CU_LAUNCHED(what)                                                                                \
    do {                                                                                                       \
        cudaError_t e_ = cudaGetLastError();                                                                   \
        if (e_ != cudaSuccess)                                                                                 \
            return spill_err_set(err, "%s: kernel launch failed: %s (%s)", what, cudaGetErrorString(e_),        \
                                 cudaGetErrorName(e_));                                                        \
    } while (0)

static inline unsigned spill_cu_blocks(long long n, int threads) { return (unsigned)((n + threads - 1) / threads); }
