/* The GPU's placer (see forward_cuda.h and place.h): weights copied as the file holds them (vectors
 * converted to F32) into placed memory (managed, device or mapped alike: cudaMemcpyDefault);
 * the ring's copies on a second queue, ordered by two events per slot. */
#include "forward_cuda.h"

#include "kv.h"

/* Weights stay as the file holds them: decode multiplies quantized blocks as they are read
 * (spill_cu_gemv) and prefill expands tiles of rows to BF16 for cuBLAS, so a Q4 weight costs the plan
 * and every decode step its Q4 bytes, not those of an F16 copy. A type the kernels do not decode
 * (none that a model file may hold today) becomes BF16, which does not overflow where F16 would. */
static spill_dtype gpu_held_type(const spill_weight *w) {
    if (w->rows == 1) return SPILL_DT_F32;
    switch (w->type) {
    case SPILL_DT_F32: case SPILL_DT_F16: case SPILL_DT_BF16: case SPILL_DT_Q8_0: case SPILL_DT_Q4_0:
    case SPILL_DT_Q4_1: case SPILL_DT_Q4_K: case SPILL_DT_Q6_K:
        return w->type;
    default:
        return SPILL_DT_BF16;
    }
}

uint64_t spill_cu_tile_elems(const spill_hparams *hp) {
    uint64_t q_dim = (uint64_t)spill_hparams_q_dim(hp), dim = (uint64_t)hp->dim, ff = (uint64_t)hp->ffn_dim;
    uint64_t cols = dim > q_dim ? dim : q_dim, rows = (uint64_t)hp->vocab;
    if (ff > cols) cols = ff;
    if (cols > rows) rows = cols;
    uint64_t e = rows * cols < SPILL_CU_TILE_ELEMS ? rows * cols : SPILL_CU_TILE_ELEMS;
    return e > cols ? e : cols;
}

/* What the arena will hold for these buffers: a large one rounds up to whole chunks of its own; the
 * small ones are packed into shared chunks, where each chunk loses less than the largest of them. */
static uint64_t gpu_work_bytes(const spill_hparams *hp, int n_ctx, int batch, int n_seqs, int kv_block) {
    spill_cu_buffer b[SPILL_CU_BUFFERS];
    int n = spill_cu_buffers(hp, n_ctx, batch, n_seqs, kv_block, 1, NULL, b);
    uint64_t large = 0, small = 0, widest = 0;
    for (int i = 0; i < n; i++) {
        if (b[i].tier != SPILL_TIER_HBM || !b[i].bytes) continue;
        uint64_t a = spill_align_up(b[i].bytes, SPILL_ALLOC_ALIGN);
        if (a >= SPILL_ARENA_GRAIN) {
            large += spill_align_up(a, SPILL_ARENA_GRAIN);
        } else {
            small += a;
            if (a > widest) widest = a;
        }
    }
    uint64_t per_chunk = SPILL_ARENA_GRAIN - widest;
    return large + (small + per_chunk - 1) / per_chunk * SPILL_ARENA_GRAIN;
}

/* Through the CPU's page tables (ATS) the GPU multiplies a weight where the file maps it, when it
 * is already in a type cuBLAS takes; the ring's copies never come from the file (a copy from
 * pageable memory is staged and synchronous, so it could not run beside the computation). */
static int gpu_in_place(void *ctx, const spill_weight *w, int streamed) {
    const spill_cu_state *s = ctx;
    return s->read_mapped && !streamed && gpu_held_type(w) == w->type;
}

