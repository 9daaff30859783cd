/* stories260K end to end on the CPU: the greedy continuation independent implementations produce,
 * SentencePiece tokenization round trips, and the same tokens whether weights are mapped or copied,
 * prompts run batched or token by token, with 1 thread or 3; and with the KV cache in F16 and BF16
 * (--kv-type): the same text as F32 and the same tokens on every path, in half the cache's bytes. */
#include "engine.h"
#include "sampler.h"
#include "test_util.h"

static const char *EXPECT = ", there was a little girl named Lily. She loved to play outside in the park.";

static spill_dtype gen_kv_type = SPILL_DT_F32; /* the KV cache's elements in generate() */
static uint64_t gen_kv_bytes;                  /* the KV bytes the last generate() held at its end */

/* Greedy-generate n tokens after prompt; returns malloc'd text. */
static char *generate(int use_mmap, int batch, int threads, int n, int *ids_out) {
    spill_err err = {{0}};
    spill_mem *mem = spill_mem_create("host", &err);
    assert_non_null(mem);
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.mem = mem;
    p.use_mmap = use_mmap;
    p.ctx = 256;
    p.batch = batch;
    p.threads = threads;
    p.kv_type = gen_kv_type;
    p.quiet = 1;
    spill_engine *e;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s", err.msg);
    const spill_model *m = spill_engine_model(e);
    int *toks = NULL, nt = 0;
    assert_int_equal(spill_tokenize(&m->tok, "Once upon a time", 16, 1, 1, &toks, &nt, &err), 0);
    assert_int_equal(toks[0], m->tok.bos);
    for (int i = 0; i < nt; i += batch)
        assert_int_equal(spill_engine_forward(e, 0, toks + i, nt - i < batch ? nt - i : batch, i, &err), 0);
    spill_sampler smp;
    assert_int_equal(spill_sampler_init(&smp, m->hp.vocab, 0, 0, 1, 1, &err), 0);
    char *text = calloc(1, 4096);
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int next = spill_sampler_sample(&smp, spill_engine_logits(e));
        ids_out[i] = next;
        len += (size_t)spill_token_to_bytes(&m->tok, next, text + len, (int)(4096 - len));
        assert_int_equal(spill_engine_forward(e, 0, &next, 1, nt + i, &err), 0);
    }
    spill_mem_stats ms;
    spill_engine_stats es;
    spill_mem_get_stats(mem, &ms);
    spill_engine_get_stats(e, &es);
    gen_kv_bytes = es.kv.bytes[SPILL_TIER_HOST];
    if (use_mmap) assert_true(ms.registered[SPILL_TIER_HOST] > 1000000); /* weights read in place */
    else assert_true(ms.tier[SPILL_TIER_HOST].current > es.kv.bytes[SPILL_TIER_HOST] + 1000000); /* copies */
    assert_int_equal(es.mapped, use_mmap ? ms.registered[SPILL_TIER_HOST] : 0);
    spill_sampler_free(&smp);
    free(toks);
    spill_engine_free(e);
    spill_mem_get_stats(mem, &ms);
    assert_int_equal(ms.tier[SPILL_TIER_HOST].current, 0);
    assert_int_equal(ms.registered[SPILL_TIER_HOST], 0);
    spill_mem_free(mem);
    return text;
}

static void test_greedy_continuation(void **state) {
    (void)state;
    int ids[40];
    char *text = generate(1, 32, 2, 40, ids);
    printf("continuation: %s\n", text);
    assert_memory_equal(text, EXPECT, strlen(EXPECT));
    free(text);
}

static void test_paths_agree(void **state) {
    (void)state;
    int a[40], b[40], c[40];
    free(generate(1, 32, 2, 40, a));
    free(generate(0, 1, 1, 40, b)); /* copied weights, token by token, one thread */
    free(generate(1, 3, 3, 40, c)); /* odd batch size, three threads */
    assert_memory_equal(a, b, sizeof a);
    assert_memory_equal(a, c, sizeof a);
}

