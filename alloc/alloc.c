/* The allocator: an arena over the adaptor stack over a leaf backend (see spill_alloc.h).
 *
 * Requests under SPILL_ARENA_GRAIN are carved from 2 MiB chunks that belong to one placement
 * {tier, node, flags}; each chunk has a bitmap of 256-byte granules (8192 bits) and a second bitmap
 * marking where each allocation starts, which is what lets release() catch a double free or a wrong
 * size. Larger requests get a region of their own, rounded up to whole chunks. Chunks are kept in an
 * array sorted by address, so finding the chunk of a pointer is a binary search.
 * One mutex guards the arena; backend calls for new chunks happen under it (they are rare). */
#include "spill_backend.h"

#include <pthread.h>
#include <strings.h>

#define GRANULES ((int)(SPILL_ARENA_GRAIN / SPILL_ALLOC_ALIGN)) /* 8192 per chunk */
#define WORDS (GRANULES / 64)

typedef struct chunk {
    uintptr_t base; /* SPILL_ARENA_GRAIN-aligned */
    size_t size;    /* multiple of SPILL_ARENA_GRAIN */
    void *raw;      /* what the backend returned (differs from base when it had to be aligned) */
    size_t raw_size;
    size_t req;     /* large regions: bytes asked for */
    spill_placement pl;
    int small;
    int used; /* granules in use (small chunks) */
    uint64_t *used_bits, *start_bits; /* small chunks: WORDS each */
    struct chunk *next;               /* small chunks of the same placement */
} chunk;

typedef struct pclass {
    spill_placement pl;
    chunk *head;
} pclass;

struct spill_mem {
    spill_backend top;   /* the stack for allocate and free: log? -> stats -> limit -> leaf */
    spill_backend limit; /* views into the stack (not owned separately) */
    spill_backend stats;
    spill_backend_iface leaf_ops; /* the leaf's table with the defaults filled in: every other operation */
    void *leaf_ctx;
    unsigned caps;
    char reason[1200];
    pthread_mutex_t lock;
    chunk **idx; /* sorted by base */
    int n_idx, cap_idx;
    pclass *cls;
    int n_cls, cap_cls;
    spill_tier_stats user[SPILL_TIER_COUNT];
    uint64_t registered[SPILL_TIER_COUNT];
};

const char *spill_tier_name(spill_tier t) {
    switch (t) {
    case SPILL_TIER_HBM: return "hbm";
    case SPILL_TIER_HOST: return "host";
    default: return "?";
    }
}

void spill_placement_str(spill_placement pl, char *buf, size_t len) {
    int n = snprintf(buf, len, "%s", spill_tier_name(pl.tier));
    if (pl.numa_node >= 0 && n >= 0 && (size_t)n < len) n += snprintf(buf + n, len - n, ":node%d", pl.numa_node);
    if ((pl.flags & SPILL_PLACE_READ_MOSTLY) && n >= 0 && (size_t)n < len) n += snprintf(buf + n, len - n, " read-mostly");
    if ((pl.flags & SPILL_PLACE_GPU_READS) && n >= 0 && (size_t)n < len) n += snprintf(buf + n, len - n, " gpu-reads");
    if ((pl.flags & SPILL_PLACE_CPU_READS) && n >= 0 && (size_t)n < len) snprintf(buf + n, len - n, " cpu-reads");
}

void spill_mem_caps_str(unsigned caps, char *buf, size_t len) {
    static const char *const names[] = {"hbm", "real-hbm", "cpu-reads-hbm", "gpu-reads-host", "host-pageable"};
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < 5; i++)
        if (caps & (1u << i) && n < len) n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", names[i]);
    if (!n) snprintf(buf, len, "host memory only");
}

/* ---- the defaults of the leaf's optional operations, applied once ---- */

