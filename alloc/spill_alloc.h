/* alloc/: placed memory behind one backend interface.
 *
 * A placement says which tier a region should live in (GPU HBM or host memory), on which host NUMA
 * node, and who reads it. Callers use spill_mem_*; they never see which backend is underneath.
 *
 * This is the users' header. Who writes a backend or an adaptor reads spill_backend.h too.
 * The stack, bottom to top (as RMM composes memory resources):
 *   leaf backend    host | emulated | system | cuda-managed | cuda-device   (one file each)
 *   adaptors        limit (per-tier budget) -> statistics -> CSV log    (adaptor.c)
 *   arena           2 MiB chunks per placement, sub-allocated at 256-byte granules (alloc.c)
 * The arena guarantees that two placements never share a 2 MiB page, because managed memory
 * migrates, and takes advice, at that grain. This layer knows nothing about models. */
#ifndef SPILL_ALLOC_H
#define SPILL_ALLOC_H

#include <stdio.h>

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SPILL_ARENA_GRAIN ((size_t)2 << 20) /* managed memory's migration grain on Hopper */
#define SPILL_ALLOC_ALIGN ((size_t)256)     /* every allocation starts on this boundary */

typedef struct spill_placement {
    spill_tier tier;
    int numa_node;  /* host NUMA node for HOST, or -1 for "let the system choose" */
    unsigned flags; /* SPILL_PLACE_* */
} spill_placement;

static inline spill_placement spill_placement_host(void) {
    spill_placement p = {SPILL_TIER_HOST, -1, SPILL_PLACE_CPU_READS};
    return p;
}

const char *spill_tier_name(spill_tier t);
/* "hbm", "host:node1 read-mostly gpu-reads" — for messages and logs */
void spill_placement_str(spill_placement pl, char *buf, size_t len);

/* ---- the allocator ---- */

typedef struct spill_tier_stats {
    uint64_t current; /* bytes held now */
    uint64_t peak;    /* most bytes held at once */
    uint64_t total;   /* bytes ever allocated */
    uint64_t count;   /* allocations ever made */
} spill_tier_stats;

typedef struct spill_call_stats {
    uint64_t alloc, free, advise, prefetch, discard, sync, failed;
    uint64_t prefetch_bytes[SPILL_TIER_COUNT]; /* bytes asked to move to each tier */
} spill_call_stats;

/* What the memory behind an allocator can do: the runtime asks for capabilities, never for a name. */
enum {
    SPILL_MEM_HBM = 1u << 0,            /* HBM placements are accepted (real or standing in) */
    SPILL_MEM_REAL_HBM = 1u << 1,       /* ... and they are GPU memory, not host memory standing in for it */
    SPILL_MEM_CPU_READS_HBM = 1u << 2,  /* the CPU may read and write memory placed in HBM */
    SPILL_MEM_GPU_READS_HOST = 1u << 3, /* a GPU may read memory placed in host memory where it is */
    SPILL_MEM_HOST_PAGEABLE = 1u << 4,  /* host placements are pageable memory: a GPU copy from them is
                                           staged through a bounce buffer and synchronous */
};
/* "hbm, cpu-reads-hbm" — for messages */
void spill_mem_caps_str(unsigned caps, char *buf, size_t len);


typedef struct spill_mem_stats {
    /* what callers asked for: spill_mem_alloc/spill_mem_release */
    spill_tier_stats tier[SPILL_TIER_COUNT];
    /* what the arena holds from the backend: 2 MiB chunks and large regions (>= tier[].current) */
    spill_tier_stats reserved[SPILL_TIER_COUNT];
    spill_call_stats calls;
    /* memory the caller mapped itself (e.g. a model file read in place) and registered here */
    uint64_t registered[SPILL_TIER_COUNT];
} spill_mem_stats;

typedef struct spill_mem spill_mem;

typedef struct spill_mem_config {
    const char *backend;               /* "auto" (or NULL), "host", "system", "cuda-managed", "cuda-device" */
    int device;                        /* CUDA device ordinal */
    uint64_t limit[SPILL_TIER_COUNT];  /* 0 = none */
    const char *log_path;              /* CSV log of backend calls, or NULL */
    const char *why;                   /* the caller's reason for a backend it named (spill_mem_backend_reason) */
} spill_mem_config;

