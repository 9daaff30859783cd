/* The CPU's placer (see forward.h and place.h): copies with memcpy (or a conversion to F32 for 16-bit
 * norms and biases), and a prefetch thread that fills the ring's slots in the order they were asked
 * for. Each slot has a ticket: a fetch takes the next one, the thread marks it done when its copies
 * are in, and a wait blocks until the slot's last ticket is done — so a slot refilled before an
 * earlier fill finished is never mistaken for ready. */
#include "forward.h"

#include <pthread.h>

static spill_dtype cpu_held_type(const spill_weight *w) { return w->rows == 1 ? SPILL_DT_F32 : w->type; }

static uint64_t cpu_work_bytes(const spill_hparams *hp, int n_ctx, int batch, int n_seqs, int kv_block) {
    (void)hp, (void)n_ctx, (void)batch, (void)n_seqs, (void)kv_block;
    return 0; /* the CPU's work buffers live in host memory */
}

static int cpu_in_place(void *ctx, const spill_weight *w, int streamed) {
    (void)ctx, (void)w, (void)streamed;
    return 1; /* the CPU reads the mapped file as it reads anything else */
}

static int cpu_put_rows(void *ctx, const spill_weight *src, spill_dtype t, int64_t r0, int64_t r1, void *dst,
                        spill_err *err) {
    (void)ctx;
    uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)src->cols);
    if (t == src->type) {
        memcpy(dst, spill_weight_row(src, r0), (size_t)((uint64_t)(r1 - r0) * rb));
        return 0;
    }
    float *row = t == SPILL_DT_F32 ? NULL : malloc(sizeof(float) * (size_t)src->cols);
    if (t != SPILL_DT_F32 && !row) return spill_err_set(err, "out of memory");
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *out = (uint8_t *)dst + (uint64_t)(r - r0) * rb;
        if (t == SPILL_DT_F32) {
            spill_dequant_row(src->type, spill_weight_row(src, r), (float *)out, src->cols);
        } else {
            spill_dequant_row(src->type, spill_weight_row(src, r), row, src->cols);
            spill_quantize_row_ref(t, row, out, src->cols);
        }
    }
    free(row);
    return 0;
}

/* ---- the prefetch thread ---- */

typedef struct job {
    int slot, n;
    unsigned ticket;
    spill_copy cp[SPILL_LAYER_TENSORS];
} job;

typedef struct cpu_ring {
    int n_slots;
    unsigned *want, *have; /* (n_slots) the last ticket given out and the last one done */
    job *queue;
    int q_head, q_len, q_cap;
    pthread_t thread;
    int have_thread, stop;
    pthread_mutex_t lock;
    pthread_cond_t cv;
} cpu_ring;

static void *prefetch_main(void *arg) {
    cpu_ring *r = arg;
    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->stop && !r->q_len) pthread_cond_wait(&r->cv, &r->lock);
        if (!r->q_len) break; /* stopping, and nothing left to copy */
        job j = r->queue[r->q_head];
        r->q_head = (r->q_head + 1) % r->q_cap;
        r->q_len--;
        pthread_mutex_unlock(&r->lock);
        for (int i = 0; i < j.n; i++) memcpy(j.cp[i].dst, j.cp[i].src, j.cp[i].n);
        pthread_mutex_lock(&r->lock);
        r->have[j.slot] = j.ticket;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static int cpu_fetch(void *ctx, int slot, const spill_copy *copies, int n, spill_err *err) {
    cpu_ring *r = ctx;
    SPILL_ASSERT(slot >= 0 && slot < r->n_slots && n <= SPILL_LAYER_TENSORS);
    pthread_mutex_lock(&r->lock);
    if (r->q_len == r->q_cap) {
        /* grow the circular queue, keeping its order */
        int cap = r->q_cap ? 2 * r->q_cap : 8;
        job *q = malloc(sizeof *q * (size_t)cap);
        if (!q) {
            pthread_mutex_unlock(&r->lock);
            return spill_err_set(err, "out of memory for the prefetch queue");
        }
        for (int i = 0; i < r->q_len; i++) q[i] = r->queue[(r->q_head + i) % r->q_cap];
        free(r->queue);
        r->queue = q;
        r->q_head = 0;
        r->q_cap = cap;
    }
    job *j = &r->queue[(r->q_head + r->q_len) % r->q_cap];
    j->slot = slot;
    j->n = n;
    j->ticket = ++r->want[slot];
    memcpy(j->cp, copies, sizeof *copies * (size_t)n);
    r->q_len++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static int cpu_wait(void *ctx, int slot, spill_err *err) {
    (void)err;
    cpu_ring *r = ctx;
    pthread_mutex_lock(&r->lock);
    while (r->have[slot] != r->want[slot]) pthread_cond_wait(&r->cv, &r->lock);
    pthread_mutex_unlock(&r->lock);
    return 0;
}

static int cpu_done(void *ctx, int slot, spill_err *err) {
    (void)ctx, (void)slot, (void)err;
    return 0; /* the CPU's computation is over when the layer's function returns */
}

const spill_placer_iface spill_cpu_placer = {
    .device = "cpu",
    .align = 64,
    .split_lookups = 1,
    /* the ring's homes are host memory the CPU reads as fast as a slot: a copy would only add one */
    .drafts_in_place = 1,
    .held_type = cpu_held_type,
    .work_bytes = cpu_work_bytes,
    .in_place = cpu_in_place,
    .put_rows = cpu_put_rows,
    .fetch = cpu_fetch,
    .wait = cpu_wait,
    .done = cpu_done,
};

int spill_cpu_placer_open(spill_placer *out, int n_slots, spill_err *err) {
    out->iface = &spill_cpu_placer;
    out->ctx = NULL;
    if (n_slots <= 0) return 0;
    cpu_ring *r = calloc(1, sizeof *r);
    if (!r) return spill_err_set(err, "out of memory");
    r->n_slots = n_slots;
    r->want = calloc((size_t)n_slots, sizeof *r->want);
    r->have = calloc((size_t)n_slots, sizeof *r->have);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cv, NULL);
    out->ctx = r;
    if (!r->want || !r->have) {
        spill_cpu_placer_close(out);
        return spill_err_set(err, "out of memory");
    }
    if (pthread_create(&r->thread, NULL, prefetch_main, r)) {
        spill_cpu_placer_close(out);
        return spill_err_set(err, "cannot start the prefetch thread");
    }
    r->have_thread = 1;
    return 0;
}

void spill_cpu_placer_close(spill_placer *p) {
    cpu_ring *r = p->ctx;
    if (r) {
        if (r->have_thread) {
            pthread_mutex_lock(&r->lock);
            r->stop = 1;
            pthread_cond_broadcast(&r->cv);
            pthread_mutex_unlock(&r->lock);
            pthread_join(r->thread, NULL);
        }
        pthread_mutex_destroy(&r->lock);
        pthread_cond_destroy(&r->cv);
        free(r->want);
        free(r->have);
        free(r->queue);
        free(r);
    }
    p->ctx = NULL;
}
