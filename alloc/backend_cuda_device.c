/* cuda-device backend: memory that does not migrate.
 *   HBM:  cudaMalloc (2 MiB pages, no faults; the fastest place for data that stays)
 *   HOST: mmap bound to a NUMA node with mbind, then cudaHostRegister(Mapped): pinned, and read by
 *         the GPU in place over PCIe or C2C through the same pointer (unified addressing)
 * Used where managed memory cannot oversubscribe (no concurrent managed access), and by the stream
 * policy, which copies layers into an HBM ring itself. A prefetch to the tier a region is in is a
 * no-op; to another tier it is an error, since nothing here can move.
 * Never run on a GPU in this repository's CI; see docs/gpu.md. */
#include <cuda_runtime_api.h>

#include "cuda_compat.h"
#include "host_mem.h"
#include "spill_backend.h"
#include "spill_platform.h"

typedef struct device_ctx {
    int device;
    spill_host_numa h;
} device_ctx;

static int device_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    device_ctx *c = ctx;
    if (pl.tier == SPILL_TIER_HBM) {
        size_t fr = 0, tot = 0;
        SPILL_CU_TRY(cudaMemGetInfo(&fr, &tot));
        if (size > fr)
            return spill_err_set(err, "%zu bytes of HBM requested but device %d has %zu free of %zu; lower the "
                                      "budget or use the cuda-managed backend", size, c->device, fr, tot);
        void *p = NULL;
        SPILL_CU_TRY(cudaMalloc(&p, size));
        cudaError_t e = cudaMemset(p, 0, size);
        if (e == cudaSuccess) e = cudaDeviceSynchronize();
        if (e != cudaSuccess) {
            cudaFree(p);
            return spill_err_set(err, "cudaMemset failed: %s", cudaGetErrorString(e));
        }
        *out = p;
        return 0;
    }
    void *p = NULL;
    if (spill_host_map(&c->h, size, pl.numa_node, &p, err)) return -1;
    /* registering touches (pins) every page, so they land on the node mbind chose */
    cudaError_t e = cudaHostRegister(p, size, cudaHostRegisterMapped | cudaHostRegisterPortable);
    if (e != cudaSuccess) {
        spill_host_unmap(p, size);
        return spill_err_set(err, "cudaHostRegister of %zu bytes failed: %s (pinned memory is limited by "
                                  "RLIMIT_MEMLOCK and by physical memory)", size, cudaGetErrorString(e));
    }
    *out = p;
    return 0;
}

static int is_device_memory(const void *p, int *yes, spill_err *err) {
    struct cudaPointerAttributes a;
    SPILL_CU_TRY(cudaPointerGetAttributes(&a, p));
    *yes = a.type == cudaMemoryTypeDevice;
    return 0;
}

static void device_free(void *ctx, void *p, size_t size, spill_placement pl) {
    (void)ctx;
    cudaError_t e;
    if (pl.tier == SPILL_TIER_HBM) {
        e = cudaFree(p);
    } else {
        e = cudaHostUnregister(p);
        spill_host_unmap(p, size);
    }
    if (e != cudaSuccess) fprintf(stderr, "spill: freeing %p failed: %s\n", p, cudaGetErrorString(e));
}

static int device_stays(void *p, spill_tier tier, spill_err *err) {
    int dev = 0;
    if (is_device_memory(p, &dev, err)) return -1;
    if ((tier == SPILL_TIER_HBM) != (dev != 0))
        return spill_err_set(err, "the cuda-device backend cannot move memory between tiers (%p is in %s); "
                                  "copy it, or use the cuda-managed backend", p, dev ? "hbm" : "host");
    return 0;
}

static int device_advise(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    (void)ctx;
    (void)n;
    return device_stays(p, pl.tier, err);
}

static int device_prefetch(void *ctx, void *p, size_t n, spill_tier tier, int node, void *q, spill_err *err) {
    (void)ctx, (void)n, (void)node, (void)q;
    return device_stays(p, tier, err);
}

static int device_residency(void *ctx, const void *p, size_t n, uint64_t out[SPILL_TIER_COUNT], spill_err *err) {
    (void)ctx;
    int dev = 0;
    if (is_device_memory(p, &dev, err)) return -1;
    out[dev ? SPILL_TIER_HBM : SPILL_TIER_HOST] = n;
    return 0;
}

static int device_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    (void)ctx;
    return spill_cu_zero(p, n, pl.tier, err);
}

static int device_sync(void *ctx, void *queue, spill_err *err) {
    (void)ctx;
    return spill_cu_sync(queue, err);
}

static void device_destroy(void *ctx) { free(ctx); }

static const spill_backend_iface device_iface = {
    .name = "cuda-device",
    .align = SPILL_ALLOC_ALIGN,
    .alloc = device_alloc,
    .free = device_free,
    .advise = device_advise,
    .prefetch = device_prefetch,
    .discard = NULL, /* memory that does not migrate gains nothing from a discard */
    .residency = device_residency,
    .sync = device_sync,
    .zero = device_zero,
    .destroy = device_destroy,
    .residency_exact = 1,
};

int spill_backend_cuda_device_init(spill_backend *out, int device, spill_err *err) {
    int n = 0;
    if (spill_gpu_count(&n, err)) return -1;
    if (device < 0 || device >= n) return spill_err_set(err, "CUDA device %d requested but there are %d", device, n);
    SPILL_CU_TRY(cudaSetDevice(device));
    device_ctx *c = calloc(1, sizeof *c);
    if (!c) return spill_err_set(err, "out of memory");
    c->device = device;
    spill_host_numa_init(&c->h);
    out->iface = &device_iface;
    out->ctx = c;
    /* cudaMalloc'd HBM is the GPU's alone; host memory is mapped for the GPU */
    out->caps = SPILL_MEM_HBM | SPILL_MEM_REAL_HBM | SPILL_MEM_GPU_READS_HOST;
    return 0;
}
