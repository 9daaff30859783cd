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
    int n = spill_cu_buffers(s->hp, s->n_ctx, s->max_batch, s->n_seqs, s->kv.T, s->m->rope_freq != NULL, s, b);
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
    free(s->ready), free(s->used), free(s->stage), free(s->stage_row), free(s->logits_host), free(s->runs);
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
                          .n_seqs = p->n_seqs, .read_mapped = p->read_mapped};
    s->max_runs = spill_cu_max_runs(p->batch, p->n_seqs);
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
    int n = spill_cu_buffers(hp, s->n_ctx, s->max_batch, s->n_seqs, s->kv.T, p->model->rope_freq != NULL, s, b);
    for (int i = 0; i < n; i++) {
        spill_placement pl = {b[i].tier, -1, SPILL_PLACE_GPU_READS};
        if (!(*b[i].dst = spill_mem_alloc(s->mem, b[i].bytes, pl, b[i].what, err))) goto fail;
        s->act_bytes += b[i].bytes;
    }
    if (s->rope_freq && spill_cu_copy(s->rope_freq, p->model->rope_freq, sizeof(float) * (size_t)(hp->rope_dims / 2), err))
        goto fail;
    s->runs = calloc((size_t)s->max_runs, sizeof *s->runs);
    if (!s->runs || !(s->logits_host = malloc(sizeof(float) * (size_t)hp->vocab * (size_t)s->max_batch))) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    s->graph_max_tok = s->max_batch;
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

/* The kernels of one step, from the embedding lookup to the kept tokens' logits on the GPU: what a
 * CUDA graph holds. Its n tokens, their positions, block lists and attention tiles are in s->step_dev
 * (gpu_forward laid them out); `stride` is the length of each layer's row of the block table. Each
 * operation is one launch for all of the step's sequences. No synchronize, no copy from or to pageable
 * memory, no allocation in here. Returns the number of kept tokens, or -1. */
static int gpu_body(spill_cu_state *s, const int *tokens, int n, int stride, const uint8_t *skip, spill_err *err) {
    const spill_hparams *hp = s->hp;
    const spill_weights *W = &s->placed.w;
    void *q = s->queue;
    int dim = hp->dim, hd = hp->head_dim, q_dim = spill_hparams_q_dim(hp), kv_dim = spill_hparams_kv_dim(hp);
    float scale = 1.0f / sqrtf((float)hd);
    int L = hp->n_layers;
    spill_cu_step st = spill_cu_step_layout(s->step_dev, s->max_batch);
    if (spill_cu_get_rows(s->x, W->tok_embd.data, W->tok_embd.type, dim, st.ids, n, q, err)) return -1;
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
        /* every sequence at its own positions, over its own blocks: one launch each for the whole step */
        void *const *rb = s->blocks_dev + (size_t)l * (size_t)stride;
        if (spill_cu_rope(s->q, n, hp->n_heads, hd, hp->rope_dims, st.pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, q,
                          err) ||
            spill_cu_rope(s->k, n, hp->n_kv_heads, hd, hp->rope_dims, st.pos, hp->rope_base, s->rope_freq, hp->rope_adjacent,
                          q, err) ||
            spill_cu_kv_store(rb, s->kv.type, s->kv.T, kv_dim, st.pos, st.table, n, s->k, s->v, q, err) ||
            spill_cu_attention(s->xb, s->q, (const void *const *)rb, s->kv.type, s->kv.T, st.tiles, s->n_tiles, n, s->max_len,
                               hp->n_heads, hp->n_kv_heads, hd, scale, s->attn_partial, q, err))
            return -1;
        if (mm(s, s->xb2, &lw->wo, s->xb, n, err) || spill_cu_add(s->x, s->xb2, (int64_t)n * dim, q, err)) return -1;
        /* feed-forward: norm -> gate, up -> silu(gate) * up -> down -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, lw->ffn_norm.data, n, dim, hp->eps, q, err) ||
            mm(s, s->hb, &lw->w_gate, s->xb, n, err) || mm(s, s->hb2, &lw->w_up, s->xb, n, err) ||
            spill_cu_swiglu(s->hb, s->hb, s->hb2, (int64_t)n * hp->ffn_dim, q, err) || mm(s, s->xb2, &lw->w_down, s->hb, n, err) ||
            spill_cu_add(s->x, s->xb2, (int64_t)n * dim, q, err))
            return -1;
        if (spill_exec_end(&s->exec, l, err)) return -1;
    }
    /* head: the kept tokens' rows gathered by one norm, then one GEMM */
    int k = s->n_kept;
    if (k) {
        if (spill_cu_rmsnorm_rows(s->xb, s->x, st.kept, W->out_norm.data, k, dim, hp->eps, q, err) ||
            mm(s, s->logits, &W->output, s->xb, k, err))
            return -1;
        spill_exec_head(&s->exec, 1); /* every row, whatever spill_batch.head_rows says */
    }
    return k;
}

/* Whether a step is replayed as a CUDA graph: decode steps (one token per sequence), when graphs are on
 * and nothing in the step is the host's to do between layers (a ring of streamed layers waits on
 * events and issues copies on a second queue; the disk tier reads files), so the kernels are the whole
 * step. A step with another number of sequences than the last has the same kernels with other grid
 * sizes, and spill_cu_graph_end updates the executable graph in place; where the kernels differ
 * (attention's combine appears or goes with the splits, or cuBLAS picks other kernels for another
 * width) the update is refused and the graph is made anew. */
static int graph_fits(const spill_cu_state *s, int n, int n_runs) {
    return s->graphs && n == n_runs && n <= s->graph_max_tok && s->exec.n_slots == 0 && !s->exec.disk;
}

