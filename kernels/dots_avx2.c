/* The AVX2 tiles of kernels/dots.c: weight rows against 4 tokens (Q4_K, Q6_K one row at a time; Q8_0, Q4_0,
 * Q4_1, BF16 two, F32, F16 three, each token's activations loaded once for the rows), and several rows against
 * one token; each result bit-identical to the one-token dot. Compiled with AVX2, FMA and F16C enabled whatever
 * the build machine; kernels/dots.c calls it only when kernels/cpu.c chose AVX2 for this CPU. */
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

/* v stays in a register: the compiler would otherwise fold its load into every instruction that uses it,
   and the loads, not the multiply-adds, would bound the loop */
#define KEEP(v) __asm__("" : "+x"(v))

/* sc, in every function below: the activations' block scales as floats, 4 tokens side by side:
 * sc[(tile * nb + i) * 8 + t] is token t's d in block i, [.. + 4 + t] its s (Q8_1). Converted once per
 * matmul (spill_dots_prepare_avx2), not once per row. */

/* 8 * (the sum of each pair of activations), 16 lanes: what Q4_0's unsigned nibbles subtract from
   maddubs's pair sums; exact (|15 * 127 * 2| + |8 * 127 * 2| fits 16 bits) */
static inline __m256i pairs8(__m256i y) { return _mm256_maddubs_epi16(_mm256_set1_epi8(8), y); }
/* the same summed over each lane's 4 activations, 8 lanes of 32 bits */
static inline __m256i sums8(__m256i y) { return _mm256_madd_epi16(pairs8(y), _mm256_set1_epi16(1)); }

/* the 8 sums spill_hsum8 makes of acc[0..7] (kernels/dot.h: the same additions in the same order, so the
 * same bits), 8 accumulators at once: acc[k]'s sum lands in lane k / 2 + 4 * (k % 2). With two rows of 4
 * tokens as acc[2 * t + r], lane 4 * r + t. Storing each accumulator and adding its lanes one by one cost
 * about as much as a 576-wide row's whole tile of 4 tokens did in multiply-adds. */
static inline __m256 hsum8x8(const __m256 acc[8]) {
    __m256 p[4], q[2];
    for (int m = 0; m < 4; m++) /* lane j, j + 4 of each: [acc[2m]'s 4 sums | acc[2m + 1]'s] */
        p[m] = _mm256_add_ps(_mm256_permute2f128_ps(acc[2 * m], acc[2 * m + 1], 0x20),
                             _mm256_permute2f128_ps(acc[2 * m], acc[2 * m + 1], 0x31));
    for (int m = 0; m < 2; m++) /* (r0 + r2), (r1 + r3) of each */
        q[m] = _mm256_add_ps(_mm256_shuffle_ps(p[2 * m], p[2 * m + 1], 0x44), _mm256_shuffle_ps(p[2 * m], p[2 * m + 1], 0xEE));
    return _mm256_add_ps(_mm256_shuffle_ps(q[0], q[1], 0x88), _mm256_shuffle_ps(q[0], q[1], 0xDD));
}

/* acc[2 * t + r] (R = 2) or acc[t] (R = 1), plus add[4 * r + t] when add is given (Q4_1's min term), to
   out[t * ldo + r] */
static inline __attribute__((always_inline)) void tile_store(int R, const __m256 *acc, const float *add, float *out,
                                                             int64_t ldo) {
    if (R == 2) {
        __m256 s = hsum8x8(acc);
        if (add) s = _mm256_add_ps(s, _mm256_loadu_ps(add));
        float o[8];
        _mm256_storeu_ps(o, s);
        for (int r = 0; r < 2; r++)
            for (int t = 0; t < T; t++) out[(int64_t)t * ldo + r] = o[4 * r + t];
        return;
    }
    for (int t = 0; t < T; t++) out[(int64_t)t * ldo] = add ? hsum(acc[t]) + add[t] : hsum(acc[t]);
}

/* sums[4 * r + t] = spill_hsum8(acc[r][t]) for R (1, 2 or 3) rows of the 4 tokens */
static inline __attribute__((always_inline)) void sums_of(int R, __m256 acc[3][T], float sums[12]) {
    if (R >= 2) {
        __m256 a[8];
        for (int t = 0; t < T; t++) a[2 * t] = acc[0][t], a[2 * t + 1] = acc[1][t];
        _mm256_storeu_ps(sums, hsum8x8(a));
    }
    for (int r = R >= 2 ? 2 : 0; r < R; r++)
        for (int t = 0; t < T; t++) sums[4 * r + t] = hsum(acc[r][t]);
}

/* Q8_0 and Q4_0 weights against Q8_0 activations, R rows (1 or 2) against the 4 tokens: each token's
 * block loaded once for the R rows. Q8_0: the weight's magnitudes against the
 * activations with the weight's signs (maddubs takes unsigned x signed). Q4_0: the unsigned nibbles q
 * against the activations, less 8 * (y + y') per pair of 16-bit lanes, which spill_dots_prepare_avx2
 * made once per matmul (sc past the scales), then the pairs summed: the same exact integers as
 * (q - 8) * y, in fewer instructions (subtracting in 16 bits before the pairs are summed saves
 * widening prepared 32-bit sums for every token). */
static inline __attribute__((always_inline)) void dots_signed(int q4, int R, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                              const uint8_t *act, uint64_t stride, const float *sc,
                                                              float *out, int64_t ldo) {
    __m256 acc[2 * T];
    const spill_block_q8_0 *y[T];
    for (int k = 0; k < R * T; k++) acc[k] = _mm256_setzero_ps();
    for (int t = 0; t < T; t++) y[t] = (const spill_block_q8_0 *)(act + (uint64_t)t * stride);
    const int64_t nb = n / SPILL_QK;
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i *ypairs8 = (const __m256i *)(sc + nb * 8); /* [block][token]: 16 lanes */
    for (int64_t i = 0; i < nb; i++) {
        __m256i qx[2];
        float d[2][4];
        for (int r = 0; r < R; r++) {
            const spill_block_q8_0 *x8 = (const spill_block_q8_0 *)(wrow + r * rb) + i;
            const spill_block_q4_0 *x4 = (const spill_block_q4_0 *)(wrow + r * rb) + i;
            const void *xb = q4 ? (const void *)x4 : (const void *)x8;
            _mm_prefetch((const char *)xb + PREFETCH_AHEAD, _MM_HINT_T0);
            _mm_storeu_ps(d[r], _mm_mul_ps(_mm_set1_ps(h2f(q4 ? x4->d : x8->d)), _mm_loadu_ps(sc + i * 8)));
            qx[r] = q4 ? nibbles(x4->qs) : _mm256_loadu_si256((const __m256i *)x8->qs);
        }
        for (int t = 0; t < T; t++) {
            __m256i yq = _mm256_loadu_si256((const __m256i *)y[t][i].qs);
            __m256i yp = q4 ? _mm256_loadu_si256(ypairs8 + i * T + t) : _mm256_setzero_si256();
            for (int r = 0; r < R; r++) {
                __m256 l;
                if (q4)
                    l = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(qx[r], yq), yp), ones));
                else
                    l = lanes_us(_mm256_sign_epi8(qx[r], qx[r]), _mm256_sign_epi8(yq, qx[r]));
                __m256 *a = &acc[R == 2 ? 2 * t + r : t];
                *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[r][t]), l, *a);
            }
        }
    }
    tile_store(R, acc, NULL, out, ldo);
}

