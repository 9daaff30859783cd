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

/* 8 BF16 values from p as the two sets of 4 floats kernels/dot.h's BF16 lanes take: odd has value 2l + 1
   in lane l, even value 2l (both exact) */
static inline void bf16_pairs(const uint16_t *p, float32x4_t *odd, float32x4_t *even) {
    uint32x4_t v = vreinterpretq_u32_u16(vld1q_u16(p));
    *odd = vreinterpretq_f32_u32(vandq_u32(v, vdupq_n_u32(0xffff0000u)));
    *even = vreinterpretq_f32_u32(vshlq_n_u32(v, 16));
}

/* lanes lo, hi of 16 BF16 weights x against 16 BF16 activations y (kernels/dot.h: the odd value of each
   pair, then the even one) */
static inline void bf16_step(float32x4_t *lo, float32x4_t *hi, const uint16_t *x, const uint16_t *y) {
    float32x4_t xo, xe, yo, ye;
    bf16_pairs(x, &xo, &xe), bf16_pairs(y, &yo, &ye);
    *lo = vfmaq_f32(vfmaq_f32(*lo, xo, yo), xe, ye);
    bf16_pairs(x + 8, &xo, &xe), bf16_pairs(y + 8, &yo, &ye);
    *hi = vfmaq_f32(vfmaq_f32(*hi, xo, yo), xe, ye);
}

static float dot_bf16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv, *y = av;
    float32x4_t lo = vdupq_n_f32(0), hi = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        PREFETCH(x + i);
        bf16_step(&lo, &hi, x + i, y + i);
    }
    float s = hsum(lo, hi);
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(x[i]), spill_bf16_to_fp32(y[i]), s);
    return s;
}

/* K-quants against Q8_K (kernels/kquant.c): one row against nt <= SPILL_DOTS_TILE tokens (1: the dot; 4:
 * the table's tile). A super-block is unpacked once (Q4_K's nibbles and scales, Q6_K's 6-bit values: all
 * non-negative int8), every token's products summed exactly in int32 (SUM4's lanes times their scale, then
 * across the lanes once per super-block: the same integers in another order), then the float steps of
 * kernels/dot.h, so the results equal the portable dots. */
static inline void kq_q4_k(int64_t n, const spill_block_q4_k *x, const uint8_t *act, uint64_t stride, int nt, float *out,
                           int64_t ldo) {
    const uint8x16_t m4 = vdupq_n_u8(0xF);
    float acc[SPILL_DOTS_TILE] = {0};
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        spill_prefetch_block(x + i, sizeof *x);
        int sc[8], mn[8];
        spill_q4_k_scales(x[i].scales, sc, mn);
        int8x16_t q[16]; /* sub-block j's 32 values: q[2j], q[2j + 1] */
        for (int p = 0; p < 4; p++)
            for (int e = 0; e < 2; e++) {
                uint8x16_t b = vld1q_u8(x[i].qs + 32 * p + 16 * e);
                q[4 * p + e] = vreinterpretq_s8_u8(vandq_u8(b, m4));
                q[4 * p + 2 + e] = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
            }
        float dx = spill_fp16_to_fp32(x[i].d), mx = spill_fp16_to_fp32(x[i].dmin);
        for (int t = 0; t < nt; t++) {
            const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
            int32x4_t s = vdupq_n_s32(0); /* each sub-block's 4 lanes times its scale, added across once */
            for (int j = 0; j < 8; j++)
                s = vmlaq_n_s32(s, vaddq_s32(SUM4(q[2 * j], vld1q_s8(y->qs + 32 * j)), SUM4(q[2 * j + 1], vld1q_s8(y->qs + 32 * j + 16))),
                                sc[j]);
            acc[t] = spill_q4_k_block(acc[t], dx, mx, y, vaddvq_s32(s), mn);
        }
    }
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = acc[t];
}

static inline void kq_q6_k(int64_t n, const spill_block_q6_k *x, const uint8_t *act, uint64_t stride, int nt, float *out,
                           int64_t ldo) {
    const uint8x16_t m4 = vdupq_n_u8(0xF), m2 = vdupq_n_u8(0x30);
    float acc[SPILL_DOTS_TILE] = {0};
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        spill_prefetch_block(x + i, sizeof *x);
        const int8_t *sc = x[i].scales;
        int8x16_t q[16]; /* group g's 16 values (scale sc[g]): q[g] */
        for (int half = 0; half < 2; half++)
            for (int e = 0; e < 2; e++) {
                const uint8_t *ql = x[i].ql + 64 * half + 16 * e, *qh = x[i].qh + 32 * half + 16 * e;
                uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 32), h = vld1q_u8(qh);
                int g = 8 * half + e;
                q[g] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(h, 4), m2)));
                q[g + 2] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(h, 2), m2)));
                q[g + 4] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h, m2)));
                q[g + 6] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(h, 2), m2)));
            }
        float dx = spill_fp16_to_fp32(x[i].d);
        for (int t = 0; t < nt; t++) {
            const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
            int32x4_t s = vdupq_n_s32(0);
            for (int g = 0; g < 16; g++) s = vmlaq_n_s32(s, SUM4(q[g], vld1q_s8(y->qs + 16 * g)), sc[g]);
            acc[t] = spill_q6_k_block(acc[t], dx, y, vaddvq_s32(s), sc);
        }
    }
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = acc[t];
}

