/* The tokenizer.json pipeline against the tokenizers library (differential): every pipeline shape
 * of tests/fixtures/tokenizers/hf encodes the 2000 test strings to the library's ids (without and
 * with the post-processor's specials, and with special tokens left as text) and decodes them back
 * to the library's text. Then SmolLM2's Hub tokenizer (vocabulary from the default model's GGUF)
 * and a Llama-3-style directory against transformers, end to end with BOS. Fixtures:
 * tests/gen_tokenizer_fixtures.py. */
#include "tok_fixtures.h"
#include "unicode.h"

static tok_strings strings;

static int setup(void **s) {
    (void)s;
    tok_strings_load(&strings);
    return 0;
}

static int teardown(void **s) {
    (void)s;
    tok_strings_free(&strings);
    return 0;
}

/* every line of expected.tsv; returns the number of strings compared */
static int check_lines(const spill_tokenizer *t, const char *name, const char *tsv, int stream_check) {
    FILE *f = fopen(tsv, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int compared = 0, bad = 0, streamed = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        char *fl[5];
        if (split_tabs(line, fl, 5) < 5) continue;
        int i = atoi(fl[0]);
        assert_true(i >= 0 && i < strings.n);
        const char *s = strings.s[i];
        size_t n = strings.len[i];
        char what[128];
        snprintf(what, sizeof what, "%s string %d", name, i);
        int b = tok_check(t, what, s, n, 0, 1, fl[1]);
        if (strcmp(fl[2], "-")) b |= tok_check(t, what, s, n, 1, 1, fl[2]);
        if (strcmp(fl[3], "-")) b |= tok_check(t, what, s, n, 0, 0, fl[3]);
        b |= detok_check(t, what, fl[1], s, n, fl[4]);
        /* streaming: the tokens' bytes one by one make the text (byte-level shapes, no added tokens) */
        if (stream_check && !strcmp(fl[4], "=") && !strcmp(fl[3], "-")) {
            int ni, *ids = ids_parse(fl[1], &ni);
            char *buf = malloc(n * 4 + 16);
            size_t o = 0;
            for (int k = 0; k < ni; k++) o += (size_t)spill_token_to_bytes(t, ids[k], buf + o, (int)(n * 4 + 16 - o));
            if (o != n || memcmp(buf, s, n)) {
                fprintf(stderr, "%s: streamed bytes differ\n", what);
                text_print(stderr, "expected", s, n);
                text_print(stderr, "streamed", buf, o);
                b = 1;
            }
            streamed++;
            free(ids);
            free(buf);
        }
        bad += b;
        compared++;
        if (bad >= 10) break;
    }
    free(line);
    fclose(f);
    printf("%-14s %d strings compared with the tokenizers library (%d also streamed token by token), %d differ\n", name,
           compared, streamed, bad);
    assert_int_equal(bad, 0);
    return compared;
}

static void check_shape(const char *name, int stream_check) {
    char path[512], tsv[512];
    snprintf(path, sizeof path, "%s/hf/%s/tokenizer.json", TOKFX, name);
    snprintf(tsv, sizeof tsv, "%s/hf/%s/expected.tsv", TOKFX, name);
    spill_tokenizer t;
    spill_err err = {{0}};
    if (spill_tokenizer_init_json(&t, path, &err)) fail_msg("%s", err.msg);
    assert_true(check_lines(&t, name, tsv, stream_check) >= 2000);
    spill_tokenizer_free(&t);
}

static void test_gpt2(void **s) { (void)s; check_shape("gpt2", 1); }
static void test_llama3(void **s) { (void)s; check_shape("llama3", 1); }
static void test_qwen2(void **s) { (void)s; check_shape("qwen2", 0); } /* NFC changes some texts */
static void test_mistral(void **s) { (void)s; check_shape("mistral", 0); }
static void test_llama2_legacy(void **s) { (void)s; check_shape("llama2-legacy", 0); }
static void test_misc_a(void **s) { (void)s; check_shape("misc-a", 0); }
static void test_misc_b(void **s) { (void)s; check_shape("misc-b", 0); }

/* The ids of transformers (add_special_tokens=True) for a directory */
static int check_transformers(const spill_tokenizer *t, const char *tsv, const char *name) {
    FILE *f = fopen(tsv, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int compared = 0, bad = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        char *fl[2];
        if (split_tabs(line, fl, 2) < 2) continue;
        int i = atoi(fl[0]);
        char what[128];
        snprintf(what, sizeof what, "%s (transformers) string %d", name, i);
        bad += tok_check(t, what, strings.s[i], strings.len[i], 1, 1, fl[1]);
        compared++;
        if (bad >= 10) break;
    }
    free(line);
    fclose(f);
    printf("%-14s %d strings compared with transformers end to end (add_special), %d differ\n", name, compared, bad);
    assert_int_equal(bad, 0);
    return compared;
}

