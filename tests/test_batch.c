/* Batched steps (spill_engine_step): tokens of several sequences in one forward step give each
 * sequence exactly what it gets alone — the same logits bit for bit, so the same greedy tokens —
 * whether the batch holds decode tokens of many sequences, a prefill chunk beside decode tokens, or
 * asks for every token's logits. Bad batches are refused with what is wrong. */
#include "engine.h"
#include "test_util.h"

enum { N_SEQ = 4, N_GEN = 12, MAXP = 32 };

static const char *prompts[N_SEQ] = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                                     "One day, a big bird"};

typedef struct run {
    int prompt[MAXP], np;
    int tokens[N_GEN];
    float *logits; /* (N_GEN, vocab): the logits each generated token was picked from */
} run;

static spill_engine *open_kv(int n_seqs, int batch, int kv_block, spill_dtype kv_type) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 128;
    p.batch = batch;
    p.n_seqs = n_seqs;
    p.kv_block = kv_block;
    p.kv_type = kv_type;
    p.threads = 2;
    p.quiet = 1;
    spill_engine *e;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s", err.msg);
    return e;
}

static spill_engine *open_n(int n_seqs, int batch, int kv_block) { return open_kv(n_seqs, batch, kv_block, SPILL_DT_F32); }

/* each prompt alone, on an engine of its own */
static void alone(run *r, int V) {
    spill_err err = {{0}};
    for (int i = 0; i < N_SEQ; i++) {
        spill_engine *e = open_n(1, 32, 4);
        const spill_model *m = spill_engine_model(e);
        int *t, n;
        assert_int_equal(spill_tokenize(&m->tok, prompts[i], strlen(prompts[i]), 1, 1, &t, &n, &err), 0);
        assert_true(n <= MAXP);
        memcpy(r[i].prompt, t, sizeof(int) * (size_t)n);
        r[i].np = n;
        free(t);
        assert_int_equal(spill_engine_forward(e, 0, r[i].prompt, n, 0, &err), 0);
        r[i].logits = malloc(sizeof(float) * (size_t)V * N_GEN);
        for (int g = 0; g < N_GEN; g++) {
            const float *l = spill_engine_logits(e);
            memcpy(r[i].logits + (size_t)g * V, l, sizeof(float) * (size_t)V);
            r[i].tokens[g] = argmax_logit(l, V);
            assert_int_equal(spill_engine_forward(e, 0, &r[i].tokens[g], 1, n + g, &err), 0);
        }
        spill_engine_free(e);
    }
}

static void test_decode_batches(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_engine *e = open_n(N_SEQ, 64, 4);
    int V = spill_engine_model(e)->hp.vocab;
    run r[N_SEQ];
    alone(r, V);
    spill_kv *kv = spill_engine_kv(e);
    for (int i = 1; i < N_SEQ; i++) assert_int_equal(spill_kv_seq_open(kv, i, &err), 0);
    /* every prompt in one step, each one's last token kept */
    int tok[64], seq[64], pos[64], n = 0;
    uint8_t out[64] = {0};
    for (int i = 0; i < N_SEQ; i++)
        for (int k = 0; k < r[i].np; k++) {
            tok[n] = r[i].prompt[k], seq[n] = i, pos[n] = k, out[n] = k == r[i].np - 1;
            n++;
        }
    spill_batch b = {n, tok, seq, pos, out, NULL, 0};
    assert_int_equal(spill_engine_step(e, &b, &err), 0);
    assert_int_equal(spill_engine_n_outputs(e), N_SEQ);
    /* then one token of every sequence per step */
    for (int g = 0; g < N_GEN; g++) {
        int next[N_SEQ];
        for (int i = 0; i < N_SEQ; i++) {
            const float *l = spill_engine_logits_at(e, i);
            assert_memory_equal(l, r[i].logits + (size_t)g * V, sizeof(float) * (size_t)V);
            next[i] = argmax_logit(l, V);
            assert_int_equal(next[i], r[i].tokens[g]);
        }
        for (int i = 0; i < N_SEQ; i++) tok[i] = next[i], seq[i] = i, pos[i] = r[i].np + g, out[i] = 1;
        spill_batch d = {N_SEQ, tok, seq, pos, out, NULL, 0};
        assert_int_equal(spill_engine_step(e, &d, &err), 0);
    }
    printf("%d sequences decoded together: the logits of each, bit for bit, as alone\n", N_SEQ);
    spill_engine_free(e);
    for (int i = 0; i < N_SEQ; i++) free(r[i].logits);
}