static float dot_q4_k(int64_t n, const void *wv, const void *av) {
    float r;
    kq_q4_k(n, wv, av, 0, 1, &r, 1);
    return r;
}

static float dot_q6_k(int64_t n, const void *wv, const void *av) {
    float r;
    kq_q6_k(n, wv, av, 0, 1, &r, 1);
    return r;
}

/* R rows against one token (the table's rows kernel, kernels/dot.h): each row's steps are its dot's
 * above, in the same order, so the results are their bits; the token's values are loaded (and
 * converted) once for the R rows, and the rows' sums are independent chains. */
static inline float32x4_t wide4(spill_dtype w, const void *p, int64_t i) {
    if (w == SPILL_DT_F16) return f16x4((const uint16_t *)p + i);
    return vld1q_f32((const float *)p + i); /* BF16 takes its own loops (bf16_step) */
}
static inline float wide1(spill_dtype w, const void *p, int64_t i) {
    if (w == SPILL_DT_F16) return h2f(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

static inline __attribute__((always_inline)) void rows_wide(spill_dtype w, int R, int64_t n, const uint8_t *wrow,
                                                            uint64_t rb, const void *act, float *out) {
    if (w == SPILL_DT_BF16) { /* BF16 activations, lanes of pairs */
        const uint16_t *y = act;
        float32x4_t lo[4], hi[4];
        for (int r = 0; r < R; r++) lo[r] = hi[r] = vdupq_n_f32(0);
        const uint64_t wrap = spill_rows_prefetch_wrap(rb);
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            const uint8_t *pf = spill_rows_prefetch_at(wrow, rb, R, (uint64_t)i * 2, wrap);
            for (int r = 0; r < R; r++) {
                __builtin_prefetch(pf + r * rb);
                bf16_step(&lo[r], &hi[r], (const uint16_t *)(wrow + r * rb) + i, y + i);
            }
        }
        for (int r = 0; r < R; r++) {
            const uint16_t *x = (const uint16_t *)(wrow + r * rb);
            float s = hsum(lo[r], hi[r]);
            for (int64_t k = i; k < n; k++) s = fmaf(spill_bf16_to_fp32(x[k]), spill_bf16_to_fp32(y[k]), s);
            out[r] = s;
        }
        return;
    }
    const spill_dtype a = w == SPILL_DT_F16 ? SPILL_DT_F16 : SPILL_DT_F32;
    float32x4_t lo[4], hi[4];
    for (int r = 0; r < R; r++) lo[r] = hi[r] = vdupq_n_f32(0);
    const uint64_t wbytes = w == SPILL_DT_F32 ? 4 : 2, wrap = spill_rows_prefetch_wrap(rb);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t y0 = wide4(a, act, i), y1 = wide4(a, act, i + 4);
        const uint8_t *pf = spill_rows_prefetch_at(wrow, rb, R, (uint64_t)i * wbytes, wrap);
        for (int r = 0; r < R; r++) {
            const uint8_t *x = wrow + r * rb;
            __builtin_prefetch(pf + r * rb);
            lo[r] = vfmaq_f32(lo[r], wide4(w, x, i), y0);
            hi[r] = vfmaq_f32(hi[r], wide4(w, x, i + 4), y1);
        }
    }
    for (int r = 0; r < R; r++) {
        float s = hsum(lo[r], hi[r]);
        for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, wrow + r * rb, k), wide1(a, act, k), s);
        out[r] = s;
    }
}

