/* Inside kernels/: what the AVX2 files (dot_avx2.c, dots_avx2.c) share. Include only from files
 * compiled with AVX2, FMA and F16C enabled (CMakeLists.txt). */
#ifndef SPILL_KERNELS_DOT_AVX2_H
#define SPILL_KERNELS_DOT_AVX2_H

#include "dot.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

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

/* K-quants against Q8_K (kernels/kquant.c): one row against nt <= SPILL_DOTS_TILE tokens (nt = 1: the
 * dot, dot_avx2.c; 4: the tile, dots_avx2.c). A super-block's scales are unpacked once for the tokens,
 * its values 64 at a time (Q4_K's nibbles, Q6_K's 6-bit values, which maddubs takes as unsigned), and
 * every token's products summed exactly in int32 (|maddubs pair| <= 2 * 63 * 127: no saturation; madd
 * applies the scales), its minimum (Q4_K) or offset (Q6_K) term too, from the activations' 16-value
 * sums with one madd, then kernels/dot.h's float steps: the results equal the portable dots. The
 * integers are exact whatever order they are added in; the scalar loops over the scales and sums that
 * the portable dot has took as long as the vector work (one thread, Q4_K 1536 x 1536 in cache: 15 GMAC/s
 * at one token, 22 at 32, before they were vectorized). */

/* both of a token's sums: s's 8 lanes and m's, each added up */
static inline void hsum2_i32(__m256i s, __m256i m, int32_t *si, int32_t *mi) {
    __m256i h = _mm256_hadd_epi32(s, m); /* s01 s23 m01 m23 | s45 s67 m45 m67 */
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    q = _mm_hadd_epi32(q, q); /* s, m, s, m */
    *si = _mm_cvtsi128_si32(q);
    *mi = _mm_extract_epi32(q, 1);
}

/* 16-bit value j of v (8 values, the same in both halves) in all 16 lanes */
static inline __m256i pick16(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j))));
}

static inline void kq_q4_k(int64_t n, const spill_block_q4_k *x, const uint8_t *act, uint64_t stride, int nt, float *out,
                           int64_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    float acc[SPILL_DOTS_TILE] = {0};
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        spill_prefetch_block(x + i, sizeof *x);
        /* kernels/dot.h's spill_q4_k_scales four bytes at a time: a, b, c the 12 bytes of scales */
        uint32_t a, b, c;
        memcpy(&a, x[i].scales, 4), memcpy(&b, x[i].scales + 4, 4), memcpy(&c, x[i].scales + 8, 4);
        uint64_t scb = (a & 0x3f3f3f3fu) | (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
        uint64_t mnb = (b & 0x3f3f3f3fu) | (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
        __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scb)));
        __m128i mnv = _mm_cvtsi64_si128((long long)mnb);
        __m256i mn2 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mnv, mnv)); /* mn_j in lanes 2j, 2j + 1 */
        __m256i sumv[SPILL_DOTS_TILE];
        for (int t = 0; t < nt; t++) sumv[t] = _mm256_setzero_si256();
        for (int p = 0; p < 4; p++) { /* 64 values: sub-block 2p in the low nibbles, 2p + 1 in the high */
            __m256i qb = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * p));
            __m256i ql = _mm256_and_si256(qb, m4), qh = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
            __m256i sl = pick16(sc16, 2 * p), sh = pick16(sc16, 2 * p + 1);
            for (int t = 0; t < nt; t++) {
                const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
                __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)(y->qs + 64 * p))), sl);
                __m256i hi = _mm256_madd_epi16(_mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(y->qs + 64 * p + 32))), sh);
                sumv[t] = _mm256_add_epi32(sumv[t], _mm256_add_epi32(lo, hi));
            }
        }
        float dx = spill_fp16_to_fp32(x[i].d), mx = spill_fp16_to_fp32(x[i].dmin);
        for (int t = 0; t < nt; t++) {
            const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
            int32_t sumi, summ;
            hsum2_i32(sumv[t], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mn2), &sumi, &summ);
            acc[t] = spill_q4_k_end(acc[t], dx, mx, y->d, sumi, summ);
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
        __m128i sc8 = _mm_loadu_si128((const __m128i *)sc);
        __m256i sc16 = _mm256_cvtepi8_epi16(sc8); /* for the offset: scale g in lane g */
        __m256i sumv[SPILL_DOTS_TILE];
        for (int t = 0; t < nt; t++) sumv[t] = _mm256_setzero_si256();
        /* quarter k of half h: values 0-15 have scale 8h + 2k, 16-31 the next */
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = x[i].ql + 64 * half, *qh = x[i].qh + 32 * half;
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m2));
            q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m2));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m2));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m2));
            for (int k = 0; k < 4; k++) {
                int g = 8 * half + 2 * k; /* scale g in the low 8 lanes, g + 1 in the high 8 */
                __m256i s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, _mm_set_epi64x(0x0101010101010101LL * (g + 1),
                                                                                    0x0101010101010101LL * g)));
                for (int t = 0; t < nt; t++) {
                    const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
                    sumv[t] = _mm256_add_epi32(sumv[t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], _mm256_loadu_si256(
                                                                                 (const __m256i *)(y->qs + 128 * half + 32 * k))), s));
                }
            }
        }
        float dx = spill_fp16_to_fp32(x[i].d);
        for (int t = 0; t < nt; t++) {
            const spill_block_q8_k *y = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
            int32_t sumi, offset;
            hsum2_i32(sumv[t], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), sc16), &sumi, &offset);
            acc[t] = spill_q6_k_end(acc[t], dx, y->d, sumi, offset);
        }
    }
    for (int t = 0; t < nt; t++) out[(int64_t)t * ldo] = acc[t];
}

#endif
