/* The strict JSON reader: values, escapes, UTF-8, limits, and every way a document can be wrong
 * (each must fail with a message, never crash — run under ASan in CI). */
#include "spill_json.h"
#include "test_util.h"

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
        "['a']", "[\"\\u00e\"]",
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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_large_objects),
        cmocka_unit_test(test_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
