/* The forward pass on a CUDA GPU (see forward_cuda.h). Every CUDA call is checked; the kernels are
 * the ones tests/test_cuda_ops.c holds to their CPU twins. */
#include "forward_cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>

#include "spill_cuda_ops.h"
#include "spill_platform.h"

#define TRY(call)                                                                                             \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess)                                                                                \
            return spill_err_set(err, "%s failed: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
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

/* device memory for work buffers (HBM, from alloc/ like everything else) */
static void *work(spill_cu_state *s, size_t bytes, const char *what, spill_err *err) {
    spill_placement pl = {SPILL_TIER_HBM, -1, SPILL_PLACE_GPU_READS};
    void *p = spill_mem_alloc(s->mem, bytes, pl, what, err);
    if (p && own(s, p, bytes, SPILL_TIER_HBM, err)) return NULL;
    return p;
}

/* The type cuBLAS gets for a weight stored as t. */
static spill_dtype gpu_type(spill_dtype t) { return t == SPILL_DT_F32 || t == SPILL_DT_BF16 ? t : SPILL_DT_F16; }

/* Copy (converting if needed) a weight into memory placed as `pl`; vectors become F32. */
static int place(spill_cu_state *s, const spill_weight *src, spill_weight *dst, spill_placement pl, int keep_type,
                 spill_err *err) {
    if (!src->data) {
        memset(dst, 0, sizeof *dst);
        return 0;
    }
    spill_dtype t = src->rows == 1 ? SPILL_DT_F32 : keep_type ? src->type : gpu_type(src->type);
    uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)src->cols), bytes = rb * (uint64_t)src->rows;
    void *p = spill_mem_alloc(s->mem, bytes, pl, "weights for the GPU", err);
    if (!p || own(s, p, bytes, pl.tier, err)) return -1;
    float *row = malloc(sizeof(float) * (size_t)src->cols);
    uint8_t *conv = malloc(rb ? rb : 1);
    if (!row || !conv) {
        free(row), free(conv);
        return spill_err_set(err, "out of memory");
    }
    int rc = 0;
    for (int64_t r = 0; r < src->rows && !rc; r++) {
        const void *in = spill_weight_row(src, r);
        const void *out = in;
        if (t != src->type) {
            spill_dequant_row(src->type, in, row, src->cols);
            spill_quantize_row_ref(t, row, conv, src->cols);
            out = conv;
        }
        /* cudaMemcpyDefault: the destination may be managed or device memory */
        cudaError_t e = cudaMemcpy((uint8_t *)p + (uint64_t)r * rb, out, rb, cudaMemcpyDefault);
        if (e != cudaSuccess) rc = spill_err_set(err, "copying weights to the GPU failed: %s", cudaGetErrorString(e));
    }
    free(row), free(conv);
    if (rc) return -1;
    *dst = *src;
    dst->data = p;
    dst->data_hi = NULL;
    dst->split = src->rows;
    dst->type = t;
    s->weight_bytes[pl.tier] += bytes;
    return 0;
}

