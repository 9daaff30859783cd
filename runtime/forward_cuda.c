/* The forward pass on a CUDA GPU (see forward_cuda.h). Every CUDA call is checked; the kernels are
 * the ones tests/test_cuda_ops.c holds to their CPU twins. */
#include "forward_cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <unistd.h>

#include "spill_cuda_ops.h"
#include "spill_platform.h"

static int ck(cudaError_t e, const char *what, spill_err *err) {
    if (e == cudaSuccess) return 0;
    return spill_err_set(err, "%s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}
#define TRY(call)                                    \
    do {                                             \
        if (ck((call), #call, err)) return -1;       \
    } while (0)

static int own(spill_cu_state *s, void *p, size_t size, spill_tier tier, spill_err *err) {
    spill_owned *n = realloc(s->owned, sizeof *n * (size_t)(s->n_owned + 1));
    if (!n) {
        spill_mem_put(s->mem, p, size);
        return spill_err_set(err, "out of memory");
    }
    s->owned = n;
    s->owned[s->n_owned++] = (spill_owned){p, size, tier};
    return 0;
}

static void *place_alloc(spill_cu_state *s, uint64_t bytes, spill_placement pl, const char *what, spill_err *err) {
    void *p = spill_mem_alloc(s->mem, bytes, pl, what, err);
    if (p && own(s, p, bytes, pl.tier, err)) return NULL;
    return p;
}

/* device memory for work buffers (HBM, from alloc/ like everything else) */
static void *work(spill_cu_state *s, size_t bytes, const char *what, spill_err *err) {
    spill_placement pl = {SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS};
    return place_alloc(s, bytes, pl, what, err);
}

static uint64_t align_gpu(uint64_t b) { return (b + SPILL_GPU_ALIGN - 1) / SPILL_GPU_ALIGN * SPILL_GPU_ALIGN; }

/* Host-side conversion into a staging buffer, then one copy per chunk: rows [r0, r1) of src in the
 * GPU's type to dst (HBM or host; managed or device memory alike with cudaMemcpyDefault). */
typedef struct stage {
    uint8_t *buf;
    size_t cap;
    float *row;
    int64_t row_cap;
} stage;

static int put_rows(stage *sg, const spill_weight *src, spill_dtype t, int64_t r0, int64_t r1, uint8_t *dst, spill_err *err) {
    uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)src->cols);
    if (sg->cap < rb) {
        uint8_t *nb = realloc(sg->buf, rb);
        if (!nb) return spill_err_set(err, "out of memory");
        sg->buf = nb, sg->cap = rb;
    }
    if (sg->row_cap < src->cols) {
        float *nr = realloc(sg->row, sizeof(float) * (size_t)src->cols);
        if (!nr) return spill_err_set(err, "out of memory");
        sg->row = nr, sg->row_cap = src->cols;
    }
    int64_t per = (int64_t)(sg->cap / rb);
    for (int64_t r = r0; r < r1; r += per) {
        int64_t n = r1 - r < per ? r1 - r : per;
        for (int64_t i = 0; i < n; i++) {
            const void *in = spill_weight_row(src, r + i);
            uint8_t *out = sg->buf + (uint64_t)i * rb;
            if (t == src->type) {
                memcpy(out, in, rb);
            } else {
                spill_dequant_row(src->type, in, sg->row, src->cols);
                spill_quantize_row_ref(t, sg->row, out, src->cols);
            }
        }
        if (ck(cudaMemcpy(dst + (uint64_t)(r - r0) * rb, sg->buf, (size_t)n * rb, cudaMemcpyDefault),
               "copying weights to their placed memory", err))
            return -1;
    }
    return 0;
}

enum { LAYER_TENSORS = 12 };
static void layer_ptrs(const spill_layer *a, spill_cu_layer *b, const spill_weight **src, spill_weight **dst) {
    const spill_weight *s[LAYER_TENSORS] = {&a->attn_norm, &a->ffn_norm, &a->bq, &a->bk, &a->bv, &a->wq,
                                            &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
    spill_weight *d[LAYER_TENSORS] = {&b->attn_norm, &b->ffn_norm, &b->bq, &b->bk, &b->bv, &b->wq,
                                      &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
    memcpy(src, s, sizeof s);
    memcpy(dst, d, sizeof d);
}

/* Two blocks hold every region's weights, so that the arena rounds once per tier: `hbm` and `host`.
 * Pass 0 only counts (base NULL); pass 1 copies. */
typedef struct bump {
    uint8_t *base;
    uint64_t used;
    unsigned advice; /* pass 0: the advice of the regions with bytes here, OR-ed */
} bump;

static uint8_t *take(bump *b, uint64_t bytes) {
    uint8_t *p = b->base ? b->base + b->used : NULL;
    b->used += align_gpu(bytes);
    return p;
}

/* Carry out one region's plan for its n tensors: all in HBM, all in host memory, or (pin) the leading
 * rows of each matrix in HBM and the rest in host memory, the region's host part contiguous (a
 * streamed region's home, copied into a ring slot in one piece). no_split: keep the region whole in
 * host memory rather than split it. */
static int place_region(stage *sg, int pass, bump *hbm, bump *host, const spill_region_plan *rp,
                        uint64_t region_bytes, const spill_weight *const *src, spill_weight *const *dst, int n, int no_split,
                        spill_cu_block *home, uint64_t *placed, int read_mapped, uint64_t *mapped, spill_err *err) {
    /* in host memory, in place, in a type cuBLAS takes as it is, on a GPU that reads through the
       CPU's page tables: no copy at all */
    int as_is = read_mapped && rp->in_place && !rp->streamed && rp->tier != SPILL_TIER_HBM && !rp->hbm_bytes;
    for (int i = 0; i < n && as_is; i++)
        if (src[i]->data && spill_gpu_weight_type(src[i]) != src[i]->type) as_is = 0;
    if (as_is) {
        uint64_t b = 0;
        for (int i = 0; i < n; i++) {
            if (pass) *dst[i] = *src[i];
            if (src[i]->data) b += spill_dtype_row_bytes(src[i]->type, (uint64_t)src[i]->cols) * (uint64_t)src[i]->rows;
        }
        placed[SPILL_TIER_HBM] = 0;
        placed[SPILL_TIER_HOST] = b;
        if (pass) *mapped += b;
        if (pass && home) *home = (spill_cu_block){NULL, 0};
        return 0;
    }
    double frac = 0; /* of each matrix's rows, in HBM */
    if (rp->streamed) frac = 0;
    else if (rp->tier == SPILL_TIER_HBM) frac = 1;
    else if (rp->hbm_bytes && !no_split && region_bytes) {
        /* keep the parts' 256-byte alignment inside what the plan gave this region */
        uint64_t pad = (uint64_t)n * SPILL_GPU_ALIGN;
        frac = rp->hbm_bytes > pad ? (double)(rp->hbm_bytes - pad) / (double)region_bytes : 0;
        if (frac > 1) frac = 1;
    }
    uint64_t host0 = host->used, hbm0 = hbm->used;
    for (int i = 0; i < n; i++) {
        if (!src[i]->data) {
            if (pass) memset(dst[i], 0, sizeof *dst[i]);
            continue;
        }
        spill_dtype t = spill_gpu_weight_type(src[i]);
        uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)src[i]->cols);
        int64_t rows = src[i]->rows;
        /* vectors are tiny: with the HBM part when the whole region is there, else in host memory */
        int64_t split = rows == 1 ? (frac >= 1 ? 1 : 0) : (int64_t)floor((double)rows * frac);
        if (split > rows) split = rows;
        uint8_t *lo = split ? take(hbm, (uint64_t)split * rb) : NULL;
        uint8_t *hi = split < rows ? take(host, (uint64_t)(rows - split) * rb) : NULL;
        if (!pass) continue;
        *dst[i] = *src[i];
        dst[i]->type = t;
        dst[i]->split = split ? split : rows;
        dst[i]->data = split ? lo : hi;
        dst[i]->data_hi = split && split < rows ? hi : NULL;
        if (split && put_rows(sg, src[i], t, 0, split, lo, err)) return -1;
        if (split < rows && put_rows(sg, src[i], t, split, rows, hi, err)) return -1;
    }
    if (hbm->used > hbm0) hbm->advice |= rp->advice;
    if (host->used > host0) host->advice |= rp->advice;
    placed[SPILL_TIER_HBM] = hbm->used - hbm0;
    placed[SPILL_TIER_HOST] = host->used - host0;
    if (pass && home)
        *home = rp->streamed ? (spill_cu_block){host->base + host0, host->used - host0} : (spill_cu_block){NULL, 0};
    return 0;
}

/* every region, in one pass */
static int place_all(spill_cu_state *s, stage *sg, int pass, bump *hbm, bump *host, spill_err *err) {
    const spill_model *m = s->m;
    int L = m->hp.n_layers;
    double t0 = spill_now();
    for (int r = 0; r < m->n_regions; r++) {
        const spill_region_plan *rp = &m->plan.region[r];
        uint64_t rb = m->regions[r].bytes;
        if (r < L) {
            const spill_weight *src[LAYER_TENSORS];
            spill_weight *dst[LAYER_TENSORS];
            layer_ptrs(&m->layers[r], &s->layers[r], src, dst);
            if (place_region(sg, pass, hbm, host, rp, rb, src, dst, LAYER_TENSORS, 0, &s->home[r], s->region_bytes + 2 * r, s->read_mapped, &s->mapped_bytes, err)) return -1;
        } else if (r == 2 * L) {
            /* rows are looked up: a table the plan splits stays whole in host memory */
            const spill_weight *src[1] = {&m->tok_embd};
            spill_weight *dst[1] = {&s->embd};
            if (place_region(sg, pass, hbm, host, rp, rb, src, dst, 1, 1, NULL, s->region_bytes + 2 * r, s->read_mapped, &s->mapped_bytes, err)) return -1;
            if (m->tied) s->output = s->embd;
        } else if (r == 2 * L + 1 && !m->tied) {
            const spill_weight *src[1] = {&m->output};
            spill_weight *dst[1] = {&s->output};
            if (place_region(sg, pass, hbm, host, rp, rb, src, dst, 1, 0, NULL, s->region_bytes + 2 * r, s->read_mapped, &s->mapped_bytes, err)) return -1;
        } else if (r == 2 * L + 2) {
            const spill_weight *src[1] = {&m->out_norm};
            spill_weight *dst[1] = {&s->out_norm};
            if (place_region(sg, pass, hbm, host, rp, rb, src, dst, 1, 0, NULL, s->region_bytes + 2 * r, s->read_mapped, &s->mapped_bytes, err)) return -1;
        }
        if (pass && isatty(2) && spill_now() - t0 > 1.0)
            fprintf(stderr, "\rspill: placing weights for the GPU %d/%d", r + 1, m->n_regions);
    }
    if (pass && isatty(2) && spill_now() - t0 > 1.0) fputc('\n', stderr);
    return 0;
}

static int ring_init(spill_cu_state *s, spill_err *err) {
    const spill_plan *p = &s->m->plan;
    int L = s->m->hp.n_layers;
    if (!(s->slot_of = malloc(sizeof(int) * (size_t)L))) return spill_err_set(err, "out of memory");
    for (int l = 0; l < L; l++) s->slot_of[l] = -1;
    s->running = -1;
    if (p->ring_slots <= 0) return 0;
    s->n_slots = p->ring_slots;
    s->ahead = p->ring_ahead;
    for (int l = 0; l < L; l++)
        if (s->home[l].bytes > s->slot_bytes) s->slot_bytes = s->home[l].bytes;
    s->slot_layer = malloc(sizeof(int) * (size_t)s->n_slots);
    s->slot_age = calloc((size_t)s->n_slots, sizeof(int));
    s->ready = calloc((size_t)s->n_slots, sizeof(void *));
    s->used = calloc((size_t)s->n_slots, sizeof(void *));
    if (!s->slot_layer || !s->slot_age || !s->ready || !s->used) return spill_err_set(err, "out of memory");
    char what[64];
    snprintf(what, sizeof what, "ring of %d layer slots", s->n_slots);
    if (s->slot_bytes &&
        !(s->ring = place_alloc(s, s->slot_bytes * (uint64_t)s->n_slots,
                                (spill_placement){SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS}, what, err)))
        return -1;
    for (int i = 0; i < s->n_slots; i++) {
        s->slot_layer[i] = -1;
        cudaEvent_t a, b;
        if (ck(cudaEventCreateWithFlags(&a, cudaEventDisableTiming), "cudaEventCreateWithFlags", err)) return -1;
        s->ready[i] = a;
        if (ck(cudaEventCreateWithFlags(&b, cudaEventDisableTiming), "cudaEventCreateWithFlags", err)) return -1;
        s->used[i] = b;
    }
    return 0;
}

/* Copy streamed layer l into a slot on the prefetch stream, after the slot's last reader is done. */
static int ring_fetch(spill_cu_state *s, int l, spill_err *err) {
    if (s->slot_of[l] >= 0 || !s->home[l].bytes) return 0;
    int si = -1;
    for (int i = 0; i < s->n_slots && si < 0; i++)
        if (s->slot_layer[i] < 0) si = i;
    if (si < 0) {
        /* none free (a run stopped early, or more in flight than slots): the least recently used,
           never the slot of the layer running now (its readers are not done) */
        for (int i = 0; i < s->n_slots; i++)
            if (s->slot_layer[i] != s->running && (si < 0 || s->slot_age[i] < s->slot_age[si])) si = i;
        if (si < 0) return 0; /* one slot, and it is in use: the layer is fetched when its turn comes */
        s->slot_of[s->slot_layer[si]] = -1;
    }
    cudaStream_t ps = (cudaStream_t)s->pstream;
    TRY(cudaStreamWaitEvent(ps, (cudaEvent_t)s->used[si], 0));
    TRY(cudaMemcpyAsync(s->ring + (uint64_t)si * s->slot_bytes, s->home[l].ptr, s->home[l].bytes, cudaMemcpyDefault, ps));
    TRY(cudaEventRecord((cudaEvent_t)s->ready[si], ps));
    s->slot_layer[si] = l;
    s->slot_of[l] = si;
    s->slot_age[si] = ++s->clock;
    s->prefetched += s->home[l].bytes;
    return 0;
}

static void ring_evict(spill_cu_state *s, int l) {
    int si = s->slot_of[l];
    if (si < 0) return;
    s->slot_layer[si] = -1;
    s->slot_of[l] = -1;
}

/* the layer as the running step reads it: a streamed layer rebased from its home onto its slot */
static const spill_cu_layer *ring_view(spill_cu_state *s, int l) {
    const spill_cu_layer *h = &s->layers[l];
    const uint8_t *home = s->home[l].ptr, *slot = s->ring + (uint64_t)s->slot_of[l] * s->slot_bytes;
    s->view = *h;
    const spill_weight *src[LAYER_TENSORS];
    spill_weight *dst[LAYER_TENSORS];
    layer_ptrs(&s->m->layers[l], &s->view, src, dst);
    const spill_weight *hw[LAYER_TENSORS] = {&h->attn_norm, &h->ffn_norm, &h->bq, &h->bk, &h->bv, &h->wq,
                                             &h->wk, &h->wv, &h->wo, &h->w_gate, &h->w_up, &h->w_down};
    for (int i = 0; i < LAYER_TENSORS; i++)
        if (hw[i]->data) dst[i]->data = slot + ((const uint8_t *)hw[i]->data - home);
    return &s->view;
}

int spill_cu_state_init(spill_cu_state *s, const spill_model *m, spill_mem *mem, int n_ctx, int max_batch, spill_err *err) {
    spill_cu_params p = {n_ctx, max_batch, 1, 0, 0};
    return spill_cu_state_init_params(s, m, mem, &p, err);
}

int spill_cu_state_init_params(spill_cu_state *s, const spill_model *m, spill_mem *mem, const spill_cu_params *p,
                               spill_err *err) {
    memset(s, 0, sizeof *s);
    int n_ctx = p->n_ctx, max_batch = p->max_batch, n_seqs = p->n_seqs ? p->n_seqs : 1, kv_block = p->kv_block;
    if (n_seqs < 1 || kv_block < 0) return spill_err_set(err, "%d sequences, KV blocks of %d tokens", n_seqs, kv_block);
    s->read_mapped = p->read_mapped;
    int n_gpu = 0;
    spill_err gerr;
    if (spill_gpu_count(&n_gpu, &gerr)) return spill_err_set(err, "%s", gerr.msg);
    if (!m->for_gpu)
        return spill_err_set(err, "the model was not loaded for the GPU (spill_model_params.for_gpu): its plan counts "
                                  "the wrong sizes");
    const spill_hparams *hp = &m->hp;
    if (n_ctx < 1 || n_ctx > hp->ctx_train || max_batch < 1)
        return spill_err_set(err, "context of %d tokens (the model allows 1..%d), batch of %d", n_ctx, hp->ctx_train,
                             max_batch);
    s->m = m;
    s->mem = mem;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    int L = hp->n_layers;
    stage sg = {NULL, 0, NULL, 0};
    s->layers = calloc((size_t)L, sizeof *s->layers);
    s->home = calloc((size_t)L, sizeof *s->home);
    s->region_bytes = calloc((size_t)m->n_regions * 2, sizeof *s->region_bytes);
    sg.cap = 16u << 20;
    sg.buf = malloc(sg.cap);
    if (!s->layers || !s->home || !s->region_bytes || !sg.buf) {
        free(sg.buf);
        return spill_err_set(err, "out of memory");
    }
    cudaStream_t st, ps;
    if (ck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", err)) goto fail;
    s->stream = st;
    if (ck(cudaStreamCreateWithFlags(&ps, cudaStreamNonBlocking), "cudaStreamCreateWithFlags", err)) goto fail;
    s->pstream = ps;
    if (spill_cu_blas_create(&s->blas, err)) goto fail;
    /* the weights, region by region as the plan says: count, allocate the two blocks, copy */
    bump hbm = {NULL, 0, 0}, host = {NULL, 0, 0};
    if (place_all(s, &sg, 0, &hbm, &host, err)) goto fail;
    if (hbm.used) {
        spill_placement pl = {SPILL_TIER_HBM, -1, hbm.advice | SPILL_PLACE_GPU_READS};
        if (!(hbm.base = place_alloc(s, hbm.used, pl, "weights in HBM", err))) goto fail;
    }
    if (host.used) {
        /* the plan's advice: none for `fault` (the driver migrates on faults), else the GPU reads it in place */
        spill_placement pl = {SPILL_TIER_HOST, -1, host.advice};
        if (!(host.base = place_alloc(s, host.used, pl, "weights in host memory for the GPU", err))) goto fail;
    }
    hbm.used = host.used = 0;
    if (place_all(s, &sg, 1, &hbm, &host, err)) goto fail;
    s->weight_bytes[SPILL_TIER_HBM] = hbm.used;
    s->weight_bytes[SPILL_TIER_HOST] = host.used + s->mapped_bytes;
    free(sg.buf), free(sg.row);
    sg.buf = NULL, sg.row = NULL;
    if (ring_init(s, err)) goto fail;
    /* the fill: the first streamed layers, before the first step needs them */
    for (int l = 0, fetched = 0; l < L && fetched < s->ahead; l++)
        if (m->plan.region[l].streamed) {
            if (ring_fetch(s, l, err)) goto fail;
            fetched++;
        }
    if (m->rope_freq) {
        size_t n = sizeof(float) * (size_t)(hp->rope_dims / 2);
        if (!(s->rope_freq = work(s, n, "RoPE frequencies", err))) goto fail;
        if (ck(cudaMemcpy(s->rope_freq, m->rope_freq, n, cudaMemcpyDefault), "copying RoPE frequencies", err)) goto fail;
    }
    /* the KV cache: the plan's HBM bytes per layer, the rest in host memory the GPU reads */
    uint64_t *kv_hbm = calloc((size_t)L, sizeof *kv_hbm);
    if (!kv_hbm) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < L; l++) kv_hbm[l] = m->plan.region[L + l].hbm_bytes;
    int kv_dim = hp->n_kv_heads * hp->head_dim, q_dim = hp->n_heads * hp->head_dim;
    int rc = spill_kv_init(&s->kv, mem, L, kv_dim, n_ctx, n_seqs, kv_block, 0, kv_hbm, err);
    free(kv_hbm);
    if (rc || spill_kv_seq_open(&s->kv, 0, err)) goto fail;
    size_t B = (size_t)max_batch, wide = (size_t)(q_dim > hp->dim ? q_dim : hp->dim);
    size_t widest = wide > (size_t)hp->ffn_dim ? wide : (size_t)hp->ffn_dim;
    size_t table = sizeof(float *) * (size_t)L * (size_t)s->kv.blocks_per_seq;
    if (!(s->x = work(s, B * hp->dim * 4, "activations", err)) || !(s->xb = work(s, B * wide * 4, "activations", err)) ||
        !(s->xb2 = work(s, B * hp->dim * 4, "activations", err)) || !(s->q = work(s, B * q_dim * 4, "activations", err)) ||
        !(s->k = work(s, B * kv_dim * 4, "activations", err)) || !(s->v = work(s, B * kv_dim * 4, "activations", err)) ||
        !(s->hb = work(s, B * hp->ffn_dim * 4, "activations", err)) ||
        !(s->hb2 = work(s, B * hp->ffn_dim * 4, "activations", err)) ||
        !(s->logits = work(s, (size_t)hp->vocab * 4, "logits", err)) ||
        !(s->scores = work(s, B * hp->n_heads * (size_t)n_ctx * 4, "attention scores", err)) ||
        !(s->scratch16 = work(s, B * widest * 2, "16-bit activations", err)) ||
        !(s->ids = work(s, B * sizeof(int), "token ids", err)) || !(s->blocks_dev = work(s, table, "KV block table", err)))
        goto fail;
    /* pinned, so that the table's copy is asynchronous */
    void *bh;
    if (ck(cudaMallocHost(&bh, table), "cudaMallocHost (the KV block table)", err)) goto fail;
    s->blocks_host = bh;
    s->logits_host = malloc(sizeof(float) * (size_t)hp->vocab);
    if (!s->logits_host) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    return 0;
fail:
    free(sg.buf), free(sg.row);
    spill_cu_state_free(s);
    return -1;
}

void spill_cu_state_free(spill_cu_state *s) {
    if (s->stream) cudaStreamSynchronize((cudaStream_t)s->stream);
    if (s->pstream) cudaStreamSynchronize((cudaStream_t)s->pstream);
    if (s->kv.mem) spill_kv_free(&s->kv);
    for (int i = 0; i < s->n_owned; i++) spill_mem_put(s->mem, s->owned[i].ptr, s->owned[i].size);
    for (int i = 0; i < s->n_slots; i++) {
        if (s->ready && s->ready[i]) cudaEventDestroy((cudaEvent_t)s->ready[i]);
        if (s->used && s->used[i]) cudaEventDestroy((cudaEvent_t)s->used[i]);
    }
    spill_cu_blas_destroy(s->blas);
    if (s->stream) cudaStreamDestroy((cudaStream_t)s->stream);
    if (s->pstream) cudaStreamDestroy((cudaStream_t)s->pstream);
    if (s->blocks_host) cudaFreeHost((void *)s->blocks_host);
    free(s->owned);
    free(s->layers);
    free(s->home);
    free(s->region_bytes);
    free(s->slot_layer), free(s->slot_of), free(s->slot_age), free(s->ready), free(s->used);
    free(s->logits_host);
    memset(s, 0, sizeof *s);
}

/* out (n tokens x w->rows) = x @ w^T; a matrix split between tiers is two GEMMs into the two parts */
static int mm(spill_cu_state *s, float *out, const spill_weight *w, const float *x, int n, spill_err *err) {
    if (w->split >= w->rows)
        return spill_cu_gemm(s->blas, out, w->data, w->type, w->rows, w->cols, x, n, s->scratch16, s->stream, err);
    if (w->split > 0 &&
        spill_cu_gemm_ld(s->blas, out, w->rows, w->data, w->type, w->split, w->cols, x, n, s->scratch16, s->stream, err))
        return -1;
    return spill_cu_gemm_ld(s->blas, out + w->split, w->rows, w->data_hi, w->type, w->rows - w->split, w->cols, x, n,
                            s->scratch16, s->stream, err);
}

/* the plan's actions at the boundary before layer l; returns the layer as it is to be read */
static const spill_cu_layer *layer_begin(spill_cu_state *s, int l, spill_err *err) {
    const spill_plan *p = &s->m->plan;
    const spill_step *step = p->steps ? &p->steps[l] : NULL;
    int streamed = p->region[l].streamed && s->home[l].bytes;
    for (int a = 0; step && a < step->n; a++) {
        int rl = s->m->regions[step->act[a].region].layer;
        if (step->act[a].kind == SPILL_ACT_EVICT && rl != l && rl >= 0) ring_evict(s, rl);
    }
    s->running = -1;
    if (streamed) {
        if (ring_fetch(s, l, err)) return NULL; /* normally already there; after an early stop it may not be */
        s->running = l;
        s->slot_age[s->slot_of[l]] = ++s->clock; /* so that the prefetches below leave it alone */
    }
    for (int a = 0; step && a < step->n; a++) {
        int rl = s->m->regions[step->act[a].region].layer;
        if (step->act[a].kind == SPILL_ACT_PREFETCH && rl >= 0 && rl != l && p->region[rl].streamed && ring_fetch(s, rl, err))
            return NULL;
    }
    if (!streamed) return &s->layers[l];
    if (ck(cudaStreamWaitEvent((cudaStream_t)s->stream, (cudaEvent_t)s->ready[s->slot_of[l]], 0), "cudaStreamWaitEvent", err))
        return NULL;
    return ring_view(s, l);
}

static int layer_end(spill_cu_state *s, int l, spill_err *err) {
    int si = s->slot_of[l];
    if (!s->m->plan.region[l].streamed || si < 0) return 0;
    TRY(cudaEventRecord((cudaEvent_t)s->used[si], (cudaStream_t)s->stream));
    return 0;
}

int spill_cu_forward(spill_cu_state *s, const int *tokens, int n, int pos, spill_err *err) {
    const spill_model *m = s->m;
    const spill_hparams *hp = &m->hp;
    if (n < 1 || n > s->max_batch) return spill_err_set(err, "forward: batch of %d tokens; 1..%d allowed", n, s->max_batch);
    if (pos < 0 || pos + n > s->n_ctx)
        return spill_err_set(err, "the context is full: positions up to %d but the context holds %d (raise -c/--ctx-size)",
                             pos + n, s->n_ctx);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= hp->vocab)
            return spill_err_set(err, "token id %d is outside the vocabulary of %d", tokens[t], hp->vocab);
    if (s->seq < 0 || s->seq >= s->kv.max_seqs) return spill_err_set(err, "sequence %d of %d", s->seq, s->kv.max_seqs);
    /* (a copy-on-write here is a CPU memcpy of blocks the GPU wrote: the previous call synchronized) */
    if (spill_kv_prepare(&s->kv, s->seq, pos, n, err)) return -1;
    cudaStream_t st = (cudaStream_t)s->stream;
    int dim = hp->dim, hd = hp->head_dim, q_dim = hp->n_heads * hd, kv_dim = hp->n_kv_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    int L = hp->n_layers, bps = s->kv.blocks_per_seq;
    int n_blocks = (pos + n + s->kv.T - 1) / s->kv.T;
    /* every layer's blocks in table order, in one copy (the previous call's copy ended with its sync) */
    for (int l = 0; l < L; l++)
        for (int b = 0; b < n_blocks; b++)
            s->blocks_host[(size_t)l * (size_t)bps + (size_t)b] = s->kv.part[(size_t)s->kv.table[s->seq][b] * (size_t)s->kv.L + (size_t)l];
    TRY(cudaMemcpyAsync((void *)s->blocks_dev, s->blocks_host, sizeof(float *) * (size_t)L * (size_t)bps,
                        cudaMemcpyHostToDevice, st));
    TRY(cudaMemcpyAsync(s->ids, tokens, sizeof(int) * (size_t)n, cudaMemcpyHostToDevice, st));
    if (spill_cu_get_rows(s->x, s->embd.data, s->embd.type, dim, s->ids, n, st, err)) return -1;
    const uint64_t *eb = s->region_bytes + 2 * (2 * L);
    s->read[eb[SPILL_TIER_HBM] ? SPILL_TIER_HBM : SPILL_TIER_HOST] += (uint64_t)n * spill_weight_row_bytes(&s->embd);
    for (int l = 0; l < L; l++) {
        const spill_cu_layer *W = layer_begin(s, l, err);
        if (!W) return -1;
        /* attention: norm -> q, k, v -> rope -> cache -> softmax(q k^T) v -> output -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, W->attn_norm.data, n, dim, hp->eps, st, err) || mm(s, s->q, &W->wq, s->xb, n, err) ||
            mm(s, s->k, &W->wk, s->xb, n, err) || mm(s, s->v, &W->wv, s->xb, n, err))
            return -1;
        if (W->bq.data && (spill_cu_add_rows(s->q, W->bq.data, n, q_dim, st, err) ||
                           spill_cu_add_rows(s->k, W->bk.data, n, kv_dim, st, err) ||
                           spill_cu_add_rows(s->v, W->bv.data, n, kv_dim, st, err)))
            return -1;
        if (spill_cu_rope(s->q, n, hp->n_heads, hd, hp->rope_dims, pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, st, err) ||
            spill_cu_rope(s->k, n, hp->n_kv_heads, hd, hp->rope_dims, pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, st,
                          err))
            return -1;
        const float **lblocks = s->blocks_dev + (size_t)l * (size_t)bps;
        if (spill_cu_kv_store((float *const *)lblocks, s->kv.T, kv_dim, pos, n, s->k, s->v, st, err)) return -1;
        if (spill_cu_attention(s->xb, s->q, lblocks, s->kv.T, n, pos, hp->n_heads,
                               hp->n_kv_heads, hd, scale, s->scores, st, err) ||
            mm(s, s->xb2, &W->wo, s->xb, n, err) || spill_cu_add(s->x, s->xb2, (int64_t)n * dim, st, err))
            return -1;
        /* feed-forward: norm -> gate, up -> silu(gate) * up -> down -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, W->ffn_norm.data, n, dim, hp->eps, st, err) ||
            mm(s, s->hb, &W->w_gate, s->xb, n, err) || mm(s, s->hb2, &W->w_up, s->xb, n, err) ||
            spill_cu_swiglu(s->hb, s->hb, s->hb2, (int64_t)n * hp->ffn_dim, st, err) || mm(s, s->xb2, &W->w_down, s->hb, n, err) ||
            spill_cu_add(s->x, s->xb2, (int64_t)n * dim, st, err))
            return -1;
        if (layer_end(s, l, err)) return -1;
        const uint64_t *lb = s->region_bytes + 2 * l;
        if (W == &s->view) {
            s->read[SPILL_TIER_HBM] += s->home[l].bytes;
        } else {
            s->read[SPILL_TIER_HBM] += lb[SPILL_TIER_HBM];
            s->read[SPILL_TIER_HOST] += lb[SPILL_TIER_HOST];
        }
    }
    for (int r = 2 * L + 1; r < 2 * L + 3; r++) { /* the head (tied: the embedding, read whole) and the norm */
        const uint64_t *rb = s->region_bytes + 2 * (m->tied && r == 2 * L + 1 ? 2 * L : r);
        s->read[SPILL_TIER_HBM] += rb[SPILL_TIER_HBM];
        s->read[SPILL_TIER_HOST] += rb[SPILL_TIER_HOST];
    }
    /* head: the last token only */
    if (spill_cu_rmsnorm(s->xb, s->x + (size_t)(n - 1) * dim, s->out_norm.data, 1, dim, hp->eps, st, err) ||
        mm(s, s->logits, &s->output, s->xb, 1, err))
        return -1;
    TRY(cudaMemcpyAsync(s->logits_host, s->logits, sizeof(float) * (size_t)hp->vocab, cudaMemcpyDeviceToHost, st));
    TRY(cudaStreamSynchronize(st));
    return 0;
}
