/* The NEON dot products (aarch64), written once and compiled twice: by kernels/dot_neon.c for every
 * aarch64 CPU, and by kernels/dot_neon_dotprod.c with the int8 dot product (SDOT). The includer
 * defines SUM4(a, b): the int32 lanes of a block's 4-product sums (lane i = sum of a[4i..4i+3] *
 * b[4i..4i+3]) and DOT_TABLE, the name of the table. Eight float lanes are two registers of four:
 * lo holds lanes 0-3 (values 0-15 of a block), hi lanes 4-7; every float step is the portable one
 * (kernels/dot.h), so the results are bit-identical to kernels/dot.c. */
#include <arm_neon.h>
#include <math.h>

#include "dot.h"

static inline float h2f(uint16_t h) { return spill_fp16_to_fp32(h); }

static inline float hsum(float32x4_t lo, float32x4_t hi) {
    float a[8];
    vst1q_f32(a, lo);
    vst1q_f32(a + 4, hi);
    return spill_hsum8(a);
}

#define PREFETCH(p) __builtin_prefetch((const char *)(p) + SPILL_PREFETCH_AHEAD)

/* a block's 8 lanes (x0, y0: values 0-15; x1, y1: values 16-31), scaled by d into lo, hi */
static inline void block_fma(float32x4_t *lo, float32x4_t *hi, float d, int8x16_t x0, int8x16_t x1, int8x16_t y0,
                             int8x16_t y1) {
    float32x4_t dv = vdupq_n_f32(d);
    *lo = vfmaq_f32(*lo, vcvtq_f32_s32(SUM4(x0, y0)), dv);
    *hi = vfmaq_f32(*hi, vcvtq_f32_s32(SUM4(x1, y1)), dv);
}

static float dot_q8_0(int64_t n, const void *wv, const void *av) {
    const spill_block_q8_0 *x = wv, *y = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        PREFETCH(x + i);
        block_fma(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), vld1q_s8(y[i].qs),
                  vld1q_s8(y[i].qs + 16));
    }
    return hsum(lo, hi);
}

static float dot_q4_0(int64_t n, const void *wv, const void *av) {
    const spill_block_q4_0 *x = wv;
    const spill_block_q8_0 *y = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        PREFETCH(x + i);
        uint8x16_t q = vld1q_u8(x[i].qs);
        int8x16_t x0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), eight);
        int8x16_t x1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
        block_fma(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), x0, x1, vld1q_s8(y[i].qs), vld1q_s8(y[i].qs + 16));
    }
    return hsum(lo, hi);
}

static float dot_q4_1(int64_t n, const void *wv, const void *av) {
    const spill_block_q4_1 *x = wv;
    const spill_block_q8_1 *y = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    float summs = 0;
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        PREFETCH(x + i);
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        uint8x16_t q = vld1q_u8(x[i].qs);
        int8x16_t x0 = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), x1 = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
        block_fma(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), x0, x1, vld1q_s8(y[i].qs), vld1q_s8(y[i].qs + 16));
    }
    return hsum(lo, hi) + summs;
}

static float dot_f32(int64_t n, const void *wv, const void *av) {
    const float *a = wv, *b = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        PREFETCH(a + i);
        lo = vfmaq_f32(lo, vld1q_f32(a + i), vld1q_f32(b + i));
        hi = vfmaq_f32(hi, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float s = hsum(lo, hi);
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static inline float32x4_t f16x4(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }

static float dot_f16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv, *y = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        PREFETCH(x + i);
        lo = vfmaq_f32(lo, f16x4(x + i), f16x4(y + i));
        hi = vfmaq_f32(hi, f16x4(x + i + 4), f16x4(y + i + 4));
    }
    float s = hsum(lo, hi);
    for (; i < n; i++) s = fmaf(h2f(x[i]), h2f(y[i]), s);
    return s;
}

static inline float32x4_t bf16x4(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }

static float dot_bf16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv;
    const float *y = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        PREFETCH(x + i);
        lo = vfmaq_f32(lo, bf16x4(x + i), vld1q_f32(y + i));
        hi = vfmaq_f32(hi, bf16x4(x + i + 4), vld1q_f32(y + i + 4));
    }
    float s = hsum(lo, hi);
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(x[i]), y[i], s);
    return s;
}

/* K-quants: a super-block dequantized by the portable code, then multiplied in 8 lanes */
static float dot_kquant(spill_dtype t, int64_t n, const void *row, const float *x) {
    float y[SPILL_QK_K];
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        if (t == SPILL_DT_Q4_K) spill_dequant_q4_k((const spill_block_q4_k *)row + i, y);
        else spill_dequant_q6_k((const spill_block_q6_k *)row + i, y);
        const float *xb = x + i * SPILL_QK_K;
        for (int k = 0; k < SPILL_QK_K; k += 8) {
            lo = vfmaq_f32(lo, vld1q_f32(y + k), vld1q_f32(xb + k));
            hi = vfmaq_f32(hi, vld1q_f32(y + k + 4), vld1q_f32(xb + k + 4));
        }
    }
    return hsum(lo, hi);
}

static float dot_q4_k(int64_t n, const void *w, const void *act) { return dot_kquant(SPILL_DT_Q4_K, n, w, act); }
static float dot_q6_k(int64_t n, const void *w, const void *act) { return dot_kquant(SPILL_DT_Q6_K, n, w, act); }

const spill_dot_table DOT_TABLE = {dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, dot_q4_1, dot_q4_k, dot_q6_k};
