/* libspill-preload.so: placed memory under unmodified CUDA programs.
 *
 *   LD_PRELOAD=libspill-preload.so python train.py
 *
 * Interposes cudaMalloc, cudaFree, cudaMallocAsync, cudaFreeAsync, cudaMemGetInfo,
 * cudaIpcGetMemHandle and the driver API's cuMemAlloc_v2 / cuMemFree_v2. Allocations go through
 * alloc/ (arena, budget, statistics) over a leaf backend that calls the program's own CUDA runtime,
 * found with dlsym(RTLD_NEXT), or, where that cannot see it (the shim or the runtime loaded
 * RTLD_LOCAL), among the loaded libraries (find_real):
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
#include <link.h>
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
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInitializationError = 3,
       cudaErrorNotReady = 600, cudaErrorStreamCaptureUnsupported = 900 };
enum { cudaStreamCaptureStatusNone = 0, cudaEventDisableTiming = 2 };
typedef void *cudaEvent_t;
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
    /* the per-thread-default-stream spellings (nvcc --default-stream per-thread) */
    cudaError_t (*malloc_async_ptsz)(void **, size_t, cudaStream_t);
    cudaError_t (*free_async_ptsz)(void *, cudaStream_t);
    cudaError_t (*mem_get_info)(size_t *, size_t *);
    cudaError_t (*malloc_managed)(void **, size_t, unsigned);
    cudaError_t (*runtime_version)(int *);
    cudaError_t (*get_device)(int *);
    cudaError_t (*device_sync)(void);
    cudaError_t (*stream_sync)(cudaStream_t);
    cudaError_t (*set_device)(int);
    cudaError_t (*get_last_error)(void);
    cudaError_t (*is_capturing)(cudaStream_t, int *);
    cudaError_t (*event_create)(cudaEvent_t *, unsigned);
    cudaError_t (*event_record)(cudaEvent_t, cudaStream_t);
    cudaError_t (*event_query)(cudaEvent_t);
    cudaError_t (*event_sync)(cudaEvent_t);
    cudaError_t (*event_destroy)(cudaEvent_t);
    cudaError_t (*ipc_get_handle)(void *, void *);
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

/* SLOT_GONE: a freed pointer whose address the runtime has since handed out past the shim (another
   device, a pass-through under capture): no longer ours, not a double free */
enum { SLOT_EMPTY = 0, SLOT_LIVE = 1, SLOT_FREED = 2, SLOT_GONE = 3 };
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

/* an allocation passed through to the runtime got address p: a tombstone there is stale */
static void tab_forget(uintptr_t p) {
    pthread_mutex_lock(&tab.lock);
    entry *e = tab_find(p);
    if (e && e->state == SLOT_FREED) e->state = SLOT_GONE;
    pthread_mutex_unlock(&tab.lock);
}

/* SLOT_LIVE: it was ours and is now marked freed (size returned); SLOT_FREED: freed before; 0: not ours */
static int tab_take(uintptr_t p, size_t *size) {
    pthread_mutex_lock(&tab.lock);
    entry *e = tab_find(p);
    int st = e && e->state != SLOT_GONE ? e->state : 0;
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

/* A failure the shim absorbs (it falls back, or carries on unadvised) must not stay in the calling
 * thread's last-error slot: the program's next cudaGetLastError would report it at an unrelated
 * call (PyTorch raises "out of memory" at its next kernel). The error reached the slot only through
 * the shim's own call, so reading it away loses nothing of the program's. (Issue 21, defect 4.) */
static void absorb_error(void) {
    if (real.get_last_error) real.get_last_error();
}

static int shim_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    (void)ctx;
    cudaError_t e;
    if (pl.tier == SPILL_TIER_HBM) {
        e = real.malloc(out, size);
        if (e) {
            absorb_error(); /* the arena falls back to managed memory, or the caller gets e itself */
            return spill_err_set(err, "cudaMalloc of %zu bytes failed (error %d)", size, e);
        }
        return 0;
    }
    if (!real.malloc_managed) return spill_err_set(err, "the CUDA runtime has no cudaMallocManaged");
    e = real.malloc_managed(out, size, cudaMemAttachGlobal);
    if (e) {
        absorb_error();
        return spill_err_set(err, "cudaMallocManaged of %zu bytes failed (error %d)", size, e);
    }
    /* host memory that the GPU reads in place: no migration on faults, no thrashing */
    int a1 = cu_advise(*out, size, cudaMemAdviseSetPreferredLocation, cudaMemLocationTypeHost, 0);
    int a2 = cu_advise(*out, size, cudaMemAdviseSetAccessedBy, cudaMemLocationTypeDevice, device);
    if (a1 || a2) {
        absorb_error();
        logf_("cudaMemAdvise on %p failed (errors %d, %d); the memory works, unadvised", *out, a1, a2);
    }
    return 0;
}