/* --kv-type f16 / bf16: stories260K's greedy text is F32's (its logits' margins are wide enough for
 * the cache's rounding: asserted over the first tokens), and at each type every path (mapped or
 * copied, batched or not, 1 or 3 threads) gives the same tokens, in half the KV bytes */
static void test_kv_types(void **state) {
    (void)state;
    int ref[40];
    gen_kv_type = SPILL_DT_F32;
    free(generate(1, 32, 2, 40, ref));
    uint64_t bytes32 = gen_kv_bytes;
    const spill_dtype types[] = {SPILL_DT_F16, SPILL_DT_BF16};
    for (int i = 0; i < 2; i++) {
        int a[40], b[40], c[40];
        gen_kv_type = types[i];
        char *text = generate(1, 32, 2, 40, a);
        printf("%s cache: %s\n", spill_kv_type_name(types[i]), text);
        assert_int_equal(gen_kv_bytes * 2, bytes32);
        free(generate(0, 1, 1, 40, b));
        free(generate(1, 3, 3, 40, c));
        assert_memory_equal(a, b, sizeof a);
        assert_memory_equal(a, c, sizeof a);
        int same = 0;
        while (same < 40 && a[same] == ref[same]) same++;
        printf("%s cache: the first %d of 40 tokens are F32's\n", spill_kv_type_name(types[i]), same);
        assert_memory_equal(text, EXPECT, strlen(EXPECT));
        assert_true(same >= 20);
        free(text);
    }
    gen_kv_type = SPILL_DT_F32;
}

/* The trace hook sees every intermediate of every layer, in order, and the last one is the logits. */
typedef struct trace_rec {
    int calls, layers_seen, last_layer_ok;
    float logits0;
    char last[32];
} trace_rec;

static void on_trace(void *ctx, const char *name, int layer, const float *x, int64_t n) {
    trace_rec *r = ctx;
    r->calls++;
    if (!strcmp(name, "l_out")) r->layers_seen = layer + 1;
    if (!strcmp(name, "result_output")) r->logits0 = x[0], r->last_layer_ok = layer == -1 && n == 512;
    snprintf(r->last, sizeof r->last, "%s", name);
}

static void test_trace_hook(void **state) {
    (void)state;
    spill_err err = {{0}};
    trace_rec r = {0};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 64;
    p.batch = 8;
    p.threads = 1;
    p.quiet = 1;
    p.trace = on_trace;
    p.trace_ctx = &r;
    spill_engine *e;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s", err.msg);
    int tok = 1, L = spill_engine_model(e)->hp.n_layers;
    assert_int_equal(spill_engine_forward(e, 0, &tok, 1, 0, &err), 0);
    /* the embedding, 13 per layer, 2 for the head */
    assert_int_equal(r.calls, 13 * L + 3);
    assert_int_equal(r.layers_seen, L);
    assert_string_equal(r.last, "result_output");
    assert_true(r.last_layer_ok);
    assert_true(r.logits0 == spill_engine_logits(e)[0]);
    spill_engine_free(e);
}

static void test_spm_round_trip(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_model m;
    if (spill_model_load(&m, stories_path(), &err)) fail_msg("%s", err.msg);
    const char *cases[] = {"Once upon a time", "Lily   and  Ben!", "x", "Zürich, 日本 🙂", "a\nb\tc", "  lead"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int *t = NULL, n = 0;
        assert_int_equal(spill_tokenize(&m.tok, cases[i], strlen(cases[i]), 1, 1, &t, &n, &err), 0);
        char buf[256];
        int len = 0;
        for (int k = 1; k < n; k++) len += spill_token_to_bytes(&m.tok, t[k], buf + len, (int)sizeof buf - len);
        /* the space prefix comes back as a leading space */
        assert_int_equal(len, (int)strlen(cases[i]) + 1);
        assert_true(buf[0] == ' ');
        assert_memory_equal(buf + 1, cases[i], strlen(cases[i]));
        free(t);
    }
    /* characters outside the 512-token vocabulary fall back to <0xXX> byte tokens */
    int *t = NULL, n = 0;
    assert_int_equal(spill_tokenize(&m.tok, "日", 3, 0, 1, &t, &n, &err), 0);
    int bytes = 0;
    for (int k = 0; k < n; k++) bytes += m.tok.types[t[k]] == SPILL_TOKTYPE_BYTE;
    assert_true(bytes >= 3);
    free(t);
    spill_model_free(&m);
}