static int def_advise(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    (void)ctx, (void)p, (void)n, (void)pl, (void)err;
    return 0;
}
static int def_prefetch(void *ctx, void *p, size_t n, spill_tier t, int node, void *q, spill_err *err) {
    (void)ctx, (void)p, (void)n, (void)t, (void)node, (void)q, (void)err;
    return 0;
}
static int def_discard(void *ctx, void *p, size_t n, spill_err *err) {
    (void)ctx, (void)p, (void)n, (void)err;
    return 0;
}
static int def_sync(void *ctx, void *q, spill_err *err) {
    (void)ctx, (void)q, (void)err;
    return 0;
}
static int def_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    (void)ctx, (void)pl, (void)err;
    memset(p, 0, n);
    return 0;
}

/* ---- opening: stack the adaptors over the leaf ---- */

spill_mem *spill_mem_wrap(spill_backend leaf, const spill_mem_config *cfg, const char *reason, spill_err *err) {
    spill_mem *m = calloc(1, sizeof *m);
    if (!m) {
        leaf.iface->destroy(leaf.ctx);
        spill_err_set(err, "out of memory creating the allocator");
        return NULL;
    }
    m->leaf_ops = *leaf.iface;
    m->leaf_ctx = leaf.ctx;
    m->caps = leaf.caps;
    if (!m->leaf_ops.advise) m->leaf_ops.advise = def_advise;
    if (!m->leaf_ops.prefetch) m->leaf_ops.prefetch = def_prefetch;
    if (!m->leaf_ops.discard) m->leaf_ops.discard = def_discard;
    if (!m->leaf_ops.sync) m->leaf_ops.sync = def_sync;
    if (!m->leaf_ops.zero) m->leaf_ops.zero = def_zero;
    /* prefetch_batch and residency stay NULL when absent: their defaults need the allocator itself */
    snprintf(m->reason, sizeof m->reason, "%s", reason ? reason : "chosen by the caller");
    if (spill_adaptor_limit_init(&m->limit, leaf, err)) goto fail;
    if (spill_adaptor_stats_init(&m->stats, m->limit, err)) goto fail; /* it destroyed what it wrapped */
    m->top = m->stats;
    if (cfg && cfg->log_path && *cfg->log_path) {
        if (spill_adaptor_log_init(&m->top, m->stats, cfg->log_path, err)) goto fail;
    }
    if (cfg)
        for (int t = 0; t < SPILL_TIER_COUNT; t++) spill_adaptor_limit_set(&m->limit, (spill_tier)t, cfg->limit[t]);
    pthread_mutex_init(&m->lock, NULL);
    return m;
fail:
    free(m);
    return NULL;
}

static void chunk_destroy(spill_mem *m, chunk *c) {
    m->top.iface->free(m->top.ctx, c->raw, c->raw_size, c->pl);
    free(c->used_bits);
    free(c);
}

void spill_mem_free(spill_mem *m) {
    if (!m) return;
    /* whatever the caller leaked goes back to the backend so that the process does not keep it */
    for (int i = 0; i < m->n_idx; i++) chunk_destroy(m, m->idx[i]);
    free(m->idx);
    free(m->cls);
    m->top.iface->destroy(m->top.ctx);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

const char *spill_mem_backend_name(const spill_mem *m) { return m->leaf_ops.name; }
const char *spill_mem_backend_reason(const spill_mem *m) { return m->reason; }
int spill_mem_residency_exact(const spill_mem *m) { return m->leaf_ops.residency_exact; }
unsigned spill_mem_caps(const spill_mem *m) { return m->caps; }

/* tell the adaptors what the leaf did */
static int noted(spill_mem *m, spill_backend_op op, const void *ptr, size_t size, spill_placement pl, int rc) {
    spill_backend_note n = {op, ptr, size, pl, rc};
    if (m->top.iface->note) m->top.iface->note(m->top.ctx, &n);
    return rc;
}

void spill_mem_set_limit(spill_mem *m, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    spill_adaptor_limit_set(&m->limit, tier, bytes);
}

uint64_t spill_mem_get_limit(const spill_mem *m, spill_tier tier) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    return spill_adaptor_limit_get(&m->limit, tier);
}

