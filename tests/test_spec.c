/* Self-speculative decoding (runtime/spec.c).
 *  - greedy: the tokens are plain greedy decoding's, on every test model (stories260K, the tiny
 *    Llama-3 and Qwen2 Hugging Face fixtures, SmolLM2 when fetched) and every policy (host, pin and
 *    stream at budgets where the ring turns), for several skip sets and k, and with a draft that
 *    proposes from three quarters of the vocabulary (--draft-vocab);
 *  - a step with spill_batch.head_rows: the kept rows' logits are the whole head's, bit for bit, and
 *    the others -inf;
 *  - sampling: the first two tokens' joint distribution over many seeded runs matches the model's
 *    exact one (computed by plain steps) by a chi-square test, at three sampler settings and k, one
 *    with a draft vocabulary of three quarters of the tokens (whose q gives the rest no mass); the same test
 *    refuses the draft's own proposals, so it can tell;
 *  - the draft really skips: a streamed skipped layer is not fetched (bytes read per step), and on
 *    the CPU a draft reads streamed layers in place, copying nothing into the ring;
 *  - calibration: the per-layer similarities are in [-1, 1], written beside the model once and read
 *    back; the choice keeps the first and last layers; bad --draft-skip values are refused. */
#include <math.h>

#include "platform.h"
#include "spec.h"
#include "test_util.h"

enum { N_GEN = 40, MAXP = 64 };

typedef struct setup {
    const char *model, *policy, *profile, *budget;
} setup;

static spill_engine *open_setup(const setup *s, int batch, int threads, spill_profile *prof) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = s->model;
    p.ctx = 256;
    p.batch = batch;
    p.threads = threads;
    p.quiet = 1;
    p.policy = s->policy;
    if (s->profile) {
        if (spill_profile_named(s->profile, prof, NULL, 0, &err)) fail_msg("%s", err.msg);
        p.profile = prof;
    }
    if (s->budget && spill_parse_size(s->budget, &p.hbm_budget)) fail_msg("bad budget %s", s->budget);
    spill_engine *e = NULL;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s (%s): %s", s->model, s->policy ? s->policy : "default", err.msg);
    return e;
}

static int prompt_of(spill_engine *e, const char *text, int *out) {
    spill_err err = {{0}};
    int *t = NULL, n = 0;
    assert_int_equal(spill_tokenize(&spill_engine_model(e)->tok, text, strlen(text), 1, 0, &t, &n, &err), 0);
    assert_true(n > 0 && n <= MAXP);
    memcpy(out, t, sizeof(int) * (size_t)n);
    free(t);
    return n;
}

