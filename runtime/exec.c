/* The plan executor (see exec.h): a ring of HBM slots filled by a prefetch thread. */
#include "exec.h"

#include <pthread.h>

typedef enum slot_state { SLOT_FREE, SLOT_LOADING, SLOT_READY } slot_state;

typedef struct slot {
    uint8_t *mem;
    slot_state state;
    int layer;
    spill_layer view; /* the layer's weights, pointing into mem */
} slot;

struct spill_exec {
    const spill_model *m;
    int L, n_slots;
    uint64_t slot_bytes;
    uint8_t *ring; /* one allocation for all slots: one chunk rounding, not one per slot */
    slot *slots;
    int *slot_of; /* (L) the slot holding a streamed layer, or -1 */
    /* the prefetch queue: layers to load, in order */
    int *queue, q_head, q_len;
    pthread_t thread;
    int have_thread, stop;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    uint64_t *read_hbm, *read_host; /* (L) per use of each non-streamed layer */
    spill_exec_stats st;
};

static uint64_t wb(const spill_weight *w) { return spill_weight_row_bytes(w) * (uint64_t)w->rows; }

static void layer_weights(spill_layer *l, spill_weight **ws) {
    spill_weight *all[9] = {&l->attn_norm, &l->wq, &l->wk, &l->wv, &l->wo, &l->ffn_norm, &l->w_gate, &l->w_up, &l->w_down};
    memcpy(ws, all, sizeof all);
}

/* copy layer `layer` from its home into slot s (outside the lock: the slot is LOADING, no one else
   touches it) */
static void load(spill_exec *e, slot *s, int layer) {
    s->view = e->m->layers[layer];
    spill_weight *ws[9];
    layer_weights(&s->view, ws);
    uint64_t off = 0;
    for (int i = 0; i < 9; i++) {
        off = spill_align_up(off, 64);
        uint64_t n = wb(ws[i]);
        SPILL_ASSERT(ws[i]->split == ws[i]->rows && off + n <= e->slot_bytes);
        memcpy(s->mem + off, ws[i]->data, n);
        ws[i]->data = s->mem + off;
        off += n;
    }
}

