/* Adaptors: backends that wrap another backend, as RMM's resource adaptors do.
 *   limit  — refuses an allocation that would take a tier past its limit (reserve first, so that
 *            threads racing for the last bytes cannot overshoot together)
 *   stats  — {current, peak, total, count} per tier and counts of every call
 *   log    — one CSV line per call, with a timestamp
 * Each forwards every slot it does not change; a NULL slot of the inner backend stays a default. */
#include "spill_alloc.h"

#include <errno.h>
#include <pthread.h>

/* ---- shared forwarding for the slots an adaptor leaves alone ---- */

typedef struct wrap {
    spill_backend in;
} wrap;

static int fwd_advise(spill_backend in, void *p, size_t n, spill_placement pl, spill_err *err) {
    return in.iface->advise ? in.iface->advise(in.ctx, p, n, pl, err) : 0;
}
static int fwd_prefetch(spill_backend in, void *p, size_t n, spill_tier t, int node, void *q, spill_err *err) {
    return in.iface->prefetch ? in.iface->prefetch(in.ctx, p, n, t, node, q, err) : 0;
}
static int fwd_prefetch_batch(spill_backend in, void *const *p, const size_t *n, size_t k, spill_tier t, int node,
                              void *q, spill_err *err) {
    if (in.iface->prefetch_batch) return in.iface->prefetch_batch(in.ctx, p, n, k, t, node, q, err);
    for (size_t i = 0; i < k; i++)
        if (fwd_prefetch(in, p[i], n[i], t, node, q, err)) return -1;
    return 0;
}
static int fwd_discard(spill_backend in, void *p, size_t n, spill_err *err) {
    return in.iface->discard ? in.iface->discard(in.ctx, p, n, err) : 0;
}
static int fwd_residency(spill_backend in, const void *p, size_t n, uint64_t out[SPILL_TIER_COUNT], spill_err *err) {
    if (in.iface->residency) return in.iface->residency(in.ctx, p, n, out, err);
    memset(out, 0, sizeof(uint64_t) * SPILL_TIER_COUNT);
    out[SPILL_TIER_HOST] = n;
    return 0;
}
static int fwd_sync(spill_backend in, void *q, spill_err *err) {
    return in.iface->sync ? in.iface->sync(in.ctx, q, err) : 0;
}
static int fwd_zero(spill_backend in, void *p, size_t n, spill_placement pl, spill_err *err) {
    if (in.iface->zero) return in.iface->zero(in.ctx, p, n, pl, err);
    memset(p, 0, n);
    return 0;
}

/* ---- limit ---- */

typedef struct limit_ctx {
    spill_backend in;
    pthread_mutex_t lock;
    uint64_t limit[SPILL_TIER_COUNT], used[SPILL_TIER_COUNT];
} limit_ctx;

static int limit_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    limit_ctx *c = ctx;
    pthread_mutex_lock(&c->lock);
    uint64_t lim = c->limit[pl.tier], cur = c->used[pl.tier];
    if (lim && (size > lim || cur > lim - size)) {
        pthread_mutex_unlock(&c->lock);
        return spill_err_set(err, "%zu bytes requested in %s but %llu are in use and the limit is %llu", size,
                             spill_tier_name(pl.tier), (unsigned long long)cur, (unsigned long long)lim);
    }
    c->used[pl.tier] += size;
    pthread_mutex_unlock(&c->lock);
    if (c->in.iface->alloc(c->in.ctx, size, pl, out, err)) {
        pthread_mutex_lock(&c->lock);
        c->used[pl.tier] -= size;
        pthread_mutex_unlock(&c->lock);
        return -1;
    }
    return 0;
}

static void limit_free(void *ctx, void *p, size_t size, spill_placement pl) {
    limit_ctx *c = ctx;
    c->in.iface->free(c->in.ctx, p, size, pl);
    pthread_mutex_lock(&c->lock);
    SPILL_ASSERT(c->used[pl.tier] >= size);
    c->used[pl.tier] -= size;
    pthread_mutex_unlock(&c->lock);
}