static int check_placement(spill_placement pl, spill_err *err) {
    if ((unsigned)pl.tier >= SPILL_TIER_COUNT)
        return spill_err_set(err, "placement names tier %d; valid tiers are 0..%d", (int)pl.tier,
                             SPILL_TIER_COUNT - 1);
    if (pl.numa_node < -1)
        return spill_err_set(err, "placement names NUMA node %d; use -1 for any", pl.numa_node);
    return 0;
}

static int same_placement(spill_placement a, spill_placement b) {
    return a.tier == b.tier && a.numa_node == b.numa_node && a.flags == b.flags;
}

/* ---- the chunk index ---- */

/* index of the last chunk whose base <= p, or -1 */
static int idx_find(const spill_mem *m, uintptr_t p) {
    int lo = 0, hi = m->n_idx - 1, at = -1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (m->idx[mid]->base <= p) {
            at = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return at;
}

static chunk *chunk_of(const spill_mem *m, const void *ptr) {
    int i = idx_find(m, (uintptr_t)ptr);
    if (i < 0) return NULL;
    chunk *c = m->idx[i];
    return (uintptr_t)ptr < c->base + c->size ? c : NULL;
}

static int idx_insert(spill_mem *m, chunk *c) {
    if (m->n_idx == m->cap_idx) {
        int cap = m->cap_idx ? m->cap_idx * 2 : 64;
        chunk **n = realloc(m->idx, (size_t)cap * sizeof *n);
        if (!n) return -1;
        m->idx = n;
        m->cap_idx = cap;
    }
    int at = idx_find(m, c->base) + 1;
    memmove(m->idx + at + 1, m->idx + at, (size_t)(m->n_idx - at) * sizeof *m->idx);
    m->idx[at] = c;
    m->n_idx++;
    return 0;
}

static void idx_remove(spill_mem *m, chunk *c) {
    int at = idx_find(m, c->base);
    SPILL_ASSERT(at >= 0 && m->idx[at] == c);
    memmove(m->idx + at, m->idx + at + 1, (size_t)(m->n_idx - at - 1) * sizeof *m->idx);
    m->n_idx--;
}

static pclass *class_get(spill_mem *m, spill_placement pl) {
    for (int i = 0; i < m->n_cls; i++)
        if (same_placement(m->cls[i].pl, pl)) return &m->cls[i];
    if (m->n_cls == m->cap_cls) {
        int cap = m->cap_cls ? m->cap_cls * 2 : 8;
        pclass *n = realloc(m->cls, (size_t)cap * sizeof *n);
        if (!n) return NULL;
        m->cls = n;
        m->cap_cls = cap;
    }
    m->cls[m->n_cls].pl = pl;
    m->cls[m->n_cls].head = NULL;
    return &m->cls[m->n_cls++];
}

/* A new chunk of `size` bytes (a multiple of the grain) on a grain boundary. Backends that do not
 * promise that alignment are asked once for the exact size (large allocations usually come back
 * aligned) and, if it is not, for one grain more. */
static chunk *chunk_new(spill_mem *m, size_t size, spill_placement pl, int small, spill_err *err) {
    chunk *c = calloc(1, sizeof *c);
    if (!c) {
        spill_err_set(err, "out of memory for the arena's bookkeeping");
        return NULL;
    }
    if (small && !(c->used_bits = calloc(2 * WORDS, sizeof(uint64_t)))) {
        free(c);
        spill_err_set(err, "out of memory for the arena's bookkeeping");
        return NULL;
    }
    c->start_bits = small ? c->used_bits + WORDS : NULL;
    void *p = NULL;
    size_t raw = size;
    if (m->top.iface->alloc(m->top.ctx, raw, pl, &p, err)) goto fail;
    if ((uintptr_t)p % SPILL_ARENA_GRAIN) {
        m->top.iface->free(m->top.ctx, p, raw, pl);
        raw = size + SPILL_ARENA_GRAIN;
        if (m->top.iface->alloc(m->top.ctx, raw, pl, &p, err)) goto fail;
    }
    c->raw = p;
    c->raw_size = raw;
    c->base = (uintptr_t)spill_align_up((uintptr_t)p, SPILL_ARENA_GRAIN);
    c->size = size;
    c->pl = pl;
    c->small = small;
    if (idx_insert(m, c)) {
        m->top.iface->free(m->top.ctx, p, raw, pl);
        spill_err_set(err, "out of memory for the arena's index");
        goto fail;
    }
    return c;
fail:
    free(c->used_bits);
    free(c);
    return NULL;
}

static int bit(const uint64_t *b, int i) { return (int)((b[i >> 6] >> (i & 63)) & 1); }
static void bit_set(uint64_t *b, int i) { b[i >> 6] |= 1ull << (i & 63); }
static void bit_clear(uint64_t *b, int i) { b[i >> 6] &= ~(1ull << (i & 63)); }

/* first run of n free granules, or -1 */
static int find_run(const chunk *c, int n) {
    int run = 0;
    for (int i = 0; i < GRANULES; i++) {
        if ((i & 63) == 0 && c->used_bits[i >> 6] == ~0ull) {
            run = 0;
            i += 63;
            continue;
        }
        if (bit(c->used_bits, i)) {
            run = 0;
        } else if (++run == n) {
            return i - n + 1;
        }
    }
    return -1;
}

/* ---- alloc / release ---- */

static void *mem_alloc(spill_mem *m, size_t size, spill_placement pl, const char *what, int zero, spill_err *err) {
    if (!what) what = "region";
    if (size == 0) {
        spill_err_set(err, "%s: zero-byte allocation", what);
        return NULL;
    }
    if (check_placement(pl, err)) return NULL;
    if (size > SIZE_MAX - 2 * SPILL_ARENA_GRAIN) {
        spill_err_set(err, "%s: %zu bytes cannot be allocated", what, size);
        return NULL;
    }
    size_t sz = spill_align_up(size, SPILL_ALLOC_ALIGN);
    spill_err berr;
    void *ptr = NULL;
    pthread_mutex_lock(&m->lock);
    if (sz < SPILL_ARENA_GRAIN) {
        int n = (int)(sz / SPILL_ALLOC_ALIGN), g = -1;
        pclass *cls = class_get(m, pl);
        chunk *c = NULL;
        if (!cls) {
            spill_err_set(&berr, "out of memory for the arena's bookkeeping");
            goto fail;
        }
        for (c = cls->head; c; c = c->next)
            if (GRANULES - c->used >= n && (g = find_run(c, n)) >= 0) break;
        if (!c) {
            if (!(c = chunk_new(m, SPILL_ARENA_GRAIN, pl, 1, &berr))) goto fail;
            c->next = cls->head;
            cls->head = c;
            g = 0;
        }
        for (int i = g; i < g + n; i++) bit_set(c->used_bits, i);
        bit_set(c->start_bits, g);
        c->used += n;
        ptr = (void *)(c->base + (size_t)g * SPILL_ALLOC_ALIGN);
        /* a granule may have been used before: zero what the caller gets */
        if (zero && m->leaf_ops.zero(m->leaf_ctx, ptr, sz, pl, &berr)) {
            for (int i = g; i < g + n; i++) bit_clear(c->used_bits, i);
            bit_clear(c->start_bits, g);
            c->used -= n;
            goto fail;
        }
    } else {
        chunk *c = chunk_new(m, spill_align_up(sz, SPILL_ARENA_GRAIN), pl, 0, &berr);
        if (!c) goto fail;
        c->req = size;
        ptr = (void *)c->base;
    }
    spill_tier_stats *ts = &m->user[pl.tier];
    ts->current += size;
    if (ts->current > ts->peak) ts->peak = ts->current;
    ts->total += size;
    ts->count++;
    pthread_mutex_unlock(&m->lock);
    return ptr;
fail:
    pthread_mutex_unlock(&m->lock);
    spill_err_set(err, "%s: %s", what, berr.msg);
    return NULL;
}

static void class_unlink(spill_mem *m, chunk *c) {
    pclass *cls = class_get(m, c->pl);
    SPILL_ASSERT(cls);
    for (chunk **pp = &cls->head; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
    SPILL_ASSERT(!"small chunk missing from its placement's list");
}

int spill_mem_release(spill_mem *m, void *ptr, size_t size, spill_err *err) {
    if (!ptr) return 0;
    pthread_mutex_lock(&m->lock);
    chunk *c = chunk_of(m, ptr);
    if (!c) {
        pthread_mutex_unlock(&m->lock);
        return spill_err_set(err, "release of %p: not memory this allocator holds (never allocated here, "
                                  "or already freed)", ptr);
    }
    if (c->small) {
        uintptr_t off = (uintptr_t)ptr - c->base;
        int g = (int)(off / SPILL_ALLOC_ALIGN);
        size_t sz = spill_align_up(size, SPILL_ALLOC_ALIGN);
        int n = (int)(sz / SPILL_ALLOC_ALIGN);
        if (off % SPILL_ALLOC_ALIGN || !bit(c->start_bits, g)) {
            pthread_mutex_unlock(&m->lock);
            return spill_err_set(err, "release of %p: no allocation starts there (already freed?)", ptr);
        }
        int ok = size > 0 && sz < SPILL_ARENA_GRAIN && g + n <= GRANULES;
        for (int i = g; ok && i < g + n; i++) ok = bit(c->used_bits, i) && (i == g || !bit(c->start_bits, i));
        /* the allocation must end exactly there: the next granule is free or starts another one */
        if (ok && g + n < GRANULES) ok = !bit(c->used_bits, g + n) || bit(c->start_bits, g + n);
        if (!ok) {
            pthread_mutex_unlock(&m->lock);
            return spill_err_set(err, "release of %p: %zu bytes does not match the size it was allocated with",
                                 ptr, size);
        }
        for (int i = g; i < g + n; i++) bit_clear(c->used_bits, i);
        bit_clear(c->start_bits, g);
        c->used -= n;
        SPILL_ASSERT(m->user[c->pl.tier].current >= size);
        m->user[c->pl.tier].current -= size;
        if (c->used == 0) {
            class_unlink(m, c);
            idx_remove(m, c);
            chunk_destroy(m, c);
        }
    } else {
        if ((uintptr_t)ptr != c->base) {
            pthread_mutex_unlock(&m->lock);
            return spill_err_set(err, "release of %p: it points inside a %zu-byte region, not at its start",
                                 ptr, c->req);
        }
        if (size != c->req) {
            pthread_mutex_unlock(&m->lock);
            return spill_err_set(err, "release of %p: %zu bytes given but it was allocated with %zu", ptr, size,
                                 c->req);
        }
        SPILL_ASSERT(m->user[c->pl.tier].current >= size);
        m->user[c->pl.tier].current -= size;
        idx_remove(m, c);
        chunk_destroy(m, c);
    }
    pthread_mutex_unlock(&m->lock);
    return 0;
}

void spill_mem_put(spill_mem *m, void *ptr, size_t size) {
    spill_err err;
    if (spill_mem_release(m, ptr, size, &err)) {
        fprintf(stderr, "spill: %s\n", err.msg);
        abort();
    }
}

int spill_mem_lookup(spill_mem *m, const void *ptr, size_t *size, spill_placement *pl) {
    pthread_mutex_lock(&m->lock);
    chunk *c = chunk_of(m, ptr);
    int found = 0;
    if (c && c->small) {
        uintptr_t off = (uintptr_t)ptr - c->base;
        int g = (int)(off / SPILL_ALLOC_ALIGN);
        if (off % SPILL_ALLOC_ALIGN == 0 && bit(c->start_bits, g)) {
            int e = g + 1;
            while (e < GRANULES && bit(c->used_bits, e) && !bit(c->start_bits, e)) e++;
            if (size) *size = (size_t)(e - g) * SPILL_ALLOC_ALIGN;
            found = 1;
        }
    } else if (c && (uintptr_t)ptr == c->base) {
        if (size) *size = c->req;
        found = 1;
    }
    if (found && pl) *pl = c->pl;
    pthread_mutex_unlock(&m->lock);
    return found;
}

/* ---- hints ---- */

/* the chunk that holds all of [ptr, ptr+size), or NULL */
static chunk *chunk_holding(spill_mem *m, const void *ptr, size_t size) {
    chunk *c = chunk_of(m, ptr);
    if (!c || (uintptr_t)ptr + size > c->base + c->size || (uintptr_t)ptr + size < (uintptr_t)ptr) return NULL;
    return c;
}

int spill_mem_advise(spill_mem *m, void *ptr, size_t size, spill_placement pl, spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "advise: empty range");
    if (check_placement(pl, err)) return -1;
    pthread_mutex_lock(&m->lock);
    chunk *c = chunk_holding(m, ptr, size);
    int small = c && c->small;
    spill_placement cur = c ? c->pl : pl;
    pthread_mutex_unlock(&m->lock);
    if (!c) return spill_err_set(err, "advise: [%p, +%zu) is not inside one region of this allocator", ptr, size);
    if (small) {
        if (same_placement(cur, pl)) return 0;
        return spill_err_set(err, "advise: a %zu-byte allocation shares its 2 MiB chunk with others of the same "
                                  "placement, and advice applies to whole chunks; allocate it with the "
                                  "placement it needs instead", size);
    }
    return noted(m, SPILL_OP_ADVISE, ptr, size, pl, m->leaf_ops.advise(m->leaf_ctx, ptr, size, pl, err));
}

int spill_mem_prefetch(spill_mem *m, void *ptr, size_t size, spill_tier tier, int numa_node,
                       void *queue, spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "prefetch: empty range");
    if ((unsigned)tier >= SPILL_TIER_COUNT) return spill_err_set(err, "prefetch: bad tier %d", (int)tier);
    spill_placement to = {tier, numa_node, 0};
    return noted(m, SPILL_OP_PREFETCH, ptr, size, to,
                 m->leaf_ops.prefetch(m->leaf_ctx, ptr, size, tier, numa_node, queue, err));
}

