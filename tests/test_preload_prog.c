/* The program the preload tests run, linked against the fake CUDA runtime (tests/fake_cudart.c).
 *   test_preload_prog shim     under LD_PRELOAD=libspill-preload.so, SPILL_HBM_BUDGET=64M
 *   test_preload_prog plain    without the shim: every call must reach the runtime unchanged
 *   test_preload_prog virtual  under the shim with SPILL_MEMGETINFO=virtual
 *   test_preload_prog oom      under the shim, the device smaller than the budget, advice failing
 *   test_preload_prog local SHIM  without LD_PRELOAD: the shim dlopen'ed RTLD_LOCAL, as Python's
 *                              ctypes (PyTorch's CUDAPluggableAllocator) loads it */
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

typedef int cudaError_t;
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocAsync(void **p, size_t n, void *s);
cudaError_t cudaFreeAsync(void *p, void *s);
cudaError_t cudaMemGetInfo(size_t *fr, size_t *tot);
int cuMemAlloc_v2(unsigned long long *d, size_t n);
int cuMemFree_v2(unsigned long long d);
int fake_cuda_count(const char *op);
size_t fake_cuda_bytes(const char *op);
int fake_cuda_advice_count(int advice, int loc_type, int loc_id);
int fake_cuda_live(void);
size_t fake_cuda_device_used(void);
cudaError_t fake_cuda_malloc_direct(void **p, size_t n);
cudaError_t cudaGetLastError(void);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaStreamBeginCapture(void *s, int mode);
cudaError_t cudaStreamEndCapture(void *s, void **graph);
cudaError_t cudaIpcGetMemHandle(void *handle, void *p);
cudaError_t cudaMallocAsync_ptsz(void **p, size_t n, void *s);
cudaError_t cudaFreeAsync_ptsz(void *p, void *s);
void fake_cuda_stream_hold(void *s, int held);
void fake_cuda_reuse_next(void *p);
int fake_cuda_sync_count(int dev);

#define MiB ((size_t)1 << 20)
enum { SET_PREFERRED_LOCATION = 3, SET_ACCESSED_BY = 5, LOC_DEVICE = 1, LOC_HOST = 2 };

static void test_budget_and_advice(void **s) {
    (void)s;
    /* small ones first: packed into 2 MiB chunks of device memory */
    void *small[100];
    for (int i = 0; i < 100; i++) {
        assert_int_equal(cudaMalloc(&small[i], 1000), 0);
        memset(small[i], i, 1000);
    }
    assert_true(fake_cuda_count("cudaMalloc") <= 1); /* 100 x 1000 bytes fit one 2 MiB chunk */
    /* 40 x 4 MiB = 160 MiB against a 64 MiB budget */
    void *big[40];
    for (int i = 0; i < 40; i++) {
        assert_int_equal(cudaMalloc(&big[i], 4 * MiB), 0);
        memset(big[i], 0x5a, 4 * MiB); /* usable */
    }
    int managed = fake_cuda_count("cudaMallocManaged");
    printf("device bytes %zu, managed allocations %d\n", fake_cuda_bytes("cudaMalloc"), managed);
    assert_true(fake_cuda_bytes("cudaMalloc") <= 64 * MiB); /* the budget held */
    assert_true(fake_cuda_bytes("cudaMalloc") >= 48 * MiB); /* and was used */
    assert_true(managed >= 20);
    /* every managed region: preferred location host, accessed by device 0 */
    assert_int_equal(fake_cuda_advice_count(SET_PREFERRED_LOCATION, LOC_HOST, 0), managed);
    assert_int_equal(fake_cuda_advice_count(SET_ACCESSED_BY, LOC_DEVICE, 0), managed);
    for (int i = 0; i < 100; i++) assert_int_equal(((unsigned char *)small[i])[999], (unsigned char)i);
    for (int i = 0; i < 40; i++) assert_int_equal(cudaFree(big[i]), 0);
    for (int i = 0; i < 100; i++) assert_int_equal(cudaFree(small[i]), 0);
    assert_int_equal(fake_cuda_live(), 0); /* every chunk went back to the runtime */
}

