/* A fake CUDA runtime for testing the preload shim without a GPU: device memory is host memory,
 * and every call is recorded so that a test can check what reached "the runtime" — which calls,
 * sizes, advice and locations. The signatures are CUDA 13's (cudaMemAdvise and
 * cudaMemPrefetchAsync take a struct cudaMemLocation by value). Device memory is limited to
 * $FAKE_CUDA_TOTAL bytes (default 256 MiB); managed memory is not. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define API __attribute__((visibility("default")))

typedef int cudaError_t;
typedef void *cudaStream_t;
struct loc { int type, id; };

enum { MAXREC = 1 << 16 };
typedef struct rec { char op[24]; uintptr_t ptr; size_t size; int advice, loc_type, loc_id; } rec;
typedef struct live { uintptr_t ptr; size_t size; int managed; } live;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static rec *log_;
static int n_log;
static live *lv;
static int n_live, cap_live;
static size_t device_used;

static size_t total(void) {
    const char *e = getenv("FAKE_CUDA_TOTAL");
    return e ? (size_t)strtoull(e, NULL, 10) : (size_t)256 << 20;
}

static void record(const char *op, const void *p, size_t n, int advice, int lt, int li) {
    if (!log_) log_ = calloc(MAXREC, sizeof *log_);
    if (n_log < MAXREC) {
        rec *r = &log_[n_log++];
        snprintf(r->op, sizeof r->op, "%s", op);
        r->ptr = (uintptr_t)p;
        r->size = n;
        r->advice = advice;
        r->loc_type = lt;
        r->loc_id = li;
    }
}

static cudaError_t take(void **p, size_t n, int managed, const char *op) {
    if (!p) return 1;
    pthread_mutex_lock(&lock);
    if (!managed && device_used + n > total()) {
        record(op, NULL, n, 0, 0, 0);
        pthread_mutex_unlock(&lock);
        return 2; /* cudaErrorMemoryAllocation */
    }
    /* like the real runtime: 256-byte alignment, and 2 MiB for allocations of 2 MiB or more */
    size_t al = n >= ((size_t)2 << 20) ? (size_t)2 << 20 : 256;
    void *m = aligned_alloc(al, (n + al - 1) / al * al);
    if (!m) {
        pthread_mutex_unlock(&lock);
        return 2;
    }
    if (n_live == cap_live) {
        cap_live = cap_live ? cap_live * 2 : 1024;
        lv = realloc(lv, sizeof *lv * (size_t)cap_live);
    }
    lv[n_live++] = (live){(uintptr_t)m, n, managed};
    if (!managed) device_used += n;
    record(op, m, n, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    *p = m;
    return 0;
}

static cudaError_t give(void *p, const char *op) {
    if (!p) return 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_live; i++)
        if (lv[i].ptr == (uintptr_t)p) {
            if (!lv[i].managed) device_used -= lv[i].size;
            record(op, p, lv[i].size, 0, 0, 0);
            lv[i] = lv[--n_live];
            pthread_mutex_unlock(&lock);
            free(p);
            return 0;
        }
    record("bad-free", p, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    return 1; /* cudaErrorInvalidValue */
}

API cudaError_t cudaMalloc(void **p, size_t n) { return take(p, n, 0, "cudaMalloc"); }
API cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t s) { (void)s; return take(p, n, 0, "cudaMallocAsync"); }
API cudaError_t cudaMallocManaged(void **p, size_t n, unsigned flags) { (void)flags; return take(p, n, 1, "cudaMallocManaged"); }
API cudaError_t cudaFree(void *p) { return give(p, "cudaFree"); }
API cudaError_t cudaFreeAsync(void *p, cudaStream_t s) { (void)s; return give(p, "cudaFreeAsync"); }
API int cuMemAlloc_v2(unsigned long long *d, size_t n) {
    void *p = NULL;
    int e = take(&p, n, 0, "cuMemAlloc_v2");
    *d = (uintptr_t)p;
    return e;
}
API int cuMemFree_v2(unsigned long long d) { return give((void *)(uintptr_t)d, "cuMemFree_v2"); }

API cudaError_t cudaMemAdvise(const void *p, size_t n, int advice, struct loc l) {
    pthread_mutex_lock(&lock);
    record("cudaMemAdvise", p, n, advice, l.type, l.id);
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaMemPrefetchAsync(const void *p, size_t n, struct loc l, unsigned flags, cudaStream_t s) {
    (void)flags, (void)s;
    pthread_mutex_lock(&lock);
    record("cudaMemPrefetchAsync", p, n, 0, l.type, l.id);
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot) {
    pthread_mutex_lock(&lock);
    if (fr) *fr = total() - device_used;
    if (tot) *tot = total();
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaRuntimeGetVersion(int *v) { *v = 13000; return 0; }
API cudaError_t cudaGetDevice(int *d) { *d = 0; return 0; }
API cudaError_t cudaDeviceSynchronize(void) { return 0; }
API cudaError_t cudaStreamSynchronize(cudaStream_t s) { (void)s; return 0; }

/* ---- for the tests ---- */
API int fake_cuda_count(const char *op) {
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_log; i++) n += !strcmp(log_[i].op, op);
    pthread_mutex_unlock(&lock);
    return n;
}
API size_t fake_cuda_bytes(const char *op) {
    size_t n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_log; i++)
        if (!strcmp(log_[i].op, op) && log_[i].ptr) n += log_[i].size;
    pthread_mutex_unlock(&lock);
    return n;
}
API int fake_cuda_advice_count(int advice, int loc_type, int loc_id) {
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_log; i++)
        n += !strcmp(log_[i].op, "cudaMemAdvise") && log_[i].advice == advice && log_[i].loc_type == loc_type &&
             log_[i].loc_id == loc_id;
    pthread_mutex_unlock(&lock);
    return n;
}
API int fake_cuda_live(void) {
    pthread_mutex_lock(&lock);
    int n = n_live;
    pthread_mutex_unlock(&lock);
    return n;
}
API size_t fake_cuda_device_used(void) {
    pthread_mutex_lock(&lock);
    size_t n = device_used;
    pthread_mutex_unlock(&lock);
    return n;
}
/* device memory that did not come through the shim (a pointer it must pass through) */
API cudaError_t fake_cuda_malloc_direct(void **p, size_t n) { return take(p, n, 0, "direct"); }
