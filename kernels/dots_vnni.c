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
#include <string.h>

#define T SPILL_DOTS_TILE

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* a Q8_0, Q4_0 or Q4_1 block's size, and where its values begin */
static inline size_t qblock_bytes(spill_dtype w) {
    return w == SPILL_DT_Q8_0 ? sizeof(spill_block_q8_0) : w == SPILL_DT_Q4_0 ? sizeof(spill_block_q4_0) : sizeof(spill_block_q4_1);
}
static inline size_t qblock_qs(spill_dtype w) {
    return w == SPILL_DT_Q4_1 ? offsetof(spill_block_q4_1, qs) : w == SPILL_DT_Q4_0 ? offsetof(spill_block_q4_0, qs)
                                                                                  : offsetof(spill_block_q8_0, qs);
}

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
    const size_t xbytes = qblock_bytes(w);
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

/* ---- The K-quants (Q4_K, Q6_K) against Q8_K activations, 8 or 4 tokens at once ----
 *
 * The AVX2 tile (kq_q4_k / kq_q6_k in kernels/dot_avx2.h) unpacks a super-block once for 4 tokens,
 * sums each token's sub-blocks in 256-bit registers (a scale per vpmaddwd) and ends the block for the 4
 * tokens in one 128-bit register. Here a 512-bit register
 * holds a pair of tokens (as the tiles above), each sub-block's scale goes in with VNNI's vpdpwssd
 * (the 16-bit pairs that vpmaddubsw made, times the scale, added to 32-bit lanes: exact), the 8 tokens'
 * lane sums are reduced together, and the block's float steps run for 8 tokens in one 256-bit register.
 * The integers are exact, so every sum is the portable one's, and the float steps are the same
 * operations (kernels/dot.h, spill_q4_k_block / spill_q6_k_block) in the same order: the same bits.
 *
 * spill_dots_prepare_kquant_vnni lays out each tile of 4 tokens once per matmul, per super-block
 * (SPILL_KQ_PREP floats): the tokens' scales d (4 floats), their values in pairs of tokens, sub-block by
 * sub-block (pair p, sub-block j: token 2p's 32 bytes, then token 2p + 1's: one 512-bit load), their
 * 16-value sums in pairs of tokens (64 bytes a pair; Q6_K's offset), and their 32-value sums (Q4_K's
 * minima), for each two sub-blocks the 4 tokens' two sums side by side (16 bytes). */
void spill_dots_prepare_kquant_vnni(int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
    const int64_t nb = n / SPILL_QK_K;
    for (int tile = 0; tile < nt / T; tile++) {
        float *s = sc + (size_t)tile * (size_t)nb * SPILL_KQ_PREP;
        for (int64_t i = 0; i < nb; i++) {
            float *b = s + i * SPILL_KQ_PREP;
            uint8_t *qs = (uint8_t *)(b + 4), *bs = (uint8_t *)(b + 4 + 256);
            for (int t = 0; t < T; t++) {
                const spill_block_q8_k *y =
                    (const spill_block_q8_k *)((const uint8_t *)act + (uint64_t)(tile * T + t) * stride) + i;
                int p = t / 2, h = t % 2;
                b[t] = y->d;
                for (int j = 0; j < 8; j++)
                    _mm256_storeu_si256((__m256i *)(qs + (p * 8 + j) * 64 + h * 32),
                                        _mm256_loadu_si256((const __m256i *)(y->qs + 32 * j)));
                _mm256_storeu_si256((__m256i *)(bs + p * 64 + h * 32), _mm256_loadu_si256((const __m256i *)y->bsums));
                int16_t *ps = (int16_t *)(b + 4 + 256 + 32); /* [j pair][token][2]: 32-value sums j = 2jp, 2jp + 1 */
                for (int j = 0; j < 8; j++) ps[(j / 2) * 8 + t * 2 + j % 2] = (int16_t)(y->bsums[2 * j] + y->bsums[2 * j + 1]);
            }
        }
    }
}

/* four registers of token pairs (v_p: token 2p's 8 lanes, then token 2p + 1's) to the 8 tokens' sums, in
 * the order 0, 2, 4, 6, 1, 3, 5, 7 (KQ_ORDER) */
static inline __m256i kq_reduce(__m512i v0, __m512i v1, __m512i v2, __m512i v3) {
    __m512i a = _mm512_add_epi32(_mm512_unpacklo_epi32(v0, v1), _mm512_unpackhi_epi32(v0, v1));
    __m512i b = _mm512_add_epi32(_mm512_unpacklo_epi32(v2, v3), _mm512_unpackhi_epi32(v2, v3));
    /* each 128-bit lane: the four registers' sums of that lane's 4 values */
    __m512i c = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    /* 128-bit lanes 0 + 1: the even tokens' sums; 2 + 3: the odd ones' */
    __m512i d = _mm512_add_epi32(c, _mm512_shuffle_i32x4(c, c, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castsi512_si256(_mm512_shuffle_i32x4(d, d, _MM_SHUFFLE(2, 0, 2, 0)));
}
#define KQ_ORDER 0, 2, 4, 6, 1, 3, 5, 7

/* a Q4_K block's 8 scales and 8 mins (spill_q4_k_scales), as 16-bit lanes 0-7 and 8-15 of a register */
static inline __m256i q4_k_scales16(const uint8_t *q) {
    /* bytes 0-3 scales 0-3, 4-7 mins 0-3; 8-11: scales 4-7 (low 4 bits of 8-11, high 2 of 0-3),
       12-15: mins 4-7 (high 4 bits of 8-11, high 2 of 4-7) */
    __m128i v = _mm_loadu_si128((const __m128i *)q); /* 12 bytes; the 4 after them are the block's values */
    __m128i lo = _mm_and_si128(v, _mm_set1_epi8(63));
    __m128i top = _mm_srli_epi16(_mm_and_si128(v, _mm_set1_epi8((char)0xC0)), 2); /* high 2 bits, at bits 4-5 */
    __m128i b8 = _mm_shuffle_epi8(v, _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1));
    __m128i low4 = _mm_and_si128(_mm_blend_epi16(b8, _mm_srli_epi16(b8, 4), 0x0C), _mm_set1_epi8(15));
    __m128i hi = _mm_or_si128(low4, top); /* bytes 0-3 scales 4-7, 4-7 mins 4-7 */
    /* scales 0-7 then mins 0-7 */
    __m128i sm = _mm_unpacklo_epi32(lo, hi);                        /* sc0-3, sc4-7, mn0-3, mn4-7 */
    return _mm256_cvtepu8_epi16(sm);
}

/* a permutation of 16-bit lanes: in 128-bit lanes 0 and 2, four of a then four of b; in 1 and 3, c and d */
static inline __m512i idx16(int a, int b, int c, int d) {
    const long long r = 0x0001000100010001LL;
    return _mm512_set_epi64(d * r, c * r, b * r, a * r, d * r, c * r, b * r, a * r);
}

/* two sub-blocks' products with a pair of tokens: u and v unsigned weights (< 64), ya and yb the tokens'
 * int8 values; each 32-bit lane of vpdpbusd is the exact sum of 4 products (|.| <= 4 * 63 * 127 < 2^15),
 * packed to 16 bits: in each 128-bit lane, u's 4 sums then v's, ready for vpdpwssd with their scales */
static inline __m512i sums2(__m512i u, __m512i ya, __m512i v, __m512i yb) {
    return _mm512_packs_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, ya),
                              _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, yb));
}

