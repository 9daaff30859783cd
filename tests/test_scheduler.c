/* Continuous batching (runtime/scheduler.c) on stories260K: many requests at once, more than there
 * are slots, give each the text it gets alone (greedy); preemption when the KV cache runs out does
 * not change a token; a cancelled request frees its blocks; stop strings end the text before them
 * and are never streamed in part; a full queue says so; prompts that begin alike share blocks; beside
 * decoding sequences a step holds no more prompt tokens than the prefill budget, given to prompts in
 * the order they were admitted; seeded sampling gives each request together the text it gets alone;
 * log probabilities are the logits' log-softmax, and cover the text a stop string leaves; a prompt's
 * own (echo) are every position's, as computed alone; a target step time (--itl-target) admits requests
 * only while the steps it has timed leave room, and changes no text. */
#include <pthread.h>

#include "engine.h"
#include "sampler.h"
#include "scheduler.h"
#include "test_util.h"

typedef struct out {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    char text[4096];
    size_t len;
    int tokens, calls;
    spill_token_logprob lp[96]; /* the log probabilities received, in order */
    int n_lp;
    int lp_call, lp_call_len; /* the first call that brought log probabilities, counted from 1, and its text's length */
    spill_finish finish;
    int done;
    int cancel_after; /* cancel itself once this many tokens arrived (0 = never) */
    int hold;         /* while set, the sink (the scheduler's thread) waits after a call */
    spill_sched *sched;
    int id;
} out;

static void sink(void *user, const char *text, size_t len, int n_tokens, const spill_token_logprob *lp,
                 int n_lp, spill_finish finish) {
    out *o = user;
    pthread_mutex_lock(&o->lock);
    if (n_lp && !o->lp_call) o->lp_call = o->calls + 1, o->lp_call_len = (int)len;
    for (int i = 0; i < n_lp && o->n_lp < 96; i++) o->lp[o->n_lp++] = lp[i];
    if (o->len + len < sizeof o->text) {
        memcpy(o->text + o->len, text, len);
        o->len += len;
        o->text[o->len] = 0;
    }
    o->tokens += n_tokens;
    o->calls++;
    if (finish != SPILL_FINISH_NONE) {
        o->finish = finish;
        o->done = 1;
        pthread_cond_broadcast(&o->cv);
    }
    int cancel = o->cancel_after && o->tokens >= o->cancel_after && !o->done;
    while (o->hold) pthread_cond_wait(&o->cv, &o->lock);
    pthread_mutex_unlock(&o->lock);
    if (cancel) spill_sched_cancel(o->sched, o->id);
}

static void out_init(out *o) {
    memset(o, 0, sizeof *o);
    pthread_mutex_init(&o->lock, NULL);
    pthread_cond_init(&o->cv, NULL);
}

static void out_wait(out *o) {
    pthread_mutex_lock(&o->lock);
    while (!o->done) pthread_cond_wait(&o->cv, &o->lock);
    pthread_mutex_unlock(&o->lock);
}

/* until the request has had a token (so it is running, not waiting) */
static void wait_running(out *o) {
    for (int k = 0; k < 20000; k++) {
        pthread_mutex_lock(&o->lock);
        int got = o->tokens || o->done;
        pthread_mutex_unlock(&o->lock);
        if (got) return;
        usleep(1000);
    }
    fail_msg("a request did not start within 20 s");
}

static spill_engine *engine(int n_seqs, int kv_blocks) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 256;
    p.batch = 32;
    p.n_seqs = n_seqs;
    p.kv_block = 16;
    p.kv_blocks = kv_blocks;
    p.threads = 2;
    p.quiet = 1;
    spill_engine *e;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s", err.msg);
    return e;
}

static const char *prompts[] = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                                "One day, a big bird", "Tom had a red ball", "The sun was hot and"};
enum { N_P = 6, MAX_TOK = 24 };

/* Log probabilities, greedy, the reference computed here from the logits the sequence gets alone:
 * each token's log-softmax (in double) and the TOP most likely, the lower id first among equals. */
enum { TOP = 5 };
typedef struct lp_ref {
    int id, top[TOP], n_bytes; /* n_bytes: its text's */
    double lp, top_lp[TOP];
} lp_ref;

/* token id's log probability under the logits l and the TOP most likely */
static void fill_ref(const float *l, int V, int id, lp_ref *r) {
    double mx = l[0], sum = 0;
    for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    r->id = id;
    r->lp = (double)l[id] - lse;
    for (int k = 0; k < TOP; k++) { /* the largest not taken yet, the lower id first */
        int best = -1;
        for (int i = 0; i < V; i++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= r->top[j] == i;
            if (!taken && (best < 0 || l[i] > l[best])) best = i;
        }
        r->top[k] = best;
        r->top_lp[k] = (double)l[best] - lse;
    }
}

/* greedy text of a prompt, alone: the reference; with ref, each token's log probabilities too. Returns
 * the tokens generated. */
static int alone_ref(const char *prompt, int max_tokens, char *text, size_t cap, lp_ref *ref) {
    spill_err err = {{0}};
    spill_engine *e = engine(1, 0);
    const spill_model *m = spill_engine_model(e);
    const int V = m->hp.vocab;
    int *t, n, g = 0;
    assert_int_equal(spill_tokenize(&m->tok, prompt, strlen(prompt), 1, 1, &t, &n, &err), 0);
    assert_int_equal(spill_engine_prefill(e, 0, t, n, 0, NULL, &err), 0); /* in batch-sized chunks */
    size_t len = 0;
    text[0] = 0;
    for (; g < max_tokens; g++) {
        const float *l = spill_engine_logits(e);
        int id = argmax_logit(l, V);
        if (spill_token_is_eog(&m->tok, id)) break;
        int nb = spill_token_to_bytes(&m->tok, id, text + len, (int)(cap - len));
        len += (size_t)nb;
        text[len] = 0;
        if (ref) {
            ref[g].n_bytes = nb;
            fill_ref(l, V, id, &ref[g]);
        }
        assert_int_equal(spill_engine_forward(e, 0, &id, 1, n + g, &err), 0);
    }
    free(t);
    spill_engine_free(e);
    return g;
}

static void alone(const char *prompt, int max_tokens, char *text, size_t cap) {
    alone_ref(prompt, max_tokens, text, cap, NULL);
}

static int submit(spill_sched *s, spill_engine *e, const char *prompt, int max_tokens, const char *const *stop, int n_stop,
                  out *o) {
    spill_err err = {{0}};
    const spill_model *m = spill_engine_model(e);
    int *t, n, id, full;
    assert_int_equal(spill_tokenize(&m->tok, prompt, strlen(prompt), 1, 1, &t, &n, &err), 0);
    spill_request r = {t, n, max_tokens, 0, 1, 0, 1, stop, n_stop, 0, 0, 0, NULL};
    o->sched = s;
    int rc = spill_sched_submit(s, &r, sink, o, &id, &full, &err);
    free(t);
    if (rc) fail_msg("%s", err.msg);
    o->id = id;
    return id;
}

/* every prompt submitted at once (MAX_TOK tokens, greedy): each gets ref[i], the text it gets alone */
static void all_as_alone(spill_sched *s, spill_engine *e, char ref[N_P][4096]) {
    out o[N_P];
    for (int i = 0; i < N_P; i++) {
        out_init(&o[i]);
        submit(s, e, prompts[i], MAX_TOK, NULL, 0, &o[i]);
    }
    for (int i = 0; i < N_P; i++) {
        out_wait(&o[i]);
        if (strcmp(o[i].text, ref[i])) fail_msg("'%s': scheduled '%s' vs alone '%s'", prompts[i], o[i].text, ref[i]);
        assert_true(o[i].finish == SPILL_FINISH_LENGTH || o[i].finish == SPILL_FINISH_STOP);
    }
}