static void shim_free(void *ctx, void *p, size_t size, spill_placement pl) {
    (void)ctx, (void)size, (void)pl;
    cudaError_t e = real.free(p);
    if (e) {
        absorb_error();
        logf_("cudaFree(%p) failed (error %d)", p, e);
    }
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
    if (e) {
        absorb_error();
        return spill_err_set(err, "cudaMemPrefetchAsync failed (error %d)", e);
    }
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

/* The program's CUDA runtime. dlsym(RTLD_NEXT) finds it when the shim is preloaded and the runtime
 * is in the global scope. It does not when the shim itself was loaded RTLD_LOCAL (ctypes.CDLL, as
 * PyTorch's CUDAPluggableAllocator does: RTLD_NEXT then searches only the shim's own dependencies),
 * nor when the runtime came in inside an RTLD_LOCAL module (a Python extension such as CuPy): then
 * the loaded libraries are searched, each through a handle of its own (dlopen RTLD_NOLOAD reaches a
 * library whatever scope it was loaded in), skipping the shim. Issue 21, defects 1 and 2. */
static int is_shim(const void *addr) {
    static char here;
    Dl_info a, b;
    return addr && dladdr(addr, &a) && dladdr(&here, &b) && a.dli_fbase == b.dli_fbase;
}

typedef struct sym_search {
    const char *name;
    void *found;
} sym_search;

static int search_object(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    sym_search *q = arg;
    if (q->found || !info->dlpi_name || !info->dlpi_name[0]) return q->found != NULL;
    void *h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (!h) return 0;
    void *f = dlsym(h, q->name);
    if (f && !is_shim(f)) q->found = f;
    dlclose(h); /* RTLD_NOLOAD took a reference; the library stays loaded */
    return q->found != NULL;
}

static void *sym(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (f) return f;
    f = dlsym(RTLD_DEFAULT, name); /* the shim loaded RTLD_LOCAL, the runtime global */
    if (f && !is_shim(f)) return f;
    sym_search q = {name, NULL};
    dl_iterate_phdr(search_object, &q);
    return q.found;
}

static void resolve(void) {
    real.malloc = (cudaError_t(*)(void **, size_t))sym("cudaMalloc");
    real.free = (cudaError_t(*)(void *))sym("cudaFree");
    real.malloc_async = (cudaError_t(*)(void **, size_t, cudaStream_t))sym("cudaMallocAsync");
    real.free_async = (cudaError_t(*)(void *, cudaStream_t))sym("cudaFreeAsync");
    real.malloc_async_ptsz = (cudaError_t(*)(void **, size_t, cudaStream_t))sym("cudaMallocAsync_ptsz");
    real.free_async_ptsz = (cudaError_t(*)(void *, cudaStream_t))sym("cudaFreeAsync_ptsz");
    real.mem_get_info = (cudaError_t(*)(size_t *, size_t *))sym("cudaMemGetInfo");
    real.malloc_managed = (cudaError_t(*)(void **, size_t, unsigned))sym("cudaMallocManaged");
    real.runtime_version = (cudaError_t(*)(int *))sym("cudaRuntimeGetVersion");
    real.get_device = (cudaError_t(*)(int *))sym("cudaGetDevice");
    real.device_sync = (cudaError_t(*)(void))sym("cudaDeviceSynchronize");
    real.stream_sync = (cudaError_t(*)(cudaStream_t))sym("cudaStreamSynchronize");
    real.set_device = (cudaError_t(*)(int))sym("cudaSetDevice");
    real.get_last_error = (cudaError_t(*)(void))sym("cudaGetLastError");
    real.is_capturing = (cudaError_t(*)(cudaStream_t, int *))sym("cudaStreamIsCapturing");
    real.event_create = (cudaError_t(*)(cudaEvent_t *, unsigned))sym("cudaEventCreateWithFlags");
    real.event_record = (cudaError_t(*)(cudaEvent_t, cudaStream_t))sym("cudaEventRecord");
    real.event_query = (cudaError_t(*)(cudaEvent_t))sym("cudaEventQuery");
    real.event_sync = (cudaError_t(*)(cudaEvent_t))sym("cudaEventSynchronize");
    real.event_destroy = (cudaError_t(*)(cudaEvent_t))sym("cudaEventDestroy");
    real.ipc_get_handle = (cudaError_t(*)(void *, void *))sym("cudaIpcGetMemHandle");
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

/* ---- stream-ordered frees: deferred behind an event ----
 * cudaFreeAsync and PyTorch's free say "free when the stream gets here". Synchronizing the stream at
 * each free (what the shim did) stalls the host on every tensor freed, and is prohibited under graph
 * capture. Instead an event is recorded on the stream and the memory goes back to the arena once the
 * event has completed: polled at each later entry into the shim, and waited for when an allocation
 * would otherwise fail or leave HBM. Issue 21, defects 8 and 9. */
typedef struct pending_free {
    void *p;
    size_t size;
    cudaEvent_t ev;
} pending_free;

static struct {
    pthread_mutex_t lock;
    pending_free *q;
    size_t n, cap;
    cudaEvent_t *spare; /* completed events, for reuse */
    size_t n_spare, cap_spare;
} pending = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0};

static int events_usable(void) {
    return real.event_create && real.event_record && real.event_query && real.event_sync && real.event_destroy;
}

/* release the deferred frees whose events completed; with wait, all of them (after waiting). 1 when
   anything was released. */
static int drain_pending(int wait) {
    pthread_mutex_lock(&pending.lock);
    if (!pending.n) {
        pthread_mutex_unlock(&pending.lock);
        return 0;
    }
    int any = 0;
    for (size_t i = 0; i < pending.n;) {
        pending_free f = pending.q[i];
        cudaError_t e = wait ? real.event_sync(f.ev) : real.event_query(f.ev);
        if (e == cudaErrorNotReady) {
            i++;
            continue;
        }
        if (e) absorb_error(); /* a sticky device error: the program sees it at its own calls */
        pending.q[i] = pending.q[--pending.n];
        if (pending.n_spare < pending.cap_spare) pending.spare[pending.n_spare++] = f.ev;
        else real.event_destroy(f.ev);
        in_shim = 1;
        spill_mem_put(mem, f.p, f.size);
        in_shim = 0;
        any = 1;
    }
    pthread_mutex_unlock(&pending.lock);
    return any;
}

/* Free p (ours, already taken out of the table) once `stream` has reached this point. Falls back to
   synchronizing the stream where the runtime has no events. */
static void defer_free(void *p, size_t size, cudaStream_t stream) {
    pthread_mutex_lock(&pending.lock);
    cudaEvent_t ev = NULL;
    int ok = events_usable();
    if (ok && pending.n == pending.cap) {
        size_t cap = pending.cap ? pending.cap * 2 : 256;
        pending_free *q = realloc(pending.q, cap * sizeof *q);
        cudaEvent_t *sp = realloc(pending.spare, cap * sizeof *sp);
        if (q) pending.q = q;
        if (sp) pending.spare = sp;
        if (q && sp) pending.cap = pending.cap_spare = cap;
        ok = pending.n < pending.cap;
    }
    if (ok) {
        if (pending.n_spare) ev = pending.spare[--pending.n_spare];
        else if (real.event_create(&ev, cudaEventDisableTiming)) ev = NULL;
    }
    if (ev && real.event_record(ev, stream) == cudaSuccess) {
        pending.q[pending.n++] = (pending_free){p, size, ev};
        pthread_mutex_unlock(&pending.lock);
        drain_pending(0);
        return;
    }
    if (ev) real.event_destroy(ev);
    absorb_error();
    pthread_mutex_unlock(&pending.lock);
    if (real.stream_sync && real.stream_sync(stream)) absorb_error();
    in_shim = 1;
    spill_mem_put(mem, p, size);
    in_shim = 0;
}

static int stream_capturing(cudaStream_t s) {
    int st = cudaStreamCaptureStatusNone;
    if (!real.is_capturing || real.is_capturing(s, &st)) return 0;
    return st != cudaStreamCaptureStatusNone;
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
    drain_pending(0);
    in_shim = 1;
    void *q = spill_mem_alloc(mem, size, hbm, api, &err);
    if (!q && pending.n) { /* memory freed in stream order may be enough once its streams get there */
        in_shim = 0;
        drain_pending(1);
        in_shim = 1;
        q = spill_mem_alloc(mem, size, hbm, api, &err);
    }
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

/* 1: it was ours and is freed (at once, or once `stream` gets here when deferred); 0: not ours (pass
   it on); -1: a double free, refused */
static int shim_release_on(void *p, const char *api, int deferred, cudaStream_t stream) {
    size_t size = 0;
    int st = tab_take((uintptr_t)p, &size);
    if (st == SLOT_FREED) {
        count(&calls.double_frees);
        fprintf(stderr, "spill-preload: %s(%p): double free (this pointer was already freed); refused\n", api, p);
        return -1;
    }
    if (st != SLOT_LIVE) return 0;
    if (deferred) {
        defer_free(p, size, stream);
    } else {
        in_shim = 1;
        spill_mem_put(mem, p, size);
        in_shim = 0;
    }
    count(&calls.free_calls);
    return 1;
}
static int shim_release(void *p, const char *api) { return shim_release_on(p, api, 0, NULL); }

static int is_ours(void *p) {
    pthread_mutex_lock(&tab.lock);
    entry *e = tab_find((uintptr_t)p);
    int ours = e && (e->state == SLOT_LIVE || e->state == SLOT_FREED);
    pthread_mutex_unlock(&tab.lock);
    return ours;
}

/* cudaFree's promise: the device has finished with the memory. Synchronize the device the shim
   allocates on, whichever is current in the calling thread, and leave the current one as it was. */
static cudaError_t sync_our_device(void) {
    if (!real.device_sync) return cudaSuccess;
    int cur = device;
    if (real.get_device) real.get_device(&cur);
    if (cur != device && real.set_device && real.set_device(device)) return real.get_last_error ? real.get_last_error() : 1;
    cudaError_t e = real.device_sync();
    if (cur != device && real.set_device) real.set_device(cur);
    return e;
}

/* a pass-through allocation: its address is no longer a freed pointer of ours */
static cudaError_t passed_through(cudaError_t e, void **p) {
    if (!e && p && *p && tab.cap) tab_forget((uintptr_t)*p);
    return e;
}

/* ---- the interposed runtime API ---- */

SPILL_EXPORT cudaError_t cudaMalloc(void **p, size_t size) {
    if (in_shim || !ensure_ready() || !on_our_device()) {
        if (!resolved) resolve();
        if (!real.malloc) return cudaErrorInitializationError;
        if (!in_shim) count(&calls.passed_through);
        return passed_through(real.malloc(p, size), p);
    }
    return shim_malloc(p, size, "cudaMalloc");
}

SPILL_EXPORT cudaError_t cudaFree(void *p) {
    if (p && !in_shim && ensure_ready()) {
        if (is_ours(p)) {
            /* cudaFree synchronizes the device; a sub-allocation's memory may be handed out again at
               once, so keep that promise before giving it back, and free nothing the device may
               still be using when the synchronize failed (the caller gets its error) */
            cudaError_t e = sync_our_device();
            if (e) return e;
            drain_pending(0); /* the device is idle: every deferred free can go too */
            int r = shim_release(p, "cudaFree");
            if (r) return r > 0 ? cudaSuccess : cudaErrorInvalidValue;
        }
        count(&calls.passed_through);
    }
    if (!resolved) resolve();
    return real.free ? real.free(p) : cudaErrorInitializationError;
}

static cudaError_t malloc_async(void **p, size_t size, cudaStream_t s, int ptsz) {
    /* under graph capture the allocation is a node of the graph, made each time the graph runs:
       only the runtime can do that (a shim allocation now would be a prohibited cudaMalloc) */
    if (in_shim || !ensure_ready() || !on_our_device() || stream_capturing(s)) {
        if (!resolved) resolve();
        cudaError_t (*f)(void **, size_t, cudaStream_t) = ptsz ? real.malloc_async_ptsz : real.malloc_async;
        if (!f) return cudaErrorInitializationError;
        return passed_through(f(p, size, s), p);
    }
    return shim_malloc(p, size, "cudaMallocAsync"); /* available at once, so also in stream order */
}

SPILL_EXPORT cudaError_t cudaMallocAsync(void **p, size_t size, cudaStream_t s) { return malloc_async(p, size, s, 0); }
SPILL_EXPORT cudaError_t cudaMallocAsync_ptsz(void **p, size_t size, cudaStream_t s) { return malloc_async(p, size, s, 1); }

static cudaError_t free_async(void *p, cudaStream_t s, int ptsz) {
    if (p && !in_shim && ensure_ready() && is_ours(p)) {
        if (stream_capturing(s)) {
            /* a graph node freeing memory the shim placed before the capture: the shim cannot free
               at the graph's launch, and a synchronize here would break the capture */
            fprintf(stderr, "spill-preload: cudaFreeAsync(%p) on a capturing stream: this memory was placed by "
                            "the shim before the capture and cannot be freed by a graph; free it outside the "
                            "capture (refused)\n", p);
            return cudaErrorStreamCaptureUnsupported;
        }
        /* the stream may still use it: it goes back once the stream has passed this point */
        int r = shim_release_on(p, "cudaFreeAsync", 1, s);
        return r > 0 ? cudaSuccess : cudaErrorInvalidValue;
    }
    if (!resolved) resolve();
    cudaError_t (*f)(void *, cudaStream_t) = ptsz ? real.free_async_ptsz : real.free_async;
    return f ? f(p, s) : cudaErrorInitializationError;
}

SPILL_EXPORT cudaError_t cudaFreeAsync(void *p, cudaStream_t s) { return free_async(p, s, 0); }
SPILL_EXPORT cudaError_t cudaFreeAsync_ptsz(void *p, cudaStream_t s) { return free_async(p, s, 1); }

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
        CUresult e = real.cu_alloc ? real.cu_alloc(dptr, size) : CUDA_ERROR_INVALID_VALUE;
        void *q = dptr && !e ? (void *)(uintptr_t)*dptr : NULL;
        passed_through(e, &q);
        return e;
    }
    void *p = NULL;
    cudaError_t e = shim_malloc(&p, size, "cuMemAlloc_v2");
    if (e) return e == cudaErrorInvalidValue ? CUDA_ERROR_INVALID_VALUE : CUDA_ERROR_OUT_OF_MEMORY;
    *dptr = (CUdeviceptr)(uintptr_t)p;
    return CUDA_SUCCESS;
}

