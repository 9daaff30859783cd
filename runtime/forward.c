#include "forward.h"

#include <math.h>

static void *get(spill_state *s, uint64_t bytes, const char *what, spill_err *err) {
    SPILL_ASSERT(s->n_buf < (int)(sizeof s->buf / sizeof *s->buf));
    void *p = spill_mem_alloc(s->m->mem, bytes, spill_placement_host(), what, err);
    if (p) s->buf[s->n_buf++] = (spill_owned){p, bytes, SPILL_TIER_HOST};
    return p;
}

int spill_state_init(spill_state *s, const spill_model *m, int n_ctx, int max_batch, spill_pool *pool, spill_err *err) {
    spill_state_params p = {n_ctx, max_batch, 1, 0};
    return spill_state_init_params(s, m, &p, pool, err);
}

int spill_state_init_params(spill_state *s, const spill_model *m, const spill_state_params *sp, spill_pool *pool,
                            spill_err *err) {
    memset(s, 0, sizeof *s);
    int n_ctx = sp->n_ctx, max_batch = sp->max_batch;
    const spill_hparams *hp = &m->hp;
    if (n_ctx < 1 || n_ctx > hp->ctx_train)
        return spill_err_set(err, "context of %d tokens requested; this model allows 1..%d", n_ctx, hp->ctx_train);
    if (max_batch < 1) max_batch = 1;
    s->m = m;
    s->pool = pool;
    s->n_ctx = n_ctx;
    s->max_batch = max_batch;
    uint64_t B = (uint64_t)max_batch, q_dim = (uint64_t)hp->n_heads * hp->head_dim;
    uint64_t kv_dim = (uint64_t)hp->n_kv_heads * hp->head_dim;
    uint64_t wide = q_dim > (uint64_t)hp->dim ? q_dim : (uint64_t)hp->dim;
    uint64_t act_row = 0;
    uint64_t widths[3] = {(uint64_t)hp->dim, q_dim, (uint64_t)hp->ffn_dim};
    for (int i = 0; i < 3; i++) {
        /* the largest conversion any weight type needs for this width (F32 at 4 bytes per value) */
        uint64_t b = widths[i] * 4 + 64;
        if (b > act_row) act_row = b;
    }
    int nth = spill_pool_size(pool);
    if (!(s->x = get(s, B * hp->dim * 4, "activations", err)) || !(s->xb = get(s, B * wide * 4, "activations", err)) ||
        !(s->xb2 = get(s, B * hp->dim * 4, "activations", err)) || !(s->q = get(s, B * q_dim * 4, "activations", err)) ||
        !(s->k = get(s, B * kv_dim * 4, "activations", err)) || !(s->v = get(s, B * kv_dim * 4, "activations", err)) ||
        !(s->hb = get(s, B * hp->ffn_dim * 4, "activations", err)) ||
        !(s->hb2 = get(s, B * hp->ffn_dim * 4, "activations", err)) ||
        !(s->att = get(s, (uint64_t)nth * n_ctx * 4, "attention scores", err)) ||
        !(s->logits = get(s, (uint64_t)hp->vocab * 4, "logits", err)) || !(s->act = get(s, B * act_row, "activations", err)) ||
        !(s->rope_cs = get(s, B * (uint64_t)hp->rope_dims * 4, "activations", err))) {
        spill_state_free(s);
        return -1;
    }
    for (int i = 0; i < s->n_buf; i++) s->act_bytes += s->buf[i].size;
    /* the KV cache: each layer may keep as much in HBM as the plan gives its KV region */
    int L = hp->n_layers;
    uint64_t *hbm = calloc((size_t)L, sizeof *hbm);
    if (!hbm) {
        spill_state_free(s);
        return spill_err_set(err, "out of memory");
    }
    for (int l = 0; l < L; l++) hbm[l] = m->plan.region[L + l].hbm_bytes;
    int rc = spill_kv_init(&s->kv, m->mem, L, (int)kv_dim, n_ctx, sp->n_seqs > 0 ? sp->n_seqs : 1, sp->kv_block, 0, hbm, err);
    free(hbm);
    if (rc || spill_kv_seq_open(&s->kv, 0, err)) {
        spill_state_free(s);
        return -1;
    }
    if (spill_exec_init(&s->exec, m, err)) {
        spill_state_free(s);
        return -1;
    }
    return 0;
}

void spill_state_free(spill_state *s) {
    spill_exec_free(s->exec);
    for (int i = 0; i < s->n_buf; i++) spill_mem_put(s->m->mem, s->buf[i].ptr, s->buf[i].size);
    if (s->kv.mem) spill_kv_free(&s->kv);
    memset(s, 0, sizeof *s);
}

