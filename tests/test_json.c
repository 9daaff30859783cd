/* The strict JSON reader: values, escapes, UTF-8, limits, and every way a document can be wrong
 * (each must fail with a message, never crash — run under ASan in CI). */
#include "spill_json.h"
#include "test_util.h"

#include <malloc.h>
#include <math.h>
#include <time.h>

static spill_json *ok(const char *text) {
    spill_json *j = NULL;
    spill_err err = {{0}};
    if (spill_json_parse(text, strlen(text), "t.json", &j, &err)) fail_msg("'%s' should parse: %s", text, err.msg);
    return j;
}

static void test_values(void **s) {
    (void)s;
    spill_json *j = ok(" {\"a\": 1, \"b\": [true, false, null, -2.5e3, \"x\\u00e9\\ud83d\\ude00\\n\"], \"c\": {},"
                       " \"big\": 12345678901234, \"frac\": 0.5, \"e\": []}\n");
    assert_int_equal(j->type, SPILL_JSON_OBJECT);
    assert_int_equal(j->n, 6);
    const spill_json *b = spill_json_get_type(j, "b", SPILL_JSON_ARRAY);
    assert_non_null(b);
    assert_int_equal(b->n, 5);
    assert_int_equal(b->items[0].boolean, 1);
    assert_int_equal(b->items[2].type, SPILL_JSON_NULL);
    assert_true(b->items[3].number == -2500.0);
    assert_false(b->items[3].is_int);
    assert_string_equal(b->items[4].str, "x\xc3\xa9\xf0\x9f\x98\x80\n");
    int64_t v;
    spill_err err = {{0}};
    assert_int_equal(spill_json_get_int(j, "big", 0, INT64_MAX, 0, &v, "t", &err), 0);
    assert_int_equal(v, 12345678901234ll);
    assert_int_equal(spill_json_get_int(j, "missing", 0, 10, 7, &v, "t", &err), 0);
    assert_int_equal(v, 7);
    assert_int_equal(spill_json_get_int(j, "frac", 0, 10, 7, &v, "t.json", &err), -1);
    assert_non_null(strstr(err.msg, "\"frac\""));
    assert_int_equal(spill_json_get_int(j, "a", 2, 10, 7, &v, "t.json", &err), -1);
    assert_non_null(strstr(err.msg, "2..10"));
    assert_int_equal(spill_json_get_int(j, "b", 0, 10, 7, &v, "t.json", &err), -1);
    assert_non_null(strstr(err.msg, "an array"));
    double d;
    assert_int_equal(spill_json_get_num(j, "frac", 0, &d, "t", &err), 0);
    assert_true(d == 0.5);
    assert_null(spill_json_get(j, "zzz"));
    assert_null(spill_json_get_type(j, "a", SPILL_JSON_STRING));
    spill_json_free(j);
    /* an embedded NUL survives with its length */
    j = ok("\"a\\u0000b\"");
    assert_int_equal(j->len, 3);
    spill_json_free(j);
    /* a byte-order mark is tolerated; scalars at top level are documents too */
    spill_json_free(ok("\xEF\xBB\xBF[1]"));
    spill_json_free(ok("0"));
    spill_json_free(ok("-0.0e-7"));
}

