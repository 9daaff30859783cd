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
/* the same nibbles with the 16 bytes loaded into both halves at once and the upper half shifted by 4 (a
   byte's high nibble comes down; what the next byte brings in is masked off): one instruction fewer.
   The rows kernels take it (one thread, 1536 x 1536 in cache: Q4_0 22 -> 25, Q4_1 23 -> 24.5 GMAC/s); in
   the 4-token tiles it measured 5% slower for Q4_1 (33.2 -> 31.6), so they keep nibbles(). */
static inline __m256i nibbles_bcast(const uint8_t *qs) {
    __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    both = _mm256_srlv_epi64(both, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* K-quants against Q8_K (kernels/kquant.c): R rows against TT tokens (kq_q4_k, kq_q6_k below: the dot,
 * a row against the tile's 4 tokens, 4 rows against one token). A super-block's scales are unpacked once
 * for the tokens, its values 32 at a time (Q4_K's nibbles, Q6_K's 6-bit values, which maddubs takes as
 * unsigned), and every token's products summed exactly in int32 (|maddubs pair| <= 2 * 63 * 128: no
 * saturation; madd applies the scales), its minimum (Q4_K) or offset (Q6_K) term too, from the
 * activations' 16-value sums with one madd, then kernels/dot.h's float steps: the results equal the
 * portable dots. The
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

/* 4 lanes' two sums each (a row against 4 tokens, or 4 rows against a token) reduced at once: s[k]'s 8
   lanes added up in lane k, m[k]'s in lane 4 + k */
static inline __m256i hsum4x2_i32(const __m256i s[4], const __m256i m[4]) {
    __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3])); /* s_t's halves: lanes t, 4 + t */
    __m256i b = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20), _mm256_permute2x128_si256(a, b, 0x31));
}

/* v where it is: the sums below are added in the order written. Integer sums may be reassociated, and
   GCC did (-O3): it made every product of a super-block first and added them up in a tree at the end,
   spilling most of them to the stack (one thread, Q4_K, a row against 4 tokens: 38 GMAC/s against 55-57
   in order, docs/results.md) */
static inline __m256i in_order(__m256i v) {
    __asm__("" : "+x"(v));
    return v;
}

/* 32 values of each of R rows (unsigned, q[r], with their 16-bit scales sc[r]) against the 32 values at
   off of each of TT tokens' Q8_K blocks: lane r * TT + t of sumv gains the scaled products, in order */
static inline __attribute__((always_inline)) void kq_mac(int R, int TT, const __m256i *q, const __m256i *sc,
                                                         const spill_block_q8_k *const *y, int off, __m256i *sumv) {
    _Pragma("GCC unroll 4")
    for (int t = 0; t < TT; t++) {
        __m256i yv = _mm256_loadu_si256((const __m256i *)(y[t]->qs + off));
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++)
            sumv[r * TT + t] = in_order(_mm256_add_epi32(sumv[r * TT + t], _mm256_madd_epi16(_mm256_maddubs_epi16(q[r], yv), sc[r])));
    }
}

/* 16-bit value j of v (8 values, the same in both halves) in all 16 lanes */
static inline __m256i pick16(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(((2 * j + 1) << 8) | (2 * j))));
}

/* the float steps of 4 lanes at once, given each lane's two exact sums (s[k], m[k]): lane k of acc gets
 * spill_q4_k_end (q6 = 0: s is sumi, m summ) or spill_q6_k_end (q6 = 1: s - 32 * m) of dx[k], mx[k],
 * yd[k]: the same products, the same fused steps, so the same bits as each lane ending alone */
static inline __attribute__((always_inline)) __m128 kq_end4(int q6, const __m256i *s, const __m256i *m, const float *dx,
                                                          const float *mx, const float *yd, __m128 acc) {
    __m256i r = hsum4x2_i32(s, m);
    __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
    __m128 y = _mm_loadu_ps(yd), d = _mm_mul_ps(_mm_loadu_ps(dx), y);
    if (q6) return _mm_fmadd_ps(d, _mm_cvtepi32_ps(_mm_sub_epi32(lo, _mm_slli_epi32(hi, 5))), acc);
    acc = _mm_fmadd_ps(d, _mm_cvtepi32_ps(lo), acc);
    return _mm_fmadd_ps(_mm_xor_ps(_mm_mul_ps(_mm_loadu_ps(mx), y), _mm_set1_ps(-0.0f)), _mm_cvtepi32_ps(hi), acc);
}