static void test_double_free_and_foreign(void **s) {
    (void)s;
    void *p;
    assert_int_equal(cudaMalloc(&p, 3 * MiB), 0);
    int frees = fake_cuda_count("cudaFree");
    assert_int_equal(cudaFree(p), 0);
    assert_int_equal(fake_cuda_count("cudaFree"), frees + 1);
    assert_int_not_equal(cudaFree(p), 0); /* detected, refused, reported on stderr */
    assert_int_equal(fake_cuda_count("cudaFree"), frees + 1);
    assert_int_equal(fake_cuda_count("bad-free"), 0); /* the runtime never saw the second free */
    /* memory the shim did not allocate passes through untouched */
    void *q;
    assert_int_equal(fake_cuda_malloc_direct(&q, 4096), 0);
    assert_int_equal(cudaFree(q), 0);
    assert_int_equal(fake_cuda_count("cudaFree"), frees + 2);
    assert_int_equal(cudaFree(NULL), 0);
}

static void test_other_entry_points(void **s) {
    (void)s;
    unsigned long long d = 0;
    int before = fake_cuda_count("cuMemAlloc_v2");
    assert_int_equal(cuMemAlloc_v2(&d, 5 * MiB), 0);
    assert_true(d != 0);
    assert_int_equal(fake_cuda_count("cuMemAlloc_v2"), before); /* placed by the shim instead */
    assert_int_equal(cuMemFree_v2(d), 0);
    assert_int_not_equal(cuMemFree_v2(d), 0);
    void *p;
    assert_int_equal(cudaMallocAsync(&p, 2 * MiB, NULL), 0);
    assert_int_equal(fake_cuda_count("cudaMallocAsync"), 0);
    assert_int_equal(cudaFreeAsync(p, NULL), 0);
    /* PyTorch's pluggable allocator entry points */
    void *(*tm)(ssize_t, int, void *) = (void *(*)(ssize_t, int, void *))dlsym(RTLD_DEFAULT, "spill_torch_malloc");
    void (*tf)(void *, ssize_t, int, void *) = (void (*)(void *, ssize_t, int, void *))dlsym(RTLD_DEFAULT, "spill_torch_free");
    assert_non_null(tm);
    assert_non_null(tf);
    void *t = tm(20 * MiB, 0, NULL);
    assert_non_null(t);
    memset(t, 1, 20 * MiB);
    tf(t, 20 * MiB, 0, NULL);
    assert_int_equal(fake_cuda_live(), 0);
    size_t fr, tot;
    assert_int_equal(cudaMemGetInfo(&fr, &tot), 0);
    assert_int_equal(tot, 256 * MiB); /* real by default */
}

static void *worker(void *arg) {
    uintptr_t id = (uintptr_t)arg;
    uint64_t r = id * 7919 + 1;
    void *held[8] = {0};
    size_t size[8] = {0};
    for (int it = 0; it < 300; it++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int k = (int)((r >> 33) % 8);
        if (held[k]) {
            if (((unsigned char *)held[k])[size[k] - 1] != (unsigned char)id) return (void *)1;
            if (cudaFree(held[k])) return (void *)2;
            held[k] = NULL;
        } else {
            size[k] = (r >> 40) % 10 == 0 ? 3 * MiB : 1 + (size_t)((r >> 20) % 200000);
            if (cudaMalloc(&held[k], size[k])) return (void *)3;
            memset(held[k], (int)id, size[k]);
        }
    }
    for (int k = 0; k < 8; k++)
        if (held[k] && cudaFree(held[k])) return (void *)2;
    return NULL;
}

static void test_eight_threads(void **s) {
    (void)s;
    pthread_t th[8];
    for (uintptr_t i = 0; i < 8; i++) assert_int_equal(pthread_create(&th[i], NULL, worker, (void *)(i + 1)), 0);
    for (int i = 0; i < 8; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        assert_null(rc);
    }
    assert_int_equal(fake_cuda_live(), 0);
    assert_true(fake_cuda_bytes("cudaMalloc") > 0);
}

