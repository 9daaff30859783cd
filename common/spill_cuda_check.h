/* The one check for every CUDA runtime and cuBLAS call: a failure becomes an error that names the
 * call, the runtime's message and the error's name. Include after cuda_runtime_api.h (and
 * cublas_api.h for the cuBLAS form); only the files that call CUDA include it (alloc/'s CUDA
 * backends, kernels/cuda, the GPU benchmark).
 *   if (SPILL_CU_CHECK(cudaMalloc(&p, n), err)) goto fail;   0, or -1 with err set
 *   SPILL_CU_TRY(cudaMalloc(&p, n));                           the same, returning -1 (needs `err`)
 *   SPILL_CU_LAUNCHED("rmsnorm");                              after a kernel launch */
#ifndef SPILL_CUDA_CHECK_H
#define SPILL_CUDA_CHECK_H

#include "spill_common.h"

static inline int spill_cu_check(cudaError_t e, const char *call, spill_err *err) {
    if (e == cudaSuccess) return 0;
    return spill_err_set(err, "%s failed: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define SPILL_CU_CHECK(call, err) spill_cu_check((call), #call, (err))

#define SPILL_CU_TRY(call)                                                                                 \
    do {                                                                                                   \
        if (SPILL_CU_CHECK(call, err)) return -1;                                                          \
    } while (0)

/* after a launch: the launch itself (bad configuration, no kernel image for this GPU) */
#define SPILL_CU_LAUNCHED(what)                                                                            \
    do {                                                                                                   \
        if (spill_cu_check(cudaGetLastError(), what ": kernel launch", err)) return -1;                    \
    } while (0)

#ifdef CUBLAS_API_H_
static inline int spill_cublas_check(cublasStatus_t s, const char *call, spill_err *err) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    return spill_err_set(err, "%s failed: %s", call, cublasGetStatusString(s));
}
#define SPILL_CUBLAS_TRY(call)                                                                             \
    do {                                                                                                   \
        if (spill_cublas_check((call), #call, err)) return -1;                                             \
    } while (0)
#endif

#endif