/* a quarter of Q6_K's 6-bit values from 64 bytes of low nibbles (l0, l1) and 32 of high bits (h): q[k]
 * holds sub-block k's 32 values (0-63, unsigned), per 256-bit half as the bytes were loaded there */
static inline void q6_k_values(__m512i l0, __m512i l1, __m512i h, __m512i q[4]) {
    const __m512i m4 = _mm512_set1_epi8(0xF), m2 = _mm512_set1_epi8(0x30);
    q[0] = _mm512_or_si512(_mm512_and_si512(l0, m4), _mm512_and_si512(_mm512_slli_epi16(h, 4), m2));
    q[1] = _mm512_or_si512(_mm512_and_si512(l1, m4), _mm512_and_si512(_mm512_slli_epi16(h, 2), m2));
    q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l0, 4), m4), _mm512_and_si512(h, m2));
    q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l1, 4), m4), _mm512_and_si512(_mm512_srli_epi16(h, 2), m2));
}

static inline __attribute__((always_inline)) void kq_tile(spill_dtype w, int R, int K, int64_t n, const uint8_t *wrow,
                                                          uint64_t rb, const float *sc, size_t pt, float *out,
                                                          int64_t ldo) {
    const int64_t nb = n / SPILL_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m256i order = _mm256_setr_epi32(KQ_ORDER);
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const float *bk[2] = {sc + i * SPILL_KQ_PREP, sc + pt + i * SPILL_KQ_PREP};
        __m256 d8 = _mm256_castps128_ps256(_mm_loadu_ps(bk[0]));
        d8 = _mm256_insertf128_ps(d8, K == 2 ? _mm_loadu_ps(bk[1]) : _mm_setzero_ps(), 1);
        const __m256 yd = _mm256_permutevar8x32_ps(d8, order);
#define Y(p, j) _mm512_loadu_si512((const uint8_t *)(bk[(p) / 2] + 4) + ((p) % 2 * 8 + (j)) * 64)
#define BS(p) _mm512_loadu_si512((const uint8_t *)(bk[(p) / 2] + 4 + 256) + (p) % 2 * 64)
        for (int r = 0; r < R; r++) {
            __m512i si[4];
            for (int p = 0; p < 4; p++) si[p] = _mm512_setzero_si512();
            __m256i sm = _mm256_setzero_si256(); /* Q4_K: the minima's sums, in KQ_ORDER */
            float dx, mx = 0;
            if (w == SPILL_DT_Q4_K) {
                const spill_block_q4_k *x = (const spill_block_q4_k *)(wrow + r * rb) + i;
                spill_prefetch_block(x, sizeof *x);
                dx = h2f(x->d), mx = h2f(x->dmin);
                __m512i s16 = _mm512_castsi256_si512(q4_k_scales16(x->scales));
                for (int q = 0; q < 4; q++) { /* sub-blocks 2q (low nibbles) and 2q + 1 (high) share 32 bytes */
                    __m512i qb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * q)));
                    __m512i lo = _mm512_and_si512(qb, m4), hi = _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4);
                    __m512i sq = _mm512_permutexvar_epi16(idx16(2 * q, 2 * q + 1, 2 * q, 2 * q + 1), s16);
                    for (int p = 0; p < 2 * K; p++)
                        si[p] = _mm512_dpwssd_epi32(si[p], sums2(lo, Y(p, 2 * q), hi, Y(p, 2 * q + 1)), sq);
                }
                /* the minima: each token's sum over j of mn_j times its 32-value sum j, two j a time */
                const __m256i mn = _mm512_castsi512_si256(s16); /* 32-bit lane 4 + jp: mn_2jp, mn_2jp+1 */
                __m256i summ = _mm256_setzero_si256();
                for (int jp = 0; jp < 4; jp++) {
                    __m256i v = _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(bk[0] + 4 + 256 + 32) + jp));
                    v = _mm256_inserti128_si256(
                        v, K == 2 ? _mm_loadu_si128((const __m128i *)(bk[1] + 4 + 256 + 32) + jp) : _mm_setzero_si128(), 1);
                    summ = _mm256_add_epi32(summ, _mm256_madd_epi16(v, _mm256_permutevar8x32_epi32(mn, _mm256_set1_epi32(4 + jp))));
                }
                sm = _mm256_permutevar8x32_epi32(summ, order);
            } else {
                const spill_block_q6_k *x = (const spill_block_q6_k *)(wrow + r * rb) + i;
                spill_prefetch_block(x, sizeof *x);
                dx = h2f(x->d);
                /* 16 scales as 16-bit lanes in both 256-bit halves */
                __m512i s16 = _mm512_broadcast_i64x4(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales)));
                for (int half = 0; half < 2; half++) {
                    const uint8_t *ql = x->ql + 64 * half, *qh = x->qh + 32 * half;
                    __m512i l0 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)ql));
                    __m512i l1 = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(ql + 32)));
                    __m512i h = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)qh));
                    __m512i q[4];
                    q6_k_values(l0, l1, h, q);
                    for (int k4 = 0; k4 < 4; k4 += 2) {
                        /* sub-blocks k and k + 1: values 0-15 of sub-block k have scale 2k, 16-31 scale 2k + 1 */
                        int k = 4 * half + k4;
                        __m512i sk = _mm512_permutexvar_epi16(idx16(2 * k, 2 * k + 2, 2 * k + 1, 2 * k + 3), s16);
                        for (int p = 0; p < 2 * K; p++)
                            si[p] = _mm512_dpwssd_epi32(si[p], sums2(q[k4], Y(p, k), q[k4 + 1], Y(p, k + 1)), sk);
                    }
                }
                /* the offset of 32: -32 * sc_g times the token's 16-value sum g, in the same integer sum */
                const __m512i m32 = _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(s16, 5));
                for (int p = 0; p < 2 * K; p++) si[p] = _mm512_dpwssd_epi32(si[p], BS(p), m32);
            }
            const __m256 dd = _mm256_mul_ps(_mm256_set1_ps(dx), yd);
            acc[r] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(kq_reduce(si[0], si[1], si[2], si[3])), acc[r]);
            if (w == SPILL_DT_Q4_K) {
                const __m256 md = _mm256_mul_ps(_mm256_set1_ps(mx), yd);
                acc[r] = _mm256_fnmadd_ps(md, _mm256_cvtepi32_ps(sm), acc[r]);
            }
        }
#undef Y
#undef BS
    }
    static const int tok[8] = {KQ_ORDER};
    for (int r = 0; r < R; r++) {
        float a[8];
        _mm256_storeu_ps(a, acc[r]);
        for (int l = 0; l < 8; l++)
            if (tok[l] < 4 * K) out[(int64_t)tok[l] * ldo + r] = a[l];
    }
}

#define KQ_TILES(w, K)                                                                                           \
    do {                                                                                                          \
        int r_ = 0;                                                                                               \
        for (; r_ + 4 <= nr; r_ += 4) kq_tile(w, 4, K, n, wrow + (uint64_t)r_ * rb, rb, sc, pt, out + r_, ldo);   \
        for (; r_ < nr; r_++) kq_tile(w, 1, K, n, wrow + (uint64_t)r_ * rb, rb, sc, pt, out + r_, ldo);            \
    } while (0)

void spill_dots_kquant_vnni(spill_dtype w, int ntiles, int64_t n, const void *wrows, uint64_t rb, int nr, const float *sc,
                            size_t pt, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows;
    if (w == SPILL_DT_Q4_K) {
        if (ntiles == 2) KQ_TILES(SPILL_DT_Q4_K, 2);
        else KQ_TILES(SPILL_DT_Q4_K, 1);
    } else {
        if (ntiles == 2) KQ_TILES(SPILL_DT_Q6_K, 2);
        else KQ_TILES(SPILL_DT_Q6_K, 1);
    }
}