static void run_all(int n_seqs, int kv_blocks, uint64_t *preempted) {
    static char ref[N_P][4096];
    for (int i = 0; i < N_P; i++) alone(prompts[i], MAX_TOK, ref[i], sizeof ref[i]);
    spill_engine *e = engine(n_seqs, kv_blocks);
    spill_sched *s;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&s, e, NULL, &err), 0);
    all_as_alone(s, e, ref);
    spill_sched_stats st;
    spill_sched_get_stats(s, &st);
    printf("%d slots, %d KV blocks: %llu steps, mean batch %.1f tokens, %llu preempted, %llu tokens generated\n", n_seqs,
           st.kv_blocks, (unsigned long long)st.steps, (double)st.step_tokens / (double)st.steps,
           (unsigned long long)st.preempted, (unsigned long long)st.generated_tokens);
    assert_int_equal(st.finished, N_P);
    assert_int_equal(st.running, 0);
    assert_int_equal(st.kv_blocks_free, st.kv_blocks); /* every block came back */
    assert_true((double)st.step_tokens / (double)st.steps > 1.5); /* steps really held several sequences */
    *preempted = st.preempted;
    spill_sched_free(s);
    spill_engine_free(e);
}

static void test_many_requests(void **s) {
    (void)s;
    uint64_t pre;
    run_all(4, 0, &pre); /* six requests on four slots: two wait */
}

/* Sampled, not greedy: each request draws with its own seeded sampler, and a step's outputs are
 * sampled over the engine's pool, so six requests at once give each the text it gets alone with the
 * same seed; and the seeds matter (not every text is the greedy one). */
static void sampled(spill_sched *s, spill_engine *e, int i, out *o) {
    spill_err err = {{0}};
    const spill_model *m = spill_engine_model(e);
    int *t, n, id, full;
    assert_int_equal(spill_tokenize(&m->tok, prompts[i], strlen(prompts[i]), 1, 1, &t, &n, &err), 0);
    spill_request r = {t, n, MAX_TOK, 1.0f, 0.95f, 40, 1000 + (uint64_t)i, NULL, 0, 0, 0, 0, NULL};
    out_init(o);
    o->sched = s;
    if (spill_sched_submit(s, &r, sink, o, &id, &full, &err)) fail_msg("%s", err.msg);
    o->id = id;
    free(t);
}

static void test_sampled_together(void **st) {
    (void)st;
    static char ref[N_P][4096], greedy[N_P][4096];
    spill_engine *e = engine(N_P, 0);
    spill_sched *s;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&s, e, NULL, &err), 0);
    out one[N_P], o[N_P]; /* apart: the scheduler's thread may still be leaving a finished one's sink */
    int differ = 0;
    for (int i = 0; i < N_P; i++) { /* one at a time */
        sampled(s, e, i, &one[i]);
        out_wait(&one[i]);
        snprintf(ref[i], sizeof ref[i], "%s", one[i].text);
        alone(prompts[i], MAX_TOK, greedy[i], sizeof greedy[i]);
        differ += strcmp(ref[i], greedy[i]) != 0;
    }
    spill_sched_stats st0, st1;
    spill_sched_get_stats(s, &st0);
    for (int i = 0; i < N_P; i++) sampled(s, e, i, &o[i]);
    for (int i = 0; i < N_P; i++) {
        out_wait(&o[i]);
        if (strcmp(o[i].text, ref[i])) fail_msg("'%s': sampled together '%s' vs alone '%s'", prompts[i], o[i].text, ref[i]);
    }
    spill_sched_get_stats(s, &st1);
    /* the steps since the requests came together held several sequences */
    assert_true((double)(st1.step_tokens - st0.step_tokens) / (double)(st1.steps - st0.steps) > 1.5);
    assert_true(differ > 0);
    spill_sched_free(s);
    spill_engine_free(e);
}

/* --prefill-budget: beside decoding sequences a step holds at most that many prompt tokens, or as many
 * as fill it to one token per running sequence where that is more, and every text is the one it gets alone; without
 * a budget a prompt joins decoding sequences whole */
static int mixed_prompt(int n_slots, const spill_sched_params *sp) {
    static char ref[N_P][4096];
    enum { LONG = 160 }; /* the first request still decodes when the others come (stories260K is fast) */
    for (int i = 0; i < N_P; i++) alone(prompts[i], i ? MAX_TOK : LONG, ref[i], sizeof ref[i]);
    spill_engine *e = engine(n_slots, 0);
    spill_sched *s;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&s, e, sp, &err), 0);
    out o[N_P];
    for (int i = 0; i < N_P; i++) {
        out_init(&o[i]);
        submit(s, e, prompts[i], i ? MAX_TOK : LONG, NULL, 0, &o[i]);
        if (i == 0) wait_running(&o[0]); /* the others' prompts come while it decodes */
    }
    for (int i = 0; i < N_P; i++) {
        out_wait(&o[i]);
        if (strcmp(o[i].text, ref[i])) fail_msg("'%s': scheduled '%s' vs alone '%s'", prompts[i], o[i].text, ref[i]);
    }
    spill_sched_stats st;
    spill_sched_get_stats(s, &st);
    spill_sched_free(s);
    spill_engine_free(e);
    return st.max_mixed_prompt;
}

static void test_prefill_budget(void **s) {
    (void)s;
    spill_sched_params sp = {0, 0, 2, 0};
    int m = mixed_prompt(3, &sp); /* the budget is more than what fills a step to 3 */
    printf("3 slots, budget 2: at most %d prompt tokens beside decoding ones\n", m);
    assert_true(m >= 1 && m <= 2);
    /* 4 slots, budget 1: beside one decoding sequence, 3 prompt tokens fill the step to 4; never more */
    sp.prefill_budget = 1;
    m = mixed_prompt(4, &sp);
    printf("4 slots, budget 1: at most %d prompt tokens beside decoding ones\n", m);
    assert_true(m >= 2 && m <= 3);
    /* 16 slots, 6 requests, budget 1: the step fills to one token per running sequence (6), not per slot */
    m = mixed_prompt(16, &sp);
    printf("16 slots, 6 requests, budget 1: at most %d prompt tokens beside decoding ones\n", m);
    assert_true(m >= 1 && m <= N_P - 1);
    m = mixed_prompt(4, NULL);
    printf("4 slots, no budget: at most %d prompt tokens beside decoding ones\n", m);
    assert_true(m > 3);
}

/* Prompts are fed in the order their requests were admitted: one admitted into a high slot is not
 * starved by newcomers that keep landing in the low slots as short requests come and go (before,
 * slot order gave them the budget step after step). A decodes in slot 0; two holders keep slots 1 and
 * 2 while a long prompt L takes slot 3; then the holders go and short requests come one after another
 * into slots 1 and 2. L must have its first token before 40 of them have finished (with the budget of
 * 2 tokens, its prompt takes about 40 steps; starved, it took one token per short request). */