/* a prompt prefilled in chunks while another sequence decodes in the same steps */
static void test_prefill_beside_decode(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_engine *e = open_n(2, 8, 4);
    int V = spill_engine_model(e)->hp.vocab;
    run r[N_SEQ];
    alone(r, V);
    spill_kv *kv = spill_engine_kv(e);
    assert_int_equal(spill_kv_seq_open(kv, 1, &err), 0);
    /* sequence 0: its prompt alone first */
    assert_int_equal(spill_engine_forward(e, 0, r[0].prompt, r[0].np, 0, &err), 0);
    int g0 = 0, done1 = 0, g1 = 0, next0 = argmax_logit(spill_engine_logits(e), V), next1 = -1;
    while (g0 < N_GEN - 1 || g1 < N_GEN - 1) {
        int tok[8], seq[8], pos[8], n = 0;
        uint8_t out[8] = {0};
        if (g0 < N_GEN - 1) {
            assert_int_equal(next0, r[0].tokens[g0]);
            tok[n] = next0, seq[n] = 0, pos[n] = r[0].np + g0, out[n] = 1, n++;
        }
        if (done1 < r[2].np) { /* sequence 1 takes prompt 2 in chunks of up to 5 tokens */
            int c = r[2].np - done1 < 5 ? r[2].np - done1 : 5;
            for (int k = 0; k < c; k++) tok[n] = r[2].prompt[done1 + k], seq[n] = 1, pos[n] = done1 + k, n++;
            out[n - 1] = done1 + c == r[2].np;
            done1 += c;
        } else if (g1 < N_GEN - 1) {
            assert_int_equal(next1, r[2].tokens[g1]);
            tok[n] = next1, seq[n] = 1, pos[n] = r[2].np + g1, out[n] = 1, n++;
            g1++;
        }
        spill_batch b = {n, tok, seq, pos, out, NULL, 0};
        assert_int_equal(spill_engine_step(e, &b, &err), 0);
        int o = 0;
        if (g0 < N_GEN - 1) next0 = argmax_logit(spill_engine_logits_at(e, o++), V), g0++;
        if (o < spill_engine_n_outputs(e)) next1 = argmax_logit(spill_engine_logits_at(e, o), V);
    }
    assert_int_equal(next0, r[0].tokens[N_GEN - 1]);
    assert_int_equal(next1, r[2].tokens[N_GEN - 1]);
    spill_engine_free(e);
    for (int i = 0; i < N_SEQ; i++) free(r[i].logits);
}

/* every token's logits from one step equal each prefix's last logits, for every KV cache type, across
   KV blocks, and whatever the attention's tiling (runtime/forward.c: SPILL_ATT_ROWS query rows per unit;
   stories260K has 2 query heads per KV head: 1 splits a group across units, 3 makes tiles of one token
   and 5 of two; by default a unit takes the whole prompt, over 8 query rows: two tiles of the products
   at once) */
static void all_outputs(spill_dtype kv_type, int kv_block, const char *att_rows) {
    spill_err err = {{0}};
    if (att_rows)
        setenv("SPILL_ATT_ROWS", att_rows, 1);
    else
        unsetenv("SPILL_ATT_ROWS");
    spill_engine *e = open_kv(1, 32, kv_block, kv_type), *ref = open_kv(1, 32, kv_block, kv_type);
    unsetenv("SPILL_ATT_ROWS");
    const spill_model *m = spill_engine_model(e);
    int V = m->hp.vocab, *t, n;
    assert_int_equal(spill_tokenize(&m->tok, prompts[2], strlen(prompts[2]), 1, 1, &t, &n, &err), 0);
    assert_true(n > 5);
    int seq[MAXP] = {0}, pos[MAXP];
    uint8_t out[MAXP];
    for (int i = 0; i < n; i++) pos[i] = i, out[i] = 1;
    spill_batch b = {n, t, seq, pos, out, NULL, 0};
    assert_int_equal(spill_engine_step(e, &b, &err), 0);
    assert_int_equal(spill_engine_n_outputs(e), n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(spill_engine_forward(ref, 0, &t[i], 1, i, &err), 0);
        assert_memory_equal(spill_engine_logits_at(e, i), spill_engine_logits(ref), sizeof(float) * (size_t)V);
    }
    free(t);
    spill_engine_free(e);
    spill_engine_free(ref);
}

static void test_all_outputs(void **s) {
    (void)s;
    spill_dtype kv[] = {SPILL_DT_F32, SPILL_DT_F16, SPILL_DT_BF16};
    const char *rows[] = {NULL, "1", "3", "5"};
    for (int k = 0; k < 3; k++)
        for (int r = 0; r < 4; r++)
            for (int blk = 0; blk < 2; blk++) all_outputs(kv[k], blk ? 4 : 0, rows[r]);
}

/* A context past one KV block and past the 64 rows a 16-bit cache widens at a time (runtime/forward.c
   ATT_WIDE; within a block of 128): 100 positions fed in steps of up to 32 tokens (queries in tiles,
   every output kept) give each position the logits a token-by-token run gives it, for every KV cache
   type and blocks of 64 and 128 positions */