static inline __attribute__((always_inline)) void rows_quant(spill_dtype w, int R, int64_t n, const uint8_t *wrow,
                                                             uint64_t rb, const void *act, float *out) {
    float32x4_t lo[4], hi[4];
    float summs[4] = {0, 0, 0, 0};
    for (int r = 0; r < R; r++) lo[r] = hi[r] = vdupq_n_f32(0);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        const int8_t *yq = w == SPILL_DT_Q4_1 ? ((const spill_block_q8_1 *)act)[i].qs : ((const spill_block_q8_0 *)act)[i].qs;
        float dy = h2f(w == SPILL_DT_Q4_1 ? ((const spill_block_q8_1 *)act)[i].d : ((const spill_block_q8_0 *)act)[i].d);
        float sy = w == SPILL_DT_Q4_1 ? h2f(((const spill_block_q8_1 *)act)[i].s) : 0;
        int8x16_t y0 = vld1q_s8(yq), y1 = vld1q_s8(yq + 16);
        for (int r = 0; r < R; r++) {
            const uint8_t *row = wrow + r * rb;
            if (w == SPILL_DT_Q8_0) {
                const spill_block_q8_0 *x = (const spill_block_q8_0 *)row + i;
                PREFETCH(x);
                block_fma(&lo[r], &hi[r], h2f(x->d) * dy, vld1q_s8(x->qs), vld1q_s8(x->qs + 16), y0, y1);
            } else if (w == SPILL_DT_Q4_0) {
                const spill_block_q4_0 *x = (const spill_block_q4_0 *)row + i;
                PREFETCH(x);
                uint8x16_t q = vld1q_u8(x->qs);
                int8x16_t x0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), eight);
                int8x16_t x1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
                block_fma(&lo[r], &hi[r], h2f(x->d) * dy, x0, x1, y0, y1);
            } else {
                const spill_block_q4_1 *x = (const spill_block_q4_1 *)row + i;
                PREFETCH(x);
                summs[r] = fmaf(h2f(x->m), sy, summs[r]);
                uint8x16_t q = vld1q_u8(x->qs);
                int8x16_t x0 = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), x1 = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
                block_fma(&lo[r], &hi[r], h2f(x->d) * dy, x0, x1, y0, y1);
            }
        }
    }
    for (int r = 0; r < R; r++) out[r] = w == SPILL_DT_Q4_1 ? hsum(lo[r], hi[r]) + summs[r] : hsum(lo[r], hi[r]);
}

#define ROWS_OF(kernel, w)                                                                        \
    do {                                                                                          \
        int r_ = 0;                                                                               \
        for (; r_ + 4 <= nr; r_ += 4) kernel(w, 4, n, wrow + (uint64_t)r_ * rb, rb, act, out + r_); \
        for (; r_ < nr; r_++) kernel(w, 1, n, wrow + (uint64_t)r_ * rb, rb, act, out + r_);          \
    } while (0)

static int dot_rows(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out) {
    const uint8_t *wrow = wrows;
    switch (w) {
    case SPILL_DT_F32: ROWS_OF(rows_wide, SPILL_DT_F32); return 1;
    case SPILL_DT_F16: ROWS_OF(rows_wide, SPILL_DT_F16); return 1;
    case SPILL_DT_BF16: ROWS_OF(rows_wide, SPILL_DT_BF16); return 1;
    case SPILL_DT_Q8_0: ROWS_OF(rows_quant, SPILL_DT_Q8_0); return 1;
    case SPILL_DT_Q4_0: ROWS_OF(rows_quant, SPILL_DT_Q4_0); return 1;
    case SPILL_DT_Q4_1: ROWS_OF(rows_quant, SPILL_DT_Q4_1); return 1;
    default: return 0;
    }
}

/* One row against SPILL_DOTS_TILE tokens (the table's tile kernel, kernels/dot.h: prefill, batched
 * decode, speculative verification). The rows kernel above already shares a token's block among 4 rows;
 * here a row's block is decoded once (nibbles split and re-centred, its scales converted) for the 4
 * tokens, which the rows kernel did once per token. Each token's steps are its dot's above in the same
 * order (the same scale product, block_fma, min term and sum), so the results are their bits. Never
 * timed on an Arm CPU (only run under qemu-aarch64, where tests/test_quant.c checks the bits). */
