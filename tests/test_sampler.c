/* Sampler: greedy is argmax (lowest id on ties), a seed reproduces a run, top-k 1 and a tiny
 * top-p reduce to greedy, temperature 1 follows the softmax, bad settings are refused; the top-k
 * twin of the GPU kernel equals a full sort, and top-k draws follow the softmax over the k kept; logit
 * bias and presence/frequency penalties change what is picked, not the log probabilities. */
#include "sampler.h"
#include "spill_kernels.h"
#include "test_util.h"

#include <math.h>

static void test_greedy(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&smp, 5, 0, 0, 1, 1, &err), 0);
    float l[5] = {0.1f, 3, -1, 3, 2};
    assert_int_equal(spill_sampler_sample(&smp, l), 1);
    spill_sampler_free(&smp);
}

static void test_seed_reproduces(void **s) {
    (void)s;
    spill_sampler a, b;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&a, 50, 1.0f, 0, 1, 42, &err), 0);
    assert_int_equal(spill_sampler_init(&b, 50, 1.0f, 0, 1, 42, &err), 0);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        float la[50], lb[50];
        for (int k = 0; k < 50; k++) la[k] = lb[k] = sinf((float)(k * 7 + i));
        int x = spill_sampler_sample(&a, la), y = spill_sampler_sample(&b, lb);
        assert_int_equal(x, y);
        differ += x != 0;
    }
    assert_true(differ > 0);
    spill_sampler_free(&a);
    spill_sampler_free(&b);
}

/* Neighbouring seeds (OpenAI's n and --n-parallel sample with S, S+1, ...) start unrelated: of the first
 * numbers of seeds 1..201, consecutive ones fall within 0.02 of each other about 4% of the time, as
 * independent ones do (8 of 200 expected; with xorshift64* started from the raw seed, 68: seeds 43-46
 * drew 0.620, 0.629, 0.618, 0.608), and they spread over [0, 1). */
static void test_neighbour_seeds(void **s) {
    (void)s;
    enum { N = 201 };
    int bins[10] = {0}, close = 0;
    float prev = -1;
    for (uint64_t seed = 1; seed <= N; seed++) {
        spill_sampler a;
        spill_err err = {{0}};
        assert_int_equal(spill_sampler_init(&a, 8, 1.0f, 0, 1, seed, &err), 0);
        float u = spill_sampler_uniform(&a);
        assert_true(u >= 0 && u < 1);
        bins[(int)(u * 10)]++;
        close += prev >= 0 && fabsf(u - prev) < 0.02f;
        prev = u;
        spill_sampler_free(&a);
    }
    printf("consecutive seeds' first numbers within 0.02: %d of %d\n", close, N - 1);
    assert_true(close <= 20);
    for (int b = 0; b < 10; b++) assert_true(bins[b] >= 5 && bins[b] <= 40); /* 20 expected each */
}

static void test_topk_topp_reduce_to_greedy(void **s) {
    (void)s;
    spill_sampler k1, p0;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&k1, 100, 1.5f, 1, 1, 7, &err), 0);
    assert_int_equal(spill_sampler_init(&p0, 100, 1.5f, 0, 1e-6f, 7, &err), 0);
    for (int i = 0; i < 100; i++) {
        float l[100], m[100];
        for (int k = 0; k < 100; k++) l[k] = m[k] = cosf((float)(k * 13 + i * 3));
        int best = 0;
        for (int k = 1; k < 100; k++)
            if (l[k] > l[best]) best = k;
        assert_int_equal(spill_sampler_sample(&k1, l), best);
        assert_int_equal(spill_sampler_sample(&p0, m), best);
    }
    spill_sampler_free(&k1);
    spill_sampler_free(&p0);
}

/* top-k 3 of 8: only the three most likely come out, in the softmax's proportions among them
 * (the probabilities are the whole vocabulary's; the draw is over the mass the three keep) */
