/* The dot products with AVX2 + FMA + F16C (x86-64), compiled with those instructions enabled for
 * this file only (CMakeLists.txt) and run only where kernels/cpu.c finds them. maddubs + madd give
 * exactly the 8 lanes of 4 products of kernels/dot.h, the integer sums are exact, and the float steps
 * are the portable ones in the same order, so the results are bit-identical to kernels/dot.c. */
#include "dot_avx2.h"

/* lanes of 4 products of signed x and signed y */
static inline __m256 lanes_ss(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x), sy = _mm256_sign_epi8(y, x);
    __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

static float dot_q8_0(int64_t n, const void *wv, const void *av) {
    const spill_block_q8_0 *x = wv, *y = av;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256 l = lanes_ss(_mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(d, l, acc);
    }
    return hsum(acc);
}

static float dot_q4_0(int64_t n, const void *wv, const void *av) {
    const spill_block_q4_0 *x = wv;
    const spill_block_q8_0 *y = av;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256i qx = _mm256_sub_epi8(nibbles(x[i].qs), _mm256_set1_epi8(8));
        __m256 l = lanes_ss(qx, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(d, l, acc);
    }
    return hsum(acc);
}

static float dot_q4_1(int64_t n, const void *wv, const void *av) {
    const spill_block_q4_1 *x = wv;
    const spill_block_q8_1 *y = av;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256i p16 = _mm256_maddubs_epi16(nibbles(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256 l = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
        acc = _mm256_fmadd_ps(d, l, acc);
    }
    return hsum(acc) + summs;
}

static float dot_f32(int64_t n, const void *wv, const void *av) {
    const float *a = wv, *b = av;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(a + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    }
    float s = hsum(acc);
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static float dot_f16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv, *y = av;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(x + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        acc = _mm256_fmadd_ps(a, b, acc);
    }
    float s = hsum(acc);
    for (; i < n; i++) s = fmaf(h2f(x[i]), h2f(y[i]), s);
    return s;
}

static float dot_bf16(int64_t n, const void *wv, const void *av) {
    const uint16_t *x = wv, *y = av;
#if defined(SPILL_DOT_AVX512_BF16)
    if (spill_cpu_avx512_bf16()) return spill_dot_bf16_dpbf16(n, x, y); /* the tiles' instruction: kernels/dots_bf16.c */
#endif
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(x + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 xo, xe, yo, ye;
        bf16_pairs(x + i, &xo, &xe);
        bf16_pairs(y + i, &yo, &ye);
        acc = _mm256_fmadd_ps(xe, ye, _mm256_fmadd_ps(xo, yo, acc));
    }
    float s = hsum(acc);
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(x[i]), spill_bf16_to_fp32(y[i]), s);
    return s;
}

/* K-quants: one row against one token (kernels/dot_avx2.h) */
static float dot_q4_k(int64_t n, const void *wv, const void *av) {
    float r;
    kq_q4_k(1, 1, n, wv, 0, av, 0, &r, 1);
    return r;
}

static float dot_q6_k(int64_t n, const void *wv, const void *av) {
    float r;
    kq_q6_k(1, 1, n, wv, 0, av, 0, &r, 1);
    return r;
}