static inline __attribute__((always_inline)) void dots_q4_1(int R, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                            const uint8_t *act, uint64_t stride, const float *sc,
                                                            float *out, int64_t ldo) {
    __m256 acc[2 * T];
    __m128 summs[2] = {_mm_setzero_ps(), _mm_setzero_ps()}; /* lane t: token t's sum of m * s, each step a fused multiply-add */
    const spill_block_q8_1 *y[T];
    for (int k = 0; k < R * T; k++) acc[k] = _mm256_setzero_ps();
    for (int t = 0; t < T; t++) y[t] = (const spill_block_q8_1 *)(act + (uint64_t)t * stride);
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        __m256i qx[2];
        float d[2][4];
        for (int r = 0; r < R; r++) {
            const spill_block_q4_1 *x = (const spill_block_q4_1 *)(wrow + r * rb) + i;
            _mm_prefetch((const char *)x + PREFETCH_AHEAD, _MM_HINT_T0);
            qx[r] = nibbles(x->qs);
            summs[r] = _mm_fmadd_ps(_mm_set1_ps(h2f(x->m)), _mm_loadu_ps(sc + i * 8 + 4), summs[r]);
            _mm_storeu_ps(d[r], _mm_mul_ps(_mm_set1_ps(h2f(x->d)), _mm_loadu_ps(sc + i * 8)));
        }
        for (int t = 0; t < T; t++) {
            __m256i yq = _mm256_loadu_si256((const __m256i *)y[t][i].qs);
            for (int r = 0; r < R; r++) {
                __m256 *a = &acc[R == 2 ? 2 * t + r : t];
                *a = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[r][t]), lanes_us(qx[r], yq), *a);
            }
        }
    }
    float sm[8];
    _mm_storeu_ps(sm, summs[0]);
    _mm_storeu_ps(sm + 4, summs[1]);
    tile_store(R, acc, sm, out, ldo);
}

/* F32, F16 and BF16 weights: 8 weights (BF16: 16) widened to floats once for the 4 tokens. Each token's
 * lanes get the one-token dot's fused multiply-adds in the same order (kernels/dot_avx2.c: dot_f32,
 * dot_f16, dot_bf16), then the same sum and the same scalar tail, so the result is the same bits. F32
 * weights meet F32 activations; F16 ones F16 activations, widened (exactly) once per matmul by
 * spill_dots_prepare_avx2 into sc; BF16 ones BF16 activations as they are, each 16 values split into
 * the odd and even ones of kernels/dot.h's pairs (dots_bf16). */
static inline __attribute__((always_inline)) __m256 wide8(spill_dtype w, const void *p, int64_t i) {
    if (w == SPILL_DT_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
    return _mm256_loadu_ps((const float *)p + i); /* BF16 takes dots_bf16 / rows_bf16 */
}
static inline __attribute__((always_inline)) float wide1(spill_dtype w, const void *p, int64_t i) {
    if (w == SPILL_DT_F16) return h2f(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}
static inline __attribute__((always_inline)) void dots_bf16(int R, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                            const uint8_t *act, uint64_t stride, float *out, int64_t ldo) {
    __m256 acc[3][T];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 xo[2], xe[2];
        for (int r = 0; r < R; r++) {
            if (i % 32 == 0) _mm_prefetch((const char *)wrow + r * rb + (size_t)i * 2 + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
            bf16_pairs((const uint16_t *)(wrow + r * rb) + i, &xo[r], &xe[r]);
        }
        for (int t = 0; t < T; t++) {
            __m256 yo, ye;
            bf16_pairs((const uint16_t *)(act + (uint64_t)t * stride) + i, &yo, &ye);
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(xe[r], ye, _mm256_fmadd_ps(xo[r], yo, acc[r][t]));
        }
    }
    float sums[12];
    sums_of(R, acc, sums);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float s = sums[4 * r + t];
            const uint16_t *x = (const uint16_t *)(wrow + r * rb), *y = (const uint16_t *)(act + (uint64_t)t * stride);
            for (int64_t k = i; k < n; k++) s = fmaf(spill_bf16_to_fp32(x[k]), spill_bf16_to_fp32(y[k]), s);
            out[(int64_t)t * ldo + r] = s;
        }
}

/* R rows (1, 2 or 3; BF16 1 or 2) against the 4 tokens: R * 4 independent chains of fused multiply-adds. With one row
 * the 4 chains, each waiting out the latency of the one before it, left the FMA units half idle;
 * more rows add chains and reuse each activation load. F16 and F32 take 3 (12 accumulators, 3 rows
 * and the activation: the 16 registers): one thread, 32 tokens, F16 rows 576 / 1536 wide, 37 / 34
 * GMAC/s with 2 rows, 40.5 / 40.5 with 3. BF16's rows take two registers each (odd and even values). */
static inline __attribute__((always_inline)) void dots_wide(spill_dtype w, int R, int64_t n, const uint8_t *wrow,
                                                            uint64_t rb, const uint8_t *act, uint64_t stride, float *out,
                                                            int64_t ldo) {
    if (w == SPILL_DT_BF16) { /* BF16 activations, lanes of pairs (kernels/dot.h) */
        dots_bf16(R, n, wrow, rb, act, stride, out, ldo);
        return;
    }
    const spill_dtype a = SPILL_DT_F32; /* the activations' type: F16 ones come widened (act = sc, stride n) */
    const size_t wbytes = w == SPILL_DT_F32 ? 4 : 2;
    __m256 acc[3][T];
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    const int64_t line = 64 / (int64_t)wbytes; /* values per cache line: one prefetch each */
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x[3];
        for (int r = 0; r < R; r++) {
            if (i % line == 0)
                _mm_prefetch((const char *)wrow + r * rb + (size_t)i * wbytes + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
            x[r] = wide8(w, wrow + r * rb, i);
        }
        for (int t = 0; t < T; t++) {
            __m256 y = wide8(a, act + (uint64_t)t * stride, i);
            KEEP(y); /* loaded once for the rows, not folded into each multiply-add */
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(x[r], y, acc[r][t]);
        }
    }
    float sums[12];
    sums_of(R, acc, sums);
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float s = sums[4 * r + t];
            for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, wrow + r * rb, k), wide1(a, act + (uint64_t)t * stride, k), s);
            out[(int64_t)t * ldo + r] = s;
        }
}