int spill_cu_state_init(spill_cu_state *s, const spill_model *m, spill_mem *mem, int n_ctx, int max_batch, spill_err *err) {
    memset(s, 0, sizeof *s);
    int n_gpu = 0;
    spill_err gerr;
    if (spill_gpu_count(&n_gpu, &gerr)) return spill_err_set(err, "%s", gerr.msg);
    const spill_hparams *hp = &m->hp;
    if (n_ctx < 1 || n_ctx > hp->ctx_train || max_batch < 1)
        return spill_err_set(err, "context of %d tokens (the model allows 1..%d), batch of %d", n_ctx, hp->ctx_train,
                             max_batch);
    s->m = m;
    s->mem = mem;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    int L = hp->n_layers;
    if (!(s->layers = calloc((size_t)L, sizeof *s->layers))) return spill_err_set(err, "out of memory");
    cudaStream_t st;
    TRY(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    s->stream = st;
    if (spill_cu_blas_create(&s->blas, err)) goto fail;
    /* the weights, where the plan puts each region: HBM, or host memory the GPU reads in place */
    for (int r = 0; r < m->n_regions; r++) {
        const spill_region_plan *rp = &m->plan.region[r];
        spill_placement pl = {rp->tier == SPILL_TIER_HBM ? SPILL_TIER_HBM : SPILL_TIER_HOST, -1,
                              SPILL_PLACE_GPU_READS | SPILL_PLACE_READ_MOSTLY};
        if (r < L) {
            const spill_layer *a = &m->layers[r];
            spill_cu_layer *b = &s->layers[r];
            const spill_weight *src[12] = {&a->attn_norm, &a->ffn_norm, &a->bq, &a->bk, &a->bv, &a->wq,
                                           &a->wk, &a->wv, &a->wo, &a->w_gate, &a->w_up, &a->w_down};
            spill_weight *dst[12] = {&b->attn_norm, &b->ffn_norm, &b->bq, &b->bk, &b->bv, &b->wq,
                                     &b->wk, &b->wv, &b->wo, &b->w_gate, &b->w_up, &b->w_down};
            for (int i = 0; i < 12; i++)
                if (place(s, src[i], dst[i], pl, 0, err)) goto fail;
        } else if (r == 2 * L) {
            /* the embedding keeps its type (rows are looked up, not multiplied) unless the GPU cannot read it */
            int keep = m->tok_embd.type != SPILL_DT_Q4_K && m->tok_embd.type != SPILL_DT_Q6_K;
            if (place(s, &m->tok_embd, &s->embd, pl, keep, err)) goto fail;
        } else if (r == 2 * L + 1 && !m->tied) {
            if (place(s, &m->output, &s->output, pl, 0, err)) goto fail;
        } else if (r == 2 * L + 2) {
            if (place(s, &m->out_norm, &s->out_norm, pl, 0, err)) goto fail;
        }
    }
    if (m->tied && place(s, &m->tok_embd, &s->output, (spill_placement){SPILL_TIER_HOST, -1, SPILL_PLACE_GPU_READS}, 0, err))
        goto fail;
    if (m->rope_freq) {
        size_t n = sizeof(float) * (size_t)(hp->rope_dims / 2);
        if (!(s->rope_freq = work(s, n, "RoPE frequencies", err))) goto fail;
        TRY(cudaMemcpy(s->rope_freq, m->rope_freq, n, cudaMemcpyDefault));
    }
    /* the KV cache: the plan's HBM bytes per layer, the rest in host memory the GPU reads */
    uint64_t *hbm = calloc((size_t)L, sizeof *hbm);
    if (!hbm) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < L; l++) hbm[l] = m->plan.region[L + l].hbm_bytes;
    int kv_dim = hp->n_kv_heads * hp->head_dim, q_dim = hp->n_heads * hp->head_dim;
    int rc = spill_kv_init(&s->kv, mem, L, kv_dim, n_ctx, 1, 0, 0, hbm, err);
    free(hbm);
    if (rc || spill_kv_seq_open(&s->kv, 0, err)) goto fail;
    size_t B = (size_t)max_batch, wide = (size_t)(q_dim > hp->dim ? q_dim : hp->dim);
    size_t widest = wide > (size_t)hp->ffn_dim ? wide : (size_t)hp->ffn_dim;
    if (!(s->x = work(s, B * hp->dim * 4, "activations", err)) || !(s->xb = work(s, B * wide * 4, "activations", err)) ||
        !(s->xb2 = work(s, B * hp->dim * 4, "activations", err)) || !(s->q = work(s, B * q_dim * 4, "activations", err)) ||
        !(s->k = work(s, B * kv_dim * 4, "activations", err)) || !(s->v = work(s, B * kv_dim * 4, "activations", err)) ||
        !(s->hb = work(s, B * hp->ffn_dim * 4, "activations", err)) ||
        !(s->hb2 = work(s, B * hp->ffn_dim * 4, "activations", err)) ||
        !(s->logits = work(s, (size_t)hp->vocab * 4, "logits", err)) ||
        !(s->scores = work(s, B * hp->n_heads * (size_t)n_ctx * 4, "attention scores", err)) ||
        !(s->scratch16 = work(s, B * widest * 2, "16-bit activations", err)) ||
        !(s->ids = work(s, B * sizeof(int), "token ids", err)) ||
        !(s->blocks_dev = work(s, sizeof(float *) * (size_t)s->kv.blocks_per_seq, "KV block table", err)))
        goto fail;
    s->blocks_host = calloc((size_t)s->kv.blocks_per_seq, sizeof *s->blocks_host);
    s->logits_host = malloc(sizeof(float) * (size_t)hp->vocab);
    if (!s->blocks_host || !s->logits_host) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    return 0;
fail:
    spill_cu_state_free(s);
    return -1;
}

void spill_cu_state_free(spill_cu_state *s) {
    if (s->stream) cudaStreamSynchronize((cudaStream_t)s->stream);
    if (s->kv.mem) spill_kv_free(&s->kv);
    for (int i = 0; i < s->n_owned; i++) spill_mem_put(s->mem, s->owned[i].ptr, s->owned[i].size);
    spill_cu_blas_destroy(s->blas);
    if (s->stream) cudaStreamDestroy((cudaStream_t)s->stream);
    free(s->owned);
    free(s->layers);
    free(s->blocks_host);
    free(s->logits_host);
    memset(s, 0, sizeof *s);
}