static void plain_greedy(spill_engine *e, const int *prompt, int np, int *out) {
    spill_err err = {{0}};
    int V = spill_engine_model(e)->hp.vocab;
    if (spill_engine_forward(e, 0, prompt, np, 0, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < N_GEN; i++) {
        out[i] = argmax_logit(spill_engine_logits(e), V);
        if (i + 1 < N_GEN) assert_int_equal(spill_engine_forward(e, 0, &out[i], 1, np + i, &err), 0);
    }
}

/* the prompt but its last token, then rounds from the last prompt token */
static void spec_greedy(spill_engine *e, const int *prompt, int np, const uint8_t *skip, int k, int draft_vocab, int *out,
                        spill_spec_stats *st) {
    spill_err err = {{0}};
    spill_sampler smp;
    spill_spec sp;
    assert_int_equal(spill_sampler_init(&smp, spill_engine_model(e)->hp.vocab, 0, 0, 1, 1, &err), 0);
    if (spill_spec_init(&sp, e, 0, skip, k, draft_vocab, &err)) fail_msg("%s", err.msg);
    if (np > 1) assert_int_equal(spill_engine_forward(e, 0, prompt, np - 1, 0, &err), 0);
    int last = prompt[np - 1], pos = np - 1, got = 0, buf[64];
    while (got < N_GEN) {
        int n = spill_spec_round(&sp, &smp, last, pos, buf, &err);
        if (n < 1) fail_msg("%s", err.msg);
        assert_int_equal(spill_kv_len(spill_engine_kv(e), 0), pos + n);
        for (int i = 0; i < n && got < N_GEN; i++) out[got++] = buf[i];
        last = buf[n - 1];
        pos += n;
    }
    *st = sp.st;
    spill_spec_free(&sp);
    spill_sampler_free(&smp);
}

static void greedy_identical(const setup *s, const char *prompt, const uint8_t *const *skips, int n_skips) {
    spill_profile prof;
    int ref[N_GEN], got[N_GEN], tp[MAXP];
    spill_engine *e = open_setup(s, 32, 2, &prof);
    int np = prompt_of(e, prompt, tp);
    plain_greedy(e, tp, np, ref);
    spill_engine_free(e);
    /* k, and the draft's vocabulary in quarters of the model's (0: all of it; stories260K's first 259 ids
       are control and byte tokens, so three quarters leave its draft something to propose) */
    const int ks[] = {1, 3, 6, 3}, quarters[] = {0, 0, 0, 3};
    for (int si = 0; si < n_skips; si++)
        for (int ki = 0; ki < 4; ki++) {
            e = open_setup(s, 32, 2, &prof);
            int dv = spill_engine_model(e)->hp.vocab / 4 * quarters[ki];
            spill_spec_stats st;
            spec_greedy(e, tp, np, skips[si], ks[ki], dv, got, &st);
            spill_engine_free(e);
            if (memcmp(got, ref, sizeof ref)) {
                fprintf(stderr, "%s %s %s skip set %d k %d draft vocabulary %d:\n", s->model, s->policy ? s->policy : "-",
                        s->budget ? s->budget : "", si, ks[ki], dv);
                for (int i = 0; i < N_GEN; i++) fprintf(stderr, " %d/%d", got[i], ref[i]);
                fprintf(stderr, "\n");
                fail();
            }
            assert_true(st.produced >= N_GEN && st.accepted <= st.drafted);
            printf("%s %s%s%s skip set %d k %d draft vocabulary %d: the same %d tokens, %llu of %llu proposals kept\n",
                   s->model, s->policy ? s->policy : "default", s->budget ? " " : "", s->budget ? s->budget : "", si, ks[ki],
                   dv, N_GEN, (unsigned long long)st.accepted, (unsigned long long)st.drafted);
        }
}

static void test_greedy_stories(void **state) {
    (void)state;
    static const uint8_t a[5] = {0, 0, 1, 0, 0}, b[5] = {0, 1, 1, 1, 0}, c[5] = {0, 1, 0, 1, 0};
    const uint8_t *skips[] = {a, b, c};
    const setup setups[] = {
        {stories_path(), "host", NULL, NULL},
        {stories_path(), "pin", "h100-pcie", "64M"},
        {stories_path(), "pin", "h100-pcie", "5M"},
        {stories_path(), "stream", "h100-pcie", "8M"},
        {stories_path(), "fault", "gh200-96", "7M"},
    };
    for (size_t i = 0; i < sizeof setups / sizeof *setups; i++) greedy_identical(&setups[i], "Once upon a time", skips, 3);
}

static void test_greedy_hf(void **state) {
    (void)state;
    const char *dirs[] = {SPILL_FIXTURES_DIR "/hf-llama3", SPILL_FIXTURES_DIR "/hf-qwen2"};
    for (int d = 0; d < 2; d++) {
        spill_profile prof;
        setup s0 = {dirs[d], "host", NULL, NULL};
        spill_engine *e = open_setup(&s0, 32, 2, &prof);
        int L = spill_engine_model(e)->hp.n_layers;
        spill_engine_free(e);
        assert_true(L >= 2);
        uint8_t one[64] = {0}, most[64] = {0};
        one[L / 2] = 1;
        for (int l = 1; l < L; l++) most[l] = 1; /* everything but the first */
        const uint8_t *skips[] = {one, most};
        int n_sets = L > 2 ? 2 : 1; /* with two layers both sets are {1} */
        greedy_identical(&s0, "Hello, my name is", skips, n_sets);
        /* a ring turning through a budget of the 2 MiB chunks' rounding and a little */
        setup s1 = {dirs[d], "stream", "h100-pcie", "8M"};
        greedy_identical(&s1, "Hello, my name is", skips, n_sets);
    }
}

static void test_greedy_smollm2(void **state) {
    (void)state;
    const char *m = smollm_path();
    require_file(m, "scripts/fetch-model.sh fetches it");
    uint8_t a[64] = {0}, b[64] = {0};
    for (int l = 10; l < 20; l++) a[l] = 1;
    for (int l = 1; l < 29; l += 2) b[l] = 1;
    const uint8_t *skips[] = {a, b};
    const setup setups[] = {
        {m, "host", NULL, NULL},
        {m, "stream", "h100-pcie", "24M"},
    };
    for (size_t i = 0; i < sizeof setups / sizeof *setups; i++) greedy_identical(&setups[i], "The capital of France is", skips, 2);
}

/* ---- sampling: the joint law of the first two tokens ---- */

typedef struct law {
    int V;
    double *joint; /* (V, V) */
} law;

/* the model's exact law of (x1, x2) after the prompt, by plain steps */
static void exact_law(spill_engine *e, const int *tp, int np, spill_sampler *smp, law *out) {
    spill_err err = {{0}};
    int V = out->V = spill_engine_model(e)->hp.vocab;
    out->joint = calloc((size_t)V * (size_t)V, sizeof(double));
    float *p1 = malloc(sizeof(float) * (size_t)V), *p2 = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(spill_kv_truncate(spill_engine_kv(e), 0, 0, &err), 0);
    assert_int_equal(spill_engine_forward(e, 0, tp, np, 0, &err), 0);
    spill_sampler_probs(smp, spill_engine_logits(e), p1);
    for (int x1 = 0; x1 < V; x1++) {
        if (p1[x1] < 1e-7f) continue;
        assert_int_equal(spill_kv_truncate(spill_engine_kv(e), 0, np, &err), 0);
        assert_int_equal(spill_engine_forward(e, 0, &x1, 1, np, &err), 0);
        spill_sampler_probs(smp, spill_engine_logits(e), p2);
        for (int x2 = 0; x2 < V; x2++) out->joint[(size_t)x1 * V + x2] = (double)p1[x1] * p2[x2];
    }
    free(p1);
    free(p2);
}

/* Chi-square statistic of counts against the law over N draws (bins expected >= 5, the rest pooled),
 * and the critical value at p = 1e-4 (Wilson-Hilferty). */
static double chi_square(const law *lw, const int *count, int N, double *critical) {
    size_t VV = (size_t)lw->V * (size_t)lw->V;
    double stat = 0, rest_e = 0, rest_o = 0;
    int bins = 0;
    for (size_t i = 0; i < VV; i++) {
        double ex = lw->joint[i] * N;
        if (ex >= 5) {
            stat += (count[i] - ex) * (count[i] - ex) / ex;
            bins++;
        } else {
            rest_e += ex;
            rest_o += count[i];
        }
    }
    if (rest_e > 0) {
        stat += (rest_o - rest_e) * (rest_o - rest_e) / rest_e;
        bins++;
    }
    double df = bins - 1, z = 3.719;
    double c = 1 - 2 / (9 * df) + z * sqrt(2 / (9 * df));
    *critical = df * c * c * c;
    return stat;
}

static void sample_pairs(spill_engine *e, const int *tp, int np, const uint8_t *skip, int k, int draft_vocab, float temp,
                         int top_k, float top_p, int N, int draft_only, int *count, spill_spec_stats *st) {
    spill_err err = {{0}};
    int V = spill_engine_model(e)->hp.vocab;
    spill_sampler smp;
    spill_spec sp;
    assert_int_equal(spill_sampler_init(&smp, V, temp, top_k, top_p, 12345, &err), 0);
    if (spill_spec_init(&sp, e, 0, skip, k, draft_vocab, &err)) fail_msg("%s", err.msg);
    assert_int_equal(spill_kv_truncate(spill_engine_kv(e), 0, 0, &err), 0);
    assert_int_equal(spill_engine_forward(e, 0, tp, np - 1, 0, &err), 0);
    float *q = malloc(sizeof(float) * (size_t)V);
    for (int r = 0; r < N; r++) {
        assert_int_equal(spill_kv_truncate(spill_engine_kv(e), 0, np - 1, &err), 0);
        int x[2], got = 0, buf[16], last = tp[np - 1], pos = np - 1;
        while (got < 2) {
            if (draft_only) { /* the draft's own proposal, kept unchecked: what the test must refuse */
                spill_batch b = {.n = 1, .token = &last, .seq = &sp.seq, .pos = &pos, .skip = skip, .head_rows = draft_vocab};
                assert_int_equal(spill_engine_step(e, &b, &err), 0);
                spill_sampler_probs(&smp, spill_engine_logits(e), q);
                buf[0] = spill_sampler_draw(&smp, q);
                x[got++] = buf[0];
                last = buf[0];
                pos++;
                continue;
            }
            int n = spill_spec_round(&sp, &smp, last, pos, buf, &err);
            if (n < 1) fail_msg("%s", err.msg);
            for (int i = 0; i < n && got < 2; i++) x[got++] = buf[i];
            last = buf[n - 1];
            pos += n;
        }
        count[(size_t)x[0] * V + x[1]]++;
    }
    free(q);
    *st = sp.st;
    spill_spec_free(&sp);
    spill_sampler_free(&smp);
}

static void test_sampling_exact(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_profile prof;
    setup s = {stories_path(), "host", NULL, NULL};
    spill_engine *e = open_setup(&s, 16, 1, &prof);
    int tp[MAXP], np = prompt_of(e, "Once upon a time, there was a", tp), V = spill_engine_model(e)->hp.vocab;
    static const uint8_t skip[5] = {0, 1, 0, 1, 0};
    /* the last: the draft proposes from the first three quarters of the vocabulary only (stories260K's
       first 259 ids are control and byte tokens, so a smaller one would leave it nothing likely) */
    const struct { float temp; int top_k; float top_p; int k, quarters; } cases[] = {
        {1.0f, 0, 1.0f, 1, 4}, {0.8f, 20, 0.9f, 3, 4}, {1.0f, 0, 1.0f, 2, 3}};
    const int N = 12000;
    int *count = malloc(sizeof(int) * (size_t)V * (size_t)V);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        spill_sampler smp;
        assert_int_equal(spill_sampler_init(&smp, V, cases[c].temp, cases[c].top_k, cases[c].top_p, 1, &err), 0);
        law lw;
        exact_law(e, tp, np, &smp, &lw);
        spill_sampler_free(&smp);
        spill_spec_stats st;
        double crit;
        int dv = cases[c].quarters < 4 ? V / 4 * cases[c].quarters : 0;
        memset(count, 0, sizeof(int) * (size_t)V * (size_t)V);
        sample_pairs(e, tp, np, skip, cases[c].k, dv, cases[c].temp, cases[c].top_k, cases[c].top_p, N, 0, count, &st);
        double stat = chi_square(&lw, count, N, &crit);
        printf("temp %.1f top-k %d top-p %.1f k %d draft vocabulary %d: chi-square %.1f (critical %.1f at p=1e-4), %llu of %llu "
               "proposals kept\n", cases[c].temp, cases[c].top_k, cases[c].top_p, cases[c].k, dv, stat, crit,
               (unsigned long long)st.accepted, (unsigned long long)st.drafted);
        if (dv) { /* tokens past the draft's vocabulary came out (from refusals), as the law says they must */
            double beyond = 0;
            int seen = 0;
            for (int x1 = 0; x1 < V; x1++)
                for (int x2 = 0; x2 < V; x2++)
                    if (x1 >= dv || x2 >= dv) beyond += lw.joint[(size_t)x1 * V + x2], seen += count[(size_t)x1 * V + x2];
            printf("  pairs with a token past it: %d of %d, the law says %.1f\n", seen, N, beyond * N);
            assert_true(beyond * N > 50 && seen > 0);
        }
        assert_true(stat < crit);
        /* the rule was exercised both ways */
        assert_true(st.accepted > 0 && st.accepted < st.drafted);
        /* power: the draft's own proposals are refused by the same test */
        memset(count, 0, sizeof(int) * (size_t)V * (size_t)V);
        sample_pairs(e, tp, np, skip, cases[c].k, dv, cases[c].temp, cases[c].top_k, cases[c].top_p, N, 1, count, &st);
        double stat_d = chi_square(&lw, count, N, &crit);
        printf("  the draft alone: chi-square %.1f\n", stat_d);
        assert_true(stat_d > crit);
        free(lw.joint);
    }
    free(count);
    spill_engine_free(e);
}

