/* system backend: plain mmap + mbind, for GPUs that read pageable host memory (HMM on x86 with the
 * open kernel modules, ATS over NVLink-C2C on Grace Hopper / Grace Blackwell).
 *
 * When the GPU's memory is itself a NUMA node (cudaDevAttrNumaConfig = NumaNode, its id in
 * cudaDevAttrNumaId), an HBM placement is an mbind to that node and a prefetch to HBM is a
 * move_pages there; residency asks the kernel where each page is. When it is not (x86 HMM, or a
 * Grace machine in CDMM mode), HBM placements are refused: the caller should use cuda-managed.
 * Advice flags need no call here: with ATS the GPU reads system memory through the CPU's page
 * tables and SetAccessedBy has no effect on it (CUDA Programming Guide, "system allocated memory").
 * Nothing here calls CUDA, so the backend is tested on a CPU-only machine by naming a host node as
 * the "GPU" node. */
#include "host_mem.h"

typedef struct system_ctx {
    spill_host_numa h;
    int gpu_node; /* -1: GPU memory is not a NUMA node */
} system_ctx;

/* the node a tier maps to: -1 = any host node */
static int node_for(system_ctx *c, spill_tier tier, int node, int *out, spill_err *err) {
    if (tier == SPILL_TIER_HBM) {
        if (c->gpu_node < 0)
            return spill_err_set(err, "the system backend can only place memory in HBM when GPU memory is a NUMA "
                                      "node (Grace Hopper without CDMM); use cuda-managed");
        *out = c->gpu_node;
        return 0;
    }
    if (node >= 0 && node == c->gpu_node)
        return spill_err_set(err, "NUMA node %d is the GPU's memory, not a host node", node);
    *out = node;
    return 0;
}

/* bind a range to its tier's node; "any host node" must still keep host data off the GPU's node */
static int system_bind(system_ctx *c, void *p, size_t size, int node, spill_err *err) {
    if (node < 0 && c->gpu_node >= 0) return spill_host_bind_except(&c->h, p, size, c->gpu_node, err);
    return spill_host_bind(&c->h, p, size, node, err);
}

static int system_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    system_ctx *c = ctx;
    int node = -1;
    if (node_for(c, pl.tier, pl.numa_node, &node, err)) return -1;
    if (spill_host_map(&c->h, size, -1, out, err)) return -1;
    if (system_bind(c, *out, size, node, err)) {
        spill_host_unmap(*out, size);
        return -1;
    }
    return 0;
}

static void system_free(void *ctx, void *ptr, size_t size, spill_placement pl) {
    (void)ctx;
    (void)pl;
    spill_host_unmap(ptr, size);
}

static int system_advise(void *ctx, void *ptr, size_t size, spill_placement pl, spill_err *err) {
    system_ctx *c = ctx;
    int node = -1;
    if (node_for(c, pl.tier, pl.numa_node, &node, err)) return -1;
    return system_bind(c, ptr, size, node, err);
}

static int system_prefetch(void *ctx, void *ptr, size_t size, spill_tier tier, int node, void *queue,
                           spill_err *err) {
    system_ctx *c = ctx;
    (void)queue; /* move_pages is synchronous */
    int to = -1;
    if (node_for(c, tier, node, &to, err)) return -1;
    return spill_host_move(&c->h, ptr, size, to, err);
}

static int system_discard(void *ctx, void *ptr, size_t size, spill_err *err) {
    return spill_host_discard(&((system_ctx *)ctx)->h, ptr, size, err);
}

static int system_residency(void *ctx, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                            spill_err *err) {
    system_ctx *c = ctx;
    if (c->gpu_node < 0) return spill_host_resident(&c->h, ptr, size, &out[SPILL_TIER_HOST], err);
    uint64_t on_gpu, present;
    if (spill_host_on_node(&c->h, ptr, size, c->gpu_node, &on_gpu, &present, err)) return -1;
    out[SPILL_TIER_HBM] = on_gpu;
    out[SPILL_TIER_HOST] = present - on_gpu;
    return 0;
}

static void system_destroy(void *ctx) { free(ctx); }

static const spill_backend_iface system_iface = {
    .name = "system",
    .align = SPILL_ARENA_GRAIN,
    .alloc = system_alloc,
    .free = system_free,
    .advise = system_advise,
    .prefetch = system_prefetch,
    .discard = system_discard,
    .residency = system_residency,
    .sync = NULL,
    .zero = NULL,
    .destroy = system_destroy,
    .residency_exact = 1,
};

int spill_backend_system_init(spill_backend *out, int gpu_numa_node, spill_err *err) {
    system_ctx *c = calloc(1, sizeof *c);
    if (!c) return spill_err_set(err, "out of memory");
    spill_host_numa_init(&c->h);
    if (gpu_numa_node >= 0 && (!c->h.numa_ok || gpu_numa_node > c->h.max_node)) {
        int max = c->h.max_node;
        free(c);
        return spill_err_set(err, "GPU memory is said to be NUMA node %d but this machine's highest node is %d",
                             gpu_numa_node, max);
    }
    c->gpu_node = gpu_numa_node;
    out->iface = &system_iface;
    out->ctx = c;
    /* pageable memory both processors reach; HBM only where it is a NUMA node */
    out->caps = SPILL_MEM_CPU_READS_HBM | SPILL_MEM_GPU_READS_HOST | SPILL_MEM_HOST_PAGEABLE |
                (gpu_numa_node >= 0 ? SPILL_MEM_HBM | SPILL_MEM_REAL_HBM : 0);
    return 0;
}