/* Host-side conversion into a staging buffer, then one copy per chunk of rows. */
static int gpu_put_rows(void *ctx, const spill_weight *src, spill_dtype t, int64_t r0, int64_t r1, void *dst,
                        spill_err *err) {
    spill_cu_state *s = ctx;
    uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)src->cols);
    if (s->stage_cap < rb) {
        uint8_t *nb = realloc(s->stage, rb);
        if (!nb) return spill_err_set(err, "out of memory");
        s->stage = nb, s->stage_cap = rb;
    }
    if (s->stage_row_cap < src->cols) {
        float *nr = realloc(s->stage_row, sizeof(float) * (size_t)src->cols);
        if (!nr) return spill_err_set(err, "out of memory");
        s->stage_row = nr, s->stage_row_cap = src->cols;
    }
    int64_t per = (int64_t)(s->stage_cap / rb);
    for (int64_t r = r0; r < r1; r += per) {
        int64_t n = r1 - r < per ? r1 - r : per;
        for (int64_t i = 0; i < n; i++) {
            const void *in = spill_weight_row(src, r + i);
            uint8_t *out = s->stage + (uint64_t)i * rb;
            if (t == src->type) {
                memcpy(out, in, rb);
            } else {
                spill_dequant_row(src->type, in, s->stage_row, src->cols);
                spill_quantize_row_ref(t, s->stage_row, out, src->cols);
            }
        }
        if (spill_cu_copy((uint8_t *)dst + (uint64_t)(r - r0) * rb, s->stage, (size_t)n * rb, err)) return -1;
    }
    return 0;
}

static int gpu_fetch(void *ctx, int slot, const spill_copy *copies, int n, spill_err *err) {
    spill_cu_state *s = ctx;
    SPILL_ASSERT(slot >= 0 && slot < s->n_events);
    if (spill_cu_queue_wait(s->copy_queue, s->used[slot], err)) return -1;
    for (int i = 0; i < n; i++)
        if (spill_cu_copy_async(copies[i].dst, copies[i].src, copies[i].n, s->copy_queue, err)) return -1;
    return spill_cu_event_record(s->ready[slot], s->copy_queue, err);
}

static int gpu_wait(void *ctx, int slot, spill_err *err) {
    spill_cu_state *s = ctx;
    return spill_cu_queue_wait(s->queue, s->ready[slot], err);
}

static int gpu_done(void *ctx, int slot, spill_err *err) {
    spill_cu_state *s = ctx;
    return spill_cu_event_record(s->used[slot], s->queue, err);
}

/* The disk tier: the kernels read a layer where its disk slot holds it (host memory the GPU reads in
 * place, as it reads the host-tier layers of a pin plan); the host waits for them before the slot's
 * next reads. Never run on a GPU (docs/disk.md). */
static int gpu_disk_done(void *ctx, int slot, spill_err *err) {
    spill_cu_state *s = ctx;
    SPILL_ASSERT(slot >= 0 && slot < s->n_disk_events);
    return spill_cu_event_record(s->disk_used[slot], s->queue, err);
}

static int gpu_disk_reuse(void *ctx, int slot, spill_err *err) {
    spill_cu_state *s = ctx;
    SPILL_ASSERT(slot >= 0 && slot < s->n_disk_events);
    return spill_cu_event_sync(s->disk_used[slot], err);
}

/* Pinned: O_DIRECT reads into it, the GPU reads it in place. Managed memory (the default backend's host
 * memory) would be rewritten every step through migrations, and is no safe target for O_DIRECT. */
static int gpu_disk_alloc(void *ctx, size_t bytes, void **out, spill_err *err) {
    (void)ctx;
    spill_err why = {{0}};
    if (spill_cu_host_alloc(out, bytes, &why))
        return spill_err_set(err, "the disk tier's %.1f MiB of pinned slots: %.400s (pinned memory is limited by "
                                  "physical memory)", (double)bytes / 1048576.0, why.msg);
    return 0;
}

static void gpu_disk_free(void *ctx, void *p, size_t bytes) {
    (void)ctx, (void)bytes;
    spill_cu_host_free(p);
}