static void test_bad(void **s) {
    (void)s;
    const char *bad[] = {
        "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[01]", "[1.]", "[.5]", "[1e]", "[+1]",
        "[NaN]", "[Infinity]", "[1e999]", "tru", "nul", "[\"abc]", "[\"a\\x\"]", "[\"\\u12\"]", "[\"\\ud800\"]",
        "[\"\\udc00\"]", "[\"\\ud800\\u0041\"]", "[\"a\nb\"]", "[\"\xff\"]", "[\"\xc0\xaf\"]", "[\"\xed\xa0\x80\"]",
        "[\"\xf4\x90\x80\x80\"]", "{\"a\":1,\"a\":2}", "[1] [2]", "// c\n[1]", "[1 2]", "{\"a\":1 \"b\":2}",
        "['a']", "[\"\\u00e\"]", "{\"a\\u0000b\":1}", "{\"a\\u0000b\":1,\"a\\u0000c\":2}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spill_json *j = (spill_json *)1;
        spill_err err = {{0}};
        if (!spill_json_parse(bad[i], strlen(bad[i]), "bad.json", &j, &err)) fail_msg("'%s' should not parse", bad[i]);
        assert_null(j);
        assert_non_null(strstr(err.msg, "bad.json: invalid JSON at byte"));
    }
    /* the position is reported as line and column */
    spill_json *j;
    spill_err err = {{0}};
    assert_int_equal(spill_json_parse("{\n  \"a\": [1,\n  2,]\n}", 19, "p.json", &j, &err), -1);
    assert_non_null(strstr(err.msg, "line 3"));
    assert_non_null(strstr(err.msg, "trailing comma"));
    /* nesting is limited */
    char deep[400];
    memset(deep, '[', 200);
    memset(deep + 200, ']', 200);
    assert_int_equal(spill_json_parse(deep, 400, "deep.json", &j, &err), -1);
    assert_non_null(strstr(err.msg, "128"));
    assert_int_equal(spill_json_parse(deep + 100, 200, "ok.json", &j, &err), 0);
    spill_json_free(j);
}

static void test_truncations(void **s) {
    (void)s;
    const char *doc = "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 4096, \"rope_scaling\": "
                      "{\"factor\": 8.0, \"rope_type\": \"llama3\"}, \"eos_token_id\": [128001, 128009], "
                      "\"name\": \"caf\\u00e9 \\ud83d\\ude00\", \"tie\": false, \"x\": null}";
    size_t n = strlen(doc);
    spill_json *j;
    spill_err err;
    assert_int_equal(spill_json_parse(doc, n, "c.json", &j, &err), 0);
    spill_json_free(j);
    /* every proper prefix is invalid (the document is an object), and none may crash or leak */
    for (size_t k = 0; k < n; k++) {
        char *copy = malloc(k + 1); /* exact size so that ASan catches a read past the end */
        memcpy(copy, doc, k);
        assert_int_equal(spill_json_parse(copy, k, "c.json", &j, &err), -1);
        free(copy);
    }
    /* every single-byte corruption either parses or fails cleanly */
    for (size_t k = 0; k < n; k++)
        for (int b = 0; b < 256; b += 17) {
            char *copy = malloc(n);
            memcpy(copy, doc, n);
            copy[k] = (char)b;
            if (!spill_json_parse(copy, n, "c.json", &j, &err)) spill_json_free(j);
            free(copy);
        }
}

static void test_large_objects(void **s) {
    (void)s;
    /* a vocabulary-sized object: duplicates found by hashing, not by comparing every pair */
    size_t cap = 4 << 20, n = 0;
    char *doc = malloc(cap);
    n += (size_t)snprintf(doc + n, cap - n, "{");
    for (int i = 0; i < 150000; i++) n += (size_t)snprintf(doc + n, cap - n, "%s\"tok%d\": %d", i ? ", " : "", i, i);
    size_t closed = n;
    n += (size_t)snprintf(doc + n, cap - n, "}");
    spill_json *j;
    spill_err err = {{0}};
    assert_int_equal(spill_json_parse(doc, n, "vocab.json", &j, &err), 0);
    assert_int_equal(j->n, 150000);
    assert_int_equal(spill_json_get(j, "tok149999")->integer, 149999);
    spill_json_free(j);
    n = closed + (size_t)snprintf(doc + closed, cap - closed, ", \"tok77777\": 1}");
    assert_int_equal(spill_json_parse(doc, n, "vocab.json", &j, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate key"));
    free(doc);
}

static void test_file(void **s) {
    (void)s;
    char path[] = "/tmp/spill-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"k\": 3}", 8), 8);
    close(fd);
    spill_json *j;
    spill_err err = {{0}};
    assert_int_equal(spill_json_parse_file(path, 100, &j, &err), 0);
    spill_json_free(j);
    assert_int_equal(spill_json_parse_file(path, 4, &j, &err), -1);
    assert_non_null(strstr(err.msg, "limit"));
    unlink(path);
    assert_int_equal(spill_json_parse_file(path, 100, &j, &err), -1);
    assert_non_null(strstr(err.msg, path));
}


