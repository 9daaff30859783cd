/* The SPILL_* option table: defaults, environment, flags through the same parser, bad values named,
 * unknown variables warned about. */
#include "spill_options.h"
#include "test_util.h"

static void test_defaults(void **state) {
    (void)state;
    spill_options o;
    spill_options_defaults(&o);
    assert_string_equal(o.backend, "auto");
    assert_string_equal(o.device, "auto");
    assert_int_equal(o.hbm_budget, 0);
    assert_int_equal(o.hbm_reserve, 1ull << 30);
    assert_int_equal(o.host_node, -1);
    assert_int_equal(o.log, 0);
    assert_string_equal(o.memgetinfo, "real");
    assert_string_equal(o.kv_type, "f32");
    /* every entry has a variable named after it and a doc line */
    for (int i = 0; spill_option_table[i].name; i++) {
        const spill_option_def *d = &spill_option_table[i];
        char want[64];
        snprintf(want, sizeof want, "SPILL_%s", d->name);
        for (char *p = want; *p; p++) *p = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        assert_string_equal(d->env, want);
        assert_true(strlen(d->doc) > 10);
    }
}

static void test_env_and_flags(void **state) {
    (void)state;
    spill_options o;
    spill_err err = {{0}};
    spill_options_defaults(&o);
    setenv("SPILL_HBM_BUDGET", "80G", 1);
    setenv("SPILL_BACKEND", "CUDA-Managed", 1);
    setenv("SPILL_LOG", "yes", 1);
    setenv("SPILL_HOST_NODE", "1", 1);
    assert_int_equal(spill_options_from_env(&o, NULL, &err), 0);
    assert_int_equal(o.hbm_budget, 80ull << 30);
    assert_string_equal(o.backend, "cuda-managed");
    assert_int_equal(o.log, 1);
    assert_int_equal(o.host_node, 1);
    /* a flag overrides the environment, through the same parser */
    assert_int_equal(spill_options_set(&o, "hbm-budget", "512M", &err), 0);
    assert_int_equal(o.hbm_budget, 512ull << 20);
    assert_int_equal(spill_options_set(&o, "--host-limit", "1.5G", &err), 0);
    assert_int_equal(o.host_limit, 3ull << 29);
    assert_int_equal(spill_options_set(&o, "SPILL_STATS", "on", &err), 0);
    assert_int_equal(o.stats, 1);
    assert_int_equal(spill_options_set(&o, "kv-type", "BF16", &err), 0);
    assert_string_equal(o.kv_type, "bf16");
    unsetenv("SPILL_HBM_BUDGET");
    unsetenv("SPILL_BACKEND");
    unsetenv("SPILL_LOG");
    unsetenv("SPILL_HOST_NODE");
}

static void test_bad_values(void **state) {
    (void)state;
    spill_options o;
    spill_err err = {{0}};
    spill_options_defaults(&o);
    spill_options before = o;
    assert_int_equal(spill_options_set(&o, "hbm-budget", "80 gigs", &err), -1);
    assert_non_null(strstr(err.msg, "--hbm-budget"));
    assert_non_null(strstr(err.msg, "80 gigs"));
    assert_int_equal(spill_options_set(&o, "backend", "teleport", &err), -1);
    assert_non_null(strstr(err.msg, "cuda-managed")); /* lists what is accepted */
    assert_int_equal(spill_options_set(&o, "kv-type", "q8", &err), -1);
    assert_non_null(strstr(err.msg, "--kv-type")), assert_non_null(strstr(err.msg, "f32|f16|bf16"));
    assert_int_equal(spill_options_set(&o, "threads", "4x", &err), -1);
    assert_int_equal(spill_options_set(&o, "log", "maybe", &err), -1);
    assert_int_equal(spill_options_set(&o, "hbm-budget", "-1G", &err), -1);
    /* not numbers of bytes: NaN (its conversion to an integer is undefined; the fuzzer found it), infinity,
     * and what overflows 64 bits */
    const char *not_sizes[] = {"nan", "NaNG", "-nan", "inf", "infinity", "1e30", "17179869184G", "20000000T"};
    for (size_t i = 0; i < sizeof not_sizes / sizeof not_sizes[0]; i++) {
        uint64_t v = 7;
        assert_int_equal(spill_parse_size(not_sizes[i], &v), -1);
        assert_int_equal(v, 7);
        assert_int_equal(spill_options_set(&o, "host-limit", not_sizes[i], &err), -1);
    }
    uint64_t v = 0;
    assert_int_equal(spill_parse_size("1.5K", &v), 0), assert_int_equal(v, 1536);
    assert_int_equal(spill_parse_size("2GiB", &v), 0), assert_int_equal(v, 2ull << 30);
    assert_int_equal(spill_options_set(&o, "no-such-option", "1", &err), -1);
    assert_non_null(strstr(err.msg, "no-such-option"));
    assert_int_equal(spill_options_set(&o, "backend", NULL, &err), -1);
    char longv[600];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    assert_int_equal(spill_options_set(&o, "alloc-log", longv, &err), -1);
    assert_memory_equal(&o, &before, sizeof o); /* nothing half-set */
    setenv("SPILL_HBM_BUDGET", "lots", 1);
    assert_int_equal(spill_options_from_env(&o, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "SPILL_HBM_BUDGET"));
    unsetenv("SPILL_HBM_BUDGET");
    /* integers in the range of the flag of the same name (SPILL_THREADS=-3 once meant every CPU) */
    assert_int_equal(spill_options_set(&o, "threads", "-3", &err), -1);
    assert_non_null(strstr(err.msg, "outside 0..1024"));
    assert_non_null(strstr(err.msg, "0 = all online CPUs"));
    assert_int_equal(spill_options_set(&o, "threads", "1025", &err), -1);
    assert_int_equal(spill_options_set(&o, "host-node", "-2", &err), -1);
    assert_non_null(strstr(err.msg, "outside -1.."));
    assert_memory_equal(&o, &before, sizeof o);
    assert_int_equal(spill_options_set(&o, "threads", "0", &err), 0);
    assert_int_equal(spill_options_set(&o, "host-node", "-1", &err), 0);
}

static void test_unknown_variable_warned(void **state) {
    (void)state;
    spill_options o;
    spill_err err = {{0}};
    spill_options_defaults(&o);
    setenv("SPILL_HBM_BUDGTE", "1G", 1);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(spill_options_from_env(&o, f, &err), 0);
    fclose(f);
    assert_non_null(strstr(buf, "SPILL_HBM_BUDGTE is not a spill option"));
    free(buf);
    unsetenv("SPILL_HBM_BUDGTE");
    /* the table prints with defaults and current values */
    f = open_memstream(&buf, &len);
    spill_options_print(&o, f);
    fclose(f);
    assert_non_null(strstr(buf, "SPILL_HBM_BUDGET"));
    assert_non_null(strstr(buf, "[now: auto]"));
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_and_flags),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_unknown_variable_warned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