/* ---- The K-quants against one token (decode), 8 rows at once ----
 * Rows 2p and 2p + 1 in register p's two halves, the token's values in both; otherwise the tile's steps:
 * two sub-blocks' vpdpbusd sums packed and scaled by vpdpwssd, the 8 rows' lane sums reduced together,
 * the block's float steps for 8 rows in one 256-bit register (each row's scales in its own lane; the
 * products dx * d as the portable dot forms them). The same bits as the one-token dot. */
static inline __m512i idx16r(int a, int b, int c, int d) { /* idx16 for the low half, 16 further on for the high */
    const long long r = 0x0001000100010001LL;
    return _mm512_set_epi64((d + 16) * r, (c + 16) * r, (b + 16) * r, (a + 16) * r, d * r, c * r, b * r, a * r);
}
static inline __m512i two_rows(const uint8_t *a, const uint8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

static inline __attribute__((always_inline)) void kq_rows8(spill_dtype w, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                           const spill_block_q8_k *y, float *out) {
    const int64_t nb = n / SPILL_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0xF);
    const __m256i order = _mm256_setr_epi32(KQ_ORDER);
    __m256 acc = _mm256_setzero_ps();
    const size_t xbytes = w == SPILL_DT_Q4_K ? sizeof(spill_block_q4_k) : sizeof(spill_block_q6_k);
    for (int64_t i = 0; i < nb; i++) {
        const spill_block_q8_k *yb = y + i;
        spill_rows_prefetch_blocks(wrow, rb, 8, (uint64_t)i * xbytes, xbytes, 0); /* as one stream (kernels/dot.h) */
        __m512i yq[8];
        for (int j = 0; j < 8; j++) yq[j] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(yb->qs + 32 * j)));
        const __m512i bs = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)yb->bsums));
        __m512i si[4], sm[4];
        float dxs[8], mxs[8];
        if (w == SPILL_DT_Q4_K) {
            /* the token's 32-value sums, as 16-bit lanes 8-15 of each half (where the rows' mins are) */
            __m128i ps = _mm256_cvtepi32_epi16(_mm256_madd_epi16(_mm512_castsi512_si256(bs), _mm256_set1_epi16(1)));
            const __m512i psv = _mm512_broadcast_i64x4(_mm256_inserti128_si256(_mm256_setzero_si256(), ps, 1));
            for (int p = 0; p < 4; p++) {
                const spill_block_q4_k *xa = (const spill_block_q4_k *)(wrow + (uint64_t)(2 * p) * rb) + i;
                const spill_block_q4_k *xb = (const spill_block_q4_k *)(wrow + (uint64_t)(2 * p + 1) * rb) + i;
                dxs[2 * p] = h2f(xa->d), dxs[2 * p + 1] = h2f(xb->d);
                mxs[2 * p] = h2f(xa->dmin), mxs[2 * p + 1] = h2f(xb->dmin);
                __m512i s16 = _mm512_inserti64x4(_mm512_castsi256_si512(q4_k_scales16(xa->scales)), q4_k_scales16(xb->scales), 1);
                si[p] = _mm512_setzero_si512();
                for (int q = 0; q < 4; q++) {
                    __m512i qb = two_rows(xa->qs + 32 * q, xb->qs + 32 * q);
                    __m512i lo = _mm512_and_si512(qb, m4), hi = _mm512_and_si512(_mm512_srli_epi16(qb, 4), m4);
                    __m512i sq = _mm512_permutexvar_epi16(idx16r(2 * q, 2 * q + 1, 2 * q, 2 * q + 1), s16);
                    si[p] = _mm512_dpwssd_epi32(si[p], sums2(lo, yq[2 * q], hi, yq[2 * q + 1]), sq);
                }
                sm[p] = _mm512_madd_epi16(s16, psv); /* each row's mn_j times the token's sum j */
            }
        } else {
            for (int p = 0; p < 4; p++) {
                const spill_block_q6_k *xa = (const spill_block_q6_k *)(wrow + (uint64_t)(2 * p) * rb) + i;
                const spill_block_q6_k *xb = (const spill_block_q6_k *)(wrow + (uint64_t)(2 * p + 1) * rb) + i;
                dxs[2 * p] = h2f(xa->d), dxs[2 * p + 1] = h2f(xb->d);
                __m512i s16 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)xa->scales))),
                                                 _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)xb->scales)), 1);
                si[p] = _mm512_setzero_si512();
                for (int half = 0; half < 2; half++) {
                    __m512i l0 = two_rows(xa->ql + 64 * half, xb->ql + 64 * half);
                    __m512i l1 = two_rows(xa->ql + 64 * half + 32, xb->ql + 64 * half + 32);
                    __m512i h = two_rows(xa->qh + 32 * half, xb->qh + 32 * half);
                    __m512i qv[4];
                    q6_k_values(l0, l1, h, qv);
                    for (int k4 = 0; k4 < 4; k4 += 2) {
                        int k = 4 * half + k4;
                        __m512i sk = _mm512_permutexvar_epi16(idx16r(2 * k, 2 * k + 2, 2 * k + 1, 2 * k + 3), s16);
                        si[p] = _mm512_dpwssd_epi32(si[p], sums2(qv[k4], yq[k], qv[k4 + 1], yq[k + 1]), sk);
                    }
                }
                /* the offset of 32: -32 * sc_g times the token's 16-value sum g */
                si[p] = _mm512_dpwssd_epi32(si[p], bs, _mm512_sub_epi16(_mm512_setzero_si512(), _mm512_slli_epi16(s16, 5)));
            }
        }
        const __m256 yd = _mm256_set1_ps(yb->d);
        const __m256 dd = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(dxs), order), yd);
        acc = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(kq_reduce(si[0], si[1], si[2], si[3])), acc);
        if (w == SPILL_DT_Q4_K) {
            const __m256 md = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(mxs), order), yd);
            acc = _mm256_fnmadd_ps(md, _mm256_cvtepi32_ps(kq_reduce(sm[0], sm[1], sm[2], sm[3])), acc);
        }
    }
    static const int row[8] = {KQ_ORDER};
    float a[8];
    _mm256_storeu_ps(a, acc);
    for (int l = 0; l < 8; l++) out[row[l]] = a[l];
}

int spill_dots_kquant_rows_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out) {
    const uint8_t *wrow = wrows;
    int r = 0;
    for (; r + 8 <= nr; r += 8) {
        if (w == SPILL_DT_Q4_K) kq_rows8(SPILL_DT_Q4_K, n, wrow + (uint64_t)r * rb, rb, act, out + r);
        else kq_rows8(SPILL_DT_Q6_K, n, wrow + (uint64_t)r * rb, rb, act, out + r);
    }
    return r; /* rows done; the caller does the rest */
}

