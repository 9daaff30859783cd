/* The F32 and F16 tiles of kernels/dots_avx2.c (rows against 4 tokens) in 512-bit registers (BF16's, which
 * take BF16 activations and vdpbf16ps, are kernels/dots_bf16.c), for
 * CPUs with AVX-512 (F, VL, DQ). Compiled with those instructions enabled for this file only
 * (CMakeLists.txt); kernels/dots_avx2.c calls it only where spill_cpu_avx512() is true.
 *
 * Bit-identical to the AVX2 tile, hence to the one-token dot: every (row, token) keeps its own chain of
 * 8 lanes, each lane the same fused multiply-adds in the same order; a 512-bit register simply holds two
 * such chains side by side (the same row against tokens t and t + 1), so one instruction advances two
 * chains. Four rows against 8 tokens at once (two tiles): 32 chains in 16 registers, each row's 8
 * weights widened once into both halves of a register for the 8 tokens, each pair of tokens'
 * activations (prepared side by side once per matmul) loaded once for the four rows. The sums are
 * then taken chain by chain exactly as the one-token dot takes its 8 lanes (spill_hsum8), then the
 * same scalar tail. */
#include "dot.h"

#include <immintrin.h>
#include <math.h>

#define T SPILL_DOTS_TILE

/* 8 weights of row p from value i, widened to floats, in both halves */
static inline __attribute__((always_inline)) __m512 wide8x2(spill_dtype w, const uint8_t *p, int64_t i) {
    if (w == SPILL_DT_F16)
        return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i))));
    return _mm512_broadcast_f32x8(_mm256_loadu_ps((const float *)p + i));
}

static inline float wide1(spill_dtype w, const uint8_t *p, int64_t i) { /* the one-token dot's widening */
    if (w == SPILL_DT_F16) return _cvtsh_ss(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

/* The activations as the tile takes them, made once per matmul by spill_dots_prepare_avx2 (F16 ones
 * widened exactly, F32 ones copied): per tile of 4 tokens, for each 8 values from i (while i + 8 <= n)
 * the 4 tokens' 8 floats side by side, so a pair of tokens is one 512-bit load; then each token's values
 * after the last full 8. Loading two tokens' 8 floats into one register took a load and an insert per
 * pair, as many instructions as the multiply-adds themselves. */
static inline const float *pair_at(const float *tile, int64_t i, int h) { return tile + i * 4 + h * 16; }
static inline const float *tail_at(const float *tile, int64_t n, int t) {
    int64_t n8 = n & ~(int64_t)7;
    return tile + 4 * n8 + t * (n - n8) - n8; /* indexed by the value's own index k >= n8 */
}

/* R rows (1..4) against K tiles of 4 tokens (tile k's prepared floats at sc + k * pt): each row's 8
 * weights widened once for 4 K tokens, each pair of tokens loaded once for the R rows */
static inline __attribute__((always_inline)) void tile(spill_dtype w, int R, int K, int64_t n, const uint8_t *wrow,
                                                       uint64_t rb, const float *sc, size_t pt, float *out, int64_t ldo) {
    const size_t wbytes = w == SPILL_DT_F32 ? 4 : 2;
    const int64_t line = 64 / (int64_t)wbytes;
    const int P = 2 * K;
    __m512 acc[4][T]; /* acc[r][p]: row r against tokens 2p (low half) and 2p + 1 (high half) */
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) acc[r][p] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512 y[T];
        for (int p = 0; p < P; p++) y[p] = _mm512_loadu_ps(pair_at(sc + (p / 2) * pt, i, p % 2));
        for (int r = 0; r < R; r++) {
            if (i % line == 0)
                _mm_prefetch((const char *)wrow + r * rb + (size_t)i * wbytes + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
            __m512 x = wide8x2(w, wrow + r * rb, i);
            for (int p = 0; p < P; p++) acc[r][p] = _mm512_fmadd_ps(x, y[p], acc[r][p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < 4 * K; t++) {
            float l[16];
            _mm512_storeu_ps(l, acc[r][t / 2]);
            float s = spill_hsum8(l + 8 * (t % 2));
            const float *a = tail_at(sc + (t / 4) * pt, n, t % 4);
            for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, wrow + r * rb, k), a[k], s);
            out[(int64_t)t * ldo + r] = s;
        }
}

#define TILES(w, K)                                                                                              \
    do {                                                                                                         \
        int r_ = 0;                                                                                              \
        for (; r_ + 4 <= nr; r_ += 4) tile(w, 4, K, n, wrow + (uint64_t)r_ * rb, rb, sc, pt, out + r_, ldo);    \
        for (; r_ < nr; r_++) tile(w, 1, K, n, wrow + (uint64_t)r_ * rb, rb, sc, pt, out + r_, ldo);             \
    } while (0)

void spill_dots_wide_avx512(spill_dtype w, int ntiles, int64_t n, const void *wrows, uint64_t rb, int nr, const float *sc,
                            size_t pt, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows;
#if defined(SPILL_DOT_AVX512_BF16)
    if (w == SPILL_DT_BF16) { /* BF16 activations, two products a lane (kernels/dots_bf16.c) */
        spill_dots_bf16_avx512(ntiles, 4 * ntiles, n, wrows, rb, nr, sc, pt, out, ldo);
        return;
    }
#endif
    SPILL_ASSERT(w != SPILL_DT_BF16); /* its activations are BF16: the tiles below take F32 or F16 ones */
    if (ntiles == 2) {
        switch (w) {
        case SPILL_DT_F16: TILES(SPILL_DT_F16, 2); break;
        default: TILES(SPILL_DT_F32, 2); break;
        }
        return;
    }
    switch (w) {
    case SPILL_DT_F16: TILES(SPILL_DT_F16, 1); break;
    default: TILES(SPILL_DT_F32, 1); break;
    }
}

/* the prepared activations above, for nt / 4 tiles of tokens at act + t * stride (F16 or F32) */
void spill_dots_prepare_wide_avx512(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
    const int64_t n8 = n & ~(int64_t)7;
    for (int k = 0; k < nt / T; k++) {
        float *tile = sc + (size_t)k * T * (size_t)n;
        for (int t = 0; t < T; t++) {
            const uint8_t *a = (const uint8_t *)act + (uint64_t)(k * T + t) * stride;
            float *tail = (float *)tail_at(tile, n, t);
            if (w == SPILL_DT_F16) {
                const uint16_t *h = (const uint16_t *)a;
                for (int64_t i = 0; i < n8; i += 8)
                    _mm256_storeu_ps(tile + i * 4 + t * 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
                for (int64_t i = n8; i < n; i++) tail[i] = _cvtsh_ss(h[i]);
            } else {
                const float *f = (const float *)a;
                for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(tile + i * 4 + t * 8, _mm256_loadu_ps(f + i));
                for (int64_t i = n8; i < n; i++) tail[i] = f[i];
            }
        }
    }
}

/* Attention's scores against F32 keys: nr rows (row r at rows + r * rs) against nq <= 4 queries, out[i * ldo
 * + r] the one-token dot's bits (spill_dot_f32: 8 lanes of fused multiply-adds, spill_hsum8, then the
 * values past the last 8 one by one). Two rows share a register (row r in the low 8 lanes, r + 1 in the
 * high), each loaded once for the queries, whose 8 values come broadcast into both halves; the 8 lanes
 * are then summed pairwise within each half as spill_hsum8 does. The rows kernel took one query at a
 * time, loading every row again for each (23% of a 16-sequence decode at 400 positions). */
static inline __attribute__((always_inline)) void scores2(int NQ, int64_t n, const float *r0, const float *r1, const float *q,
                                                          int64_t qs, float *out, int64_t ldo, int two) {
    __m512 acc[4];
    for (int i = 0; i < NQ; i++) acc[i] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m512 k = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(r0 + c)), _mm256_loadu_ps(r1 + c), 1);
        for (int i = 0; i < NQ; i++)
            acc[i] = _mm512_fmadd_ps(k, _mm512_broadcast_f32x8(_mm256_loadu_ps(q + i * qs + c)), acc[i]);
    }
    for (int i = 0; i < NQ; i++) {
        /* per half: (l0 + l4, l1 + l5, l2 + l6, l3 + l7), then (r0 + r2, r1 + r3), then their sum */
        __m512 t = _mm512_add_ps(acc[i], _mm512_shuffle_f32x4(acc[i], acc[i], _MM_SHUFFLE(2, 3, 0, 1)));
        __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
        __m512 v = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(2, 3, 0, 1)));
        float s0 = _mm512_cvtss_f32(v), s1 = _mm256_cvtss_f32(_mm512_extractf32x8_ps(v, 1));
        for (int64_t j = c; j < n; j++) s0 = fmaf(r0[j], q[i * qs + j], s0), s1 = fmaf(r1[j], q[i * qs + j], s1);
        out[(int64_t)i * ldo] = s0;
        if (two) out[(int64_t)i * ldo + 1] = s1;
    }
}

