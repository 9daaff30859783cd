/* The F32, F16 and BF16 tiles of kernels/dots_avx2.c (rows against 4 tokens) in 512-bit registers, for
 * CPUs with AVX-512 (F, VL, DQ). Compiled with those instructions enabled for this file only
 * (CMakeLists.txt); kernels/dots_avx2.c calls it only where spill_cpu_avx512() is true.
 *
 * Bit-identical to the AVX2 tile, hence to the one-token dot: every (row, token) keeps its own chain of
 * 8 lanes, each lane the same fused multiply-adds in the same order; a 512-bit register simply holds two
 * such chains side by side (the same row against tokens t and t + 1), so one instruction advances two
 * chains. Four rows at once: 16 chains in 8 registers, each row's 8 weights widened once into both
 * halves of a register, each pair of tokens' activations loaded once for the four rows. The sums are
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
    if (w == SPILL_DT_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)))),
            16));
    return _mm512_broadcast_f32x8(_mm256_loadu_ps((const float *)p + i));
}

static inline float wide1(spill_dtype w, const uint8_t *p, int64_t i) {
    if (w == SPILL_DT_F16) return _cvtsh_ss(((const uint16_t *)p)[i]);
    if (w == SPILL_DT_BF16) return spill_bf16_to_fp32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

/* R rows (1..4) against the 4 tokens (F32 activations: F16 ones come widened by the caller) */
static inline __attribute__((always_inline)) void tile(spill_dtype w, int R, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                       const uint8_t *act, uint64_t stride, float *out, int64_t ldo) {
    const size_t wbytes = w == SPILL_DT_F32 ? 4 : 2;
    const int64_t line = 64 / (int64_t)wbytes;
    __m512 acc[4][T / 2]; /* acc[r][p]: row r against tokens 2p (low half) and 2p + 1 (high half) */
    for (int r = 0; r < R; r++)
        for (int p = 0; p < T / 2; p++) acc[r][p] = _mm512_setzero_ps();
    const float *a[T];
    for (int t = 0; t < T; t++) a[t] = (const float *)(act + (uint64_t)t * stride);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m512 y[T / 2];
        for (int p = 0; p < T / 2; p++)
            y[p] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(a[2 * p] + i)), _mm256_loadu_ps(a[2 * p + 1] + i), 1);
        for (int r = 0; r < R; r++) {
            if (i % line == 0)
                _mm_prefetch((const char *)wrow + r * rb + (size_t)i * wbytes + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
            __m512 x = wide8x2(w, wrow + r * rb, i);
            for (int p = 0; p < T / 2; p++) acc[r][p] = _mm512_fmadd_ps(x, y[p], acc[r][p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < T; t++) {
            float l[16];
            _mm512_storeu_ps(l, acc[r][t / 2]);
            float s = spill_hsum8(l + 8 * (t % 2));
            for (int64_t k = i; k < n; k++) s = fmaf(wide1(w, wrow + r * rb, k), a[t][k], s);
            out[(int64_t)t * ldo + r] = s;
        }
}

#define TILES(w)                                                                                                   \
    do {                                                                                                           \
        int r_ = 0;                                                                                                \
        for (; r_ + 4 <= nr; r_ += 4) tile(w, 4, n, wrow + (uint64_t)r_ * rb, rb, act, stride, out + r_, ldo);    \
        for (; r_ < nr; r_++) tile(w, 1, n, wrow + (uint64_t)r_ * rb, rb, act, stride, out + r_, ldo);             \
    } while (0)

void spill_dots4_wide_avx512(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *actv,
                             uint64_t stride, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows, *act = actv;
    switch (w) {
    case SPILL_DT_F16: TILES(SPILL_DT_F16); break;
    case SPILL_DT_BF16: TILES(SPILL_DT_BF16); break;
    default: TILES(SPILL_DT_F32); break;
    }
}
