/* Adaptors: backends that wrap another backend, as RMM's resource adaptors do (spill_backend.h).
 *   limit  — refuses an allocation that would take a tier past its limit (reserve first, so that
 *            threads racing for the last bytes cannot overshoot together)
 *   stats  — {current, peak, total, count} per tier and counts of every call
 *   log    — one CSV line per call, with a timestamp
 * Each implements allocate and free; the other operations reach the leaf directly and the adaptors
 * hear of them through `note`, which each passes on inwards. */
#include "spill_backend.h"

#include <errno.h>
#include <pthread.h>

/* Every adaptor's context starts with the backend it wraps, so that a note can be passed on. */
typedef struct inner_ctx {
    spill_backend in;
} inner_ctx;

static void pass_note(void *ctx, const spill_backend_note *n) {
    spill_backend in = ((inner_ctx *)ctx)->in;
    if (in.iface->note) in.iface->note(in.ctx, n);
}

/* An adaptor's table over the inner backend's name and alignment. Each adaptor instance keeps its
 * own table (the name is the leaf's), in a box with its context. */
#define ADAPTOR_IFACE(type, inner, note_fn)                                                                \
    ((spill_backend_iface){.name = (inner)->name,                                                          \
                           .align = (inner)->align,                                                        \
                           .alloc = type##_alloc,                                                          \
                           .free = type##_free,                                                            \
                           .destroy = type##_destroy,                                                      \
                           .residency_exact = (inner)->residency_exact,                                    \
                           .note = (note_fn)})

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

static void limit_destroy(void *ctx) {
    limit_ctx *c = ctx;
    c->in.iface->destroy(c->in.ctx);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

typedef struct limit_box {
    limit_ctx c; /* first: freeing the ctx frees the box */
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
    b->iface = ADAPTOR_IFACE(limit, inner.iface, pass_note);
    *out = (spill_backend){&b->iface, &b->c, inner.caps};
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

static void stats_note(void *ctx, const spill_backend_note *n) {
    stats_ctx *c = ctx;
    pthread_mutex_lock(&c->lock);
    if (n->rc) {
        c->calls.failed++;
    } else {
        switch (n->op) {
        case SPILL_OP_ADVISE: c->calls.advise++; break;
        case SPILL_OP_PREFETCH:
            c->calls.prefetch++;
            c->calls.prefetch_bytes[n->pl.tier] += n->size;
            break;
        case SPILL_OP_DISCARD: c->calls.discard++; break;
        case SPILL_OP_SYNC: c->calls.sync++; break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    pass_note(ctx, n);
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
    b->iface = ADAPTOR_IFACE(stats, inner.iface, stats_note);
    *out = (spill_backend){&b->iface, &b->c, inner.caps};
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

static void log_note(void *ctx, const spill_backend_note *n) {
    static const char *const names[] = {"advise", "prefetch", "discard", "sync"};
    char w[96] = "";
    if (n->op == SPILL_OP_ADVISE) {
        spill_placement_str(n->pl, w, sizeof w);
    } else if (n->op == SPILL_OP_PREFETCH) {
        if (n->pl.numa_node >= 0) snprintf(w, sizeof w, "%s:node%d", spill_tier_name(n->pl.tier), n->pl.numa_node);
        else snprintf(w, sizeof w, "%s", spill_tier_name(n->pl.tier));
    }
    log_line(ctx, names[n->op], n->ptr, n->size, w, n->rc);
    pass_note(ctx, n);
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
    b->iface = ADAPTOR_IFACE(log, inner.iface, log_note);
    *out = (spill_backend){&b->iface, &b->c, inner.caps};
    return 0;
}
