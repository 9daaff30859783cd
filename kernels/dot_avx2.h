/* Inside kernels/: what the AVX2 files (dot_avx2.c, dots_avx2.c) share. Include only from files
 * compiled with AVX2, FMA and F16C enabled (CMakeLists.txt). */
#ifndef SPILL_KERNELS_DOT_AVX2_H
#define SPILL_KERNELS_DOT_AVX2_H

#include "dot.h"

#include <immintrin.h>
#include <math.h>

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline float hsum(__m256 v) {
    float a[8];
    _mm256_storeu_ps(a, v);
    return spill_hsum8(a);
}

/* 16 BF16 values from p as the two sets of 8 floats kernels/dot.h's BF16 lanes take: odd has value
 * 2l + 1 in lane l, even value 2l (both exact: a BF16 value is an F32's high half) */
static inline void bf16_pairs(const uint16_t *p, __m256 *odd, __m256 *even) {
    __m256i v = _mm256_loadu_si256((const __m256i *)p);
    *odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32((int)0xffff0000u)));
    *even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 32 unsigned nibbles of a 4-bit block, value j in byte j */
static inline __m256i nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* K-quants against Q8_K (kernels/kquant.c): one row against nt <= SPILL_DOTS_TILE tokens (nt = 1: the
 * dot, dot_avx2.c; 4: the tile, dots_avx2.c). A super-block is unpacked once - 8 vectors of 32 values
 * (Q4_K's nibbles, Q6_K's 6-bit values, which maddubs takes as unsigned) and each 32's scales - and
 * every token's products summed exactly in int32 (|maddubs pair| <= 2 * 63 * 127: no saturation; madd
 * applies the scales), then the float steps of kernels/dot.h, so the results equal the portable dots. */
static inline void kq_q4_k(int64_t n, const spill_block_q4_k *x, const uint8_t *act, uint64_t stride, int nt, float *out,
                           int64_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    float acc[SPILL_DOTS_TILE] = {0};
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        spill_prefetch_block(x + i, sizeof *x);
        int sc[8], mn[8];
        spill_q4_k_scales(x[i].scales, sc, mn);
        __m256i q[8], s16[8]; /* sub-block j: two sub-blocks share 32 bytes, low nibbles then high */
        for (int p = 0; p < 4; p++) {
            __m256i qb = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * p));
            q[2 * p] = _mm256_and_si256(qb, m4);
            q[2 * p + 1] = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
        }
        for (int j = 0; j < 8; j++) s16[j] = _mm256_set1_epi16((short)sc[j]);
        float dx = spill_fp16_to_fp32(x[i].d), mx = spill_fp16_to_fp32(x[i].dmin);
        for (int t = 0; t < nt; t++) {
            const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
            __m256i sumv = _mm256_setzero_si256();
            for (int j = 0; j < 8; j++)
                sumv = _mm256_add_epi32(
                    sumv, _mm256_madd_epi16(_mm256_maddubs_epi16(q[j], _mm256_loadu_si256((const __m256i *)(y->qs + 32 * j))), s16[j]));
            acc[t] = spill_q4_k_block(acc[t], dx, mx, y, hsum_i32(sumv), mn);
        }
    }
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = acc[t];
}

static inline void kq_q6_k(int64_t n, const spill_block_q6_k *x, const uint8_t *act, uint64_t stride, int nt, float *out,
                           int64_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(0x30);
    float acc[SPILL_DOTS_TILE] = {0};
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        spill_prefetch_block(x + i, sizeof *x);
        const int8_t *sc = x[i].scales;
        __m256i q[8], s16[8]; /* quarter k of half h: q[4h + k]; its values 0-15 have scale 8h + 2k, 16-31 the next */
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = x[i].ql + 64 * half, *qh = x[i].qh + 32 * half;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            q[4 * half] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m2));
            q[4 * half + 1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m2));
            q[4 * half + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m2));
            q[4 * half + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                              _mm256_and_si256(_mm256_srli_epi16(h, 2), m2));
        }
        for (int k = 0; k < 8; k++) s16[k] = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
        float dx = spill_fp16_to_fp32(x[i].d);
        for (int t = 0; t < nt; t++) {
            const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
            __m256i sumv = _mm256_setzero_si256();
            for (int k = 0; k < 8; k++)
                sumv = _mm256_add_epi32(
                    sumv, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)(y->qs + 32 * k))), s16[k]));
            acc[t] = spill_q6_k_block(acc[t], dx, y, hsum_i32(sumv), sc);
        }
    }
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = acc[t];
}

#endif