/* A streamed layer the draft skips is not fetched: draft steps read fewer bytes than full ones. On
 * the CPU a draft copies nothing into the ring at all: it reads the layers it runs where they live
 * (host memory), and the full steps after it find the ring as the last full step left it. */
static void test_skip_reads_less(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_profile prof;
    setup s = {stories_path(), "stream", "h100-pcie", "8M"};
    spill_engine *e = open_setup(&s, 16, 1, &prof);
    int L = spill_engine_model(e)->hp.n_layers, tok = 1;
    uint8_t skip[8] = {0};
    skip[1] = skip[2] = skip[3] = 1;
    spill_engine_stats a, b, c;
    int pos = 0;
    spill_batch full = {.n = 1, .token = &tok, .seq = &(int){0}, .pos = &pos};
    if (spill_engine_step(e, &full, &err)) fail_msg("%s", err.msg);
    spill_engine_get_stats(e, &a);
    pos = 1;
    spill_batch draft = full;
    draft.skip = skip;
    for (int i = 0; i < 4; i++, pos++) assert_int_equal(spill_engine_step(e, &draft, &err), 0);
    spill_engine_get_stats(e, &b);
    for (int i = 0; i < 4; i++, pos++) assert_int_equal(spill_engine_step(e, &full, &err), 0);
    spill_engine_get_stats(e, &c);
    uint64_t rd = b.read[SPILL_TIER_HBM] - a.read[SPILL_TIER_HBM], rf = c.read[SPILL_TIER_HBM] - b.read[SPILL_TIER_HBM];
    uint64_t pd = b.prefetched - a.prefetched, pf = c.prefetched - b.prefetched;
    printf("4 draft steps (%d of %d layers): %llu bytes read, %llu copied into the ring; 4 full steps: %llu and %llu\n", L - 3,
           L, (unsigned long long)rd, (unsigned long long)pd, (unsigned long long)rf, (unsigned long long)pf);
    uint64_t hd = b.read[SPILL_TIER_HOST] - a.read[SPILL_TIER_HOST], hf = c.read[SPILL_TIER_HOST] - b.read[SPILL_TIER_HOST];
    printf("  from host memory: %llu bytes in the drafts, %llu in the full steps\n", (unsigned long long)hd,
           (unsigned long long)hf);
    assert_true(rd + hd < rf + hf);
    assert_int_equal(pd, 0);
    assert_true(pf > 0);
    assert_true(hd > hf); /* the drafts' streamed layers came from their homes */
    /* and the full steps after drafts still give plain decoding's logits: checked by the greedy tests */
    spill_engine_free(e);
}