static void test_prompt_order(void **s) {
    (void)s;
    char text[512] = "";
    for (int i = 0; i < 6; i++) strcat(text, "Tom had a red ball and a big box. ");
    char ref[4096];
    alone(text, 4, ref, sizeof ref);
    spill_engine *e = engine(4, 0);
    spill_sched *sc;
    spill_err err = {{0}};
    spill_sched_params sp = {0, 0, 2, 0};
    assert_int_equal(spill_sched_open(&sc, e, &sp, &err), 0);
    out a, h[2], l;
    out_init(&a);
    submit(sc, e, prompts[0], 200, NULL, 0, &a);
    wait_running(&a);
    for (int i = 0; i < 2; i++) {
        out_init(&h[i]);
        submit(sc, e, prompts[1 + i], 200, NULL, 0, &h[i]);
        wait_running(&h[i]);
    }
    out_init(&l);
    submit(sc, e, text, 4, NULL, 0, &l);
    spill_sched_stats st;
    for (int k = 0; k < 20000; k++) {
        spill_sched_get_stats(sc, &st);
        if (st.running == 4) break;
        usleep(1000);
    }
    assert_int_equal(st.running, 4);
    for (int i = 0; i < 2; i++) spill_sched_cancel(sc, h[i].id);
    int done = 0, have_l = 0;
    out f[2];
    for (int i = 0; i < 2; i++) {
        out_init(&f[i]);
        submit(sc, e, prompts[3 + i], 1, NULL, 0, &f[i]);
    }
    while (done < 40) {
        pthread_mutex_lock(&l.lock);
        have_l = l.tokens > 0 || l.done;
        pthread_mutex_unlock(&l.lock);
        if (have_l) break;
        for (int i = 0; i < 2; i++) {
            pthread_mutex_lock(&f[i].lock);
            int fd = f[i].done;
            pthread_mutex_unlock(&f[i].lock);
            if (!fd) continue;
            done++;
            out_init(&f[i]);
            submit(sc, e, prompts[3 + (done + i) % 3], 1, NULL, 0, &f[i]);
        }
        usleep(200);
    }
    printf("the long prompt's first token after %d short requests had finished\n", done);
    if (!have_l) fail_msg("the long prompt had no token after %d short requests came and went in lower slots", done);
    out_wait(&l);
    assert_string_equal(l.text, ref);
    for (int i = 0; i < 2; i++) out_wait(&f[i]);
    spill_sched_cancel(sc, a.id);
    out_wait(&a);
    spill_sched_free(sc);
    spill_engine_free(e);
}

static void test_preemption(void **s) {
    (void)s;
    uint64_t pre;
    /* blocks of 16 tokens: a request needs 2-3; 8 in all cannot hold four at once */
    run_all(4, 8, &pre);
    assert_true(pre > 0);
}

static void test_cancel_and_stop(void **s) {
    (void)s;
    spill_engine *e = engine(2, 0);
    spill_sched *sc;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&sc, e, NULL, &err), 0);
    /* cancelled after 3 tokens */
    out a;
    out_init(&a);
    a.cancel_after = 3;
    submit(sc, e, prompts[0], 200, NULL, 0, &a);
    out_wait(&a);
    assert_int_equal(a.finish, SPILL_FINISH_CANCELLED);
    assert_true(a.tokens >= 3 && a.tokens < 20);
    /* a stop string inside the greedy text: the text ends before it, and no piece held part of it */
    char ref[4096];
    alone(prompts[0], MAX_TOK, ref, sizeof ref);
    const char *cut = strstr(ref, "named");
    assert_non_null(cut);
    const char *stop[] = {"zzz", "named"};
    out b;
    out_init(&b);
    submit(sc, e, prompts[0], MAX_TOK, stop, 2, &b);
    out_wait(&b);
    assert_int_equal(b.finish, SPILL_FINISH_STOP);
    assert_int_equal(b.len, (size_t)(cut - ref));
    assert_memory_equal(b.text, ref, b.len);
    assert_null(strstr(b.text, "nam"));
    spill_sched_stats st;
    spill_sched_get_stats(sc, &st);
    assert_int_equal(st.cancelled, 1);
    assert_int_equal(st.kv_blocks_free, st.kv_blocks);
    /* a prompt too long for the context is refused at once */
    int big[300], id, full;
    for (int i = 0; i < 300; i++) big[i] = 5;
    spill_request r = {big, 300, 4, 0, 1, 0, 1, NULL, 0, 0, 0, 0, NULL};
    assert_int_equal(spill_sched_submit(sc, &r, sink, &b, &id, &full, &err), -1);
    assert_int_equal(full, 0);
    assert_non_null(strstr(err.msg, "context"));
    spill_sched_free(sc);
    spill_engine_free(e);
}

static void test_queue_full_and_sharing(void **s) {
    (void)s;
    spill_engine *e = engine(1, 0);
    spill_sched *sc;
    spill_err err = {{0}};
    spill_sched_params sp = {1, 0, 0, 0};
    assert_int_equal(spill_sched_open(&sc, e, &sp, &err), 0);
    /* one slot, one waiting place: with the first running and the second waiting, a third is refused */
    out o[3];
    for (int i = 0; i < 3; i++) out_init(&o[i]);
    submit(sc, e, prompts[2], 60, NULL, 0, &o[0]);
    wait_running(&o[0]);
    submit(sc, e, prompts[2], 60, NULL, 0, &o[1]);
    const spill_model *m = spill_engine_model(e);
    int *t, n, id, full, refused = 0;
    assert_int_equal(spill_tokenize(&m->tok, prompts[1], strlen(prompts[1]), 1, 1, &t, &n, &err), 0);
    spill_request r = {t, n, 4, 0, 1, 0, 1, NULL, 0, 0, 0, 0, NULL};
    for (int k = 0; k < 3 && !refused; k++) refused = spill_sched_submit(sc, &r, sink, &o[2], &id, &full, &err) != 0;
    free(t);
    assert_true(refused && full);
    out_wait(&o[0]), out_wait(&o[1]);
    assert_string_equal(o[0].text, o[1].text);
    if (!o[2].done) spill_sched_cancel(sc, id);
    spill_sched_free(sc);
    spill_engine_free(e);
    /* two slots, one waiting place, the scheduler held inside a step (in the first request's first token):
       two more requests are taken, the second of them bound for the free slot, not for the waiting place;
       a third is refused (before, the second was: the free slot did not count) */
    e = engine(2, 0);
    assert_int_equal(spill_sched_open(&sc, e, &sp, &err), 0);
    out h, q[3];
    out_init(&h);
    for (int i = 0; i < 3; i++) out_init(&q[i]);
    h.hold = 1;
    submit(sc, e, prompts[0], 8, NULL, 0, &h);
    wait_running(&h);
    submit(sc, e, prompts[1], 8, NULL, 0, &q[0]);
    submit(sc, e, prompts[2], 8, NULL, 0, &q[1]); /* failed the test before the fix */
    m = spill_engine_model(e); /* this engine's (the first one's is freed) */
    assert_int_equal(spill_tokenize(&m->tok, prompts[3], strlen(prompts[3]), 1, 1, &t, &n, &err), 0);
    spill_request r3 = {t, n, 4, 0, 1, 0, 1, NULL, 0, 0, 0, 0, NULL};
    int rc3 = spill_sched_submit(sc, &r3, sink, &q[2], &id, &full, &err);
    free(t);
    assert_true(rc3 != 0 && full);
    pthread_mutex_lock(&h.lock);
    h.hold = 0;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.lock);
    out_wait(&h), out_wait(&q[0]), out_wait(&q[1]);
    assert_true(h.done && q[0].done && q[1].done);
    spill_sched_free(sc);
    spill_engine_free(e);
    /* two slots: the second request with the same long prompt shares the first's blocks */
    e = engine(2, 0);
    assert_int_equal(spill_sched_open(&sc, e, NULL, &err), 0);
    const char *longp = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
                        "One day, she saw a big red ball";
    out p1, p2;
    out_init(&p1), out_init(&p2);
    p1.hold = 1; /* the scheduler waits in p1's first token until p2 is queued: p1 is still running then */
    submit(sc, e, longp, 30, NULL, 0, &p1);
    wait_running(&p1); /* its prompt is in the cache */
    submit(sc, e, longp, 30, NULL, 0, &p2);
    pthread_mutex_lock(&p1.lock);
    p1.hold = 0;
    pthread_cond_broadcast(&p1.cv);
    pthread_mutex_unlock(&p1.lock);
    out_wait(&p1), out_wait(&p2);
    assert_string_equal(p1.text, p2.text);
    spill_sched_stats st;
    spill_sched_get_stats(sc, &st);
    printf("prompt positions shared instead of computed: %llu\n", (unsigned long long)st.reused_tokens);
    assert_true(st.reused_tokens >= 16);
    spill_sched_free(sc);
    spill_engine_free(e);
}