const spill_placer_iface spill_cuda_placer = {
    .device = "GPU",
    .align = 256,
    .split_lookups = 0, /* rows are looked up by one kernel over one table */
    .drafts_in_place = 0, /* the homes are managed host memory: read in place they would migrate */
    .held_type = gpu_held_type,
    .work_bytes = gpu_work_bytes,
    .in_place = gpu_in_place,
    .put_rows = gpu_put_rows,
    .fetch = gpu_fetch,
    .wait = gpu_wait,
    .done = gpu_done,
    .disk_done = gpu_disk_done,
    .disk_reuse = gpu_disk_reuse,
    .disk_alloc = gpu_disk_alloc,
    .disk_free = gpu_disk_free,
};

int spill_cu_buffers(const spill_hparams *hp, int n_ctx, int batch, int n_seqs, int kv_block, int has_rope_freq,
                     spill_cu_state *s, spill_cu_buffer *b) {
    uint64_t B = (uint64_t)(batch > 0 ? batch : 1), q_dim = (uint64_t)spill_hparams_q_dim(hp);
    uint64_t kv_dim = (uint64_t)spill_hparams_kv_dim(hp), dim = (uint64_t)hp->dim, ff = (uint64_t)hp->ffn_dim;
    uint64_t wide = q_dim > dim ? q_dim : dim, widest = wide > ff ? wide : ff;
    uint64_t T = (uint64_t)(kv_block > 0 ? kv_block : SPILL_KV_BLOCK_DEFAULT);
    /* a step's runs (one per sequence in it) list their blocks side by side, layer by layer */
    uint64_t runs = (uint64_t)spill_cu_max_runs(batch, n_seqs);
    uint64_t table = sizeof(void *) * (uint64_t)hp->n_layers * runs * (((uint64_t)n_ctx + T - 1) / T);
    int n = 0;
#define BUF(what, bytes, tier, field) b[n++] = (spill_cu_buffer){what, bytes, tier, s ? (void **)&s->field : NULL}
    BUF("activations", B * dim * 4, SPILL_TIER_HBM, x);
    BUF("activations", B * wide * 4, SPILL_TIER_HBM, xb);
    BUF("activations", B * dim * 4, SPILL_TIER_HBM, xb2);
    BUF("activations", B * q_dim * 4, SPILL_TIER_HBM, q);
    BUF("activations", B * kv_dim * 4, SPILL_TIER_HBM, k);
    BUF("activations", B * kv_dim * 4, SPILL_TIER_HBM, v);
    BUF("activations", B * ff * 4, SPILL_TIER_HBM, hb);
    BUF("activations", B * ff * 4, SPILL_TIER_HBM, hb2);
    BUF("logits", B * (uint64_t)hp->vocab * 4, SPILL_TIER_HBM, logits);
    /* flash-decoding's partial results: bounded by the heads, not by the context or the batch */
    BUF("attention partials", 4 * spill_flash_partial_floats(hp->n_heads, hp->n_kv_heads, hp->head_dim), SPILL_TIER_HBM,
        attn_partial);
    BUF("16-bit activations", B * widest * 2, SPILL_TIER_HBM, scratch16);
    BUF("BF16 weight tile (prefill of quantized weights)", 2 * spill_cu_tile_elems(hp), SPILL_TIER_HBM, wtile);
    BUF("step layout (token ids, positions, attention tiles)", SPILL_CU_STEP_INTS(B) * sizeof(int), SPILL_TIER_HBM, step_dev);
    BUF("step layout (host side)", SPILL_CU_STEP_INTS(B) * sizeof(int), SPILL_TIER_HOST, step_host);
    BUF("KV block table", table, SPILL_TIER_HBM, blocks_dev);
    BUF("KV block table (host side)", table, SPILL_TIER_HOST, blocks_host);
    if (has_rope_freq) BUF("RoPE frequencies", sizeof(float) * (uint64_t)(hp->rope_dims / 2), SPILL_TIER_HBM, rope_freq);
#undef BUF
    SPILL_ASSERT(n <= SPILL_CU_BUFFERS);
    return n;
}
