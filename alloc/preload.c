/* libspill-preload.so: placed memory under unmodified CUDA programs.
 *
 *   LD_PRELOAD=libspill-preload.so python train.py
 *
 * Interposes cudaMalloc, cudaFree, cudaMallocAsync, cudaFreeAsync, cudaMemGetInfo and the driver
 * API's cuMemAlloc_v2 / cuMemFree_v2. Allocations go through alloc/ (arena, budget, statistics) over
 * a leaf backend that calls the program's own CUDA runtime, found with dlsym(RTLD_NEXT):
 *   - while the HBM budget (SPILL_HBM_BUDGET, default: free HBM at start minus SPILL_HBM_RESERVE)
 *     lasts: the real cudaMalloc;
 *   - past it: cudaMallocManaged, preferred location host, accessed-by the GPU — the GPU reads it in
 *     place instead of thrashing it in and out on faults.
 * Also exports spill_torch_malloc / spill_torch_free for torch.cuda.memory.CUDAPluggableAllocator.
 *
 * The CUDA types are declared here rather than taken from the toolkit's headers, so that the shim
 * builds (and is tested against tests/fake_cudart.c) on machines without the toolkit; the values
 * are the CUDA runtime's ABI (docs/preload.md). Pointers the shim did not allocate pass through
 * untouched; a second free of a pointer it did allocate is reported and refused. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/types.h>

#include "spill_backend.h"
#include "spill_options.h"

#define SPILL_EXPORT __attribute__((visibility("default")))

/* ---- the CUDA ABI, as far as the shim needs it ---- */
typedef int cudaError_t;
typedef void *cudaStream_t;
typedef int CUresult;
typedef unsigned long long CUdeviceptr;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInitializationError = 3 };
enum { CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1, CUDA_ERROR_OUT_OF_MEMORY = 2 };
enum { cudaMemAttachGlobal = 1, cudaCpuDeviceId = -1 };
enum { cudaMemAdviseSetReadMostly = 1, cudaMemAdviseSetPreferredLocation = 3, cudaMemAdviseSetAccessedBy = 5 };
enum { cudaMemLocationTypeDevice = 1, cudaMemLocationTypeHost = 2 };
struct spill_cu_location { int type, id; }; /* struct cudaMemLocation */

typedef struct real_api {
    cudaError_t (*malloc)(void **, size_t);
    cudaError_t (*free)(void *);
    cudaError_t (*malloc_async)(void **, size_t, cudaStream_t);
    cudaError_t (*free_async)(void *, cudaStream_t);
    cudaError_t (*mem_get_info)(size_t *, size_t *);
    cudaError_t (*malloc_managed)(void **, size_t, unsigned);
    cudaError_t (*runtime_version)(int *);
    cudaError_t (*get_device)(int *);
    cudaError_t (*device_sync)(void);
    cudaError_t (*stream_sync)(cudaStream_t);
    /* CUDA 13: (ptr, n, advice, location); 12.2-12.9: the _v2 names; before: (ptr, n, advice, int) */
    cudaError_t (*advise_loc)(const void *, size_t, int, struct spill_cu_location);
    cudaError_t (*advise_dev)(const void *, size_t, int, int);
    cudaError_t (*prefetch_loc)(const void *, size_t, struct spill_cu_location, unsigned, cudaStream_t);
    cudaError_t (*prefetch_loc12)(const void *, size_t, struct spill_cu_location, unsigned, cudaStream_t);
    cudaError_t (*prefetch_dev)(const void *, size_t, int, cudaStream_t);
    CUresult (*cu_alloc)(CUdeviceptr *, size_t);
    CUresult (*cu_free)(CUdeviceptr);
} real_api;

static real_api real;
static spill_mem *mem;
static spill_options opts;
static int device = -1;
static uint64_t budget, host_at_start;
static int ready;         /* 1: the allocator is up; -1: it could not be set up (pass everything through) */
static int resolved;      /* the real symbols are known */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread int in_shim; /* re-entry guard: calls made from inside the shim go straight through */

static struct {
    pthread_mutex_t lock;
    uint64_t malloc_calls, free_calls, passed_through, double_frees, fallbacks_to_managed;
} calls = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0};

static void logf_(const char *fmt, ...) SPILL_PRINTF(1, 2);
static void logf_(const char *fmt, ...) {
    if (!opts.log) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "spill-preload: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void count(uint64_t *c) {
    pthread_mutex_lock(&calls.lock);
    (*c)++;
    pthread_mutex_unlock(&calls.lock);
}

/* ---- which pointers are ours: an open-addressing table with tombstones for freed ones ---- */

