/* Hugging Face models: tokenizer.json (byte-level BPE with the Llama-3 and Qwen2 pre-tokenizers)
 * against the transformers tokenizer, and the forward pass of tiny random-weight LlamaForCausalLM
 * (llama3 rope scaling) and Qwen2ForCausalLM (q/k/v biases, tied embeddings) checkpoints against the
 * logits transformers computed (tests/gen_hf_fixtures.py wrote both). */
#include <math.h>

#include "engine.h"
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
    spill_model m;
    if (spill_model_load(&m, dir, &err)) fail_msg("%s", err.msg);
    int V = m.hp.vocab;
    spill_model_free(&m);
    float *ref = malloc(sizeof(float) * (size_t)V * (size_t)n);
    snprintf(path, sizeof path, "%s/logits.bin", dir);
    f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(ref, sizeof(float), (size_t)V * (size_t)n, f), (size_t)V * (size_t)n);
    fclose(f);
    for (int batch = 1; batch <= n; batch += n - 1) {
        spill_engine *e = open_engine(dir, 64, batch, 2);
        double worst = 0;
        for (int p = 0; p < n; p += batch) {
            int nb = n - p < batch ? n - p : batch;
            assert_int_equal(spill_engine_forward(e, 0, ids + p, nb, p, &err), 0);
            const float *got = spill_engine_logits(e);
            const float *want = ref + (size_t)(p + nb - 1) * (size_t)V; /* the logits of the last token fed */
            double dmax = 0, rmax = 0;
            for (int v = 0; v < V; v++) {
                double d = fabs((double)got[v] - want[v]);
                if (d > dmax) dmax = d;
                if (fabs(want[v]) > rmax) rmax = fabs(want[v]);
            }
            if (dmax / rmax > worst) worst = dmax / rmax;
        }
        printf("%s, batch %d: worst relative logit error %.2e\n", dir, batch, worst);
        assert_true(worst < 1e-4);
        spill_engine_free(e);
    }
    free(ref);
}

static void test_llama3_logits(void **s) {
    (void)s;
    check_logits(fx("hf-llama3"));
}

static void test_qwen2_logits(void **s) {
    (void)s;
    check_logits(fx("hf-qwen2"));
}

/* a copy of a fixture directory to break */
static void copy_fixture(const char *name, const char *dst) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, fx(name), dst);
    assert_int_equal(system(cmd), 0);
}

static void edit(const char *path, const char *from, const char *to) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *at = memmem(buf, n, from, strlen(from)); /* binary files too: the safetensors header */
    if (!at) fail_msg("'%s' not in %s", from, path);
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)(at - buf), f);
    fputs(to, f);
    size_t rest = n - (size_t)(at - buf) - strlen(from);
    fwrite(at + strlen(from), 1, rest, f);
    fclose(f);
}

static void expect_error(const char *dir, const char *want1, const char *want2) {
    char args[1200];
    snprintf(args, sizeof args, "-m '%s' -p hi -n 2 --temp 0", dir);
    run_result *r = run_generate(args);
    if (r->status == 0 || !strstr(r->err, want1) || (want2 && !strstr(r->err, want2)))
        fail_msg("%s: status %d, stderr: %s (wanted '%s'%s%s)", dir, r->status, r->err, want1, want2 ? " and " : "",
                 want2 ? want2 : "");
    assert_true(r->status == 1 || r->status == 2);
    assert_string_equal(r->out, "");
}

static void test_bad_directories(void **s) {
    (void)s;
    char d[128];
    snprintf(d, sizeof d, "/tmp/spill-hf-bad-%d", (int)getpid());
    char p[300];
    /* it runs as it is */
    copy_fixture("hf-llama3", d);
    char args[400];
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon' -n 4 --temp 0", d);
    assert_int_equal(run_generate(args)->status, 0);
    /* an architecture spill does not run */
    snprintf(p, sizeof p, "%s/config.json", d);
    edit(p, "LlamaForCausalLM", "GPTNeoXForCausalLM");
    expect_error(d, "GPTNeoXForCausalLM", "config.json");
    /* malformed JSON */
    copy_fixture("hf-llama3", d);
    edit(p, "\"hidden_size\": 64,", "\"hidden_size\": 64,,");
    expect_error(d, "config.json", "invalid JSON");
    /* a shape that disagrees with config.json: the tensor and the file are named */
    copy_fixture("hf-llama3", d);
    edit(p, "\"intermediate_size\": 160", "\"intermediate_size\": 128");
    expect_error(d, "mlp.gate_proj.weight", "expected");
    /* a missing tensor */
    copy_fixture("hf-llama3", d);
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    edit(p, "model.norm.weight", "model.norx.weight");
    expect_error(d, "model.norm.weight", "missing");
    /* a truncated shard */
    copy_fixture("hf-llama3", d);
    assert_int_equal(truncate(p, 300000), 0);
    expect_error(d, "model.safetensors", NULL);
    /* the weights missing altogether, or a shard the index names */
    copy_fixture("hf-llama3", d);
    unlink(p);
    expect_error(d, "model.safetensors", NULL);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", d);
    FILE *f = fopen(p, "w");
    fputs("{\"weight_map\": {\"lm_head.weight\": \"model-00001-of-00002.safetensors\"}}", f);
    fclose(f);
    expect_error(d, "model-00001-of-00002.safetensors", "missing");
    /* a tokenizer spill cannot read */
    copy_fixture("hf-llama3", d);
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    edit(p, "\"type\": \"BPE\"", "\"type\": \"Unigram\"");
    expect_error(d, "tokenizer.json", "BPE");
    /* a sliding window shorter than the context asked for */
    copy_fixture("hf-llama3", d);
    snprintf(p, sizeof p, "%s/config.json", d);
    edit(p, "LlamaForCausalLM", "MistralForCausalLM");
    edit(p, "\"vocab_size\": 400", "\"vocab_size\": 400, \"sliding_window\": 64");
    expect_error(d, "sliding window of 64 tokens", "-c/--ctx-size 64");
    snprintf(args, sizeof args, "-m '%s' -p 'Once upon' -n 4 --temp 0 -c 64", d);
    assert_int_equal(run_generate(args)->status, 0);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_llama3),
        cmocka_unit_test(test_tokenizer_qwen2),
        cmocka_unit_test(test_llama3_logits),
        cmocka_unit_test(test_qwen2_logits),
        cmocka_unit_test(test_bad_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
