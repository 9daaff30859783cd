/* The parts that threads share, written to be run under ThreadSanitizer (scripts/tsan.sh; an ordinary
 * build runs it too): the kernels' thread pool, the arena with its adaptors (limit, statistics) under
 * eight threads of concurrent allocate/free, and the KV cache with forked sequences read by the pool's
 * workers, both in engine steps and through the scheduler with submitters and cancellers on other
 * threads, and one tokenizer used by eight threads at once. The preload shim's eight-thread test is test_preload (tests/test_preload_prog.c), which the
 * TSan job runs too. Each test checks results as well, so that a race that corrupts shows here even
 * without TSan. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>

#include "engine.h"
#include "kv.h"
#include "scheduler.h"
#include "spill_alloc.h"
#include "spill_kernels.h"
#include "test_util.h"
#include "tokenizer.h"

/* ---- the thread pool ---- */

typedef struct pool_job {
    int64_t *slots; /* (nth) each worker writes its own */
    int round;
    atomic_int calls;
} pool_job;

static void pool_fn(void *ctx, int ith, int nth) {
    pool_job *j = ctx;
    int64_t s = 0;
    for (int i = ith; i < 10000; i += nth) s += i + j->round;
    j->slots[ith] = s;
    atomic_fetch_add(&j->calls, 1);
}

static void test_pool(void **state) {
    (void)state;
    for (int size = 1; size <= 8; size *= 2) {
        spill_pool *p = spill_pool_create(size);
        assert_non_null(p);
        int nth = spill_pool_size(p);
        assert_int_equal(nth, size);
        int64_t slots[8];
        for (int round = 0; round < 300; round++) {
            pool_job j = {slots, round, 0};
            spill_pool_run(p, pool_fn, &j);
            assert_int_equal(atomic_load(&j.calls), nth);
            int64_t sum = 0;
            for (int i = 0; i < nth; i++) sum += slots[i];
            assert_int_equal(sum, 10000LL * 9999 / 2 + 10000LL * round);
        }
        spill_pool_free(p);
    }
}

/* spill_pool_share: units from a counter, each done exactly once, by at most nth distinct threads, and
 * the pool's spill_pool_run jobs in between still reach every thread. The job lives on the caller's
 * stack and is overwritten with junk once spill_pool_share returns, as the forward pass's jobs are
 * reused: a worker that came in after the return would find no magic (counted in late_calls). Each
 * unit's result is also a plain store, which the caller may read only through the pool's
 * release/acquire pairs (TSan, or a weakly ordered CPU, sees it when they are missing). */
enum { SHARE_UNITS = 997, SHARE_MAGIC = 0x5eed };
typedef struct share_job {
    int magic;
    atomic_int next;
    atomic_int done[SHARE_UNITS];
    long long plain[SHARE_UNITS];
    atomic_int by[8]; /* fn calls per ith */
    atomic_llong sum;
} share_job;
static atomic_int late_calls;