enum { SLOT_EMPTY = 0, SLOT_LIVE = 1, SLOT_FREED = 2 };
typedef struct entry {
    uintptr_t ptr;
    size_t size;
    int state;
} entry;

static struct {
    pthread_mutex_t lock;
    entry *e;
    size_t cap, used; /* used counts LIVE and FREED slots */
} tab = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

static size_t hash_ptr(uintptr_t p, size_t cap) { return (size_t)((p >> 8) * 0x9E3779B97F4A7C15ull) & (cap - 1); }

static entry *tab_find(uintptr_t p) {
    if (!tab.cap) return NULL;
    for (size_t i = hash_ptr(p, tab.cap), k = 0; k < tab.cap; i = (i + 1) & (tab.cap - 1), k++) {
        if (tab.e[i].state == SLOT_EMPTY) return NULL;
        if (tab.e[i].ptr == p) return &tab.e[i];
    }
    return NULL;
}

static int tab_grow(void) {
    size_t cap = tab.cap ? tab.cap * 2 : 4096;
    entry *n = calloc(cap, sizeof *n), *old = tab.e;
    if (!n) return -1;
    size_t oc = tab.cap;
    tab.e = n;
    tab.cap = cap;
    tab.used = 0;
    /* tombstones older than the table are dropped when it grows: a double free is still caught
       until then, and the table does not grow without bound */
    for (size_t i = 0; i < oc; i++)
        if (old[i].state == SLOT_LIVE) {
            size_t j = hash_ptr(old[i].ptr, cap);
            while (n[j].state != SLOT_EMPTY) j = (j + 1) & (cap - 1);
            n[j] = old[i];
            tab.used++;
        }
    free(old);
    return 0;
}

static int tab_put(uintptr_t p, size_t size) {
    pthread_mutex_lock(&tab.lock);
    entry *e = tab_find(p);
    if (!e) {
        if ((tab.used + 1) * 4 > tab.cap * 3 && tab_grow()) {
            pthread_mutex_unlock(&tab.lock);
            return -1;
        }
        size_t i = hash_ptr(p, tab.cap);
        while (tab.e[i].state != SLOT_EMPTY) i = (i + 1) & (tab.cap - 1);
        e = &tab.e[i];
        tab.used++;
    }
    *e = (entry){p, size, SLOT_LIVE};
    pthread_mutex_unlock(&tab.lock);
    return 0;
}

/* SLOT_LIVE: it was ours and is now marked freed (size returned); SLOT_FREED: freed before; 0: not ours */
static int tab_take(uintptr_t p, size_t *size) {
    pthread_mutex_lock(&tab.lock);
    entry *e = tab_find(p);
    int st = e ? e->state : 0;
    if (e && st == SLOT_LIVE) {
        *size = e->size;
        e->state = SLOT_FREED;
    }
    pthread_mutex_unlock(&tab.lock);
    return st;
}

/* ---- the leaf backend over the program's runtime ---- */

static int cu_advise(const void *p, size_t n, int advice, int loc_type, int id) {
    if (real.advise_loc) return real.advise_loc(p, n, advice, (struct spill_cu_location){loc_type, id});
    if (real.advise_dev) return real.advise_dev(p, n, advice, loc_type == cudaMemLocationTypeDevice ? id : cudaCpuDeviceId);
    return cudaErrorInitializationError;
}

static int shim_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    (void)ctx;
    cudaError_t e;
    if (pl.tier == SPILL_TIER_HBM) {
        e = real.malloc(out, size);
        if (e) return spill_err_set(err, "cudaMalloc of %zu bytes failed (error %d)", size, e);
        return 0;
    }
    if (!real.malloc_managed) return spill_err_set(err, "the CUDA runtime has no cudaMallocManaged");
    e = real.malloc_managed(out, size, cudaMemAttachGlobal);
    if (e) return spill_err_set(err, "cudaMallocManaged of %zu bytes failed (error %d)", size, e);
    /* host memory that the GPU reads in place: no migration on faults, no thrashing */
    int a1 = cu_advise(*out, size, cudaMemAdviseSetPreferredLocation, cudaMemLocationTypeHost, 0);
    int a2 = cu_advise(*out, size, cudaMemAdviseSetAccessedBy, cudaMemLocationTypeDevice, device);
    if (a1 || a2) logf_("cudaMemAdvise on %p failed (errors %d, %d); the memory works, unadvised", *out, a1, a2);
    return 0;
}

static void shim_free(void *ctx, void *p, size_t size, spill_placement pl) {
    (void)ctx, (void)size, (void)pl;
    cudaError_t e = real.free(p);
    if (e) logf_("cudaFree(%p) failed (error %d)", p, e);
}

