/* safetensors as hostile input: valid files and shard sets load; every truncation, a huge header,
 * bad JSON, duplicate names, unsupported dtypes, sizes that disagree with the shape, gaps, overlaps,
 * offsets past the end, missing shards and corrupted bytes fail with a message naming the file (and
 * the tensor), never a crash (run under ASan in CI). */
#include "safetensors.h"
#include "spill_kernels.h"
#include "test_util.h"

#include <sys/stat.h>

static char dir[64];

/* write a file: 8-byte length, header, data */
static void put_file(const char *path, const char *header, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t h = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(h >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, h, f);
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static const char *good_header =
    "{\"__metadata__\": {\"format\": \"pt\"}, \"a\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
    " \"b\": {\"dtype\": \"BF16\", \"shape\": [4], \"data_offsets\": [24, 32]},"
    " \"c\": {\"dtype\": \"F16\", \"shape\": [2, 2], \"data_offsets\": [32, 40]}}";

static unsigned char good_data[40];

static void test_valid(void **s) {
    (void)s;
    for (int i = 0; i < 6; i++) ((float *)good_data)[i] = (float)i;
    char p[128];
    snprintf(p, sizeof p, "%s/one.safetensors", dir);
    put_file(p, good_header, good_data, 40);
    spill_safetensors st = {0};
    spill_err err = {{0}};
    if (spill_st_add_file(&st, p, &err)) fail_msg("%s", err.msg);
    assert_int_equal(st.n, 3);
    const spill_st_tensor *a = spill_st_find(&st, "a");
    assert_non_null(a);
    assert_int_equal(a->type, SPILL_DT_F32);
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    float v;
    memcpy(&v, (const float *)a->data + 5, 4);
    assert_true(v == 5.0f);
    assert_int_equal(spill_st_find(&st, "b")->type, SPILL_DT_BF16);
    assert_int_equal(spill_st_find(&st, "c")->type, SPILL_DT_F16);
    assert_null(spill_st_find(&st, "__metadata__"));
    spill_st_close(&st);
    /* a directory with one model.safetensors */
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    put_file(p, good_header, good_data, 40);
    assert_int_equal(spill_st_open_dir(&st, dir, &err), 0);
    assert_int_equal(st.n, 3);
    spill_st_close(&st);
    unlink(p);
}

static void expect_bad(const char *header, const void *data, size_t n, const char *want) {
    char p[128];
    snprintf(p, sizeof p, "%s/bad.safetensors", dir);
    put_file(p, header, data, n);
    spill_safetensors st = {0};
    spill_err err = {{0}};
    int rc = spill_st_add_file(&st, p, &err);
    spill_st_close(&st);
    if (rc != -1 || !strstr(err.msg, want)) fail_msg("header %s: rc %d, message '%s', wanted '%s'", header, rc, err.msg, want);
    assert_non_null(strstr(err.msg, "bad.safetensors"));
}

static void test_bad_headers(void **s) {
    (void)s;
    unsigned char z[64] = {0};
    expect_bad("{\"a\": {\"dtype\": \"I8\", \"shape\": [4], \"data_offsets\": [0, 4]}}", z, 4, "'a' has dtype I8");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 8]}}", z, 8, "needs 16");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"a\": {\"dtype\": \"F32\", "
               "\"shape\": [2], \"data_offsets\": [8, 16]}}", z, 16, "duplicate key");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", z, 16, "contiguous");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}, \"b\": {\"dtype\": \"F32\", "
               "\"shape\": [2], \"data_offsets\": [4, 12]}}", z, 12, "contiguous");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", z, 12, "8 but the file has 12");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", z, 8, "truncated");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, 16]}}", z, 16,
               "overflows");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", z, 4, "non-negative");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 0]}}", z, 4, "begin <= end");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", z, 4, "data_offsets");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},}", z, 4, "invalid JSON");
    expect_bad("[1, 2]", z, 0, "not a JSON object");
    expect_bad("{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1], \"data_offsets\": [0, 4]}}", z, 4, "dimensions");
}

