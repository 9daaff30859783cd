/* Placing weights and running the plan's steps, for any device (see place.h). */
#include "place.h"

#include "device.h"

#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

uint64_t spill_placer_bytes(const void *iface, const spill_weight *w) {
    const spill_placer_iface *pi = iface;
    if (!w->data) return 0;
    uint64_t b = spill_dtype_row_bytes(pi->held_type(w), (uint64_t)w->cols) * (uint64_t)w->rows;
    return spill_align_up(b, pi->align);
}

/* ---------------------------------------------------------------- placing */

/* The block of one (tier, advice); placing runs twice: first counting (base NULL), then copying
 * into the blocks that the count asked for. */
static spill_placed_block *block_of(spill_placed *out, spill_tier tier, unsigned advice) {
    for (int i = 0; i < out->n_blocks; i++)
        if (out->block[i].pl.tier == tier && out->block[i].pl.flags == advice) return &out->block[i];
    SPILL_ASSERT(out->n_blocks < SPILL_PLACED_BLOCKS);
    spill_placed_block *b = &out->block[out->n_blocks++];
    *b = (spill_placed_block){{tier, -1, advice}, 0, 0, NULL};
    return b;
}

/* The page tables of weights read in place from the mapped file, filled at load (MADV_POPULATE_READ,
 * Linux 5.14; where the kernel lacks it, nothing happens): else the first forward pass takes a fault
 * per few pages of them, ~10% of the samples of a 113-token F16 prefill of SmolLM2 (llama.cpp's warm-up
 * run touches its weights before it times a prompt). That prefill, 9 alternated runs: median 958 ->
 * 1007 tok/s. */
static void populate(const uint8_t *p, uint64_t n) {
#if defined(MADV_POPULATE_READ)
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p / page * page;
    (void)madvise((void *)a, (size_t)((uintptr_t)p + n - a), MADV_POPULATE_READ);
#else
    (void)p, (void)n;
#endif
}

static uint8_t *take(spill_placed_block *b, uint64_t n, uint64_t align) {
    b->used = spill_align_up(b->used, align);
    uint8_t *p = b->base ? b->base + b->used : NULL;
    b->used += n;
    return p;
}

/* One region's tensors (src as bound, dst as placed) as the plan says; pass 0 counts, pass 1 copies. */
static int place_region(const spill_placer *p, spill_placed *out, int pass, const spill_region *reg,
                        const spill_region_plan *rp, uint64_t *held, spill_weight *const *src, spill_weight *const *dst,
                        int n, int lookup, spill_err *err) {
    const spill_placer_iface *pi = p->iface;
    double frac = 0; /* of each matrix's rows, in HBM */
    if (rp->streamed) frac = 0;
    else if (rp->tier == SPILL_TIER_HBM) frac = 1;
    else if (rp->hbm_bytes && reg->bytes && (!lookup || pi->split_lookups)) {
        /* keep the parts' alignment inside what the plan gave this region */
        uint64_t pad = (uint64_t)n * pi->align;
        frac = rp->hbm_bytes > pad ? (double)(rp->hbm_bytes - pad) / (double)reg->bytes : 0;
        if (frac > 1) frac = 1;
    }
    for (int i = 0; i < n; i++) {
        const spill_weight *s = src[i];
        if (!s->data) {
            if (pass) memset(dst[i], 0, sizeof *dst[i]);
            continue;
        }
        spill_dtype t = pi->held_type(s);
        uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)s->cols);
        int64_t rows = s->rows;
        /* vectors are tiny: with the HBM part when the whole region is there, else in host memory */
        int64_t split = rows == 1 ? (frac >= 1 ? 1 : 0) : (int64_t)floor((double)rows * frac);
        if (split > rows) split = rows;
        uint8_t *lo = split ? take(block_of(out, SPILL_TIER_HBM, rp->advice), (uint64_t)split * rb, pi->align) : NULL;
        uint8_t *hi = NULL;
        /* a matrix on disk stays where the file maps it on every device: the disk tier finds it in the file
           by its address and the computation reads it from a disk slot, never from there */
        int in_place = split < rows && rp->in_place && t == s->type &&
                       ((rp->on_disk && rows > 1) || pi->in_place(p->ctx, s, rp->streamed));
        if (in_place) hi = (uint8_t *)s->data + (uint64_t)split * rb;
        else if (split < rows) hi = take(block_of(out, SPILL_TIER_HOST, rp->advice), (uint64_t)(rows - split) * rb, pi->align);
        held[SPILL_TIER_HBM] += (uint64_t)split * rb;
        held[SPILL_TIER_HOST] += (uint64_t)(rows - split) * rb;
        if (in_place) out->mapped += (uint64_t)(rows - split) * rb;
        if (!pass) continue;
        *dst[i] = *s;
        dst[i]->type = t;
        dst[i]->split = split ? split : rows;
        dst[i]->data = split ? lo : hi;
        dst[i]->data_hi = split && split < rows ? hi : NULL;
        if (split && pi->put_rows(p->ctx, s, t, 0, split, lo, err)) return -1;
        if (split < rows && !in_place && pi->put_rows(p->ctx, s, t, split, rows, hi, err)) return -1;
        /* read every step from the mapping (not a lookup table, read a row at a time; not a layer on disk) */
        if (in_place && !rp->on_disk && !lookup) populate(hi, (uint64_t)(rows - split) * rb);
    }
    return 0;
}

