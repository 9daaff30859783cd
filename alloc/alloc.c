/* The public wrapper over a backend: argument checks, defaults for optional slots, per-tier limits
 * and statistics. Thread-safe: statistics and limits are guarded by one mutex; backends are
 * expected to be thread-safe themselves. */
#include "spill_alloc.h"

#include <pthread.h>
#include <strings.h>

struct spill_mem {
    spill_backend be;
    pthread_mutex_t lock;
    uint64_t limit[SPILL_TIER_COUNT];
    spill_mem_stats stats;
};

const char *spill_tier_name(spill_tier t) {
    switch (t) {
    case SPILL_TIER_HBM: return "hbm";
    case SPILL_TIER_HOST: return "host";
    default: return "?";
    }
}

spill_mem *spill_mem_create(const char *backend, spill_err *err) {
    if (!backend || !*backend) backend = "auto";
    spill_mem *m = calloc(1, sizeof *m);
    if (!m) {
        spill_err_set(err, "out of memory creating the allocator");
        return NULL;
    }
    int rc;
    if (!strcasecmp(backend, "host") || !strcasecmp(backend, "auto")) {
        rc = spill_backend_host_init(&m->be, err);
    } else {
        rc = spill_err_set(err, "unknown memory backend '%s' (this build has: host)", backend);
    }
    if (rc) {
        free(m);
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

void spill_mem_free(spill_mem *m) {
    if (!m) return;
    if (m->be.iface->destroy) m->be.iface->destroy(m->be.ctx);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

const char *spill_mem_backend_name(const spill_mem *m) { return m->be.iface->name; }

void spill_mem_set_limit(spill_mem *m, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    pthread_mutex_lock(&m->lock);
    m->limit[tier] = bytes;
    pthread_mutex_unlock(&m->lock);
}

static int check_placement(spill_placement pl, spill_err *err) {
    if ((unsigned)pl.tier >= SPILL_TIER_COUNT)
        return spill_err_set(err, "placement names tier %d; valid tiers are 0..%d", (int)pl.tier,
                             SPILL_TIER_COUNT - 1);
    if (pl.numa_node < -1)
        return spill_err_set(err, "placement names NUMA node %d; use -1 for any", pl.numa_node);
    return 0;
}

void *spill_mem_alloc(spill_mem *m, size_t size, spill_placement pl, const char *what, spill_err *err) {
    if (!what) what = "region";
    if (size == 0) {
        spill_err_set(err, "%s: zero-byte allocation", what);
        return NULL;
    }
    if (check_placement(pl, err)) return NULL;
    /* reserve against the limit first so that concurrent callers cannot overshoot it together */
    pthread_mutex_lock(&m->lock);
    spill_tier_stats *ts = &m->stats.tier[pl.tier];
    uint64_t lim = m->limit[pl.tier];
    if (lim && (size > lim || ts->current > lim - size)) {
        uint64_t cur = ts->current;
        pthread_mutex_unlock(&m->lock);
        spill_err_set(err,
                      "%s: %zu bytes requested in %s but %llu are in use and the limit is %llu",
                      what, size, spill_tier_name(pl.tier), (unsigned long long)cur,
                      (unsigned long long)lim);
        return NULL;
    }
    ts->current += size;
    pthread_mutex_unlock(&m->lock);

    void *p = NULL;
    spill_err berr = {{0}};
    if (m->be.iface->alloc(m->be.ctx, size, pl, &p, &berr)) {
        pthread_mutex_lock(&m->lock);
        ts->current -= size;
        pthread_mutex_unlock(&m->lock);
        spill_err_set(err, "%s: %s", what, berr.msg);
        return NULL;
    }
    SPILL_ASSERT(((uintptr_t)p & 255) == 0);
    pthread_mutex_lock(&m->lock);
    if (ts->current > ts->peak) ts->peak = ts->current;
    ts->total += size;
    ts->count++;
    pthread_mutex_unlock(&m->lock);
    return p;
}

void spill_mem_release(spill_mem *m, void *ptr, size_t size, spill_tier tier) {
    if (!ptr) return;
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    m->be.iface->free(m->be.ctx, ptr, size);
    pthread_mutex_lock(&m->lock);
    spill_tier_stats *ts = &m->stats.tier[tier];
    SPILL_ASSERT(ts->current >= size);
    ts->current -= size;
    pthread_mutex_unlock(&m->lock);
}

int spill_mem_advise(spill_mem *m, void *ptr, size_t size, spill_placement pl, spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "advise: empty range");
    if (check_placement(pl, err)) return -1;
    if (!m->be.iface->advise) return 0;
    return m->be.iface->advise(m->be.ctx, ptr, size, pl, err);
}

int spill_mem_prefetch(spill_mem *m, void *ptr, size_t size, spill_tier tier, int numa_node,
                       void *queue, spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "prefetch: empty range");
    if ((unsigned)tier >= SPILL_TIER_COUNT) return spill_err_set(err, "prefetch: bad tier %d", (int)tier);
    if (!m->be.iface->prefetch) return 0;
    return m->be.iface->prefetch(m->be.ctx, ptr, size, tier, numa_node, queue, err);
}

int spill_mem_discard(spill_mem *m, void *ptr, size_t size, spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "discard: empty range");
    if (!m->be.iface->discard) return 0;
    return m->be.iface->discard(m->be.ctx, ptr, size, err);
}

int spill_mem_residency(spill_mem *m, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                        spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "residency: empty range");
    memset(out, 0, sizeof(uint64_t) * SPILL_TIER_COUNT);
    if (!m->be.iface->residency) {
        out[SPILL_TIER_HOST] = size;
        return 0;
    }
    return m->be.iface->residency(m->be.ctx, ptr, size, out, err);
}

int spill_mem_sync(spill_mem *m, void *queue, spill_err *err) {
    if (!m->be.iface->sync) return 0;
    return m->be.iface->sync(m->be.ctx, queue, err);
}

void spill_mem_register(spill_mem *m, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    pthread_mutex_lock(&m->lock);
    m->stats.registered[tier] += bytes;
    pthread_mutex_unlock(&m->lock);
}

void spill_mem_unregister(spill_mem *m, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    pthread_mutex_lock(&m->lock);
    SPILL_ASSERT(m->stats.registered[tier] >= bytes);
    m->stats.registered[tier] -= bytes;
    pthread_mutex_unlock(&m->lock);
}

void spill_mem_get_stats(spill_mem *m, spill_mem_stats *out) {
    pthread_mutex_lock(&m->lock);
    *out = m->stats;
    pthread_mutex_unlock(&m->lock);
}
