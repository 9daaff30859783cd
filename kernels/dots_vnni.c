/* The Q8_0, Q4_0 and Q4_1 tiles of kernels/dots_avx2.c (rows against 4 tokens) in 512-bit registers with
 * AVX-512 VNNI's vpdpbusd, for CPUs with AVX-512 F, VL, DQ, BW and VNNI. Compiled with those instructions
 * enabled for this file only (CMakeLists.txt); kernels/dots_avx2.c calls it only where
 * spill_cpu_avx512_vnni() is true.
 *
 * Bit-identical to the AVX2 tile, hence to the one-token dot: each (row, token) keeps its own 8 lanes,
 * lane l of a block the exact integer sum of the 4 products of values 4l..4l+3, turned into a float and
 * fused-multiply-added with the same scale product (weight's d times the token's d) in the same block
 * order; then the same pairwise sum (spill_hsum8) and, for Q4_1, the same min term. A 512-bit register
 * holds two such chains (one row against tokens t and t + 1), so one vpdpbusd makes the 16 exact lane
 * sums that AVX2 makes with maddubs + madd per token:
 * - Q8_0: y + 128 (unsigned; spill_dots_prepare_avx2 made it once per matmul) against x, accumulated
 *   onto -128 * (the sum of the lane's 4 values of x), made once per row block for the 4 tokens:
 *   sum((y + 128) * x) - 128 * sum(x) = sum(x * y). (AVX2's |x| against y with x's sign took two more
 *   instructions per pair of tokens, and vpsignb has no 512-bit form.)
 * - Q4_0: the unsigned nibbles q against y, accumulated onto -8 * (the sum of the lane's 4 values of y),
 *   which spill_dots_prepare_avx2 made once per matmul: sum(q * y) - 8 * sum(y) = sum((q - 8) * y);
 * - Q4_1: the unsigned nibbles against y.
 * Four rows go at once: each pair of tokens' block and scales is loaded once for the four rows, and the
 * 8 accumulators are independent chains. */
#include "dot.h"

#include <immintrin.h>
#include <stddef.h>

#define T SPILL_DOTS_TILE

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* the 32 unsigned nibbles of a 4-bit block (value j in byte j) in both 256-bit halves */
static inline __m512i nibbles2(const uint8_t *qs) {
    const long long s4 = 0x0004000400040004LL; /* each 16-bit lane shifted by 0 in 128-bit lanes 0, 2; by 4 in 1, 3 */
    const __m512i shift = _mm512_set_epi64(s4, s4, 0, 0, s4, s4, 0, 0);
    __m512i b = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs));
    return _mm512_and_si512(_mm512_srlv_epi16(b, shift), _mm512_set1_epi8(15));
}

/* tokens 2p and 2p + 1's 32 bytes side by side */
static inline __m512i pair256(const void *lo, const void *hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                              _mm256_loadu_si256((const __m256i *)hi), 1);
}

/* R rows (1..4) against K tiles of 4 tokens (K 1 or 2; token j at act + j * stride). sc: tile k's
 * prepared floats at sc + k * pt: the tokens' block scales (sc[i * 8 + t] token t's d in block i,
 * sc[i * 8 + 4 + t] its s for Q4_1), then 32 bytes per block and token ([block][token]): Q4_0's -8 * the
 * lane sums, Q8_0's values + 128. Two tiles at once (8 tokens, 16 accumulators): what each row's block
 * costs (its load, Q8_0's -128 * sum, the scale's conversion) is shared by 8 tokens instead of 4. */
