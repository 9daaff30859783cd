/* The portable C dot products (the reference every SIMD version equals bit for bit; kernels/dot.h
 * says how they compute) and the entry points that run the kernels of the instruction set the CPU
 * has (kernels/cpu.c chooses it). */
#include "dot.h"

#include <math.h>
#include <stdatomic.h>

/* lane l of a block = sum of the 4 products of values 4l..4l+3 */
#define LANES_FMA(acc, d, q)                                            \
    for (int l = 0; l < 8; l++) {                                       \
        int s_ = q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]; \
        acc[l] = fmaf(d, (float)s_, acc[l]);                            \
    }

static float dot_q8_0(int64_t n, const void *wv, const void *av) {
    const spill_block_q8_0 *x = wv, *y = av;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int p[SPILL_QK];
        for (int j = 0; j < SPILL_QK; j++) p[j] = x[i].qs[j] * y[i].qs[j];
        float d = spill_fp16_to_fp32(x[i].d) * spill_fp16_to_fp32(y[i].d);
        LANES_FMA(acc, d, p);
    }
    return spill_hsum8(acc);
}

static float dot_q4_0(int64_t n, const void *wv, const void *av) {
    const spill_block_q4_0 *x = wv;
    const spill_block_q8_0 *y = av;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int p[SPILL_QK];
        for (int j = 0; j < SPILL_QK / 2; j++) {
            p[j] = ((x[i].qs[j] & 15) - 8) * y[i].qs[j];
            p[j + 16] = ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        float d = spill_fp16_to_fp32(x[i].d) * spill_fp16_to_fp32(y[i].d);
        LANES_FMA(acc, d, p);
    }
    return spill_hsum8(acc);
}

static float dot_q4_1(int64_t n, const void *wv, const void *av) {
    const spill_block_q4_1 *x = wv;
    const spill_block_q8_1 *y = av;
    float acc[8] = {0};
    float summs = 0;
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int p[SPILL_QK];
        for (int j = 0; j < SPILL_QK / 2; j++) {
            p[j] = (x[i].qs[j] & 15) * y[i].qs[j];
            p[j + 16] = (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        }
        summs = fmaf(spill_fp16_to_fp32(x[i].m), spill_fp16_to_fp32(y[i].s), summs);
        float d = spill_fp16_to_fp32(x[i].d) * spill_fp16_to_fp32(y[i].d);
        LANES_FMA(acc, d, p);
    }
    return spill_hsum8(acc) + summs;
}

static float dot_f32(int64_t n, const void *wv, const void *av) {
    const float *a = wv, *b = av;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    float s = spill_hsum8(acc);
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static float dot_f16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv, *y = av;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(spill_fp16_to_fp32(x[i + l]), spill_fp16_to_fp32(y[i + l]), acc[l]);
    float s = spill_hsum8(acc);
    for (; i < n; i++) s = fmaf(spill_fp16_to_fp32(x[i]), spill_fp16_to_fp32(y[i]), s);
    return s;
}

/* BF16 rows meet BF16 activations (kernels/dot.h): lane l of each 16 values takes the products of values
   2l + 1 and 2l, in that order, each added with its own rounding (two BF16 values' product is exact in
   F32, so a fused multiply-add is that addition): one step of AVX-512 BF16's vdpbf16ps */
static float dot_bf16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv, *y = av;
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 8; l++) {
            acc[l] = fmaf(spill_bf16_to_fp32(x[i + 2 * l + 1]), spill_bf16_to_fp32(y[i + 2 * l + 1]), acc[l]);
            acc[l] = fmaf(spill_bf16_to_fp32(x[i + 2 * l]), spill_bf16_to_fp32(y[i + 2 * l]), acc[l]);
        }
    float s = spill_hsum8(acc);
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(x[i]), spill_bf16_to_fp32(y[i]), s);
    return s;
}

static float dot_q4_k(int64_t n, const void *w, const void *act) { return spill_dot_q4_k_q8_k(n, w, act); }
static float dot_q6_k(int64_t n, const void *w, const void *act) { return spill_dot_q6_k_q8_k(n, w, act); }

const spill_dot_table spill_dot_portable = {dot_f32,  dot_f16,  dot_bf16, dot_q8_0, dot_q4_0,
                                            dot_q4_1, dot_q4_k, dot_q6_k, NULL,     NULL, NULL};

static spill_dot_fn dot_fn(const spill_dot_table *t, spill_dtype w) {
    spill_dot_fn f = NULL;
    switch (w) {
    case SPILL_DT_F32: f = t->f32; break;
    case SPILL_DT_F16: f = t->f16; break;
    case SPILL_DT_BF16: f = t->bf16; break;
    case SPILL_DT_Q8_0: f = t->q8_0; break;
    case SPILL_DT_Q4_0: f = t->q4_0; break;
    case SPILL_DT_Q4_1: f = t->q4_1; break;
    case SPILL_DT_Q4_K: f = t->q4_k; break;
    case SPILL_DT_Q6_K: f = t->q6_k; break;
    default: SPILL_ASSERT(!"dot of an unsupported type");
    }
    SPILL_ASSERT(f);
    return f;
}

/* the best table this CPU runs, found on first use (finding it twice is harmless) */
static const spill_dot_table *active(void) {
    static _Atomic(const spill_dot_table *) t;
    const spill_dot_table *p = atomic_load_explicit(&t, memory_order_acquire);
    if (!p) {
        p = spill_dot_table_of(spill_isa_best());
        atomic_store_explicit(&t, p, memory_order_release);
    }
    return p;
}

float spill_vec_dot(spill_dtype w, int64_t n, const void *wrow, const void *act) {
    return dot_fn(active(), w)(n, wrow, act);
}

int spill_vec_dot_rows(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out) {
    spill_rows_fn f = active()->rows;
    return f ? f(w, n, wrows, rb, nr, act, out) : 0;
}

int spill_vec_dot_tile(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                       float *out, int64_t ldo) {
    spill_tile_fn f = active()->tile;
    return f ? f(w, n, wrows, rb, nr, act, stride, out, ldo) : 0;
}

float spill_vec_dot_scalar(spill_dtype w, int64_t n, const void *wrow, const void *act) {
    return dot_fn(&spill_dot_portable, w)(n, wrow, act);
}

float spill_vec_dot_isa(spill_isa isa, spill_dtype w, int64_t n, const void *wrow, const void *act) {
    SPILL_ASSERT(spill_isa_available(isa));
    return dot_fn(spill_dot_table_of(isa), w)(n, wrow, act);
}

float spill_dot_f32(const float *a, const float *b, int n) { return active()->f32(n, a, b); }

void spill_act_quantize(spill_dtype w, const float *x, void *out, int64_t n) {
    spill_act_fn f = active()->act;
    if (!f || !f(spill_act_type(w), x, out, n)) spill_act_quantize_portable(w, x, out, n);
}

int spill_kernels_simd(void) { return spill_isa_best() != SPILL_ISA_PORTABLE; }