static void share_fn(void *ctx, int ith, int nth) {
    share_job *j = ctx;
    if (j->magic != SHARE_MAGIC) {
        atomic_fetch_add(&late_calls, 1);
        return;
    }
    assert_true(ith >= 0 && ith < nth && nth <= 8);
    atomic_fetch_add(&j->by[ith], 1);
    for (int u; (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < SHARE_UNITS;) {
        atomic_fetch_add(&j->done[u], 1);
        j->plain[u] = (long long)u * u + 1;
        atomic_fetch_add(&j->sum, (long long)u * u);
    }
    if (j->magic != SHARE_MAGIC) atomic_fetch_add(&late_calls, 1); /* the job went while we were in it */
}

/* returns how many fn calls came from workers (ith > 0) */
static int share_once(spill_pool *p) {
    share_job j;
    memset(&j, 0, sizeof j);
    j.magic = SHARE_MAGIC;
    spill_pool_share(p, share_fn, &j);
    long long want = 0;
    for (int u = 0; u < SHARE_UNITS; u++) {
        assert_int_equal(atomic_load(&j.done[u]), 1);
        assert_int_equal(j.plain[u], (long long)u * u + 1);
        want += (long long)u * u;
    }
    assert_int_equal(atomic_load(&j.sum), want);
    assert_int_equal(atomic_load(&j.by[0]), 1); /* the caller always runs it */
    int workers = 0;
    for (int i = 1; i < 8; i++) {
        assert_in_range(atomic_load(&j.by[i]), 0, 1);
        workers += atomic_load(&j.by[i]);
    }
    assert_in_range(workers, 0, spill_pool_size(p) - 1);
    memset(&j, 0xa5, sizeof j); /* the job's memory goes to other uses */
    assert_int_equal(atomic_load(&late_calls), 0);
    return workers;
}

static void test_pool_share(void **state) {
    (void)state;
    for (int size = 1; size <= 8; size *= 2) {
        spill_pool *p = spill_pool_create(size);
        assert_non_null(p);
        int64_t slots[8];
        for (int round = 0; round < 300; round++) {
            share_once(p);
            pool_job j = {slots, round, 0};
            spill_pool_run(p, pool_fn, &j); /* the share jobs between left every thread in step */
            assert_int_equal(atomic_load(&j.calls), size);
        }
        spill_pool_free(p);
    }
}

/* A worker the OS does not run is not waited for: the pool's 3 workers are held in a
 * signal handler (as a preempted thread is held off its core) while share jobs run; without that rule
 * the first job would wait for good and the alarm would end the test. Then they go on and take part
 * again. */
static sem_t held_arrived, held_release;
static void hold_handler(int sig) {
    (void)sig;
    int e = errno;
    sem_post(&held_arrived);
    while (sem_wait(&held_release) && errno == EINTR) {
    }
    errno = e;
}

/* the process's thread ids but the caller's, n at most; returns how many */
static int thread_ids(pid_t *ids, int n) {
    pid_t self = (pid_t)syscall(SYS_gettid);
    int k = 0;
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) && k < n;) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != self) ids[k++] = tid;
    }
    closedir(d);
    return k;
}

static void test_pool_share_absent_workers(void **state) {
    (void)state;
    /* the pool's workers: the threads that are new after it is made (a sanitizer's own threads are not
       held: they were there before) */
    pid_t before[64], after[64], workers[8];
    int nb = thread_ids(before, 64);
    spill_pool *p = spill_pool_create(4);
    assert_non_null(p);
    int na = thread_ids(after, 64), held = 0;
    for (int i = 0; i < na; i++) {
        int old = 0;
        for (int k = 0; k < nb; k++) old |= after[i] == before[k];
        if (!old && held < 8) workers[held++] = after[i];
    }
    assert_int_equal(held, 3);
    share_once(p);
    usleep(200 * 1000); /* the workers past their spinning, asleep (none between its lock and its wait) */
    assert_int_equal(sem_init(&held_arrived, 0, 0), 0);
    assert_int_equal(sem_init(&held_release, 0, 0), 0);
    struct sigaction sa = {0}, old;
    sa.sa_handler = hold_handler;
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    for (int i = 0; i < held; i++) assert_int_equal(syscall(SYS_tgkill, getpid(), workers[i], SIGUSR1), 0);
    for (int i = 0; i < held; i++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 30;
        int rc;
        while ((rc = sem_timedwait(&held_arrived, &until)) && errno == EINTR) {
        }
        assert_int_equal(rc, 0); /* each worker is in the handler */
    }
    alarm(60); /* a pool that waits for the held workers fails here instead of hanging */
    for (int k = 0; k < 50; k++) assert_int_equal(share_once(p), 0);
    alarm(0);
    for (int i = 0; i < held; i++) sem_post(&held_release);
    int joined = 0;
    for (int k = 0; k < 200; k++) joined += share_once(p);
    int64_t slots[8];
    pool_job j = {slots, 1, 0};
    spill_pool_run(p, pool_fn, &j);
    assert_int_equal(atomic_load(&j.calls), 4);
    printf("workers joined %d of 600 possible share calls after release\n", joined);
    assert_int_equal(sigaction(SIGUSR1, &old, NULL), 0);
    sem_destroy(&held_arrived);
    sem_destroy(&held_release);
    spill_pool_free(p);
}

