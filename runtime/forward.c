/* The CPU device: its state (work buffers from alloc/, the weights as placed, the plan's executor,
 * the paged KV cache) and the forward pass, top to bottom as the paper has it. */
#include "forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

typedef struct cpu_state {
    const spill_model *m;
    const spill_hparams *hp;
    spill_pool *pool;
    spill_mem *mem;
    int n_ctx, max_batch;
    spill_placer placer;
    spill_placed placed; /* the weights as the plan put them */
    spill_exec exec;     /* the plan, step by step */
    spill_kv kv;         /* the paged KV cache, placed per layer as the plan says */
    /* work buffers, from the table in buffers() */
    float *x;       /* (batch, dim) residual stream */
    float *xb;      /* (batch, max(dim, q_dim)) */
    float *xb2;     /* (batch, dim) */
    float *q;       /* (batch, q_dim) */
    float *k, *v;   /* (batch, kv_dim) */
    float *hb, *hb2; /* (batch, ffn_dim) */
    float *att;     /* (threads, att_rows, att_ld) attention scores */
    float *kv_rows; /* (threads, ATT_WIDE, head_dim) a 16-bit cache's K or V rows as floats */
    float *att_q;   /* (threads, 2, att_rows, head_dim) a unit's queries gathered, and as the tiles prepare them */
    int *att_tile;  /* (batch) first token of each tile of a step's attention */
    int att_rows;   /* query rows (tokens x heads of one KV head) a unit of attention takes */
    int64_t att_ld; /* floats from one query row's scores to the next: n_ctx and 16 more, so that rows
                       n_ctx apart (a power of two) do not meet in the same cache sets */
    float *logits;  /* (batch, vocab) of the tokens whose outputs a step keeps */
    int n_out;      /* how many the last step kept */
    int *out_row;   /* (batch) the batch row of each kept output */
    float *rope_cs; /* (batch, rope_dims) cos and sin of each token's RoPE angles */
    uint8_t *act;   /* (batch, act bytes) converted activations for the next matmul */
    const float *act_src; /* what `act` holds, to avoid converting the same rows twice */
    spill_dtype act_type;
    uint64_t act_bytes;
    void (*trace)(void *ctx, const char *name, int layer, const float *x, int64_t n);
    void *trace_ctx;
} cpu_state;

#define ATT_ROWS_MAX 24
/* a 16-bit cache's K or V rows widened to floats at a time: the default KV block (64 x head_dim floats a
   thread, 16 KiB at head_dim 64); 32 at a time ran 5% slower at 16 sequences x 384 positions */
#define ATT_WIDE 64
/* query rows per unit: up to ATT_ROWS_MAX, fewer where the scores (rows x att_ld floats per thread)
   would pass 1 MiB. SPILL_ATT_ROWS=N sets it (1..ATT_ROWS_MAX), for tests of the tiling's edges (a
   KV head's query heads split across units, tiles of one token) and for measurements */
static int att_rows(int n_ctx) {
    const char *env = getenv("SPILL_ATT_ROWS");
    int64_t r = ((int64_t)1 << 18) / (n_ctx > 0 ? n_ctx : 1);
    if (env && *env) r = atoi(env);
    return r < 1 ? 1 : r > ATT_ROWS_MAX ? ATT_ROWS_MAX : (int)r;
}

typedef struct buffer {
    const char *what;
    uint64_t bytes;
    void **dst;
} buffer;

