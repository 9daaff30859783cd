/* What the CUDA driver says about each GPU: the attributes that decide the backend and the
 * placement (see ../shared/DESIGN.md, "Platform notes"). Without a CUDA build, or with no driver or
 * device, the queries fail with a message that says which. */
#ifndef SPILL_PLATFORM_H
#define SPILL_PLATFORM_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spill_gpu_info {
    int device;
    char name[256];
    char pci_bus_id[32]; /* "0000:01:00.0" */
    int cc_major, cc_minor;
    int driver_version, runtime_version; /* 13000 = 13.0 */
    uint64_t total_mem, free_mem;
    int concurrent_managed_access;
    int pageable_memory_access;
    int uses_host_page_tables; /* ATS: hardware-coherent access to system memory (Grace) */
    int numa_id;               /* GPU memory as a NUMA node, else -1 */
    int host_numa_id;          /* nearest host NUMA node per the driver, else -1 */
    int direct_managed_mem_access_from_host;
    int integrated;            /* an integrated GPU: its memory is the host's */
} spill_gpu_info;

/* Number of usable devices (0 with a reason in err when there are none). */
int spill_gpu_count(int *n, spill_err *err);
int spill_gpu_query(int device, spill_gpu_info *g, spill_err *err);

#ifdef __cplusplus
}
#endif
#endif