static void test_topk_distribution(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&smp, 8, 1.0f, 3, 1, 11, &err), 0);
    const float base[8] = {0.5f, 2, -1, 1.5f, 0, 2.5f, -3, 1};
    double z = exp(2.0) + exp(1.5) + exp(2.5), p[8] = {0};
    p[1] = exp(2.0) / z, p[3] = exp(1.5) / z, p[5] = exp(2.5) / z;
    int count[8] = {0};
    const int N = 30000;
    for (int i = 0; i < N; i++) {
        float l[8];
        memcpy(l, base, sizeof l);
        count[spill_sampler_sample(&smp, l)]++;
    }
    for (int k = 0; k < 8; k++) {
        if (p[k] == 0) {
            assert_int_equal(count[k], 0);
            continue;
        }
        double sd = sqrt(N * p[k] * (1 - p[k]));
        assert_true(fabs(count[k] - N * p[k]) < 5 * sd);
    }
    spill_sampler_free(&smp);
}

static void test_distribution(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&smp, 4, 1.0f, 0, 1, 3, &err), 0);
    const float base[4] = {0, 1, 2, -1};
    double z = 0, p[4];
    for (int k = 0; k < 4; k++) z += exp(base[k]);
    for (int k = 0; k < 4; k++) p[k] = exp(base[k]) / z;
    int count[4] = {0};
    const int N = 40000;
    for (int i = 0; i < N; i++) {
        float l[4];
        memcpy(l, base, sizeof l);
        count[spill_sampler_sample(&smp, l)]++;
    }
    for (int k = 0; k < 4; k++) {
        double sd = sqrt(N * p[k] * (1 - p[k]));
        assert_true(fabs(count[k] - N * p[k]) < 5 * sd);
    }
    spill_sampler_free(&smp);
}

/* spill_topk (the GPU top-k's twin) against a full sort, with ties and a NaN */
typedef struct pair { float v; int i; } pair;
static int by_rank(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i - y->i;
}
static void test_topk_twin(void **s) {
    (void)s;
    enum { N = 3000 };
    static float x[N];
    static pair p[N];
    uint64_t r = 9;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((r >> 40) % 200) / 10.0f; /* many equal values */
    }
    x[17] = NAN;
    for (int i = 0; i < N; i++) p[i] = (pair){x[i] != x[i] ? -INFINITY : x[i], i};
    qsort(p, N, sizeof *p, by_rank);
    for (int k = 1; k <= 300; k += 37) {
        int idx[300];
        float val[300];
        spill_topk(x, N, k, idx, val);
        for (int j = 0; j < k; j++) {
            assert_int_equal(idx[j], p[j].i);
            assert_true(val[j] == p[j].v);
        }
    }
    int idx[N];
    float val[N];
    spill_topk(x, N, N, idx, val); /* all of them: the NaN last */
    assert_int_equal(idx[N - 1], 17);
}

/* fewer finite values than k (masked logits are -inf; a NaN): the k returned are k distinct indices
 * of the n, the finite ones first, then -inf and NaN (NaN counts as -inf) by index (issue 21: the GPU
 * kernel, which started each round from -FLT_MAX, returned index n past the end for these) */
static void test_topk_few_finite(void **s) {
    (void)s;
    enum { N = 50, K = 10 };
    float x[N];
    for (int i = 0; i < N; i++) x[i] = -INFINITY;
    x[7] = 1.0f, x[30] = 3.0f, x[41] = -2.0f;
    x[3] = NAN;
    int idx[K];
    float val[K];
    spill_topk(x, N, K, idx, val);
    const int want[K] = {30, 7, 41, 0, 1, 2, 3, 4, 5, 6};
    for (int j = 0; j < K; j++) assert_int_equal(idx[j], want[j]);
    assert_true(val[2] == -2.0f);
    for (int j = 3; j < K; j++) assert_true(isinf(val[j]) && val[j] < 0);
}

static void test_bad_settings(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&smp, 4, -1, 0, 1, 1, &err), -1);
    assert_non_null(strstr(err.msg, "--temp"));
    assert_int_equal(spill_sampler_init(&smp, 4, 1, -3, 1, 1, &err), -1);
    assert_non_null(strstr(err.msg, "--top-k"));
    assert_int_equal(spill_sampler_init(&smp, 4, 1, 0, 0, 1, &err), -1);
    assert_non_null(strstr(err.msg, "--top-p"));
    assert_int_equal(spill_sampler_init(&smp, 4, 1, 0, 1.5f, 1, &err), -1);
}

/* logit_bias and the penalties: greedy and a drawn token follow the changed logits, the log
 * probabilities stay the model's, the counts are of accepted tokens only */
