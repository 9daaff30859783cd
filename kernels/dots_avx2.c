/* The AVX2 tiles of kernels/dots.c: one weight row against 4 tokens (Q8_0, Q4_0, Q4_1, F32, F16, BF16), each token's
 * result bit-identical to the one-token dot. Compiled with AVX2, FMA and F16C enabled whatever the
 * build machine; kernels/dots.c calls it only when kernels/cpu.c chose AVX2 for this CPU. */
#include "dot_avx2.h"

#define T SPILL_DOTS_TILE

/* 8 lanes, each the sum of 4 products of unsigned u and signed s */
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
static inline __m256 lanes_us(__m256i u, __m256i s) { return _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)); }
#elif defined(__AVXVNNI__)
static inline __m256 lanes_us(__m256i u, __m256i s) { return _mm256_cvtepi32_ps(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)); }
#else
static inline __m256 lanes_us(__m256i u, __m256i s) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}
#endif

#define PREFETCH_AHEAD 4096

/* sc, in every function below: the activations' block scales as floats, 4 tokens side by side:
 * sc[(tile * nb + i) * 8 + t] is token t's d in block i, [.. + 4 + t] its s (Q8_1). Converted once per
 * matmul (spill_dots_prepare_avx2), not once per row. */

/* out[t] for the 4 tokens, given the block's integer lanes per token and the scale products d4 */
#define TILE_FMA(acc, d4, lanes)                                                             \
    do {                                                                                     \
        float dt_[4];                                                                        \
        _mm_storeu_ps(dt_, d4);                                                              \
        for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dt_[t]), lanes[t], acc[t]); \
    } while (0)

/* Q8_0 and Q4_0 weights against Q8_0 activations: the weight's signed values, their magnitudes
 * against the activations with the weight's signs (maddubs takes unsigned x signed) */
static inline __attribute__((always_inline)) void dots_signed(int q4, int64_t n, const void *xv, const uint8_t *act,
                                                              uint64_t stride, const float *sc, float *out, int64_t ldo) {
    __m256 acc[T], l[T];
    const spill_block_q8_0 *y[T];
    for (int t = 0; t < T; t++) {
        acc[t] = _mm256_setzero_ps();
        y[t] = (const spill_block_q8_0 *)(act + (uint64_t)t * stride);
    }
    const spill_block_q8_0 *x8 = xv;
    const spill_block_q4_0 *x4 = xv;
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        const void *xb = q4 ? (const void *)(x4 + i) : (const void *)(x8 + i);
        _mm_prefetch((const char *)xb + PREFETCH_AHEAD, _MM_HINT_T0);
        __m256i qx = q4 ? _mm256_sub_epi8(nibbles(x4[i].qs), _mm256_set1_epi8(8))
                        : _mm256_loadu_si256((const __m256i *)x8[i].qs);
        __m256i ax = _mm256_sign_epi8(qx, qx);
        __m128 d4 = _mm_mul_ps(_mm_set1_ps(h2f(q4 ? x4[i].d : x8[i].d)), _mm_loadu_ps(sc + i * 8));
        for (int t = 0; t < T; t++) l[t] = lanes_us(ax, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y[t][i].qs), qx));
        TILE_FMA(acc, d4, l);
    }
    for (int t = 0; t < T; t++) out[(int64_t)t * ldo] = hsum(acc[t]);
}

static void dots_q4_1(int64_t n, const spill_block_q4_1 *x, const uint8_t *act, uint64_t stride, const float *sc,
                      float *out, int64_t ldo) {
    __m256 acc[T], l[T];
    __m128 summs = _mm_setzero_ps(); /* lane t: token t's sum of m * s, each step a fused multiply-add */
    const spill_block_q8_1 *y[T];
    for (int t = 0; t < T; t++) {
        acc[t] = _mm256_setzero_ps();
        y[t] = (const spill_block_q8_1 *)(act + (uint64_t)t * stride);
    }
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + PREFETCH_AHEAD, _MM_HINT_T0);
        __m256i qx = nibbles(x[i].qs);
        summs = _mm_fmadd_ps(_mm_set1_ps(h2f(x[i].m)), _mm_loadu_ps(sc + i * 8 + 4), summs);
        __m128 d4 = _mm_mul_ps(_mm_set1_ps(h2f(x[i].d)), _mm_loadu_ps(sc + i * 8));
        for (int t = 0; t < T; t++) l[t] = lanes_us(qx, _mm256_loadu_si256((const __m256i *)y[t][i].qs));
        TILE_FMA(acc, d4, l);
    }
    float sm[4];
    _mm_storeu_ps(sm, summs);
    for (int t = 0; t < T; t++) out[(int64_t)t * ldo] = hsum(acc[t]) + sm[t];
}