/* ---- the arena and adaptors: 8 threads allocating and freeing at once ---- */

typedef struct arena_job {
    spill_mem *mem;
    int id;
    int failures; /* allocations the limit refused: expected now and then, counted */
} arena_job;

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void *arena_worker(void *arg) {
    arena_job *j = arg;
    enum { LIVE = 24 };
    uint8_t *p[LIVE] = {0};
    size_t n[LIVE] = {0};
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(j->id + 1);
    for (int it = 0; it < 3000; it++) {
        int k = (int)(next_rand(&rng) % LIVE);
        if (p[k]) {
            /* nobody else wrote into it: allocations never overlap */
            for (size_t i = 0; i < n[k]; i += 97)
                if (p[k][i] != (uint8_t)(j->id * 31 + k)) return "an allocation was overwritten by another";
            spill_err err = {{0}};
            if (spill_mem_release(j->mem, p[k], n[k], &err)) return "release failed";
            p[k] = NULL;
            continue;
        }
        uint64_t r = next_rand(&rng);
        /* mostly small sub-allocations, now and then a region of whole chunks */
        n[k] = r % 64 == 0 ? SPILL_ARENA_GRAIN + (r >> 8) % SPILL_ARENA_GRAIN : 1 + (r >> 8) % 20000;
        spill_err err = {{0}};
        p[k] = spill_mem_alloc(j->mem, n[k], spill_placement_host(), "test", &err);
        if (!p[k]) {
            j->failures++;
            continue;
        }
        for (size_t i = 0; i < n[k]; i += 97)
            if (p[k][i]) return "new memory is not zero-filled";
        memset(p[k], j->id * 31 + k, n[k]);
        if (it % 100 == 0) {
            spill_mem_stats st;
            spill_mem_get_stats(j->mem, &st); /* the statistics read while others allocate */
            size_t sz;
            spill_placement pl;
            if (!spill_mem_lookup(j->mem, p[k], &sz, &pl) || sz < n[k]) return "lookup of a live allocation failed";
        }
    }
    for (int k = 0; k < LIVE; k++)
        if (p[k]) spill_mem_put(j->mem, p[k], n[k]);
    return NULL;
}

static void test_arena_eight_threads(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_mem *mem = spill_mem_create("host", &err);
    assert_non_null(mem);
    /* a limit that the threads together run into now and then: the limit adaptor under contention */
    spill_mem_set_limit(mem, SPILL_TIER_HOST, (uint64_t)48 << 20);
    pthread_t th[8];
    arena_job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (arena_job){mem, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, arena_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        if (rc) fail_msg("thread %d: %s", i, (const char *)rc);
    }
    spill_mem_stats st;
    spill_mem_get_stats(mem, &st);
    assert_int_equal(st.tier[SPILL_TIER_HOST].current, 0); /* everything given back, counted exactly */
    assert_true(st.tier[SPILL_TIER_HOST].peak > 0);
    assert_true(st.tier[SPILL_TIER_HOST].peak <= (uint64_t)48 << 20);
    spill_mem_free(mem);
}

/* ---- the KV cache with forked sequences, read by the pool's workers ---- */

/* stories260K for 4 sequences in blocks of 16 positions, 4 threads */
static spill_engine *open_forked(int batch) {
    require_file(stories_path(), "stories260K");
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = stories_path();
    p.ctx = 128;
    p.batch = batch;
    p.n_seqs = 4;
    p.kv_block = 16;
    p.threads = 4;
    p.quiet = 1;
    spill_engine *e = NULL;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s", err.msg);
    return e;
}

