/* Float ops of the forward pass. Reductions that decide a normalisation (RMSNorm, softmax) sum in
 * double, as the reference implementations do, so that long rows do not lose precision. */
#include "spill_kernels.h"
#include "dot.h"

#include <float.h>
#include <stdatomic.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A matmul's work is cut into units of (a chunk of tokens, a chunk of rows), token chunk first, and
 * the units into as many runs of consecutive units as threads (at most LANES runs). A thread takes its
 * own run's units in order, then the units left in the others' runs, each run from a counter of its
 * own: a thread that runs slower (a busy core, a neighbour on the same host) takes fewer. A static split
 * in halves left the other thread waiting out the slower one on every matmul (perf: ~9% of a 2-thread
 * SmolLM2 decode in the caller's wait). With one counter for all, the threads took units in turn, so a
 * thread's next rows were rarely the rows after its last: its prefetch stream (kernels/dot.h), which
 * runs on past a call's rows, asked for the other thread's, and stopping it at the call's end left
 * batched steps without any. The runs and the stream running on, measured together only (2-vCPU Zen 4
 * VM, SmolLM2, 2 threads): Q4_0 decode 181-206 -> 288-292 tok/s (docs/results.md). Which thread
 * computes a row never changes its bits. */
#define LANES 64 /* runs of units: more threads share them (each its ith % LANES first) */
#define MATMUL_PARTS 4 /* the most matrices one job takes (q, k and v; gate and up) */
typedef struct {
    float *out;
    const uint8_t *w;
    int64_t rows, ldo;      /* out[t * ldo + r] */
    int64_t row_units;      /* units of rows per token chunk */
} matmul_part;

typedef struct {
    matmul_part part[MATMUL_PARTS];
    int n_parts;
    spill_dtype wtype;
    int64_t cols;
    const uint8_t *act;
    uint64_t act_stride, row_bytes;
    int batch;
    int tiled;                              /* prepared tiles (kernels/dots.c), else one token at a time */
    int tok_chunk;                          /* tokens per unit */
    float *prep;                            /* when not NULL: prep_len floats per worker (ith) for what the
                                               tiles prepare, past what a worker's stack holds */
    size_t prep_len;
    uint8_t *panel;                         /* when not NULL: panel_len bytes per worker for the rows laid out
                                               in lanes (kernels/dots_vnni.c, dots_avx2.c), 16 rows at a time */
    size_t panel_len;
    int rows_together;                      /* rows per call without a panel (spill_dots_rows_together) */
    int64_t row_chunk, row_units, units;    /* rows per unit, units per token chunk (all parts), all units */
    int lanes;                              /* the units cut into this many runs, one per thread (at most LANES) */
    struct matmul_lane *lane;               /* each run's counter */
} matmul_job;

/* a run's next unit to take, on a line of its own; kept out of matmul_job, whose initializer zeroes it on
   every matmul */
struct matmul_lane {
    _Alignas(64) _Atomic int64_t next;
};

/* floats prepared per token chunk (kernels/dots.c: the activations' block scales and Q4_0's activation
 * sums (with AVX-512 VNNI also Q8_0's values), or F16 activations widened, or with AVX-512 the 16-bit
 * and F32 activations in pairs of tokens): 320 KiB, on the worker's stack. A chunk's prepared
 * activations are read once per block of rows, so they must stay in L2 while the weights stream: at
 * 14336 columns, chunks of 8 tokens ran F16/BF16/F32 at 44/44/36 GMAC/s and chunks sized for 1 MiB at
 * 24/21/22 (docs/results.md). A chunk is never fewer than two tiles (the widest tiles take 8 tokens);
 * where two tiles need more than SCALES_CAP (F32/F16/BF16 past 10240 columns) a worker prepares them on
 * the heap. A larger batch goes in chunks of tokens. */
#define SCALES_CAP 81920

static int64_t lane_end(const matmul_job *j, int l) { return j->units * (l + 1) / j->lanes; }

static void matmul_worker(void *ctx, int ith, int nth) {
    matmul_job *j = ctx;
    (void)nth;
    float stack[SCALES_CAP];
    float *sc = j->prep ? j->prep + (size_t)ith * j->prep_len : stack;
    int64_t prepared = -1; /* the token chunk sc holds: the same for every part, which share the activations */
    int l = ith % j->lanes, left = j->lanes; /* its own run first, then the others' */
    int64_t end = lane_end(j, l);
    for (;;) {
        int64_t u = atomic_fetch_add_explicit(&j->lane[l].next, 1, memory_order_relaxed);
        if (u >= end) {
            if (--left == 0) return;
            l = (l + 1) % j->lanes;
            end = lane_end(j, l);
            continue;
        }
        int64_t tc = u / j->row_units, ru = u % j->row_units;
        const matmul_part *pt = j->part;
        while (ru >= pt->row_units) ru -= pt->row_units, pt++;
        int64_t r0 = ru * j->row_chunk, r1 = r0 + j->row_chunk < pt->rows ? r0 + j->row_chunk : pt->rows;
        int t0 = (int)tc * j->tok_chunk, nt = j->batch - t0 < j->tok_chunk ? j->batch - t0 : j->tok_chunk;
        const uint8_t *act = j->act + (uint64_t)t0 * j->act_stride;
        float *out = pt->out + (int64_t)t0 * pt->ldo;
        if (j->tiled && prepared != tc) { /* the rows decoded once for several tokens, the same bits as one by one */
            spill_dots_prepare(j->wtype, j->cols, act, j->act_stride, nt, sc);
            prepared = tc;
        }
        if (nt == 1) { /* one token: the unit's rows in one call (the rows kernel takes them 4 at a time);
                          calls of 4 rows each spent ~5% of a SmolLM2 decode in the calls themselves */
            spill_vec_dots(j->wtype, j->cols, pt->w + (uint64_t)r0 * j->row_bytes, j->row_bytes, (int)(r1 - r0), act,
                           j->act_stride, 1, NULL, out + r0, pt->ldo);
            continue;
        }
        if (j->panel) { /* 16 rows laid out in lanes, meeting every token of the chunk */
            for (int64_t r = r0; r < r1; r += SPILL_DOTS_PANEL) {
                int nr = r1 - r < SPILL_DOTS_PANEL ? (int)(r1 - r) : SPILL_DOTS_PANEL;
                spill_vec_dots_panel(j->wtype, j->cols, pt->w + (uint64_t)r * j->row_bytes, j->row_bytes, nr, act,
                                     j->act_stride, nt, sc, j->panel + (size_t)ith * j->panel_len, out + r, pt->ldo);
            }
            continue;
        }
        /* a few rows at a time, each meeting every token of the chunk while it is in L1 */
        for (int64_t r = r0; r < r1; r += j->rows_together) {
            int nr = r1 - r < j->rows_together ? (int)(r1 - r) : j->rows_together;
            spill_vec_dots(j->wtype, j->cols, pt->w + (uint64_t)r * j->row_bytes, j->row_bytes, nr, act, j->act_stride, nt,
                           j->tiled ? sc : NULL, out + r, pt->ldo);
        }
    }
}

void spill_matmul(spill_pool *pool, float *out, const void *w, spill_dtype wtype, int64_t rows,
                  int64_t cols, const void *act, int batch) {
    spill_matmul_ld(pool, out, rows, w, wtype, rows, cols, act, batch);
}

void spill_matmul_ld(spill_pool *pool, float *out, int64_t ldo, const void *w, spill_dtype wtype, int64_t rows,
                     int64_t cols, const void *act, int batch) {
    spill_matmul_part p = {out, ldo, w, rows};
    spill_matmul_parts(pool, &p, 1, wtype, cols, act, batch);
}

void spill_matmul_parts(spill_pool *pool, const spill_matmul_part *parts, int n_parts, spill_dtype wtype, int64_t cols,
                        const void *act, int batch) {
    SPILL_ASSERT(n_parts >= 1 && n_parts <= MATMUL_PARTS);
    int64_t rows = 0;
    for (int i = 0; i < n_parts; i++) {
        SPILL_ASSERT(parts[i].ldo >= parts[i].rows && parts[i].rows >= 0);
        rows += parts[i].rows;
    }
    if (batch < 1 || rows < 1) return;
    matmul_job j = {.n_parts = n_parts, .wtype = wtype, .cols = cols, .act = act,
                    .act_stride = spill_act_bytes(wtype, cols), .row_bytes = spill_dtype_row_bytes(wtype, (uint64_t)cols),
                    .batch = batch};
    SPILL_ASSERT(j.row_bytes > 0);
    size_t per_tile = spill_dots_scales_len(wtype, cols, SPILL_DOTS_TILE);
    /* prepared activations for the tiles, and for the panels, which may take fewer tokens than a tile */
    const int panel_from = spill_dots_panel_from(wtype);
    j.tiled = (batch >= SPILL_DOTS_TILE || (panel_from && batch >= panel_from)) && spill_dots_tiled(wtype);
    j.tok_chunk = batch;
    int nth = spill_pool_size(pool);
    if (j.tiled && per_tile) {
        /* tokens per chunk: what SCALES_CAP holds, never fewer than two tiles */
        size_t tiles = SCALES_CAP / per_tile;
        if (tiles < 2) tiles = 2;
        if (tiles * SPILL_DOTS_TILE < (size_t)batch) j.tok_chunk = (int)tiles * SPILL_DOTS_TILE;
        size_t need = spill_dots_scales_len(wtype, cols, j.tok_chunk); /* Q8_0, Q4_0, Q4_1: a partial tile too */
        if (need > SCALES_CAP) {
            j.prep_len = need;
            j.prep = malloc(sizeof(float) * need * (size_t)nth);
            if (!j.prep) { /* no memory for the prepared tiles: one token at a time, the same bits */
                j.tiled = 0;
                j.tok_chunk = batch;
            }
        }
    }
    /* batches of spill_dots_panel_from(wtype) tokens or more: Q8_0, Q4_0, Q4_1 (AVX-512 VNNI or AVX2), Q4_K and
       Q6_K (VNNI) rows laid out 16 at a time in a panel per worker (kernels/dots_vnni.c, kernels/dots_avx2.c);
       without the memory for it, the tiles (below a tile's tokens the one-token kernels), the same bits */
    if (j.tiled && panel_from && batch >= panel_from) {
        j.panel_len = (spill_dots_panel_bytes(wtype, cols) + 63) / 64 * 64;
        j.panel = aligned_alloc(64, j.panel_len * (size_t)nth);
    }
    /* 8 units of rows per thread over all the parts (a multiple of the rows taken together), so that a
       slower thread leaves at most about an eighth of its share to the others */
    int64_t rc = (rows + (int64_t)nth * 8 - 1) / ((int64_t)nth * 8);
    j.rows_together = spill_dots_rows_together(wtype, batch);
    int together = j.panel ? SPILL_DOTS_PANEL : j.rows_together;
    j.row_chunk = (rc + together - 1) / together * together;
    for (int i = 0; i < n_parts; i++) {
        j.part[i] = (matmul_part){parts[i].out, parts[i].w, parts[i].rows, parts[i].ldo,
                                  (parts[i].rows + j.row_chunk - 1) / j.row_chunk};
        j.row_units += j.part[i].row_units;
    }
    j.units = j.row_units * ((batch + j.tok_chunk - 1) / j.tok_chunk);
    struct matmul_lane lanes[LANES]; /* only the first j.lanes are used, so only they are set */
    j.lanes = nth < LANES ? nth : LANES;
    j.lane = lanes;
    for (int l = 0; l < j.lanes; l++) atomic_init(&lanes[l].next, j.units * l / j.lanes);
    spill_pool_share(pool, matmul_worker, &j);
    free(j.prep);
    free(j.panel);
}

void spill_rmsnorm(float *out, const float *x, const float *w, int n, float eps) {
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    float mean = (float)(sum / n);
    float scale = 1.0f / sqrtf(mean + eps);
    for (int i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

void spill_rope_angles(float *cs, int rot_dims, int pos, float base, const float *inv_freq) {
    /* without a table, theta_i = pos * base^(-2i/rot_dims) built by repeated multiplication, as
       ggml does */
    float theta_scale = powf(base, -2.0f / (float)rot_dims), theta = (float)pos;
    for (int i = 0; i < rot_dims / 2; i++) {
        float t = inv_freq ? (float)pos * inv_freq[i] : theta;
        cs[2 * i] = cosf(t);
        cs[2 * i + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void spill_rope_apply(float *x, int n_heads, int head_dim, int rot_dims, const float *cs, int adjacent) {
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < rot_dims / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            int a = adjacent ? 2 * i : i, b = adjacent ? 2 * i + 1 : i + rot_dims / 2;
            float x0 = v[a], x1 = v[b];
            /* one rounding for the first product and the sum, as an FMA machine does it (and as
               llama.cpp built with -march=native does: docs/correctness.md) */
            v[a] = fmaf(x0, c, -(x1 * s));
            v[b] = fmaf(x0, s, x1 * c);
        }
    }
}

void spill_rope(float *x, int n_heads, int head_dim, int rot_dims, int pos, float base, const float *inv_freq,
                int adjacent) {
    float cs[1024];
    SPILL_ASSERT(rot_dims <= 1024);
    spill_rope_angles(cs, rot_dims, pos, base, inv_freq);
    spill_rope_apply(x, n_heads, head_dim, rot_dims, cs, adjacent);
}

/* e^x in float operations only, so that a loop of it vectorizes (-O3 makes AVX-512, AVX2 or NEON of
 * the same source) and every lane, scalar or vector, x86 or Arm, gives the same bits: libm's expf is a
 * call per value, and softmax and SwiGLU spent ~12% of a 1000-token prefill in it. x = n ln2 + r with
 * n = round(x / ln2) (the 1.5 * 2^23 trick rounds to nearest even) and |r| <= ln2 / 2 by two fused
 * steps (ln2 split in a part exact in float and the rest); e^r by its Taylor series to r^7 (the next
 * term is below 2^-27 of it) in Horner form with fused multiply-adds; then 2^n built in the exponent
 * bits (as 2^(n-1) * 2 where n > 0: n reaches 128). Within 2 ulp of the exact value (tests/test_ops.c
 * compares it with exp over the range; 0.9 ulp at worst); past -87.33 (2^n subnormal) it gives 0,
 * past 88.72 infinity, NaN for NaN. */
static inline float exp_f(float x) {
    const float shift = 0x1.8p23f, log2e = 0x1.715476p+0f, ln2_hi = 0x1.62e4p-1f, ln2_lo = 0x1.7f7d1cp-20f;
    /* computed on x kept within [-88, 89] (NaN becomes -88), so that n fits the exponent's arithmetic
       (an int conversion of inf or NaN, or (n + 127) << 23 past 2^31, is undefined); the selects at the
       end give what x itself asks for outside it; inside it nothing changes */
    float xc = x > -88.0f ? x : -88.0f;
    xc = xc < 89.0f ? xc : 89.0f;
    float t = fmaf(xc, log2e, shift), n = t - shift;
    float r = fmaf(n, -ln2_hi, xc);
    r = fmaf(n, -ln2_lo, r);
    float p = 1.0f / 5040;
    p = fmaf(p, r, 1.0f / 720);
    p = fmaf(p, r, 1.0f / 120);
    p = fmaf(p, r, 1.0f / 24);
    p = fmaf(p, r, 1.0f / 6);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    int32_t k = (int32_t)n;
    float f = k > 0 ? 2.0f : 1.0f;
    k = k > 0 ? k - 1 : k;
    union {
        int32_t i;
        float f;
    } two = {.i = (k + 127) * (1 << 23)};
    float y = (p * two.f) * f;
    y = x < -0x1.5d589ep+6f ? 0.0f : y;  /* -87.3365: n below -126 */
    y = x > 0x1.62e42ep+6f ? INFINITY : y; /* 88.7228: past FLT_MAX */
    return x != x ? x : y;
}

float spill_expf(float x) { return exp_f(x); }

/* The maximum in 16 lanes: the same value in any order (a NaN is passed over, as `x > max ? x : max`
 * does), and a loop the compiler vectorizes. -INFINITY for n < 1. */
float spill_maxf(const float *x, int n) {
    float m[16];
    for (int k = 0; k < 16; k++) m[k] = -INFINITY;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    for (int k = 0; i + k < n; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    float max = -INFINITY;
    for (int k = 0; k < 16; k++) max = m[k] > max ? m[k] : max;
    return max;
}

/* y[i] = e^((x[i] - shift) / div) and their sum in double, in 8 lanes (position i in lane i % 8) added in
 * a fixed order at the end: the same bits on every machine, and loops the compiler vectorizes (one
 * chain of double adds took 4 cycles a position). y may be x. */
double spill_exp_sum(float *y, const float *x, int n, float shift, float div) {
    for (int i = 0; i < n; i++) y[i] = exp_f((x[i] - shift) / div);
    double acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += (double)y[i + k];
    for (int k = 0; i + k < n; k++) acc[k] += (double)y[i + k];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

void spill_softmax(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) x[i] *= scale;
    float inv = (float)(1.0 / spill_exp_sum(x, x, n, spill_maxf(x, n), 1.0f));
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void spill_attn_values_c(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v, int64_t vs,
                         int p0, int np, int hd) {
    for (int p = p0; p < p0 + np; p++) {
        const float *vp = v + (int64_t)(p - p0) * vs;
        for (int i = 0; i < nq; i++) {
            if (p >= lens[i]) continue;
            float a = att[(int64_t)i * ld + p], *o = out[i];
            for (int d = 0; d < hd; d++) o[d] = fmaf(a, vp[d], o[d]);
        }
    }
}

void spill_widen_rows_c(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst) {
    for (int r = 0; r < nr; r++) spill_dequant_row(t, (const uint8_t *)src + (uint64_t)r * stride, dst + (int64_t)r * n, n);
}

void spill_swiglu(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + exp_f(-g)) * up[i];
    }
}

void spill_add_rows(float *out, const float *bias, int rows, int cols) {
    for (int r = 0; r < rows; r++) spill_add(out + (int64_t)r * cols, bias, cols);
}

void spill_add(float *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] += x[i];
}

uint32_t spill_kv_type_bytes(spill_dtype t) {
    return t == SPILL_DT_F32 ? 4 : t == SPILL_DT_F16 || t == SPILL_DT_BF16 ? 2 : 0;
}

const char *spill_kv_type_name(spill_dtype t) {
    return t == SPILL_DT_F32 ? "f32" : t == SPILL_DT_F16 ? "f16" : t == SPILL_DT_BF16 ? "bf16" : "?";
}

int spill_kv_type_parse(const char *name, spill_dtype *out) {
    static const spill_dtype types[] = {SPILL_DT_F32, SPILL_DT_F16, SPILL_DT_BF16};
    for (size_t i = 0; name && i < sizeof types / sizeof *types; i++)
        if (!strcasecmp(name, spill_kv_type_name(types[i]))) {
            *out = types[i];
            return 0;
        }
    return -1;
}

void spill_kv_row_put(spill_dtype t, void *dst, const float *src, int n) {
    SPILL_ASSERT(spill_kv_type_bytes(t));
    if (t == SPILL_DT_F32) {
        memcpy(dst, src, sizeof(float) * (size_t)n);
    } else if (t == SPILL_DT_F16) {
        uint16_t *h = dst;
        for (int i = 0; i < n; i++) h[i] = spill_fp32_to_fp16(src[i]);
    } else {
        uint16_t *h = dst;
        for (int i = 0; i < n; i++) h[i] = spill_fp32_to_bf16(src[i]);
    }
}

const float *spill_kv_row_get(spill_dtype t, const void *src, float *buf, int n) {
    if (t == SPILL_DT_F32) return src;
    spill_dequant_row(t, src, buf, n);
    return buf;
}

void spill_kv_store_paged(void *const *blocks, spill_dtype kv_type, int T, int kv_dim, int pos0, int n_tok,
                          const float *k, const float *v) {
    size_t row = (size_t)kv_dim * spill_kv_type_bytes(kv_type);
    for (int t = 0; t < n_tok; t++) {
        int p = pos0 + t;
        uint8_t *kb = (uint8_t *)blocks[p / T] + (size_t)(p % T) * row;
        spill_kv_row_put(kv_type, kb, k + (int64_t)t * kv_dim, kv_dim);
        spill_kv_row_put(kv_type, kb + (size_t)T * row, v + (int64_t)t * kv_dim, kv_dim);
    }
}

void spill_attention_paged(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T, int n_tok,
                           int pos0, int n_heads, int n_kv_heads, int head_dim, float scale, float *scores) {
    int kv_dim = n_kv_heads * head_dim, group = n_heads / n_kv_heads;
    size_t eb = spill_kv_type_bytes(kv_type), row = (size_t)kv_dim * eb;
    float *buf = kv_type == SPILL_DT_F32 ? NULL : malloc(sizeof(float) * (size_t)head_dim);
    SPILL_ASSERT(eb && (kv_type == SPILL_DT_F32 || buf));
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++) {
            int len = pos0 + t + 1, kvh = h / group;
            size_t off = (size_t)kvh * (size_t)head_dim * eb;
            const float *qv = q + ((int64_t)t * n_heads + h) * head_dim;
            for (int p = 0; p < len; p++) {
                const uint8_t *k = (const uint8_t *)blocks[p / T] + (size_t)(p % T) * row + off;
                scores[p] = spill_dot_f32(qv, spill_kv_row_get(kv_type, k, buf, head_dim), head_dim);
            }
            spill_softmax(scores, len, scale);
            float *o = out + ((int64_t)t * n_heads + h) * head_dim;
            for (int d = 0; d < head_dim; d++) o[d] = 0;
            for (int p = 0; p < len; p++) {
                const uint8_t *vb = (const uint8_t *)blocks[p / T] + (size_t)T * row + (size_t)(p % T) * row + off;
                const float *v = spill_kv_row_get(kv_type, vb, buf, head_dim);
                for (int d = 0; d < head_dim; d++) o[d] = fmaf(scores[p], v[d], o[d]);
            }
        }
    free(buf);
}

/* (v, i) ranks before (w, j): larger value, then lower index; NaN counts as -inf */
static int topk_before(float v, int i, float w, int j) { return v > w || (v == w && i < j); }

void spill_topk(const float *x, int n, int k, int *idx, float *val) {
    /* insertion into a sorted list of k: fine for the k of sampling */
    int m = 0;
    for (int i = 0; i < n; i++) {
        float v = x[i] != x[i] ? -INFINITY : x[i];
        if (m == k && !topk_before(v, i, val[k - 1], idx[k - 1])) continue;
        int p = m < k ? m++ : k - 1;
        while (p > 0 && topk_before(v, i, val[p - 1], idx[p - 1])) {
            val[p] = val[p - 1], idx[p] = idx[p - 1];
            p--;
        }
        val[p] = v, idx[p] = i;
    }
}