#define TT SPILL_DOTS_TILE
static inline __attribute__((always_inline)) void tile_quant(spill_dtype w, int64_t n, const uint8_t *row,
                                                             const uint8_t *act, uint64_t stride, float *out,
                                                             int64_t ldo) {
    float32x4_t lo[TT], hi[TT];
    float summs[TT];
    for (int t = 0; t < TT; t++) lo[t] = hi[t] = vdupq_n_f32(0), summs[t] = 0;
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int8x16_t x0, x1;
        float dx, mx = 0;
        if (w == SPILL_DT_Q8_0) {
            const spill_block_q8_0 *x = (const spill_block_q8_0 *)row + i;
            PREFETCH(x);
            dx = h2f(x->d);
            x0 = vld1q_s8(x->qs), x1 = vld1q_s8(x->qs + 16);
        } else if (w == SPILL_DT_Q4_0) {
            const spill_block_q4_0 *x = (const spill_block_q4_0 *)row + i;
            PREFETCH(x);
            dx = h2f(x->d);
            uint8x16_t q = vld1q_u8(x->qs);
            x0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), eight);
            x1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
        } else {
            const spill_block_q4_1 *x = (const spill_block_q4_1 *)row + i;
            PREFETCH(x);
            dx = h2f(x->d), mx = h2f(x->m);
            uint8x16_t q = vld1q_u8(x->qs);
            x0 = vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(15))), x1 = vreinterpretq_s8_u8(vshrq_n_u8(q, 4));
        }
        for (int t = 0; t < TT; t++) {
            const uint8_t *a = act + (uint64_t)t * stride;
            const int8_t *yq;
            float dy;
            if (w == SPILL_DT_Q4_1) {
                const spill_block_q8_1 *y = (const spill_block_q8_1 *)a + i;
                summs[t] = fmaf(mx, h2f(y->s), summs[t]);
                yq = y->qs, dy = h2f(y->d);
            } else {
                const spill_block_q8_0 *y = (const spill_block_q8_0 *)a + i;
                yq = y->qs, dy = h2f(y->d);
            }
            block_fma(&lo[t], &hi[t], dx * dy, x0, x1, vld1q_s8(yq), vld1q_s8(yq + 16));
        }
    }
    for (int t = 0; t < TT; t++) out[(int64_t)t * ldo] = w == SPILL_DT_Q4_1 ? hsum(lo[t], hi[t]) + summs[t] : hsum(lo[t], hi[t]);
}

/* F32, F16 and BF16: one row's 8 (BF16: 16) values widened once for the 4 tokens (F16 rows meet F16
 * activations, BF16 rows BF16 ones, F32 rows F32 ones, as in the dots above) */
static inline __attribute__((always_inline)) void tile_wide(spill_dtype w, int64_t n, const uint8_t *row,
                                                            const uint8_t *act, uint64_t stride, float *out,
                                                            int64_t ldo) {
    if (w == SPILL_DT_BF16) { /* BF16 activations, lanes of pairs: each token's steps are dot_bf16's */
        const uint16_t *x = (const uint16_t *)row;
        float32x4_t lo[TT], hi[TT];
        for (int t = 0; t < TT; t++) lo[t] = hi[t] = vdupq_n_f32(0);
        int64_t i = 0;
        for (; i + 16 <= n; i += 16) {
            PREFETCH(x + i);
            float32x4_t xo0, xe0, xo1, xe1;
            bf16_pairs(x + i, &xo0, &xe0), bf16_pairs(x + i + 8, &xo1, &xe1);
            for (int t = 0; t < TT; t++) {
                const uint16_t *y = (const uint16_t *)(act + (uint64_t)t * stride) + i;
                float32x4_t yo, ye;
                bf16_pairs(y, &yo, &ye);
                lo[t] = vfmaq_f32(vfmaq_f32(lo[t], xo0, yo), xe0, ye);
                bf16_pairs(y + 8, &yo, &ye);
                hi[t] = vfmaq_f32(vfmaq_f32(hi[t], xo1, yo), xe1, ye);
            }
        }
        for (int t = 0; t < TT; t++) {
            const uint16_t *y = (const uint16_t *)(act + (uint64_t)t * stride);
            float s = hsum(lo[t], hi[t]);
            for (int64_t k = i; k < n; k++) s = fmaf(spill_bf16_to_fp32(x[k]), spill_bf16_to_fp32(y[k]), s);
            out[(int64_t)t * ldo] = s;
        }
        return;
    }
    const spill_dtype a = w == SPILL_DT_F16 ? SPILL_DT_F16 : SPILL_DT_F32;
    float32x4_t lo[TT], hi[TT];
    for (int t = 0; t < TT; t++) lo[t] = hi[t] = vdupq_n_f32(0);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        PREFETCH(row + (size_t)i * (w == SPILL_DT_F32 ? 4 : 2));
        float32x4_t x0 = wide4(w, row, i), x1 = wide4(w, row, i + 4);
        for (int t = 0; t < TT; t++) {
            const uint8_t *y = act + (uint64_t)t * stride;
            lo[t] = vfmaq_f32(lo[t], x0, wide4(a, y, i));
            hi[t] = vfmaq_f32(hi[t], x1, wide4(a, y, i + 4));
        }
    }
    for (int t = 0; t < TT; t++) {
        const uint8_t *y = act + (uint64_t)t * stride;
        float s = hsum(lo[t], hi[t]);
        for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, row, k), wide1(a, y, k), s);
        out[(int64_t)t * ldo] = s;
    }
}