/* Regressions found by benchmarks/json_bench.c (docs/json.md, "spill_json beside jansson and cJSON"). */

/* keys are C strings: a key with \u0000 was read as its prefix ({"a\u0000b":1} answered to "a"), and
   two keys that differ after it were called duplicates */
static void test_nul_in_key(void **s) {
    (void)s;
    spill_json *j;
    spill_err err = {{0}};
    assert_int_equal(spill_json_parse("{\"a\\u0000b\":1}", 14, "k.json", &j, &err), -1);
    assert_non_null(strstr(err.msg, "\\u0000 in an object key"));
    assert_non_null(strstr(err.msg, "at byte 1 "));
    /* in a value it is kept, with its length */
    j = ok("{\"a\": \"x\\u0000y\"}");
    assert_int_equal(spill_json_get(j, "a")->len, 3);
    spill_json_free(j);
}

/* 2^stages keys whose 64-bit FNV-1a hashes (the duplicate-key hash before SipHash) agree in their low 20
   bits: one bucket in every table of up to 2^20 slots. The low k bits of FNV-1a depend only on the low k
   bits of its state, so a pair of 3-byte blocks that collide from one state is found by a birthday
   search, stage by stage. */
static char *fnv_flood(int stages, size_t *len) {
    const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const uint64_t P = 1099511628211ull, MASK = (1u << 20) - 1;
    uint32_t *seen = malloc((MASK + 1) * sizeof *seen);
    char blk[24][2][3];
    uint64_t st = 1469598103934665603ull;
    for (int g = 0; g < stages; g++) {
        memset(seen, 0, (MASK + 1) * sizeof *seen);
        for (uint32_t b = 0;; b++) {
            char c[3] = {al[b % 62], al[b / 62 % 62], al[b / 3844 % 62]};
            uint64_t h = st;
            for (int k = 0; k < 3; k++) h = (h ^ (unsigned char)c[k]) * P;
            uint32_t o = seen[h & MASK];
            if (o--) {
                char oc[3] = {al[o % 62], al[o / 62 % 62], al[o / 3844 % 62]};
                memcpy(blk[g][0], oc, 3);
                memcpy(blk[g][1], c, 3);
                st = h;
                break;
            }
            seen[h & MASK] = b + 1;
        }
    }
    free(seen);
    size_t nk = (size_t)1 << stages, n = 0;
    char *doc = malloc(nk * (size_t)(3 * stages + 6) + 2);
    doc[n++] = '{';
    for (size_t i = 0; i < nk; i++) {
        if (i) doc[n++] = ',';
        doc[n++] = '"';
        for (int g = 0; g < stages; g++, n += 3) memcpy(doc + n, blk[g][(i >> g) & 1], 3);
        memcpy(doc + n, "\":0", 3);
        n += 3;
    }
    doc[n++] = '}';
    *len = n;
    return doc;
}