/* ---- Rows in lanes: 16 rows of Q8_0, Q4_0 or Q4_1 against any number of prepared tokens ----
 *
 * The tiles above keep a (row, token)'s 8 lanes side by side, so every block pays a scale product and
 * a conversion per pair of tokens for each row, and the rows' 4-bit values are unpacked again for
 * every call. Here a 512-bit register holds one lane of 16 rows: lane group l (values 4l..4l+3 of a
 * block) of rows 0-15 against one token, whose 4 bytes of that group come broadcast from memory in the
 * instruction itself (vpdpbusd's {1to16} operand). One scale product then serves the 16 rows and the 8
 * lane groups of a block, and a token's 8 lane registers end in the same pairwise sum as spill_hsum8,
 * done across registers. Every number is the one-token dot's: the lane's exact integer sum of 4
 * products, converted, fused-multiply-added with the product dx * dy in block order; Q4_1's min term
 * in its own chain of fused multiply-adds; the same reduction.
 *
 * spill_dots_panel_pack_vnni lays the 16 rows out once (per matmul and chunk of tokens), per block:
 * 8 x 64 bytes, lane group l's 4 bytes of each row, as unsigned bytes (4-bit values as they are;
 * Q8_0's values + 128, whose excess -128 * (the token's sum of the group's 4 values) is the lane's
 * starting value, as Q4_0's -8 * that sum is), then the 16 rows' d as floats, then (Q4_1) their m. */
#define PANEL_BLOCK (8 * 64 + 64 + 64)

size_t spill_dots_qpanel_bytes(int64_t n) { return (size_t)(n / SPILL_QK) * PANEL_BLOCK; }

/* z[m]: rows 4m..4m+3's 16 bytes at off, a row per 128-bit lane (4 loads, 3 of them inserted). Row r at
   w + r * rb: 16 rows addressed from 4 bases and two strides, where an array of 16 pointers kept the
   compiler moving them between vector and general registers on every load */
static inline __attribute__((always_inline)) void rows16_load(const uint8_t *w, uint64_t rb, size_t off, __m512i z[4]) {
    const uint64_t rb3 = 3 * rb;
    for (int m = 0; m < 4; m++) {
        const uint8_t *q = w + off + (uint64_t)(4 * m) * rb;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + rb)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + 2 * rb)), 2);
        z[m] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + rb3)), 3);
    }
}
/* 16 rows' 16 bytes at off turned so that o[c] holds dword c of all 16 rows: lane 4j + k holds row 4k + j
   (PANEL_ROW); the 4 x 4 transposes within 128-bit lanes */
static inline __attribute__((always_inline)) void rows16(const uint8_t *w, uint64_t rb, size_t off, __m512i o[4]) {
    __m512i z[4];
    rows16_load(w, rb, off, z);
    __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    o[0] = _mm512_unpacklo_epi64(t0, t2), o[1] = _mm512_unpackhi_epi64(t0, t2);
    o[2] = _mm512_unpacklo_epi64(t1, t3), o[3] = _mm512_unpackhi_epi64(t1, t3);
}
/* rows16's o[0] alone */
static inline __attribute__((always_inline)) __m512i rows16_first(const uint8_t *w, uint64_t rb, size_t off) {
    __m512i z[4];
    rows16_load(w, rb, off, z);
    return _mm512_unpacklo_epi64(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpacklo_epi32(z[2], z[3]));
}
/* the row in lane p of a panel's registers (its own inverse) */
#define PANEL_ROW(p) (4 * ((p) % 4) + (p) / 4)

/* block i of 16 rows laid out: the rows' block at bw + r * rb; w a constant in each caller */
static inline __attribute__((always_inline)) void panel_pack_block(spill_dtype w, const uint8_t *bw, uint64_t rb, uint8_t *pb) {
    const size_t qoff = qblock_qs(w);
    const __m512i m4 = _mm512_set1_epi8(15);
    /* the first 4 bytes of each row's block: d (and Q4_1's m) */
    __m512i dm = rows16_first(bw, rb, 0);
    _mm512_storeu_ps(pb + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)));
    if (w == SPILL_DT_Q4_1) _mm512_storeu_ps(pb + 576, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))));
    __m512i q[8];
    rows16(bw, rb, qoff, q);
    if (w == SPILL_DT_Q8_0) {
        rows16(bw, rb, qoff + 16, q + 4);
        for (int l = 0; l < 8; l++) _mm512_storeu_si512(pb + 64 * l, _mm512_xor_si512(q[l], _mm512_set1_epi8((char)0x80)));
    } else {
        /* bytes 4c..4c+3: values 4c.. in their low nibbles (group c), 16 + 4c.. in the high (group 4 + c) */
        for (int c = 0; c < 4; c++) {
            _mm512_storeu_si512(pb + 64 * c, _mm512_and_si512(q[c], m4));
            _mm512_storeu_si512(pb + 64 * (4 + c), _mm512_and_si512(_mm512_srli_epi16(q[c], 4), m4));
        }
    }
}

/* The blocks of nr rows (row r at wr + r * rb, blocks of xb bytes) laid out one after another, pb bytes
 * each in the panel, by PACK(block's rows, their stride, the panel's block). With 16 rows the rows are
 * read where they lie; with fewer, each block's rows are copied first and rows nr..15 repeat row 0 (their
 * results are not stored). */
