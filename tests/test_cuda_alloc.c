/* gpu: the cuda-managed and cuda-device backends through the public interface — placement advice,
 * prefetch (single and batched), discard, residency, limits, and contents that survive moves.
 * Skips with the driver's reason when there is no device. */
#include "gpu_util.h"
#include "spill_alloc.h"

#ifdef SPILL_HAVE_CUDA
#include <cuda_runtime_api.h>

#define MiB ((size_t)1 << 20)

static void check_bytes_on_device(const void *p, size_t n, unsigned char want) {
    unsigned char *h = malloc(n);
    assert_int_equal(cudaMemcpy(h, p, n, cudaMemcpyDefault), cudaSuccess);
    for (size_t i = 0; i < n; i += 4099) assert_int_equal(h[i], want);
    free(h);
}

static void test_managed(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_mem *m = spill_mem_create("cuda-managed", &err);
    if (!m) fail_msg("%s", err.msg);
    assert_string_equal(spill_mem_backend_name(m), "cuda-managed");
    spill_placement hbm = {SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS};
    spill_placement host = {SPILL_TIER_HOST, -1, SPILL_PLACE_GPU_READS | SPILL_PLACE_CPU_READS | SPILL_PLACE_READ_MOSTLY};
    size_t n = 64 * MiB;
    unsigned char *w = spill_mem_alloc(m, n, hbm, "w", &err);
    unsigned char *h = spill_mem_alloc(m, n, host, "h", &err);
    if (!w || !h) fail_msg("%s", err.msg);
    assert_int_equal((uintptr_t)w % SPILL_ARENA_GRAIN, 0);
    check_bytes_on_device(w, n, 0); /* zeroed on the device */
    assert_int_equal(h[n - 1], 0);
    memset(h, 7, n); /* the CPU writes host-preferred managed memory in place */
    check_bytes_on_device(h, n, 7);
    /* move h to HBM and back; contents survive */
    cudaStream_t st;
    assert_int_equal(cudaStreamCreate(&st), cudaSuccess);
    assert_int_equal(spill_mem_prefetch(m, h, n, SPILL_TIER_HBM, -1, st, &err), 0);
    assert_int_equal(spill_mem_sync(m, st, &err), 0);
    uint64_t res[SPILL_TIER_COUNT];
    assert_int_equal(spill_mem_residency(m, h, n, res, &err), 0);
    assert_int_equal(res[SPILL_TIER_HBM], n); /* the last prefetch location (an estimate, see docs) */
    assert_false(spill_mem_residency_exact(m));
    void *ptrs[2] = {h, h + n / 2};
    size_t sizes[2] = {n / 2, n / 2};
    if (spill_mem_prefetch_batch(m, ptrs, sizes, 2, SPILL_TIER_HOST, -1, st, &err)) fail_msg("%s", err.msg);
    assert_int_equal(spill_mem_sync(m, st, &err), 0);
    assert_int_equal(h[12345], 7);
    /* re-advise a whole region, discard it */
    assert_int_equal(spill_mem_advise(m, w, n, host, &err), 0);
    if (spill_mem_discard(m, w, n, &err)) fail_msg("%s", err.msg);
    /* small allocations share chunks per placement and still work on the device */
    unsigned char *a = spill_mem_alloc(m, 1000, hbm, "a", &err);
    unsigned char *b = spill_mem_alloc(m, 1000, hbm, "b", &err);
    assert_int_equal((uintptr_t)a >> 21, (uintptr_t)b >> 21);
    assert_int_equal(cudaMemset(b, 3, 1000), cudaSuccess);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    check_bytes_on_device(a, 1000, 0);
    check_bytes_on_device(b, 1000, 3);
    spill_mem_put(m, a, 1000);
    spill_mem_put(m, b, 1000);
    /* an HBM budget holds */
    spill_mem_set_limit(m, SPILL_TIER_HBM, 2 * n);
    assert_null(spill_mem_alloc(m, 2 * n, hbm, "too much", &err));
    assert_non_null(strstr(err.msg, "limit"));
    spill_mem_print_stats(m, stdout);
    cudaStreamDestroy(st);
    spill_mem_put(m, w, n);
    spill_mem_put(m, h, n);
    spill_mem_free(m);
}

static void test_device(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_mem *m = spill_mem_create("cuda-device", &err);
    if (!m) fail_msg("%s", err.msg);
    spill_placement hbm = {SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS};
    spill_placement host = {SPILL_TIER_HOST, -1, SPILL_PLACE_GPU_READS};
    size_t n = 16 * MiB;
    unsigned char *w = spill_mem_alloc(m, n, hbm, "w", &err);
    unsigned char *h = spill_mem_alloc(m, n, host, "h", &err);
    if (!w || !h) fail_msg("%s", err.msg);
    check_bytes_on_device(w, n, 0);
    memset(h, 9, n);
    check_bytes_on_device(h, n, 9); /* mapped host memory, read by the GPU in place */
    uint64_t res[SPILL_TIER_COUNT];
    assert_int_equal(spill_mem_residency(m, w, n, res, &err), 0);
    assert_int_equal(res[SPILL_TIER_HBM], n);
    assert_int_equal(spill_mem_residency(m, h, n, res, &err), 0);
    assert_int_equal(res[SPILL_TIER_HOST], n);
    /* nothing moves in this backend: a prefetch across tiers is refused with advice */
    assert_int_equal(spill_mem_prefetch(m, h, n, SPILL_TIER_HBM, -1, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "cuda-managed"));
    assert_int_equal(spill_mem_prefetch(m, w, n, SPILL_TIER_HBM, -1, NULL, &err), 0);
    /* more HBM than the device has is an error with the numbers, not a hang */
    assert_null(spill_mem_alloc(m, (size_t)1 << 44, hbm, "huge", &err));
    assert_non_null(strstr(err.msg, "free"));
    spill_mem_put(m, w, n);
    spill_mem_put(m, h, n);
    spill_mem_free(m);
}

static void test_auto(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_mem *m = spill_mem_create("auto", &err);
    if (!m) fail_msg("%s", err.msg);
    printf("auto: %s (%s)\n", spill_mem_backend_name(m), spill_mem_backend_reason(m));
    assert_string_not_equal(spill_mem_backend_name(m), "host");
    spill_mem_free(m);
}

int main(void) {
    require_gpu();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_managed),
        cmocka_unit_test(test_device),
        cmocka_unit_test(test_auto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void) {
    require_gpu(); /* prints why (no CUDA in this build) and skips */
    return SPILL_TEST_SKIP;
}
#endif