#define FWD_SLOTS(type)                                                                                     \
    static int type##_advise(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {            \
        return fwd_advise(((type##_ctx *)ctx)->in, p, n, pl, err);                                          \
    }                                                                                                       \
    static int type##_discard(void *ctx, void *p, size_t n, spill_err *err) {                               \
        return fwd_discard(((type##_ctx *)ctx)->in, p, n, err);                                             \
    }                                                                                                       \
    static int type##_residency(void *ctx, const void *p, size_t n, uint64_t out[SPILL_TIER_COUNT],        \
                                spill_err *err) {                                                           \
        return fwd_residency(((type##_ctx *)ctx)->in, p, n, out, err);                                      \
    }                                                                                                       \
    static int type##_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {              \
        return fwd_zero(((type##_ctx *)ctx)->in, p, n, pl, err);                                            \
    }

FWD_SLOTS(limit)

static int limit_prefetch(void *ctx, void *p, size_t n, spill_tier t, int node, void *q, spill_err *err) {
    return fwd_prefetch(((limit_ctx *)ctx)->in, p, n, t, node, q, err);
}
static int limit_prefetch_batch(void *ctx, void *const *p, const size_t *n, size_t k, spill_tier t, int node,
                                void *q, spill_err *err) {
    return fwd_prefetch_batch(((limit_ctx *)ctx)->in, p, n, k, t, node, q, err);
}
static int limit_sync(void *ctx, void *q, spill_err *err) { return fwd_sync(((limit_ctx *)ctx)->in, q, err); }

static void limit_destroy(void *ctx) {
    limit_ctx *c = ctx;
    c->in.iface->destroy(c->in.ctx);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* An adaptor's table: its own operations (type##_alloc ... type##_destroy) over the inner backend's
 * name, alignment and residency exactness. */
#define ADAPTOR_IFACE(type, in)                                                                            \
    ((spill_backend_iface){.name = (in)->name,                                                             \
                           .align = (in)->align,                                                           \
                           .alloc = type##_alloc,                                                          \
                           .free = type##_free,                                                            \
                           .advise = type##_advise,                                                        \
                           .prefetch = type##_prefetch,                                                    \
                           .prefetch_batch = type##_prefetch_batch,                                        \
                           .discard = type##_discard,                                                      \
                           .residency = type##_residency,                                                  \
                           .sync = type##_sync,                                                            \
                           .zero = type##_zero,                                                            \
                           .destroy = type##_destroy,                                                      \
                           .residency_exact = (in)->residency_exact})

/* Adaptors copy the inner backend's name and alignment, so each keeps its own iface table. */
typedef struct limit_box {
    limit_ctx c;
    spill_backend_iface iface;
} limit_box;

int spill_adaptor_limit_init(spill_backend *out, spill_backend inner, spill_err *err) {
    limit_box *b = calloc(1, sizeof *b);
    if (!b) {
        inner.iface->destroy(inner.ctx);
        return spill_err_set(err, "out of memory");
    }
    b->c.in = inner;
    pthread_mutex_init(&b->c.lock, NULL);
    b->iface = ADAPTOR_IFACE(limit, inner.iface);
    out->iface = &b->iface;
    out->ctx = &b->c; /* first member: freeing the ctx frees the box */
    return 0;
}

void spill_adaptor_limit_set(spill_backend *limit, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(limit->iface->alloc == limit_alloc && tier < SPILL_TIER_COUNT);
    limit_ctx *c = limit->ctx;
    pthread_mutex_lock(&c->lock);
    c->limit[tier] = bytes;
    pthread_mutex_unlock(&c->lock);
}

uint64_t spill_adaptor_limit_get(const spill_backend *limit, spill_tier tier) {
    SPILL_ASSERT(limit->iface->alloc == limit_alloc && tier < SPILL_TIER_COUNT);
    limit_ctx *c = limit->ctx;
    pthread_mutex_lock(&c->lock);
    uint64_t v = c->limit[tier];
    pthread_mutex_unlock(&c->lock);
    return v;
}

/* ---- statistics ---- */

typedef struct stats_ctx {
    spill_backend in;
    pthread_mutex_t lock;
    spill_tier_stats tier[SPILL_TIER_COUNT];
    spill_call_stats calls;
} stats_ctx;

static int stats_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    stats_ctx *c = ctx;
    int rc = c->in.iface->alloc(c->in.ctx, size, pl, out, err);
    pthread_mutex_lock(&c->lock);
    if (rc) {
        c->calls.failed++;
    } else {
        spill_tier_stats *t = &c->tier[pl.tier];
        t->current += size;
        if (t->current > t->peak) t->peak = t->current;
        t->total += size;
        t->count++;
        c->calls.alloc++;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void stats_free(void *ctx, void *p, size_t size, spill_placement pl) {
    stats_ctx *c = ctx;
    c->in.iface->free(c->in.ctx, p, size, pl);
    pthread_mutex_lock(&c->lock);
    SPILL_ASSERT(c->tier[pl.tier].current >= size);
    c->tier[pl.tier].current -= size;
    c->calls.free++;
    pthread_mutex_unlock(&c->lock);
}

static void stats_count(stats_ctx *c, uint64_t *counter, int rc) {
    pthread_mutex_lock(&c->lock);
    if (rc) c->calls.failed++;
    else (*counter)++;
    pthread_mutex_unlock(&c->lock);
}

static int stats_advise(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    stats_ctx *c = ctx;
    int rc = fwd_advise(c->in, p, n, pl, err);
    stats_count(c, &c->calls.advise, rc);
    return rc;
}

static int stats_prefetch(void *ctx, void *p, size_t n, spill_tier t, int node, void *q, spill_err *err) {
    stats_ctx *c = ctx;
    int rc = fwd_prefetch(c->in, p, n, t, node, q, err);
    pthread_mutex_lock(&c->lock);
    if (rc) {
        c->calls.failed++;
    } else {
        c->calls.prefetch++;
        c->calls.prefetch_bytes[t] += n;
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int stats_prefetch_batch(void *ctx, void *const *p, const size_t *n, size_t k, spill_tier t, int node,
                                void *q, spill_err *err) {
    stats_ctx *c = ctx;
    int rc = fwd_prefetch_batch(c->in, p, n, k, t, node, q, err);
    pthread_mutex_lock(&c->lock);
    if (rc) {
        c->calls.failed++;
    } else {
        c->calls.prefetch += k;
        for (size_t i = 0; i < k; i++) c->calls.prefetch_bytes[t] += n[i];
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int stats_discard(void *ctx, void *p, size_t n, spill_err *err) {
    stats_ctx *c = ctx;
    int rc = fwd_discard(c->in, p, n, err);
    stats_count(c, &c->calls.discard, rc);
    return rc;
}

static int stats_sync(void *ctx, void *q, spill_err *err) {
    stats_ctx *c = ctx;
    int rc = fwd_sync(c->in, q, err);
    stats_count(c, &c->calls.sync, rc);
    return rc;
}

static int stats_residency(void *ctx, const void *p, size_t n, uint64_t out[SPILL_TIER_COUNT], spill_err *err) {
    return fwd_residency(((stats_ctx *)ctx)->in, p, n, out, err);
}
static int stats_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    return fwd_zero(((stats_ctx *)ctx)->in, p, n, pl, err);
}

static void stats_destroy(void *ctx) {
    stats_ctx *c = ctx;
    c->in.iface->destroy(c->in.ctx);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

typedef struct stats_box {
    stats_ctx c;
    spill_backend_iface iface;
} stats_box;

int spill_adaptor_stats_init(spill_backend *out, spill_backend inner, spill_err *err) {
    stats_box *b = calloc(1, sizeof *b);
    if (!b) {
        inner.iface->destroy(inner.ctx);
        return spill_err_set(err, "out of memory");
    }
    b->c.in = inner;
    pthread_mutex_init(&b->c.lock, NULL);
    b->iface = ADAPTOR_IFACE(stats, inner.iface);
    out->iface = &b->iface;
    out->ctx = &b->c;
    return 0;
}

void spill_adaptor_stats_get(const spill_backend *stats, spill_tier_stats tier[SPILL_TIER_COUNT],
                             spill_call_stats *calls) {
    SPILL_ASSERT(stats->iface->alloc == stats_alloc);
    stats_ctx *c = stats->ctx;
    pthread_mutex_lock(&c->lock);
    if (tier) memcpy(tier, c->tier, sizeof c->tier);
    if (calls) *calls = c->calls;
    pthread_mutex_unlock(&c->lock);
}

/* ---- CSV log ---- */

typedef struct log_ctx {
    spill_backend in;
    pthread_mutex_t lock;
    FILE *f;
    double t0;
} log_ctx;

static void log_line(log_ctx *c, const char *op, const void *p, size_t n, const char *where, int rc) {
    pthread_mutex_lock(&c->lock);
    fprintf(c->f, "%.6f,%s,%p,%zu,%s,%s\n", spill_now() - c->t0, op, p, n, where, rc ? "error" : "ok");
    pthread_mutex_unlock(&c->lock);
}

static int log_alloc(void *ctx, size_t size, spill_placement pl, void **out, spill_err *err) {
    log_ctx *c = ctx;
    int rc = c->in.iface->alloc(c->in.ctx, size, pl, out, err);
    char w[96];
    spill_placement_str(pl, w, sizeof w);
    log_line(c, "alloc", rc ? NULL : *out, size, w, rc);
    return rc;
}

static void log_free(void *ctx, void *p, size_t size, spill_placement pl) {
    log_ctx *c = ctx;
    c->in.iface->free(c->in.ctx, p, size, pl);
    char w[96];
    spill_placement_str(pl, w, sizeof w);
    log_line(c, "free", p, size, w, 0);
}

static int log_advise(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    log_ctx *c = ctx;
    int rc = fwd_advise(c->in, p, n, pl, err);
    char w[96];
    spill_placement_str(pl, w, sizeof w);
    log_line(c, "advise", p, n, w, rc);
    return rc;
}

static int log_prefetch(void *ctx, void *p, size_t n, spill_tier t, int node, void *q, spill_err *err) {
    log_ctx *c = ctx;
    int rc = fwd_prefetch(c->in, p, n, t, node, q, err);
    char w[64];
    if (node >= 0) snprintf(w, sizeof w, "%s:node%d", spill_tier_name(t), node);
    else snprintf(w, sizeof w, "%s", spill_tier_name(t));
    log_line(c, "prefetch", p, n, w, rc);
    return rc;
}

static int log_prefetch_batch(void *ctx, void *const *p, const size_t *n, size_t k, spill_tier t, int node,
                              void *q, spill_err *err) {
    log_ctx *c = ctx;
    int rc = fwd_prefetch_batch(c->in, p, n, k, t, node, q, err);
    char w[64];
    if (node >= 0) snprintf(w, sizeof w, "%s:node%d", spill_tier_name(t), node);
    else snprintf(w, sizeof w, "%s", spill_tier_name(t));
    for (size_t i = 0; i < k; i++) log_line(c, "prefetch", p[i], n[i], w, rc);
    return rc;
}

static int log_discard(void *ctx, void *p, size_t n, spill_err *err) {
    log_ctx *c = ctx;
    int rc = fwd_discard(c->in, p, n, err);
    log_line(c, "discard", p, n, "", rc);
    return rc;
}

static int log_sync(void *ctx, void *q, spill_err *err) {
    log_ctx *c = ctx;
    int rc = fwd_sync(c->in, q, err);
    log_line(c, "sync", q, 0, "", rc);
    return rc;
}

static int log_residency(void *ctx, const void *p, size_t n, uint64_t out[SPILL_TIER_COUNT], spill_err *err) {
    return fwd_residency(((log_ctx *)ctx)->in, p, n, out, err);
}
static int log_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    return fwd_zero(((log_ctx *)ctx)->in, p, n, pl, err);
}

static void log_destroy(void *ctx) {
    log_ctx *c = ctx;
    c->in.iface->destroy(c->in.ctx);
    fclose(c->f);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

typedef struct log_box {
    log_ctx c;
    spill_backend_iface iface;
} log_box;

int spill_adaptor_log_init(spill_backend *out, spill_backend inner, const char *path, spill_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) {
        inner.iface->destroy(inner.ctx);
        return spill_err_set(err, "%s: cannot open the allocation log for writing: %s", path, strerror(errno));
    }
    log_box *b = calloc(1, sizeof *b);
    if (!b) {
        fclose(f);
        inner.iface->destroy(inner.ctx);
        return spill_err_set(err, "out of memory");
    }
    setvbuf(f, NULL, _IOLBF, 0);
    fprintf(f, "seconds,op,address,bytes,placement,result\n");
    b->c.in = inner;
    b->c.f = f;
    b->c.t0 = spill_now();
    pthread_mutex_init(&b->c.lock, NULL);
    b->iface = ADAPTOR_IFACE(log, inner.iface);
    out->iface = &b->iface;
    out->ctx = &b->c;
    return 0;
}