static int place_all(const spill_placer *p, const spill_model *m, const spill_region *regions, const spill_plan *plan,
                     spill_placed *out, int pass, spill_err *err) {
    const spill_hparams *hp = &m->hp;
    int L = hp->n_layers;
    double t0 = spill_now();
    out->mapped = 0;
    memset(out->bytes, 0, sizeof out->bytes);
    for (int r = 0; r < plan->n; r++) {
        spill_weight *src[SPILL_LAYER_TENSORS], *dst[SPILL_LAYER_TENSORS];
        int n = spill_region_tensors((spill_weights *)&m->w, hp, r, src);
        if (spill_region_tensors(&out->w, hp, r, dst) != n || !n) continue;
        uint64_t *held = out->region[r];
        memset(held, 0, sizeof(uint64_t) * SPILL_TIER_COUNT);
        if (place_region(p, out, pass, &regions[r], &plan->region[r], held, src, dst, n, r == spill_region_embd(L), err))
            return -1;
        for (int t = 0; t < SPILL_TIER_COUNT; t++) out->bytes[t] += held[t];
        if (pass && isatty(2) && spill_now() - t0 > 1.0)
            fprintf(stderr, "\rspill: placing weights for the %s %d/%d", p->iface->device, r + 1, plan->n);
    }
    if (pass && isatty(2) && spill_now() - t0 > 1.0) fputc('\n', stderr);
    if (hp->tied) out->w.output = out->w.tok_embd; /* the head is the embedding, wherever it went */
    return 0;
}

int spill_place(const spill_placer *p, const spill_model *m, const spill_region *regions, const spill_plan *plan,
                spill_mem *mem, spill_placed *out, spill_err *err) {
    memset(out, 0, sizeof *out);
    out->mem = mem;
    out->w.layers = calloc((size_t)m->hp.n_layers, sizeof *out->w.layers);
    out->region = calloc((size_t)plan->n, sizeof *out->region);
    if (!out->w.layers || !out->region) {
        spill_placed_free(out);
        return spill_err_set(err, "out of memory");
    }
    /* count, allocate one block per (tier, advice), copy */
    if (place_all(p, m, regions, plan, out, 0, err)) goto fail;
    for (int i = 0; i < out->n_blocks; i++) {
        spill_placed_block *b = &out->block[i];
        uint64_t need = b->used;
        b->used = 0;
        if (!need) continue;
        char what[96];
        snprintf(what, sizeof what, "weights in %s for the %s", b->pl.tier == SPILL_TIER_HBM ? "HBM" : "host memory",
                 p->iface->device);
        if (!(b->base = spill_mem_alloc(mem, need, b->pl, what, err))) goto fail;
        b->size = need;
    }
    if (place_all(p, m, regions, plan, out, 1, err)) goto fail;
    if (out->mapped) spill_mem_register(mem, SPILL_TIER_HOST, out->mapped);
    return 0;
fail:
    out->mapped = 0;
    spill_placed_free(out);
    return -1;
}

