/* Hugging Face models: tokenizer.json (byte-level BPE with the Llama-3 and Qwen2 pre-tokenizers)
 * against the transformers tokenizer, and the forward pass of tiny random-weight LlamaForCausalLM
 * (llama3 rope scaling) and Qwen2ForCausalLM (q/k/v biases, tied embeddings) checkpoints against the
 * logits transformers computed (tests/gen_hf_fixtures.py wrote both). */
#include <math.h>

#include "forward.h"
#include "test_util.h"
#include "tokenizer.h"

static const char *fx(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", SPILL_FIXTURES_DIR, name);
    return buf[k];
}

static void check_tokens(const char *dir) {
    spill_tokenizer t;
    spill_err err = {{0}};
    if (spill_tokenizer_init_hf(&t, dir, &err)) fail_msg("%s", err.msg);
    char path[600];
    snprintf(path, sizeof path, "%s/tokens.tsv", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[8192];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        char *fields[2];
        if (split_tabs(line, fields, 2) < 2) continue;
        size_t n;
        char *text = hex_decode(fields[0], strlen(fields[0]), &n);
        int want[1024];
        int nw = parse_ids(fields[1], strlen(fields[1]), want, 1024);
        int *got = NULL, ng = 0;
        assert_int_equal(spill_tokenize(&t, text, n, 0, 1, &got, &ng, &err), 0);
        if (ng != nw || memcmp(got, want, sizeof(int) * (size_t)nw)) {
            fprintf(stderr, "text '%s': got", text);
            for (int i = 0; i < ng; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "\nwanted");
            for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n");
            fail();
        }
        /* and back: the bytes of the tokens are the text */
        char back[4096];
        int bl = 0;
        for (int i = 0; i < ng; i++) bl += spill_token_to_bytes(&t, got[i], back + bl, (int)sizeof back - bl);
        int has_special = strstr(text, "<|") != NULL;
        if (!has_special) assert_memory_equal(back, text, n);
        free(got);
        free(text);
        cases++;
    }
    fclose(f);
    assert_true(cases >= 8);
    spill_tokenizer_free(&t);
}

static void test_tokenizer_llama3(void **s) {
    (void)s;
    check_tokens(fx("hf-llama3"));
    spill_tokenizer t;
    spill_err err = {{0}};
    assert_int_equal(spill_tokenizer_init_hf(&t, fx("hf-llama3"), &err), 0);
    assert_int_equal(t.bos, spill_token_find(&t, "<|begin_of_text|>", 17));
    assert_true(t.add_bos);
    assert_true(spill_token_is_eog(&t, spill_token_find(&t, "<|eot_id|>", 10)));
    assert_true(spill_token_is_eog(&t, spill_token_find(&t, "<|end_of_text|>", 15)));
    spill_tokenizer_free(&t);
}

static void test_tokenizer_qwen2(void **s) {
    (void)s;
    check_tokens(fx("hf-qwen2"));
}

/* every position's logits against transformers', feeding the ids one at a time and as one batch */
static void check_logits(const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/ids.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[1024];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    int ids[64];
    int n = parse_ids(line, strlen(line), ids, 64);
    assert_true(n >= 8);
    spill_err err = {{0}};
    spill_mem *mem = spill_mem_create("host", &err);
    spill_model m;
    spill_model_params mp = {.use_mmap = 1};
    if (spill_model_load(&m, dir, &mp, mem, &err)) fail_msg("%s", err.msg);
    int V = m.hp.vocab;
    float *ref = malloc(sizeof(float) * (size_t)V * (size_t)n);
    snprintf(path, sizeof path, "%s/logits.bin", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), (size_t)V * (size_t)n, f), (size_t)V * (size_t)n);
    fclose(f);
    spill_pool *pool = spill_pool_create(2);
    for (int batch = 1; batch <= n; batch += n - 1) {
        spill_state st;
        assert_int_equal(spill_state_init(&st, &m, 64, batch, pool, &err), 0);
        double worst = 0;
        for (int p = 0; p < n; p += batch) {
            int nb = n - p < batch ? n - p : batch;
            assert_int_equal(spill_forward(&st, ids + p, nb, p, &err), 0);
            const float *want = ref + (size_t)(p + nb - 1) * (size_t)V; /* the logits of the last token fed */
            double dmax = 0, rmax = 0;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)st.logits[v] - want[v]);
                if (d > dmax) dmax = d;
                if (fabs(want[v]) > rmax) rmax = fabs(want[v]);
            }
            if (dmax / rmax > worst) worst = dmax / rmax;
        }
        printf("%s, batch %d: worst relative logit error %.2e\n", dir, batch, worst);
        assert_true(worst < 1e-4);
        spill_state_free(&st);
    }
    spill_pool_free(pool);
    free(ref);
    spill_model_free(&m);
    spill_mem_free(mem);
}

static void test_llama3_logits(void **s) {
    (void)s;
    check_logits(fx("hf-llama3"));
}

static void test_qwen2_logits(void **s) {
    (void)s;
    check_logits(fx("hf-qwen2"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_llama3),
        cmocka_unit_test(test_tokenizer_qwen2),
        cmocka_unit_test(test_llama3_logits),
        cmocka_unit_test(test_qwen2_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
