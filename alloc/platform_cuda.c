/* Device discovery through the CUDA runtime. Every call is checked; every failure becomes a
 * message (no driver, driver older than the runtime, no device) rather than an abort. Platform facts
 * come from attributes, never from device names. */
#include "spill_platform.h"

#include <cuda_runtime_api.h>

#include "cuda_compat.h"

int spill_gpu_count(int *n, spill_err *err) {
    *n = 0;
    int rt = 0, drv = 0;
    SPILL_CU_TRY(cudaRuntimeGetVersion(&rt));
    cudaError_t e = cudaDriverGetVersion(&drv);
    if (e != cudaSuccess || drv == 0)
        return spill_err_set(err, "no CUDA driver is installed; spill runs on the CPU (--device cpu)");
    if (drv < rt)
        return spill_err_set(err, "the CUDA driver supports CUDA %d.%d but spill was built with CUDA %d.%d; update "
                                  "the driver or run on the CPU (--device cpu)",
                             drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    e = cudaGetDeviceCount(n);
    if (e == cudaErrorNoDevice || (e == cudaSuccess && *n == 0)) {
        *n = 0;
        return spill_err_set(err, "no CUDA device is present; spill runs on the CPU (--device cpu)");
    }
    if (e != cudaSuccess) {
        *n = 0;
        return spill_err_set(err, "cudaGetDeviceCount failed: %s; spill runs on the CPU (--device cpu)",
                             cudaGetErrorString(e));
    }
    return 0;
}

static int attr(int *v, enum cudaDeviceAttr a, int dev, const char *what, spill_err *err) {
    cudaError_t e = cudaDeviceGetAttribute(v, a, dev);
    if (e == cudaErrorInvalidValue) { /* an attribute this driver does not know */
        *v = -1;
        (void)cudaGetLastError(); /* absorbed: leave no error for the next unrelated check (issue 21) */
        return 0;
    }
    if (e != cudaSuccess)
        return spill_err_set(err, "cudaDeviceGetAttribute(%s, device %d) failed: %s", what, dev, cudaGetErrorString(e));
    return 0;
}

int spill_gpu_query(int device, spill_gpu_info *g, spill_err *err) {
    memset(g, 0, sizeof *g);
    int n;
    if (spill_gpu_count(&n, err)) return -1;
    if (device < 0 || device >= n)
        return spill_err_set(err, "CUDA device %d requested but there %s %d (0..%d)", device, n == 1 ? "is" : "are", n,
                             n - 1);
    g->device = device;
    SPILL_CU_TRY(cudaRuntimeGetVersion(&g->runtime_version));
    SPILL_CU_TRY(cudaDriverGetVersion(&g->driver_version));
    struct cudaDeviceProp p;
    SPILL_CU_TRY(cudaGetDeviceProperties(&p, device));
    snprintf(g->name, sizeof g->name, "%s", p.name);
    g->cc_major = p.major;
    g->cc_minor = p.minor;
    SPILL_CU_TRY(cudaDeviceGetPCIBusId(g->pci_bus_id, (int)sizeof g->pci_bus_id, device));
    if (attr(&g->concurrent_managed_access, cudaDevAttrConcurrentManagedAccess, device, "ConcurrentManagedAccess", err) ||
        attr(&g->pageable_memory_access, cudaDevAttrPageableMemoryAccess, device, "PageableMemoryAccess", err) ||
        attr(&g->uses_host_page_tables, cudaDevAttrPageableMemoryAccessUsesHostPageTables, device,
             "PageableMemoryAccessUsesHostPageTables", err) ||
        attr(&g->direct_managed_mem_access_from_host, cudaDevAttrDirectManagedMemAccessFromHost, device,
             "DirectManagedMemAccessFromHost", err) ||
        attr(&g->integrated, cudaDevAttrIntegrated, device, "Integrated", err))
        return -1;
    g->numa_id = -1;
    g->host_numa_id = -1;
#if CUDART_VERSION >= 12020
    int cfg = 0;
    if (attr(&cfg, cudaDevAttrNumaConfig, device, "NumaConfig", err)) return -1;
    if (cfg == cudaDeviceNumaConfigNumaNode && attr(&g->numa_id, cudaDevAttrNumaId, device, "NumaId", err)) return -1;
    if (attr(&g->host_numa_id, cudaDevAttrHostNumaId, device, "HostNumaId", err)) return -1;
#endif
    int cur = 0;
    SPILL_CU_TRY(cudaGetDevice(&cur));
    SPILL_CU_TRY(cudaSetDevice(device));
    size_t fr = 0, tot = 0;
    cudaError_t e = cudaMemGetInfo(&fr, &tot);
    cudaSetDevice(cur);
    if (e != cudaSuccess) return spill_err_set(err, "cudaMemGetInfo on device %d failed: %s", device, cudaGetErrorString(e));
    g->free_mem = fr;
    g->total_mem = tot;
    return 0;
}