static inline __attribute__((always_inline)) void rows_bf16(int R, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                            const uint16_t *act, float *out) {
    __m256 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (i % 32 == 0) spill_rows_prefetch_blocks(wrow, rb, R, (uint64_t)i * 2, 64, 0); /* a 64-byte line of each row */
        __m256 yo, ye, xo, xe;
        bf16_pairs(act + i, &yo, &ye);
        for (int r = 0; r < R; r++) {
            bf16_pairs((const uint16_t *)(wrow + r * rb) + i, &xo, &xe);
            acc[r] = _mm256_fmadd_ps(xe, ye, _mm256_fmadd_ps(xo, yo, acc[r]));
        }
    }
    for (int r = 0; r < R; r++) {
        float s = hsum(acc[r]);
        const uint16_t *x = (const uint16_t *)(wrow + r * rb);
        for (int64_t k = i; k < n; k++) s = fmaf(spill_bf16_to_fp32(x[k]), spill_bf16_to_fp32(act[k]), s);
        out[r] = s;
    }
}

/* R rows against one token (F32, F16, BF16; F16 weights meet F16 activations as the one-token dot's
 * do): R chains instead of one. A single row's chain did one fused multiply-add per 8 values and
 * waited for it, so a 16-bit decode ran at about 5 GMAC/s, below what memory delivers. Each row's
 * chain is the one-token dot's, so the results are its bits. Prefetched once per 64-byte line. */
static inline __attribute__((always_inline)) void rows_wide(spill_dtype w, int R, int64_t n, const uint8_t *wrow,
                                                            uint64_t rb, const void *act, float *out) {
    if (w == SPILL_DT_BF16) { /* BF16 activations, lanes of pairs (kernels/dot.h) */
        rows_bf16(R, n, wrow, rb, act, out);
        return;
    }
    const spill_dtype a = w == SPILL_DT_F16 ? SPILL_DT_F16 : SPILL_DT_F32;
    const size_t wbytes = w == SPILL_DT_F32 ? 4 : 2;
    const int64_t line = 64 / (int64_t)wbytes; /* values per cache line */
    __m256 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + line <= n; i += line) {
        spill_rows_prefetch_blocks(wrow, rb, R, (uint64_t)i * wbytes, 64, 0);
        for (int64_t k = i; k < i + line; k += 8) {
            __m256 y = wide8(a, act, k);
            for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(wide8(w, wrow + r * rb, k), y, acc[r]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m256 y = wide8(a, act, i);
        for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(wide8(w, wrow + r * rb, i), y, acc[r]);
    }
    for (int r = 0; r < R; r++) {
        float s = hsum(acc[r]);
        for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, wrow + r * rb, k), wide1(a, act, k), s);
        out[r] = s;
    }
}

/* R rows of Q8_0, Q4_0 or Q4_1 against one token: the token's block is loaded and its scales converted
 * once for the R rows. Q4_0 rows skip the one-token dot's re-centring of each nibble (q - 8) and the
 * sign juggling maddubs needs for signed x signed: the lanes are taken as sum(q * y) - 8 * sum(y), with
 * sum(y) per lane made once per block for all R rows. Both are exact integers, the same ones, so every
 * row's result is the one-token dot's bits. Q4_1: the R rows' d and m (side by side in each block) are
 * converted in one instruction, the d's multiplied by the token's d in one (each product the one-token
 * dot's single rounding), and the R sums of m * s take one 8-lane fused multiply-add (the odd lanes);
 * one thread, 1536 x 1536 in cache, 19 -> 22-23 GMAC/s. Q8_0 and Q4_0 keep a row's own scalar step:
 * their d's gathered the same way measured 27 -> 23 GMAC/s for Q8_0 and no change for Q4_0, and the
 * same gathering in Q4_1's 4-token tile (dots_q4_1) no change: the pairs' multiplies bound it. */
static inline __attribute__((always_inline)) void rows_quant(spill_dtype w, int R, int64_t n, const uint8_t *wrow,
                                                             uint64_t rb, const void *act, float *out) {
    __m256 acc[4];
    __m256 summs = _mm256_setzero_ps(); /* Q4_1: lane 2r + 1 is row r's sum of m * s */
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const uint64_t bs = w == SPILL_DT_Q4_1 ? sizeof(spill_block_q4_1)
                        : w == SPILL_DT_Q4_0 ? sizeof(spill_block_q4_0)
                                             : sizeof(spill_block_q8_0);
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        spill_rows_prefetch_blocks(wrow, rb, R, (uint64_t)i * bs, bs, 1);
        if (w == SPILL_DT_Q4_1) {
            const spill_block_q8_1 *y = (const spill_block_q8_1 *)act + i;
            int32_t dms[4] = {0, 0, 0, 0}; /* row r's d and m */
            for (int r = 0; r < R; r++) {
                const spill_block_q4_1 *x = (const spill_block_q4_1 *)(wrow + r * rb) + i;
                memcpy(&dms[r], x, sizeof dms[r]);
            }
            _Static_assert(offsetof(spill_block_q4_1, m) == sizeof(uint16_t), "a Q4_1 block starts with d, then m");
            /* lane 2r: row r's d, lane 2r + 1 its m */
            const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32(dms[0], dms[1], dms[2], dms[3]));
            float d[8];
            _mm256_storeu_ps(d, _mm256_mul_ps(dm, _mm256_set1_ps(h2f(y->d))));
            summs = _mm256_fmadd_ps(dm, _mm256_set1_ps(h2f(y->s)), summs);
            __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
            for (int r = 0; r < R; r++) {
                const spill_block_q4_1 *x = (const spill_block_q4_1 *)(wrow + r * rb) + i;
                __m256 l = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(nibbles_bcast(x->qs), yq), ones));
                acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[2 * r]), l, acc[r]);
            }
        } else {
            const spill_block_q8_0 *y = (const spill_block_q8_0 *)act + i;
            __m256i yq = _mm256_loadu_si256((const __m256i *)y->qs);
            float dy = h2f(y->d);
            __m256i ysum8 = w == SPILL_DT_Q4_0 ? sums8(yq) : _mm256_setzero_si256();
            for (int r = 0; r < R; r++) {
                __m256i li;
                uint16_t xd;
                if (w == SPILL_DT_Q4_0) {
                    const spill_block_q4_0 *x = (const spill_block_q4_0 *)(wrow + r * rb) + i;
                    xd = x->d;
                    li = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(nibbles_bcast(x->qs), yq), ones), ysum8);
                } else {
                    const spill_block_q8_0 *x = (const spill_block_q8_0 *)(wrow + r * rb) + i;
                    xd = x->d;
                    __m256i qx = _mm256_loadu_si256((const __m256i *)x->qs);
                    li = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(yq, qx)), ones);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(xd) * dy), _mm256_cvtepi32_ps(li), acc[r]);
            }
        }
    }
    float sm[8];
    _mm256_storeu_ps(sm, summs);
    for (int r = 0; r < R; r++) out[r] = w == SPILL_DT_Q4_1 ? hsum(acc[r]) + sm[2 * r + 1] : hsum(acc[r]);
}

