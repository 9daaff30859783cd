/* The CUDA device: its state and forward pass (see forward_cuda.h). Every operation is one of
 * kernels/cuda's, each held to its CPU twin by tests/test_cuda_ops.c. */
#include "forward_cuda.h"

#include <math.h>

#include "spill_platform.h"

static void gpu_free(void *ctx) {
    spill_cu_state *s = ctx;
    if (!s) return;
    /* nothing may still run on what is about to go */
    spill_cu_queue_free(s->queue);
    spill_cu_queue_free(s->copy_queue);
    spill_cu_graph_free(s->graph[0]);
    spill_cu_graph_free(s->graph[1]);
    spill_exec_free(&s->exec);
    spill_placed_free(&s->placed);
    spill_cu_buffer b[SPILL_CU_BUFFERS];
    int n = spill_cu_buffers(s->hp, s->n_ctx, s->max_batch, s->kv.T, s->m->rope_freq != NULL, s, b);
    for (int i = 0; i < n; i++)
        if (*b[i].dst) spill_mem_put(s->mem, *b[i].dst, b[i].bytes);
    spill_kv_free(&s->kv);
    for (int i = 0; i < s->n_events; i++) {
        spill_cu_event_free(s->ready ? s->ready[i] : NULL);
        spill_cu_event_free(s->used ? s->used[i] : NULL);
    }
    for (int i = 0; i < s->n_disk_events; i++) spill_cu_event_free(s->disk_used[i]);
    free(s->disk_used);
    spill_cu_blas_destroy(s->blas);
    free(s->ready), free(s->used), free(s->stage), free(s->stage_row), free(s->logits_host);
    free(s);
}

int spill_cuda_open(const spill_device_params *p, spill_device *out, spill_err *err) {
    int n_gpu = 0;
    spill_err gerr;
    if (spill_gpu_count(&n_gpu, &gerr)) return spill_err_set(err, "%s", gerr.msg);
    const spill_hparams *hp = &p->model->hp;
    spill_cu_state *s = calloc(1, sizeof *s);
    if (!s) return spill_err_set(err, "out of memory");
    *s = (spill_cu_state){.m = p->model, .hp = hp, .mem = p->mem, .n_ctx = p->n_ctx, .max_batch = p->batch,
                          .read_mapped = p->read_mapped};
    int L = hp->n_layers;
    /* the KV cache first (its block size sizes the block table): the plan's HBM bytes per layer, the
       rest in host memory the GPU reads */
    uint64_t *kv_hbm = calloc((size_t)L, sizeof *kv_hbm);
    if (!kv_hbm) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < L; l++) kv_hbm[l] = p->plan->region[spill_region_kv(L, l)].hbm_bytes;
    int rc = spill_kv_init(&s->kv, s->mem, p->kv_type, L, spill_hparams_kv_dim(hp), s->n_ctx, p->n_seqs, p->kv_block,
                           p->kv_blocks, kv_hbm, err);
    free(kv_hbm);
    if (rc || spill_kv_seq_open(&s->kv, 0, err)) goto fail;
    if (spill_cu_queue_create(&s->queue, err) || spill_cu_queue_create(&s->copy_queue, err) ||
        spill_cu_blas_create(&s->blas, err))
        goto fail;
    /* two events per ring slot */
    int slots = p->plan->ring_slots > 0 ? p->plan->ring_slots : 0;
    s->ready = calloc((size_t)slots + 1, sizeof(void *));
    s->used = calloc((size_t)slots + 1, sizeof(void *));
    if (!s->ready || !s->used) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    for (; s->n_events < slots; s->n_events++)
        if (spill_cu_event_create(&s->ready[s->n_events], err) || spill_cu_event_create(&s->used[s->n_events], err)) {
            s->n_events++;
            goto fail;
        }
    /* one per disk slot: the host refills a slot only once the kernels that read it have run */
    int dslots = p->plan->disk_slots > 0 ? p->plan->disk_slots : 0;
    if (!(s->disk_used = calloc((size_t)dslots + 1, sizeof(void *)))) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    for (; s->n_disk_events < dslots; s->n_disk_events++)
        if (spill_cu_event_create(&s->disk_used[s->n_disk_events], err)) goto fail;
    spill_placer placer = {&spill_cuda_placer, s};
    if (spill_place(&placer, p->model, p->regions, p->plan, s->mem, &s->placed, err)) goto fail;
    free(s->stage), free(s->stage_row);
    s->stage = NULL, s->stage_row = NULL, s->stage_cap = 0, s->stage_row_cap = 0;
    if (spill_exec_init(&s->exec, placer, hp, p->plan, &s->placed, s->mem, err) ||
        spill_exec_open_disk(&s->exec, p->model, p->disk_mode, err))
        goto fail;
    spill_cu_buffer b[SPILL_CU_BUFFERS];
    int n = spill_cu_buffers(hp, s->n_ctx, s->max_batch, s->kv.T, p->model->rope_freq != NULL, s, b);
    for (int i = 0; i < n; i++) {
        spill_placement pl = {b[i].tier, -1, SPILL_PLACE_GPU_READS};
        if (!(*b[i].dst = spill_mem_alloc(s->mem, b[i].bytes, pl, b[i].what, err))) goto fail;
        s->act_bytes += b[i].bytes;
    }
    if (s->rope_freq && spill_cu_copy(s->rope_freq, p->model->rope_freq, sizeof(float) * (size_t)(hp->rope_dims / 2), err))
        goto fail;
    if (!(s->logits_host = malloc(sizeof(float) * (size_t)hp->vocab * (size_t)s->max_batch))) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    if ((s->graphs = p->cuda_graphs) &&
        (spill_cu_graph_create(&s->graph[0], err) || spill_cu_graph_create(&s->graph[1], err)))
        goto fail;
    *out = (spill_device){&spill_cuda_device, s};
    return 0;