static int shim_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    (void)ctx, (void)p, (void)n, (void)pl, (void)err;
    return 0; /* cudaMalloc does not zero, and programs do not expect it */
}

static int shim_prefetch(void *ctx, void *p, size_t n, spill_tier tier, int node, void *q, spill_err *err) {
    (void)ctx, (void)node;
    struct spill_cu_location l = {tier == SPILL_TIER_HBM ? cudaMemLocationTypeDevice : cudaMemLocationTypeHost,
                                  tier == SPILL_TIER_HBM ? device : 0};
    cudaError_t e = real.prefetch_loc ? real.prefetch_loc(p, n, l, 0, q)
                    : real.prefetch_dev ? real.prefetch_dev(p, n, tier == SPILL_TIER_HBM ? device : cudaCpuDeviceId, q)
                                        : cudaErrorInitializationError;
    if (e) return spill_err_set(err, "cudaMemPrefetchAsync failed (error %d)", e);
    return 0;
}

static void shim_destroy(void *ctx) { (void)ctx; }

static const spill_backend_iface shim_iface = {
    .name = "preload",
    .align = SPILL_ALLOC_ALIGN,
    .alloc = shim_alloc,
    .free = shim_free,
    .prefetch = shim_prefetch,
    .zero = shim_zero,
    .destroy = shim_destroy,
    .residency_exact = 0,
};

/* ---- setting up ---- */

static void *sym(const char *name) { return dlsym(RTLD_NEXT, name); }

static void resolve(void) {
    real.malloc = (cudaError_t(*)(void **, size_t))sym("cudaMalloc");
    real.free = (cudaError_t(*)(void *))sym("cudaFree");
    real.malloc_async = (cudaError_t(*)(void **, size_t, cudaStream_t))sym("cudaMallocAsync");
    real.free_async = (cudaError_t(*)(void *, cudaStream_t))sym("cudaFreeAsync");
    real.mem_get_info = (cudaError_t(*)(size_t *, size_t *))sym("cudaMemGetInfo");
    real.malloc_managed = (cudaError_t(*)(void **, size_t, unsigned))sym("cudaMallocManaged");
    real.runtime_version = (cudaError_t(*)(int *))sym("cudaRuntimeGetVersion");
    real.get_device = (cudaError_t(*)(int *))sym("cudaGetDevice");
    real.device_sync = (cudaError_t(*)(void))sym("cudaDeviceSynchronize");
    real.stream_sync = (cudaError_t(*)(cudaStream_t))sym("cudaStreamSynchronize");
    real.cu_alloc = (CUresult(*)(CUdeviceptr *, size_t))sym("cuMemAlloc_v2");
    real.cu_free = (CUresult(*)(CUdeviceptr))sym("cuMemFree_v2");
    int v = 0;
    if (real.runtime_version) real.runtime_version(&v);
    /* the hint calls changed shape: pick by the runtime's own version, never by guessing */
    if (v >= 13000) {
        real.advise_loc = (cudaError_t(*)(const void *, size_t, int, struct spill_cu_location))sym("cudaMemAdvise");
        real.prefetch_loc = (cudaError_t(*)(const void *, size_t, struct spill_cu_location, unsigned, cudaStream_t))sym(
            "cudaMemPrefetchAsync");
    } else if (v >= 12020) {
        real.advise_loc = (cudaError_t(*)(const void *, size_t, int, struct spill_cu_location))sym("cudaMemAdvise_v2");
        real.prefetch_loc = (cudaError_t(*)(const void *, size_t, struct spill_cu_location, unsigned, cudaStream_t))sym(
            "cudaMemPrefetchAsync_v2");
    } else {
        real.advise_dev = (cudaError_t(*)(const void *, size_t, int, int))sym("cudaMemAdvise");
        real.prefetch_dev = (cudaError_t(*)(const void *, size_t, int, cudaStream_t))sym("cudaMemPrefetchAsync");
    }
    resolved = 1;
}

static void print_stats(void) {
    if (!mem) return;
    spill_mem_print_stats(mem, stderr);
    fprintf(stderr, "spill-preload: %llu allocations, %llu frees, %llu past the HBM budget into managed memory, "
                    "%llu calls passed through, %llu double frees refused; HBM budget %.2f MiB\n",
            (unsigned long long)calls.malloc_calls, (unsigned long long)calls.free_calls,
            (unsigned long long)calls.fallbacks_to_managed, (unsigned long long)calls.passed_through,
            (unsigned long long)calls.double_frees, budget / 1048576.0);
}