void spill_placed_free(spill_placed *pl) {
    for (int i = 0; i < pl->n_blocks; i++)
        if (pl->block[i].base) spill_mem_put(pl->mem, pl->block[i].base, pl->block[i].size);
    if (pl->mapped) spill_mem_unregister(pl->mem, SPILL_TIER_HOST, pl->mapped);
    free(pl->w.layers);
    free(pl->region);
    memset(pl, 0, sizeof *pl);
}

/* ---------------------------------------------------------------- the steps */

/* a streamed layer's tensors laid out in a slot: their offsets, and the slot bytes they need */
static uint64_t slot_layout(const spill_layer *home, uint64_t align, uint64_t *off) {
    uint64_t used = 0;
    for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
        used = spill_align_up(used, align);
        off[i] = used;
        used += spill_weight_bytes(&home->t[i]);
    }
    return used;
}

static int is_streamed(const spill_exec *x, int l) { return x->plan->region[spill_region_layer(x->hp->n_layers, l)].streamed; }

/* Copy streamed layer l into a slot, after the slot's last reader is done. */
static int ring_fetch(spill_exec *x, int l, spill_err *err) {
    if (x->slot_of[l] >= 0 || !x->n_slots) return 0;
    int si = -1;
    for (int i = 0; i < x->n_slots && si < 0; i++)
        if (x->slot_layer[i] < 0) si = i;
    if (si < 0) {
        /* none free (a run stopped early, or more in flight than slots): the least recently used,
           never the slot of the layer running now (its readers are not done) */
        for (int i = 0; i < x->n_slots; i++)
            if (x->slot_layer[i] != x->running && (si < 0 || x->slot_age[i] < x->slot_age[si])) si = i;
        if (si < 0) return 0; /* one slot, and it is in use: the layer is fetched when its turn comes */
        x->slot_of[x->slot_layer[si]] = -1;
    }
    const spill_layer *home = &x->placed->w.layers[l];
    uint8_t *slot = x->ring + (uint64_t)si * x->slot_bytes;
    uint64_t off[SPILL_LAYER_TENSORS];
    SPILL_ASSERT(slot_layout(home, x->placer.iface->align, off) <= x->slot_bytes);
    spill_copy cp[SPILL_LAYER_TENSORS];
    int n = 0;
    x->view[si] = *home;
    for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
        const spill_weight *w = &home->t[i];
        if (!w->data) continue;
        SPILL_ASSERT(w->split == w->rows);
        cp[n++] = (spill_copy){slot + off[i], w->data, (size_t)spill_weight_bytes(w)};
        x->view[si].t[i].data = slot + off[i];
        x->st.prefetched += spill_weight_bytes(w);
    }
    if (x->placer.iface->fetch(x->placer.ctx, si, cp, n, err)) return -1;
    x->slot_layer[si] = l;
    x->slot_of[l] = si;
    x->slot_age[si] = ++x->clock;
    return 0;
}

static void ring_evict(spill_exec *x, int l) {
    int si = x->slot_of[l];
    if (si < 0) return; /* the very first step evicts the last layer, which was never fetched */
    x->slot_layer[si] = -1;
    x->slot_of[l] = -1;
}