/* nr rows in groups of 4, then 2, then one (the kernel inlined for each group size): 2 rows left over
   go as a pair, not 1 + 1 (a row alone is one chain waiting on itself) */
#define ROWS_OF(kernel, w)                                                                        \
    do {                                                                                          \
        int r_ = 0;                                                                               \
        for (; r_ + 4 <= nr; r_ += 4) kernel(w, 4, n, wrow + (uint64_t)r_ * rb, rb, act, out + r_); \
        if (r_ + 2 <= nr) kernel(w, 2, n, wrow + (uint64_t)r_ * rb, rb, act, out + r_), r_ += 2;     \
        for (; r_ < nr; r_++) kernel(w, 1, n, wrow + (uint64_t)r_ * rb, rb, act, out + r_);          \
    } while (0)

/* 16-bit and F32 rows 6 at a time first (6 chains of fused multiply-adds, 6 rows' lines in flight, short
   rows prefetched as one stream: spill_rows_prefetch_blocks), then as ROWS_OF. 8 at a time, on a 2-vCPU Zen 3 VM
   (SmolLM2 decode, 2 threads, medians of 5 interleaved runs: F16 82.5 -> 89.3 tok/s, BF16 78.6 -> 91.8
   against 4 rows prefetched along each row; a stand-alone copy of the kernel there: 6 rows as one stream
   22.5-25.3 GB/s, 8 rows 19.0-25.0) ran slower than 4, 5 or 6 on a 2-vCPU Zen 4 VM (AVX2 only), 3
   interleaved rounds of 200 tokens: BF16 67-69 tok/s with 8, 95-97 with 6, 91-105 with 4; F16 75-78,
   94-96, 93-101 (docs/results.md, 2026-12-07) */
#define ROWS_OF6(kernel, w)                                                                              \
    do {                                                                                                 \
        int r6_ = nr / 6 * 6;                                                                            \
        for (int r_ = 0; r_ < r6_; r_ += 6) kernel(w, 6, n, wrow + (uint64_t)r_ * rb, rb, act, out + r_); \
        wrow += (uint64_t)r6_ * rb, out += r6_, nr -= r6_;                                               \
        ROWS_OF(kernel, w);                                                                              \
    } while (0)

int spill_dots_rows_avx2(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out) {
    const uint8_t *wrow = wrows;
    switch (w) {
    case SPILL_DT_F32: ROWS_OF6(rows_wide, SPILL_DT_F32); return 1;
    case SPILL_DT_F16: ROWS_OF6(rows_wide, SPILL_DT_F16); return 1;
    case SPILL_DT_BF16:
#if defined(SPILL_DOT_AVX512_BF16)
        if (spill_cpu_avx512_bf16()) { /* the tiles' instruction (kernels/dots_bf16.c): the same bits alone or batched */
            spill_rows_bf16_dpbf16(n, wrows, rb, nr, act, out);
            return 1;
        }
#endif
        ROWS_OF6(rows_wide, SPILL_DT_BF16);
        return 1;
    case SPILL_DT_Q8_0:
    case SPILL_DT_Q4_0:
    case SPILL_DT_Q4_1: {
        int r = 0;
#if defined(SPILL_DOT_AVX512_VNNI)
        if (spill_cpu_avx512_vnni()) r = spill_dots_quant_rows_vnni(w, n, wrows, rb, nr, act, out); /* 8 rows at a time */
#endif
        wrow += (uint64_t)r * rb, out += r, nr -= r;
        /* long rows 4 at a time too: with the stream ahead of the last row (kernels/dot.h), Q8_0 rows 8192
           wide 16.6-21.1 GB/s, one at a time 13.0-13.4 (a Zen 4 VM, docs/results.md, 2026-12-07) */
        if (w == SPILL_DT_Q8_0) ROWS_OF(rows_quant, SPILL_DT_Q8_0);
        else if (w == SPILL_DT_Q4_0) ROWS_OF(rows_quant, SPILL_DT_Q4_0);
        else ROWS_OF(rows_quant, SPILL_DT_Q4_1);
        return 1;
    }
    case SPILL_DT_Q4_K:
    case SPILL_DT_Q6_K: {
        int r = 0;
#if defined(SPILL_DOT_AVX512_VNNI)
        if (spill_cpu_avx512_vnni()) r = spill_dots_kquant_rows_vnni(w, n, wrows, rb, nr, act, out); /* 8 rows at a time */
#endif
        for (; r + 4 <= nr; r += 4) /* 4 rows at once: the token's values loaded once for them, one float step for 4 */
            kq_rows(w, 4, 1, n, wrow + (uint64_t)r * rb, rb, act, 0, out + r, 1);
        for (; r < nr; r++) kq_rows(w, 1, 1, n, wrow + (uint64_t)r * rb, rb, act, 0, out + r, 1);
        return 1;
    }
    default: return 0;
    }
}

