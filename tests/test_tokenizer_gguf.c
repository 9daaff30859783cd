/* GGUF tokenizers: every tokenizer.ggml.pre type spill knows, on a vocab-only GGUF file, gives the
 * ids of the tokenizers library on the tokenizer.json the converter would have read (that type's
 * splits and flags; add_special on, so the type's BOS default is checked too) and decodes as
 * llama.cpp does; the SentencePiece-style "llama" model gives llama.cpp's ids; an unknown type is
 * refused naming it and the known ones, unless a known one is forced. The fixtures also record
 * llama.cpp's own ids, which the test reports. Fixtures: tests/gen_tokenizer_fixtures.py. */
#include "tok_fixtures.h"

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

static const char *const types[] = {
    "default", "llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", "smaug-bpe", "dbrx", "gpt-2", "gpt2", "qwen2",
    "deepseek-r1-qwen", "megrez", "smollm", "starcoder", "refact", "deepseek-llm", "deepseek-coder", "tekken", "falcon",
};

static int open_tok(const char *name, spill_gguf *g, spill_tokenizer *t) {
    char path[512];
    snprintf(path, sizeof path, "%s/gguf/%s.gguf", TOKFX, name);
    spill_err err = {{0}};
    if (spill_gguf_open(g, path, &err)) fail_msg("%s", err.msg);
    if (spill_tokenizer_init(t, g, &err)) fail_msg("%s", err.msg);
    return 0;
}

/* lines: index, reference ids (add_special), llama.cpp's ids ("=" same), llama.cpp's decoding */
static void check_type(const char *name, int *total) {
    spill_gguf g;
    spill_tokenizer t;
    open_tok(name, &g, &t);
    char path[512];
    snprintf(path, sizeof path, "%s/gguf/%s.tsv", TOKFX, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    int compared = 0, bad = 0, llamacpp_differs = 0;
    while (getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        char *fl[4];
        if (split_tabs(line, fl, 4) < 4) continue;
        int i = atoi(fl[0]);
        assert_true(i >= 0 && i < strings.n);
        char what[128];
        snprintf(what, sizeof what, "%s string %d", name, i);
        int b = tok_check(&t, what, strings.s[i], strings.len[i], 1, 1, fl[1]);
        if (strcmp(fl[3], "-")) b |= detok_check(&t, what, fl[1], strings.s[i], strings.len[i], fl[3]);
        llamacpp_differs += strcmp(fl[2], "=") != 0;
        bad += b;
        compared++;
        if (bad >= 10) break;
    }
    free(line);
    fclose(f);
    printf("%-17s %4d strings as the reference, %d differ (llama.cpp itself differs from it on %d)\n", name, compared,
           bad, llamacpp_differs);
    assert_int_equal(bad, 0);
    assert_true(compared >= 100);
    *total += compared;
    spill_tokenizer_free(&t);
    spill_gguf_close(&g);
}

static void test_pre_types(void **s) {
    (void)s;
    int total = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) check_type(types[i], &total);
    printf("%d strings over %zu types\n", total, sizeof types / sizeof *types);
}

/* the flags of the types, as llama.cpp has them */
static void test_type_flags(void **s) {
    (void)s;
    struct { const char *name; int add_bos; } want[] = {
        {"llama-bpe", 1}, {"tekken", 1}, {"falcon3", 1}, {"smaug-bpe", 0}, {"gpt-2", 0}, {"qwen2", 0}, {"smollm", 0},
        {"deepseek-llm", 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        spill_gguf g;
        spill_tokenizer t;
        open_tok(want[i].name, &g, &t);
        assert_int_equal(t.add_bos, want[i].add_bos);
        assert_int_equal(t.add_eos, 0);
        /* ignore_merges: a vocabulary word no merge builds (" Erdoğan") is one token only for the types
         * that have it, which are those that add a BOS */
        int *ids, n;
        char *out;
        size_t on;
        spill_err err = {{0}};
        assert_int_equal(spill_tokenize(&t, " Erdo\xC4\x9F""an", 9, 0, 1, &ids, &n, &err), 0);
        if (want[i].add_bos) {
            assert_int_equal(n, 1);
            assert_int_equal(spill_detokenize(&t, ids, n, 1, &out, &on, &err), 0);
            assert_int_equal(on, 9);
            assert_memory_equal(out, " Erdo\xC4\x9F""an", 9);
            free(out);
        } else {
            assert_true(n > 1);
        }
        free(ids);
        spill_tokenizer_free(&t);
        spill_gguf_close(&g);
    }
}

static void test_spm(void **s) {
    (void)s;
    int total = 0;
    check_type("spm", &total);
    spill_gguf g;
    spill_tokenizer t;
    open_tok("spm", &g, &t);
    assert_int_equal(t.kind, SPILL_TOK_SPM);
    assert_true(t.add_bos);
    assert_int_equal(t.bos, 1);
    /* invalid UTF-8 goes through as byte tokens, and decodes back to the same bytes */
    int *ids, n;
    spill_err err = {{0}};
    assert_int_equal(spill_tokenize(&t, "a\xff""b\xe2\x82", 5, 0, 0, &ids, &n, &err), 0);
    char *out;
    size_t on;
    assert_int_equal(spill_detokenize(&t, ids, n, 1, &out, &on, &err), 0);
    assert_int_equal(on, 5);
    assert_memory_equal(out, "a\xff""b\xe2\x82", 5);
    free(out);
    free(ids);
    spill_tokenizer_free(&t);
    spill_gguf_close(&g);
}

static void test_unknown_type_refused(void **s) {
    (void)s;
    spill_gguf g;
    spill_tokenizer t;
    spill_err err = {{0}};
    if (spill_gguf_open(&g, TOKFX "/gguf/unknown-type.gguf", &err)) fail_msg("%s", err.msg);
    assert_int_equal(spill_tokenizer_init(&t, &g, &err), -1);
    printf("refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "unknown-type.gguf"));
    assert_non_null(strstr(err.msg, "'not-a-real-type'"));
    assert_non_null(strstr(err.msg, "llama-bpe"));      /* the known ones are listed */
    assert_non_null(strstr(err.msg, "deepseek-coder"));
    assert_null(t.impl); /* nothing left allocated */
    /* a known type can be forced; an unknown forced one is refused too */
    assert_int_equal(spill_tokenizer_init_pre(&t, &g, "gpt-2", &err), 0);
    int *ids, n;
    assert_int_equal(spill_tokenize(&t, "hello world", 11, 1, 1, &ids, &n, &err), 0);
    assert_true(n >= 2);
    free(ids);
    spill_tokenizer_free(&t);
    assert_int_equal(spill_tokenizer_init_pre(&t, &g, "made-up", &err), -1);
    assert_non_null(strstr(err.msg, "'made-up'"));
    assert_non_null(strstr(spill_tokenizer_pre_types(), "smollm"));
    spill_gguf_close(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pre_types),
        cmocka_unit_test(test_type_flags),
        cmocka_unit_test(test_spm),
        cmocka_unit_test(test_unknown_type_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