int spill_exec_init(spill_exec *x, spill_placer placer, const spill_hparams *hp, const spill_plan *plan,
                    const spill_placed *placed, spill_mem *mem, spill_err *err) {
    memset(x, 0, sizeof *x);
    x->placer = placer;
    x->hp = hp;
    x->plan = plan;
    x->placed = placed;
    x->mem = mem;
    x->running = -1;
    int L = hp->n_layers;
    if (!(x->slot_of = malloc(sizeof(int) * (size_t)L))) return spill_err_set(err, "out of memory");
    for (int l = 0; l < L; l++) x->slot_of[l] = -1;
    if (plan->ring_slots <= 0) return 0;
    /* a slot holds the largest streamed layer as this device lays it out */
    unsigned advice = 0;
    for (int l = 0; l < L; l++)
        if (is_streamed(x, l)) {
            uint64_t off[SPILL_LAYER_TENSORS], b = slot_layout(&placed->w.layers[l], placer.iface->align, off);
            if (b > x->slot_bytes) x->slot_bytes = b;
            advice |= plan->region[spill_region_layer(L, l)].advice;
        }
    if (!x->slot_bytes) return 0;
    x->n_slots = plan->ring_slots;
    x->ahead = plan->ring_ahead;
    x->slot_bytes = spill_align_up(x->slot_bytes, placer.iface->align);
    x->slot_layer = malloc(sizeof(int) * (size_t)x->n_slots);
    x->slot_age = calloc((size_t)x->n_slots, sizeof(int));
    x->view = calloc((size_t)x->n_slots, sizeof *x->view);
    if (!x->slot_layer || !x->slot_age || !x->view) {
        spill_exec_free(x);
        return spill_err_set(err, "out of memory");
    }
    for (int i = 0; i < x->n_slots; i++) x->slot_layer[i] = -1;
    char what[64];
    snprintf(what, sizeof what, "ring of %d layer slots", x->n_slots);
    spill_placement pl = {SPILL_TIER_HBM, -1, advice};
    if (!(x->ring = spill_mem_alloc(mem, x->slot_bytes * (uint64_t)x->n_slots, pl, what, err))) {
        spill_exec_free(x);
        return -1;
    }
    /* the fill: the first streamed layers, before the first step needs them */
    for (int l = 0, fetched = 0; l < L && fetched < x->ahead; l++)
        if (is_streamed(x, l)) {
            if (ring_fetch(x, l, err)) {
                spill_exec_free(x);
                return -1;
            }
            fetched++;
        }
    return 0;
}

/* the next plan->disk_ahead layers on disk that will run after l (wrapping into the next step) */
static int disk_ahead(spill_exec *x, int l, spill_err *err) {
    int L = x->hp->n_layers, got = 0;
    for (int i = 1; i <= L && got < x->plan->disk_ahead; i++) {
        int nl = (l + i) % L;
        if (!spill_disk_is_on(x->disk, nl) || (x->skip && x->skip[nl])) continue;
        if (spill_disk_fetch(x->disk, nl, err)) return -1;
        got++;
    }
    return 0;
}

int spill_exec_open_disk(spill_exec *x, const spill_model *m, spill_disk_mode mode, spill_err *err) {
    if (x->plan->disk_slots <= 0) return 0;
    const spill_placer_iface *pi = x->placer.iface;
    spill_disk_alloc slots = {pi->disk_alloc, pi->disk_free, x->placer.ctx};
    if (spill_disk_open(&x->disk, m, x->plan, x->placed->w.layers, x->mem, mode, pi->disk_alloc ? &slots : NULL, err))
        return -1;
    if (pi->disk_reuse) spill_disk_set_reuse(x->disk, pi->disk_reuse, x->placer.ctx);
    return disk_ahead(x, x->hp->n_layers - 1, err); /* the first step's */
}

