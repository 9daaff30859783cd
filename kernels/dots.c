/* One weight row against several tokens at once (prefill, batched decode, speculative verification).
 *
 * spill_vec_dot takes one row and one token. With a batch, the matmul used to call it once per token
 * while the row sat in L1: the bytes were read once, but the row was decoded (nibbles unpacked, its
 * scales converted) once per token, and batched steps were compute-bound at about the single-token
 * rate. Here a row's block is decoded once and multiplied with SPILL_DOTS_TILE tokens.
 *
 * Each token's result is bit-identical to spill_vec_dot on that token: the integer block sums are
 * exact (maddubs + madd, or VNNI's dpbusd, give the same 8 lanes of 4 products), and the float steps
 * (scale product, fused multiply-add per lane, the pairwise reduction, the Q4_1 min term) are the same
 * operations in the same order. So batching never changes a greedy token, and tests/test_quant.c
 * compares this with spill_vec_dot for every type, length and tile remainder. Types without a tiled
 * kernel here, and builds without AVX2, fall back to spill_vec_dot per token. */
#include "spill_kernels.h"

#include <math.h>

static void dots_each(spill_dtype w, int64_t n, const void *wrow, const uint8_t *act, uint64_t stride, int nt,
                      float *out, int64_t ldo) {
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = spill_vec_dot(w, n, wrow, act + (uint64_t)t * stride);
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#define T SPILL_DOTS_TILE

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline float hsum8(__m256 v) {
    float a[8];
    _mm256_storeu_ps(a, v);
    float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
    return (r0 + r2) + (r1 + r3);
}

static inline __m256i nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

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

/* The activations' block scales as floats, 4 tokens side by side: sc[(tile * nb + i) * 8 + t] is
 * token t's d in block i, [.. + 4 + t] its s (Q8_1). Converted once per matmul, not once per row. */
static inline const float *tile_scales(const float *sc, int64_t nb, int tile) { return sc + (size_t)tile * (size_t)nb * 8; }

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
    for (int t = 0; t < T; t++) out[(int64_t)t * ldo] = hsum8(acc[t]);
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
    for (int t = 0; t < T; t++) out[(int64_t)t * ldo] = hsum8(acc[t]) + sm[t];
}

int spill_dots_tiled(spill_dtype w) { return w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1; }

size_t spill_dots_scales_len(spill_dtype w, int64_t n, int nt) {
    return spill_dots_tiled(w) ? (size_t)(nt / T) * (size_t)(n / SPILL_QK) * 8 : 0;
}

void spill_dots_prepare(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
    if (!spill_dots_tiled(w)) return;
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

void spill_vec_dots(spill_dtype w, int64_t n, const void *wrow, const void *act, uint64_t stride, int nt,
                    const float *sc, float *out, int64_t ldo) {
    int t = 0;
    if (spill_dots_tiled(w)) {
        int64_t nb = n / SPILL_QK;
        for (; t + T <= nt; t += T) {
            const uint8_t *a = (const uint8_t *)act + (uint64_t)t * stride;
            const float *s = tile_scales(sc, nb, t / T);
            float *o = out + (int64_t)t * ldo;
            switch (w) {
            case SPILL_DT_Q8_0: dots_signed(0, n, wrow, a, stride, s, o, ldo); break;
            case SPILL_DT_Q4_0: dots_signed(1, n, wrow, a, stride, s, o, ldo); break;
            default: dots_q4_1(n, wrow, a, stride, s, o, ldo); break;
            }
        }
    }
    dots_each(w, n, wrow, (const uint8_t *)act + (uint64_t)t * stride, stride, nt - t, out + (int64_t)t * ldo, ldo);
}
#else
int spill_dots_tiled(spill_dtype w) {
    (void)w;
    return 0;
}

size_t spill_dots_scales_len(spill_dtype w, int64_t n, int nt) {
    (void)w, (void)n, (void)nt;
    return 0;
}

void spill_dots_prepare(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
    (void)w, (void)n, (void)act, (void)stride, (void)nt, (void)sc;
}

void spill_vec_dots(spill_dtype w, int64_t n, const void *wrow, const void *act, uint64_t stride, int nt,
                    const float *sc, float *out, int64_t ldo) {
    (void)sc;
    dots_each(w, n, wrow, act, stride, nt, out, ldo);
}
#endif