/* stop with drain: what was submitted finishes; then submissions are refused */
static void test_drain(void **s) {
    (void)s;
    spill_engine *e = engine(2, 0);
    spill_sched *sc;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&sc, e, NULL, &err), 0);
    out o[3];
    for (int i = 0; i < 3; i++) {
        out_init(&o[i]);
        submit(sc, e, prompts[i], 10, NULL, 0, &o[i]);
    }
    spill_sched_stop(sc, 1);
    for (int i = 0; i < 3; i++) {
        assert_true(o[i].done);
        assert_int_not_equal(o[i].finish, SPILL_FINISH_CANCELLED);
    }
    int t = 1, id, full;
    spill_request r = {&t, 1, 4, 0, 1, 0, 1, NULL, 0, 0, 0, 0, NULL};
    assert_int_equal(spill_sched_submit(sc, &r, sink, &o[0], &id, &full, &err), -1);
    assert_non_null(strstr(err.msg, "shutting down"));
    spill_sched_free(sc);
    spill_engine_free(e);
}

static void submit_lp(spill_sched *s, spill_engine *e, const char *prompt, float temp, int logprobs, int top,
                      const char *const *stop, int n_stop, out *o) {
    spill_err err = {{0}};
    const spill_model *m = spill_engine_model(e);
    int *t, n, id, full;
    assert_int_equal(spill_tokenize(&m->tok, prompt, strlen(prompt), 1, 1, &t, &n, &err), 0);
    spill_request r = {t, n, MAX_TOK, temp, 1, temp > 0 ? 40 : 0, 7, stop, n_stop, logprobs, top, 0, NULL};
    out_init(o);
    o->sched = s;
    if (spill_sched_submit(s, &r, sink, o, &id, &full, &err)) fail_msg("%s", err.msg);
    o->id = id;
    free(t);
}

/* the records' token texts, joined */
static size_t lp_join(const spill_model *m, const out *o, int upto, char *buf, size_t cap) {
    size_t len = 0;
    for (int k = 0; k < upto; k++)
        len += (size_t)spill_token_to_bytes(&m->tok, o->lp[k].id, buf + len, (int)(cap - len));
    buf[len] = 0;
    return len;
}

/* Several requests in one batch: greedy with TOP alternatives and with none get the reference's log
 * probabilities; one that did not ask gets none; one with a stop string gets the records of the tokens
 * that wrote the text before it; a sampled one's chosen token's log probability is its alternative's. */
static void test_logprobs(void **st) {
    (void)st;
    static lp_ref ref[MAX_TOK];
    char text[1024];
    int n_ref = alone_ref(prompts[0], MAX_TOK, text, sizeof text, ref);
    assert_true(n_ref > 4);
    const size_t tl = strlen(text);
    /* a stop string that begins inside a token: three bytes from a token's second one on, found
       first there; the records then end with that token */
    char stop[4] = {0};
    int cut = -1;
    for (int g = n_ref / 2, start = 0; g < n_ref && cut < 0; g++) {
        start = 0;
        for (int k = 0; k < g; k++) start += ref[k].n_bytes;
        if (ref[g].n_bytes < 2 || (size_t)start + 4 > tl) continue;
        memcpy(stop, text + start + 1, 3);
        if (strstr(text, stop) == text + start + 1) cut = g;
    }
    assert_true(cut >= 0);
    const char *stops[] = {stop};
    spill_engine *e = engine(4, 0);
    const spill_model *m = spill_engine_model(e);
    spill_sched *s;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&s, e, NULL, &err), 0);
    static out o[5];
    submit_lp(s, e, prompts[0], 0, 1, TOP, NULL, 0, &o[0]);
    submit_lp(s, e, prompts[0], 0, 1, 0, NULL, 0, &o[1]);
    submit_lp(s, e, prompts[0], 0, 0, 0, NULL, 0, &o[2]);
    submit_lp(s, e, prompts[0], 0, 1, 2, stops, 1, &o[3]);
    submit_lp(s, e, prompts[1], 1.0f, 1, 3, NULL, 0, &o[4]);
    for (int i = 0; i < 5; i++) out_wait(&o[i]);
    char joined[2048];
    for (int i = 0; i < 2; i++) {
        assert_string_equal(o[i].text, text);
        assert_int_equal(o[i].n_lp, n_ref);
        for (int g = 0; g < n_ref; g++) {
            const spill_token_logprob *r = &o[i].lp[g];
            assert_int_equal(r->id, ref[g].id);
            if (fabs(r->logprob - ref[g].lp) > 1e-4) fail_msg("token %d: logprob %.7g, the reference %.7g", g, r->logprob, ref[g].lp);
            assert_true(r->logprob <= 0);
            assert_int_equal(r->n_top, i == 0 ? TOP : 0);
            for (int k = 0; k < r->n_top; k++) {
                assert_int_equal(r->top_id[k], ref[g].top[k]);
                if (fabs(r->top_logprob[k] - ref[g].top_lp[k]) > 1e-4)
                    fail_msg("token %d, alternative %d: %.7g, the reference %.7g", g, k, r->top_logprob[k], ref[g].top_lp[k]);
            }
        }
        lp_join(m, &o[i], o[i].n_lp, joined, sizeof joined);
        assert_string_equal(joined, text);
    }
    assert_int_equal(o[2].n_lp, 0);
    /* the stop string: the text ends before it; the records cover it, the last one reaching into it */
    const char *hit = strstr(text, stop);
    assert_non_null(hit);
    assert_int_equal(o[3].len, (size_t)(hit - text));
    assert_true(o[3].n_lp > 0);
    size_t all = lp_join(m, &o[3], o[3].n_lp, joined, sizeof joined);
    assert_memory_equal(joined, text, o[3].len);
    assert_true(all >= o[3].len);
    assert_true(lp_join(m, &o[3], o[3].n_lp - 1, joined, sizeof joined) < o[3].len);
    assert_int_equal(o[3].n_lp, cut + 1);
    for (int g = 0; g < o[3].n_lp; g++) assert_int_equal(o[3].lp[g].id, ref[g].id);
    /* sampled: the chosen token's log probability is the one its alternative shows */
    assert_int_equal(o[4].n_lp, o[4].tokens);
    lp_join(m, &o[4], o[4].n_lp, joined, sizeof joined);
    assert_string_equal(joined, o[4].text);
    int off_top = 0;
    for (int g = 0; g < o[4].n_lp; g++) {
        const spill_token_logprob *r = &o[4].lp[g];
        assert_int_equal(r->n_top, 3);
        for (int k = 0; k < 3; k++) {
            if (k) assert_true(r->top_logprob[k] <= r->top_logprob[k - 1]);
            if (r->top_id[k] == r->id) assert_true(r->top_logprob[k] == r->logprob);
        }
        off_top += r->id != r->top_id[0];
    }
    assert_true(off_top > 0); /* temperature 1 drew something else than the most likely at least once */
    spill_sched_free(s);
    spill_engine_free(e);
}