static void test_kv_forked_engine(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_engine *e = open_forked(8);
    int vocab = spill_engine_model(e)->hp.vocab;
    int prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = 1 + (i * 7) % (vocab - 1);
    assert_int_equal(spill_engine_forward(e, 0, prompt, 8, 0, &err), 0);
    assert_int_equal(spill_engine_forward(e, 0, prompt + 8, 8, 8, &err), 0);
    assert_int_equal(spill_engine_forward(e, 0, prompt + 16, 4, 16, &err), 0);
    int first = argmax_logit(spill_engine_logits(e), vocab);
    spill_kv *kv = spill_engine_kv(e);
    /* three forks share seq 0's blocks; each then writes into the shared partial block (copy on write) */
    for (int s = 1; s < 4; s++) assert_int_equal(spill_kv_fork(kv, 0, s, &err), 0);
    int tok[4], seq[4], pos[4], next[4];
    for (int s = 0; s < 4; s++) next[s] = first;
    for (int step = 0; step < 12; step++) {
        for (int s = 0; s < 4; s++) tok[s] = next[s], seq[s] = s, pos[s] = 20 + step;
        uint8_t out[4] = {1, 1, 1, 1};
        spill_batch b = {4, tok, seq, pos, out, NULL, 0};
        if (spill_engine_step(e, &b, &err)) fail_msg("%s", err.msg);
        for (int s = 0; s < 4; s++) next[s] = argmax_logit(spill_engine_logits_at(e, s), vocab);
        /* the same history gives the same greedy token in every fork */
        for (int s = 1; s < 4; s++) assert_int_equal(next[s], next[0]);
    }
    spill_engine_stats st;
    spill_engine_get_stats(e, &st);
    assert_true(st.kv.shared > 0);
    assert_true(st.kv.cow_copies > 0);
    spill_engine_free(e);
}

typedef struct sched_out {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int tokens, done;
    spill_finish finish;
} sched_out;

static void sched_sink(void *user, const char *text, size_t len, int n_tokens, const spill_token_logprob *lp,
                       int n_lp, spill_finish finish) {
    (void)lp, (void)n_lp;
    (void)text, (void)len;
    sched_out *o = user;
    pthread_mutex_lock(&o->lock);
    o->tokens += n_tokens;
    if (finish != SPILL_FINISH_NONE) o->finish = finish, o->done = 1, pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->lock);
}

typedef struct submitter {
    spill_sched *s;
    int id, vocab;
    sched_out out[6];
} submitter;

static void *submit_worker(void *arg) {
    submitter *w = arg;
    int prompt[40];
    /* every prompt begins alike (shared KV blocks), then differs */
    for (int i = 0; i < 40; i++) prompt[i] = 1 + (i < 32 ? i * 5 : i * 5 + w->id) % (w->vocab - 1);
    int ids[6];
    for (int r = 0; r < 6; r++) {
        sched_out *o = &w->out[r];
        pthread_mutex_init(&o->lock, NULL);
        pthread_cond_init(&o->cv, NULL);
        spill_request req = {prompt, 40, 8 + r, 0.0f, 1.0f, 0, (uint64_t)r, NULL, 0, 0, 0, 0, NULL};
        spill_err err = {{0}};
        int full = 0;
        while (spill_sched_submit(w->s, &req, sched_sink, o, &ids[r], &full, &err)) {
            if (!full) return "submit refused a request";
            usleep(1000);
        }
        if (r % 3 == 2) spill_sched_cancel(w->s, ids[r]); /* a client that went away, from this thread */
        spill_sched_stats st;
        spill_sched_get_stats(w->s, &st);
    }
    for (int r = 0; r < 6; r++) {
        sched_out *o = &w->out[r];
        pthread_mutex_lock(&o->lock);
        while (!o->done) pthread_cond_wait(&o->cv, &o->lock);
        pthread_mutex_unlock(&o->lock);
        if (o->finish == SPILL_FINISH_ERROR) return "a request failed";
        if (r % 3 != 2 && o->finish != SPILL_FINISH_LENGTH && o->finish != SPILL_FINISH_STOP)
            return "a request that was not cancelled did not finish";
    }
    return NULL;
}

