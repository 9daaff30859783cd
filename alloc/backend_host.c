/* host backend: anonymous mmap bound to a NUMA node with mbind, moved between nodes with
 * move_pages, discarded with madvise(MADV_DONTNEED), residency from move_pages' status query.
 * It has one tier (HOST); an HBM placement is refused with a message. CPU only. */
#include "spill_alloc.h"

#include <errno.h>
#include <numa.h>
#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct host_ctx {
    int numa_ok;  /* libnuma reports a NUMA-capable kernel */
    int max_node; /* highest node number */
    size_t page;
} host_ctx;

static int host_bind(host_ctx *c, void *p, size_t size, int node, spill_err *err) {
    if (node < 0 || !c->numa_ok) return 0;
    if (node > c->max_node)
        return spill_err_set(err, "NUMA node %d requested but this machine's highest node is %d", node,
                             c->max_node);
    unsigned long mask[16] = {0};
    if ((size_t)node >= sizeof mask * 8) return spill_err_set(err, "NUMA node %d out of range", node);
    mask[node / (8 * sizeof(unsigned long))] |= 1ul << (node % (8 * sizeof(unsigned long)));
    if (mbind(p, size, MPOL_BIND, mask, sizeof mask * 8, MPOL_MF_MOVE))
        return spill_err_set(err, "mbind to NUMA node %d failed: %s", node, strerror(errno));
    return 0;
}

static int host_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    host_ctx *c = ctx;
    if (pl.tier != SPILL_TIER_HOST)
        return spill_err_set(err, "the host backend has no %s tier (it serves host memory only)",
                             spill_tier_name(pl.tier));
    /* MAP_NORESERVE is not used: an impossible request must fail here, not at first touch */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return spill_err_set(err, "mmap of %zu bytes failed: %s", size, strerror(errno));
    if (host_bind(c, p, size, pl.numa_node, err)) {
        munmap(p, size);
        return -1;
    }
    *out = p;
    return 0;
}

static void host_free(void *ctx, void *ptr, size_t size) {
    (void)ctx;
    SPILL_ASSERT(munmap(ptr, size) == 0);
}

static int host_advise(void *ctx, void *ptr, size_t size, spill_placement pl, spill_err *err) {
    host_ctx *c = ctx;
    if (pl.tier != SPILL_TIER_HOST)
        return spill_err_set(err, "the host backend cannot place memory in %s", spill_tier_name(pl.tier));
    uintptr_t a = (uintptr_t)ptr & ~(uintptr_t)(c->page - 1);
    size_t n = size + ((uintptr_t)ptr - a);
    return host_bind(c, (void *)a, n, pl.numa_node, err);
}

/* Move the pages of a range to a node (the CPU-side counterpart of a prefetch). Pages never touched
 * have no node yet and are skipped by the kernel. `queue` is unused: the move is synchronous. */
static int host_prefetch(void *ctx, void *ptr, size_t size, spill_tier tier, int node, void *queue,
                         spill_err *err) {
    host_ctx *c = ctx;
    (void)queue;
    if (tier != SPILL_TIER_HOST)
        return spill_err_set(err, "the host backend cannot prefetch to %s", spill_tier_name(tier));
    if (node < 0 || !c->numa_ok) return 0;
    if (node > c->max_node)
        return spill_err_set(err, "prefetch to NUMA node %d but the highest node is %d", node, c->max_node);
    uintptr_t a = (uintptr_t)ptr & ~(uintptr_t)(c->page - 1);
    size_t npages = (size + ((uintptr_t)ptr - a) + c->page - 1) / c->page;
    enum { BATCH = 512 };
    void *pages[BATCH];
    int nodes[BATCH], status[BATCH];
    for (size_t i = 0; i < npages; i += BATCH) {
        size_t k = npages - i < BATCH ? npages - i : BATCH;
        for (size_t j = 0; j < k; j++) {
            pages[j] = (void *)(a + (i + j) * c->page);
            nodes[j] = node;
        }
        if (move_pages(0, k, pages, nodes, status, MPOL_MF_MOVE) < 0)
            return spill_err_set(err, "move_pages to node %d failed: %s", node, strerror(errno));
    }
    return 0;
}

static int host_discard(void *ctx, void *ptr, size_t size, spill_err *err) {
    host_ctx *c = ctx;
    /* only whole pages inside the range can be dropped; partial edge pages keep their contents */
    uintptr_t a = ((uintptr_t)ptr + c->page - 1) & ~(uintptr_t)(c->page - 1);
    uintptr_t e = ((uintptr_t)ptr + size) & ~(uintptr_t)(c->page - 1);
    if (e <= a) return 0;
    if (madvise((void *)a, e - a, MADV_DONTNEED))
        return spill_err_set(err, "madvise(DONTNEED) failed: %s", strerror(errno));
    return 0;
}

static int host_residency(void *ctx, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                          spill_err *err) {
    host_ctx *c = ctx;
    uintptr_t a = (uintptr_t)ptr & ~(uintptr_t)(c->page - 1);
    size_t npages = (size + ((uintptr_t)ptr - a) + c->page - 1) / c->page;
    unsigned char vec[4096];
    uint64_t resident = 0;
    for (size_t i = 0; i < npages; i += sizeof vec) {
        size_t k = npages - i < sizeof vec ? npages - i : sizeof vec;
        if (mincore((void *)(a + i * c->page), k * c->page, vec))
            return spill_err_set(err, "mincore failed: %s", strerror(errno));
        for (size_t j = 0; j < k; j++) resident += vec[j] & 1;
    }
    uint64_t bytes = resident * c->page;
    out[SPILL_TIER_HOST] = bytes > size ? size : bytes;
    return 0;
}

static void host_destroy(void *ctx) { free(ctx); }

static const spill_backend_iface host_iface = {
    .name = "host",
    .alloc = host_alloc,
    .free = host_free,
    .advise = host_advise,
    .prefetch = host_prefetch,
    .discard = host_discard,
    .residency = host_residency,
    .sync = NULL, /* everything is synchronous */
    .destroy = host_destroy,
};

int spill_backend_host_init(spill_backend *out, spill_err *err) {
    host_ctx *c = calloc(1, sizeof *c);
    if (!c) return spill_err_set(err, "out of memory");
    c->page = (size_t)sysconf(_SC_PAGESIZE);
    c->numa_ok = numa_available() >= 0;
    c->max_node = c->numa_ok ? numa_max_node() : 0;
    out->iface = &host_iface;
    out->ctx = c;
    return 0;
}