static void *prefetch_main(void *arg) {
    spill_exec *e = arg;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        while (!e->stop && !e->q_len) pthread_cond_wait(&e->cv, &e->lock);
        if (e->stop) break;
        int layer = e->queue[e->q_head];
        e->q_head = (e->q_head + 1) % e->L;
        e->q_len--;
        slot *s = &e->slots[e->slot_of[layer]];
        pthread_mutex_unlock(&e->lock);
        load(e, s, layer);
        pthread_mutex_lock(&e->lock);
        s->state = SLOT_READY;
        e->st.prefetched += e->m->regions[layer].bytes;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* under the lock */
static void evict(spill_exec *e, int layer) {
    int si = e->slot_of[layer];
    if (si < 0) return; /* the very first step evicts the last layer, which was never fetched */
    while (e->slots[si].state == SLOT_LOADING) pthread_cond_wait(&e->cv, &e->lock);
    e->slots[si].state = SLOT_FREE;
    e->slots[si].layer = -1;
    e->slot_of[layer] = -1;
    pthread_cond_broadcast(&e->cv);
}

/* under the lock */
static void prefetch(spill_exec *e, int layer) {
    if (e->slot_of[layer] >= 0) return; /* already there or on its way */
    int si = -1;
    for (;;) {
        for (int i = 0; i < e->n_slots && si < 0; i++)
            if (e->slots[i].state == SLOT_FREE) si = i;
        if (si >= 0) break;
        /* the plan sized the ring so this does not happen; if it does, wait for an eviction */
        pthread_cond_wait(&e->cv, &e->lock);
    }
    e->slots[si].state = SLOT_LOADING;
    e->slots[si].layer = layer;
    e->slot_of[layer] = si;
    e->queue[(e->q_head + e->q_len) % e->L] = layer;
    e->q_len++;
    pthread_cond_broadcast(&e->cv);
}

int spill_exec_init(spill_exec **out, const spill_model *m, spill_err *err) {
    *out = NULL;
    spill_exec *e = calloc(1, sizeof *e);
    if (!e) return spill_err_set(err, "out of memory");
    e->m = m;
    e->L = m->hp.n_layers;
    e->slot_of = malloc(sizeof(int) * (size_t)e->L);
    e->queue = malloc(sizeof(int) * (size_t)e->L);
    e->read_hbm = calloc((size_t)e->L, sizeof(uint64_t));
    e->read_host = calloc((size_t)e->L, sizeof(uint64_t));
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (!e->slot_of || !e->queue || !e->read_hbm || !e->read_host) {
        spill_exec_free(e);
        return spill_err_set(err, "out of memory");
    }
    for (int l = 0; l < e->L; l++) {
        e->slot_of[l] = -1;
        e->read_hbm[l] = m->region_hbm[l];
        e->read_host[l] = m->regions[l].bytes - m->region_hbm[l];
    }
    const spill_plan *p = &m->plan;
    if (p->ring_slots > 0) {
        e->n_slots = p->ring_slots;
        /* a slot holds the largest layer plus the 64-byte alignment of each of its 9 tensors */
        e->slot_bytes = spill_align_up(p->ring_slot_bytes + 9 * 64, 64);
        e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
        if (!e->slots) {
            spill_exec_free(e);
            return spill_err_set(err, "out of memory");
        }
        spill_placement pl = {SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS | SPILL_PLACE_READ_MOSTLY};
        char what[64];
        snprintf(what, sizeof what, "ring of %d layer slots", e->n_slots);
        if (!(e->ring = spill_mem_alloc(m->mem, e->slot_bytes * (uint64_t)e->n_slots, pl, what, err))) {
            spill_exec_free(e);
            return -1;
        }
        for (int i = 0; i < e->n_slots; i++) {
            e->slots[i].layer = -1;
            e->slots[i].mem = e->ring + e->slot_bytes * (uint64_t)i;
        }
        if (pthread_create(&e->thread, NULL, prefetch_main, e)) {
            spill_exec_free(e);
            return spill_err_set(err, "cannot start the prefetch thread");
        }
        e->have_thread = 1;
        /* the fill: the first k streamed layers, before the first step needs them */
        pthread_mutex_lock(&e->lock);
        int fetched = 0;
        for (int l = 0; l < e->L && fetched < p->ring_ahead; l++)
            if (m->plan.region[l].streamed) {
                prefetch(e, l);
                fetched++;
            }
        pthread_mutex_unlock(&e->lock);
    }
    *out = e;
    return 0;
}

void spill_exec_free(spill_exec *e) {
    if (!e) return;
    if (e->have_thread) {
        pthread_mutex_lock(&e->lock);
        e->stop = 1;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
    }
    if (e->ring) spill_mem_put(e->m->mem, e->ring, e->slot_bytes * (uint64_t)e->n_slots);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->cv);
    free(e->slots);
    free(e->slot_of);
    free(e->queue);
    free(e->read_hbm);
    free(e->read_host);
    free(e);
}

const spill_layer *spill_exec_layer(spill_exec *e, int l) {
    const spill_model *m = e->m;
    const spill_step *step = m->plan.steps ? &m->plan.steps[l] : NULL;
    int streamed = m->plan.region[l].streamed;
    e->st.layers_run++;
    if (!streamed && (!step || !step->n)) {
        e->st.read[SPILL_TIER_HBM] += e->read_hbm[l];
        e->st.read[SPILL_TIER_HOST] += e->read_host[l];
        return &m->layers[l];
    }
    pthread_mutex_lock(&e->lock);
    for (int a = 0; step && a < step->n; a++)
        if (step->act[a].kind == SPILL_ACT_EVICT) evict(e, m->regions[step->act[a].region].layer);
    if (streamed) prefetch(e, l); /* normally already there; after an early stop it may not be */
    for (int a = 0; step && a < step->n; a++)
        if (step->act[a].kind == SPILL_ACT_PREFETCH) prefetch(e, m->regions[step->act[a].region].layer);
    const spill_layer *out = &m->layers[l];
    if (streamed) {
        slot *s = &e->slots[e->slot_of[l]];
        if (s->state != SLOT_READY) {
            double t0 = spill_now();
            while (s->state != SLOT_READY) pthread_cond_wait(&e->cv, &e->lock);
            e->st.wait_s += spill_now() - t0;
        }
        out = &s->view;
        e->st.read[SPILL_TIER_HBM] += m->regions[l].bytes;
    } else {
        e->st.read[SPILL_TIER_HBM] += e->read_hbm[l];
        e->st.read[SPILL_TIER_HOST] += e->read_host[l];
    }
    pthread_mutex_unlock(&e->lock);
    return out;
}

void spill_exec_account(spill_exec *e, spill_tier tier, uint64_t bytes) { e->st.read[tier] += bytes; }

void spill_exec_get_stats(spill_exec *e, spill_exec_stats *out) {
    pthread_mutex_lock(&e->lock);
    *out = e->st;
    pthread_mutex_unlock(&e->lock);
}