/* defect 8: under CUDA graph capture, stream-ordered allocation passes through (it becomes a graph
   node) instead of turning into a cudaMalloc that capture prohibits */
static void test_capture(void **s) {
    (void)s;
    void *st = (void *)0x1234, *p = NULL, *graph = NULL;
    int async = fake_cuda_count("cudaMallocAsync"), fasync = fake_cuda_count("cudaFreeAsync");
    assert_int_equal(cudaStreamBeginCapture(st, 0), 0);
    assert_int_equal(cudaMallocAsync(&p, 4 * MiB, st), 0);
    assert_non_null(p);
    assert_int_equal(fake_cuda_count("cudaMallocAsync"), async + 1); /* the runtime's own, in the graph */
    assert_int_equal(cudaFreeAsync(p, st), 0);
    assert_int_equal(fake_cuda_count("cudaFreeAsync"), fasync + 1);
    assert_int_equal(cudaStreamEndCapture(st, &graph), 0); /* the capture was not invalidated */
    assert_non_null(graph);
    assert_int_equal(fake_cuda_count("capture-violation"), 0);
    assert_int_equal(cudaGetLastError(), 0);
}

/* defect 8: cudaFree whose device synchronize failed does not free (the device may still use it) */
static void test_free_after_failed_sync(void **s) {
    (void)s;
    void *st = (void *)0x2345, *p = NULL, *graph = NULL;
    assert_int_equal(cudaMalloc(&p, 1000), 0);
    assert_int_equal(cudaStreamBeginCapture(st, 0), 0);
    assert_int_not_equal(cudaFree(p), 0); /* synchronizing the device is prohibited while capturing */
    assert_int_not_equal(cudaStreamEndCapture(st, &graph), 0); /* the program's own mistake: invalidated */
    (void)cudaGetLastError();
    assert_int_equal(cudaFree(p), 0); /* still ours, and freed now: not a double free */
    assert_int_equal(cudaGetLastError(), 0);
}

/* defects 8 and 9: stream-ordered frees wait on an event, not on the stream; the memory is not
   handed out again before the stream has passed the free */
static void test_deferred_free(void **s) {
    (void)s;
    void *st = (void *)0x3456;
    void *(*tm)(ssize_t, int, void *) = (void *(*)(ssize_t, int, void *))dlsym(RTLD_DEFAULT, "spill_torch_malloc");
    void (*tf)(void *, ssize_t, int, void *) = (void (*)(void *, ssize_t, int, void *))dlsym(RTLD_DEFAULT, "spill_torch_free");
    int syncs = fake_cuda_count("cudaStreamSynchronize");
    fake_cuda_stream_hold(st, 1); /* work queued on st has not run */
    void *p = tm(1000, 0, st), *q = NULL, *r = NULL;
    assert_non_null(p);
    tf(p, 1000, 0, st);
    assert_int_equal(fake_cuda_count("cudaStreamSynchronize"), syncs); /* no synchronize per free */
    q = tm(1000, 0, st);
    assert_non_null(q);
    assert_ptr_not_equal(q, p); /* p may still be read by the stream */
    assert_int_equal(cudaMallocAsync(&r, 3 * MiB, st), 0);
    assert_int_equal(cudaFreeAsync(r, st), 0);
    assert_int_equal(fake_cuda_count("cudaStreamSynchronize"), syncs);
    fake_cuda_stream_hold(st, 0); /* the stream ran */
    tf(q, 1000, 0, st);
    void *again = tm(1000, 0, NULL);
    assert_non_null(again);
    tf(again, 1000, 0, NULL);
    assert_int_equal(fake_cuda_live(), 0); /* every deferred free happened */
}

/* risk: a freed pointer's tombstone must not refuse a later allocation at the same address that the
   runtime handed out past the shim */