fail:
    gpu_free(s);
    return -1;
}

/* rows of a weight into out, token rows ldo apart: cuBLAS for F32/F16/BF16; a quantized weight by the
 * fused GEMV at decode, or expanded to BF16 a tile of rows at a time for cuBLAS (one queue orders the
 * tile's reuse) */
static int mm_rows(spill_cu_state *s, float *out, int64_t ldo, const void *w, spill_dtype type, int64_t rows,
                   int64_t cols, const float *x, int n, spill_err *err) {
    if (type == SPILL_DT_F32 || type == SPILL_DT_F16 || type == SPILL_DT_BF16)
        return spill_cu_gemm_ld(s->blas, out, ldo, w, type, rows, cols, x, n, s->scratch16, s->queue, err);
    if (n <= SPILL_GEMV_MAX_TOK) return spill_cu_gemv(out, ldo, w, type, rows, cols, x, n, s->queue, err);
    uint64_t rb = spill_dtype_row_bytes(type, (uint64_t)cols);
    int64_t tile = (int64_t)(spill_cu_tile_elems(s->hp) / (uint64_t)cols);
    SPILL_ASSERT(tile >= 1);
    for (int64_t r0 = 0; r0 < rows; r0 += tile) {
        int64_t tr = rows - r0 < tile ? rows - r0 : tile;
        if (spill_cu_dequant_bf16(s->wtile, (const uint8_t *)w + (uint64_t)r0 * rb, type, tr, cols, s->queue, err) ||
            spill_cu_gemm_ld(s->blas, out + r0, ldo, s->wtile, SPILL_DT_BF16, tr, cols, x, n, s->scratch16, s->queue, err))
            return -1;
    }
    return 0;
}

/* out (n tokens x w->rows) = x @ w^T; a matrix split between tiers is two matmuls into the two parts */
static int mm(spill_cu_state *s, float *out, const spill_weight *w, const float *x, int n, spill_err *err) {
    if (w->split >= w->rows) return mm_rows(s, out, w->rows, w->data, w->type, w->rows, w->cols, x, n, err);
    if (w->split > 0 && mm_rows(s, out, w->rows, w->data, w->type, w->split, w->cols, x, n, err)) return -1;
    return mm_rows(s, out + w->split, w->rows, w->data_hi, w->type, w->rows - w->split, w->cols, x, n, err);
}

/* The kernels of one run, from the embedding lookup to the kept tokens' logits on the GPU: what a
 * CUDA graph holds. No synchronize, no copy from or to pageable memory, no allocation in here. Returns
 * the number of kept tokens, or -1. */
