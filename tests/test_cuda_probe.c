/* gpu: the CUDA probe finds a device and reads the attributes placement depends on. Without a
 * device (or without CUDA in the build) it skips and prints the probe's own reason. */
#include "spill_cuda.h"
#include "test_util.h"

static void test_probe(void **s) {
    (void)s;
    spill_cuda_info info;
    spill_err err = {{0}};
    assert_int_equal(spill_cuda_probe(&info, &err), 0);
    printf("device 0: %s, sm_%d%d, %.1f GiB (%.1f free), driver %d, runtime %d, concurrent managed %d, "
           "pageable %d, host page tables %d\n", info.name, info.cc_major, info.cc_minor,
           (double)info.total_mem / (1 << 30), (double)info.free_mem / (1 << 30), info.driver_version,
           info.runtime_version, info.concurrent_managed_access, info.pageable_memory_access, info.uses_host_page_tables);
    assert_true(info.device_count >= 1);
    assert_true(info.total_mem > 0 && info.free_mem <= info.total_mem);
    assert_true(info.cc_major >= 3);
    assert_true(info.driver_version >= info.runtime_version);
}

int main(void) {
    spill_cuda_info info;
    spill_err err = {{0}};
    if (spill_cuda_probe(&info, &err)) {
        printf("SKIPPED: %s\n", err.msg);
        return SPILL_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_probe)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