void spill_dots_prepare_avx2(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
#if defined(SPILL_DOT_AVX512)
    if (spill_cpu_wide512(w)) {
#if defined(SPILL_DOT_AVX512_BF16)
        if (w == SPILL_DT_BF16) {
            spill_dots_prepare_bf16_avx512(n, act, stride, nt, sc);
            return;
        }
#endif
        spill_dots_prepare_wide_avx512(w, n, act, stride, nt, sc);
        return;
    }
#endif
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
#if defined(SPILL_DOT_AVX512_VNNI)
    const int vnni = w != SPILL_DT_Q4_1 && spill_cpu_avx512_vnni(); /* what kernels/dots_vnni.c takes */
#else
    const int vnni = 0;
#endif
    /* floats per tile: scales, then Q4_0's sums or (VNNI) Q8_0's values + 128, 32 bytes per block and token,
       and (VNNI) Q8_0's -128 * (the sum of each lane's 4 values), 8 lanes of 32 bits per block and token */
    const int64_t per = nb * (vnni && w == SPILL_DT_Q8_0 ? 8 + 16 * T : w == SPILL_DT_Q4_0 || vnni ? 8 + 8 * T : 8);
    /* and the tokens past the last whole tile in a partial one (spill_dots_scales_len counts it), which only
       the panels read (kernels/dots_vnni.c: they take tokens one or two at a time; the AVX2 panel below one) */
    for (int tile = 0; tile < (nt + T - 1) / T; tile++) {
        float *s = sc + (size_t)tile * (size_t)per;
        __m256i *ypairs8 = (__m256i *)(s + nb * 8); /* [block][token]: 32 bytes (loaded unaligned) */
        for (int t = 0; t < T && tile * T + t < nt; t++) {
            const uint8_t *a = (const uint8_t *)act + (uint64_t)(tile * T + t) * stride;
            for (int64_t i = 0; i < nb; i++) {
                if (w == SPILL_DT_Q4_1) {
                    const spill_block_q8_1 *b = (const spill_block_q8_1 *)a + i;
                    s[i * 8 + t] = h2f(b->d);
                    s[i * 8 + 4 + t] = h2f(b->s);
                } else {
                    const spill_block_q8_0 *b = (const spill_block_q8_0 *)a + i;
                    s[i * 8 + t] = h2f(b->d);
                    s[i * 8 + 4 + t] = 0;
                    __m256i y = _mm256_loadu_si256((const __m256i *)b->qs);
                    if (vnni && w == SPILL_DT_Q8_0) { /* y + 128: unsigned, as vpdpbusd takes it */
                        _mm256_storeu_si256(ypairs8 + i * T + t, _mm256_xor_si256(y, _mm256_set1_epi8((char)0x80)));
                        __m256i s1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), y), _mm256_set1_epi16(1));
                        _mm256_storeu_si256(ypairs8 + nb * T + i * T + t, _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), s1), 7));
                    }
                    else if (vnni) /* -8 * (the sum of each lane's 4 values), 8 lanes of 32 bits */
                        _mm256_storeu_si256(ypairs8 + i * T + t, _mm256_sub_epi32(_mm256_setzero_si256(), sums8(y)));
                    else if (w == SPILL_DT_Q4_0) /* 8 * (the sum of each pair of values), 16 lanes of 16 bits */
                        _mm256_storeu_si256(ypairs8 + i * T + t, pairs8(y));
                }
            }
        }
    }
}

/* nr rows of Q8_0, Q4_0 or Q4_1 against the 4 tokens: two rows at a time, then the odd one */
static inline __attribute__((always_inline)) void quant_rows(spill_dtype w, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                             int nr, const uint8_t *act, uint64_t stride, const float *sc,
                                                             float *out, int64_t ldo) {
    int r = 0;
    for (; r < nr; r += 2) {
        int R = nr - r >= 2 ? 2 : 1;
        const uint8_t *x = wrow + (uint64_t)r * rb;
        if (w == SPILL_DT_Q4_1) {
            if (R == 2) dots_q4_1(2, n, x, rb, act, stride, sc, out + r, ldo);
            else dots_q4_1(1, n, x, rb, act, stride, sc, out + r, ldo);
        } else if (R == 2) dots_signed(w == SPILL_DT_Q4_0, 2, n, x, rb, act, stride, sc, out + r, ldo);
        else dots_signed(w == SPILL_DT_Q4_0, 1, n, x, rb, act, stride, sc, out + r, ldo);
    }
}

#define TILE_WIDE(w, act, stride)                                                                                     \
    do {                                                                                                              \
        const uint8_t *a_ = (const uint8_t *)(act);                                                                   \
        int r_ = 0;                                                                                                   \
        for (; r_ + 3 <= nr && w != SPILL_DT_BF16; r_ += 3)                                                           \
            dots_wide(w, 3, n, wrow + (uint64_t)r_ * rb, rb, a_, stride, out + r_, ldo);                              \
        for (; r_ + 2 <= nr; r_ += 2) dots_wide(w, 2, n, wrow + (uint64_t)r_ * rb, rb, a_, stride, out + r_, ldo);    \
        for (; r_ < nr; r_++) dots_wide(w, 1, n, wrow + (uint64_t)r_ * rb, rb, a_, stride, out + r_, ldo);            \
    } while (0)

void spill_dots4_avx2(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                      const float *sc, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows;
#if defined(SPILL_DOT_AVX512)
    if (spill_cpu_wide512(w)) {
        spill_dots_wide_avx512(w, 1, n, wrows, rb, nr, sc, 0, out, ldo);
        return;
    }
#endif
#if defined(SPILL_DOT_AVX512_VNNI)
    if ((w == SPILL_DT_Q8_0 || w == SPILL_DT_Q4_0 || w == SPILL_DT_Q4_1) && spill_cpu_avx512_vnni()) {
        spill_dots_quant_vnni(w, 1, n, wrows, rb, nr, act, stride, sc, 0, out, ldo);
        return;
    }
#endif
    switch (w) {
    case SPILL_DT_F32: TILE_WIDE(SPILL_DT_F32, act, stride); return;
    case SPILL_DT_F16: TILE_WIDE(SPILL_DT_F16, (const uint8_t *)sc, sizeof(float) * (uint64_t)n); return;
    case SPILL_DT_BF16: TILE_WIDE(SPILL_DT_BF16, act, stride); return;
    case SPILL_DT_Q8_0: quant_rows(SPILL_DT_Q8_0, n, wrow, rb, nr, act, stride, sc, out, ldo); return;
    case SPILL_DT_Q4_0: quant_rows(SPILL_DT_Q4_0, n, wrow, rb, nr, act, stride, sc, out, ldo); return;
    case SPILL_DT_Q4_1: quant_rows(SPILL_DT_Q4_1, n, wrow, rb, nr, act, stride, sc, out, ldo); return;
    default: break;
    }
    /* K-quants: a row's super-blocks unpacked once for the 4 tokens (kernels/dot_avx2.h; two rows at a time
       measured the same: the multiplies, two per 32 values and token, bound it) */
    for (int r = 0; r < nr; r++) kq_rows(w, 1, T, n, wrow + (uint64_t)r * rb, rb, act, stride, out + r, ldo);
}