#define PACK_ROWS(nb, wr, rb, nr, xb, panel, pbytes, PACK)                                                      \
    do {                                                                                                      \
        if ((nr) == 16) {                                                                                     \
            for (int64_t i_ = 0; i_ < (nb); i_++)                                                             \
                PACK((const uint8_t *)(wr) + (uint64_t)i_ * (xb), (rb), (uint8_t *)(panel) + (size_t)i_ * (pbytes)); \
        } else {                                                                                              \
            uint8_t tmp_[16 * 256]; /* the largest block, Q6_K's 210 bytes, 16 times */                    \
            _Static_assert(16 * sizeof(spill_block_q6_k) <= sizeof tmp_, "a block of 16 rows fits");           \
            for (int64_t i_ = 0; i_ < (nb); i_++) {                                                           \
                for (int r_ = 0; r_ < 16; r_++)                                                               \
                    memcpy(tmp_ + (size_t)r_ * (xb),                                                          \
                           (const uint8_t *)(wr) + (r_ < (nr) ? (uint64_t)r_ * (rb) : 0) + (uint64_t)i_ * (xb), (xb)); \
                PACK(tmp_, (uint64_t)(xb), (uint8_t *)(panel) + (size_t)i_ * (pbytes));                       \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)

#define PACK_Q8_0(bw, rb, pb) panel_pack_block(SPILL_DT_Q8_0, bw, rb, pb)
#define PACK_Q4_0(bw, rb, pb) panel_pack_block(SPILL_DT_Q4_0, bw, rb, pb)
#define PACK_Q4_1(bw, rb, pb) panel_pack_block(SPILL_DT_Q4_1, bw, rb, pb)

void spill_dots_panel_pack_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, void *panel) {
    const int64_t nb = n / SPILL_QK;
    const size_t xb = qblock_bytes(w);
    switch (w) {
    case SPILL_DT_Q8_0: PACK_ROWS(nb, wrows, rb, nr, xb, panel, PANEL_BLOCK, PACK_Q8_0); break;
    case SPILL_DT_Q4_0: PACK_ROWS(nb, wrows, rb, nr, xb, panel, PANEL_BLOCK, PACK_Q4_0); break;
    default: PACK_ROWS(nb, wrows, rb, nr, xb, panel, PANEL_BLOCK, PACK_Q4_1); break;
    }
}

/* U (1 or 2) tokens against the packed panel: token u's activations at a[u] (its Q8_0/Q8_1 row), its
 * prepared floats at s[u] (s[u][i * 8] its d in block i, s[u][i * 8 + 4] Q4_1's s), its lanes' starting
 * values at c[u] (Q4_0, Q8_0: c[u][i * cs + l]); out[u][r] for r < nr */
static inline __attribute__((always_inline)) void panel_tokens(spill_dtype w, int U, int64_t nb, const uint8_t *panel,
                                                               const uint8_t *const a[2], const float *const s[2],
                                                               const int32_t *const c[2], int64_t cs, float *const out[2],
                                                               int nr, const uint8_t *pf, uint64_t pflen) {
    const size_t ybytes = w == SPILL_DT_Q4_1 ? sizeof(spill_block_q8_1) : sizeof(spill_block_q8_0);
    const size_t yqs = w == SPILL_DT_Q4_1 ? offsetof(spill_block_q8_1, qs) : offsetof(spill_block_q8_0, qs);
    __m512 acc[2][8], sm[2];
    for (int u = 0; u < U; u++) {
        for (int l = 0; l < 8; l++) acc[u][l] = _mm512_setzero_ps();
        sm[u] = _mm512_setzero_ps();
    }
    const uint64_t per = (pflen + (uint64_t)nb - 1) / (uint64_t)nb;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *pb = panel + (size_t)i * PANEL_BLOCK;
        for (uint64_t k = (uint64_t)i * per; k < (uint64_t)(i + 1) * per && k < pflen; k += 64)
            _mm_prefetch((const char *)pf + k, _MM_HINT_T0);
        const __m512 d = _mm512_loadu_ps(pb + 512);
        __m512 dd[2];
        const uint8_t *y[2];
        for (int u = 0; u < U; u++) {
            dd[u] = _mm512_mul_ps(d, _mm512_set1_ps(s[u][i * 8]));
            y[u] = a[u] + (uint64_t)i * ybytes + yqs;
        }
        for (int l = 0; l < 8; l++) {
            const __m512i q = _mm512_loadu_si512(pb + 64 * l);
            for (int u = 0; u < U; u++) {
                __m512i z = w == SPILL_DT_Q4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(spill_ld32(c[u] + i * cs + l));
                __m512i v = _mm512_dpbusd_epi32(z, q, _mm512_set1_epi32(spill_ld32(y[u] + 4 * l)));
                acc[u][l] = _mm512_fmadd_ps(dd[u], _mm512_cvtepi32_ps(v), acc[u][l]);
            }
        }
        if (w == SPILL_DT_Q4_1) {
            const __m512 m = _mm512_loadu_ps(pb + 576);
            for (int u = 0; u < U; u++) sm[u] = _mm512_fmadd_ps(m, _mm512_set1_ps(s[u][i * 8 + 4]), sm[u]);
        }
    }
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    const __m512i rows = _mm512_setr_epi32(PANEL_ROW(0), PANEL_ROW(1), PANEL_ROW(2), PANEL_ROW(3), PANEL_ROW(4),
                                           PANEL_ROW(5), PANEL_ROW(6), PANEL_ROW(7), PANEL_ROW(8), PANEL_ROW(9),
                                           PANEL_ROW(10), PANEL_ROW(11), PANEL_ROW(12), PANEL_ROW(13), PANEL_ROW(14),
                                           PANEL_ROW(15));
    for (int u = 0; u < U; u++) {
        /* spill_hsum8: (l0 + l4) + (l2 + l6), then + ((l1 + l5) + (l3 + l7)) */
        __m512 r0 = _mm512_add_ps(acc[u][0], acc[u][4]), r1 = _mm512_add_ps(acc[u][1], acc[u][5]);
        __m512 r2 = _mm512_add_ps(acc[u][2], acc[u][6]), r3 = _mm512_add_ps(acc[u][3], acc[u][7]);
        __m512 t = _mm512_add_ps(_mm512_add_ps(r0, r2), _mm512_add_ps(r1, r3));
        if (w == SPILL_DT_Q4_1) t = _mm512_add_ps(t, sm[u]);
        _mm512_mask_storeu_ps(out[u], live, _mm512_permutexvar_ps(rows, t)); /* lane p held row PANEL_ROW(p) */
    }
}

#define PANEL_RUN(w)                                                                                              \
    do {                                                                                                          \
        int t_ = 0;                                                                                               \
        for (; t_ + 2 <= nt; t_ += 2) {                                                                           \
            const uint8_t *a_[2];                                                                                 \
            const float *s_[2];                                                                                   \
            const int32_t *c_[2];                                                                                 \
            float *o_[2];                                                                                         \
            for (int u = 0; u < 2; u++) {                                                                         \
                int tt = t_ + u;                                                                                  \
                a_[u] = act + (uint64_t)tt * stride;                                                              \
                s_[u] = sc + (size_t)(tt / T) * pt + tt % T;                                                      \
                c_[u] = (const int32_t *)(sc + (size_t)(tt / T) * pt + cofs) + (tt % T) * 8;                       \
                o_[u] = out + (int64_t)tt * ldo;                                                                  \
            }                                                                                                     \
            /* the next rows, a stretch of pflen bytes, prefetched across the tokens' work: each pair its share */ \
            uint64_t p0_ = pflen * (uint64_t)t_ / (uint64_t)nt, p1_ = pflen * (uint64_t)(t_ + 2) / (uint64_t)nt;  \
            panel_tokens(w, 2, nb, panel, a_, s_, c_, 8 * T, o_, nr, pf + p0_, p1_ - p0_);                        \
        }                                                                                                         \
        if (t_ < nt) { /* an odd token last */                                                                    \
            const uint8_t *a_[2] = {act + (uint64_t)t_ * stride, NULL};                                           \
            const float *s_[2] = {sc + (size_t)(t_ / T) * pt + t_ % T, NULL};                                     \
            const int32_t *c_[2] = {(const int32_t *)(sc + (size_t)(t_ / T) * pt + cofs) + (t_ % T) * 8, NULL};   \
            float *o_[2] = {out + (int64_t)t_ * ldo, NULL};                                                       \
            uint64_t p0_ = pflen * (uint64_t)t_ / (uint64_t)nt;                                                   \
            panel_tokens(w, 1, nb, panel, a_, s_, c_, 8 * T, o_, nr, pf + p0_, pflen - p0_);                      \
        }                                                                                                         \
    } while (0)

void spill_dots_panel_vnni(spill_dtype w, int64_t n, const void *panel, int nr, const void *actv, uint64_t stride, int nt,
                           const float *sc, size_t pt, float *out, int64_t ldo, const void *next, uint64_t next_len) {
    const uint8_t *act = actv, *pf = next ? next : (const uint8_t *)panel; /* nothing to prefetch: pflen 0 */
    const uint64_t pflen = next ? next_len : 0;
    const int64_t nb = n / SPILL_QK;
    /* where the lanes' starting values are in a tile's prepared floats (spill_dots_prepare_avx2): past the
       scales for Q4_0; past the scales and the values + 128 for Q8_0 */
    const size_t cofs = (size_t)nb * 8 + (w == SPILL_DT_Q8_0 ? (size_t)nb * 8 * T : 0);
    switch (w) {
    case SPILL_DT_Q8_0: PANEL_RUN(SPILL_DT_Q8_0); break;
    case SPILL_DT_Q4_0: PANEL_RUN(SPILL_DT_Q4_0); break;
    default: PANEL_RUN(SPILL_DT_Q4_1); break;
    }
}