static void test_adjust(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    float l[6] = {2.0f, 1.8f, 1.7f, 0.0f, -1.0f, 1.0f}, before[6];
    memcpy(before, l, sizeof l);
    assert_int_equal(spill_sampler_init(&smp, 6, 0, 0, 1, 1, &err), 0);
    int bid[2] = {4, 0};
    float bias[2] = {3.5f, -100.0f};
    spill_logit_adjust a = {bid, bias, 2, 0.15f, 0.1f, 0, 0};
    assert_int_equal(spill_sampler_adjust(&smp, &a, &err), 0);
    bid[0] = 1; /* copied: the caller's arrays may go */
    assert_int_equal(spill_sampler_sample(&smp, l), 4); /* -1 + 3.5 = 2.5 beats 1.8; 0 is banned */
    assert_memory_equal(l, before, sizeof l);           /* the logits are read, not written */
    spill_sampler_accept(&smp, 4);                      /* 4: 2.5 - 0.25 = 2.25 still first */
    assert_int_equal(spill_sampler_sample(&smp, l), 4);
    spill_sampler_accept(&smp, 4);                      /* 2.5 - 0.35 = 2.15 */
    assert_int_equal(spill_sampler_sample(&smp, l), 4);
    spill_sampler_accept(&smp, 4);                      /* 2.5 - 0.45 = 2.05 */
    assert_int_equal(spill_sampler_sample(&smp, l), 4);
    spill_sampler_accept(&smp, 4);                      /* 2.5 - 0.55 = 1.95 */
    assert_int_equal(spill_sampler_sample(&smp, l), 4);
    spill_sampler_accept(&smp, 4);                      /* 2.5 - 0.65 = 1.85: 1 (1.8) is still below */
    assert_int_equal(spill_sampler_sample(&smp, l), 4);
    spill_sampler_accept(&smp, 4);                      /* 2.5 - 0.75 = 1.75 < 1.8 */
    assert_int_equal(spill_sampler_sample(&smp, l), 1);
    spill_sampler_accept(&smp, 1);                      /* 1: 1.8 - 0.25 = 1.55 < 1.7 */
    assert_int_equal(spill_sampler_sample(&smp, l), 4);
    spill_token_logprob lp;
    spill_sampler_logprobs(&smp, l, 0, 1, &lp);
    assert_int_equal(lp.top_id[0], 0); /* the model's own: token 0 first, not banned */
    float probs[6];
    spill_sampler_probs(&smp, l, probs);
    assert_true(probs[4] == 1 && probs[0] == 0);
    spill_sampler_free(&smp);

    /* drawn at temperature 1 with token 0 banned and 3 raised to the top: 3 comes most, 0 never */
    assert_int_equal(spill_sampler_init(&smp, 6, 1.0f, 0, 1, 7, &err), 0);
    int b3[2] = {0, 3};
    float v3[2] = {-100, 5};
    spill_logit_adjust a3 = {b3, v3, 2, 0, 0, 0, 0};
    assert_int_equal(spill_sampler_adjust(&smp, &a3, &err), 0);
    int hist[6] = {0};
    for (int i = 0; i < 4000; i++) hist[spill_sampler_sample(&smp, l)]++;
    assert_int_equal(hist[0], 0);
    for (int k = 1; k < 6; k++)
        if (k != 3) assert_true(hist[3] > 10 * hist[k]);
    spill_sampler_probs(&smp, l, probs);
    assert_true(probs[0] == 0 && probs[3] > 0.9f);
    spill_sampler_accept(&smp, 3); /* no penalty: nothing counted, nothing changes */
    assert_null(smp.count);
    spill_sampler_free(&smp);

    /* a negative penalty (allowed down to -2) favours what was taken */
    assert_int_equal(spill_sampler_init(&smp, 6, 0, 0, 1, 1, &err), 0);
    spill_logit_adjust neg = {NULL, NULL, 0, -0.5f, 0, 0, 0};
    assert_int_equal(spill_sampler_adjust(&smp, &neg, &err), 0);
    spill_sampler_accept(&smp, 2);
    assert_int_equal(spill_sampler_sample(&smp, l), 2); /* 1.7 + 0.5 = 2.2 beats 2.0 */
    spill_sampler_free(&smp);
}