static void test_tombstone_reuse(void **s) {
    (void)s;
    void *p = NULL, *q = NULL;
    assert_int_equal(cudaMalloc(&p, 4 * MiB), 0);
    fake_cuda_reuse_next(p);
    assert_int_equal(cudaFree(p), 0);
    assert_int_equal(cudaSetDevice(1), 0); /* another device: passed through */
    assert_int_equal(cudaMalloc(&q, 4 * MiB), 0);
    assert_ptr_equal(q, p);
    assert_int_equal(cudaFree(q), 0); /* not a double free */
    assert_int_equal(cudaSetDevice(0), 0);
    assert_int_equal(fake_cuda_count("bad-free"), 0);
}

/* risk: cudaFree synchronizes the device the memory belongs to, whichever is current */
static void test_free_syncs_its_device(void **s) {
    (void)s;
    void *p = NULL;
    assert_int_equal(cudaMalloc(&p, 1000), 0);
    int n0 = fake_cuda_sync_count(0);
    assert_int_equal(cudaSetDevice(1), 0);
    assert_int_equal(cudaFree(p), 0);
    int dev = -1;
    extern cudaError_t cudaGetDevice(int *);
    assert_int_equal(cudaGetDevice(&dev), 0);
    assert_int_equal(dev, 1); /* the caller's device is left as it was */
    assert_int_equal(cudaSetDevice(0), 0);
    assert_true(fake_cuda_sync_count(0) > n0);
}

/* risk: an IPC handle to sub-allocated or managed memory is refused with a message; a large
   device allocation (its own cudaMalloc) passes through */
static void test_ipc(void **s) {
    (void)s;
    char handle[64];
    void *small = NULL, *big = NULL;
    assert_int_equal(cudaMalloc(&small, 1000), 0);
    assert_int_equal(cudaMalloc(&big, 4 * MiB), 0);
    int n = fake_cuda_count("cudaIpcGetMemHandle");
    assert_int_not_equal(cudaIpcGetMemHandle(handle, small), 0);
    assert_int_equal(fake_cuda_count("cudaIpcGetMemHandle"), n); /* refused before the runtime */
    assert_int_equal(cudaIpcGetMemHandle(handle, big), 0);
    assert_int_equal(fake_cuda_count("cudaIpcGetMemHandle"), n + 1);
    /* past the budget: managed memory */
    void *m[20];
    for (int i = 0; i < 20; i++) assert_int_equal(cudaMalloc(&m[i], 4 * MiB), 0);
    assert_int_not_equal(cudaIpcGetMemHandle(handle, m[19]), 0);
    assert_int_equal(fake_cuda_count("cudaIpcGetMemHandle"), n + 1);
    for (int i = 0; i < 20; i++) assert_int_equal(cudaFree(m[i]), 0);
    assert_int_equal(cudaFree(small), 0);
    assert_int_equal(cudaFree(big), 0);
}

/* defect 4: a failure the shim absorbs (cudaMalloc out of memory before the budget, a failed
   advise) does not stay in the runtime's last-error slot for the program to find later */
static void test_oom_absorbed(void **s) {
    (void)s;
    void *p[8];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(cudaMalloc(&p[i], 4 * MiB), 0);
        assert_int_equal(cudaGetLastError(), 0);
    }
    assert_true(fake_cuda_count("cudaMallocManaged") > 0); /* the device ran out first */
    for (int i = 0; i < 8; i++) assert_int_equal(cudaFree(p[i]), 0);
    assert_int_equal(cudaGetLastError(), 0);
}

/* defect 1: PyTorch's CUDAPluggableAllocator loads the shim with ctypes.CDLL, RTLD_LOCAL; the
   runtime (linked into this program) must still be found */
