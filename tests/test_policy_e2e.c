/* End to end on the CPU: every policy x several HBM budgets (one far below the model's size) gives
 * the same greedy tokens as the host policy, on stories260K and SmolLM2; the plans really differ
 * (bytes in HBM, ring prefetches); a budget too small for a ring is an error with the numbers;
 * --n-parallel shares the prompt's KV blocks and every greedy continuation matches the single one.
 * HBM is emulated in host memory here, so the bytes are the same as on a GPU and only the speed is not. */
#include "test_util.h"



static double field(const char *err, const char *label) {
    const char *p = strstr(err, label);
    return p ? atof(p + strlen(label)) : -1;
}

static void sweep(const char *model, const char *prompt, int n, const char *const *budgets, int nb,
                  const char *ring_error_budget) {
    char args[8192], ref[65536];
    snprintf(args, sizeof args, "-m '%s' -p '%s' --temp 0 -n %d -t 2", model, prompt, n);
    run_result *r = run_generate(args);
    assert_int_equal(r->status, 0);
    strcpy(ref, r->out);
    const char *policies[] = {"fault", "pin", "stream", "auto"};
    const char *profiles[] = {"h100-pcie", "gh200-96"};
    int saw_split = 0, saw_ring = 0, saw_all = 0;
    for (int pr = 0; pr < 2; pr++)
        for (int p = 0; p < 4; p++)
            for (int b = 0; b < nb; b++) {
                snprintf(args, sizeof args, "-m '%s' -p '%s' --temp 0 -n %d -t 2 --policy %s --profile %s --hbm-budget %s",
                         model, prompt, n, policies[p], profiles[pr], budgets[b]);
                r = run_generate(args);
                if (r->status) fprintf(stderr, "%s %s %s: %s\n", policies[p], profiles[pr], budgets[b], r->err);
                assert_int_equal(r->status, 0);
                if (strcmp(r->out, ref)) fprintf(stderr, "%s %s %s differs:\n%s\nvs\n%s\n", policies[p], profiles[pr], budgets[b], r->out, ref);
                assert_string_equal(r->out, ref);
                double hbm = field(r->err, "weights: hbm "), host = field(r->err, ", host ");
                double pref = field(r->err, "prefetched ");
                assert_true(hbm >= 0 && host >= 0 && pref >= 0);
                if (!strcmp(policies[p], "fault")) assert_true(hbm == 0);
                if (!strcmp(policies[p], "stream")) {
                    assert_true(pref > 0); /* layers went through the ring */
                    saw_ring = 1;
                }
                if (!strcmp(policies[p], "pin") && hbm > 0 && host > 0) saw_split = 1;
                if (!strcmp(policies[p], "pin") && host == 0) saw_all = 1;
            }
    /* the sweep exercised a model partly in HBM, one wholly in HBM, and a ring */
    assert_true(saw_split && saw_all && saw_ring);
    /* a budget too small for the ring: an error with the numbers, nothing on stdout */
    snprintf(args, sizeof args, "-m '%s' -p '%s' --temp 0 -n 4 --policy stream --profile h100-pcie --hbm-budget %s", model,
             prompt, ring_error_budget);
    r = run_generate(args);
    assert_int_equal(r->status, 1);
    assert_non_null(strstr(r->err, "the ring needs"));
    assert_non_null(strstr(r->err, "--hbm-budget"));
    assert_string_equal(r->out, "");
}

static void test_stories(void **s) {
    (void)s;
    /* budgets where a ring fits; 0 and 5M (below the ring) are run without stream below */
    const char *budgets[] = {"7M", "64M"};
    sweep(stories_path(), "Once upon a time", 30, budgets, 2, "1M");
}

static void test_stories_small_budgets(void **s) {
    (void)s;
    char args[8192], ref[65536];
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time' --temp 0 -n 30 -t 2", stories_path());
    run_result *r = run_generate(args);
    strcpy(ref, r->out);
    const char *policies[] = {"fault", "pin", "auto"};
    const char *budgets[] = {"0", "5M"};
    for (int p = 0; p < 3; p++)
        for (int b = 0; b < 2; b++) {
            snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time' --temp 0 -n 30 -t 2 --policy %s --profile h100-pcie "
                     "--hbm-budget %s", stories_path(), policies[p], budgets[b]);
            r = run_generate(args);
            assert_int_equal(r->status, 0);
            assert_string_equal(r->out, ref);
        }
}

static void test_smollm2(void **s) {
    (void)s;
    const char *model = smollm_path();
    if (access(model, R_OK)) {
        printf("SKIPPED part: %s is not there (scripts/fetch-model.sh fetches it)\n", model);
        return;
    }
    /* the model is 92 MiB of weights and 180 MiB of KV cache at 4096 tokens; 24M is far below it */
    const char *budgets[] = {"24M", "48M", "400M"};
    sweep(model, "The capital of France is", 24, budgets, 3, "8M");
}

static void test_n_parallel(void **s) {
    (void)s;
    const char *model = access(smollm_path(), R_OK) ? stories_path() : smollm_path();
    char args[8192], ref[65536];
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time in a land far away' --temp 0 -n 16 -t 2", model);
    run_result *r = run_generate(args);
    assert_int_equal(r->status, 0);
    strcpy(ref, r->out);
    size_t rl = strlen(ref);
    while (rl && ref[rl - 1] == '\n') ref[--rl] = 0;
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon a time in a land far away' --temp 0 -n 16 -t 2 --n-parallel 4 "
             "--kv-block 4 --policy pin --profile gh200-96 --hbm-budget 64M", model);
    r = run_generate(args);
    assert_int_equal(r->status, 0);
    /* four continuations, each the greedy one */
    char *p = r->out;
    for (int i = 0; i < 4; i++) {
        assert_memory_equal(p, ref, rl);
        p += rl;
        while (*p == '\n') p++;
    }
    assert_int_equal(*p, 0);
    /* the prompt's full blocks were stored once and shared by the three forks */
    const char *pk = strstr(r->err, "blocks (peak ");
    assert_non_null(pk);
    const char *sh = strstr(pk, "), ");
    assert_non_null(sh);
    double n_shared = atof(sh + 3);
    assert_true(n_shared >= 3 * 2); /* >= 2 full prompt blocks of 4 tokens, shared 3 times */
    assert_non_null(strstr(r->err, "copied on write"));
}

int main(void) {
    require_file(stories_path(), "the small test models live in tests/models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories),
        cmocka_unit_test(test_stories_small_budgets),
        cmocka_unit_test(test_smollm2),
        cmocka_unit_test(test_n_parallel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