/* each token's log probability after the ones before it, alone and one token a step: ref[i] for
 * tok[i], i >= 1 */
static void positions_ref(const int *tok, int n, lp_ref *ref) {
    spill_err err = {{0}};
    spill_engine *e = engine(1, 0);
    const int V = spill_engine_model(e)->hp.vocab;
    for (int i = 0; i + 1 < n; i++) {
        assert_int_equal(spill_engine_forward(e, 0, &tok[i], 1, i, &err), 0);
        fill_ref(spill_engine_logits(e), V, tok[i + 1], &ref[i + 1]);
    }
    spill_engine_free(e);
}

/* A prompt's own log probabilities (OpenAI's echo with logprobs): a prompt that is a greedy run's
 * prompt and text, in chunks of 4 tokens beside that run still decoding (whose blocks it could share),
 * gets every position's, equal to those of the tokens fed one at a time alone (and, bit for bit, to
 * those the run had for the tokens it generated), in one sink call before anything else; max_tokens -1 generates nothing; with max_tokens, the generated tokens follow as
 * they would without. */
static void test_prompt_logprobs(void **st) {
    (void)st;
    static lp_ref gen[MAX_TOK], ref[64];
    char text[1024];
    int n_gen = alone_ref(prompts[2], MAX_TOK, text, sizeof text, gen);
    assert_true(n_gen > 16);
    spill_engine *e = engine(3, 0);
    const spill_model *m = spill_engine_model(e);
    spill_err err = {{0}};
    int *pt, np;
    assert_int_equal(spill_tokenize(&m->tok, prompts[2], strlen(prompts[2]), 1, 1, &pt, &np, &err), 0);
    int full[64], n = 0;
    for (int i = 0; i < np; i++) full[n++] = pt[i];
    for (int g = 0; g < n_gen && n < 40; g++) full[n++] = gen[g].id;
    free(pt);
    positions_ref(full, n, ref);
    for (int g = 0; g < n - np; g++) /* the reference agrees with the greedy run's own */
        if (fabs(ref[np + g].lp - gen[g].lp) > 1e-4) fail_msg("position %d: %.7g, greedy %.7g", np + g, ref[np + g].lp, gen[g].lp);
    spill_sched_params sp = {0, 4, 0, 0};
    spill_sched *s;
    assert_int_equal(spill_sched_open(&s, e, &sp, &err), 0);
    static out a, b, c;
    out_init(&a), out_init(&b), out_init(&c);
    submit_lp(s, e, prompts[2], 0, 1, TOP, NULL, 0, &a);
    /* a has computed more than a block of what b and c begin with */
    for (int k = 0; k < 20000; k++) {
        pthread_mutex_lock(&a.lock);
        int got = a.tokens >= 12 || a.done;
        pthread_mutex_unlock(&a.lock);
        if (got) break;
        usleep(500);
    }
    int id, full_q;
    spill_request rb = {full, n, -1, 0, 1, 0, 1, NULL, 0, 1, TOP, 1, NULL};
    spill_request rc = {full, n, 3, 0, 1, 0, 1, NULL, 0, 0, 0, 1, NULL};
    b.sched = c.sched = s;
    if (spill_sched_submit(s, &rb, sink, &b, &id, &full_q, &err)) fail_msg("%s", err.msg);
    if (spill_sched_submit(s, &rc, sink, &c, &id, &full_q, &err)) fail_msg("%s", err.msg);
    out_wait(&a), out_wait(&b), out_wait(&c);
    assert_string_equal(a.text, text);
    spill_sched_stats ss;
    spill_sched_get_stats(s, &ss);
    assert_int_equal(ss.reused_tokens, 0);
    /* b: the prompt's records, nothing generated */
    assert_int_equal(b.finish, SPILL_FINISH_LENGTH);
    assert_int_equal(b.tokens, 0);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.n_lp, n);
    assert_int_equal(b.lp_call, 1); /* first, alone */
    assert_int_equal(b.lp_call_len, 0);
    assert_int_equal(b.lp[0].id, full[0]);
    assert_true(isnan(b.lp[0].logprob));
    assert_int_equal(b.lp[0].n_top, 0);
    for (int i = 1; i < n; i++) {
        const spill_token_logprob *r = &b.lp[i];
        assert_int_equal(r->id, full[i]);
        if (fabs(r->logprob - ref[i].lp) > 1e-4) fail_msg("position %d: logprob %.7g, the reference %.7g", i, r->logprob, ref[i].lp);
        assert_int_equal(r->n_top, TOP);
        for (int k = 0; k < TOP; k++) {
            assert_int_equal(r->top_id[k], ref[i].top[k]);
            if (fabs(r->top_logprob[k] - ref[i].top_lp[k]) > 1e-4)
                fail_msg("position %d, alternative %d: %.7g, the reference %.7g", i, k, r->top_logprob[k], ref[i].top_lp[k]);
        }
    }
    /* the positions a generated decoding: the same logits' bits (a token's result does not depend on the
       batch), so the same records exactly */
    assert_true(a.n_lp >= n - np);
    for (int g = 0; g < n - np; g++) {
        assert_int_equal(b.lp[np + g].id, a.lp[g].id);
        assert_true(b.lp[np + g].logprob == a.lp[g].logprob);
        for (int k = 0; k < TOP; k++) assert_true(b.lp[np + g].top_logprob[k] == a.lp[g].top_logprob[k]);
    }
    /* c: the prompt's records (no alternatives) first, then 3 tokens, which the ones it gets without asked */
    assert_int_equal(c.finish, SPILL_FINISH_LENGTH);
    assert_int_equal(c.tokens, 3);
    assert_int_equal(c.n_lp, n);
    assert_int_equal(c.lp_call, 1);
    assert_int_equal(c.lp_call_len, 0);
    for (int i = 1; i < n; i++) {
        assert_int_equal(c.lp[i].n_top, 0);
        assert_true(fabs(c.lp[i].logprob - b.lp[i].logprob) <= 1e-6);
    }
    out d;
    out_init(&d);
    spill_request rd = {full, n, 3, 0, 1, 0, 1, NULL, 0, 0, 0, 0, NULL};
    if (spill_sched_submit(s, &rd, sink, &d, &id, &full_q, &err)) fail_msg("%s", err.msg);
    out_wait(&d);
    assert_int_equal(d.n_lp, 0);
    assert_string_equal(c.text, d.text);
    spill_sched_free(s);
    spill_engine_free(e);
}

/* An echo request preempted in the middle of its prompt (the KV cache short by a block) is computed
 * again from its start and still gets every position's log probabilities, once. */