/* The work buffers: sized here, allocated and freed from this one table. */
static int buffers(cpu_state *s, buffer *b) {
    const spill_hparams *hp = s->hp;
    uint64_t B = (uint64_t)s->max_batch, q_dim = (uint64_t)spill_hparams_q_dim(hp);
    uint64_t kv_dim = (uint64_t)spill_hparams_kv_dim(hp), dim = (uint64_t)hp->dim, ff = (uint64_t)hp->ffn_dim;
    uint64_t wide = q_dim > dim ? q_dim : dim;
    /* the largest conversion any weight type needs for the widest input (F32, 4 bytes a value) */
    uint64_t widest = wide > ff ? wide : ff, act_row = widest * 4 + 64;
    uint64_t nth = (uint64_t)spill_pool_size(s->pool);
    int n = 0;
    b[n++] = (buffer){"activations", B * dim * 4, (void **)&s->x};
    b[n++] = (buffer){"activations", B * wide * 4, (void **)&s->xb};
    b[n++] = (buffer){"activations", B * dim * 4, (void **)&s->xb2};
    b[n++] = (buffer){"activations", B * q_dim * 4, (void **)&s->q};
    b[n++] = (buffer){"activations", B * kv_dim * 4, (void **)&s->k};
    b[n++] = (buffer){"activations", B * kv_dim * 4, (void **)&s->v};
    b[n++] = (buffer){"activations", B * ff * 4, (void **)&s->hb};
    b[n++] = (buffer){"activations", B * ff * 4, (void **)&s->hb2};
    uint64_t R = (uint64_t)s->att_rows;
    b[n++] = (buffer){"attention scores", nth * R * (uint64_t)s->att_ld * 4, (void **)&s->att};
    b[n++] = (buffer){"attention K/V rows", nth * ATT_WIDE * (uint64_t)hp->head_dim * 4, (void **)&s->kv_rows};
    b[n++] = (buffer){"attention queries", nth * 2 * R * (uint64_t)hp->head_dim * 4, (void **)&s->att_q};
    b[n++] = (buffer){"attention tiles", B * sizeof(int), (void **)&s->att_tile};
    b[n++] = (buffer){"logits", B * (uint64_t)hp->vocab * 4, (void **)&s->logits};
    b[n++] = (buffer){"output rows", B * sizeof(int), (void **)&s->out_row};
    b[n++] = (buffer){"activations", B * act_row, (void **)&s->act};
    b[n++] = (buffer){"RoPE angles", B * (uint64_t)hp->rope_dims * 4, (void **)&s->rope_cs};
    return n;
}

static void cpu_free(void *ctx) {
    cpu_state *s = ctx;
    if (!s) return;
    spill_cpu_placer_close(&s->placer); /* the prefetch thread's copies are done before the ring goes */
    spill_exec_free(&s->exec);
    spill_placed_free(&s->placed);
    buffer b[24];
    int n = buffers(s, b);
    for (int i = 0; i < n; i++)
        if (*b[i].dst) spill_mem_put(s->mem, *b[i].dst, b[i].bytes);
    spill_kv_free(&s->kv);
    free(s);
}

int spill_cpu_open(const spill_device_params *p, spill_device *out, spill_err *err) {
    const spill_hparams *hp = &p->model->hp;
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return spill_err_set(err, "out of memory");
    *s = (cpu_state){.m = p->model, .hp = hp, .pool = p->pool, .mem = p->mem, .n_ctx = p->n_ctx,
                     .max_batch = p->batch, .trace = p->trace, .trace_ctx = p->trace_ctx};
    s->att_rows = att_rows(s->n_ctx);
    s->att_ld = (int64_t)s->n_ctx + 16;
    buffer b[24];
    int n = buffers(s, b);
    for (int i = 0; i < n; i++) {
        if (!(*b[i].dst = spill_mem_alloc(s->mem, b[i].bytes, spill_placement_host(), b[i].what, err))) goto fail;
        s->act_bytes += b[i].bytes;
    }
    /* the KV cache: each layer may keep as much in HBM as the plan gives its KV region */
    int L = hp->n_layers;
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
    if (spill_cpu_placer_open(&s->placer, p->plan->ring_slots, err) ||
        spill_place(&s->placer, p->model, p->regions, p->plan, s->mem, &s->placed, err) ||
        spill_exec_init(&s->exec, s->placer, hp, p->plan, &s->placed, s->mem, err) ||
        spill_exec_open_disk(&s->exec, p->model, p->disk_mode, err))
        goto fail;
    *out = (spill_device){&spill_cpu_device, s};
    return 0;
fail:
    cpu_free(s);
    return -1;
}

/* Element-wise work over a batch, split between the pool's threads when there are several tokens (a
 * prefill): done by the calling thread alone, the activations' quantization and SwiGLU kept the other
 * threads waiting, ~15% of a 2-thread SmolLM2 prefill on the x86 dev VM (perf). Each value is computed
 * as it was, so the split changes no bit. */
