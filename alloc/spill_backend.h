/* alloc/: the implementers' header — what a leaf backend or an adaptor provides. Users of placed
 * memory read spill_alloc.h only.
 *
 * A leaf backend is a table of functions plus a context, one backend per file. Optional slots may be
 * NULL: spill_mem_wrap applies the defaults once (advise, prefetch, discard, sync: no-op success;
 * prefetch_batch: one prefetch per range; residency: "where it was placed"; zero: memset from the
 * CPU), so nothing above the leaf tests for NULL.
 *
 * An adaptor wraps another backend (a leaf or an adaptor) and implements allocate and free only —
 * limit, statistics and the CSV log change nothing else. Every other operation goes straight to the
 * leaf; the adaptors hear of it afterwards through `note`, which each one passes on inwards. */
#ifndef SPILL_BACKEND_H
#define SPILL_BACKEND_H

#include "spill_alloc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An operation other than allocate/free, as the adaptors hear of it after the leaf ran it. */
typedef enum spill_backend_op {
    SPILL_OP_ADVISE,
    SPILL_OP_PREFETCH, /* one range; a batch is told as one note per range */
    SPILL_OP_DISCARD,
    SPILL_OP_SYNC,
} spill_backend_op;

typedef struct spill_backend_note {
    spill_backend_op op;
    const void *ptr;
    size_t size;
    spill_placement pl; /* advise: the advice; prefetch: the target tier and node */
    int rc;             /* 0 = the leaf succeeded */
} spill_backend_note;

typedef struct spill_backend_iface {
    const char *name;
    size_t align; /* alignment of what alloc returns for sizes that are multiples of SPILL_ARENA_GRAIN */
    int (*alloc)(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err);
    void (*free)(void *ctx, void *ptr, size_t size, spill_placement pl);
    void (*destroy)(void *ctx);
    /* leaves only (adaptors leave these NULL) */
    int (*advise)(void *ctx, void *ptr, size_t size, spill_placement pl, spill_err *err);
    int (*prefetch)(void *ctx, void *ptr, size_t size, spill_tier tier, int numa_node, void *queue,
                    spill_err *err);
    /* many ranges to one tier in one call (cudaMemPrefetchBatchAsync) */
    int (*prefetch_batch)(void *ctx, void *const *ptrs, const size_t *sizes, size_t n, spill_tier tier,
                          int numa_node, void *queue, spill_err *err);
    int (*discard)(void *ctx, void *ptr, size_t size, spill_err *err);
    /* bytes of [ptr, ptr+size) resident in each tier now (pages never touched count nowhere) */
    int (*residency)(void *ctx, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                     spill_err *err);
    int (*sync)(void *ctx, void *queue, spill_err *err);
    int (*zero)(void *ctx, void *ptr, size_t size, spill_placement pl, spill_err *err);
    int residency_exact; /* 0: residency reports where memory was asked to be, not where it is */
    /* adaptors only: hear of an operation the leaf ran, then pass it on inwards */
    void (*note)(void *ctx, const spill_backend_note *n);
} spill_backend_iface;

typedef struct spill_backend {
    const spill_backend_iface *iface;
    void *ctx;
    unsigned caps; /* SPILL_MEM_* of this instance (the system backend's depend on the machine) */
} spill_backend;

/* ---- leaf backends (one file each) ---- */

/* host: mmap + mbind (libnuma) + move_pages + madvise. CPU only; no HBM tier. */
int spill_backend_host_init(spill_backend *out, spill_err *err);
/* emulated: the host backend with host memory standing in for HBM, so that plans with HBM regions
 * run on a CPU-only machine (the runtime's CPU path uses it for every policy but `host`). */
int spill_backend_emulated_init(spill_backend *out, spill_err *err);
/* system: mmap + mbind for GPUs that read pageable memory (HMM, or ATS on Grace Hopper). When the
 * GPU's memory is itself a NUMA node (gpu_numa_node >= 0), an HBM placement binds to that node and
 * prefetch moves pages there with move_pages; otherwise HBM placements are refused. */
int spill_backend_system_init(spill_backend *out, int gpu_numa_node, spill_err *err);
/* cuda-managed: cudaMallocManaged + cudaMemAdvise + cudaMemPrefetchAsync on `device`. */
int spill_backend_cuda_managed_init(spill_backend *out, int device, spill_err *err);
/* cuda-device: cudaMalloc for HBM; mapped (cudaHostRegister) host memory bound to a NUMA node. */
int spill_backend_cuda_device_init(spill_backend *out, int device, spill_err *err);

/* ---- adaptors: each wraps a backend and is itself one; they take ownership of `inner` ---- */

/* Per-tier limit on the bytes held through it (0 = none). */
int spill_adaptor_limit_init(spill_backend *out, spill_backend inner, spill_err *err);
void spill_adaptor_limit_set(spill_backend *limit, spill_tier tier, uint64_t bytes);
uint64_t spill_adaptor_limit_get(const spill_backend *limit, spill_tier tier);

int spill_adaptor_stats_init(spill_backend *out, spill_backend inner, spill_err *err);
void spill_adaptor_stats_get(const spill_backend *stats, spill_tier_stats tier[SPILL_TIER_COUNT],
                             spill_call_stats *calls);

/* One CSV line per call: seconds since the log opened, op, address, bytes, placement, result.
 * The file is created (truncated) here and closed when the adaptor is destroyed. */
int spill_adaptor_log_init(spill_backend *out, spill_backend inner, const char *path, spill_err *err);

/* ---- the allocator over a backend the caller made (tests, the preload shim, custom leaves) ---- */

/* Build the adaptor stack and arena over `leaf`. Takes ownership of `leaf` even when it fails. */
spill_mem *spill_mem_wrap(spill_backend leaf, const spill_mem_config *cfg, const char *reason, spill_err *err);

#ifdef __cplusplus
}
#endif
#endif