static void test_long_context(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_dtype kv[] = {SPILL_DT_F32, SPILL_DT_F16, SPILL_DT_BF16};
    enum { N = 100, STEP = 32 };
    for (int k = 0; k < 6; k++) {
        int blk = k < 3 ? 64 : 128;
        spill_engine *e = open_kv(1, STEP, blk, kv[k % 3]), *ref = open_kv(1, STEP, blk, kv[k % 3]);
        int V = spill_engine_model(e)->hp.vocab, tok[N], seq[STEP] = {0}, pos[STEP];
        uint8_t out[STEP];
        for (int i = 0; i < N; i++) tok[i] = 1 + (i * 37) % (V - 1);
        int checked = 0;
        for (int t0 = 0; t0 < N; t0 += STEP) {
            int n = N - t0 < STEP ? N - t0 : STEP;
            for (int i = 0; i < n; i++) pos[i] = t0 + i, out[i] = 1;
            spill_batch b = {n, tok + t0, seq, pos, out, NULL, 0};
            assert_int_equal(spill_engine_step(e, &b, &err), 0);
            for (int i = 0; i < n; i++) {
                assert_int_equal(spill_engine_forward(ref, 0, &tok[t0 + i], 1, t0 + i, &err), 0);
                assert_memory_equal(spill_engine_logits_at(e, i), spill_engine_logits(ref), sizeof(float) * (size_t)V);
                checked++;
            }
        }
        assert_int_equal(checked, N);
        spill_engine_free(e);
        spill_engine_free(ref);
    }
}

static void test_bad_batches(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_engine *e = open_n(3, 8, 0);
    assert_int_equal(spill_kv_seq_open(spill_engine_kv(e), 1, &err), 0);
    struct {
        int n, tok[4], seq[4], pos[4];
        const char *expect;
    } cases[] = {
        {2, {1, 2}, {0, 0}, {0, 2}, "consecutive"},
        {3, {1, 2, 3}, {0, 1, 0}, {0, 0, 1}, "twice"},
        {1, {1}, {2}, {0}, "not open"},
        {1, {1}, {0}, {3}, "cannot start at 3"},
        {1, {99999}, {0}, {0}, "99999"},
        {1, {1}, {0}, {500}, "context is full"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        spill_batch b = {cases[i].n, cases[i].tok, cases[i].seq, cases[i].pos, NULL, NULL, 0};
        assert_int_equal(spill_engine_step(e, &b, &err), -1);
        if (!strstr(err.msg, cases[i].expect)) fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, cases[i].expect);
    }
    spill_engine_free(e);
}

/* the KV cache's prefix fork and truncation: a second sequence reuses the first's prompt blocks */
static void test_prefix_fork(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_engine *e = open_n(2, 32, 4);
    int V = spill_engine_model(e)->hp.vocab;
    run r[N_SEQ];
    alone(r, V);
    spill_kv *kv = spill_engine_kv(e);
    assert_int_equal(spill_engine_forward(e, 0, r[0].prompt, r[0].np, 0, &err), 0);
    /* sequence 1 starts from sequence 0's whole prompt but its last token, and runs that token itself */
    int keep = r[0].np - 1;
    assert_int_equal(spill_kv_fork_prefix(kv, 0, 1, keep, &err), 0);
    assert_int_equal(spill_kv_len(kv, 1), keep);
    assert_int_equal(spill_engine_forward(e, 1, &r[0].prompt[keep], 1, keep, &err), 0);
    assert_memory_equal(spill_engine_logits(e), r[0].logits, sizeof(float) * (size_t)V);
    /* truncating sequence 0 back to its prompt and decoding again gives the same first token */
    assert_int_equal(spill_engine_forward(e, 0, &r[0].tokens[0], 1, r[0].np, &err), 0);
    assert_int_equal(spill_kv_truncate(kv, 0, r[0].np - 1, &err), 0);
    assert_int_equal(spill_engine_forward(e, 0, &r[0].prompt[r[0].np - 1], 1, r[0].np - 1, &err), 0);
    assert_memory_equal(spill_engine_logits(e), r[0].logits, sizeof(float) * (size_t)V);
    assert_int_equal(spill_kv_truncate(kv, 0, 99, &err), -1);
    spill_kv_release(kv, 1);
    assert_true(spill_kv_blocks_free(kv) > 0);
    spill_engine_free(e);
    for (int i = 0; i < N_SEQ; i++) free(r[i].logits);
}

int main(void) {
    require_file(stories_path(), "the small test models live in tests/models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_batches),  cmocka_unit_test(test_prefill_beside_decode),
        cmocka_unit_test(test_all_outputs),     cmocka_unit_test(test_bad_batches), cmocka_unit_test(test_long_context),
        cmocka_unit_test(test_prefix_fork),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
