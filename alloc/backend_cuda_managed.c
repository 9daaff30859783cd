/* cuda-managed backend: cudaMallocManaged + cudaMemAdvise + cudaMemPrefetchAsync.
 *
 * The placement becomes advice on the range: SetPreferredLocation (the device for HBM, the host NUMA
 * node or "host" for HOST), SetAccessedBy for each reader (GPU_READS: the device, CPU_READS: the
 * host) and SetReadMostly. Advice steers faults; it moves nothing. Memory is first touched where it
 * is meant to live (cudaMemset on the device for HBM, memset on the CPU for HOST) so that a fresh
 * region starts in its tier instead of wherever the first fault happens to be.
 * Residency is what the driver reports as the last prefetch (else the preferred) location: the
 * CUDA runtime has no per-page residency query, so this is an estimate (residency_exact = 0).
 * Never run on a GPU in this repository's CI; see docs/gpu.md for what has been run where. */
#include <cuda_runtime_api.h>

#include "cuda_compat.h"
#include "spill_backend.h"
#include "spill_platform.h"

typedef struct managed_ctx {
    int device;
    cudaStream_t side; /* for the batch calls, which refuse the legacy NULL stream */
} managed_ctx;

static spill_cu_loc loc_of(const managed_ctx *c, spill_tier tier, int node) {
    spill_cu_loc l;
    if (tier == SPILL_TIER_HBM) {
        l.kind = SPILL_CU_LOC_DEVICE;
        l.id = c->device;
    } else {
        l.kind = node >= 0 ? SPILL_CU_LOC_HOST_NUMA : SPILL_CU_LOC_HOST;
        l.id = node >= 0 ? node : 0;
    }
    return l;
}

/* ReadMostly is never set on host memory the GPU reads in place: it overrides the other advice, and
 * the GPU's reads would make read-only copies in HBM outside any budget (issue 21, defect 5).
 * SPILL_PLACE_FAULTS unsets the preferred location, so that pages migrate on faults (defect 6). */
static int managed_advise(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    managed_ctx *c = ctx;
    spill_cu_loc dev = {SPILL_CU_LOC_DEVICE, c->device}, host = {SPILL_CU_LOC_HOST, 0};
    int read_mostly = (pl.flags & SPILL_PLACE_READ_MOSTLY) &&
                      !(pl.tier == SPILL_TIER_HOST && (pl.flags & SPILL_PLACE_GPU_READS));
    SPILL_CU_TRY(spill_cu_advise(p, n, read_mostly ? cudaMemAdviseSetReadMostly : cudaMemAdviseUnsetReadMostly, dev));
    if (pl.flags & SPILL_PLACE_FAULTS)
        SPILL_CU_TRY(spill_cu_advise(p, n, cudaMemAdviseUnsetPreferredLocation, dev));
    else
        SPILL_CU_TRY(spill_cu_advise(p, n, cudaMemAdviseSetPreferredLocation, loc_of(c, pl.tier, pl.numa_node)));
    SPILL_CU_TRY(spill_cu_advise(p, n, (pl.flags & SPILL_PLACE_GPU_READS) ? cudaMemAdviseSetAccessedBy
                                                                          : cudaMemAdviseUnsetAccessedBy, dev));
    SPILL_CU_TRY(spill_cu_advise(p, n, (pl.flags & SPILL_PLACE_CPU_READS) ? cudaMemAdviseSetAccessedBy
                                                                          : cudaMemAdviseUnsetAccessedBy, host));
    return 0;
}

static int managed_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    (void)ctx;
    return spill_cu_zero(p, n, pl.tier, err);
}

static int managed_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    managed_ctx *c = ctx;
    /* managed memory may oversubscribe HBM, but not the machine: HBM free + host available */
    size_t fr = 0, tot = 0;
    SPILL_CU_TRY(cudaSetDevice(c->device));
    SPILL_CU_TRY(cudaMemGetInfo(&fr, &tot));
    uint64_t host = spill_host_available();
    if (host && size > (uint64_t)fr + host)
        return spill_err_set(err, "%zu bytes of managed memory requested but only %zu bytes of HBM are free and "
                                  "%llu bytes of host memory are available",
                             size, fr, (unsigned long long)host);
    void *p = NULL;
    SPILL_CU_TRY(cudaMallocManaged(&p, size, cudaMemAttachGlobal));
    if (managed_advise(ctx, p, size, pl, err) || managed_zero(ctx, p, size, pl, err)) {
        cudaFree(p);
        return -1;
    }
    *out = p;
    return 0;
}

static void managed_free(void *ctx, void *p, size_t size, spill_placement pl) {
    (void)ctx;
    (void)size;
    (void)pl;
    cudaError_t e = cudaFree(p);
    if (e != cudaSuccess) fprintf(stderr, "spill: cudaFree(%p) failed: %s\n", p, cudaGetErrorString(e));
}