static int gpu_body(spill_cu_state *s, const int *tokens, int n, int pos, const uint8_t *keep, const uint8_t *skip,
                    spill_err *err) {
    const spill_hparams *hp = s->hp;
    const spill_weights *W = &s->placed.w;
    void *q = s->queue;
    int dim = hp->dim, hd = hp->head_dim, q_dim = spill_hparams_q_dim(hp), kv_dim = spill_hparams_kv_dim(hp);
    float scale = 1.0f / sqrtf((float)hd);
    int L = hp->n_layers, bps = s->kv.blocks_per_seq;
    if (spill_cu_get_rows(s->x, W->tok_embd.data, W->tok_embd.type, dim, s->ids, n, q, err)) return -1;
    spill_exec_embd(&s->exec, tokens, n);
    spill_exec_skip(&s->exec, skip);
    for (int l = 0; l < L; l++) {
        if (skip && skip[l]) continue;
        /* the layer boundary: the plan's prefetches and evictions, and the layer's weights as placed */
        const spill_layer *lw = spill_exec_begin(&s->exec, l, err);
        if (!lw) return -1;
        /* attention: norm -> q, k, v -> rope -> cache -> softmax(q k^T) v -> output -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, lw->attn_norm.data, n, dim, hp->eps, q, err) || mm(s, s->q, &lw->wq, s->xb, n, err) ||
            mm(s, s->k, &lw->wk, s->xb, n, err) || mm(s, s->v, &lw->wv, s->xb, n, err))
            return -1;
        if (lw->bq.data && (spill_cu_add_rows(s->q, lw->bq.data, n, q_dim, q, err) ||
                            spill_cu_add_rows(s->k, lw->bk.data, n, kv_dim, q, err) ||
                            spill_cu_add_rows(s->v, lw->bv.data, n, kv_dim, q, err)))
            return -1;
        if (spill_cu_rope(s->q, n, hp->n_heads, hd, hp->rope_dims, pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, q, err) ||
            spill_cu_rope(s->k, n, hp->n_kv_heads, hd, hp->rope_dims, pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, q,
                          err))
            return -1;
        void *const *lblocks = s->blocks_dev + (size_t)l * (size_t)bps;
        if (spill_cu_kv_store(lblocks, s->kv.type, s->kv.T, kv_dim, pos, n, s->k, s->v, q, err) ||
            spill_cu_attention(s->xb, s->q, (const void *const *)lblocks, s->kv.type, s->kv.T, n, pos, hp->n_heads,
                               hp->n_kv_heads, hd, scale, s->attn_partial, q, err) ||
            mm(s, s->xb2, &lw->wo, s->xb, n, err) || spill_cu_add(s->x, s->xb2, (int64_t)n * dim, q, err))
            return -1;
        /* feed-forward: norm -> gate, up -> silu(gate) * up -> down -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, lw->ffn_norm.data, n, dim, hp->eps, q, err) ||
            mm(s, s->hb, &lw->w_gate, s->xb, n, err) || mm(s, s->hb2, &lw->w_up, s->xb, n, err) ||
            spill_cu_swiglu(s->hb, s->hb, s->hb2, (int64_t)n * hp->ffn_dim, q, err) || mm(s, s->xb2, &lw->w_down, s->hb, n, err) ||
            spill_cu_add(s->x, s->xb2, (int64_t)n * dim, q, err))
            return -1;
        if (spill_exec_end(&s->exec, l, err)) return -1;
    }
    /* head: the kept tokens only, their rows gathered by one norm each, then one GEMM */
    int k = 0;
    for (int t = 0; t < n; t++)
        if (keep[t] && spill_cu_rmsnorm(s->xb + (size_t)k++ * dim, s->x + (size_t)t * dim, W->out_norm.data, 1, dim, hp->eps,
                                        q, err))
            return -1;
    if (k) {
        if (mm(s, s->logits, &W->output, s->xb, k, err)) return -1;
        spill_exec_head(&s->exec, 1); /* every row, whatever spill_batch.head_rows says */
    }
    return k;
}

/* Whether a run is replayed as a CUDA graph: decode steps (one token), when graphs are on and nothing
 * in the step is the host's to do between layers (a ring of streamed layers waits on events and
 * issues copies on a second queue; the disk tier reads files), so the kernels are the whole step. */
static int graph_fits(const spill_cu_state *s, int n) {
    return s->graphs && n == 1 && s->exec.n_slots == 0 && !s->exec.disk;
}

/* Capture the run into a graph and launch it. A capture the runtime refuses (something in the step a
 * graph cannot hold) turns graphs off for the rest of this engine's life, said once on stderr, and
 * the run goes eagerly: nothing captured ran. */
static int gpu_body_graph(spill_cu_state *s, const int *tokens, int n, int pos, const uint8_t *keep, const uint8_t *skip,
                          spill_err *err) {
    spill_cu_graph *g = s->graph[skip != NULL]; /* drafts (layers skipped) and whole steps: two shapes */
    spill_err cerr = {{0}}, eerr = {{0}};
    spill_exec_stats before = s->exec.st;
    int k = -1;
    if (!spill_cu_graph_begin(g, s->queue, &cerr)) {
        k = gpu_body(s, tokens, n, pos, keep, skip, &cerr);
        int ended = spill_cu_graph_end(g, s->queue, k >= 0, &eerr);
        if (k >= 0 && !ended) return k;
        if (k >= 0) cerr = eerr;
    }
    fprintf(stderr, "spill: CUDA graphs off from here: %s\n", cerr.msg);
    s->graphs = 0;
    s->exec.st = before; /* what the capture counted did not run */
    return gpu_body(s, tokens, n, pos, keep, skip, err);
}

/* One sequence's run of a batch: tokens[0..n) at positions pos..; keep[i] says which outputs to keep. */
static int gpu_run(spill_cu_state *s, int seq, const int *tokens, int n, int pos, const uint8_t *keep, const uint8_t *skip,
                   spill_err *err) {
    const spill_hparams *hp = s->hp;
    /* (a copy-on-write here is a CPU memcpy of blocks the GPU wrote: the previous call synchronized) */
    if (spill_kv_prepare(&s->kv, seq, pos, n, err)) return -1;
    void *q = s->queue;
    int L = hp->n_layers, bps = s->kv.blocks_per_seq;
    int n_blocks = (pos + n + s->kv.T - 1) / s->kv.T;
    /* every layer's blocks in table order, in one copy (the previous call's copy ended with its sync);
       the copies from host memory stay outside a graph */
    for (int l = 0; l < L; l++)
        for (int b = 0; b < n_blocks; b++)
            s->blocks_host[(size_t)l * (size_t)bps + (size_t)b] = spill_kv_k(&s->kv, seq, l, b * s->kv.T);
    if (spill_cu_copy_async((void *)s->blocks_dev, s->blocks_host, sizeof(void *) * (size_t)L * (size_t)bps, q, err) ||
        spill_cu_copy_async(s->ids, tokens, sizeof(int) * (size_t)n, q, err))
        return -1;
    int k = graph_fits(s, n) ? gpu_body_graph(s, tokens, n, pos, keep, skip, err) : gpu_body(s, tokens, n, pos, keep, skip, err);
    if (k < 0) return -1;
    if (k) {
        if (spill_cu_copy_async(s->logits_host + (size_t)s->n_out * (size_t)hp->vocab, s->logits,
                                sizeof(float) * (size_t)hp->vocab * (size_t)k, q, err))
            return -1;
        s->n_out += k;
    }
    return spill_cu_queue_sync(q, err);
}

/* A batch as runs of one sequence each (the engine checked it). Each run reads the weights once: the
 * GPU does not yet batch tokens of different sequences into one step (docs/status.md). */
static int gpu_forward(void *ctx, const spill_batch *b, spill_err *err) {
    spill_cu_state *s = ctx;
    s->n_out = 0;
    for (int t = 0; t < b->n;) {
        int e = t;
        while (e + 1 < b->n && b->seq[e + 1] == b->seq[t]) e++;
        uint8_t keep[4096];
        SPILL_ASSERT(e - t + 1 <= (int)sizeof keep);
        for (int i = t; i <= e; i++) keep[i - t] = b->out ? b->out[i] != 0 : i == b->n - 1;
        if (gpu_run(s, b->seq[t], b->token + t, e - t + 1, b->pos[t], keep, b->skip, err)) return -1;
        t = e + 1;
    }
    return 0;
}

static float *gpu_logits(void *ctx, int i) {
    spill_cu_state *s = ctx;
    return s->logits_host + (size_t)i * (size_t)s->hp->vocab;
}
static spill_kv *gpu_kv(void *ctx) { return &((spill_cu_state *)ctx)->kv; }

static void gpu_stats(void *ctx, spill_engine_stats *out) {
    spill_cu_state *s = ctx;
    memset(out, 0, sizeof *out);
    spill_exec_stats_into(&s->exec, &s->placed, out);
    out->wait_s = 0; /* the compute queue waits on events; nothing on the host measures it */
    out->act_bytes = s->act_bytes;
    out->kv = s->kv.st;
    for (int i = 0; i < 2; i++) {
        uint64_t launched, made, updated;
        spill_cu_graph_counts(s->graph[i], &launched, &made, &updated);
        out->graph_launches += launched;
        out->graphs_made += made;
    }
}

const spill_device_iface spill_cuda_device = {
    .name = "cuda",
    .placer = &spill_cuda_placer,
    .forward = gpu_forward,
    .logits = gpu_logits,
    .kv = gpu_kv,
    .stats = gpu_stats,
    .free = gpu_free,
};
