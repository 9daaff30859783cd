/* alloc/: placed memory behind one backend interface.
 *
 * A placement says which tier a region should live in (GPU HBM or host memory), on which host NUMA
 * node, and who reads it. Callers use spill_mem_*; they never see which backend is underneath.
 * The wrapper checks arguments, supplies defaults for optional backend slots, enforces per-tier
 * limits and keeps statistics. This layer knows nothing about models. */
#ifndef SPILL_ALLOC_H
#define SPILL_ALLOC_H

#include "spill_common.h"

typedef struct spill_placement {
    spill_tier tier;
    int numa_node;  /* host NUMA node, or -1 for "let the system choose" */
    unsigned flags; /* SPILL_PLACE_* */
} spill_placement;

static inline spill_placement spill_placement_host(void) {
    spill_placement p = {SPILL_TIER_HOST, -1, SPILL_PLACE_CPU_READS};
    return p;
}

const char *spill_tier_name(spill_tier t);

/* One backend: a table of functions plus a context. Optional slots may be NULL; the wrapper then
 * supplies the default (advise/prefetch/discard: no-op success; residency: "where it was placed"). */
typedef struct spill_backend_iface {
    const char *name;
    int (*alloc)(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err);
    void (*free)(void *ctx, void *ptr, size_t size);
    int (*advise)(void *ctx, void *ptr, size_t size, spill_placement pl, spill_err *err);
    int (*prefetch)(void *ctx, void *ptr, size_t size, spill_tier tier, int numa_node, void *queue,
                    spill_err *err);
    int (*discard)(void *ctx, void *ptr, size_t size, spill_err *err);
    /* bytes of [ptr, ptr+size) resident in each tier now (pages never touched count nowhere) */
    int (*residency)(void *ctx, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                     spill_err *err);
    int (*sync)(void *ctx, void *queue, spill_err *err);
    void (*destroy)(void *ctx);
} spill_backend_iface;

typedef struct spill_backend {
    const spill_backend_iface *iface;
    void *ctx;
} spill_backend;

/* The host backend: mmap + mbind (libnuma) + move_pages + madvise. CPU only. */
int spill_backend_host_init(spill_backend *out, spill_err *err);

typedef struct spill_tier_stats {
    uint64_t current; /* bytes held now */
    uint64_t peak;    /* most bytes held at once */
    uint64_t total;   /* bytes ever allocated */
    uint64_t count;   /* allocations ever made */
} spill_tier_stats;

typedef struct spill_mem_stats {
    spill_tier_stats tier[SPILL_TIER_COUNT];
    /* memory the caller mapped itself (e.g. a model file read in place) and registered here */
    uint64_t registered[SPILL_TIER_COUNT];
} spill_mem_stats;

typedef struct spill_mem spill_mem;

/* Create an allocator on a backend ("host" or "auto"; NULL means auto). Takes ownership of nothing
 * the caller passed; free with spill_mem_free. */
spill_mem *spill_mem_create(const char *backend, spill_err *err);
void spill_mem_free(spill_mem *m);
const char *spill_mem_backend_name(const spill_mem *m);

/* Per-tier limit in bytes (0 = none). An allocation past it fails with requested/in use/limit. */
void spill_mem_set_limit(spill_mem *m, spill_tier tier, uint64_t bytes);

/* Memory is zero-filled, at least 256-byte aligned. `what` names the region in error messages. */
void *spill_mem_alloc(spill_mem *m, size_t size, spill_placement pl, const char *what, spill_err *err);
/* Free with the size and tier it was allocated with. */
void spill_mem_release(spill_mem *m, void *ptr, size_t size, spill_tier tier);
int spill_mem_advise(spill_mem *m, void *ptr, size_t size, spill_placement pl, spill_err *err);
int spill_mem_prefetch(spill_mem *m, void *ptr, size_t size, spill_tier tier, int numa_node,
                       void *queue, spill_err *err);
int spill_mem_discard(spill_mem *m, void *ptr, size_t size, spill_err *err);
int spill_mem_residency(spill_mem *m, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                        spill_err *err);
int spill_mem_sync(spill_mem *m, void *queue, spill_err *err);

/* Account for memory mapped elsewhere (a model file used in place) so that per-tier totals are true. */
void spill_mem_register(spill_mem *m, spill_tier tier, uint64_t bytes);
void spill_mem_unregister(spill_mem *m, spill_tier tier, uint64_t bytes);

void spill_mem_get_stats(spill_mem *m, spill_mem_stats *out);

#endif