/* kernels/dot.h spill_act_fn: 8 values per instruction; the amax's maximum is exact whatever the order */
static int act_avx2(spill_dtype at, const float *x, void *out, int64_t n) {
    if (at == SPILL_DT_F16) {
        uint16_t *h = out;
        int64_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(h + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; i++) h[i] = spill_fp32_to_fp16(x[i]);
        return 1;
    }
    if (at == SPILL_DT_BF16) { /* spill_bf16_act, 8 values an instruction */
        uint16_t *h = out;
        const __m256i expo = _mm256_set1_epi32(0x7f800000), abs = _mm256_set1_epi32(0x7fffffff);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256i u = _mm256_loadu_si256((const __m256i *)(x + i)), hi = _mm256_srli_epi32(u, 16);
            __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(hi, _mm256_set1_epi32(1))));
            r = _mm256_srli_epi32(r, 16);
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs), expo); /* |u| > infinity's bits */
            __m256i sub = _mm256_cmpeq_epi32(_mm256_and_si256(u, expo), _mm256_setzero_si256());
            r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
            r = _mm256_blendv_epi8(r, _mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), sub);
            __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08); /* each 32 bits' low half, in order */
            _mm_storeu_si128((__m128i *)(h + i), _mm256_castsi256_si128(p));
        }
        for (; i < n; i++) h[i] = spill_bf16_act(x[i]);
        return 1;
    }
    const __m256 nosign = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    if (at == SPILL_DT_Q8_K) { /* spill_quantize_q8_k: 256 values under one F32 scale, the sum of each 16 */
        for (int64_t b = 0; b < n / SPILL_QK_K; b++) {
            const float *v = x + b * SPILL_QK_K;
            spill_block_q8_k *o = (spill_block_q8_k *)out + b;
            __m256 m = _mm256_setzero_ps();
            for (int k = 0; k < SPILL_QK_K / 8; k++) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(v + 8 * k), nosign), m);
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
            float amax = _mm_cvtss_f32(m4);
            o->d = amax / 127.f;
            __m256 idv = _mm256_set1_ps(spill_q8_factor(amax));
            for (int c = 0; c < SPILL_QK_K / 32; c++) { /* 32 values: two 16-value sums */
                __m256i q[4];
                for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + 32 * c + 8 * k), idv));
                __m256i q8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                _mm256_storeu_si256((__m256i *)(o->qs + 32 * c), _mm256_permutevar8x32_epi32(q8, order));
                __m256i t = _mm256_hadd_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
                t = _mm256_hadd_epi32(t, t); /* 128-bit halves: first 16's sum over 4 lanes, second's */
                __m128i s = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
                o->bsums[2 * c] = (int16_t)_mm_cvtsi128_si32(s);
                o->bsums[2 * c + 1] = (int16_t)_mm_extract_epi32(s, 1);
            }
        }
        return 1;
    }
    if (at != SPILL_DT_Q8_0 && at != SPILL_DT_Q8_1) return 0;
    for (int64_t b = 0; b < n / SPILL_QK; b++) {
        const float *v = x + b * SPILL_QK;
        __m256 f[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            f[k] = _mm256_loadu_ps(v + 8 * k);
            m = _mm256_max_ps(_mm256_and_ps(f[k], nosign), m); /* a NaN lane keeps m's */
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4);
        float d = amax / 127.f, id = spill_q8_factor(amax);
        __m256 idv = _mm256_set1_ps(id);
        __m256i q[4], sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(f[k], idv)); /* the current rounding mode: nearbyintf's */
            sum = _mm256_add_epi32(sum, q[k]);
        }
        /* |q| <= 127: packing saturates nothing; the permutation undoes the packs' lane interleaving */
        __m256i q16 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        q16 = _mm256_permutevar8x32_epi32(q16, order);
        if (at == SPILL_DT_Q8_1) {
            spill_block_q8_1 *o = (spill_block_q8_1 *)out + b;
            _mm256_storeu_si256((__m256i *)o->qs, q16);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
            o->d = spill_fp32_to_fp16(d);
            o->s = spill_fp32_to_fp16(d * (float)_mm_cvtsi128_si32(s4));
        } else {
            spill_block_q8_0 *o = (spill_block_q8_0 *)out + b;
            _mm256_storeu_si256((__m256i *)o->qs, q16);
            o->d = spill_fp32_to_fp16(d);
        }
    }
    return 1;
}

/* 16-bit rows widened 8 values an instruction: F16 by F16C, BF16 by a shift into the high half (both exact; kernels/widen_rows.h) */
#define WR_W 8
#define WR_F16(h, o) _mm256_storeu_ps(o, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h))))
#define WR_BF16(h, o) \
    _mm256_storeu_si256((__m256i *)(o), _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(h))), 16))
#define WR_NAME spill_widen_rows_avx2
#include "widen_rows.h"

const spill_dot_table spill_dot_avx2 = {dot_f32,  dot_f16,  dot_bf16, dot_q8_0,
                                        dot_q4_0, dot_q4_1, dot_q4_k, dot_q6_k, spill_dots_rows_avx2, NULL, act_avx2};