static inline __attribute__((always_inline)) void tile(spill_dtype w, int R, int K, int64_t n, const uint8_t *wrow,
                                                       uint64_t rb, const uint8_t *act, uint64_t stride, const float *sc,
                                                       size_t pt, float *out, int64_t ldo) {
    enum { PMAX = T }; /* pairs of tokens: 2 per tile */
    const int P = 2 * K;
    __m512 acc[4][PMAX];
    __m256 summs[4]; /* Q4_1: lane k * 4 + t: tile k's token t's sum of m * s */
    for (int r = 0; r < R; r++) {
        for (int p = 0; p < P; p++) acc[r][p] = _mm512_setzero_ps();
        summs[r] = _mm256_setzero_ps();
    }
    const int64_t nb = n / SPILL_QK;
    const size_t xbytes = w == SPILL_DT_Q8_0 ? sizeof(spill_block_q8_0) : w == SPILL_DT_Q4_0 ? sizeof(spill_block_q4_0)
                                                                                            : sizeof(spill_block_q4_1);
    const size_t ybytes = w == SPILL_DT_Q4_1 ? sizeof(spill_block_q8_1) : sizeof(spill_block_q8_0);
    const size_t yqs = w == SPILL_DT_Q4_1 ? offsetof(spill_block_q8_1, qs) : offsetof(spill_block_q8_0, qs);
    const __m512i b128 = _mm512_set1_epi8((char)0x80);
    /* token pair p's scale in each half: lanes 0-7 token 2p's, 8-15 token 2p + 1's */
    const __m512i pick[2] = {_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                             _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2)};
    for (int64_t i = 0; i < nb; i++) {
        __m512i y[PMAX], s4[PMAX];
        __m512 dy[PMAX];
        for (int k = 0; k < K; k++) {
            const float *sk = sc + k * pt;
            const __m512i *more = (const __m512i *)(sk + nb * 8) + i * 2; /* [block][pair], loaded unaligned */
            __m512 dy4 = _mm512_castps128_ps512(_mm_loadu_ps(sk + i * 8));
            for (int h = 0; h < 2; h++) {
                int p = 2 * k + h;
                const uint8_t *a0 = act + (uint64_t)(2 * p) * stride + (uint64_t)i * ybytes + yqs;
                y[p] = w == SPILL_DT_Q8_0 ? _mm512_loadu_si512(more + h) : pair256(a0, a0 + stride);
                if (w == SPILL_DT_Q4_0) s4[p] = _mm512_loadu_si512(more + h);
                dy[p] = _mm512_permutexvar_ps(pick[h], dy4);
            }
        }
        for (int r = 0; r < R; r++) {
            const uint8_t *xb = wrow + r * rb + (uint64_t)i * xbytes;
            _mm_prefetch((const char *)xb + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
            __m512i l[PMAX];
            uint16_t xd;
            if (w == SPILL_DT_Q8_0) {
                const spill_block_q8_0 *x = (const spill_block_q8_0 *)xb;
                xd = x->d;
                __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x->qs));
                __m512i c = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), b128, q));
                for (int p = 0; p < P; p++) l[p] = _mm512_dpbusd_epi32(c, y[p], q);
            } else if (w == SPILL_DT_Q4_0) {
                const spill_block_q4_0 *x = (const spill_block_q4_0 *)xb;
                xd = x->d;
                __m512i q = nibbles2(x->qs);
                for (int p = 0; p < P; p++) l[p] = _mm512_dpbusd_epi32(s4[p], q, y[p]);
            } else {
                const spill_block_q4_1 *x = (const spill_block_q4_1 *)xb;
                xd = x->d;
                __m512i q = nibbles2(x->qs);
                for (int p = 0; p < P; p++) l[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y[p]);
            }
            __m512 d = _mm512_set1_ps(h2f(xd));
            for (int p = 0; p < P; p++)
                acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(d, dy[p]), _mm512_cvtepi32_ps(l[p]), acc[r][p]);
        }
    }
    /* Q4_1's min term, each (row, token) the same chain of fused multiply-adds as the one-token dot's, in a
       pass of its own: in the loop above its registers made the compiler keep accumulators on the stack */
    for (int64_t i = 0; w == SPILL_DT_Q4_1 && i < nb; i++) {
        __m256 sy8 = _mm256_insertf128_ps(_mm256_setzero_ps(), _mm_loadu_ps(sc + i * 8 + 4), 0);
        if (K == 2) sy8 = _mm256_insertf128_ps(sy8, _mm_loadu_ps(sc + pt + i * 8 + 4), 1);
        for (int r = 0; r < R; r++) {
            const spill_block_q4_1 *x = (const spill_block_q4_1 *)(wrow + r * rb) + i;
            summs[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x->m)), sy8, summs[r]);
        }
    }
    for (int r = 0; r < R; r++) {
        float sm[8];
        _mm256_storeu_ps(sm, summs[r]);
        for (int t = 0; t < 4 * K; t++) {
            float lanes[16];
            _mm512_storeu_ps(lanes, acc[r][t / 2]);
            float s = spill_hsum8(lanes + 8 * (t % 2));
            out[(int64_t)t * ldo + r] = w == SPILL_DT_Q4_1 ? s + sm[t] : s;
        }
    }
}

#define TILES(w, K)                                                                                              \
    do {                                                                                                          \
        int r_ = 0;                                                                                               \
        for (; r_ + 4 <= nr; r_ += 4) tile(w, 4, K, n, wrow + (uint64_t)r_ * rb, rb, act, stride, sc, pt, out + r_, ldo); \
        for (; r_ < nr; r_++) tile(w, 1, K, n, wrow + (uint64_t)r_ * rb, rb, act, stride, sc, pt, out + r_, ldo);          \
    } while (0)

void spill_dots_quant_vnni(spill_dtype w, int ntiles, int64_t n, const void *wrows, uint64_t rb, int nr, const void *actv,
                           uint64_t stride, const float *sc, size_t pt, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows, *act = actv;
    if (ntiles == 2) {
        switch (w) {
        case SPILL_DT_Q8_0: TILES(SPILL_DT_Q8_0, 2); break;
        case SPILL_DT_Q4_0: TILES(SPILL_DT_Q4_0, 2); break;
        default: TILES(SPILL_DT_Q4_1, 2); break;
        }
        return;
    }
    switch (w) {
    case SPILL_DT_Q8_0: TILES(SPILL_DT_Q8_0, 1); break;
    case SPILL_DT_Q4_0: TILES(SPILL_DT_Q4_0, 1); break;
    default: TILES(SPILL_DT_Q4_1, 1); break;
    }
}