/* the results of R x TT lanes (kq_end4's, or a lone lane's acc1) into out[t * ldo + r] */
static inline __attribute__((always_inline)) void kq_out(int R, int TT, __m128 acc, float acc1, float *out, int64_t ldo) {
    if (R * TT == 1) {
        out[0] = acc1;
        return;
    }
    float o[4];
    _mm_storeu_ps(o, acc);
    _Pragma("GCC unroll 4")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TT; t++) out[(int64_t)t * ldo + r] = o[r * TT + t];
}

/* R rows (rb bytes apart) of a K-quant against TT tokens of Q8_K (stride bytes apart) into out[t * ldo + r],
 * R x TT = 1 (the dot), or 4: a row and 4 tokens (the tile, kernels/dots_avx2.c), 4 rows and a token (its
 * rows). A row's values are unpacked once for the TT tokens and a token's loaded once for the R rows; the
 * 4 lanes (k = r * TT + t) end together (kq_end4), a lone one as spill_q4_k_end / spill_q6_k_end. Two rows
 * and 4 tokens measured no faster than one: the multiplies, two per 32 values and lane, bound both. */
static inline __attribute__((always_inline)) void kq_q4_k(int R, int TT, int64_t n, const uint8_t *row, uint64_t rb,
                                                        const uint8_t *act, uint64_t stride, float *out, int64_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0xF);
    const int L = R * TT; /* 1 or 4 */
    __m128 acc = _mm_setzero_ps();
    float acc1 = 0;
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        const spill_block_q4_k *x[4];
        spill_rows_prefetch_blocks(row, rb, R, (uint64_t)i * sizeof **x, sizeof **x, 0); /* as one stream (kernels/dot.h) */
        const spill_block_q8_k *y[4];
        __m256i sc16[4], mn2[4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            x[r] = (const spill_block_q4_k *)(row + (uint64_t)r * rb) + i;
            /* kernels/dot.h's spill_q4_k_scales four bytes at a time: a, b, c the 12 bytes of scales */
            uint32_t a, b, c;
            memcpy(&a, x[r]->scales, 4), memcpy(&b, x[r]->scales + 4, 4), memcpy(&c, x[r]->scales + 8, 4);
            uint64_t scb = (a & 0x3f3f3f3fu) | (uint64_t)((c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u)) << 32;
            uint64_t mnb = (b & 0x3f3f3f3fu) | (uint64_t)(((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u)) << 32;
            sc16[r] = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scb)));
            __m128i mnv = _mm_cvtsi64_si128((long long)mnb);
            mn2[r] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mnv, mnv)); /* mn_j in lanes 2j, 2j + 1 */
        }
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TT; t++) y[t] = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
        __m256i sumv[4];
        _Pragma("GCC unroll 4")
        for (int k = 0; k < L; k++) sumv[k] = _mm256_setzero_si256();
        _Pragma("GCC unroll 4")
        for (int p = 0; p < 4; p++) /* 64 values: sub-block 2p in the low nibbles, 2p + 1 in the high */
            _Pragma("GCC unroll 4")
            for (int h = 0; h < 2; h++) {
                __m256i q[4], sc[4];
                _Pragma("GCC unroll 4")
                for (int r = 0; r < R; r++) {
                    __m256i qb = _mm256_loadu_si256((const __m256i *)(x[r]->qs + 32 * p));
                    q[r] = _mm256_and_si256(h ? _mm256_srli_epi16(qb, 4) : qb, m4);
                    sc[r] = pick16(sc16[r], 2 * p + h);
                }
                kq_mac(R, TT, q, sc, y, 64 * p + 32 * h, sumv);
            }
        if (L == 1) {
            int32_t sumi, summ;
            hsum2_i32(sumv[0], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[0]->bsums), mn2[0]), &sumi, &summ);
            acc1 = spill_q4_k_end(acc1, h2f(x[0]->d), h2f(x[0]->dmin), y[0]->d, sumi, summ);
            continue;
        }
        __m256i mv[4];
        float dx[4], mx[4], yd[4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            float d = h2f(x[r]->d), dm = h2f(x[r]->dmin);
            _Pragma("GCC unroll 4")
            for (int t = 0; t < TT; t++) {
                mv[r * TT + t] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[t]->bsums), mn2[r]);
                dx[r * TT + t] = d, mx[r * TT + t] = dm, yd[r * TT + t] = y[t]->d;
            }
        }
        acc = kq_end4(0, sumv, mv, dx, mx, yd, acc);
    }
    kq_out(R, TT, acc, acc1, out, ldo);
}