/* 1 when the allocator is usable. Called on every interposed entry; cheap once set up. */
static int ensure_ready(void) {
    if (__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) return ready > 0;
    pthread_mutex_lock(&init_lock);
    if (ready) {
        pthread_mutex_unlock(&init_lock);
        return ready > 0;
    }
    /* first the real symbols, with nothing else in the way; calls made while setting up pass through */
    in_shim = 1;
    resolve();
    spill_err err;
    spill_options_defaults(&opts);
    int rc = -1;
    if (spill_options_from_env(&opts, NULL, &err)) {
        fprintf(stderr, "spill-preload: %s; passing every call through\n", err.msg);
    } else if (!real.malloc || !real.free) {
        fprintf(stderr, "spill-preload: no CUDA runtime in this process (cudaMalloc not found); passing through\n");
    } else {
        if (opts.log) spill_options_from_env(&opts, stderr, &err); /* warn about unknown SPILL_* once */
        if (real.get_device) real.get_device(&device);
        if (device < 0) device = 0;
        size_t fr = 0, tot = 0;
        if (real.mem_get_info) real.mem_get_info(&fr, &tot);
        budget = opts.hbm_budget ? opts.hbm_budget : (fr > opts.hbm_reserve ? fr - opts.hbm_reserve : 0);
        host_at_start = spill_host_available();
        /* managed memory past the budget, read by the GPU in place */
        spill_backend leaf = {&shim_iface, NULL, SPILL_MEM_HBM | SPILL_MEM_REAL_HBM | SPILL_MEM_GPU_READS_HOST};
        spill_mem_config cfg = {0};
        cfg.limit[SPILL_TIER_HBM] = budget ? budget : 1; /* a budget of 0 sends everything to managed memory */
        cfg.log_path = opts.alloc_log;
        mem = spill_mem_wrap(leaf, &cfg, "LD_PRELOAD", &err);
        if (!mem) {
            fprintf(stderr, "spill-preload: %s; passing every call through\n", err.msg);
        } else {
            rc = 0;
            if (opts.stats) atexit(print_stats);
            logf_("device %d, HBM budget %.2f MiB (%s), free HBM %.2f of %.2f MiB", device, budget / 1048576.0,
                  opts.hbm_budget ? "SPILL_HBM_BUDGET" : "free at start minus SPILL_HBM_RESERVE", fr / 1048576.0,
                  tot / 1048576.0);
        }
    }
    in_shim = 0;
    __atomic_store_n(&ready, rc ? -1 : 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&init_lock);
    return rc == 0;
}

/* ---- the common paths ---- */

static int on_our_device(void) {
    int d = device;
    if (real.get_device) real.get_device(&d);
    return d == device;
}

/* 0 and *p set, or a cudaError_t */
static cudaError_t shim_malloc(void **p, size_t size, const char *api) {
    if (!p) return cudaErrorInvalidValue;
    if (size == 0) {
        *p = NULL;
        return cudaSuccess;
    }
    spill_err err;
    spill_placement hbm = {SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS};
    spill_placement host = {SPILL_TIER_HOST, -1, SPILL_PLACE_GPU_READS};
    in_shim = 1;
    void *q = spill_mem_alloc(mem, size, hbm, api, &err);
    if (!q) {
        logf_("%s(%zu): %s; placing it in host memory the GPU reads in place", api, size, err.msg);
        q = spill_mem_alloc(mem, size, host, api, &err);
        if (q) count(&calls.fallbacks_to_managed);
    }
    in_shim = 0;
    if (!q) {
        logf_("%s(%zu): %s", api, size, err.msg);
        return cudaErrorMemoryAllocation;
    }
    if (tab_put((uintptr_t)q, size)) {
        spill_mem_put(mem, q, size);
        return cudaErrorMemoryAllocation;
    }
    count(&calls.malloc_calls);
    *p = q;
    return cudaSuccess;
}

/* 1: it was ours and is freed; 0: not ours (pass it on); -1: a double free, refused */
static int shim_release(void *p, const char *api) {
    size_t size = 0;
    int st = tab_take((uintptr_t)p, &size);
    if (st == SLOT_FREED) {
        count(&calls.double_frees);
        fprintf(stderr, "spill-preload: %s(%p): double free (this pointer was already freed); refused\n", api, p);
        return -1;
    }
    if (st != SLOT_LIVE) return 0;
    in_shim = 1;
    spill_mem_put(mem, p, size);
    in_shim = 0;
    count(&calls.free_calls);
    return 1;
}

/* ---- the interposed runtime API ---- */