static void test_llama3_bos_from_post_processor(void **s) {
    (void)s;
    spill_tokenizer t;
    spill_err err = {{0}};
    if (spill_tokenizer_init_hf(&t, TOKFX "/llama3-e2e", &err)) fail_msg("%s", err.msg);
    int bos = spill_token_find(&t, "<|begin_of_text|>", 17);
    assert_true(bos >= 0);
    assert_int_equal(t.bos, bos);
    assert_true(t.add_bos); /* tokenizer_config.json says nothing of add_bos_token */
    int *ids, n;
    assert_int_equal(spill_tokenize(&t, "Hi", 2, 1, 1, &ids, &n, &err), 0);
    assert_true(n >= 2);
    assert_int_equal(ids[0], bos);
    free(ids);
    /* the text's own BOS is not doubled; add_special = 0 adds none */
    assert_int_equal(spill_tokenize(&t, "<|begin_of_text|>Hi", 19, 1, 1, &ids, &n, &err), 0);
    assert_int_equal(ids[0], bos);
    assert_int_not_equal(ids[1], bos);
    free(ids);
    assert_int_equal(spill_tokenize(&t, "Hi", 2, 0, 1, &ids, &n, &err), 0);
    assert_int_not_equal(ids[0], bos);
    free(ids);
    assert_true(check_transformers(&t, TOKFX "/llama3-e2e/transformers.tsv", "llama3-e2e") >= 300);
    spill_tokenizer_free(&t);
}

/* write s as a JSON string literal */
static void json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* SmolLM2's tokenizer.json: the committed template with the GGUF's vocabulary and merges put in */
static int write_smollm2_dir(const spill_gguf *g, const char *dir) {
    size_t n;
    char *tmpl = read_file_all(TOKFX "/smollm2/tokenizer.template.json", &n);
    assert_non_null(tmpl);
    char path[600];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    const spill_gguf_kv *toks, *merges;
    spill_err err = {{0}};
    assert_int_equal(spill_gguf_get_arr(g, "tokenizer.ggml.tokens", SPILL_GGUF_STRING, &toks, &err), 0);
    assert_int_equal(spill_gguf_get_arr(g, "tokenizer.ggml.merges", SPILL_GGUF_STRING, &merges, &err), 0);
    spill_str *tv = malloc(sizeof *tv * toks->arr_count), *mv = malloc(sizeof *mv * merges->arr_count);
    spill_gguf_arr_strings(toks, tv);
    spill_gguf_arr_strings(merges, mv);
    char *v = strstr(tmpl, "\"@VOCAB@\""), *m = strstr(tmpl, "\"@MERGES@\"");
    assert_true(v && m && v < m);
    fwrite(tmpl, 1, (size_t)(v - tmpl), f);
    fputc('{', f);
    for (uint64_t i = 0; i < toks->arr_count; i++) {
        if (i) fputc(',', f);
        json_str(f, tv[i].ptr, tv[i].len);
        fprintf(f, ":%llu", (unsigned long long)i);
    }
    fputc('}', f);
    char *after_v = v + strlen("\"@VOCAB@\"");
    fwrite(after_v, 1, (size_t)(m - after_v), f);
    fputc('[', f);
    for (uint64_t i = 0; i < merges->arr_count; i++) {
        if (i) fputc(',', f);
        json_str(f, mv[i].ptr, mv[i].len);
    }
    fputc(']', f);
    fputs(m + strlen("\"@MERGES@\""), f);
    fclose(f);
    free(tv);
    free(mv);
    free(tmpl);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "cp '%s/smollm2/tokenizer_config.json' '%s/'", TOKFX, dir);
    return system(cmd);
}

static void test_smollm2(void **s) {
    (void)s;
    const char *model = smollm_path();
    if (access(model, R_OK)) {
        printf("SKIPPED: %s is not there (the default model gives SmolLM2's vocabulary)\n", model);
        skip();
    }
    spill_gguf g;
    spill_err err = {{0}};
    if (spill_gguf_open(&g, model, &err)) fail_msg("%s", err.msg);
    char dir[] = "/tmp/spill-smollm2-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(write_smollm2_dir(&g, dir), 0);
    spill_tokenizer t;
    if (spill_tokenizer_init_hf(&t, dir, &err)) fail_msg("%s", err.msg);
    check_lines(&t, "smollm2", TOKFX "/smollm2/expected.tsv", 1);
    check_transformers(&t, TOKFX "/smollm2/transformers.tsv", "smollm2");
    /* the GGUF ("smollm" type) gives the same ids as the Hub's tokenizer.json on valid UTF-8 */
    spill_tokenizer tg;
    if (spill_tokenizer_init(&tg, &g, &err)) fail_msg("%s", err.msg);
    int same = 0;
    for (int i = 0; i < strings.n; i++) {
        int *a, na, *b, nb;
        if (!spill_utf8_valid(strings.s[i], strings.len[i])) continue;
        assert_int_equal(spill_tokenize(&t, strings.s[i], strings.len[i], 0, 1, &a, &na, &err), 0);
        assert_int_equal(spill_tokenize(&tg, strings.s[i], strings.len[i], 0, 1, &b, &nb, &err), 0);
        if (na != nb || memcmp(a, b, sizeof(int) * (size_t)na)) {
            text_print(stderr, "GGUF vs tokenizer.json", strings.s[i], strings.len[i]);
            fail();
        }
        same++;
        free(a);
        free(b);
    }
    printf("smollm2        the GGUF and the tokenizer.json agree on %d strings\n", same);
    spill_tokenizer_free(&tg);
    spill_tokenizer_free(&t);
    spill_gguf_close(&g);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpt2),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_qwen2),
        cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_llama2_legacy),
        cmocka_unit_test(test_misc_a),
        cmocka_unit_test(test_misc_b),
        cmocka_unit_test(test_llama3_bos_from_post_processor),
        cmocka_unit_test(test_smollm2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