static void test_calibration(void **state) {
    (void)state;
    spill_err err = {{0}};
    char dir[] = "/tmp/spill-spec-XXXXXX", model[256], path[300];
    assert_non_null(mkdtemp(dir));
    snprintf(model, sizeof model, "%s/stories.gguf", dir);
    char *abs = realpath(stories_path(), NULL);
    assert_non_null(abs);
    assert_int_equal(symlink(abs, model), 0);
    free(abs);
    spill_engine_params p = spill_engine_defaults();
    p.model = model;
    p.threads = 1;
    double cos[5], back[5];
    assert_int_equal(spill_draft_calibrate(&p, cos, 5, &err), 0);
    for (int l = 0; l < 5; l++) {
        printf("layer %d: cosine %.4f\n", l, cos[l]);
        assert_true(cos[l] >= -1 && cos[l] <= 1 && cos[l] != 0);
    }
    spill_draft_path(model, path, sizeof path);
    assert_non_null(strstr(path, "stories.gguf.spill-draft.json"));
    assert_int_equal(spill_draft_load(path, model, back, 5, &err), 0); /* not there yet */
    assert_int_equal(spill_draft_save(path, model, cos, 5, &err), 0);
    assert_int_equal(spill_draft_load(path, model, back, 5, &err), 1);
    for (int l = 0; l < 5; l++) assert_true(fabs(back[l] - cos[l]) < 1e-8);
    /* written for another shape: stale, not an error */
    assert_int_equal(spill_draft_load(path, model, back, 6, &err), 0);
    assert_non_null(strstr(err.msg, "another model"));
    /* malformed: an error naming the file */
    FILE *f = fopen(path, "w");
    fputs("{\"n_layers\": 5, \"model_bytes\": 1, \"cosine\": [1,2", f);
    fclose(f);
    assert_int_equal(spill_draft_load(path, model, back, 5, &err), -1);
    assert_non_null(strstr(err.msg, path));
    /* the choice: the most similar layers, never the first or last */
    double c2[6] = {0.99, 0.5, 0.9, 0.7, 0.8, 0.99};
    uint8_t skip[6];
    assert_int_equal(spill_draft_choose(c2, 6, 2, skip, &err), 0);
    const uint8_t want[6] = {0, 0, 1, 0, 1, 0};
    assert_memory_equal(skip, want, 6);
    assert_int_equal(spill_draft_choose(c2, 6, 5, skip, &err), -1);
    assert_non_null(strstr(err.msg, "1..4"));
    unlink(path);
    unlink(model);
    rmdir(dir);
}