static void test_sizes(void **s) {
    (void)s;
    char p[128];
    snprintf(p, sizeof p, "%s/size.safetensors", dir);
    spill_safetensors st = {0};
    spill_err err = {{0}};
    /* a header length past the 100 MB limit, and one past the end of the file */
    FILE *f = fopen(p, "wb");
    uint64_t huge = (200ull << 20);
    fwrite(&huge, 8, 1, f);
    fwrite("{}", 1, 2, f);
    fclose(f);
    assert_int_equal(spill_st_add_file(&st, p, &err), -1);
    assert_non_null(strstr(err.msg, "limit"));
    spill_st_close(&st);
    f = fopen(p, "wb");
    uint64_t h = 1000;
    fwrite(&h, 8, 1, f);
    fwrite("{}", 1, 2, f);
    fclose(f);
    assert_int_equal(spill_st_add_file(&st, p, &err), -1);
    assert_non_null(strstr(err.msg, "only"));
    spill_st_close(&st);
    /* every truncation of a valid file fails cleanly */
    snprintf(p, sizeof p, "%s/one.safetensors", dir);
    put_file(p, good_header, good_data, 40);
    struct stat sb;
    stat(p, &sb);
    FILE *src = fopen(p, "rb");
    unsigned char *all = malloc((size_t)sb.st_size);
    assert_int_equal(fread(all, 1, (size_t)sb.st_size, src), (size_t)sb.st_size);
    fclose(src);
    char q[128];
    snprintf(q, sizeof q, "%s/trunc.safetensors", dir);
    for (off_t k = 0; k < sb.st_size; k++) {
        f = fopen(q, "wb");
        fwrite(all, 1, (size_t)k, f);
        fclose(f);
        assert_int_equal(spill_st_add_file(&st, q, &err), -1);
        spill_st_close(&st);
    }
    /* single-byte corruptions: parse or fail, never crash */
    for (off_t k = 0; k < sb.st_size; k++)
        for (int b = 0; b < 256; b += 51) {
            unsigned char keep = all[k];
            all[k] = (unsigned char)b;
            f = fopen(q, "wb");
            fwrite(all, 1, (size_t)sb.st_size, f);
            fclose(f);
            spill_st_add_file(&st, q, &err);
            spill_st_close(&st);
            all[k] = keep;
        }
    free(all);
    unlink(q);
}

static void test_shards(void **s) {
    (void)s;
    char p[256];
    float d[4] = {1, 2, 3, 4};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    put_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", d, 8);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    put_file(p, "{\"y\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", d + 2, 8);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"metadata\": {\"total_size\": 16}, \"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", "
          "\"y\": \"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    spill_safetensors st = {0};
    spill_err err = {{0}};
    if (spill_st_open_dir(&st, dir, &err)) fail_msg("%s", err.msg);
    assert_int_equal(st.n_files, 2);
    float v;
    memcpy(&v, spill_st_find(&st, "y")->data, 4);
    assert_true(v == 3.0f);
    spill_st_close(&st);
    /* a tensor listed in the wrong shard, a missing shard, a path that escapes the directory */
    const char *bad[][2] = {
        {"{\"weight_map\": {\"x\": \"model-00002-of-00002.safetensors\"}}", "is not there"},
        {"{\"weight_map\": {\"x\": \"model-00003-of-00003.safetensors\"}}", "is missing"},
        {"{\"weight_map\": {\"x\": \"../etc/passwd\"}}", "plain file name"},
        {"{\"weight_map\": [1]}", "weight_map"},
        {"{\"weight_map\": {\"x\": ", "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(p, "w");
        fputs(bad[i][0], f);
        fclose(f);
        assert_int_equal(spill_st_open_dir(&st, dir, &err), -1);
        if (!strstr(err.msg, bad[i][1])) fail_msg("%s: %s", bad[i][0], err.msg);
    }
    /* the same tensor in two shards */
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    put_file(p, "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", d, 8);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    f = fopen(p, "w");
    fputs("{\"weight_map\": {\"x\": \"model-00001-of-00002.safetensors\", \"z\": \"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    assert_int_equal(spill_st_open_dir(&st, dir, &err), -1);
    assert_non_null(strstr(err.msg, "appears twice"));
    /* no weights at all */
    unlink(p);
    assert_int_equal(spill_st_open_dir(&st, "/nonexistent-dir", &err), -1);
    assert_non_null(strstr(err.msg, "model.safetensors"));
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/spill-st-%d", (int)getpid());
    mkdir(dir, 0755);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_shards),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) rc = 1;
    return rc;
}