SPILL_EXPORT cudaError_t cudaMalloc(void **p, size_t size) {
    if (in_shim || !ensure_ready() || !on_our_device()) {
        if (!resolved) resolve();
        if (!real.malloc) return cudaErrorInitializationError;
        if (!in_shim) count(&calls.passed_through);
        return real.malloc(p, size);
    }
    return shim_malloc(p, size, "cudaMalloc");
}

SPILL_EXPORT cudaError_t cudaFree(void *p) {
    if (p && !in_shim && ensure_ready()) {
        /* cudaFree synchronizes the device; a sub-allocation's memory may be handed out again at
           once, so keep that promise before giving it back */
        if (real.device_sync) real.device_sync();
        int r = shim_release(p, "cudaFree");
        if (r) return r > 0 ? cudaSuccess : cudaErrorInvalidValue;
        count(&calls.passed_through);
    }
    if (!resolved) resolve();
    return real.free ? real.free(p) : cudaErrorInitializationError;
}

SPILL_EXPORT cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s) {
    if (in_shim || !ensure_ready() || !on_our_device()) {
        if (!resolved) resolve();
        if (!real.malloc_async) return cudaErrorInitializationError;
        return real.malloc_async(p, size, s);
    }
    return shim_malloc(p, size, "cudaMallocAsync"); /* available at once, so also in stream order */
}

SPILL_EXPORT cudaError_t cudaFreeAsync(void *p, cudaStream_t s) {
    if (p && !in_shim && ensure_ready()) {
        /* the stream may still use it: wait for the stream before the memory can be reused */
        pthread_mutex_lock(&tab.lock);
        entry *e = tab_find((uintptr_t)p);
        int ours = e && e->state != SLOT_EMPTY;
        pthread_mutex_unlock(&tab.lock);
        if (ours) {
            if (real.stream_sync) real.stream_sync(s);
            int r = shim_release(p, "cudaFreeAsync");
            return r > 0 ? cudaSuccess : cudaErrorInvalidValue;
        }
    }
    if (!resolved) resolve();
    return real.free_async ? real.free_async(p, s) : cudaErrorInitializationError;
}

SPILL_EXPORT cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot) {
    if (!resolved) resolve();
    if (!real.mem_get_info) return cudaErrorInitializationError;
    cudaError_t e = real.mem_get_info(fr, tot);
    if (e || in_shim || !ensure_ready() || strcmp(opts.memgetinfo, "virtual")) return e;
    /* SPILL_MEMGETINFO=virtual: report host memory as if it were the GPU's, so that programs that
       size their caches from free memory use the oversubscribed capacity */
    uint64_t host = spill_host_available();
    if (fr) *fr += (size_t)host;
    if (tot) *tot += (size_t)host_at_start;
    return e;
}

/* ---- the driver API ---- */

SPILL_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size) {
    if (in_shim || !ensure_ready() || !on_our_device()) {
        if (!resolved) resolve();
        return real.cu_alloc ? real.cu_alloc(dptr, size) : CUDA_ERROR_INVALID_VALUE;
    }
    void *p = NULL;
    cudaError_t e = shim_malloc(&p, size, "cuMemAlloc_v2");
    if (e) return e == cudaErrorInvalidValue ? CUDA_ERROR_INVALID_VALUE : CUDA_ERROR_OUT_OF_MEMORY;
    *dptr = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

SPILL_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
    if (dptr && !in_shim && ensure_ready()) {
        if (real.device_sync) real.device_sync();
        int r = shim_release((void *)(uintptr_t)dptr, "cuMemFree_v2");
        if (r) return r > 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    }
    if (!resolved) resolve();
    return real.cu_free ? real.cu_free(dptr) : CUDA_ERROR_INVALID_VALUE;
}

/* ---- PyTorch's pluggable allocator ----
 *   alloc = torch.cuda.memory.CUDAPluggableAllocator("libspill-preload.so", "spill_torch_malloc", "spill_torch_free")
 *   torch.cuda.memory.change_current_allocator(alloc) */

SPILL_EXPORT void *spill_torch_malloc(ssize_t size, int dev, cudaStream_t stream) {
    (void)stream;
    void *p = NULL;
    if (size < 0) return NULL;
    if (!ensure_ready() || dev != device) {
        if (!real.malloc || real.malloc(&p, (size_t)size)) return NULL;
        return p;
    }
    return shim_malloc(&p, (size_t)size, "spill_torch_malloc") ? NULL : p;
}

SPILL_EXPORT void spill_torch_free(void *p, ssize_t size, int dev, cudaStream_t stream) {
    (void)size, (void)dev;
    if (!p) return;
    if (ensure_ready()) {
        if (real.stream_sync) real.stream_sync(stream);
        if (shim_release(p, "spill_torch_free")) return;
    }
    if (real.free) real.free(p);
}