/* out (n, w->rows) = x (n, w->cols) @ w^T, converting x once per activation type */
static void matmul(spill_state *s, float *out, const float *x, int n, const spill_weight *w) {
    spill_dtype at = spill_act_type(w->type);
    uint64_t stride = spill_act_bytes(w->type, w->cols);
    if (s->act_src != x || s->act_type != at) {
        for (int t = 0; t < n; t++) spill_act_quantize(w->type, x + (int64_t)t * w->cols, s->act + t * stride, w->cols);
        s->act_src = x;
        s->act_type = at;
    }
    if (w->split >= w->rows) {
        spill_matmul(s->pool, out, w->data, w->type, w->rows, w->cols, s->act, n);
    } else {
        /* split between tiers: the leading rows from one, the rest from the other */
        if (w->split > 0) spill_matmul_ld(s->pool, out, w->rows, w->data, w->type, w->split, w->cols, s->act, n);
        spill_matmul_ld(s->pool, out + w->split, w->rows, w->data_hi, w->type, w->rows - w->split, w->cols, s->act, n);
    }
}

typedef struct {
    spill_state *s;
    int layer, n, pos;
} attn_job;

/* One (token, head) pair per unit of work: scores against every cached key up to the token's
 * position, softmax, then the weighted sum of values. */
static void attn_worker(void *ctx, int ith, int nth) {
    const attn_job *j = ctx;
    spill_state *s = j->s;
    const spill_hparams *hp = &s->m->hp;
    int hd = hp->head_dim, kv_dim = hp->n_kv_heads * hd, q_dim = hp->n_heads * hd;
    int group = hp->n_heads / hp->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    const spill_kv *kv = &s->kv;
    float *att = s->att + (int64_t)ith * s->n_ctx;
    int units = j->n * hp->n_heads;
    for (int u = ith; u < units; u += nth) {
        int t = u / hp->n_heads, h = u % hp->n_heads, kvh = h / group;
        int len = j->pos + t + 1;
        const float *q = s->q + (int64_t)t * q_dim + (int64_t)h * hd;
        /* through the block table, one block of T positions at a time */
        for (int p0 = 0; p0 < len; p0 += kv->T) {
            const float *kb = spill_kv_k(kv, s->seq, j->layer, p0) + (int64_t)kvh * hd;
            int end = p0 + kv->T < len ? p0 + kv->T : len;
            for (int p = p0; p < end; p++) att[p] = spill_dot_f32(q, kb + (int64_t)(p - p0) * kv_dim, hd);
        }
        spill_softmax(att, len, scale);
        float *out = s->xb + (int64_t)t * q_dim + (int64_t)h * hd;
        for (int d = 0; d < hd; d++) out[d] = 0;
        for (int p0 = 0; p0 < len; p0 += kv->T) {
            const float *vb = spill_kv_v(kv, s->seq, j->layer, p0) + (int64_t)kvh * hd;
            int end = p0 + kv->T < len ? p0 + kv->T : len;
            for (int p = p0; p < end; p++) {
                const float *v = vb + (int64_t)(p - p0) * kv_dim;
                float a = att[p];
                for (int d = 0; d < hd; d++) out[d] = fmaf(a, v[d], out[d]);
            }
        }
    }
}

#define TRACE(name, layer, x, count)                                                       \
    do {                                                                                    \
        if (s->trace) s->trace(s->trace_ctx, name, layer, x, count);                       \
    } while (0)