void spill_exec_free(spill_exec *x) {
    spill_disk_free(x->disk);
    if (x->ring) spill_mem_put(x->mem, x->ring, x->slot_bytes * (uint64_t)x->n_slots);
    free(x->slot_layer);
    free(x->slot_age);
    free(x->slot_of);
    free(x->view);
    memset(x, 0, sizeof *x);
}

/* layer l from its disk slot (its reads waited for) */
static const spill_layer *disk_layer(spill_exec *x, int l, int r, spill_err *err) {
    const spill_layer *lw = spill_disk_begin(x->disk, l, err);
    if (lw) x->st.read[SPILL_TIER_HOST] += x->placed->region[r][SPILL_TIER_HOST];
    return lw;
}

const spill_layer *spill_exec_begin(spill_exec *x, int l, spill_err *err) {
    const spill_plan *p = x->plan;
    int L = x->hp->n_layers, r = spill_region_layer(L, l);
    const spill_step *step = p->steps ? &p->steps[l] : NULL;
    int streamed = is_streamed(x, l) && x->n_slots;
    x->st.layers_run++;
    int on_disk = spill_disk_is_on(x->disk, l);
    if (x->disk) {
        if (spill_disk_hold(x->disk, l, err)) return NULL;
        if (disk_ahead(x, l, err)) return NULL;
    }
    /* a layer on disk is read from its disk slot; the ring's actions planned at its step still run
       (unless a CPU draft, which leaves the ring alone) */
    if (on_disk && (!x->n_slots || (x->skip && x->placer.iface->drafts_in_place))) return disk_layer(x, l, r, err);
    if (x->skip && x->n_slots && x->placer.iface->drafts_in_place) {
        /* a draft step leaves the ring as the last whole step left it (its next layers prefetched)
           and reads each layer where it lives: a streamed one from its home in host memory */
        const uint64_t *held = x->placed->region[r];
        if (streamed) x->st.read[SPILL_TIER_HOST] += held[SPILL_TIER_HBM] + held[SPILL_TIER_HOST];
        else
            for (int t = 0; t < SPILL_TIER_COUNT; t++) x->st.read[t] += held[t];
        return &x->placed->w.layers[l];
    }
    int want[64], n_want = 0; /* with layers skipped: the streamed layers to run next, in order */
    if (x->skip && x->n_slots) {
        for (int i = 1; i <= L && n_want < x->ahead && n_want < 64; i++) {
            int nl = (l + i) % L;
            if (!x->skip[nl] && is_streamed(x, nl)) want[n_want++] = nl;
        }
        for (int si = 0; si < x->n_slots; si++) {
            int held = x->slot_layer[si], keep = held == l;
            for (int i = 0; i < n_want && !keep; i++) keep = held == want[i];
            if (held >= 0 && !keep) ring_evict(x, held);
        }
        step = NULL; /* the plan's actions assume every layer runs */
    }
    for (int a = 0; step && a < step->n; a++) {
        int al = spill_region_weights_layer(L, step->act[a].region);
        if (step->act[a].kind == SPILL_ACT_EVICT && al >= 0 && al != l) ring_evict(x, al);
    }
    x->running = -1;
    if (streamed) {
        if (ring_fetch(x, l, err)) return NULL; /* normally already there; after an early stop it may not be */
        if (x->slot_of[l] < 0) { /* a plan that streams a layer but left the ring no slot for it */
            spill_err_set(err, "layer %d is streamed but the ring has %d slots of %.2f MiB for it; the plan and the "
                               "ring disagree (ring_slots %d)", l, x->n_slots, x->slot_bytes / 1048576.0, x->plan->ring_slots);
            return NULL;
        }
        x->running = l;
        x->slot_age[x->slot_of[l]] = ++x->clock; /* so that the prefetches below leave it alone */
    }
    for (int i = 0; i < n_want; i++)
        if (ring_fetch(x, want[i], err)) return NULL;
    for (int a = 0; step && a < step->n; a++) {
        int al = spill_region_weights_layer(L, step->act[a].region);
        if (step->act[a].kind == SPILL_ACT_PREFETCH && al >= 0 && al != l && is_streamed(x, al) && ring_fetch(x, al, err))
            return NULL;
    }
    if (on_disk) return disk_layer(x, l, r, err);
    if (!streamed) {
        const uint64_t *held = x->placed->region[r];
        for (int t = 0; t < SPILL_TIER_COUNT; t++) x->st.read[t] += held[t];
        return &x->placed->w.layers[l];
    }
    int si = x->slot_of[l];
    double t0 = spill_now();
    if (x->placer.iface->wait(x->placer.ctx, si, err)) return NULL;
    x->st.wait_s += spill_now() - t0;
    const uint64_t *held = x->placed->region[r];
    x->st.read[SPILL_TIER_HBM] += held[SPILL_TIER_HBM] + held[SPILL_TIER_HOST]; /* all of it, from its slot */
    return &x->view[si];
}