void spill_scores_f32_avx512(int64_t n, const float *rows, int64_t rs, int nr, const float *q, int64_t qs, int nq, float *out,
                             int64_t ldo) {
    for (int i0 = 0; i0 < nq; i0 += 4) {
        int m = nq - i0 < 4 ? nq - i0 : 4;
        const float *qi = q + (int64_t)i0 * qs;
        float *o = out + (int64_t)i0 * ldo;
        const int64_t ahead = spill_key_rows_ahead(rs);
        for (int r = 0; r < nr; r += 2) {
            const float *r0 = rows + (int64_t)r * rs, *r1 = r + 1 < nr ? r0 + rs : r0;
            spill_prefetch_key_rows(rows, rs, n, r + ahead, 2, nr);
            int two = r + 1 < nr;
            switch (m) {
            case 1: scores2(1, n, r0, r1, qi, qs, o + r, ldo, two); break;
            case 2: scores2(2, n, r0, r1, qi, qs, o + r, ldo, two); break;
            case 3: scores2(3, n, r0, r1, qi, qs, o + r, ldo, two); break;
            default: scores2(4, n, r0, r1, qi, qs, o + r, ldo, two); break;
            }
        }
    }
}

#define AV_VEC __m512
#define AV_W 16
#define AV_LOAD(p) _mm512_loadu_ps(p)
#define AV_STORE(p, x) _mm512_storeu_ps(p, x)
#define AV_SET1(f) _mm512_set1_ps(f)
#define AV_FMA(b, x, acc) _mm512_fmadd_ps(b, x, acc)
#define AV_NAME spill_attn_values_avx512
#include "attn_values.h"