/* F32, F16 and BF16 weights: 8 weights widened to floats once for the 4 tokens. Each token's lanes get
 * the one-token dot's fused multiply-adds in the same order (kernels/dot_avx2.c: dot_f32, dot_f16,
 * dot_bf16), then the same sum and the same scalar tail, so the result is the same bits. F32 and BF16
 * weights meet F32 activations; F16 ones F16 activations, widened (exactly) once per matmul by
 * spill_dots_prepare_avx2 into sc. */
static inline __attribute__((always_inline)) __m256 wide8(spill_dtype w, const void *p, int64_t i) {
    if (w == SPILL_DT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    if (w == SPILL_DT_BF16)
        return _mm256_castsi256_ps(
            _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i))), 16));
    return _mm256_loadu_ps((const float *)p + i);
}
static inline __attribute__((always_inline)) float wide1(spill_dtype w, const void *p, int64_t i) {
    if (w == SPILL_DT_F16) return h2f(((const uint16_t *)p)[i]);
    if (w == SPILL_DT_BF16) return spill_bf16_to_fp32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
static inline __attribute__((always_inline)) void dots_wide(spill_dtype w, int64_t n, const void *wrow, const uint8_t *act,
                                                            uint64_t stride, float *out, int64_t ldo) {
    const spill_dtype a = SPILL_DT_F32; /* the activations' type: F16 ones come widened (act = sc, stride n) */
    const size_t wbytes = w == SPILL_DT_F32 ? 4 : 2;
    __m256 acc[T];
    for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)wrow + (size_t)i * wbytes + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 x = wide8(w, wrow, i);
        for (int t = 0; t < T; t++) acc[t] = _mm256_fmadd_ps(x, wide8(a, act + (uint64_t)t * stride, i), acc[t]);
    }
    for (int t = 0; t < T; t++) {
        float s = hsum(acc[t]);
        for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, wrow, k), wide1(a, act + (uint64_t)t * stride, k), s);
        out[(int64_t)t * ldo] = s;
    }
}

void spill_dots_prepare_avx2(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
    if (w == SPILL_DT_F16) { /* the activations widened, token after token, exactly as the one-token dot widens them */
        for (int t = 0; t < nt / T * T; t++) {
            const uint16_t *a = (const uint16_t *)((const uint8_t *)act + (uint64_t)t * stride);
            float *o = sc + (size_t)t * (size_t)n;
            int64_t i = 0;
            for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))));
            for (; i < n; i++) o[i] = h2f(a[i]);
        }
        return;
    }
    int64_t nb = n / SPILL_QK;
    for (int tile = 0; tile < nt / T; tile++) {
        float *s = sc + (size_t)tile * (size_t)nb * 8;
        for (int t = 0; t < T; t++) {
            const uint8_t *a = (const uint8_t *)act + (uint64_t)(tile * T + t) * stride;
            for (int64_t i = 0; i < nb; i++) {
                if (w == SPILL_DT_Q4_1) {
                    const spill_block_q8_1 *b = (const spill_block_q8_1 *)a + i;
                    s[i * 8 + t] = h2f(b->d);
                    s[i * 8 + 4 + t] = h2f(b->s);
                } else {
                    s[i * 8 + t] = h2f(((const spill_block_q8_0 *)a + i)->d);
                    s[i * 8 + 4 + t] = 0;
                }
            }
        }
    }
}

void spill_dots4_avx2(spill_dtype w, int64_t n, const void *wrow, const void *act, uint64_t stride, const float *sc,
                      float *out, int64_t ldo) {
    switch (w) {
    case SPILL_DT_Q8_0: dots_signed(0, n, wrow, act, stride, sc, out, ldo); break;
    case SPILL_DT_Q4_0: dots_signed(1, n, wrow, act, stride, sc, out, ldo); break;
    case SPILL_DT_F32: dots_wide(SPILL_DT_F32, n, wrow, act, stride, out, ldo); break;
    case SPILL_DT_F16: dots_wide(SPILL_DT_F16, n, wrow, (const uint8_t *)sc, sizeof(float) * (uint64_t)n, out, ldo); break;
    case SPILL_DT_BF16: dots_wide(SPILL_DT_BF16, n, wrow, act, stride, out, ldo); break;
    default: dots_q4_1(n, wrow, act, stride, sc, out, ldo); break;
    }
}
