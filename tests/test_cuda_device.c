/* gpu: device discovery reads the attributes placement depends on, and this build's kernels run on
 * the device. Without a device (or without CUDA in the build) it skips and prints the reason. */
#include "gpu_util.h"
#include "spill_cuda.h"
#include "spill_topology.h"

static void test_query(void **s) {
    (void)s;
    int n = 0;
    spill_err err = {{0}};
    assert_int_equal(spill_gpu_count(&n, &err), 0);
    assert_true(n >= 1);
    for (int d = 0; d < n; d++) {
        spill_gpu_info g;
        assert_int_equal(spill_gpu_query(d, &g, &err), 0);
        printf("device %d: %s (%s), sm_%d%d, %.1f GiB (%.1f free), driver %d, runtime %d, concurrent managed %d, "
               "pageable %d, host page tables %d, numa id %d, host numa id %d\n",
               d, g.name, g.pci_bus_id, g.cc_major, g.cc_minor, (double)g.total_mem / (1 << 30),
               (double)g.free_mem / (1 << 30), g.driver_version, g.runtime_version, g.concurrent_managed_access,
               g.pageable_memory_access, g.uses_host_page_tables, g.numa_id, g.host_numa_id);
        assert_true(g.total_mem > 0 && g.free_mem <= g.total_mem);
        assert_true(g.cc_major >= 3);
        assert_true(g.driver_version >= g.runtime_version);
        assert_true(strlen(g.pci_bus_id) >= 7);
        /* ATS implies pageable access implies concurrent managed access */
        if (g.uses_host_page_tables == 1) assert_int_equal(g.pageable_memory_access, 1);
        if (g.pageable_memory_access == 1) assert_int_equal(g.concurrent_managed_access, 1);
    }
    spill_gpu_info g;
    assert_int_equal(spill_gpu_query(n, &g, &err), -1);
    assert_non_null(strstr(err.msg, "requested"));
}

static void test_topology_has_gpus(void **s) {
    (void)s;
    spill_topology t;
    spill_err err = {{0}};
    assert_int_equal(spill_topology_read(&t, &err), 0);
    assert_true(t.n_gpus >= 1);
    spill_topology_print(&t, stdout);
}

static void test_selftest(void **s) {
    (void)s;
    spill_err err = {{0}};
    int rc = spill_cuda_selftest(0, &err);
    if (rc) fail_msg("%s", err.msg);
}

int main(void) {
    require_gpu();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_topology_has_gpus),
        cmocka_unit_test(test_selftest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
