/* Defect 2 of issue 21: under LD_PRELOAD, the CUDA runtime arrives inside an RTLD_LOCAL module (a
 * Python extension such as CuPy). dlsym(RTLD_NEXT) from the shim cannot see it; the shim must still
 * find it and place the allocation, instead of failing every cudaMalloc.
 *   test_preload_module MODULE     (MODULE: tests/fake_module.c, linked against the fake runtime)
 * This program is not linked against any CUDA runtime. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static const char *module_path;

static void test_module_local(void **s) {
    (void)s;
    void *h = dlopen(module_path, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    int (*mm)(void **, size_t) = (int (*)(void **, size_t))dlsym(h, "fake_module_malloc");
    int (*mf)(void *) = (int (*)(void *))dlsym(h, "fake_module_free");
    int (*count)(const char *) = (int (*)(const char *))dlsym(h, "fake_cuda_count"); /* the module's runtime */
    int (*live)(void) = (int (*)(void))dlsym(h, "fake_cuda_live");
    assert_non_null(mm);
    assert_non_null(count);
    void *p[4] = {0};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mm(&p[i], 1000), 0);
        assert_non_null(p[i]);
        memset(p[i], i, 1000);
    }
    assert_int_equal(count("cudaMalloc"), 1); /* one 2 MiB chunk for four: the shim placed them */
    for (int i = 0; i < 4; i++) assert_int_equal(mf(p[i]), 0);
    assert_int_equal(live(), 0);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_preload_module MODULE\n");
        return 2;
    }
    module_path = argv[1];
    const struct CMUnitTest t[] = {cmocka_unit_test(test_module_local)};
    return cmocka_run_group_tests(t, NULL, NULL);
}