int spill_mem_prefetch_batch(spill_mem *m, void *const *ptrs, const size_t *sizes, size_t n, spill_tier tier,
                             int numa_node, void *queue, spill_err *err) {
    if ((unsigned)tier >= SPILL_TIER_COUNT) return spill_err_set(err, "prefetch: bad tier %d", (int)tier);
    for (size_t i = 0; i < n; i++)
        if (!ptrs[i] || !sizes[i]) return spill_err_set(err, "prefetch: range %zu of %zu is empty", i, n);
    if (n == 0) return 0;
    if (m->leaf_ops.prefetch_batch) {
        int rc = m->leaf_ops.prefetch_batch(m->leaf_ctx, ptrs, sizes, n, tier, numa_node, queue, err);
        spill_placement to = {tier, numa_node, 0};
        for (size_t i = 0; i < n; i++) noted(m, SPILL_OP_PREFETCH, ptrs[i], sizes[i], to, rc);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        if (spill_mem_prefetch(m, ptrs[i], sizes[i], tier, numa_node, queue, err)) return -1;
    return 0;
}

int spill_mem_discard(spill_mem *m, void *ptr, size_t size, spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "discard: empty range");
    pthread_mutex_lock(&m->lock);
    chunk *c = chunk_holding(m, ptr, size);
    int small = c && c->small;
    pthread_mutex_unlock(&m->lock);
    /* memory this allocator does not hold (a mapped file) may still be discarded by the backend */
    if (small) return 0; /* a shared chunk's pages also hold other allocations: keep the contents */
    return noted(m, SPILL_OP_DISCARD, ptr, size, spill_placement_host(), m->leaf_ops.discard(m->leaf_ctx, ptr, size, err));
}