/* ---- Rows in lanes for the K-quants (Q4_K, Q6_K) against Q8_K ----
 *
 * The same layout: lane group g (values 4g..4g+3 of a 256-value super-block) of 16 rows in a register,
 * the token's 4 bytes broadcast. A sub-block's (Q4_K: 32 values; Q6_K: 16) lane groups are summed
 * exactly by chained vpdpbusd, multiplied by the rows' scales (vpmulld) and added: the one-token dot's
 * integer sumi; Q4_K's minima (sum of mn_j times the token's 32-value sums) and Q6_K's offset (sum of
 * sc_g times the token's 16-value sums) by vpdpwssd on 16-bit pairs; then the block's float steps
 * (spill_q4_k_block / spill_q6_k_block) for 16 rows in one register. The same bits.
 *
 * The panel per super-block: 64 lane groups x 64 bytes of unsigned values (Q4_K 0-15, Q6_K 0-63), the
 * scales as 32-bit lanes (Q4_K 8, Q6_K 16), the 16-bit pairs (Q4_K: mn_2k, mn_2k+1; Q6_K: sc_2k,
 * sc_2k+1; 4 or 8 of them), d (and Q4_K's dmin) as floats. */
#define KPANEL_SC (64 * 64)
#define KPANEL_PAIRS (KPANEL_SC + 16 * 64)
#define KPANEL_D (KPANEL_PAIRS + 8 * 64)
#define KPANEL_BLOCK (KPANEL_D + 2 * 64)

size_t spill_dots_kpanel_bytes(int64_t n) { return (size_t)(n / SPILL_QK_K) * KPANEL_BLOCK; }

/* byte k of each 32-bit lane, sign-extended (Q6_K's scales) */
static inline __m512i sbyte(__m512i v, int k) { return _mm512_srai_epi32(_mm512_slli_epi32(v, 24 - 8 * k), 24); }
/* a in the low 16 bits of each lane, b in the high */
static inline __m512i pair16(__m512i a, __m512i b) {
    return _mm512_or_si512(_mm512_and_si512(a, _mm512_set1_epi32(0xffff)), _mm512_slli_epi32(b, 16));
}

/* a super-block of 16 rows laid out: the rows' block at bw + r * rb; w a constant in each caller */
static inline __attribute__((always_inline)) void kpanel_pack_block(spill_dtype w, const uint8_t *bw, uint64_t rb, uint8_t *pb) {
    const __m512i m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(0x30);
    {
        __m512i *q = (__m512i *)pb, *sc = (__m512i *)(pb + KPANEL_SC), *pairs = (__m512i *)(pb + KPANEL_PAIRS);
        if (w == SPILL_DT_Q4_K) {
            __m512i dm = rows16_first(bw, rb, 0); /* d, dmin */
            _mm512_storeu_ps(pb + KPANEL_D, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)));
            _mm512_storeu_ps(pb + KPANEL_D + 64, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))));
            __m512i s[4]; /* the 12 scale bytes (and 4 of the values) */
            rows16(bw, rb, offsetof(spill_block_q4_k, scales), s);
            __m512i scv[8], mnv[8];
            const __m512i b63 = _mm512_set1_epi32(63), b15 = _mm512_set1_epi32(15);
            for (int j = 0; j < 4; j++) { /* as spill_q4_k_scales */
                scv[j] = _mm512_and_si512(_mm512_srli_epi32(s[0], 8 * j), b63);
                mnv[j] = _mm512_and_si512(_mm512_srli_epi32(s[1], 8 * j), b63);
                scv[j + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s[2], 8 * j), b15),
                                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(s[0], 8 * j + 6), _mm512_set1_epi32(3)), 4));
                mnv[j + 4] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(s[2], 8 * j + 4), b15),
                                             _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(s[1], 8 * j + 6), _mm512_set1_epi32(3)), 4));
            }
            for (int j = 0; j < 8; j++) _mm512_storeu_si512(sc + j, scv[j]);
            for (int k = 0; k < 4; k++) _mm512_storeu_si512(pairs + k, pair16(mnv[2 * k], mnv[2 * k + 1]));
            /* values: qs chunk c (bytes 4c..4c+3) of sub-block pair jp = c / 8: low nibbles are lane group
               16 jp + c % 8 (sub-block 2 jp), high nibbles 16 jp + 8 + c % 8 */
            for (int m = 0; m < 8; m++) {
                __m512i o[4];
                rows16(bw, rb, offsetof(spill_block_q4_k, qs) + 16 * (uint64_t)m, o);
                for (int k = 0; k < 4; k++) {
                    int c = 4 * m + k, g = 16 * (c / 8) + c % 8;
                    _mm512_storeu_si512(q + g, _mm512_and_si512(o[k], m4));
                    _mm512_storeu_si512(q + g + 8, _mm512_and_si512(_mm512_srli_epi16(o[k], 4), m4));
                }
            }
        } else {
            __m512i s[4];
            rows16(bw, rb, offsetof(spill_block_q6_k, scales), s); /* 16 signed scales */
            __m512i scv[16];
            for (int g = 0; g < 16; g++) scv[g] = sbyte(s[g / 4], g % 4);
            for (int g = 0; g < 16; g++) _mm512_storeu_si512(sc + g, scv[g]);
            for (int k = 0; k < 8; k++) _mm512_storeu_si512(pairs + k, pair16(scv[2 * k], scv[2 * k + 1]));
            __m512i dd[4]; /* bytes 194..209 of each block: d is the top half of dword 3 */
            rows16(bw, rb, offsetof(spill_block_q6_k, d) - 14, dd);
            _mm512_storeu_ps(pb + KPANEL_D, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd[3], 16))));
            for (int h = 0; h < 2; h++) {
                __m512i l0[8], l1[8], hb[8];
                for (int m = 0; m < 2; m++) {
                    rows16(bw, rb, offsetof(spill_block_q6_k, ql) + 64 * (uint64_t)h + 16 * (uint64_t)m, l0 + 4 * m);
                    rows16(bw, rb, offsetof(spill_block_q6_k, ql) + 64 * (uint64_t)h + 32 + 16 * (uint64_t)m, l1 + 4 * m);
                    rows16(bw, rb, offsetof(spill_block_q6_k, qh) + 32 * (uint64_t)h + 16 * (uint64_t)m, hb + 4 * m);
                }
                /* chunk k (l = 4k..4k+3) of this half: values 128h + l, + 32, + 64, + 96 (as spill_dequant_q6_k) */
                for (int k = 0; k < 8; k++) {
                    __m512i L0 = l0[k], L1 = l1[k], H = hb[k];
                    _mm512_storeu_si512(q + 32 * h + k, _mm512_or_si512(_mm512_and_si512(L0, m4), _mm512_and_si512(_mm512_slli_epi16(H, 4), m2)));
                    _mm512_storeu_si512(q + 32 * h + 8 + k, _mm512_or_si512(_mm512_and_si512(L1, m4), _mm512_and_si512(_mm512_slli_epi16(H, 2), m2)));
                    _mm512_storeu_si512(q + 32 * h + 16 + k,
                                        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L0, 4), m4), _mm512_and_si512(H, m2)));
                    _mm512_storeu_si512(q + 32 * h + 24 + k, _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L1, 4), m4),
                                                                             _mm512_and_si512(_mm512_srli_epi16(H, 2), m2)));
                }
            }
        }
    }
}

#define PACK_Q4_K(bw, rb, pb) kpanel_pack_block(SPILL_DT_Q4_K, bw, rb, pb)
#define PACK_Q6_K(bw, rb, pb) kpanel_pack_block(SPILL_DT_Q6_K, bw, rb, pb)