static void test_parse(void **state) {
    (void)state;
    spill_err err = {{0}};
    uint8_t skip[10];
    int count;
    assert_int_equal(spill_draft_parse("4", 10, skip, &count, &err), 0);
    assert_int_equal(count, 4);
    assert_int_equal(spill_draft_parse("2,5-7", 10, skip, &count, &err), 0);
    assert_int_equal(count, -1);
    const uint8_t want[10] = {0, 0, 1, 0, 0, 1, 1, 1, 0, 0};
    assert_memory_equal(skip, want, 10);
    assert_int_equal(spill_draft_parse("7,", 10, skip, &count, &err), 0);
    assert_int_equal(skip[7] + skip[6] + skip[8], 1);
    const char *bad[] = {"", "0", "9", "x", "3,x", "5-", "7-3", "0-9", "12,", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(spill_draft_parse(bad[i], 10, skip, &count, &err), -1);
        assert_non_null(strstr(err.msg, "--draft-skip"));
    }
    /* k must leave room in the batch */
    spill_profile prof;
    setup s = {stories_path(), "host", NULL, NULL};
    spill_engine *e = open_setup(&s, 4, 1, &prof);
    spill_spec sp;
    uint8_t sk[5] = {0, 1, 0, 0, 0}, none[5] = {0};
    assert_int_equal(spill_spec_init(&sp, e, 0, sk, 4, 0, &err), -1);
    assert_non_null(strstr(err.msg, "--draft-k 4"));
    assert_int_equal(spill_spec_init(&sp, e, 0, none, 2, 0, &err), -1);
    assert_non_null(strstr(err.msg, "skips no layer"));
    int V = spill_engine_model(e)->hp.vocab;
    assert_int_equal(spill_spec_init(&sp, e, 0, sk, 2, V + 1, &err), -1);
    assert_non_null(strstr(err.msg, "--draft-vocab"));
    assert_int_equal(spill_spec_init(&sp, e, 0, sk, 2, -1, &err), -1);
    /* the whole vocabulary is no reduction */
    assert_int_equal(spill_spec_init(&sp, e, 0, sk, 2, V, &err), 0);
    assert_int_equal(sp.head_rows, 0);
    spill_spec_free(&sp);
    spill_engine_free(e);
}