static void test_kv_forked_scheduler(void **state) {
    (void)state;
    spill_err err = {{0}};
    spill_engine *e = open_forked(16);
    spill_sched *s = NULL;
    spill_sched_params sp = {0};
    if (spill_sched_open(&s, e, &sp, &err)) fail_msg("%s", err.msg);
    submitter w[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = s, w[i].id = i, w[i].vocab = spill_engine_model(e)->hp.vocab;
        assert_int_equal(pthread_create(&th[i], NULL, submit_worker, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        if (rc) fail_msg("submitter %d: %s", i, (const char *)rc);
    }
    spill_sched_stats st;
    spill_sched_get_stats(s, &st);
    assert_int_equal(st.requests, 24);
    assert_int_equal(st.finished, 24); /* cancelled ones included */
    assert_true(st.cancelled >= 1 && st.cancelled <= 8);
    assert_true(st.reused_tokens > 0); /* the common prefix was shared */
    assert_int_equal(st.running, 0);
    spill_sched_free(s);
    spill_engine_free(e);
}

/* ---- one tokenizer on several threads (spill-server tokenizes on every connection's thread) ---- */

typedef struct tok_job {
    const spill_tokenizer *t;
    const char *text;
    const int *want;
    int n_want, bad;
} tok_job;

static void *tok_worker(void *arg) {
    tok_job *j = arg;
    for (int r = 0; r < 300; r++) {
        int *ids = NULL, n = 0;
        spill_err err = {{0}};
        if (spill_tokenize(j->t, j->text, strlen(j->text), 0, 0, &ids, &n, &err) || n != j->n_want ||
            memcmp(ids, j->want, sizeof(int) * (size_t)n))
            j->bad++;
        free(ids);
    }
    return NULL;
}

static void test_tokenizer_threads(void **state) {
    (void)state;
    spill_tokenizer t;
    spill_err err = {{0}};
    /* GPT-2's byte-level BPE: its pre-tokenizer is a regular expression */
    if (spill_tokenizer_init_json(&t, SPILL_FIXTURES_DIR "/tokenizers/hf/gpt2/tokenizer.json", &err)) fail_msg("%s", err.msg);
    const char *texts[4] = {"Once upon a time, in a small village by the sea, there lived an old fisherman who",
                            "The history of the printing press begins in the fifteenth century, when",
                            "Explain how a refrigerator keeps food cold, step by step. It's 42 degrees!",
                            "  spaces   and\ttabs\nand lines: 'quoted' words, numbers 12345 and more"};
    int *want[4], n_want[4];
    for (int i = 0; i < 4; i++)
        if (spill_tokenize(&t, texts[i], strlen(texts[i]), 0, 0, &want[i], &n_want[i], &err)) fail_msg("%s", err.msg);
    pthread_t th[8];
    tok_job jobs[8];
    for (int i = 0; i < 8; i++) {
        jobs[i] = (tok_job){&t, texts[i % 4], want[i % 4], n_want[i % 4], 0};
        assert_int_equal(pthread_create(&th[i], NULL, tok_worker, &jobs[i]), 0);
    }
    int bad = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        bad += jobs[i].bad;
    }
    for (int i = 0; i < 4; i++) free(want[i]);
    spill_tokenizer_free(&t);
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_pool_share),
        cmocka_unit_test(test_pool_share_absent_workers),
        cmocka_unit_test(test_arena_eight_threads),
        cmocka_unit_test(test_kv_forked_engine),
        cmocka_unit_test(test_kv_forked_scheduler),
        cmocka_unit_test(test_tokenizer_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
