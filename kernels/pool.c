/* A small fork-join pool. Decode issues a few hundred short parallel ops per token, so workers
 * spin for a while on the job word before sleeping on a condition variable: waking a sleeping
 * thread costs tens of microseconds, which would dominate a 135M-parameter model.
 *
 * Two kinds of job. spill_pool_run: every thread runs fn once (a split by ith / nth is allowed), so
 * the caller waits for each worker to come. spill_pool_share: fn takes its work from counters of its
 * own, so whoever comes does it all; once the caller's fn returns (nothing left to take) the job is
 * closed, a worker that had not come by then skips it, and the caller waits only for those inside.
 * On a machine with more runnable threads than cores a worker may not run for a scheduler's time
 * slice (milliseconds): waiting for it to come, when the caller had already done its share, made
 * SmolLM2's decode with -t 2 beside 6 busy processes 8x slower than with -t 1 (docs/results.md).
 *
 * The job word: the job's number in the high 32 bits, CLOSED, and the workers inside in the low bits.
 * A worker enters by compare-and-swap on the word it saw (so never into a closed job, nor a later one
 * than the fn and ctx it then reads); fn and ctx are written before the job's number is published
 * (release) and read after entering (acquire); leaving is a release decrement, and the caller reuses
 * nothing of the job before it has seen no one inside (acquire). The spinning only decides how soon a
 * worker notices, never whether. The number is 32 bits: a worker that did not run at all while 2^32
 * jobs went by would take the last for the one it saw (hours of jobs at a microsecond each). */
#include "spill_kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define SPIN_ITERS 200000
#define CLOSED (1ull << 31)
#define INSIDE (CLOSED - 1)

struct spill_pool {
    int n; /* threads including the caller */
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    _Atomic uint64_t job; /* number << 32 | CLOSED | workers inside */
    atomic_int pending;   /* spill_pool_run: workers still to run the current job */
    atomic_int sleepers;  /* workers on (or about to wait on) the condition variable */
    atomic_int stop;
    uint32_t number;      /* the caller's count of jobs */
    int all;              /* the current job is spill_pool_run's */
    spill_pool_fn fn;
    void *ctx;
};

typedef struct { spill_pool *p; int ith; } worker_arg;

static void *worker(void *arg) {
    worker_arg *wa = arg;
    spill_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint64_t w;
        int spins = 0;
        while ((uint32_t)((w = atomic_load_explicit(&p->job, memory_order_acquire)) >> 32) == seen && !atomic_load(&p->stop)) {
            if (++spins < SPIN_ITERS) continue;
            /* counted before the job word is looked at again (both sequentially consistent): a caller
               that publishes a job and then sees no sleeper had published it before this look */
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while ((uint32_t)(atomic_load(&p->job) >> 32) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
            spins = 0;
        }
        if (atomic_load(&p->stop)) return NULL;
        seen = (uint32_t)(w >> 32);
        /* enter the job numbered seen unless it is closed (or already followed by another) */
        int in = 0;
        while (!(w & CLOSED) && (uint32_t)(w >> 32) == seen)
            if (atomic_compare_exchange_weak_explicit(&p->job, &w, w + 1, memory_order_acq_rel, memory_order_acquire)) {
                in = 1;
                break;
            }
        if (!in) continue; /* closed, or a newer number: the loop above sees that one */
        int all = p->all;
        p->fn(p->ctx, ith, p->n);
        atomic_fetch_sub_explicit(&p->job, 1, memory_order_release);
        if (all) atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
    }
}

spill_pool *spill_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    spill_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads || pthread_mutex_init(&p->lock, NULL)) {
        free(p->threads);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL)) {
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->ith = i;
        }
        if (!wa || pthread_create(&p->threads[i], NULL, worker, wa)) {
            free(wa);
            /* run with the threads we got (spill_pool_size says how many); workers read n only
               inside a job, and none has started one yet */
            fprintf(stderr, "spill: could start only %d of %d threads; running with %d\n", i, n_threads, i);
            p->n = i;
            break;
        }
    }
    return p;
}

void spill_pool_free(spill_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}

int spill_pool_size(const spill_pool *p) { return p ? p->n : 1; }

static void run(spill_pool *p, spill_pool_fn fn, void *ctx, int all) {
    if (!p || p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    /* the last job is closed and empty: no worker reads these until the new number is out */
    p->fn = fn;
    p->ctx = ctx;
    p->all = all;
    if (all) atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    uint64_t number = ++p->number;
    /* sequentially consistent (a release store as well): with the worker's count of sleepers, either
       this caller sees the sleeper or the sleeper sees this number. Spinning workers need no lock, so
       the caller takes it only when one sleeps: a worker holding it, preempted, would stall the caller
       for a time slice, which is what share jobs exist to avoid */
    atomic_store(&p->job, number << 32);
    if (atomic_load(&p->sleepers)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    fn(ctx, 0, p->n);
    if (all)
        while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) sched_yield();
    atomic_fetch_or_explicit(&p->job, CLOSED, memory_order_acq_rel);
    while (atomic_load_explicit(&p->job, memory_order_acquire) & INSIDE) sched_yield();
}

void spill_pool_run(spill_pool *p, spill_pool_fn fn, void *ctx) { run(p, fn, ctx, 1); }

void spill_pool_share(spill_pool *p, spill_pool_fn fn, void *ctx) { run(p, fn, ctx, 0); }