typedef struct quant_job {
    cpu_state *s;
    const spill_weight *w;
    const float *x;
    int n;
    uint64_t stride;
    float *normed;     /* when not NULL: each token's RMSNorm of x (times nw) first, here (norm_quant) */
    const float *nw;
    atomic_int next;   /* the next token to take */
} quant_job;

static void quant_worker(void *ctx, int ith, int nth) {
    quant_job *j = ctx;
    (void)ith, (void)nth;
    const spill_hparams *hp = j->s->hp;
    for (int t; (t = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->n;) {
        const float *x = j->x + (int64_t)t * j->w->cols;
        if (j->normed) {
            float *o = j->normed + (int64_t)t * hp->dim;
            spill_rmsnorm(o, x, j->nw, hp->dim, hp->eps);
            x = o;
        }
        spill_act_quantize(j->w->type, x, j->s->act + t * j->stride, j->w->cols);
    }
}

typedef struct swiglu_job {
    float *out;
    const float *gate, *up;
    int64_t n, per;      /* values in all, per unit (a multiple of 16) */
    _Atomic int64_t next; /* the next unit to take */
} swiglu_job;

static void swiglu_worker(void *ctx, int ith, int nth) {
    swiglu_job *j = ctx;
    (void)ith, (void)nth;
    for (int64_t u; (u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) * j->per < j->n;) {
        int64_t b = u * j->per, e = b + j->per < j->n ? b + j->per : j->n;
        spill_swiglu(j->out + b, j->gate + b, j->up + b, (int)(e - b));
    }
}

static void swiglu(cpu_state *s, float *out, const float *gate, const float *up, int n, int ff) {
    if (n == 1) {
        spill_swiglu(out, gate, up, ff);
        return;
    }
    /* 4 units a thread: a thread the OS has not scheduled leaves its share to the others */
    int64_t all = (int64_t)n * ff, units = 4 * (int64_t)spill_pool_size(s->pool);
    swiglu_job j = {out, gate, up, all, ((all + units - 1) / units + 15) / 16 * 16, 0};
    spill_pool_share(s->pool, swiglu_worker, &j);
}

/* RMSNorm of n tokens (out = norm(x) * nw) and, for n > 1, each token's activations for w quantized by
 * the same thread (what matmul would do next, over the pool): one parallel pass where a 16-token step
 * had every token's norm on the calling thread while the others waited */
static void norm_quant(cpu_state *s, float *out, const float *x, const float *nw, int n, const spill_weight *w) {
    const spill_hparams *hp = s->hp;
    if (n == 1 || w->cols != hp->dim) {
        for (int t = 0; t < n; t++) spill_rmsnorm(out + (int64_t)t * hp->dim, x + (int64_t)t * hp->dim, nw, hp->dim, hp->eps);
        s->act_src = NULL;
        return;
    }
    quant_job j = {s, w, x, n, spill_act_bytes(w->type, w->cols), out, nw, 0};
    spill_pool_share(s->pool, quant_worker, &j);
    s->act_src = out; /* matmul finds them quantized for w's type */
    s->act_type = spill_act_type(w->type);
}

/* x (n tokens) converted for w's type into s->act, unless it is there already */
static void act_for(cpu_state *s, const float *x, int n, const spill_weight *w) {
    spill_dtype at = spill_act_type(w->type);
    if (s->act_src == x && s->act_type == at) return;
    if (n == 1) {
        spill_act_quantize(w->type, x, s->act, w->cols);
    } else {
        quant_job j = {s, w, x, n, spill_act_bytes(w->type, w->cols), NULL, NULL, 0};
        spill_pool_share(s->pool, quant_worker, &j);
    }
    s->act_src = x;
    s->act_type = at;
}

/* out (n, ldo): x (n, w->cols) @ w^T, w's rows of each token's output in the first w->rows of its row of
   ldo, converting x once per activation type */
static void matmul_ld(cpu_state *s, float *out, int64_t ldo, const float *x, int n, const spill_weight *w) {
    act_for(s, x, n, w);
    if (w->split >= w->rows) {
        spill_matmul_ld(s->pool, out, ldo, w->data, w->type, w->rows, w->cols, s->act, n);
    } else {
        /* split between tiers: the leading rows from one, the rest from the other */
        if (w->split > 0) spill_matmul_ld(s->pool, out, ldo, w->data, w->type, w->split, w->cols, s->act, n);
        spill_matmul_ld(s->pool, out + w->split, ldo, w->data_hi, w->type, w->rows - w->split, w->cols, s->act, n);
    }
}

static void matmul(cpu_state *s, float *out, const float *x, int n, const spill_weight *w) {
    matmul_ld(s, out, w->rows, x, n, w);
}

/* k matrices against the same x: in one pass over the pool where they share a type and width and none
   is split between tiers (a layer's q, k, v; gate, up: one wait for the slowest thread instead of k),
   else one by one; the same bits either way */
static void matmuls(cpu_state *s, int k, float *const *out, const float *x, int n, const spill_weight *const *w) {
    int together = k <= 4;
    for (int i = 0; i < k && together; i++)
        together = w[i]->type == w[0]->type && w[i]->cols == w[0]->cols && w[i]->split >= w[i]->rows;
    if (!together) {
        for (int i = 0; i < k; i++) matmul(s, out[i], x, n, w[i]);
        return;
    }
    act_for(s, x, n, w[0]);
    spill_matmul_part p[4];
    for (int i = 0; i < k; i++) p[i] = (spill_matmul_part){out[i], w[i]->rows, w[i]->data, w[i]->rows};
    spill_matmul_parts(s->pool, p, k, w[0]->type, w[0]->cols, s->act, n);
}

/* Attention of a step. A unit of work is a tile of up to `qt` consecutive tokens of one sequence and
 * `hq` query heads of one KV head's group: its queries (qt x hq rows) meet each cached K and V row once,
 * where one (token, head) per unit read every row once per query (at a 1000-token prompt, attention was
 * half of a prefill's time). Each query's scores, softmax and weighted sum of values are the same
 * operations in the same order as one query at a time (the tiled products equal the one-token dot bit
 * for bit, kernels/dots.c; each output sums its positions in order), so the tiling never changes a bit. */
typedef struct attn_job {
    cpu_state *s;
    const spill_batch *b;
    int layer;
    int n_tiles, qt, hq, hsplit; /* token tiles (s->att_tile), tokens and heads per unit, units per KV head */
    int64_t units;
    _Atomic int64_t next; /* the next unit to take: the costliest (latest positions) first */
} attn_job;

static void attn_worker(void *ctx, int ith, int nth) {
    attn_job *j = ctx;
    (void)nth;
    cpu_state *s = j->s;
    const spill_hparams *hp = s->hp;
    const spill_batch *b = j->b;
    int hd = hp->head_dim, q_dim = spill_hparams_q_dim(hp);
    int group = hp->n_heads / hp->n_kv_heads, R = s->att_rows;
    float scale = 1.0f / sqrtf((float)hd);
    const spill_kv *kv = &s->kv;
    int64_t ld = s->att_ld;
    float *att = s->att + (int64_t)ith * R * ld, *row = s->kv_rows + (int64_t)ith * ATT_WIDE * hd;
    float *qb = s->att_q + (int64_t)ith * 2 * R * hd, *prep = qb + (int64_t)R * hd;
    float *outp[ATT_ROWS_MAX];
    int lens[ATT_ROWS_MAX];
    /* a row of the cache is kv->row_bytes; a head's part of it starts kvh * hd elements in. F32 keys are
       read where they lie, 16-bit keys and values are widened ATT_WIDE rows at a time (spill_widen_rows,
       exact) and go through the F32 kernels (the BF16 matmul kernels take BF16 activations, not F32
       queries) */
    size_t rb = kv->row_bytes, eb = spill_kv_type_bytes(kv->type);
    spill_dtype kt = kv->type;
    int per_tile = hp->n_kv_heads * j->hsplit;
    for (;;) {
        int64_t u = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (u >= j->units) return;
        int tile = j->n_tiles - 1 - (int)(u / per_tile), kvh = (int)(u % per_tile) / j->hsplit;
        int h0 = kvh * group + (int)(u % j->hsplit) * j->hq, nh = j->hq;
        int t0 = s->att_tile[tile], t1 = tile + 1 < j->n_tiles ? s->att_tile[tile + 1] : b->n;
        int seq = b->seq[t0], nq = (t1 - t0) * nh, len = b->pos[t1 - 1] + 1;
        /* query row i: token t0 + i / nh, head h0 + i % nh */
        for (int i = 0; i < nq; i++) {
            int t = t0 + i / nh, h = h0 + i % nh;
            memcpy(qb + (int64_t)i * hd, s->q + (int64_t)t * q_dim + (int64_t)h * hd, sizeof(float) * (size_t)hd);
            outp[i] = s->xb + (int64_t)t * q_dim + (int64_t)h * hd;
            lens[i] = b->pos[t] + 1;
        }
        /* scores: through the block table, one block of T positions at a time; a query's scores past
           its own position are computed with the tile's and never read */
        const float *sc = NULL;
        if (spill_dots_scales_len(SPILL_DT_F32, hd, nq)) {
            spill_dots_prepare(SPILL_DT_F32, hd, qb, sizeof(float) * (uint64_t)hd, nq, prep);
            sc = prep;
        }
        for (int p0 = 0; p0 < len; p0 += kv->T) {
            const uint8_t *kb = spill_kv_k(kv, seq, j->layer, p0) + (size_t)kvh * hd * eb;
            int end = p0 + kv->T < len ? p0 + kv->T : len;
            int wide = kt == SPILL_DT_F32 ? kv->T : ATT_WIDE; /* F32: the whole block where it lies */
            for (int c0 = p0; c0 < end; c0 += wide) {
                int nc = end - c0 < wide ? end - c0 : wide;
                const float *k = (const float *)(kb + (size_t)(c0 - p0) * rb);
                int64_t ks = (int64_t)(rb / sizeof(float));
                if (kt != SPILL_DT_F32) { /* F16, BF16: widened */
                    spill_widen_rows(kt, kb + (size_t)(c0 - p0) * rb, rb, nc, hd, row);
                    k = row, ks = hd;
                }
                if (!sc) /* fewer queries than a tile (AVX-512: two keys per register; AVX2: each key once for them) */
                    spill_scores_f32(hd, k, ks, nc, qb, hd, nq, att + c0, ld);
                else
                    spill_vec_dots(SPILL_DT_F32, hd, k, sizeof(float) * (uint64_t)ks, nc, qb, sizeof(float) * (uint64_t)hd,
                                   nq, sc, att + c0, ld);
            }
        }
        for (int i = 0; i < nq; i++) {
            spill_softmax(att + i * ld, lens[i], scale);
            memset(outp[i], 0, sizeof(float) * (size_t)hd);
        }
        /* values: each row once for every query that sees it, each query's sum in position order (F32
           rows where they lie, a block at a time; 16-bit ones widened ATT_WIDE rows at a time) */
        for (int p0 = 0; p0 < len; p0 += kv->T) {
            const uint8_t *vb = spill_kv_v(kv, seq, j->layer, p0) + (size_t)kvh * hd * eb;
            int end = p0 + kv->T < len ? p0 + kv->T : len;
            if (kt == SPILL_DT_F32) {
                spill_attn_values(outp, att, ld, lens, nq, (const float *)vb, (int64_t)(rb / sizeof(float)), p0, end - p0, hd);
                continue;
            }
            for (int c0 = p0; c0 < end; c0 += ATT_WIDE) {
                int nc = end - c0 < ATT_WIDE ? end - c0 : ATT_WIDE;
                spill_widen_rows(kt, vb + (size_t)(c0 - p0) * rb, rb, nc, hd, row);
                spill_attn_values(outp, att, ld, lens, nq, row, hd, c0, nc, hd);
            }
        }
    }
}

/* The step's attention over the pool: token tiles of at most qt tokens, each of one sequence. */
static void attention(cpu_state *s, const spill_batch *b, int layer) {
    const spill_hparams *hp = s->hp;
    int group = hp->n_heads / hp->n_kv_heads;
    attn_job j = {.s = s, .b = b, .layer = layer};
    /* heads per unit: the whole group where it fits, else the largest divisor of it that does; fewer
       where that leaves under 4 units a thread (a decode step of one sequence is n_kv_heads units: 3
       of SmolLM2's on 2 threads kept one waiting a third of the time) */
    int nth = spill_pool_size(s->pool);
    for (int hq = group < s->att_rows ? group : s->att_rows;; hq--) {
        if (group % hq) continue;
        j.hq = hq;
        j.hsplit = group / hq;
        j.qt = s->att_rows / hq;
        j.n_tiles = 0;
        for (int t = 0; t < b->n; t++)
            if (t == 0 || b->seq[t] != b->seq[t - 1] || t - s->att_tile[j.n_tiles - 1] == j.qt) s->att_tile[j.n_tiles++] = t;
        j.units = (int64_t)j.n_tiles * hp->n_kv_heads * j.hsplit;
        if (hq == 1 || j.units >= 4 * (int64_t)nth) break;
    }
    atomic_init(&j.next, 0);
    spill_pool_share(s->pool, attn_worker, &j);
}

#define TRACE(name, layer, x, count)                                                       \
    do {                                                                                    \
        if (s->trace) s->trace(s->trace_ctx, name, layer, x, count);                       \
    } while (0)

/* A step over a batch the engine checked (engine.c: each sequence's tokens consecutive positions). */
static int cpu_forward(void *ctx, const spill_batch *b, spill_err *err) {
    cpu_state *s = ctx;
    const spill_hparams *hp = s->hp;
    const spill_weights *W = &s->placed.w;
    int n = b->n;
    if (n < 1 || n > s->max_batch) return spill_err_set(err, "forward: batch of %d tokens; 1..%d allowed", n, s->max_batch);
    int dim = hp->dim, hd = hp->head_dim, q_dim = spill_hparams_q_dim(hp), kv_dim = spill_hparams_kv_dim(hp);
    int ff = hp->ffn_dim;
    /* each sequence's positions writable (blocks allocated, shared ones copied) */
    for (int t = 0; t < n; t++)
        if (t == 0 || b->seq[t] != b->seq[t - 1]) {
            int e = t;
            while (e + 1 < n && b->seq[e + 1] == b->seq[t]) e++;
            if (spill_kv_prepare(&s->kv, b->seq[t], b->pos[t], e - t + 1, err)) return -1;
        }
    for (int t = 0; t < n; t++)
        spill_dequant_row(W->tok_embd.type, spill_weight_row(&W->tok_embd, b->token[t]), s->x + (int64_t)t * dim, dim);
    spill_exec_embd(&s->exec, b->token, n);
    TRACE("inp_embd", -1, s->x, (int64_t)n * dim);
    spill_exec_skip(&s->exec, b->skip);
    /* RoPE's angles for each token's position, once for every head of every layer */
    for (int t = 0; t < n; t++)
        spill_rope_angles(s->rope_cs + (int64_t)t * hp->rope_dims, hp->rope_dims, b->pos[t], hp->rope_base, s->m->rope_freq);
    for (int l = 0; l < hp->n_layers; l++) {
        if (b->skip && b->skip[l]) continue;
        /* the layer boundary: the plan's prefetches and evictions, and the layer's weights as placed */
        const spill_layer *lw = spill_exec_begin(&s->exec, l, err);
        if (!lw) return -1;
        /* attention: norm -> q, k, v -> rope -> cache -> softmax(q k^T) v -> output -> residual */
        norm_quant(s, s->xb, s->x, lw->attn_norm.data, n, &lw->wq);
        TRACE("attn_norm", l, s->xb, (int64_t)n * dim);
        float *qkv[] = {s->q, s->k, s->v};
        const spill_weight *wqkv[] = {&lw->wq, &lw->wk, &lw->wv};
        matmuls(s, 3, qkv, s->xb, n, wqkv);
        if (lw->bq.data) { /* Qwen2's q/k/v biases */
            spill_add_rows(s->q, lw->bq.data, n, q_dim);
            spill_add_rows(s->k, lw->bk.data, n, kv_dim);
            spill_add_rows(s->v, lw->bv.data, n, kv_dim);
        }
        for (int t = 0; t < n; t++) {
            const float *cs = s->rope_cs + (int64_t)t * hp->rope_dims;
            spill_rope_apply(s->q + (int64_t)t * q_dim, hp->n_heads, hd, hp->rope_dims, cs, hp->rope_adjacent);
            spill_rope_apply(s->k + (int64_t)t * kv_dim, hp->n_kv_heads, hd, hp->rope_dims, cs, hp->rope_adjacent);
            spill_kv_row_put(s->kv.type, spill_kv_k(&s->kv, b->seq[t], l, b->pos[t]), s->k + (int64_t)t * kv_dim, kv_dim);
            spill_kv_row_put(s->kv.type, spill_kv_v(&s->kv, b->seq[t], l, b->pos[t]), s->v + (int64_t)t * kv_dim, kv_dim);
        }
        TRACE("Qcur", l, s->q, (int64_t)n * q_dim);
        TRACE("Kcur", l, s->k, (int64_t)n * kv_dim);
        TRACE("Vcur", l, s->v, (int64_t)n * kv_dim);
        attention(s, b, l);
        TRACE("kqv_out", l, s->xb, (int64_t)n * q_dim);
        s->act_src = NULL;
        matmul(s, s->xb2, s->xb, n, &lw->wo);
        TRACE("attn_out", l, s->xb2, (int64_t)n * dim);
        spill_add(s->x, s->xb2, n * dim);
        TRACE("ffn_inp", l, s->x, (int64_t)n * dim);

        /* feed-forward: norm -> gate, up -> silu(gate) * up -> down -> residual */
        norm_quant(s, s->xb, s->x, lw->ffn_norm.data, n, &lw->w_gate);
        TRACE("ffn_norm", l, s->xb, (int64_t)n * dim);
        float *gu[] = {s->hb, s->hb2};
        const spill_weight *wgu[] = {&lw->w_gate, &lw->w_up};
        matmuls(s, 2, gu, s->xb, n, wgu);
        TRACE("ffn_gate", l, s->hb, (int64_t)n * ff);
        TRACE("ffn_up", l, s->hb2, (int64_t)n * ff);
        swiglu(s, s->hb, s->hb, s->hb2, n, ff);
        TRACE("ffn_swiglu", l, s->hb, (int64_t)n * ff);
        s->act_src = NULL;
        matmul(s, s->xb2, s->hb, n, &lw->w_down);
        TRACE("ffn_out", l, s->xb2, (int64_t)n * dim);
        spill_add(s->x, s->xb2, n * dim);
        TRACE("l_out", l, s->x, (int64_t)n * dim);
        if (spill_exec_end(&s->exec, l, err)) return -1;
    }
    /* head: only for the tokens whose logits are kept, in one matmul */
    s->n_out = 0;
    for (int t = 0; t < n; t++)
        if (b->out ? b->out[t] : t == n - 1) {
            spill_rmsnorm(s->xb + (int64_t)s->n_out * dim, s->x + (int64_t)t * dim, W->out_norm.data, dim, hp->eps);
            s->out_row[s->n_out++] = t;
        }
    if (!s->n_out) return 0;
    TRACE("result_norm", -1, s->xb, (int64_t)s->n_out * dim);
    s->act_src = NULL;
    if (b->head_rows > 0 && b->head_rows < hp->vocab) {
        /* the leading rows only (a draft's vocabulary), in place in each output's row of vocab logits */
        spill_weight part = W->output;
        part.rows = b->head_rows;
        if (part.split > part.rows) part.split = part.rows;
        matmul_ld(s, s->logits, hp->vocab, s->xb, s->n_out, &part); /* the rest: -inf, spill_engine_step */
    } else {
        matmul(s, s->logits, s->xb, s->n_out, &W->output);
    }
    TRACE("result_output", -1, s->logits, (int64_t)s->n_out * hp->vocab);
    spill_exec_head(&s->exec, b->head_rows > 0 && b->head_rows < hp->vocab ? (double)b->head_rows / hp->vocab : 1);
    return 0;
}

static float *cpu_logits(void *ctx, int i) {
    cpu_state *s = ctx;
    return s->logits + (size_t)i * (size_t)s->hp->vocab;
}
static spill_kv *cpu_kv(void *ctx) { return &((cpu_state *)ctx)->kv; }

static void cpu_stats(void *ctx, spill_engine_stats *out) {
    cpu_state *s = ctx;
    memset(out, 0, sizeof *out);
    spill_exec_stats_into(&s->exec, &s->placed, out);
    out->act_bytes = s->act_bytes;
    out->kv = s->kv.st;
}

const spill_device_iface spill_cpu_device = {
    .name = "cpu",
    .placer = &spill_cpu_placer,
    .forward = cpu_forward,
    .logits = cpu_logits,
    .kv = cpu_kv,
    .stats = cpu_stats,
    .free = cpu_free,
};