/* Q4_0 rows against 2 tiles of tokens or more: each row's nibbles unpacked once into Q8_0 blocks (the same
 * scale, values q - 8), which Q8_0's tile then meets 4 tokens at a time. Its lanes are the same exact
 * integers as Q4_0's tile's and its float steps the same, so the bits are Q4_0's one-token dot's. Q4_0's
 * own tile unpacks the nibbles and subtracts 8 * (y + y') for every 4 tokens: one thread, 32 tokens,
 * rows 576 / 1536 wide, 28.5 / 30 GMAC/s there against 33 / 35 here (docs/results.md). */
#define Q4_0_UNPACKED 2048 /* blocks: 4 rows of 16384 values, 69632 bytes on the stack */
int spill_dots_q4_0_unpacked_avx2(int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                                  int nt, const float *sc, size_t pt, float *out, int64_t ldo) {
    const int64_t nb = n / SPILL_QK;
    if (nt < 2 * T || (int64_t)nr * nb > Q4_0_UNPACKED) return 0;
    spill_block_q8_0 buf[Q4_0_UNPACKED];
    for (int r = 0; r < nr; r++) {
        const spill_block_q4_0 *x = (const spill_block_q4_0 *)((const uint8_t *)wrows + (uint64_t)r * rb);
        spill_block_q8_0 *o = buf + r * nb;
        for (int64_t i = 0; i < nb; i++) {
            _mm_prefetch((const char *)(x + i) + PREFETCH_AHEAD, _MM_HINT_T0);
            o[i].d = x[i].d;
            _mm256_storeu_si256((__m256i *)o[i].qs, _mm256_sub_epi8(nibbles(x[i].qs), _mm256_set1_epi8(8)));
        }
    }
    const uint8_t *wrow = (const uint8_t *)buf;
    const uint64_t rb8 = (uint64_t)nb * sizeof(spill_block_q8_0);
    int t = 0;
    for (; t + T <= nt; t += T) {
        const uint8_t *a = (const uint8_t *)act + (uint64_t)t * stride;
        const float *s = sc + (size_t)(t / T) * pt; /* Q4_0's prepared tile: its block scales, as Q8_0's */
        float *o = out + (int64_t)t * ldo;
        quant_rows(SPILL_DT_Q8_0, n, wrow, rb8, nr, a, stride, s, o, ldo);
    }
    return t;
}

/* ---- Rows in lanes: 16 rows of Q8_0, Q4_0 or Q4_1 against any number of prepared tokens ----
 *
 * The tiles above keep a (row, token)'s 8 lanes side by side: every block pays, for each row and token, a
 * scale product broadcast from memory, and each row's 4-bit values are unpacked again for every 4 tokens.
 * Here (as kernels/dots_vnni.c's panel does in 512-bit registers) a register holds one lane of 8 rows: lane
 * group l (values 4l..4l+3 of a block) of the 8 rows against one token, whose 4 bytes of the group come
 * broadcast. One scale product serves the 8 rows and 8 lane groups of a block, and a token's 8 lane
 * registers end in spill_hsum8's pairwise sum, done across registers. Every number is the one-token dot's:
 * the lane's exact integer sum of 4 products (maddubs, Q4_0's 8 * (y + y') subtracted from the pairs, madd),
 * converted, fused-multiply-added with the product dx * dy in block order; Q4_1's min term in its own chain
 * of fused multiply-adds, added after the sum.
 *
 * spill_dots_panel_pack_avx2 lays the rows out once per matmul and chunk of tokens, rows 0-7 then rows
 * 8-15 (each half's blocks one after another), per block: 8 x 32 bytes, lane group l's 4 bytes of each
 * row, as unsigned bytes (4-bit values as they are; Q8_0's magnitudes, then its values for their signs,
 * 8 x 32 more), then the 8 rows' d as floats, then (Q4_1) their m. A half of 8 rows meets one token at a
 * time: 8 lane registers, the scale product and Q4_1's sum of m * s take 10 of the 16. */
static inline size_t qpanel_w(spill_dtype w) { return w == SPILL_DT_Q8_0 ? 512 : 256; }
static inline size_t qpanel_block(spill_dtype w) { return qpanel_w(w) + 32 + (w == SPILL_DT_Q4_1 ? 32 : 0); }

size_t spill_dots_qpanel_bytes_avx2(spill_dtype w, int64_t n) { return 2 * (size_t)(n / SPILL_QK) * qpanel_block(w); }

/* 8 rows' 16 bytes at x[r] + off turned so that o[c] holds dword c of rows 0-7, in row order: rows m and
   m + 4 in the halves of z[m], then the 4 x 4 transposes within 128-bit lanes */
static inline __attribute__((always_inline)) void rows8(const uint8_t *const x[8], size_t off, __m256i o[4]) {
    __m256i z[4];
    for (int m = 0; m < 4; m++)
        z[m] = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(x[m + 4] + off)), _mm_loadu_si128((const __m128i *)(x[m] + off)));
    __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
    __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
    o[0] = _mm256_unpacklo_epi64(t0, t2), o[1] = _mm256_unpackhi_epi64(t0, t2);
    o[2] = _mm256_unpacklo_epi64(t1, t3), o[3] = _mm256_unpackhi_epi64(t1, t3);
}