static void tile_q4_k(spill_dtype w, int64_t n, const uint8_t *row, const uint8_t *act, uint64_t stride, float *out,
                      int64_t ldo) {
    (void)w;
    kq_q4_k(n, (const spill_block_q4_k *)row, act, stride, TT, out, ldo);
}

static void tile_q6_k(spill_dtype w, int64_t n, const uint8_t *row, const uint8_t *act, uint64_t stride, float *out,
                      int64_t ldo) {
    (void)w;
    kq_q6_k(n, (const spill_block_q6_k *)row, act, stride, TT, out, ldo);
}

#define TILE_OF(kernel, w)                                                                     \
    do {                                                                                       \
        for (int r_ = 0; r_ < nr; r_++) kernel(w, n, wrow + (uint64_t)r_ * rb, act8, stride, out + r_, ldo); \
    } while (0)

static int dot_tile(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                    float *out, int64_t ldo) {
    const uint8_t *wrow = wrows, *act8 = act;
    switch (w) {
    case SPILL_DT_F32: TILE_OF(tile_wide, SPILL_DT_F32); return 1;
    case SPILL_DT_F16: TILE_OF(tile_wide, SPILL_DT_F16); return 1;
    case SPILL_DT_BF16: TILE_OF(tile_wide, SPILL_DT_BF16); return 1;
    case SPILL_DT_Q8_0: TILE_OF(tile_quant, SPILL_DT_Q8_0); return 1;
    case SPILL_DT_Q4_0: TILE_OF(tile_quant, SPILL_DT_Q4_0); return 1;
    case SPILL_DT_Q4_1: TILE_OF(tile_quant, SPILL_DT_Q4_1); return 1;
    case SPILL_DT_Q4_K: TILE_OF(tile_q4_k, SPILL_DT_Q4_K); return 1;
    case SPILL_DT_Q6_K: TILE_OF(tile_q6_k, SPILL_DT_Q6_K); return 1;
    default: return 0;
    }
}

/* kernels/dot.h spill_act_fn: 4 values per instruction. FMAXNM takes the number when a lane is a (quiet)
   NaN, as the portable loop skips it; FCVTN and FCVTNS round to nearest even (Linux starts threads with
   FPCR's rounding mode at that, and flushes no F16 subnormal), as the portable conversion and nearbyintf
   do */
static int act_neon(spill_dtype at, const float *x, void *out, int64_t n) {
    if (at == SPILL_DT_F16) {
        uint16_t *h = out;
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) vst1_u16(h + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
        for (; i < n; i++) h[i] = spill_fp32_to_fp16(x[i]);
        return 1;
    }
    if (at != SPILL_DT_Q8_0 && at != SPILL_DT_Q8_1) return 0;
    for (int64_t b = 0; b < n / SPILL_QK; b++) {
        const float *v = x + b * SPILL_QK;
        float32x4_t f[8], m = vdupq_n_f32(0);
        for (int k = 0; k < 8; k++) {
            f[k] = vld1q_f32(v + 4 * k);
            m = vmaxnmq_f32(m, vabsq_f32(f[k]));
        }
        float amax = vmaxnmvq_f32(m);
        float d = amax / 127.f, id = spill_q8_factor(amax);
        int32x4_t sum = vdupq_n_s32(0);
        int8_t *qs = at == SPILL_DT_Q8_1 ? ((spill_block_q8_1 *)out + b)->qs : ((spill_block_q8_0 *)out + b)->qs;
        for (int k = 0; k < 8; k += 2) {
            int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(f[k], id)), q1 = vcvtnq_s32_f32(vmulq_n_f32(f[k + 1], id));
            sum = vaddq_s32(sum, vaddq_s32(q0, q1));
            vst1_s8(qs + 4 * k, vqmovn_s16(vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1))));
        }
        if (at == SPILL_DT_Q8_1) {
            spill_block_q8_1 *o = (spill_block_q8_1 *)out + b;
            o->d = spill_fp32_to_fp16(d);
            o->s = spill_fp32_to_fp16(d * (float)vaddvq_s32(sum));
        } else {
            ((spill_block_q8_0 *)out + b)->d = spill_fp32_to_fp16(d);
        }
    }
    return 1;
}

const spill_dot_table DOT_TABLE = {dot_f32,  dot_f16,  dot_bf16, dot_q8_0, dot_q4_0,
                                   dot_q4_1, dot_q4_k, dot_q6_k, dot_rows, dot_tile, act_neon};