static void test_context_full_is_an_error(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 4;
    p.batch = 4;
    p.threads = 1;
    p.quiet = 1;
    spill_engine *e;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s", err.msg);
    int toks[5] = {1, 2, 3, 4, 5};
    assert_int_equal(spill_engine_forward(e, 0, toks, 4, 0, &err), 0);
    assert_int_equal(spill_engine_forward(e, 0, toks, 1, 4, &err), -1);
    assert_non_null(strstr(err.msg, "context"));
    int bad = 100000;
    assert_int_equal(spill_engine_forward(e, 0, &bad, 1, 0, &err), -1);
    assert_non_null(strstr(err.msg, "100000"));
    spill_engine_free(e);
    p.ctx = 1 << 20; /* beyond the model's context */
    assert_int_equal(spill_engine_open(&p, &e, &err), -1);
    assert_non_null(strstr(err.msg, "--ctx-size"));
    assert_null(e);
    spill_engine_free(NULL); /* a no-op */
}

/* spill_engine_prefill: a prompt over several steps keeps the last token's logits only, and they are
 * the bits token-by-token forwarding gives; a stop flag already set runs nothing; no tokens is an error */
static void test_prefill(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 64;
    p.threads = 2;
    p.quiet = 1;
    spill_engine *a, *b;
    p.batch = 3;
    if (spill_engine_open(&p, &a, &err)) fail_msg("%s", err.msg);
    p.batch = 1;
    if (spill_engine_open(&p, &b, &err)) fail_msg("%s", err.msg);
    const spill_model *m = spill_engine_model(a);
    const char *prompt = "Once upon a time, there was a little girl named Lily";
    int *toks = NULL, nt = 0;
    assert_int_equal(spill_tokenize(&m->tok, prompt, strlen(prompt), 1, 1, &toks, &nt, &err), 0);
    assert_true(nt > 7); /* three steps or more at a batch of 3 */
    volatile sig_atomic_t stop = 1;
    assert_int_equal(spill_engine_prefill(a, 0, toks, nt, 0, &stop, &err), 0);
    assert_int_equal(spill_kv_len(spill_engine_kv(a), 0), 0); /* stopped before the first step */
    stop = 0;
    assert_int_equal(spill_engine_prefill(a, 0, toks, nt, 0, &stop, &err), 0);
    assert_int_equal(spill_kv_len(spill_engine_kv(a), 0), nt);
    assert_int_equal(spill_engine_n_outputs(a), 1);
    for (int i = 0; i < nt; i++) assert_int_equal(spill_engine_forward(b, 0, toks + i, 1, i, &err), 0);
    assert_memory_equal(spill_engine_logits(a), spill_engine_logits(b), sizeof(float) * (size_t)m->hp.vocab);
    assert_int_equal(spill_engine_prefill(a, 0, toks, 0, nt, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "prefill"));
    free(toks);
    spill_engine_free(a);
    spill_engine_free(b);
}

int main(void) {
    require_file(stories_path(), "the small test models live in tests/models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_continuation),
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_kv_types),
        cmocka_unit_test(test_spm_round_trip),
        cmocka_unit_test(test_trace_hook),
        cmocka_unit_test(test_context_full_is_an_error),
        cmocka_unit_test(test_prefill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