/* one block of 8 rows (row r's block at x[r]) laid out at pb; w a constant in each caller */
static inline __attribute__((always_inline)) void qpanel_pack_block(spill_dtype w, const uint8_t *const x[8], uint8_t *pb) {
    _Static_assert(offsetof(spill_block_q8_0, d) == 0 && offsetof(spill_block_q4_0, d) == 0 &&
                       offsetof(spill_block_q4_1, d) == 0 && offsetof(spill_block_q4_1, m) == 2,
                   "the blocks start with d (Q4_1: then m)");
    const size_t qoff = w == SPILL_DT_Q8_0 ? offsetof(spill_block_q8_0, qs)
                        : w == SPILL_DT_Q4_0 ? offsetof(spill_block_q4_0, qs)
                                             : offsetof(spill_block_q4_1, qs);
    /* each row's first 4 bytes (d, then m or the first values) in a lane, then the 8 d's in the low half, the
       8 second halves in the high one */
    __m256i dm = _mm256_setr_epi32(spill_ld32(x[0]), spill_ld32(x[1]), spill_ld32(x[2]), spill_ld32(x[3]),
                                   spill_ld32(x[4]), spill_ld32(x[5]), spill_ld32(x[6]), spill_ld32(x[7]));
    dm = _mm256_shuffle_epi8(dm, _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                                  0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
    dm = _mm256_permute4x64_epi64(dm, 0xD8);
    _mm256_storeu_ps((float *)(pb + qpanel_w(w)), _mm256_cvtph_ps(_mm256_castsi256_si128(dm)));
    if (w == SPILL_DT_Q4_1) _mm256_storeu_ps((float *)(pb + qpanel_w(w) + 32), _mm256_cvtph_ps(_mm256_extracti128_si256(dm, 1)));
    __m256i q[8];
    rows8(x, qoff, q);
    if (w == SPILL_DT_Q8_0) {
        rows8(x, qoff + 16, q + 4);
        for (int l = 0; l < 8; l++) {
            _mm256_storeu_si256((__m256i *)(pb + 32 * l), _mm256_sign_epi8(q[l], q[l]));
            _mm256_storeu_si256((__m256i *)(pb + 256 + 32 * l), q[l]);
        }
    } else {
        /* bytes 4c..4c+3: values 4c.. in their low nibbles (group c), 16 + 4c.. in the high (group 4 + c) */
        const __m256i m4 = _mm256_set1_epi8(15);
        for (int c = 0; c < 4; c++) {
            _mm256_storeu_si256((__m256i *)(pb + 32 * c), _mm256_and_si256(q[c], m4));
            _mm256_storeu_si256((__m256i *)(pb + 32 * (4 + c)), _mm256_and_si256(_mm256_srli_epi16(q[c], 4), m4));
        }
    }
}

static inline __attribute__((always_inline)) void qpanel_pack(spill_dtype w, int64_t nb, const uint8_t *wrows, uint64_t rb,
                                                              int nr, uint8_t *panel) {
    const size_t xb = w == SPILL_DT_Q8_0 ? sizeof(spill_block_q8_0) : w == SPILL_DT_Q4_0 ? sizeof(spill_block_q4_0)
                                                                                         : sizeof(spill_block_q4_1);
    for (int h = 0; h < (nr > 8 ? 2 : 1); h++) {
        const uint8_t *x[8]; /* rows past nr repeat row 0: their lanes are computed, never stored */
        for (int r = 0; r < 8; r++) x[r] = wrows + (8 * h + r < nr ? (uint64_t)(8 * h + r) * rb : 0);
        uint8_t *half = panel + (size_t)h * (size_t)nb * qpanel_block(w);
        for (int64_t i = 0; i < nb; i++) {
            qpanel_pack_block(w, x, half + (size_t)i * qpanel_block(w));
            for (int r = 0; r < 8; r++) x[r] += xb;
        }
    }
}

void spill_dots_panel_pack_avx2(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, void *panel) {
    const int64_t nb = n / SPILL_QK;
    switch (w) {
    case SPILL_DT_Q8_0: qpanel_pack(SPILL_DT_Q8_0, nb, wrows, rb, nr, panel); break;
    case SPILL_DT_Q4_0: qpanel_pack(SPILL_DT_Q4_0, nb, wrows, rb, nr, panel); break;
    default: qpanel_pack(SPILL_DT_Q4_1, nb, wrows, rb, nr, panel); break;
    }
}

/* one token against a half of the panel (8 rows): its activations at a (its Q8_0/Q8_1 row), its prepared
 * floats at s (s[i * 8] its d in block i, s[i * 8 + 4] Q4_1's s), Q4_0's 8 * (the sums of its pairs of
 * values) at pairs (block i's 32 bytes at pairs + i * 32 * T); o[r] for the 8 rows. Meanwhile pflen bytes
 * from pf are prefetched, a share per block. */
static inline __attribute__((always_inline)) void qpanel_token(spill_dtype w, int64_t nb, const uint8_t *half, const uint8_t *a,
                                                               const float *s, const uint8_t *pairs, float o[8],
                                                               const uint8_t *pf, uint64_t pflen) {
    const size_t ybytes = w == SPILL_DT_Q4_1 ? sizeof(spill_block_q8_1) : sizeof(spill_block_q8_0);
    const size_t yqs = w == SPILL_DT_Q4_1 ? offsetof(spill_block_q8_1, qs) : offsetof(spill_block_q8_0, qs);
    const size_t pbk = qpanel_block(w), qw = qpanel_w(w);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[8], sm = _mm256_setzero_ps();
    for (int l = 0; l < 8; l++) acc[l] = _mm256_setzero_ps();
    const uint64_t per = (pflen + (uint64_t)nb - 1) / (uint64_t)nb;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *pb = half + (size_t)i * pbk;
        for (uint64_t k = (uint64_t)i * per; k < (uint64_t)(i + 1) * per && k < pflen; k += 64)
            _mm_prefetch((const char *)pf + k, _MM_HINT_T0);
        const __m256 dd = _mm256_mul_ps(_mm256_loadu_ps((const float *)(pb + qw)), _mm256_set1_ps(s[i * 8]));
        const uint8_t *y = a + (uint64_t)i * ybytes + yqs;
        for (int l = 0; l < 8; l++) {
            const __m256i yv = _mm256_set1_epi32(spill_ld32(y + 4 * l));
            const __m256i q = _mm256_loadu_si256((const __m256i *)(pb + 32 * l));
            __m256i p;
            if (w == SPILL_DT_Q8_0) /* |x| against y with x's sign: maddubs takes unsigned x signed */
                p = _mm256_maddubs_epi16(q, _mm256_sign_epi8(yv, _mm256_loadu_si256((const __m256i *)(pb + 256 + 32 * l))));
            else
                p = _mm256_maddubs_epi16(q, yv);
            if (w == SPILL_DT_Q4_0) p = _mm256_sub_epi16(p, _mm256_set1_epi32(spill_ld32(pairs + (size_t)i * 32 * T + 4 * l)));
            acc[l] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc[l]);
        }
        if (w == SPILL_DT_Q4_1) sm = _mm256_fmadd_ps(_mm256_loadu_ps((const float *)(pb + qw + 32)), _mm256_set1_ps(s[i * 8 + 4]), sm);
    }
    /* spill_hsum8: (l0 + l4) + (l2 + l6), then + ((l1 + l5) + (l3 + l7)) */
    __m256 r0 = _mm256_add_ps(acc[0], acc[4]), r1 = _mm256_add_ps(acc[1], acc[5]);
    __m256 r2 = _mm256_add_ps(acc[2], acc[6]), r3 = _mm256_add_ps(acc[3], acc[7]);
    __m256 t = _mm256_add_ps(_mm256_add_ps(r0, r2), _mm256_add_ps(r1, r3));
    if (w == SPILL_DT_Q4_1) t = _mm256_add_ps(t, sm);
    _mm256_storeu_ps(o, t);
}