int spill_mem_residency(spill_mem *m, const void *ptr, size_t size, uint64_t out[SPILL_TIER_COUNT],
                        spill_err *err) {
    if (!ptr || !size) return spill_err_set(err, "residency: empty range");
    memset(out, 0, sizeof(uint64_t) * SPILL_TIER_COUNT);
    if (!m->leaf_ops.residency) {
        spill_placement pl;
        out[spill_mem_lookup(m, ptr, NULL, &pl) ? pl.tier : SPILL_TIER_HOST] = size;
        return 0;
    }
    return m->leaf_ops.residency(m->leaf_ctx, ptr, size, out, err);
}

int spill_mem_sync(spill_mem *m, void *queue, spill_err *err) {
    return noted(m, SPILL_OP_SYNC, queue, 0, spill_placement_host(), m->leaf_ops.sync(m->leaf_ctx, queue, err));
}

/* ---- accounting ---- */

void spill_mem_register(spill_mem *m, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    pthread_mutex_lock(&m->lock);
    m->registered[tier] += bytes;
    pthread_mutex_unlock(&m->lock);
}

void spill_mem_unregister(spill_mem *m, spill_tier tier, uint64_t bytes) {
    SPILL_ASSERT(tier < SPILL_TIER_COUNT);
    pthread_mutex_lock(&m->lock);
    SPILL_ASSERT(m->registered[tier] >= bytes);
    m->registered[tier] -= bytes;
    pthread_mutex_unlock(&m->lock);
}