SPILL_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
    if (dptr && !in_shim && ensure_ready() && is_ours((void *)(uintptr_t)dptr)) {
        if (sync_our_device()) {
            absorb_error();
            return CUDA_ERROR_INVALID_VALUE; /* the device may still use it: not freed */
        }
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
        if (!real.malloc || passed_through(real.malloc(&p, (size_t)size), &p)) return NULL;
        return p;
    }
    return shim_malloc(&p, (size_t)size, "spill_torch_malloc") ? NULL : p;
}

SPILL_EXPORT void spill_torch_free(void *p, ssize_t size, int dev, cudaStream_t stream) {
    (void)size, (void)dev;
    if (!p) return;
    /* stream-ordered, like PyTorch's own allocator: back to the arena once the stream gets here */
    if (ensure_ready() && shim_release_on(p, "spill_torch_free", 1, stream)) return;
    if (real.free) real.free(p);
}

/* ---- IPC ----
 * A handle names the whole runtime allocation behind a pointer. Managed memory has none (the runtime
 * refuses it, obscurely), and a sub-allocation shares its 2 MiB chunk with unrelated allocations
 * that the other process would map too. Refuse both, saying why; a large device allocation (its own
 * cudaMalloc) and memory the shim did not place pass through. */
typedef struct { char reserved[64]; } spill_ipc_handle; /* cudaIpcMemHandle_t */

SPILL_EXPORT cudaError_t cudaIpcGetMemHandle(spill_ipc_handle *h, void *p) {
    if (!resolved) resolve();
    if (p && !in_shim && ready > 0 && is_ours(p)) {
        size_t size = 0;
        spill_placement pl;
        int whole = spill_mem_lookup(mem, p, &size, &pl) && pl.tier == SPILL_TIER_HBM && size >= SPILL_ARENA_GRAIN;
        if (!whole) {
            fprintf(stderr, "spill-preload: cudaIpcGetMemHandle(%p): this memory was placed by the shim %s; an IPC "
                            "handle would not describe it. Allocate memory to share with IPC without the shim "
                            "(or with a budget that keeps it in HBM, at 2 MiB or more); refused\n", p,
                    pl.tier != SPILL_TIER_HBM ? "in managed host memory" : "inside a 2 MiB chunk shared with other allocations");
            return cudaErrorInvalidValue;
        }
    }
    return real.ipc_get_handle ? real.ipc_get_handle(h, p) : cudaErrorInitializationError;
}
