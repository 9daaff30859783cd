/* The CUDA side of kernels/, callable from C. Compiled only when the build finds nvcc
 * (SPILL_HAVE_CUDA); without it spill_cuda_probe reports that the build has no CUDA. */
#ifndef SPILL_CUDA_H
#define SPILL_CUDA_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spill_cuda_info {
    int device_count;
    int driver_version, runtime_version; /* e.g. 13000 */
    char name[256];                      /* device 0 */
    uint64_t total_mem, free_mem;        /* device 0 */
    int cc_major, cc_minor;
    int concurrent_managed_access, pageable_memory_access, uses_host_page_tables;
} spill_cuda_info;

/* 0: at least one usable device, info filled. -1: none (no driver, no device, driver too old for
 * this runtime), with a message that says which. */
int spill_cuda_probe(spill_cuda_info *info, spill_err *err);

#ifdef __cplusplus
}
#endif
#endif