static void test_adjust_refused(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    assert_int_equal(spill_sampler_init(&smp, 6, 0, 0, 1, 1, &err), 0);
    int id = 6;
    float b = 1, big = 100.5f, nan = NAN;
    spill_logit_adjust a = {&id, &b, 1, 0, 0, 0, 0};
    assert_int_equal(spill_sampler_adjust(&smp, &a, &err), -1);
    assert_non_null(strstr(err.msg, "token 6"));
    id = 2;
    a.bias = &big;
    assert_int_equal(spill_sampler_adjust(&smp, &a, &err), -1);
    assert_non_null(strstr(err.msg, "-100 to 100"));
    a.bias = &nan;
    assert_int_equal(spill_sampler_adjust(&smp, &a, &err), -1);
    spill_logit_adjust p = {NULL, NULL, 0, 2.5f, 0, 0, 0}, f = {NULL, NULL, 0, 0, -2.01f, 0, 0},
                       q = {NULL, NULL, 0, NAN, 0, 0, 0};
    assert_int_equal(spill_sampler_adjust(&smp, &p, &err), -1);
    assert_non_null(strstr(err.msg, "presence penalty"));
    assert_int_equal(spill_sampler_adjust(&smp, &f, &err), -1);
    assert_non_null(strstr(err.msg, "frequency penalty"));
    assert_int_equal(spill_sampler_adjust(&smp, &q, &err), -1);
    assert_null(smp.adj); /* refused: nothing taken */
    float l[6] = {0, 1, 2, 3, 4, 5};
    assert_int_equal(spill_sampler_sample(&smp, l), 5);
    spill_sampler_free(&smp);
}

/* what the sampler should pick from, written out the slow way: the bias added, the tokens among the
   last `window` of hist (0: all) divided or multiplied by repeat, presence + c * frequency off each of
   the n_gen last of hist (the generated ones) */
static void repeat_reference(const float *l, int V, const int *hist, int n_hist, int n_gen, const spill_logit_adjust *a,
                             float *out) {
    memcpy(out, l, sizeof(float) * (size_t)V);
    for (int i = 0; i < a->n_bias; i++) out[a->bias_id[i]] += a->bias[i];
    int from = a->repeat_window && n_hist > a->repeat_window ? n_hist - a->repeat_window : 0;
    for (int t = 0; t < V; t++) {
        int in = 0, c = 0;
        for (int i = from; i < n_hist; i++) in |= hist[i] == t;
        for (int i = n_hist - n_gen; i < n_hist; i++) c += hist[i] == t;
        if (in) out[t] = out[t] > 0 ? out[t] / a->repeat : out[t] * a->repeat;
        if (c) out[t] -= a->presence + (float)c * a->frequency;
    }
}

static void assert_probs_of(spill_sampler *smp, const float *l, const float *want_logits, int V) {
    float probs[16], want[16], mx = want_logits[0];
    double sum = 0;
    for (int i = 1; i < V; i++) mx = want_logits[i] > mx ? want_logits[i] : mx;
    for (int i = 0; i < V; i++) sum += want[i] = expf(want_logits[i] - mx);
    spill_sampler_probs(smp, l, probs);
    for (int i = 0; i < V; i++) assert_float_equal(probs[i], (float)(want[i] / sum), 1e-5);
}