void spill_dots_kpanel_pack_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, void *panel) {
    const int64_t nb = n / SPILL_QK_K;
    if (w == SPILL_DT_Q4_K)
        PACK_ROWS(nb, wrows, rb, nr, sizeof(spill_block_q4_k), panel, KPANEL_BLOCK, PACK_Q4_K);
    else
        PACK_ROWS(nb, wrows, rb, nr, sizeof(spill_block_q6_k), panel, KPANEL_BLOCK, PACK_Q6_K);
}

/* 4 tokens (a prepared tile: floats at sc, SPILL_KQ_PREP per super-block; activations at act + t * stride)
   against the K-quant panel; out[t * ldo + r] for r < nr */
static inline __attribute__((always_inline)) void kpanel_tile(spill_dtype w, int64_t nb, const uint8_t *panel,
                                                              const uint8_t *act, uint64_t stride, const float *sc,
                                                              float *out, int64_t ldo, int nr, const uint8_t *pf,
                                                              uint64_t pflen) {
    enum { U = 4 };
    __m512 acc[U];
    for (int u = 0; u < U; u++) acc[u] = _mm512_setzero_ps();
    const uint64_t per = (pflen + (uint64_t)nb - 1) / (uint64_t)nb;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *pb = panel + (size_t)i * KPANEL_BLOCK;
        for (uint64_t k = (uint64_t)i * per; k < (uint64_t)(i + 1) * per && k < pflen; k += 64)
            _mm_prefetch((const char *)pf + k, _MM_HINT_T0);
        const __m512i *q = (const __m512i *)pb, *scl = (const __m512i *)(pb + KPANEL_SC);
        const __m512i *pairs = (const __m512i *)(pb + KPANEL_PAIRS);
        const spill_block_q8_k *y[U];
        for (int u = 0; u < U; u++) y[u] = (const spill_block_q8_k *)(act + (uint64_t)u * stride) + i;
        __m512i sumi[U], side[U];
        for (int u = 0; u < U; u++) sumi[u] = side[u] = _mm512_setzero_si512();
        const int G = w == SPILL_DT_Q4_K ? 8 : 16, per_g = 64 / G; /* lane groups per scale */
        for (int gs = 0; gs < G; gs += 2) {
            for (int u = 0; u < U; u++) {
                __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
                for (int l = 0; l < per_g; l++) {
                    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(q + gs * per_g + l),
                                             _mm512_set1_epi32(spill_ld32(y[u]->qs + 4 * (gs * per_g + l))));
                    a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(q + (gs + 1) * per_g + l),
                                             _mm512_set1_epi32(spill_ld32(y[u]->qs + 4 * ((gs + 1) * per_g + l))));
                }
                sumi[u] = _mm512_add_epi32(sumi[u], _mm512_add_epi32(_mm512_mullo_epi32(a0, _mm512_loadu_si512(scl + gs)),
                                                                     _mm512_mullo_epi32(a1, _mm512_loadu_si512(scl + gs + 1))));
            }
        }
        const float *b = sc + i * SPILL_KQ_PREP;
        if (w == SPILL_DT_Q4_K) {
            /* the minima: mn_2k, mn_2k+1 against the token's 32-value sums 2k, 2k + 1 (prepared as 16-bit pairs) */
            const uint8_t *ps = (const uint8_t *)(b + 4 + 256 + 32); /* [pair of sub-blocks][token]: two int16 */
            for (int k = 0; k < 4; k++)
                for (int u = 0; u < U; u++)
                    side[u] = _mm512_dpwssd_epi32(side[u], _mm512_loadu_si512(pairs + k), _mm512_set1_epi32(spill_ld32(ps + 4 * (k * 4 + u))));
            const __m512 dx = _mm512_loadu_ps(pb + KPANEL_D), mx = _mm512_loadu_ps(pb + KPANEL_D + 64);
            for (int u = 0; u < U; u++) {
                const __m512 yd = _mm512_set1_ps(b[u]);
                acc[u] = _mm512_fmadd_ps(_mm512_mul_ps(dx, yd), _mm512_cvtepi32_ps(sumi[u]), acc[u]);
                acc[u] = _mm512_fnmadd_ps(_mm512_mul_ps(mx, yd), _mm512_cvtepi32_ps(side[u]), acc[u]);
            }
        } else {
            /* the offset of 32: sc_g times the token's 16-value sums, two g at once */
            for (int k = 0; k < 8; k++)
                for (int u = 0; u < U; u++)
                    side[u] = _mm512_dpwssd_epi32(side[u], _mm512_loadu_si512(pairs + k), _mm512_set1_epi32(spill_ld32(y[u]->bsums + 2 * k)));
            const __m512 dx = _mm512_loadu_ps(pb + KPANEL_D);
            for (int u = 0; u < U; u++) {
                const __m512i t = _mm512_sub_epi32(sumi[u], _mm512_slli_epi32(side[u], 5));
                acc[u] = _mm512_fmadd_ps(_mm512_mul_ps(dx, _mm512_set1_ps(b[u])), _mm512_cvtepi32_ps(t), acc[u]);
            }
        }
    }
    const __mmask16 live = (__mmask16)((1u << nr) - 1);
    const __m512i rows = _mm512_setr_epi32(PANEL_ROW(0), PANEL_ROW(1), PANEL_ROW(2), PANEL_ROW(3), PANEL_ROW(4),
                                           PANEL_ROW(5), PANEL_ROW(6), PANEL_ROW(7), PANEL_ROW(8), PANEL_ROW(9),
                                           PANEL_ROW(10), PANEL_ROW(11), PANEL_ROW(12), PANEL_ROW(13), PANEL_ROW(14),
                                           PANEL_ROW(15));
    for (int u = 0; u < U; u++) _mm512_mask_storeu_ps(out + (int64_t)u * ldo, live, _mm512_permutexvar_ps(rows, acc[u]));
}

void spill_dots_kpanel_vnni(spill_dtype w, int64_t n, const void *panel, int nr, const void *actv, uint64_t stride, int nt,
                            const float *sc, size_t pt, float *out, int64_t ldo, const void *next, uint64_t next_len) {
    const uint8_t *act = actv, *pf = next ? next : (const uint8_t *)panel; /* nothing to prefetch: pflen 0 */
    const uint64_t pflen = next ? next_len : 0;
    const int64_t nb = n / SPILL_QK_K;
    for (int t = 0; t + T <= nt; t += T) {
        uint64_t p0 = pflen * (uint64_t)t / (uint64_t)nt, p1 = pflen * (uint64_t)(t + T) / (uint64_t)nt;
        if (w == SPILL_DT_Q4_K)
            kpanel_tile(SPILL_DT_Q4_K, nb, panel, act + (uint64_t)t * stride, stride, sc + (size_t)(t / T) * pt,
                        out + (int64_t)t * ldo, ldo, nr, pf + p0, p1 - p0);
        else
            kpanel_tile(SPILL_DT_Q6_K, nb, panel, act + (uint64_t)t * stride, stride, sc + (size_t)(t / T) * pt,
                        out + (int64_t)t * ldo, ldo, nr, pf + p0, p1 - p0);
    }
}

/* ---- Q8_0, Q4_0 and Q4_1 against one token (decode), 8 rows at once ----
 * Rows 2p and 2p + 1 in register p's two halves, the token's block in both, one vpdpbusd for a block of
 * two rows (the AVX2 rows kernel takes maddubs, madd and, for Q8_0, two sign instructions per row): Q4_0's
 * and Q4_1's nibbles as they are, Q8_0's values + 128, each lane starting from the token's -8 or -128
 * times its sum. The 8 rows' scales are converted together, their products with the token's scale made
 * in one register (each the one-token dot's float product) and spread to the pairs by a permutation;
 * Q4_1's min terms go in one register of 8 rows' chains. The same bits as the one-token dot. */