static void test_prompt_logprobs_preempted(void **st) {
    (void)st;
    spill_err err = {{0}};
    spill_engine *e = engine(2, 6);
    const spill_model *m = spill_engine_model(e);
    /* b's prompt: the prompts one after another, twice: 5 blocks of 16 */
    int bt[96], n = 0;
    for (int rep = 0; rep < 2; rep++)
        for (int i = 0; i < N_P; i++) {
            int *t, k;
            assert_int_equal(spill_tokenize(&m->tok, prompts[i], strlen(prompts[i]), rep == 0 && i == 0, 1, &t, &k, &err), 0);
            for (int j = 0; j < k && n < 72; j++) bt[n++] = t[j];
            free(t);
        }
    assert_true(n > 64);
    static lp_ref ref[96];
    positions_ref(bt, n, ref);
    spill_sched_params sp = {0, 4, 0, 0};
    spill_sched *s;
    assert_int_equal(spill_sched_open(&s, e, &sp, &err), 0);
    /* h holds the scheduler in its last call, so that a and b are admitted in one step with all six
       blocks free: a takes one, then a second at its 16th position; b takes a block every 4 steps and
       finds none for its fifth, so it (the later admitted) gives its blocks back and waits for a */
    static out h, a, b;
    out_init(&h), out_init(&a), out_init(&b);
    h.hold = 1;
    submit(s, e, prompts[1], 1, NULL, 0, &h);
    wait_running(&h); /* in its last call (one token), held there */
    submit(s, e, prompts[0], 80, NULL, 0, &a);
    int id, full;
    spill_request rb = {bt, n, -1, 0, 1, 0, 1, NULL, 0, 0, 2, 1, NULL};
    b.sched = s;
    if (spill_sched_submit(s, &rb, sink, &b, &id, &full, &err)) fail_msg("%s", err.msg);
    pthread_mutex_lock(&h.lock);
    h.hold = 0;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.lock);
    out_wait(&a), out_wait(&b);
    spill_sched_stats ss;
    spill_sched_get_stats(s, &ss);
    assert_true(ss.preempted >= 1);
    assert_int_equal(b.finish, SPILL_FINISH_LENGTH);
    assert_int_equal(b.lp_call, 1);
    assert_int_equal(b.n_lp, n);
    assert_true(isnan(b.lp[0].logprob));
    for (int i = 1; i < n; i++) {
        assert_int_equal(b.lp[i].id, bt[i]);
        assert_int_equal(b.lp[i].n_top, 2);
        assert_int_equal(b.lp[i].top_id[0], ref[i].top[0]);
        if (fabs(b.lp[i].logprob - ref[i].lp) > 1e-4) fail_msg("position %d: logprob %.7g, the reference %.7g", i, b.lp[i].logprob, ref[i].lp);
    }
    spill_sched_free(s);
    spill_engine_free(e);
}

/* greedy alone with a's changes made here by hand (bias added; the logits of the tokens among the last
 * repeat_window of the prompt and the text divided by repeat when positive, multiplied when not;
 * presence + count * frequency taken off the generated tokens' logits), each token's log probability
 * under the model's own logits in ref */
static int adjusted_ref(const char *prompt, const spill_logit_adjust *a, int *ids, lp_ref *ref) {
    spill_err err = {{0}};
    spill_engine *e = engine(1, 0);
    const spill_model *m = spill_engine_model(e);
    const int V = m->hp.vocab;
    int *t, n, g = 0, *count = calloc((size_t)V, sizeof *count);
    float *adj = malloc(sizeof *adj * (size_t)V);
    assert_non_null(count);
    assert_non_null(adj);
    assert_int_equal(spill_tokenize(&m->tok, prompt, strlen(prompt), 1, 1, &t, &n, &err), 0);
    assert_int_equal(spill_engine_prefill(e, 0, t, n, 0, NULL, &err), 0);
    for (; g < MAX_TOK; g++) {
        const float *l = spill_engine_logits(e);
        memcpy(adj, l, sizeof *adj * (size_t)V);
        for (int k = 0; k < a->n_bias; k++) adj[a->bias_id[k]] += a->bias[k];
        if (a->repeat != 0 && a->repeat != 1) { /* the window: the last repeat_window of t, then ids */
            int len = n + g, from = a->repeat_window && len > a->repeat_window ? len - a->repeat_window : 0;
            for (int i = 0; i < V; i++) {
                int in = 0;
                for (int k = from; k < len && !in; k++) in = (k < n ? t[k] : ids[k - n]) == i;
                if (in) adj[i] = adj[i] > 0 ? adj[i] / a->repeat : adj[i] * a->repeat;
            }
        }
        for (int i = 0; i < V; i++) adj[i] -= count[i] ? a->presence + (float)count[i] * a->frequency : 0.0f;
        int id = argmax_logit(adj, V);
        if (spill_token_is_eog(&m->tok, id)) break;
        ids[g] = id;
        fill_ref(l, V, id, &ref[g]);
        count[id]++;
        assert_int_equal(spill_engine_forward(e, 0, &id, 1, n + g, &err), 0);
    }
    free(t);
    free(count);
    free(adj);
    spill_engine_free(e);
    return g;
}

/* logit_bias and the penalties: a penalized greedy request beside a plain one and one whose bias
 * forces a token: the first picks what the hand-made reference picks, with the model's own log
 * probabilities; the plain one is untouched by its neighbours; the forced one writes that token only */
