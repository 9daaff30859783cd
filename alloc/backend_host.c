/* host backend: anonymous mmap bound to a NUMA node with mbind, moved between nodes with
 * move_pages, discarded with madvise(MADV_DONTNEED), residency from mincore.
 * It has one tier (HOST); an HBM placement is refused with a message. CPU only. */
#include "host_mem.h"

typedef struct host_ctx {
    spill_host_numa h; /* first: the shared helpers take it */
    int emulate_hbm;
} host_ctx;

static int host_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    if (pl.tier != SPILL_TIER_HOST && !((host_ctx *)ctx)->emulate_hbm)
        return spill_err_set(err, "the host backend has no %s tier (it serves host memory only)",
                             spill_tier_name(pl.tier));
    return spill_host_map(ctx, size, pl.numa_node, out, err);
}

static void host_free(void *ctx, void *ptr, size_t size, spill_placement pl) {
    (void)ctx;
    (void)pl;
    spill_host_unmap(ptr, size);
}

static int host_advise(void *ctx, void *ptr, size_t size, spill_placement pl, spill_err *err) {
    if (pl.tier == SPILL_TIER_HBM && ((host_ctx *)ctx)->emulate_hbm) return 0;
    if (pl.tier != SPILL_TIER_HOST)
        return spill_err_set(err, "the host backend cannot place memory in %s", spill_tier_name(pl.tier));
    return spill_host_bind(ctx, ptr, size, pl.numa_node, err);
}

/* The CPU-side counterpart of a prefetch: move the range's pages to a node, synchronously
 * (`queue` is unused). */
static int host_prefetch(void *ctx, void *ptr, size_t size, spill_tier tier, int node, void *queue,
                         spill_err *err) {
    (void)queue;
    if (tier == SPILL_TIER_HBM && ((host_ctx *)ctx)->emulate_hbm) return 0; /* it is already "there" */
    if (tier != SPILL_TIER_HOST)
        return spill_err_set(err, "the host backend cannot prefetch to %s", spill_tier_name(tier));
    return spill_host_move(ctx, ptr, size, node, err);
}

static int host_discard(void *ctx, void *ptr, size_t size, spill_err *err) {
    return spill_host_discard(ctx, ptr, size, err);
}

static int host_residency(void *ctx, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                          spill_err *err) {
    return spill_host_resident(ctx, ptr, size, &out[SPILL_TIER_HOST], err);
}

static void host_destroy(void *ctx) { free(ctx); }

/* what both host-memory backends do; sync and zero stay NULL: everything is synchronous, and
 * zeroing is a memset from the CPU */
#define HOST_OPS                                                                                  \
    .align = SPILL_ARENA_GRAIN, .alloc = host_alloc, .free = host_free, .advise = host_advise, \
    .prefetch = host_prefetch, .discard = host_discard, .destroy = host_destroy

static const spill_backend_iface host_iface = {
    .name = "host",
    HOST_OPS,
    .residency = host_residency,
    .residency_exact = 1,
};

/* The emulated backend: host memory that plays the part of HBM, so that a plan with HBM regions,
 * rings and budgets runs on a CPU-only machine exactly as it would be carried out on a GPU (the
 * bytes are the same; only the speed differs). Residency reports the tier each region was asked
 * for, since both tiers are the same memory. */
static const spill_backend_iface emulated_iface = {
    .name = "emulated",
    HOST_OPS,
    .residency = NULL,
    .residency_exact = 0,
};

static int host_make(spill_backend *out, int emulate, spill_err *err) {
    host_ctx *c = calloc(1, sizeof *c);
    if (!c) return spill_err_set(err, "out of memory");
    spill_host_numa_init(&c->h);
    c->emulate_hbm = emulate;
    out->iface = emulate ? &emulated_iface : &host_iface;
    out->ctx = c;
    out->caps = emulate ? SPILL_MEM_HBM | SPILL_MEM_CPU_READS_HBM : 0;
    return 0;
}

int spill_backend_host_init(spill_backend *out, spill_err *err) { return host_make(out, 0, err); }
int spill_backend_emulated_init(spill_backend *out, spill_err *err) { return host_make(out, 1, err); }