static inline __attribute__((always_inline)) void qpanel_run(spill_dtype w, int64_t nb, const uint8_t *panel, int nr,
                                                             const uint8_t *act, uint64_t stride, int nt, const float *sc,
                                                             size_t pt, float *out, int64_t ldo, const uint8_t *pf,
                                                             uint64_t pflen) {
    const int halves = nr > 8 ? 2 : 1, passes = halves * nt;
    for (int h = 0; h < halves; h++) {
        const uint8_t *half = panel + (size_t)h * (size_t)nb * qpanel_block(w);
        const int rows = nr - 8 * h < 8 ? nr - 8 * h : 8;
        for (int t = 0; t < nt; t++) {
            const float *s = sc + (size_t)(t / T) * pt;
            const uint8_t *pairs = (const uint8_t *)(s + (size_t)nb * 8) + (size_t)(t % T) * 32;
            const int k = h * nt + t; /* the next rows, a stretch of pflen bytes, prefetched across the passes */
            const uint64_t p0 = pflen * (uint64_t)k / (uint64_t)passes, p1 = pflen * (uint64_t)(k + 1) / (uint64_t)passes;
            float o[8];
            qpanel_token(w, nb, half, act + (uint64_t)t * stride, s + t % T, pairs, o, pf + p0, p1 - p0);
            float *dst = out + (int64_t)t * ldo + 8 * h;
            if (rows == 8) memcpy(dst, o, sizeof o);
            else memcpy(dst, o, sizeof(float) * (size_t)rows);
        }
    }
}

void spill_dots_panel_avx2(spill_dtype w, int64_t n, const void *panel, int nr, const void *act, uint64_t stride, int nt,
                           const float *sc, size_t pt, float *out, int64_t ldo, const void *next, uint64_t next_len) {
    const uint8_t *pf = next ? next : (const uint8_t *)panel; /* nothing to prefetch: pflen 0 */
    const uint64_t pflen = next ? next_len : 0;
    const int64_t nb = n / SPILL_QK;
    switch (w) {
    case SPILL_DT_Q8_0: qpanel_run(SPILL_DT_Q8_0, nb, panel, nr, act, stride, nt, sc, pt, out, ldo, pf, pflen); break;
    case SPILL_DT_Q4_0: qpanel_run(SPILL_DT_Q4_0, nb, panel, nr, act, stride, nt, sc, pt, out, ldo, pf, pflen); break;
    default: qpanel_run(SPILL_DT_Q4_1, nb, panel, nr, act, stride, nt, sc, pt, out, ldo, pf, pflen); break;
    }
}

/* Attention's scores against F32 keys for fewer queries than a tile (decode: one token's query heads of one
 * KV head): nr rows (row r at rows + r * rs) against nq <= 3 queries, out[i * ldo + r] the one-token dot's
 * bits (spill_dot_f32: 8 lanes of fused multiply-adds, spill_hsum8, then the values past the last 8 one by
 * one). R rows at a time against the NQ queries (R * NQ <= 12 chains), each key's 8 values loaded once for
 * the queries and the chains' sums reduced together (hsum8x8). The rows kernel took one query at a time,
 * loading every row again for each, with a call per query. */
static inline __attribute__((always_inline)) void scores_rows(int R, int NQ, int64_t n, const float *rows, int64_t rs,
                                                              const float *q, int64_t qs, float *out, int64_t ldo) {
    __m256 acc[16];
    for (int k = 0; k < 16; k++) acc[k] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= n; c += 8)
        for (int i = 0; i < NQ; i++) {
            __m256 y = _mm256_loadu_ps(q + i * qs + c);
            KEEP(y); /* loaded once for the rows */
            for (int r = 0; r < R; r++) acc[r * NQ + i] = _mm256_fmadd_ps(_mm256_loadu_ps(rows + r * rs + c), y, acc[r * NQ + i]);
        }
    float sums[16];
    _mm256_storeu_ps(sums, hsum8x8(acc)); /* acc[k]'s sum in lane k / 2 + 4 * (k % 2) */
    if (R * NQ > 8) _mm256_storeu_ps(sums + 8, hsum8x8(acc + 8));
    for (int r = 0; r < R; r++)
        for (int i = 0; i < NQ; i++) {
            int k = r * NQ + i;
            float s = sums[k / 8 * 8 + k % 8 / 2 + 4 * (k % 2)];
            for (int64_t j = c; j < n; j++) s = fmaf(rows[r * rs + j], q[i * qs + j], s);
            out[(int64_t)i * ldo + r] = s;
        }
}

int spill_scores_f32_avx2(int64_t n, const float *rows, int64_t rs, int nr, const float *q, int64_t qs, int nq, float *out,
                          int64_t ldo) {
    if (nq < 1 || nq > 3) return 0;
    const int64_t ahead = spill_key_rows_ahead(rs);
    const int R = nq == 1 ? 8 : nq == 2 ? 6 : 4;
    int r = 0;
    for (; r < nr; r += R) {
        spill_prefetch_key_rows(rows, rs, n, r + ahead, R, nr);
        const float *k = rows + (int64_t)r * rs;
        int left = nr - r;
        if (nq == 1) {
            if (left >= 8) scores_rows(8, 1, n, k, rs, q, qs, out + r, ldo);
            else
                for (int j = 0; j < left; j++) scores_rows(1, 1, n, k + j * rs, rs, q, qs, out + r + j, ldo);
        } else if (nq == 2) {
            if (left >= 6) scores_rows(6, 2, n, k, rs, q, qs, out + r, ldo);
            else
                for (int j = 0; j < left; j++) scores_rows(1, 2, n, k + j * rs, rs, q, qs, out + r + j, ldo);
        } else {
            if (left >= 4) scores_rows(4, 3, n, k, rs, q, qs, out + r, ldo);
            else
                for (int j = 0; j < left; j++) scores_rows(1, 3, n, k + j * rs, rs, q, qs, out + r + j, ldo);
        }
    }
    return 1;
}

/* attention's weighted sum of values in 256-bit registers (kernels/attn_values.h: the portable loop's bits) */
#define AV_VEC __m256
#define AV_W 8
#define AV_LOAD(p) _mm256_loadu_ps(p)
#define AV_STORE(p, x) _mm256_storeu_ps(p, x)
#define AV_SET1(f) _mm256_set1_ps(f)
#define AV_FMA(b, x, acc) _mm256_fmadd_ps(b, x, acc)
#define AV_NAME spill_attn_values_avx2
#include "attn_values.h"