static inline __attribute__((always_inline)) void q_rows8(spill_dtype w, int U, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                          const uint8_t *act, uint64_t stride, float *out, int64_t ldo) {
    enum { UMAX = 3 }; /* tokens at once: each row pair's loads and nibbles serve them all */
    const int64_t nb = n / SPILL_QK;
    const size_t xbytes = qblock_bytes(w);
    const size_t qoff = qblock_qs(w);
    const size_t ybytes = w == SPILL_DT_Q4_1 ? sizeof(spill_block_q8_1) : sizeof(spill_block_q8_0);
    const long long s4 = 0x0004000400040004LL; /* 128-bit lanes 1 and 3 shifted by 4: the high nibbles */
    const __m512i shift = _mm512_set_epi64(s4, s4, 0, 0, s4, s4, 0, 0), m4 = _mm512_set1_epi8(15);
    __m512i spread[4]; /* pair p: lanes 0-7 from row 2p's product, 8-15 from row 2p + 1's */
    for (int p = 0; p < 4; p++)
        spread[p] = _mm512_set_epi32(2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1, 2 * p + 1,
                                     2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p, 2 * p);
    __m512 acc[UMAX][4];
    __m256 summs[UMAX]; /* Q4_1: lane r, row r's sum of m * s */
    for (int u = 0; u < U; u++) {
        for (int p = 0; p < 4; p++) acc[u][p] = _mm512_setzero_ps();
        summs[u] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        __m512i yb[UMAX], start[UMAX];
        float dy[UMAX], sy[UMAX];
        for (int u = 0; u < U; u++) {
            const uint8_t *y = act + (uint64_t)u * stride + (uint64_t)i * ybytes, *yq;
            if (w == SPILL_DT_Q4_1) {
                const spill_block_q8_1 *y1 = (const spill_block_q8_1 *)y;
                yq = (const uint8_t *)y1->qs, dy[u] = h2f(y1->d), sy[u] = h2f(y1->s);
            } else {
                const spill_block_q8_0 *y0 = (const spill_block_q8_0 *)y;
                yq = (const uint8_t *)y0->qs, dy[u] = h2f(y0->d), sy[u] = 0;
            }
            yb[u] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)yq));
            start[u] = _mm512_setzero_si512();
            if (w == SPILL_DT_Q8_0) /* -128 * each lane's sum of 4 values */
                start[u] = _mm512_sub_epi32(start[u], _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), yb[u]), 7));
            else if (w == SPILL_DT_Q4_0)
                start[u] = _mm512_sub_epi32(start[u], _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), yb[u]), 3));
        }
        /* the 8 rows' d (and m) at once */
        __m128i dh = _mm_setzero_si128(), mh = _mm_setzero_si128();
        /* spelled out: _mm_insert_epi16's lane must be a constant, which a loop variable is not in a Debug
           build (and loading an array of the 8 after storing them stalls: 1.2-1.3x slower) */
#define DM(r)                                                                                 \
    do {                                                                                      \
        const uint8_t *x = wrow + (uint64_t)(r) * rb + (uint64_t)i * xbytes;                  \
        uint16_t d_, m_ = 0;                                                                  \
        memcpy(&d_, x, 2);                                                                    \
        if (w == SPILL_DT_Q4_1) memcpy(&m_, x + 2, 2);                                        \
        dh = _mm_insert_epi16(dh, (short)d_, r);                                              \
        mh = _mm_insert_epi16(mh, (short)m_, r);                                              \
    } while (0)
        spill_rows_prefetch_blocks(wrow, rb, 8, (uint64_t)i * xbytes, xbytes, 0); /* as one stream (kernels/dot.h) */
        DM(0); DM(1); DM(2); DM(3); DM(4); DM(5); DM(6); DM(7);
#undef DM
        const __m256 dx = _mm256_cvtph_ps(dh), mx = _mm256_cvtph_ps(mh);
        __m512 dd[UMAX];
        for (int u = 0; u < U; u++) {
            dd[u] = _mm512_castps256_ps512(_mm256_mul_ps(dx, _mm256_set1_ps(dy[u])));
            if (w == SPILL_DT_Q4_1) summs[u] = _mm256_fmadd_ps(mx, _mm256_set1_ps(sy[u]), summs[u]);
        }
        for (int p = 0; p < 4; p++) {
            const uint8_t *xa = wrow + (uint64_t)(2 * p) * rb + (uint64_t)i * xbytes + qoff;
            const uint8_t *xb = xa + rb;
            __m512i q;
            if (w == SPILL_DT_Q8_0) {
                q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)xa)),
                                       _mm256_loadu_si256((const __m256i *)xb), 1);
                q = _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
            } else {
                q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xa))),
                                       _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)xb)), 1);
                q = _mm512_and_si512(_mm512_srlv_epi16(q, shift), m4);
            }
            for (int u = 0; u < U; u++) {
                const __m512i l = _mm512_dpbusd_epi32(start[u], q, yb[u]);
                acc[u][p] = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread[p], dd[u]), _mm512_cvtepi32_ps(l), acc[u][p]);
            }
        }
    }
    for (int u = 0; u < U; u++) {
        float sm[8];
        _mm256_storeu_ps(sm, summs[u]);
        for (int p = 0; p < 4; p++) {
            float lanes[16];
            _mm512_storeu_ps(lanes, acc[u][p]);
            for (int h = 0; h < 2; h++) {
                float s = spill_hsum8(lanes + 8 * h);
                out[(int64_t)u * ldo + 2 * p + h] = w == SPILL_DT_Q4_1 ? s + sm[2 * p + h] : s;
            }
        }
    }
}

#define Q_ROWS8(w, U) q_rows8(w, U, n, wrow + (uint64_t)r * rb, rb, act + (uint64_t)t * stride, stride, out + (int64_t)t * ldo + r, ldo)

/* nr rows against nt tokens (token t at act + t * stride, its results at out + t * ldo), 8 rows and up to 3
   tokens at a time; returns the rows done (a multiple of 8) for every token */
int spill_dots_quant_rows_multi_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *actv,
                                     uint64_t stride, int nt, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows, *act = actv;
    int r = 0;
    for (; r + 8 <= nr; r += 8)
        for (int t = 0; t < nt;) {
            int U = nt - t >= 3 ? 3 : nt - t;
            switch (w) {
            case SPILL_DT_Q8_0:
                if (U == 3) Q_ROWS8(SPILL_DT_Q8_0, 3);
                else if (U == 2) Q_ROWS8(SPILL_DT_Q8_0, 2);
                else Q_ROWS8(SPILL_DT_Q8_0, 1);
                break;
            case SPILL_DT_Q4_0:
                if (U == 3) Q_ROWS8(SPILL_DT_Q4_0, 3);
                else if (U == 2) Q_ROWS8(SPILL_DT_Q4_0, 2);
                else Q_ROWS8(SPILL_DT_Q4_0, 1);
                break;
            default:
                if (U == 3) Q_ROWS8(SPILL_DT_Q4_1, 3);
                else if (U == 2) Q_ROWS8(SPILL_DT_Q4_1, 2);
                else Q_ROWS8(SPILL_DT_Q4_1, 1);
                break;
            }
            t += U;
        }
    return r;
}

int spill_dots_quant_rows_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out) {
    return spill_dots_quant_rows_multi_vnni(w, n, wrows, rb, nr, act, 0, 1, out, 0);
}