static void test_logit_adjust(void **st) {
    (void)st;
    char plain[1024];
    alone(prompts[2], MAX_TOK, plain, sizeof plain);
    static lp_ref ref[MAX_TOK];
    int ids[MAX_TOK];
    int bias_id[2] = {300, 0};
    float bias[2] = {1.5f, -100.0f};
    spill_logit_adjust a = {bias_id, bias, 2, 0.7f, 0.5f, 0, 0};
    int n_ref = adjusted_ref(prompts[2], &a, ids, ref);
    /* the repetition penalty over the last 16 tokens, the prompt's among them at first (without them the
       picks differ) */
    static lp_ref rep_ref[MAX_TOK];
    int rep_ids[MAX_TOK];
    spill_logit_adjust rep = {NULL, NULL, 0, 0, 0, 1.8f, 16};
    int n_rep = adjusted_ref(prompts[2], &rep, rep_ids, rep_ref);
    assert_true(n_rep >= 8);
    assert_true(n_ref >= 8);
    /* the penalties matter here: the bias alone picks otherwise */
    static lp_ref bias_ref[MAX_TOK];
    int bias_ids[MAX_TOK], differ = 0;
    spill_logit_adjust bias_only = {bias_id, bias, 2, 0, 0, 0, 0};
    int n_bias = adjusted_ref(prompts[2], &bias_only, bias_ids, bias_ref);
    for (int g = 0; g < n_ref && g < n_bias; g++) differ += ids[g] != bias_ids[g];
    assert_true(differ > 0 || n_bias != n_ref);
    spill_engine *e = engine(4, 0);
    const spill_model *m = spill_engine_model(e);
    spill_sched *s;
    spill_err err = {{0}};
    assert_int_equal(spill_sched_open(&s, e, NULL, &err), 0);
    static out o[4];
    int *t, n, id, full;
    assert_int_equal(spill_tokenize(&m->tok, prompts[2], strlen(prompts[2]), 1, 1, &t, &n, &err), 0);
    int force_id = 301;
    float force = 100;
    spill_logit_adjust f = {&force_id, &force, 1, 0, 0, 0, 0};
    spill_request r[4] = {{t, n, MAX_TOK, 0, 1, 0, 1, NULL, 0, 1, TOP, 0, &a},
                          {t, n, MAX_TOK, 0, 1, 0, 1, NULL, 0, 0, 0, 0, NULL},
                          {t, n, MAX_TOK, 0.8f, 0.9f, 20, 5, NULL, 0, 0, 0, 0, &f},
                          {t, n, MAX_TOK, 0, 1, 0, 1, NULL, 0, 1, TOP, 0, &rep}};
    for (int i = 0; i < 4; i++) {
        out_init(&o[i]);
        o[i].sched = s;
        if (spill_sched_submit(s, &r[i], sink, &o[i], &id, &full, &err)) fail_msg("%s", err.msg);
        o[i].id = id;
    }
    bias_id[0] = 5, force_id = 7; /* the scheduler took copies */
    for (int i = 0; i < 4; i++) out_wait(&o[i]);
    assert_int_equal(o[0].n_lp, n_ref);
    assert_int_equal(o[3].n_lp, n_rep);
    int rep_differ = 0;
    for (int g = 0; g < n_rep; g++) {
        assert_int_equal(o[3].lp[g].id, rep_ids[g]);
        if (fabs(o[3].lp[g].logprob - rep_ref[g].lp) > 1e-4) fail_msg("token %d: logprob %.7g, the model's %.7g", g, o[3].lp[g].logprob, rep_ref[g].lp);
        rep_differ += rep_ids[g] != rep_ref[g].top[0]; /* picked other than the model's likeliest */
    }
    assert_true(rep_differ > 0);      /* the penalty changed a pick */
    assert_string_not_equal(o[3].text, plain);
    int repeats = 0;
    for (int g = 0; g < n_ref; g++) {
        assert_int_equal(o[0].lp[g].id, ids[g]);
        if (fabs(o[0].lp[g].logprob - ref[g].lp) > 1e-4) fail_msg("token %d: logprob %.7g, the model's %.7g", g, o[0].lp[g].logprob, ref[g].lp);
        assert_int_equal(o[0].lp[g].top_id[0], ref[g].top[0]);
        for (int k = 0; k < g; k++) repeats += ids[k] == ids[g];
    }
    assert_string_not_equal(o[0].text, plain);
    assert_string_equal(o[1].text, plain);
    char piece[64], forced[64 * MAX_TOK] = {0};
    int pl = spill_token_to_bytes(&m->tok, 301, piece, (int)sizeof piece);
    assert_true(pl > 0 && pl < (int)sizeof piece);
    piece[pl] = 0;
    for (int g = 0; g < MAX_TOK; g++) strcat(forced, piece);
    assert_string_equal(o[2].text, forced);
    assert_int_equal(o[2].tokens, MAX_TOK);
    /* a bad bias is refused at submit, naming the token */
    int bad_id = m->hp.vocab;
    spill_logit_adjust bad = {&bad_id, &force, 1, 0, 0, 0, 0};
    r[1].adjust = &bad;
    assert_int_equal(spill_sched_submit(s, &r[1], sink, &o[1], &id, &full, &err), -1);
    assert_non_null(strstr(err.msg, "not in the vocabulary"));
    assert_int_equal(full, 0);
    /* nothing generated and no log probabilities asked for: nothing to compute, refused */
    r[1].adjust = NULL;
    r[1].max_tokens = -1;
    assert_int_equal(spill_sched_submit(s, &r[1], sink, &o[1], &id, &full, &err), -1);
    assert_non_null(strstr(err.msg, "nothing to compute"));
    free(t);
    spill_sched_free(s);
    spill_engine_free(e);
    print_message("penalized greedy: %d tokens, %d repeats of an earlier one\n", n_ref, repeats);
}

/* OpenAI's n (spill_sched_submit_n): n sequences of one prompt, sequence i sampled with seed + i, each
 * the text that seed gives alone; the siblings wait for the first to compute the prompt and share its
 * blocks (every position but the last, which each computes for its own logits), also when the first
 * ends in the step that computed it; greedy siblings are the greedy text; n beyond the slots and the
 * queue is refused as such, a queue that cannot take all n takes none (and one that can, all). */
/* n's tests: 4 slots, 2 places in the queue, and a prompt longer than a KV block (16 tokens) */
static const char *const SIBLINGS_PROMPT = "Lily and Ben went to the park. They saw a big dog and a little cat.";
static spill_engine *siblings_open(spill_sched **s, int **t, int *n) {
    spill_engine *e = engine(4, 0);
    spill_err err = {{0}};
    spill_sched_params sp = {.max_waiting = 2};
    assert_int_equal(spill_sched_open(s, e, &sp, &err), 0);
    const char *p = SIBLINGS_PROMPT;
    assert_int_equal(spill_tokenize(&spill_engine_model(e)->tok, p, strlen(p), 1, 1, t, n, &err), 0);
    assert_true(*n - 1 >= 16); /* longer than a block: the siblings wait for the first, then share it */
    return e;
}

/* Siblings wait in the queue while their first computes the prompt; a client that goes away cancels them
   all. The first's end must not let the cancelled siblings in (each would fork the prompt's blocks for
   nothing, and one placed in a slot the step had passed was never finished when the scheduler stopped
   without draining): every choice ends cancelled and no prompt position is shared. */
static void test_cancelled_siblings(void **st) {
    (void)st;
    enum { N = 3 };
    spill_sched *s;
    int *t, n, ids[N], full;
    spill_engine *e = siblings_open(&s, &t, &n);
    spill_err err = {{0}};
    spill_request r = {t, n, MAX_TOK, 0.0f, 1.0f, 0, 7, NULL, 0, 0, 0, 0, NULL};
    static out o[N];
    void *users[N];
    for (int i = 0; i < N; i++) out_init(&o[i]), o[i].sched = s, users[i] = &o[i];
    o[0].hold = 1; /* the scheduler waits in the first's first token: its siblings are still queued */
    spill_sched_stats st0, st1;
    spill_sched_get_stats(s, &st0);
    if (spill_sched_submit_n(s, &r, N, sink, users, ids, &full, &err)) fail_msg("%s", err.msg);
    wait_running(&o[0]);
    spill_sched_get_stats(s, &st1);
    assert_int_equal(st1.waiting, N - 1);
    for (int i = 0; i < N; i++) spill_sched_cancel(s, ids[i]);
    pthread_mutex_lock(&o[0].lock);
    o[0].hold = 0;
    pthread_cond_broadcast(&o[0].cv);
    pthread_mutex_unlock(&o[0].lock);
    for (int i = 0; i < N; i++) {
        out_wait(&o[i]);
        assert_int_equal(o[i].finish, SPILL_FINISH_CANCELLED);
    }
    spill_sched_get_stats(s, &st1);
    assert_int_equal(st1.reused_tokens, st0.reused_tokens); /* no sibling was let in */
    assert_int_equal(st1.cancelled - st0.cancelled, N);
    assert_int_equal(st1.running, 0);
    assert_int_equal(st1.waiting, 0);
    assert_int_equal(st1.kv_blocks_free, st1.kv_blocks);
    spill_sched_free(s);
    free(t);
    spill_engine_free(e);
}