void spill_mem_get_stats(spill_mem *m, spill_mem_stats *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&m->lock);
    memcpy(out->tier, m->user, sizeof out->tier);
    memcpy(out->registered, m->registered, sizeof out->registered);
    pthread_mutex_unlock(&m->lock);
    spill_adaptor_stats_get(&m->stats, out->reserved, &out->calls);
}

void spill_mem_print_stats(spill_mem *m, FILE *f) {
    spill_mem_stats s;
    spill_mem_get_stats(m, &s);
    fprintf(f, "spill: memory (backend %s)\n", spill_mem_backend_name(m));
    fprintf(f, "spill:   %-5s %12s %12s %12s %10s %12s %12s %12s\n", "tier", "in use MiB", "peak MiB",
            "total MiB", "allocs", "reserved MiB", "res. peak", "mapped MiB");
    for (int t = 0; t < SPILL_TIER_COUNT; t++)
        fprintf(f, "spill:   %-5s %12.2f %12.2f %12.2f %10llu %12.2f %12.2f %12.2f\n", spill_tier_name((spill_tier)t),
                s.tier[t].current / 1048576.0, s.tier[t].peak / 1048576.0, s.tier[t].total / 1048576.0,
                (unsigned long long)s.tier[t].count, s.reserved[t].current / 1048576.0,
                s.reserved[t].peak / 1048576.0, s.registered[t] / 1048576.0);
    fprintf(f, "spill:   backend calls: alloc %llu, free %llu, advise %llu, prefetch %llu (hbm %.2f MiB, host "
               "%.2f MiB), discard %llu, sync %llu, failed %llu\n",
            (unsigned long long)s.calls.alloc, (unsigned long long)s.calls.free, (unsigned long long)s.calls.advise,
            (unsigned long long)s.calls.prefetch, s.calls.prefetch_bytes[SPILL_TIER_HBM] / 1048576.0,
            s.calls.prefetch_bytes[SPILL_TIER_HOST] / 1048576.0, (unsigned long long)s.calls.discard,
            (unsigned long long)s.calls.sync, (unsigned long long)s.calls.failed);
}

uint64_t spill_host_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long avail = 0, swap = 0, v;
    int have = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "MemAvailable: %llu kB", &v) == 1) {
            avail = v;
            have = 1;
        } else if (sscanf(line, "SwapFree: %llu kB", &v) == 1) {
            swap = v;
        }
    }
    fclose(f);
    return have ? (uint64_t)(avail + swap) * 1024 : 0;
}

void *spill_mem_alloc(spill_mem *m, size_t size, spill_placement pl, const char *what, spill_err *err) {
    return mem_alloc(m, size, pl, what, 1, err);
}

void *spill_mem_alloc_uninit(spill_mem *m, size_t size, spill_placement pl, const char *what, spill_err *err) {
    return mem_alloc(m, size, pl, what, 0, err);
}