static void test_repeat(void **s) {
    (void)s;
    spill_sampler smp;
    spill_err err = {{0}};
    enum { V = 8 };
    float l[V] = {2.0f, 1.5f, -0.5f, 1.0f, -2.0f, 0.5f, 1.9f, 0.0f}, want[V];
    /* greedy: the prompt's 0 (2.0 / 2 = 1.0) gives way to 6 (1.9); once 6 is taken too, 1 (1.5) */
    assert_int_equal(spill_sampler_init(&smp, V, 0, 0, 1, 1, &err), 0);
    spill_logit_adjust g = {NULL, NULL, 0, 0, 0, 2.0f, 0};
    assert_int_equal(spill_sampler_adjust(&smp, &g, &err), 0);
    assert_int_equal(spill_sampler_sample(&smp, l), 0);
    int prompt[3] = {0, 4, 0};
    spill_sampler_context(&smp, prompt, 3);
    assert_int_equal(spill_sampler_sample(&smp, l), 6);
    spill_sampler_accept(&smp, 6);
    assert_int_equal(spill_sampler_sample(&smp, l), 1);
    assert_null(smp.count); /* no presence or frequency penalty: nothing counted for them */
    spill_sampler_free(&smp);

    /* a window of 5 tokens beside a bias and both OpenAI penalties: after every token of a random
       run (a prompt of 7, then 60 generated) the distribution is the reference's */
    int bid[1] = {3};
    float bias[1] = {0.7f};
    spill_logit_adjust a = {bid, bias, 1, 0.2f, 0.05f, 1.6f, 5};
    int hist[80];
    uint64_t r = 12345;
    for (int w = 0; w < 2; w++) { /* the window, then every token */
        a.repeat_window = w ? 0 : 5;
        assert_int_equal(spill_sampler_init(&smp, V, 1.0f, 0, 1, 1, &err), 0);
        assert_int_equal(spill_sampler_adjust(&smp, &a, &err), 0);
        for (int i = 0; i < 7; i++) hist[i] = (int)((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 61);
        spill_sampler_context(&smp, hist, 7);
        int n = 7;
        for (int k = 0; k <= 60; k++) {
            repeat_reference(l, V, hist, n, k, &a, want);
            assert_probs_of(&smp, l, want, V);
            if (k == 60) break;
            hist[n++] = (int)((r = r * 6364136223846793005ull + 1442695040888963407ull) >> 61);
            spill_sampler_accept(&smp, hist[n - 1]);
        }
        assert_int_equal(smp.n_rlist, w ? V : smp.n_rlist); /* every token, sooner or later */
        assert_true(w || smp.n_rlist <= 5);
        spill_sampler_free(&smp);
    }

    /* a prompt longer than the window: only its last tokens count */
    assert_int_equal(spill_sampler_init(&smp, V, 0, 0, 1, 1, &err), 0);
    spill_logit_adjust two = {NULL, NULL, 0, 0, 0, 3.0f, 2};
    assert_int_equal(spill_sampler_adjust(&smp, &two, &err), 0);
    int longp[4] = {0, 6, 1, 3};
    spill_sampler_context(&smp, longp, 4);
    assert_int_equal(spill_sampler_sample(&smp, l), 0); /* 0 and 6 left the window: 2.0 is first again */
    spill_sampler_accept(&smp, 0);                      /* the window is {3, 0}: 6 (1.9) */
    assert_int_equal(spill_sampler_sample(&smp, l), 6);
    spill_sampler_free(&smp);

    /* 1 is off: nothing allocated, the logits as they are */
    assert_int_equal(spill_sampler_init(&smp, V, 0, 0, 1, 1, &err), 0);
    spill_logit_adjust off = {NULL, NULL, 0, 0, 0, 1.0f, 64};
    assert_int_equal(spill_sampler_adjust(&smp, &off, &err), 0);
    spill_sampler_context(&smp, prompt, 3);
    assert_null(smp.rcount);
    assert_null(smp.adj);
    assert_int_equal(spill_sampler_sample(&smp, l), 0);
    /* refused: out of range, NaN, a bad window; the sampler unchanged */
    spill_logit_adjust bad[6] = {{NULL, NULL, 0, 0, 0, -0.5f, 0}, {NULL, NULL, 0, 0, 0, 10.5f, 0}, {NULL, NULL, 0, 0, 0, NAN, 0},
                                 {NULL, NULL, 0, 0, 0, 0.0005f, 0}, {NULL, NULL, 0, 0, 0, 1.2f, -1},
                                 {NULL, NULL, 0, 0, 0, 1.2f, SPILL_REPEAT_WINDOW_MAX + 1}};
    for (int i = 0; i < 6; i++) {
        err.msg[0] = 0;
        assert_int_equal(spill_sampler_adjust(&smp, &bad[i], &err), -1);
        assert_non_null(strstr(err.msg, i < 4 ? "repetition penalty " : "repetition penalty window"));
        assert_null(smp.rcount);
    }
    spill_sampler_free(&smp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy), cmocka_unit_test(test_seed_reproduces), cmocka_unit_test(test_neighbour_seeds),
        cmocka_unit_test(test_topk_topp_reduce_to_greedy), cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_topk_distribution),
        cmocka_unit_test(test_bad_settings), cmocka_unit_test(test_topk_twin),
        cmocka_unit_test(test_topk_few_finite), cmocka_unit_test(test_adjust), cmocka_unit_test(test_adjust_refused),
        cmocka_unit_test(test_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
