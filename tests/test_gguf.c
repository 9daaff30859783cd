/* GGUF reader: a valid file reads back, and a set of corrupted files generated here (truncations
 * at many offsets, huge counts, bad types, offsets past the end, random byte flips, dimensions that are not a model's) each give one
 * error naming the file, never a crash. Run under ASan in CI (SPILL_SANITIZE). */
#include "gguf.h"
#include "engine.h"
#include "test_util.h"

#include <sys/stat.h>

static uint8_t *orig;
static size_t orig_len;
static char dir[256];

static int setup(void **state) {
    (void)state;
    FILE *f = fopen(stories_path(), "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    orig_len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    orig = malloc(orig_len);
    if (fread(orig, 1, orig_len, f) != orig_len) return -1;
    fclose(f);
    snprintf(dir, sizeof dir, "/tmp/spill-gguf-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    free(orig);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_tmp(const uint8_t *data, size_t n, const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return path;
}

/* Open must fail with a message that names the file; returns the message. */
static const char *expect_error(const uint8_t *data, size_t n, const char *name) {
    static spill_err err;
    const char *path = write_tmp(data, n, name);
    spill_gguf g;
    memset(&err, 0, sizeof err);
    int rc = spill_gguf_open(&g, path, &err);
    if (rc == 0) {
        fprintf(stderr, "%s: expected an error, got none\n", name);
        spill_gguf_close(&g);
    }
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, path));
    assert_null(strchr(err.msg, '\n'));
    return err.msg;
}

static void test_valid_file(void **state) {
    (void)state;
    spill_gguf g;
    spill_err err = {{0}};
    assert_int_equal(spill_gguf_open(&g, stories_path(), &err), 0);
    assert_int_equal(g.version, 3);
    uint32_t v = 0;
    assert_int_equal(spill_gguf_get_u32(&g, "llama.block_count", &v, &err), 0);
    assert_int_equal(v, 5);
    assert_int_equal(spill_gguf_get_u32(&g, "llama.embedding_length", &v, &err), 0);
    assert_int_equal(v, 64);
    assert_int_equal(spill_gguf_get_u32(&g, "no.such.key", &v, &err), 1);
    /* wrong type is an error naming the key */
    spill_str s;
    assert_int_equal(spill_gguf_get_str(&g, "llama.block_count", &s, &err), -1);
    assert_non_null(strstr(err.msg, "llama.block_count"));
    const spill_gguf_tensor *t = spill_gguf_tensor_find(&g, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->bytes, 64 * 512 * 4);
    /* every tensor lies inside the file */
    for (uint64_t i = 0; i < g.n_tensors; i++)
        assert_true((const uint8_t *)g.tensors[i].data + g.tensors[i].bytes <= g.map + g.size);
    spill_gguf_close(&g);
}

static void test_truncations(void **state) {
    (void)state;
    spill_gguf g;
    spill_err err = {{0}};
    assert_int_equal(spill_gguf_open(&g, stories_path(), &err), 0);
    size_t data_off = (size_t)g.data_offset;
    spill_gguf_close(&g);
    int n = 0, named_tensor = 0;
    /* every 13th byte through the header, then points through the tensor data */
    for (size_t cut = 0; cut < orig_len; cut += cut < data_off ? 13 : 65521) {
        const char *msg = expect_error(orig, cut, "truncated.gguf");
        if (cut >= data_off) named_tensor += strstr(msg, "tensor '") != NULL;
        n++;
    }
    const char *msg = expect_error(orig, orig_len - 1, "truncated.gguf");
    assert_non_null(strstr(msg, "ends at byte"));
    printf("%d truncations refused; %d inside the data named a tensor\n", n, named_tensor);
    assert_true(n > 100);
    assert_true(named_tensor > 0);
}

/* A corrupted copy with `len` bytes at `off` replaced. */
static uint8_t *patched(size_t off, const void *bytes, size_t len) {
    uint8_t *c = malloc(orig_len);
    memcpy(c, orig, orig_len);
    memcpy(c + off, bytes, len);
    return c;
}