static void test_n_siblings(void **st) {
    (void)st;
    enum { N = 3 };
    spill_sched *s;
    int *t, n, ids[N], full;
    spill_engine *e = siblings_open(&s, &t, &n);
    spill_err err = {{0}};
    const char *prompt = SIBLINGS_PROMPT;
    static out one[N], o[N];
    spill_request r = {t, n, MAX_TOK, 1.0f, 0.95f, 40, 500, NULL, 0, 0, 0, 0, NULL};
    for (int i = 0; i < N; i++) { /* alone, seed 500 + i */
        spill_request ri = r;
        ri.seed = 500 + (uint64_t)i;
        out_init(&one[i]);
        one[i].sched = s;
        if (spill_sched_submit(s, &ri, sink, &one[i], &one[i].id, &full, &err)) fail_msg("%s", err.msg);
        out_wait(&one[i]);
    }
    assert_true(strcmp(one[0].text, one[1].text) || strcmp(one[0].text, one[2].text)); /* the seeds matter */
    spill_sched_stats st0, st1;
    spill_sched_get_stats(s, &st0);
    void *users[N];
    for (int i = 0; i < N; i++) out_init(&o[i]), o[i].sched = s, users[i] = &o[i];
    if (spill_sched_submit_n(s, &r, N, sink, users, ids, &full, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < N; i++) {
        out_wait(&o[i]);
        if (strcmp(o[i].text, one[i].text)) fail_msg("sibling %d: '%s' vs alone '%s'", i, o[i].text, one[i].text);
    }
    spill_sched_get_stats(s, &st1);
    printf("n = %d: %llu prompt positions shared (%d tokens a prompt)\n", N,
           (unsigned long long)(st1.reused_tokens - st0.reused_tokens), n);
    assert_int_equal(st1.reused_tokens - st0.reused_tokens, (uint64_t)(N - 1) * (uint64_t)(n - 1));
    assert_int_equal(st1.requests - st0.requests, N);
    /* greedy: two of the greedy text */
    char ref[4096];
    alone(prompt, MAX_TOK, ref, sizeof ref);
    r.temp = 0;
    for (int i = 0; i < 2; i++) out_init(&o[i]), o[i].sched = s;
    if (spill_sched_submit_n(s, &r, 2, sink, users, ids, &full, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < 2; i++) {
        out_wait(&o[i]);
        if (strcmp(o[i].text, ref)) fail_msg("greedy sibling %d: '%s' vs alone '%s'", i, o[i].text, ref);
    }
    /* 4 slots and 2 places in the queue: 7 is never possible, which is not "retry later" */
    void *many[7] = {0};
    int many_ids[7];
    assert_int_equal(spill_sched_submit_n(s, &r, 7, sink, many, many_ids, &full, &err), -1);
    assert_int_equal(full, 0);
    assert_non_null(strstr(err.msg, "n is 7"));
    assert_int_equal(spill_sched_submit_n(s, &r, 0, sink, many, many_ids, &full, &err), -1);
    /* all or none: the scheduler held inside a step with one request running and three waiting for the
       three free slots, 3 more would leave 3 waiting beyond them, 1 more than the queue's 2 places */
    out held[4];
    for (int i = 0; i < 4; i++) out_init(&held[i]), held[i].sched = s;
    held[0].hold = 1;
    if (spill_sched_submit(s, &r, sink, &held[0], &held[0].id, &full, &err)) fail_msg("%s", err.msg);
    wait_running(&held[0]);
    for (int i = 1; i < 4; i++)
        if (spill_sched_submit(s, &r, sink, &held[i], &held[i].id, &full, &err)) fail_msg("%s", err.msg);
    spill_sched_get_stats(s, &st0);
    void *three[3] = {&o[0], &o[1], &o[2]};
    assert_int_equal(spill_sched_submit_n(s, &r, 3, sink, three, ids, &full, &err), -1);
    assert_int_equal(full, 1);
    spill_sched_get_stats(s, &st1);
    assert_int_equal(st1.requests, st0.requests);
    assert_int_equal(st1.waiting, 3);
    for (int i = 0; i < 2; i++) out_init(&o[i]), o[i].sched = s; /* 2 leave exactly 2 beyond the free slots: taken */
    if (spill_sched_submit_n(s, &r, 2, sink, users, ids, &full, &err)) fail_msg("%s", err.msg);
    spill_sched_get_stats(s, &st1);
    assert_int_equal(st1.waiting, 5);
    pthread_mutex_lock(&held[0].lock);
    held[0].hold = 0;
    pthread_cond_broadcast(&held[0].cv);
    pthread_mutex_unlock(&held[0].lock);
    for (int i = 0; i < 4; i++) out_wait(&held[i]);
    for (int i = 0; i < 2; i++) out_wait(&o[i]), assert_string_equal(o[i].text, ref);
    /* a first that ends in the step that computed the prompt (max_tokens 1) still leaves it to the others */
    r.max_tokens = 1;
    spill_sched_get_stats(s, &st0);
    for (int i = 0; i < N; i++) out_init(&o[i]), o[i].sched = s;
    if (spill_sched_submit_n(s, &r, N, sink, users, ids, &full, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < N; i++) out_wait(&o[i]), assert_int_equal(o[i].tokens, 1);
    spill_sched_get_stats(s, &st1);
    assert_int_equal(st1.reused_tokens - st0.reused_tokens, (uint64_t)(N - 1) * (uint64_t)(n - 1));
    free(t);
    spill_sched_free(s);
    spill_engine_free(e);
}

/* --itl-target: with a target no step can meet, requests run one at a time (each admitted only when the
 * one before is gone) and still get the text they get alone; with a target every step meets, the
 * first runs alone until a step is timed, then the others join it; without one, no cap is reported */
static int paced(double target_ms, int *cap) {
    static char ref[N_P][4096];
    for (int i = 0; i < N_P; i++) alone(prompts[i], MAX_TOK, ref[i], sizeof ref[i]);
    spill_engine *e = engine(N_P, 0);
    spill_sched *s;
    spill_err err = {{0}};
    spill_sched_params sp = {0, 0, 0, target_ms};
    assert_int_equal(spill_sched_open(&s, e, &sp, &err), 0);
    all_as_alone(s, e, ref);
    spill_sched_stats st;
    spill_sched_get_stats(s, &st);
    printf("target %g ms: at most %d running at once, %llu steps, a step's cap now %d tokens\n", target_ms, st.max_running,
           (unsigned long long)st.steps, st.step_cap);
    assert_int_equal(st.finished, N_P);
    assert_int_equal(st.kv_blocks_free, st.kv_blocks);
    *cap = st.step_cap;
    spill_sched_free(s);
    spill_engine_free(e);
    return st.max_running;
}

static void test_itl_target(void **st) {
    (void)st;
    int cap;
    assert_int_equal(paced(1e-6, &cap), 1); /* every step is over a nanosecond */
    assert_int_equal(cap, 1);
    int most = paced(1e6, &cap); /* and under 1000 s */
    assert_true(most > 1);
    assert_int_equal(cap, 32); /* the engine's batch */
    assert_true(paced(0, &cap) > 1);
    assert_int_equal(cap, 0);
}

int main(void) {
    require_file(stories_path(), "the small test models live in tests/models");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_requests),    cmocka_unit_test(test_sampled_together),
        cmocka_unit_test(test_prefill_budget),    cmocka_unit_test(test_preemption),
        cmocka_unit_test(test_cancel_and_stop),  cmocka_unit_test(test_queue_full_and_sharing),
        cmocka_unit_test(test_drain),            cmocka_unit_test(test_prompt_order),
        cmocka_unit_test(test_logprobs),         cmocka_unit_test(test_prompt_logprobs),
        cmocka_unit_test(test_prompt_logprobs_preempted), cmocka_unit_test(test_logit_adjust),
        cmocka_unit_test(test_n_siblings),
        cmocka_unit_test(test_cancelled_siblings), cmocka_unit_test(test_itl_target),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