/* Capture the step into a graph and launch it. A capture the runtime refuses (something in the step a
 * graph cannot hold) turns graphs off, said on stderr, and the step goes eagerly: nothing captured
 * ran. Off for steps of this many tokens and more: a wider step may hold what a narrower one does not
 * (a quantized weight goes through cuBLAS past SPILL_GEMV_MAX_TOK tokens, which a cuBLAS before 12.2
 * cannot capture), so one-token steps keep theirs; a refused one-token step turns them off for good. */
static int gpu_body_graph(spill_cu_state *s, const int *tokens, int n, int stride, const uint8_t *skip, spill_err *err) {
    spill_cu_graph *g = s->graph[skip != NULL]; /* drafts (layers skipped) and whole steps: two shapes */
    spill_err cerr = {{0}}, eerr = {{0}};
    spill_exec_stats before = s->exec.st;
    int k = -1;
    if (!spill_cu_graph_begin(g, s->queue, &cerr)) {
        k = gpu_body(s, tokens, n, stride, skip, &cerr);
        int ended = spill_cu_graph_end(g, s->queue, k >= 0, &eerr);
        if (k >= 0 && !ended) return k;
        if (k >= 0) cerr = eerr;
    }
    s->graph_max_tok = n - 1;
    if (n > 1) fprintf(stderr, "spill: CUDA graphs off from here for steps of %d tokens or more: %s\n", n, cerr.msg);
    else fprintf(stderr, "spill: CUDA graphs off from here: %s\n", cerr.msg);
    s->graphs = n > 1;
    s->exec.st = before; /* what the capture counted did not run */
    return gpu_body(s, tokens, n, stride, skip, err);
}

/* A step: every token of the batch in one pass over the layers, each weight read once for all of
 * them. The engine checked the batch: each sequence's tokens are one run, at consecutive positions. */
static int gpu_forward(void *ctx, const spill_batch *b, spill_err *err) {
    spill_cu_state *s = ctx;
    const spill_hparams *hp = s->hp;
    s->n_out = 0;
    /* the runs, each sequence's positions writable (blocks allocated, shared ones copied: a CPU memcpy
       of blocks the GPU wrote, which the previous step's sync has made safe), then their block lists */
    int n_runs = 0, stride = 0, T = s->kv.T;
    for (int t = 0; t < b->n;) {
        int e = t;
        while (e + 1 < b->n && b->seq[e + 1] == b->seq[t]) e++;
        SPILL_ASSERT(n_runs < s->max_runs);
        spill_cu_run *u = &s->runs[n_runs++];
        *u = (spill_cu_run){b->seq[t], t, e - t + 1, b->pos[t], stride};
        if (spill_kv_prepare(&s->kv, u->seq, u->pos, u->n, err)) return -1;
        stride += (u->pos + u->n + T - 1) / T;
        t = e + 1;
    }
    SPILL_ASSERT(b->n <= s->max_batch && stride <= s->max_runs * s->kv.blocks_per_seq);
    for (int l = 0; l < hp->n_layers; l++)
        for (int r = 0; r < n_runs; r++) {
            const spill_cu_run *u = &s->runs[r];
            void **row = s->blocks_host + (size_t)l * (size_t)stride + (size_t)u->table;
            for (int p = 0; p < u->pos + u->n; p += T) *row++ = spill_kv_k(&s->kv, u->seq, l, p);
        }
    /* the step's layout: each token's id, position and block list, the kept rows, attention's tiles */
    spill_cu_step st = spill_cu_step_layout(s->step_host, s->max_batch);
    memcpy(st.ids, b->token, sizeof(int) * (size_t)b->n);
    s->n_tiles = 0, s->max_len = 0, s->n_kept = 0;
    for (int r = 0; r < n_runs; r++) {
        const spill_cu_run *u = &s->runs[r];
        for (int i = 0; i < u->n; i++) st.pos[u->t0 + i] = u->pos + i, st.table[u->t0 + i] = u->table;
        s->n_tiles += spill_flash_tiles(st.tiles + s->n_tiles, u->t0, u->n, u->pos, u->table);
        if (u->pos + u->n > s->max_len) s->max_len = u->pos + u->n;
    }
    for (int t = 0; t < b->n; t++)
        if (b->out ? b->out[t] != 0 : t == b->n - 1) st.kept[s->n_kept++] = t;
    SPILL_ASSERT(s->n_tiles <= b->n);
    /* the table and the layout in one copy each (the previous step's ended with its sync); the copies
       from host memory stay outside a graph */
    void *q = s->queue;
    if (spill_cu_copy_async((void *)s->blocks_dev, s->blocks_host, sizeof(void *) * (size_t)hp->n_layers * (size_t)stride, q,
                            err) ||
        spill_cu_copy_async(s->step_dev, s->step_host, sizeof(int) * SPILL_CU_STEP_INTS((size_t)s->max_batch), q, err)) {
        spill_err ignored;
        spill_cu_queue_sync(q, &ignored);
        return -1;
    }
    int k = graph_fits(s, b->n, n_runs) ? gpu_body_graph(s, b->token, b->n, stride, b->skip, err)
                                        : gpu_body(s, b->token, b->n, stride, b->skip, err);
    if (k < 0 ||
        (k && spill_cu_copy_async(s->logits_host, s->logits, sizeof(float) * (size_t)hp->vocab * (size_t)k, q, err))) {
        /* what was queued before the failure runs out before the caller frees the blocks it writes */
        spill_err ignored;
        spill_cu_queue_sync(q, &ignored);
        return -1;
    }
    s->n_out = k;
    return spill_cu_queue_sync(q, err);
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