/* A step with head_rows computes those tokens' logits exactly as the whole head does, and -inf for the
 * rest; on a prefill of several kept outputs too. */
static void test_head_rows(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_profile prof;
    setup s = {stories_path(), "host", NULL, NULL};
    spill_engine *e = open_setup(&s, 8, 2, &prof);
    int V = spill_engine_model(e)->hp.vocab, R = V / 3 + 1;
    spill_engine_stats st[3];
    spill_engine_get_stats(e, &st[0]);
    int tok[3] = {1, 403, 89}, seq[3] = {0, 0, 0}, pos[3] = {0, 1, 2};
    uint8_t out[3] = {1, 0, 1};
    float *full = malloc(sizeof(float) * (size_t)V * 2);
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(spill_kv_truncate(spill_engine_kv(e), 0, 0, &err), 0);
        spill_batch b = {.n = 3, .token = tok, .seq = seq, .pos = pos, .out = out, .head_rows = pass ? R : 0};
        assert_int_equal(spill_engine_step(e, &b, &err), 0);
        spill_engine_get_stats(e, &st[pass + 1]);
        assert_int_equal(spill_engine_n_outputs(e), 2);
        for (int i = 0; i < 2; i++) {
            const float *l = spill_engine_logits_at(e, i);
            if (!pass) {
                memcpy(full + (size_t)i * V, l, sizeof(float) * (size_t)V);
                continue;
            }
            assert_memory_equal(l, full + (size_t)i * V, sizeof(float) * (size_t)R);
            for (int v = R; v < V; v++) assert_true(isinf(l[v]) && l[v] < 0);
        }
    }
    /* the bytes read count a third of the head's rows (stories260K's head is its tied embedding, F32) */
    uint64_t whole = st[1].read[SPILL_TIER_HOST] - st[0].read[SPILL_TIER_HOST];
    uint64_t part = st[2].read[SPILL_TIER_HOST] - st[1].read[SPILL_TIER_HOST];
    uint64_t head = (uint64_t)V * (uint64_t)spill_engine_model(e)->hp.dim * 4;
    printf("a step reads %llu bytes, with the head's first %d of %d rows %llu\n", (unsigned long long)whole, R, V,
           (unsigned long long)part);
    assert_true(whole - part > head / 2 && whole - part < head);
    free(full);
    spill_engine_free(e);
}

/* `test_spec smollm2` runs the SmolLM2 case alone (a ctest of its own, skipped when the model was not
   fetched); with no argument, the rest. */
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "smollm2")) {
        const struct CMUnitTest one[] = {cmocka_unit_test(test_greedy_smollm2)};
        return cmocka_run_group_tests(one, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_head_rows),
        cmocka_unit_test(test_calibration),
        cmocka_unit_test(test_skip_reads_less),
        cmocka_unit_test(test_greedy_stories),
        cmocka_unit_test(test_greedy_hf),
        cmocka_unit_test(test_sampling_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