/* with a fixed hash these 65,536 keys (3.5 MB) took 13 s to check for duplicates; keyed, ~50 ms */
static void test_hash_flood(void **s) {
    (void)s;
    size_t n;
    char *doc = fnv_flood(16, &n);
    spill_json *j;
    spill_err err = {{0}};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(spill_json_parse(doc, n, "flood.json", &j, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    assert_int_equal(j->n, 65536);
    spill_json_free(j);
    if (secs > 3) fail_msg("65536 colliding keys took %.1f s (quadratic duplicate check?)", secs);
    /* and a duplicate among them is still found */
    memcpy(doc + n - 1, ",\"", 2);
    memcpy(doc + n + 1, doc + 2, (size_t)(3 * 16));
    memcpy(doc + n + 1 + 3 * 16, "\":1}", 4);
    assert_int_equal(spill_json_parse(doc, n + 4 + 3 * 16, "flood.json", &j, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate key"));
    free(doc);
}

/* every non-empty array or object kept room for 8 items (8 x 80 bytes): [[0],[0],...] of 10 MB took
   1.9 GB; now a closed container holds exactly its items */
static void test_no_spare_capacity(void **s) {
    (void)s;
    spill_json *j = ok("[[0], {\"a\": 1}, [1, 2, 3], [], {}]");
    assert_true(malloc_usable_size(j->items[0].items) < 2 * sizeof(spill_json));
    assert_true(malloc_usable_size(j->items[1].items) < 2 * sizeof(spill_json));
    assert_true(malloc_usable_size(j->items[1].keys) < 8 * sizeof(char *)); /* (glibc: 24 at least) */
    assert_true(malloc_usable_size(j->items[2].items) < 4 * sizeof(spill_json));
    assert_true(malloc_usable_size(j->items) < 6 * sizeof(spill_json));
    assert_null(j->items[3].items);
    spill_json_free(j);
}

/* integers of up to 18 digits are read without strtod: the same doubles, exact int64, -0 kept */
static void test_numbers(void **s) {
    (void)s;
    spill_json *j = ok("[-0, 0, 999999999999999999, -999999999999999999, 1000000000000000000, 9007199254740993,"
                       " -9223372036854775808, 9223372036854775808, 123456789012345678901234567890, 1e-999, 5e-324]");
    assert_true(j->items[0].is_int && j->items[0].integer == 0);
    assert_true(j->items[0].number == 0 && signbit(j->items[0].number));
    assert_false(signbit(j->items[1].number));
    assert_true(j->items[2].is_int && j->items[2].integer == 999999999999999999ll);
    assert_true(j->items[2].number == 1e18);
    assert_true(j->items[3].integer == -999999999999999999ll);
    assert_true(j->items[4].is_int && j->items[4].integer == 1000000000000000000ll);
    assert_true(j->items[5].is_int && j->items[5].integer == 9007199254740993ll);
    assert_true(j->items[5].number == 9007199254740992.0); /* round to nearest even, as strtod */
    assert_true(j->items[6].is_int && j->items[6].integer == INT64_MIN);
    assert_false(j->items[7].is_int);
    assert_true(j->items[7].number == 9223372036854775808.0);
    assert_false(j->items[8].is_int);
    assert_true(j->items[8].number == 1.2345678901234568e29);
    assert_true(j->items[9].number == 0);
    assert_true(j->items[10].number > 0);
    spill_json_free(j);
    /* every length and sign against strtod */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        char t[32];
        int digits = 1 + i % 18;
        uint64_t v = x % 1000000000000000000ull;
        int n = snprintf(t, sizeof t, "%s%llu", i % 3 ? "" : "-", (unsigned long long)v);
        if (n > digits + (i % 3 ? 0 : 1)) n = digits + (i % 3 ? 0 : 1); /* keep the first digits */
        t[n] = 0;
        spill_json *k;
        spill_err err = {{0}};
        assert_int_equal(spill_json_parse(t, (size_t)n, "n.json", &k, &err), 0);
        assert_true(k->number == strtod(t, NULL));
        assert_true(k->is_int && k->integer == strtoll(t, NULL, 10));
        spill_json_free(k);
    }
}

/* strings: runs of ASCII are copied at once; escapes and UTF-8 around them */
static void test_string_runs(void **s) {
    (void)s;
    spill_json *j = ok("[\"ab\\ncd\xc3\xa9" "ef\\u0041gh\\\"\", \"\", \"\\\\\", \"\xe6\x97\xa5x\"]");
    assert_string_equal(j->items[0].str, "ab\ncd\xc3\xa9" "efAgh\"");
    assert_int_equal(j->items[1].len, 0);
    assert_string_equal(j->items[2].str, "\\");
    assert_string_equal(j->items[3].str, "\xe6\x97\xa5x");
    spill_json_free(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_large_objects),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_nul_in_key),
        cmocka_unit_test(test_hash_flood),
        cmocka_unit_test(test_no_spare_capacity),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_string_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