static int managed_prefetch(void *ctx, void *p, size_t n, spill_tier tier, int node, void *queue, spill_err *err) {
    managed_ctx *c = ctx;
    SPILL_CU_TRY(spill_cu_prefetch(p, n, loc_of(c, tier, node), (cudaStream_t)queue));
    return 0;
}

static int managed_prefetch_batch(void *ctx, void *const *ptrs, const size_t *sizes, size_t n, spill_tier tier,
                                  int node, void *queue, spill_err *err) {
    managed_ctx *c = ctx;
#if CUDART_VERSION >= 13000
    struct cudaMemLocation loc = spill_cu_loc_native(loc_of(c, tier, node));
    size_t first = 0;
    cudaStream_t s = queue ? (cudaStream_t)queue : c->side;
    SPILL_CU_TRY(cudaMemPrefetchBatchAsync((void **)ptrs, (size_t *)sizes, n, &loc, &first, 1, 0, s));
#else
    for (size_t i = 0; i < n; i++) SPILL_CU_TRY(spill_cu_prefetch(ptrs[i], sizes[i], loc_of(c, tier, node), queue));
#endif
    return 0;
}

static int managed_discard(void *ctx, void *p, size_t n, spill_err *err) {
#if CUDART_VERSION >= 13000
    managed_ctx *c = ctx;
    SPILL_CU_TRY(cudaMemDiscardBatchAsync(&p, &n, 1, 0, c->side));
    SPILL_CU_TRY(cudaStreamSynchronize(c->side));
#else
    (void)ctx, (void)p, (void)n, (void)err; /* no discard before CUDA 13: keeping the contents is allowed */
#endif
    return 0;
}

static int managed_residency(void *ctx, const void *p, size_t n, uint64_t out[SPILL_TIER_COUNT], spill_err *err) {
    managed_ctx *c = ctx;
    int where = cudaInvalidDeviceId;
    SPILL_CU_TRY(cudaMemRangeGetAttribute(&where, sizeof where, cudaMemRangeAttributeLastPrefetchLocation,
                                          (void *)p, n));
    if (where == cudaInvalidDeviceId)
        SPILL_CU_TRY(cudaMemRangeGetAttribute(&where, sizeof where, cudaMemRangeAttributePreferredLocation,
                                              (void *)p, n));
    out[where == c->device ? SPILL_TIER_HBM : SPILL_TIER_HOST] = n;
    return 0;
}

static int managed_sync(void *ctx, void *queue, spill_err *err) {
    (void)ctx;
    return spill_cu_sync(queue, err);
}

static void managed_destroy(void *ctx) {
    managed_ctx *c = ctx;
    if (c->side) cudaStreamDestroy(c->side);
    free(c);
}

static const spill_backend_iface managed_iface = {
    .name = "cuda-managed",
    .align = SPILL_ALLOC_ALIGN, /* the arena aligns chunks itself */
    .alloc = managed_alloc,
    .free = managed_free,
    .advise = managed_advise,
    .prefetch = managed_prefetch,
    .prefetch_batch = managed_prefetch_batch,
    .discard = managed_discard,
    .residency = managed_residency,
    .sync = managed_sync,
    .zero = managed_zero,
    .destroy = managed_destroy,
    .residency_exact = 0,
};

int spill_backend_cuda_managed_init(spill_backend *out, int device, spill_err *err) {
    int n = 0, cma = 0;
    if (spill_gpu_count(&n, err)) return -1;
    if (device < 0 || device >= n) return spill_err_set(err, "CUDA device %d requested but there are %d", device, n);
    SPILL_CU_TRY(cudaSetDevice(device));
    SPILL_CU_TRY(cudaDeviceGetAttribute(&cma, cudaDevAttrConcurrentManagedAccess, device));
    if (!cma)
        return spill_err_set(err, "backend 'cuda-managed': device %d has no concurrent managed access "
                                  "(cudaDevAttrConcurrentManagedAccess = 0), so managed memory can neither be "
                                  "oversubscribed nor advised to the device; use cuda-device", device);
    managed_ctx *c = calloc(1, sizeof *c);
    if (!c) return spill_err_set(err, "out of memory");
    c->device = device;
    cudaError_t e = cudaStreamCreateWithFlags(&c->side, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        free(c);
        return spill_err_set(err, "cudaStreamCreateWithFlags failed: %s", cudaGetErrorString(e));
    }
    out->iface = &managed_iface;
    out->ctx = c;
    /* managed memory: the CPU reaches pages in HBM (they migrate or are mapped), the GPU host pages */
    out->caps = SPILL_MEM_HBM | SPILL_MEM_REAL_HBM | SPILL_MEM_CPU_READS_HBM | SPILL_MEM_GPU_READS_HOST;
    return 0;
}