void spill_exec_skip(spill_exec *x, const uint8_t *skip) { x->skip = skip; }

int spill_exec_end(spill_exec *x, int l, spill_err *err) {
    if (l < 0 || l >= x->hp->n_layers) return 0;
    int ds = spill_disk_slot(x->disk, l);
    if (ds >= 0 && x->placer.iface->disk_done && x->placer.iface->disk_done(x->placer.ctx, ds, err)) return -1;
    spill_disk_release(x->disk, l);
    if (!x->n_slots || (x->skip && x->placer.iface->drafts_in_place)) return 0; /* a draft used no slot */
    int si = x->slot_of[l];
    if (!is_streamed(x, l) || si < 0) return 0;
    return x->placer.iface->done(x->placer.ctx, si, err);
}

void spill_exec_embd(spill_exec *x, const int *tokens, int n) {
    const spill_weight *e = &x->placed->w.tok_embd;
    const uint64_t *held = x->placed->region[spill_region_embd(x->hp->n_layers)];
    /* a split table: its leading rows in HBM; a whole one: where its region is */
    int whole_in_hbm = held[SPILL_TIER_HBM] && !held[SPILL_TIER_HOST];
    for (int t = 0; t < n; t++) {
        int in_hbm = e->split < e->rows ? tokens[t] < e->split : whole_in_hbm;
        x->st.read[in_hbm ? SPILL_TIER_HBM : SPILL_TIER_HOST] += spill_weight_row_bytes(e);
    }
}

void spill_exec_head(spill_exec *x, double share) {
    int L = x->hp->n_layers;
    const uint64_t *head = x->placed->region[spill_region_head(L, x->hp->tied)];
    const uint64_t *norm = x->placed->region[spill_region_out_norm(L)];
    if (!(share > 0 && share < 1)) share = 1;
    for (int t = 0; t < SPILL_TIER_COUNT; t++) x->st.read[t] += (uint64_t)((double)head[t] * share) + norm[t];
}

void spill_exec_stats_into(const spill_exec *x, const spill_placed *placed, spill_engine_stats *out) {
    memcpy(out->weights, placed->bytes, sizeof out->weights);
    out->mapped = placed->mapped;
    memcpy(out->read, x->st.read, sizeof out->read);
    out->prefetched = x->st.prefetched;
    out->wait_s = x->st.wait_s;
    out->ring_slots = x->n_slots;
    out->ring_ahead = x->ahead;
    out->slot_bytes = x->slot_bytes;
    spill_disk_stats ds;
    spill_disk_get_stats(x->disk, &ds);
    out->disk_read = ds.read;
    out->disk_used = ds.used;
    out->disk_wait_s = ds.wait_s;
    out->disk_direct = ds.direct;
    out->disk_layers = 0;
    for (int l = 0; l < x->hp->n_layers; l++) out->disk_layers += spill_disk_is_on(x->disk, l);
}