/* Open an allocator. With backend "auto" the choice comes from device attributes:
 * no usable CUDA device -> host; concurrent managed access -> cuda-managed; otherwise cuda-device.
 * spill_mem_backend_reason says why. */
spill_mem *spill_mem_open(const spill_mem_config *cfg, spill_err *err);
/* Shorthand: spill_mem_open with only a backend name. */
spill_mem *spill_mem_create(const char *backend, spill_err *err);
/* NULL is a no-op. */
void spill_mem_free(spill_mem *m);
/* the leaf's name, for messages and logs; decisions ask spill_mem_caps */
const char *spill_mem_backend_name(const spill_mem *m);
unsigned spill_mem_caps(const spill_mem *m);
const char *spill_mem_backend_reason(const spill_mem *m);
int spill_mem_residency_exact(const spill_mem *m);

/* Per-tier limit in bytes of backend memory (0 = none). A request that would need more fails with
 * requested / in use / limit in the message. */
void spill_mem_set_limit(spill_mem *m, spill_tier tier, uint64_t bytes);
uint64_t spill_mem_get_limit(const spill_mem *m, spill_tier tier);

/* Memory is zero-filled and SPILL_ALLOC_ALIGN-aligned; requests of SPILL_ARENA_GRAIN or more are
 * SPILL_ARENA_GRAIN-aligned. `what` names the region in error messages. */
void *spill_mem_alloc(spill_mem *m, size_t size, spill_placement pl, const char *what, spill_err *err);
/* The same, for a caller that writes before it reads (a KV block): a sub-allocation is not zeroed,
 * which on a GPU backend saves a cudaMemset and a device synchronize per call. A new chunk may still
 * be zeroed by its backend. */
void *spill_mem_alloc_uninit(spill_mem *m, size_t size, spill_placement pl, const char *what, spill_err *err);
/* Free with the size it was allocated with. A pointer this allocator does not hold, a second free
 * or a size that disagrees is an error (and nothing is freed). */
int spill_mem_release(spill_mem *m, void *ptr, size_t size, spill_err *err);
/* For owners that know the pointer is theirs: release, and abort with the message if it is not. */
void spill_mem_put(spill_mem *m, void *ptr, size_t size);
/* Is ptr the start of a live allocation? Fills its size rounded up to SPILL_ALLOC_ALIGN (exact for
 * large regions) and its placement. */
int spill_mem_lookup(spill_mem *m, const void *ptr, size_t *size, spill_placement *pl);

/* Advice applies to whole chunks, so it is only accepted for a region that owns its chunks
 * (>= SPILL_ARENA_GRAIN); sub-allocations take their chunk's placement. */
int spill_mem_advise(spill_mem *m, void *ptr, size_t size, spill_placement pl, spill_err *err);
int spill_mem_prefetch(spill_mem *m, void *ptr, size_t size, spill_tier tier, int numa_node,
                       void *queue, spill_err *err);
int spill_mem_prefetch_batch(spill_mem *m, void *const *ptrs, const size_t *sizes, size_t n, spill_tier tier,
                             int numa_node, void *queue, spill_err *err);
int spill_mem_discard(spill_mem *m, void *ptr, size_t size, spill_err *err);
int spill_mem_residency(spill_mem *m, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                        spill_err *err);
int spill_mem_sync(spill_mem *m, void *queue, spill_err *err);

/* Account for memory mapped elsewhere (a model file used in place) so that per-tier totals are true. */
void spill_mem_register(spill_mem *m, spill_tier tier, uint64_t bytes);
void spill_mem_unregister(spill_mem *m, spill_tier tier, uint64_t bytes);

void spill_mem_get_stats(spill_mem *m, spill_mem_stats *out);
/* The SPILL_STATS report: bytes per tier, peaks, call counts. */
void spill_mem_print_stats(spill_mem *m, FILE *f);

/* Host memory the kernel could give now (MemAvailable + SwapFree), or 0 if unknown. */
uint64_t spill_host_available(void);

#ifdef __cplusplus
}
#endif
#endif