static inline __attribute__((always_inline)) void kq_q6_k(int R, int TT, int64_t n, const uint8_t *row, uint64_t rb,
                                                        const uint8_t *act, uint64_t stride, float *out, int64_t ldo) {
    const __m256i m4 = _mm256_set1_epi8(0xF), m2 = _mm256_set1_epi8(0x30);
    const int L = R * TT; /* 1 or 4 */
    __m128 acc = _mm_setzero_ps();
    float acc1 = 0;
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        const spill_block_q6_k *x[4];
        spill_rows_prefetch_blocks(row, rb, R, (uint64_t)i * sizeof **x, sizeof **x, 0); /* as one stream (kernels/dot.h) */
        const spill_block_q8_k *y[4];
        __m128i sc8[4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            x[r] = (const spill_block_q6_k *)(row + (uint64_t)r * rb) + i;
            sc8[r] = _mm_loadu_si128((const __m128i *)x[r]->scales);
        }
        _Pragma("GCC unroll 4")
        for (int t = 0; t < TT; t++) y[t] = (const spill_block_q8_k *)(act + (uint64_t)t * stride) + i;
        __m256i sumv[4];
        _Pragma("GCC unroll 4")
        for (int k = 0; k < L; k++) sumv[k] = _mm256_setzero_si256();
        /* quarter k of half h: values 0-15 have scale 8h + 2k, 16-31 the next; a quarter's 6-bit values are
           4 bits of ql (the low or high nibbles of its first or second 32 bytes) and 2 of qh */
        _Pragma("GCC unroll 4")
        for (int half = 0; half < 2; half++)
            _Pragma("GCC unroll 4")
            for (int k = 0; k < 4; k++) {
                int g = 8 * half + 2 * k;
                __m256i q[4], sc[4];
                _Pragma("GCC unroll 4")
                for (int r = 0; r < R; r++) {
                    __m256i l = _mm256_loadu_si256((const __m256i *)(x[r]->ql + 64 * half + 32 * (k & 1)));
                    __m256i hb = _mm256_loadu_si256((const __m256i *)(x[r]->qh + 32 * half));
                    l = k & 2 ? _mm256_srli_epi16(l, 4) : l;
                    hb = k == 0 ? _mm256_slli_epi16(hb, 4) : k == 1 ? _mm256_slli_epi16(hb, 2) : k == 3 ? _mm256_srli_epi16(hb, 2) : hb;
                    q[r] = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(hb, m2));
                    sc[r] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8[r], _mm_set_epi64x(0x0101010101010101LL * (g + 1),
                                                                                       0x0101010101010101LL * g)));
                }
                kq_mac(R, TT, q, sc, y, 128 * half + 32 * k, sumv);
            }
        /* the offset: scale g times the activations' 16-value sum g */
        if (L == 1) {
            int32_t sumi, offset;
            hsum2_i32(sumv[0], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[0]->bsums), _mm256_cvtepi8_epi16(sc8[0])),
                      &sumi, &offset);
            acc1 = spill_q6_k_end(acc1, h2f(x[0]->d), y[0]->d, sumi, offset);
            continue;
        }
        __m256i ov[4];
        float dx[4], yd[4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < R; r++) {
            __m256i sc16 = _mm256_cvtepi8_epi16(sc8[r]);
            float d = h2f(x[r]->d);
            _Pragma("GCC unroll 4")
            for (int t = 0; t < TT; t++) {
                ov[r * TT + t] = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[t]->bsums), sc16);
                dx[r * TT + t] = d, yd[r * TT + t] = y[t]->d;
            }
        }
        acc = kq_end4(1, sumv, ov, dx, dx, yd, acc);
    }
    kq_out(R, TT, acc, acc1, out, ldo);
}

/* kq_q4_k or kq_q6_k, as w is */
static inline __attribute__((always_inline)) void kq_rows(spill_dtype w, int R, int TT, int64_t n, const uint8_t *row, uint64_t rb,
                                                        const uint8_t *act, uint64_t stride, float *out, int64_t ldo) {
    if (w == SPILL_DT_Q4_K) kq_q4_k(R, TT, n, row, rb, act, stride, out, ldo);
    else kq_q6_k(R, TT, n, row, rb, act, stride, out, ldo);
}

#endif