static void test_targeted_corruptions(void **state) {
    (void)state;
    spill_gguf g;
    spill_err err = {{0}};
    assert_int_equal(spill_gguf_open(&g, stories_path(), &err), 0);
    size_t kv0_type = (size_t)((const uint8_t *)g.kv[0].key.ptr - g.map) + g.kv[0].key.len;
    size_t key0_len = (size_t)((const uint8_t *)g.kv[0].key.ptr - g.map) - 8;
    const spill_gguf_kv *tokens = spill_gguf_find(&g, "tokenizer.ggml.tokens");
    size_t arr_count = (size_t)(tokens->arr_data - g.map) - 8;
    const spill_gguf_tensor *t0 = &g.tensors[0];
    size_t ti = (size_t)((const uint8_t *)t0->name.ptr - g.map) + t0->name.len; /* n_dims */
    size_t ti_dims = ti + 4, ti_type = ti + 4 + 8 * t0->n_dims, ti_off = ti_type + 4;
    spill_gguf_close(&g);

    struct { const char *name; size_t off; uint64_t val; int width; const char *expect; } cases[] = {
        {"bad magic", 0, 0x47475546, 4, "not a GGUF file"},
        {"version 1", 4, 1, 4, "version 1"},
        {"version 99", 4, 99, 4, "version 99"},
        {"huge tensor count", 8, 1ull << 62, 8, "tensor count"},
        {"huge metadata count", 16, 1ull << 62, 8, "metadata count"},
        {"huge key length", key0_len, 1ull << 40, 8, "length"},
        {"bad value type", kv0_type, 99, 4, "value type 99"},
        {"huge array count", arr_count, 1ull << 60, 8, "elements"},
        {"zero dims", ti, 0, 4, "dimensions"},
        {"five dims", ti, 5, 4, "dimensions"},
        {"zero dimension", ti_dims, 0, 8, "dimension 0"},
        {"dimension overflow", ti_dims, 1ull << 62, 8, "overflow"},
        {"bad tensor type", ti_type, 77, 4, "type 77"},
        {"Q4_K on 64-wide rows (not whole 256-value blocks)", ti_type, 12, 4, "Q4_K"},
        {"a K-quant type spill does not read", ti_type, 11, 4, "Q3_K"},
        {"Q8_K, an activations-only type, as a weight", ti_type, 15, 4, "Q8_K"},
        {"offset past end", ti_off, 1ull << 40, 8, "ends at byte"},
        {"unaligned offset", ti_off, 3, 8, "alignment"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint8_t *c = patched(cases[i].off, &cases[i].val, (size_t)cases[i].width);
        printf("case: %s\n", cases[i].name);
        const char *msg = expect_error(c, orig_len, "corrupt.gguf");
        if (!strstr(msg, cases[i].expect))
            fprintf(stderr, "case '%s': message '%s' lacks '%s'\n", cases[i].name, msg, cases[i].expect);
        assert_non_null(strstr(msg, cases[i].expect));
        free(c);
    }
}

/* Random byte flips in the header: the reader (and the model loader on top of it) either accept
 * the file or refuse it with a message; nothing crashes, nothing leaks (ASan/LSan in CI). */
static void test_random_flips(void **state) {
    (void)state;
    spill_gguf g;
    spill_err err = {{0}};
    assert_int_equal(spill_gguf_open(&g, stories_path(), &err), 0);
    size_t hdr = (size_t)g.data_offset;
    spill_gguf_close(&g);
    uint64_t rng = 12345;
    int refused = 0, accepted = 0;
    spill_mem *mem = spill_mem_create("host", &err);
    uint8_t *c = malloc(orig_len);
    for (int it = 0; it < 300; it++) {
        memcpy(c, orig, orig_len);
        for (int k = 0; k < 1 + it % 4; k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t off = (size_t)(rng >> 33) % hdr;
            c[off] = (uint8_t)(rng >> 13);
        }
        const char *path = write_tmp(c, orig_len, "flip.gguf");
        spill_engine_params p = spill_engine_defaults();
        p.model = path;
        p.mem = mem;
        p.threads = 1;
        p.quiet = 1;
        spill_engine *e;
        memset(&err, 0, sizeof err);
        if (spill_engine_open(&p, &e, &err) == 0) {
            accepted++;
            spill_engine_free(e);
        } else {
            refused++;
            assert_true(err.msg[0] != 0);
        }
    }
    free(c);
    spill_mem_stats st;
    spill_mem_get_stats(mem, &st);
    assert_int_equal(st.registered[SPILL_TIER_HOST], 0); /* every open, good or bad, gave back what it took */
    assert_int_equal(st.tier[SPILL_TIER_HOST].current, 0);
    spill_mem_free(mem);
    printf("random flips: %d refused, %d still loadable\n", refused, accepted);
    assert_true(refused > 0);
}

/* Dimensions that are not a model's: the loader and the planner (spill_shape_from_gguf, behind
 * spill-plan and spill-bench) read them through one check and refuse them with the same message,
 * naming the file and the key. */
static void test_hostile_dimensions(void **state) {
    (void)state;
    struct { const char *key; uint32_t val; const char *expect; } cases[] = {
        {"llama.block_count", 0, "llama.block_count is 0; 1..1024"},
        {"llama.block_count", 5000, "llama.block_count is 5000"},
        {"llama.embedding_length", 70000, "llama.embedding_length is 70000"},
        {"llama.attention.head_count", 7, "head_count is 7, which does not divide embedding_length 64"},
        {"llama.attention.head_count_kv", 3, "head_count_kv is 3, which does not divide head_count 8"},
        {"llama.feed_forward_length", 0, "llama.feed_forward_length is 0"},
        {"llama.rope.dimension_count", 3, "rope.dimension_count is 3; it must be even"},
        {"llama.rope.dimension_count", 16, "at most the head size 8"},
    };
    spill_err err = {{0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        spill_gguf g;
        assert_int_equal(spill_gguf_open(&g, stories_path(), &err), 0);
        const spill_gguf_kv *kv = spill_gguf_find(&g, cases[i].key);
        assert_non_null(kv);
        size_t val_off = (size_t)((const uint8_t *)kv->key.ptr - g.map) + kv->key.len + 4; /* after the type */
        spill_gguf_close(&g);
        uint8_t *c = patched(val_off, &cases[i].val, 4);
        const char *path = write_tmp(c, orig_len, "dims.gguf");
        free(c);
        printf("case: %s = %u\n", cases[i].key, cases[i].val);
        spill_model m;
        memset(&err, 0, sizeof err);
        assert_int_equal(spill_model_load(&m, path, &err), -1);
        assert_non_null(strstr(err.msg, path));
        if (!strstr(err.msg, cases[i].expect)) fprintf(stderr, "loader: '%s' lacks '%s'\n", err.msg, cases[i].expect);
        assert_non_null(strstr(err.msg, cases[i].expect));
        char loader_msg[sizeof err.msg];
        snprintf(loader_msg, sizeof loader_msg, "%s", err.msg);
        spill_shape sh;
        assert_int_equal(spill_gguf_open(&g, path, &err), 0);
        assert_int_equal(spill_shape_from_gguf(&g, &sh, &err), -1);
        spill_gguf_close(&g);
        assert_string_equal(err.msg, loader_msg);
    }
}

static void test_missing_and_empty(void **state) {
    (void)state;
    spill_gguf g;
    spill_err err = {{0}};
    assert_int_equal(spill_gguf_open(&g, "/nonexistent/model.gguf", &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/model.gguf"));
    expect_error(orig, 0, "empty.gguf");
    assert_int_equal(spill_gguf_open(&g, "/tmp", &err), -1);
}

int main(void) {
    require_file(stories_path(), "the small test models live in tests/models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_file),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_targeted_corruptions),
        cmocka_unit_test(test_random_flips),
        cmocka_unit_test(test_hostile_dimensions),
        cmocka_unit_test(test_missing_and_empty),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
