/* A fake CUDA runtime for testing the preload shim without a GPU: device memory is host memory,
 * and every call is recorded so that a test can check what reached "the runtime" — which calls,
 * sizes, advice and locations. The signatures are CUDA 13's (cudaMemAdvise and
 * cudaMemPrefetchAsync take a struct cudaMemLocation by value). Device memory is limited to
 * $FAKE_CUDA_TOTAL bytes (default 256 MiB); managed memory is not. With $FAKE_CUDA_ADVISE_FAILS set,
 * cudaMemAdvise fails.
 *
 * It keeps the real runtime's rules where the shim could break them:
 *   - a per-thread last-error slot: a failing call leaves its error there until cudaGetLastError
 *     reads and clears it (cudaPeekAtLastError reads it only);
 *   - two devices, the current one per thread (cudaSetDevice); cudaDeviceSynchronize is recorded
 *     with the device it synchronized;
 *   - stream capture (cudaStreamBeginCapture, global mode): while a stream captures, cudaMalloc,
 *     cudaMallocManaged, cudaFree, cudaDeviceSynchronize and synchronizing the capturing stream are
 *     prohibited: they fail with cudaErrorStreamCaptureUnsupported and invalidate the capture, whose
 *     cudaStreamEndCapture then fails; cudaMallocAsync / cudaFreeAsync on the capturing stream are
 *     legal (they become graph nodes);
 *   - streams run only when told: fake_cuda_stream_hold(s, 1) keeps the work queued on s pending,
 *     so an event recorded on s does not complete until the stream is released or synchronized. */
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

enum { cudaErrorStreamCaptureUnsupported = 900, cudaErrorStreamCaptureInvalidated = 901, cudaErrorNotReady = 600 };
static __thread cudaError_t last_error;
static __thread int current_device;
static cudaError_t fail(cudaError_t e) {
    if (e) last_error = e;
    return e;
}