static int mm(spill_cu_state *s, float *out, const spill_weight *w, const float *x, int n, spill_err *err) {
    return spill_cu_gemm(s->blas, out, w->data, w->type, w->rows, w->cols, x, n, s->scratch16, s->stream, err);
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
    if (spill_kv_prepare(&s->kv, 0, pos, n, err)) return -1;
    cudaStream_t st = (cudaStream_t)s->stream;
    int dim = hp->dim, hd = hp->head_dim, q_dim = hp->n_heads * hd, kv_dim = hp->n_kv_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    TRY(cudaMemcpyAsync(s->ids, tokens, sizeof(int) * (size_t)n, cudaMemcpyHostToDevice, st));
    if (spill_cu_get_rows(s->x, s->embd.data, s->embd.type, dim, s->ids, n, st, err)) return -1;
    int n_blocks = (pos + n + s->kv.T - 1) / s->kv.T;
    for (int l = 0; l < hp->n_layers; l++) {
        const spill_cu_layer *L = &s->layers[l];
        /* attention: norm -> q, k, v -> rope -> cache -> softmax(q k^T) v -> output -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, L->attn_norm.data, n, dim, hp->eps, st, err) || mm(s, s->q, &L->wq, s->xb, n, err) ||
            mm(s, s->k, &L->wk, s->xb, n, err) || mm(s, s->v, &L->wv, s->xb, n, err))
            return -1;
        if (L->bq.data)
            for (int t = 0; t < n; t++)
                if (spill_cu_add(s->q + (size_t)t * q_dim, L->bq.data, q_dim, st, err) ||
                    spill_cu_add(s->k + (size_t)t * kv_dim, L->bk.data, kv_dim, st, err) ||
                    spill_cu_add(s->v + (size_t)t * kv_dim, L->bv.data, kv_dim, st, err))
                    return -1;
        if (spill_cu_rope(s->q, n, hp->n_heads, hd, hp->rope_dims, pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, st, err) ||
            spill_cu_rope(s->k, n, hp->n_kv_heads, hd, hp->rope_dims, pos, hp->rope_base, s->rope_freq, hp->rope_adjacent, st,
                          err))
            return -1;
        for (int t = 0; t < n; t++) {
            TRY(cudaMemcpyAsync(spill_kv_k(&s->kv, 0, l, pos + t), s->k + (size_t)t * kv_dim, sizeof(float) * (size_t)kv_dim,
                                cudaMemcpyDefault, st));
            TRY(cudaMemcpyAsync(spill_kv_v(&s->kv, 0, l, pos + t), s->v + (size_t)t * kv_dim, sizeof(float) * (size_t)kv_dim,
                                cudaMemcpyDefault, st));
        }
        /* this layer's blocks, in table order; pageable source: the copy is staged before it returns */
        for (int b = 0; b < n_blocks; b++) s->blocks_host[b] = s->kv.part[(size_t)s->kv.table[0][b] * (size_t)s->kv.L + (size_t)l];
        TRY(cudaMemcpyAsync((void *)s->blocks_dev, s->blocks_host, sizeof(float *) * (size_t)n_blocks, cudaMemcpyHostToDevice, st));
        if (spill_cu_attention(s->xb, s->q, s->blocks_dev, s->kv.T, n, pos, hp->n_heads, hp->n_kv_heads, hd, scale, s->scores,
                               st, err) ||
            mm(s, s->xb2, &L->wo, s->xb, n, err) || spill_cu_add(s->x, s->xb2, (int64_t)n * dim, st, err))
            return -1;
        /* feed-forward: norm -> gate, up -> silu(gate) * up -> down -> residual */
        if (spill_cu_rmsnorm(s->xb, s->x, L->ffn_norm.data, n, dim, hp->eps, st, err) ||
            mm(s, s->hb, &L->w_gate, s->xb, n, err) || mm(s, s->hb2, &L->w_up, s->xb, n, err) ||
            spill_cu_swiglu(s->hb, s->hb, s->hb2, (int64_t)n * hp->ffn_dim, st, err) || mm(s, s->xb2, &L->w_down, s->hb, n, err) ||
            spill_cu_add(s->x, s->xb2, (int64_t)n * dim, st, err))
            return -1;
    }
    /* head: the last token only */
    if (spill_cu_rmsnorm(s->xb, s->x + (size_t)(n - 1) * dim, s->out_norm.data, 1, dim, hp->eps, st, err) ||
        mm(s, s->logits, &s->output, s->xb, 1, err))
        return -1;
    TRY(cudaMemcpyAsync(s->logits_host, s->logits, sizeof(float) * (size_t)hp->vocab, cudaMemcpyDeviceToHost, st));
    TRY(cudaStreamSynchronize(st));
    return 0;
}
