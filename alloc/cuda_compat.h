/* The one place that knows how the CUDA runtime's memory-hint API changed between versions.
 *   CUDA 13:       cudaMemAdvise(ptr, n, advice, struct cudaMemLocation)
 *                  cudaMemPrefetchAsync(ptr, n, struct cudaMemLocation, flags, stream)
 *   CUDA 12.2-12.9: the same shapes are spelt cudaMemAdvise_v2 / cudaMemPrefetchAsync_v2
 *   before 12.2:   an int device, cudaCpuDeviceId (-1) for the host; no host NUMA locations
 * Everything above this header speaks spill_cu_loc. Include after cuda_runtime_api.h. */
#ifndef SPILL_CUDA_COMPAT_H
#define SPILL_CUDA_COMPAT_H

#include <cuda_runtime_api.h>

#include "spill_common.h"
#include "spill_cuda_check.h"

typedef enum spill_cu_loc_kind {
    SPILL_CU_LOC_DEVICE,    /* id = device ordinal */
    SPILL_CU_LOC_HOST,      /* any host memory */
    SPILL_CU_LOC_HOST_NUMA, /* id = host NUMA node */
} spill_cu_loc_kind;

typedef struct spill_cu_loc {
    spill_cu_loc_kind kind;
    int id;
} spill_cu_loc;

#if CUDART_VERSION >= 12020
static inline struct cudaMemLocation spill_cu_loc_native(spill_cu_loc l) {
    struct cudaMemLocation m;
    memset(&m, 0, sizeof m);
    switch (l.kind) {
    case SPILL_CU_LOC_DEVICE: m.type = cudaMemLocationTypeDevice; m.id = l.id; break;
    case SPILL_CU_LOC_HOST: m.type = cudaMemLocationTypeHost; m.id = 0; break;
    case SPILL_CU_LOC_HOST_NUMA: m.type = cudaMemLocationTypeHostNuma; m.id = l.id; break;
    }
    return m;
}
#else
static inline int spill_cu_loc_native(spill_cu_loc l) {
    /* no NUMA-node locations before 12.2: any host location is the CPU */
    return l.kind == SPILL_CU_LOC_DEVICE ? l.id : cudaCpuDeviceId;
}
#endif

static inline cudaError_t spill_cu_advise(const void *p, size_t n, enum cudaMemoryAdvise a, spill_cu_loc l) {
#if CUDART_VERSION >= 13000
    return cudaMemAdvise(p, n, a, spill_cu_loc_native(l));
#elif CUDART_VERSION >= 12020
    return cudaMemAdvise_v2(p, n, a, spill_cu_loc_native(l));
#else
    return cudaMemAdvise(p, n, a, spill_cu_loc_native(l));
#endif
}

static inline cudaError_t spill_cu_prefetch(const void *p, size_t n, spill_cu_loc l, cudaStream_t s) {
#if CUDART_VERSION >= 13000
    return cudaMemPrefetchAsync(p, n, spill_cu_loc_native(l), 0, s);
#elif CUDART_VERSION >= 12020
    return cudaMemPrefetchAsync_v2(p, n, spill_cu_loc_native(l), 0, s);
#else
    return cudaMemPrefetchAsync(p, n, spill_cu_loc_native(l), s);
#endif
}

/* Zero memory where it lives: on the device for HBM (a CPU memset would fault managed pages over to
 * the host, or crash on device memory), on the CPU for host memory (first touch puts pages there). */
static inline int spill_cu_zero(void *p, size_t n, spill_tier tier, spill_err *err) {
    if (tier == SPILL_TIER_HBM) {
        SPILL_CU_TRY(cudaMemset(p, 0, n));
        SPILL_CU_TRY(cudaDeviceSynchronize());
    } else {
        memset(p, 0, n);
    }
    return 0;
}

/* Wait for a queue (a cudaStream_t), or for the whole device when it is NULL. */
static inline int spill_cu_sync(void *queue, spill_err *err) {
    if (queue) SPILL_CU_TRY(cudaStreamSynchronize((cudaStream_t)queue));
    else SPILL_CU_TRY(cudaDeviceSynchronize());
    return 0;
}

#endif
