// Device discovery: the first CUDA code that runs, so every call is checked and every failure
// becomes a message rather than an abort. Platform facts come from attributes, never from names.
#include "spill_cuda.h"

#include <cuda_runtime.h>

#define SPILL_CUDA_TRY(call)                                                                          \
    do {                                                                                              \
        cudaError_t e_ = (call);                                                                      \
        if (e_ != cudaSuccess)                                                                        \
            return spill_err_set(err, "%s failed: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
    } while (0)

extern "C" int spill_cuda_probe(spill_cuda_info *info, spill_err *err) {
    memset(info, 0, sizeof *info);
    SPILL_CUDA_TRY(cudaRuntimeGetVersion(&info->runtime_version));
    cudaError_t e = cudaDriverGetVersion(&info->driver_version);
    if (e != cudaSuccess || info->driver_version == 0)
        return spill_err_set(err, "no CUDA driver is installed; spill runs on the CPU");
    if (info->driver_version < info->runtime_version)
        return spill_err_set(err, "the CUDA driver supports CUDA %d.%d but spill was built with CUDA %d.%d; update the "
                                  "driver or run on the CPU",
                             info->driver_version / 1000, info->driver_version % 1000 / 10,
                             info->runtime_version / 1000, info->runtime_version % 1000 / 10);
    e = cudaGetDeviceCount(&info->device_count);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && info->device_count == 0))
        return spill_err_set(err, "no CUDA device is present; spill runs on the CPU");
    if (e != cudaSuccess)
        return spill_err_set(err, "cudaGetDeviceCount failed: %s; spill runs on the CPU", cudaGetErrorString(e));
    cudaDeviceProp p;
    SPILL_CUDA_TRY(cudaGetDeviceProperties(&p, 0));
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    SPILL_CUDA_TRY(cudaDeviceGetAttribute(&info->concurrent_managed_access, cudaDevAttrConcurrentManagedAccess, 0));
    SPILL_CUDA_TRY(cudaDeviceGetAttribute(&info->pageable_memory_access, cudaDevAttrPageableMemoryAccess, 0));
    SPILL_CUDA_TRY(cudaDeviceGetAttribute(&info->uses_host_page_tables,
                                          cudaDevAttrPageableMemoryAccessUsesHostPageTables, 0));
    size_t fr = 0, tot = 0;
    SPILL_CUDA_TRY(cudaSetDevice(0));
    SPILL_CUDA_TRY(cudaMemGetInfo(&fr, &tot));
    info->free_mem = fr;
    info->total_mem = tot;
    return 0;
}