/* streams by handle (the fake's handles are any pointers the test chooses) */
enum { MAXSTREAM = 64 };
typedef struct fstream { cudaStream_t s; int capturing, invalidated, held; unsigned long long submitted, completed; } fstream;
static fstream streams[MAXSTREAM];
static int n_streams, n_capturing;
static fstream *stream_of(cudaStream_t s) { /* under lock */
    for (int i = 0; i < n_streams; i++)
        if (streams[i].s == s) return &streams[i];
    if (n_streams == MAXSTREAM) abort();
    streams[n_streams] = (fstream){.s = s};
    return &streams[n_streams++];
}
/* a call that global-mode capture prohibits: fails and invalidates every capture (under lock) */
static int prohibited_in_capture(void) {
    if (!n_capturing) return 0;
    for (int i = 0; i < n_streams; i++)
        if (streams[i].capturing) streams[i].invalidated = 1;
    return 1;
}
static size_t reuse_next; /* fake_cuda_reuse_next: the next device allocation gets this address */

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
    if (!p) return fail(1);
    pthread_mutex_lock(&lock);
    if (strcmp(op, "cudaMallocAsync") && strcmp(op, "direct") && prohibited_in_capture()) {
        record("capture-violation", NULL, n, 0, 0, 0);
        pthread_mutex_unlock(&lock);
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (!managed && device_used + n > total()) {
        record(op, NULL, n, 0, 0, 0);
        pthread_mutex_unlock(&lock);
        return fail(2); /* cudaErrorMemoryAllocation */
    }
    /* like the real runtime: 256-byte alignment, and 2 MiB for allocations of 2 MiB or more */
    size_t al = n >= ((size_t)2 << 20) ? (size_t)2 << 20 : 256;
    void *m = NULL;
    int reuse_live = 0;
    for (int i = 0; reuse_next && i < n_live; i++) reuse_live |= lv[i].ptr == reuse_next;
    if (reuse_next && !managed && !reuse_live) {
        m = (void *)reuse_next; /* an address the runtime handed out before and got back (its memory is kept) */
        reuse_next = 0;
    } else
        m = aligned_alloc(al, (n + al - 1) / al * al);
    if (!m) {
        pthread_mutex_unlock(&lock);
        return fail(2);
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

static uintptr_t kept[64]; /* addresses fake_cuda_reuse_next may hand out again: not given back to libc */
static int n_kept;

static cudaError_t give(void *p, const char *op) {
    if (!p) return 0;
    pthread_mutex_lock(&lock);
    if (!strcmp(op, "cudaFree") && prohibited_in_capture()) {
        record("capture-violation", p, 0, 0, 0, 0);
        pthread_mutex_unlock(&lock);
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    for (int i = 0; i < n_live; i++)
        if (lv[i].ptr == (uintptr_t)p) {
            if (!lv[i].managed) device_used -= lv[i].size;
            record(op, p, lv[i].size, 0, 0, 0);
            lv[i] = lv[--n_live];
            int keep = 0;
            for (int k = 0; k < n_kept; k++) keep |= kept[k] == (uintptr_t)p;
            pthread_mutex_unlock(&lock);
            if (!keep) free(p);
            return 0;
        }
    record("bad-free", p, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    return fail(1); /* cudaErrorInvalidValue */
}

API cudaError_t cudaMalloc(void **p, size_t n) { return take(p, n, 0, "cudaMalloc"); }
API cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t s) { (void)s; return take(p, n, 0, "cudaMallocAsync"); }
API cudaError_t cudaMallocManaged(void **p, size_t n, unsigned flags) { (void)flags; return take(p, n, 1, "cudaMallocManaged"); }
API cudaError_t cudaFree(void *p) { return give(p, "cudaFree"); }
API cudaError_t cudaFreeAsync(void *p, cudaStream_t s) { (void)s; return give(p, "cudaFreeAsync"); }
/* what nvcc --default-stream per-thread makes of cudaMallocAsync / cudaFreeAsync */
API cudaError_t cudaMallocAsync_ptsz(void **p, size_t n, cudaStream_t s) { (void)s; return take(p, n, 0, "cudaMallocAsync"); }
API cudaError_t cudaFreeAsync_ptsz(void *p, cudaStream_t s) { (void)s; return give(p, "cudaFreeAsync"); }
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
    return getenv("FAKE_CUDA_ADVISE_FAILS") ? fail(1) : 0; /* a device that refuses the hint */
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
API cudaError_t cudaGetDevice(int *d) { *d = current_device; return 0; }
API cudaError_t cudaSetDevice(int d) {
    if (d < 0 || d > 1) return fail(101); /* cudaErrorInvalidDevice */
    current_device = d;
    return 0;
}
API cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = 0;
    return e;
}
API cudaError_t cudaPeekAtLastError(void) { return last_error; }
API cudaError_t cudaDeviceSynchronize(void) {
    pthread_mutex_lock(&lock);
    if (prohibited_in_capture()) {
        record("capture-violation", NULL, 0, 0, 0, 0);
        pthread_mutex_unlock(&lock);
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    record("cudaDeviceSynchronize", NULL, 0, 0, 0, current_device);
    for (int i = 0; i < n_streams; i++) streams[i].completed = streams[i].submitted;
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    pthread_mutex_lock(&lock);
    fstream *f = stream_of(s);
    if (f->capturing) {
        f->invalidated = 1;
        record("capture-violation", NULL, 0, 0, 0, 0);
        pthread_mutex_unlock(&lock);
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    record("cudaStreamSynchronize", s, 0, 0, 0, 0);
    f->completed = f->submitted;
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaStreamBeginCapture(cudaStream_t s, int mode) {
    (void)mode; /* global mode's rules, whatever is asked */
    pthread_mutex_lock(&lock);
    fstream *f = stream_of(s);
    f->capturing = 1;
    f->invalidated = 0;
    n_capturing++;
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaStreamEndCapture(cudaStream_t s, void **graph) {
    pthread_mutex_lock(&lock);
    fstream *f = stream_of(s);
    int bad = !f->capturing || f->invalidated;
    if (f->capturing) n_capturing--;
    f->capturing = 0;
    pthread_mutex_unlock(&lock);
    if (graph) *graph = bad ? NULL : (void *)f;
    return bad ? fail(cudaErrorStreamCaptureInvalidated) : 0;
}
API cudaError_t cudaStreamIsCapturing(cudaStream_t s, int *status) {
    pthread_mutex_lock(&lock);
    fstream *f = stream_of(s);
    *status = f->capturing ? (f->invalidated ? 2 : 1) : 0; /* cudaStreamCaptureStatusNone/Active/Invalidated */
    pthread_mutex_unlock(&lock);
    return 0;
}

/* events: complete when the stream they were recorded on has run up to them */
typedef struct fevent { fstream *f; unsigned long long ticket; } fevent;
API cudaError_t cudaEventCreateWithFlags(void **e, unsigned flags) {
    (void)flags;
    fevent *ev = calloc(1, sizeof *ev);
    if (!ev) return fail(2);
    *e = ev;
    pthread_mutex_lock(&lock);
    record("cudaEventCreate", ev, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaEventDestroy(void *e) {
    pthread_mutex_lock(&lock);
    record("cudaEventDestroy", e, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    free(e);
    return 0;
}
API cudaError_t cudaEventRecord(void *e, cudaStream_t s) {
    fevent *ev = e;
    pthread_mutex_lock(&lock);
    fstream *f = stream_of(s);
    ev->f = f;
    ev->ticket = ++f->submitted;
    if (!f->held) f->completed = f->submitted;
    record("cudaEventRecord", e, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    return 0;
}
API cudaError_t cudaEventQuery(void *e) {
    fevent *ev = e;
    pthread_mutex_lock(&lock);
    int done = !ev->f || ev->f->completed >= ev->ticket;
    pthread_mutex_unlock(&lock);
    return done ? 0 : cudaErrorNotReady; /* not an error: the last-error slot is left alone */
}
API cudaError_t cudaEventSynchronize(void *e) {
    fevent *ev = e;
    pthread_mutex_lock(&lock);
    if (ev->f && ev->f->completed < ev->ticket) ev->f->completed = ev->ticket;
    record("cudaEventSynchronize", e, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    return 0;
}
typedef struct { char reserved[64]; } ipc_handle;
API cudaError_t cudaIpcGetMemHandle(ipc_handle *h, void *p) {
    pthread_mutex_lock(&lock);
    int found = 0, managed = 0;
    for (int i = 0; i < n_live; i++)
        if (lv[i].ptr <= (uintptr_t)p && (uintptr_t)p < lv[i].ptr + lv[i].size) found = 1, managed = lv[i].managed;
    record("cudaIpcGetMemHandle", p, 0, 0, 0, 0);
    pthread_mutex_unlock(&lock);
    if (!found || managed) return fail(1); /* the real runtime refuses managed memory too */
    memset(h, 0, sizeof *h);
    memcpy(h->reserved, &p, sizeof p);
    return 0;
}

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
/* work queued on s stays pending while held (events recorded on it do not complete) */
API void fake_cuda_stream_hold(cudaStream_t s, int held) {
    pthread_mutex_lock(&lock);
    fstream *f = stream_of(s);
    f->held = held;
    if (!held) f->completed = f->submitted;
    pthread_mutex_unlock(&lock);
}
/* the first device allocation after p is freed gets address p again, as the real runtime may hand
   out a freed address; call it while p is live (its memory is kept from then on) */
API void fake_cuda_reuse_next(void *p) {
    pthread_mutex_lock(&lock);
    reuse_next = (uintptr_t)p;
    if (n_kept < 64) kept[n_kept++] = (uintptr_t)p;
    pthread_mutex_unlock(&lock);
}
API int fake_cuda_sync_count(int dev) {
    int n = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_log; i++) n += !strcmp(log_[i].op, "cudaDeviceSynchronize") && log_[i].loc_id == dev;
    pthread_mutex_unlock(&lock);
    return n;
}
/* device memory that did not come through the shim (a pointer it must pass through) */
API cudaError_t fake_cuda_malloc_direct(void **p, size_t n) { return take(p, n, 0, "direct"); }