int spill_forward(spill_state *s, const int *tokens, int n, int pos, spill_err *err) {
    const spill_model *m = s->m;
    const spill_hparams *hp = &m->hp;
    if (n < 1 || n > s->max_batch) return spill_err_set(err, "forward: batch of %d tokens; 1..%d allowed", n, s->max_batch);
    if (pos < 0 || pos + n > s->n_ctx)
        return spill_err_set(err, "the context is full: %d tokens would need positions up to %d but the context holds %d "
                                  "(raise -c/--ctx-size)", n, pos + n, s->n_ctx);
    int dim = hp->dim, hd = hp->head_dim, q_dim = hp->n_heads * hd, kv_dim = hp->n_kv_heads * hd, ff = hp->ffn_dim;
    if (spill_kv_prepare(&s->kv, s->seq, pos, n, err)) return -1;
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= hp->vocab)
            return spill_err_set(err, "token id %d is outside the vocabulary of %d", tokens[t], hp->vocab);
        spill_dequant_row(m->tok_embd.type, spill_weight_row(&m->tok_embd, tokens[t]), s->x + (int64_t)t * dim, dim);
        spill_exec_account(s->exec, tokens[t] < m->tok_embd.split && m->region_hbm[2 * hp->n_layers] ? SPILL_TIER_HBM : SPILL_TIER_HOST,
                           spill_weight_row_bytes(&m->tok_embd));
    }
    /* RoPE's angles for each token's position, once for every head of every layer */
    for (int t = 0; t < n; t++)
        spill_rope_angles(s->rope_cs + (int64_t)t * hp->rope_dims, hp->rope_dims, pos + t, hp->rope_base, m->rope_freq);
    for (int l = 0; l < hp->n_layers; l++) {
        /* the layer boundary: the plan's prefetches and evictions, and the layer's weights as placed */
        const spill_layer *L = spill_exec_layer(s->exec, l);
        /* attention: norm -> q, k, v -> rope -> cache -> softmax(q k^T) v -> output -> residual */
        for (int t = 0; t < n; t++) spill_rmsnorm(s->xb + (int64_t)t * dim, s->x + (int64_t)t * dim, L->attn_norm.data, dim, hp->eps);
        TRACE("attn_norm", l, s->xb, (int64_t)n * dim);
        s->act_src = NULL;
        matmul(s, s->q, s->xb, n, &L->wq);
        matmul(s, s->k, s->xb, n, &L->wk);
        matmul(s, s->v, s->xb, n, &L->wv);
        if (L->bq.data) { /* Qwen2's q/k/v biases */
            spill_add_rows(s->q, L->bq.data, n, q_dim);
            spill_add_rows(s->k, L->bk.data, n, kv_dim);
            spill_add_rows(s->v, L->bv.data, n, kv_dim);
        }
        for (int t = 0; t < n; t++) {
            const float *cs = s->rope_cs + (int64_t)t * hp->rope_dims;
            spill_rope_apply(s->q + (int64_t)t * q_dim, hp->n_heads, hd, hp->rope_dims, cs, hp->rope_adjacent);
            spill_rope_apply(s->k + (int64_t)t * kv_dim, hp->n_kv_heads, hd, hp->rope_dims, cs, hp->rope_adjacent);
            memcpy(spill_kv_k(&s->kv, s->seq, l, pos + t), s->k + (int64_t)t * kv_dim, sizeof(float) * (size_t)kv_dim);
            memcpy(spill_kv_v(&s->kv, s->seq, l, pos + t), s->v + (int64_t)t * kv_dim, sizeof(float) * (size_t)kv_dim);
        }
        TRACE("Qcur", l, s->q, (int64_t)n * q_dim);
        TRACE("Kcur", l, s->k, (int64_t)n * kv_dim);
        TRACE("Vcur", l, s->v, (int64_t)n * kv_dim);
        attn_job aj = {s, l, n, pos};
        spill_pool_run(s->pool, attn_worker, &aj);
        TRACE("kqv_out", l, s->xb, (int64_t)n * q_dim);
        s->act_src = NULL;
        matmul(s, s->xb2, s->xb, n, &L->wo);
        TRACE("attn_out", l, s->xb2, (int64_t)n * dim);
        spill_add(s->x, s->xb2, n * dim);
        TRACE("ffn_inp", l, s->x, (int64_t)n * dim);

        /* feed-forward: norm -> gate, up -> silu(gate) * up -> down -> residual */
        for (int t = 0; t < n; t++) spill_rmsnorm(s->xb + (int64_t)t * dim, s->x + (int64_t)t * dim, L->ffn_norm.data, dim, hp->eps);
        TRACE("ffn_norm", l, s->xb, (int64_t)n * dim);
        s->act_src = NULL;
        matmul(s, s->hb, s->xb, n, &L->w_gate);
        matmul(s, s->hb2, s->xb, n, &L->w_up);
        TRACE("ffn_gate", l, s->hb, (int64_t)n * ff);
        TRACE("ffn_up", l, s->hb2, (int64_t)n * ff);
        spill_swiglu(s->hb, s->hb, s->hb2, n * ff);
        TRACE("ffn_swiglu", l, s->hb, (int64_t)n * ff);
        s->act_src = NULL;
        matmul(s, s->xb2, s->hb, n, &L->w_down);
        TRACE("ffn_out", l, s->xb2, (int64_t)n * dim);
        spill_add(s->x, s->xb2, n * dim);
        TRACE("l_out", l, s->x, (int64_t)n * dim);
    }
    /* head: only the last token's logits are needed */
    const float *last = s->x + (int64_t)(n - 1) * dim;
    spill_rmsnorm(s->xb, last, m->out_norm.data, dim, hp->eps);
    TRACE("result_norm", -1, s->xb, dim);
    s->act_src = NULL;
    matmul(s, s->logits, s->xb, 1, &m->output);
    TRACE("result_output", -1, s->logits, hp->vocab);
    int L = hp->n_layers, out_r = m->tied ? 2 * L : 2 * L + 1;
    spill_exec_account(s->exec, SPILL_TIER_HBM, m->region_hbm[out_r] + m->region_hbm[2 * L + 2]);
    spill_exec_account(s->exec, SPILL_TIER_HOST, m->regions[out_r].bytes - m->region_hbm[out_r] +
                                                     m->regions[2 * L + 2].bytes - m->region_hbm[2 * L + 2]);
    return 0;
}