static const char *shim_path;
static void test_local(void **s) {
    (void)s;
    void *h = dlopen(shim_path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    void *(*tm)(ssize_t, int, void *) = (void *(*)(ssize_t, int, void *))dlsym(h, "spill_torch_malloc");
    void (*tf)(void *, ssize_t, int, void *) = (void (*)(void *, ssize_t, int, void *))dlsym(h, "spill_torch_free");
    assert_non_null(tm);
    assert_non_null(tf);
    void *p = tm(1000, 0, NULL);
    assert_non_null(p);
    assert_int_equal(fake_cuda_count("cudaMalloc"), 1); /* the shim's chunk */
    memset(p, 1, 1000);
    tf(p, 1000, 0, NULL);
    assert_int_equal(fake_cuda_live(), 0);
}

/* risk: a program built with --default-stream per-thread calls cudaFreeAsync_ptsz; a pointer the
   shim placed must not reach the runtime's free through it */
static void test_ptsz(void **s) {
    (void)s;
    void *first = NULL, *p = NULL, *q = NULL;
    assert_int_equal(cudaMalloc(&first, 1000), 0);
    assert_int_equal(cudaMalloc(&p, 1000), 0); /* inside the chunk, not at its start */
    assert_int_equal(cudaFreeAsync_ptsz(p, NULL), 0);
    assert_int_equal(cudaFreeAsync_ptsz(first, NULL), 0);
    assert_int_equal(cudaMallocAsync_ptsz(&q, 3 * MiB, NULL), 0);
    assert_int_equal(cudaFreeAsync_ptsz(q, NULL), 0);
    assert_int_equal(fake_cuda_count("bad-free"), 0);
    assert_int_equal(fake_cuda_live(), 0);
}

static void test_plain(void **s) {
    (void)s;
    void *p[10];
    for (int i = 0; i < 10; i++) assert_int_equal(cudaMalloc(&p[i], 4 * MiB), 0);
    /* without the shim nothing changes: the runtime sees each call as made */
    assert_int_equal(fake_cuda_count("cudaMalloc"), 10);
    assert_int_equal(fake_cuda_bytes("cudaMalloc"), 40 * MiB);
    assert_int_equal(fake_cuda_count("cudaMallocManaged"), 0);
    assert_int_equal(fake_cuda_count("cudaMemAdvise"), 0);
    for (int i = 0; i < 10; i++) assert_int_equal(cudaFree(p[i]), 0);
    assert_int_not_equal(cudaFree(p[0]), 0); /* the runtime's own answer to a double free */
    assert_null(dlsym(RTLD_DEFAULT, "spill_torch_malloc"));
}

static void test_virtual(void **s) {
    (void)s;
    size_t fr, tot;
    assert_int_equal(cudaMemGetInfo(&fr, &tot), 0);
    assert_true(tot > 256 * MiB); /* host memory counted in */
    assert_true(fr > 256 * MiB - fake_cuda_device_used());
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (!strcmp(mode, "shim")) {
        const struct CMUnitTest t[] = {
            cmocka_unit_test(test_budget_and_advice),
            cmocka_unit_test(test_double_free_and_foreign),
            cmocka_unit_test(test_other_entry_points),
            cmocka_unit_test(test_eight_threads),
            cmocka_unit_test(test_capture),
            cmocka_unit_test(test_free_after_failed_sync),
            cmocka_unit_test(test_deferred_free),
            cmocka_unit_test(test_tombstone_reuse),
            cmocka_unit_test(test_free_syncs_its_device),
            cmocka_unit_test(test_ipc),
            cmocka_unit_test(test_ptsz),
        };
        return cmocka_run_group_tests(t, NULL, NULL);
    }
    if (!strcmp(mode, "plain")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(test_plain)};
        return cmocka_run_group_tests(t, NULL, NULL);
    }
    if (!strcmp(mode, "virtual")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(test_virtual)};
        return cmocka_run_group_tests(t, NULL, NULL);
    }
    if (!strcmp(mode, "oom")) {
        const struct CMUnitTest t[] = {cmocka_unit_test(test_oom_absorbed)};
        return cmocka_run_group_tests(t, NULL, NULL);
    }
    if (!strcmp(mode, "local") && argc > 2) {
        shim_path = argv[2];
        const struct CMUnitTest t[] = {cmocka_unit_test(test_local)};
        return cmocka_run_group_tests(t, NULL, NULL);
    }
    fprintf(stderr, "usage: test_preload_prog shim|plain|virtual|oom|local SHIM\n");
    return 2;
}
