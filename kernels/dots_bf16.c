/* BF16 weights against BF16 activations with AVX-512 BF16's vdpbf16ps: rows against 4 or 8 tokens (prefill,
 * batched decode), two products per 32-bit lane per instruction where the other kernels do one. Compiled
 * with AVX-512 F, VL, DQ, BW and BF16 for this file only (CMakeLists.txt); used only where
 * spill_cpu_avx512_bf16() is true, which asks CPUID and then spill_dpbf16_matches() below.
 *
 * The bits: kernels/dot.h defines BF16's lanes as vdpbf16ps computes them (lane l of each 16 values: the
 * product of values 2l + 1 added with one rounding, then that of values 2l), so a chain of these
 * instructions on a 256-bit half is the portable dot_bf16's loop. Intel's manual specifies that order
 * and a rounding per addition, with subnormal inputs taken as zero and subnormal results flushed to
 * zero; the products of two BF16 values are exact. spill_dpbf16_matches() checks at start-up that this
 * CPU's instruction gives those bits on values where the other orders (or one rounding for both
 * products) would not; where it does not, the BF16 tiles stay with the fused multiply-adds of
 * kernels/dots_avx2.c. Not the same bits as the other CPUs' kernels: subnormal weights (taken as zero
 * here) or sums that fall into the subnormal range (flushed here): activations are never subnormal
 * (spill_bf16_act), a trained model's BF16 weights are not either, and a lane's sum below 2^-126 needs
 * weights and activations around 1e-19 (tests/test_quant.c checks that case on one CPU). On one CPU the
 * bits do not depend on the batch: the one-token dot and rows take the instruction too (below).
 *
 * Layout as kernels/dots_avx512.c: a 512-bit accumulator holds two chains, one row against tokens t and
 * t + 1, the row's 16 values broadcast into both halves and each pair of tokens' 16 values side by side,
 * prepared once per matmul. Four rows against 8 tokens: 16 accumulators. */
#include "dot.h"

#include <immintrin.h>
#include <math.h>

#define T SPILL_DOTS_TILE

/* the prepared activations, BF16 values in the float buffer sc: per tile of 4 tokens, for each 16 values
   from i (while i + 16 <= n) the 4 tokens' 16 values side by side (tokens 2h, 2h + 1 at 32 h), then each
   token's values after the last full 16 */
static inline const uint16_t *pair_at(const uint16_t *tile, int64_t i, int h) { return tile + i * 4 + h * 32; }
static inline const uint16_t *tail_at(const uint16_t *tile, int64_t n, int t) {
    int64_t n16 = n & ~(int64_t)15;
    return tile + 4 * n16 + t * (n - n16) - n16; /* indexed by the value's own index k >= n16 */
}

void spill_dots_prepare_bf16_avx512(int64_t n, const void *act, uint64_t stride, int nt, float *sc) {
    const int64_t n16 = n & ~(int64_t)15;
    for (int k = 0; k < (nt + T - 1) / T; k++) { /* a partial last tile too, its missing tokens zeros */
        uint16_t *tile = (uint16_t *)(sc + (size_t)k * SPILL_BF16_TILE_FLOATS(n));
        for (int t = 0; t < T; t++) {
            const uint16_t *a = (const uint16_t *)((const uint8_t *)act + (uint64_t)(k * T + t) * stride);
            uint16_t *tail = (uint16_t *)tail_at(tile, n, t);
            if (k * T + t >= nt) {
                for (int64_t i = 0; i < n16; i += 16) _mm256_storeu_si256((__m256i *)(tile + i * 4 + t * 16), _mm256_setzero_si256());
                for (int64_t i = n16; i < n; i++) tail[i] = 0;
                continue;
            }
            for (int64_t i = 0; i < n16; i += 16)
                _mm256_storeu_si256((__m256i *)(tile + i * 4 + t * 16), _mm256_loadu_si256((const __m256i *)(a + i)));
            for (int64_t i = n16; i < n; i++) tail[i] = a[i];
        }
    }
}

/* R rows (1..4) against K tiles of 4 tokens (tile k's prepared values at sc + k * pt floats), the results of
   the first nt tokens stored */
static inline __attribute__((always_inline)) void tile(int R, int K, int nt, int64_t n, const uint8_t *wrow, uint64_t rb,
                                                       const float *sc, size_t pt, float *out, int64_t ldo) {
    const int P = 2 * K;
    __m512 acc[4][T]; /* acc[r][p]: row r against tokens 2p (low half) and 2p + 1 (high half) */
    for (int r = 0; r < R; r++)
        for (int p = 0; p < P; p++) acc[r][p] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i y[T];
        for (int p = 0; p < P; p++)
            y[p] = _mm512_loadu_si512((const void *)pair_at((const uint16_t *)(sc + (size_t)(p / 2) * pt), i, p % 2));
        for (int r = 0; r < R; r++) {
            const uint16_t *x16 = (const uint16_t *)(wrow + r * rb) + i;
            if (i % 32 == 0) _mm_prefetch((const char *)x16 + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
            __m512i x = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x16));
            for (int p = 0; p < P; p++) acc[r][p] = _mm512_dpbf16_ps(acc[r][p], (__m512bh)x, (__m512bh)y[p]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int t = 0; t < 4 * K && t < nt; t++) {
            float l[16];
            _mm512_storeu_ps(l, acc[r][t / 2]);
            float s = spill_hsum8(l + 8 * (t % 2));
            const uint16_t *x = (const uint16_t *)(wrow + r * rb);
            const uint16_t *a = tail_at((const uint16_t *)(sc + (size_t)(t / 4) * pt), n, t % 4);
            for (int64_t k = i; k < n; k++) s = fmaf(spill_bf16_to_fp32(x[k]), spill_bf16_to_fp32(a[k]), s);
            out[(int64_t)t * ldo + r] = s;
        }
}

#define TILES(K)                                                                                           \
    do {                                                                                                   \
        int r_ = 0;                                                                                        \
        for (; r_ + 4 <= nr; r_ += 4) tile(4, K, nt, n, wrow + (uint64_t)r_ * rb, rb, sc, pt, out + r_, ldo); \
        for (; r_ < nr; r_++) tile(1, K, nt, n, wrow + (uint64_t)r_ * rb, rb, sc, pt, out + r_, ldo);          \
    } while (0)

void spill_dots_bf16_avx512(int ntiles, int nt, int64_t n, const void *wrows, uint64_t rb, int nr, const float *sc,
                            size_t pt, float *out, int64_t ldo) {
    const uint8_t *wrow = wrows;
    if (ntiles == 2) TILES(2);
    else TILES(1);
}

/* One token: the 8 lanes are a 256-bit register's, 16 values an instruction. Where the tiles take
   vdpbf16ps the one-token dot and rows do too (kernels/dot_avx2.c asks spill_cpu_avx512_bf16), so that on
   one CPU a token's result is the same bits alone or in a batch, flushed subnormals included. */
float spill_dot_bf16_dpbf16(int64_t n, const uint16_t *x, const uint16_t *y) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(x + i) + SPILL_PREFETCH_AHEAD, _MM_HINT_T0);
        acc = _mm256_dpbf16_ps(acc, (__m256bh)_mm256_loadu_si256((const __m256i *)(x + i)),
                               (__m256bh)_mm256_loadu_si256((const __m256i *)(y + i)));
    }
    float l[8];
    _mm256_storeu_ps(l, acc);
    float s = spill_hsum8(l);
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(x[i]), spill_bf16_to_fp32(y[i]), s);
    return s;
}

/* R rows (1..8) against one token: R chains, the token's 16 values loaded once for the R rows, the rows
   prefetched along their 64-byte lines (as one stream: kernels/dot.h spill_rows_prefetch_blocks).
   8 rows, not 4: vdpbf16ps's latency (6 cycles on Zen 4) left 4 chains waiting on it; SmolLM2 BF16
   decode on a 2-vCPU Zen 4 VM, 2 threads, three alternated rounds: 66-71 -> 70-79 tok/s (docs/results.md,
   2026-12-07) */
static inline __attribute__((always_inline)) void rows(int R, int64_t n, const uint8_t *wrow, uint64_t rb, const uint16_t *y,
                                                       float *out) {
    __m256 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (i % 32 == 0) spill_rows_prefetch_blocks(wrow, rb, R, (uint64_t)i * 2, 64, 0);
        __m256bh yv = (__m256bh)_mm256_loadu_si256((const __m256i *)(y + i));
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_dpbf16_ps(acc[r], (__m256bh)_mm256_loadu_si256((const __m256i *)((const uint16_t *)(wrow + r * rb) + i)), yv);
    }
    for (int r = 0; r < R; r++) {
        float l[8];
        _mm256_storeu_ps(l, acc[r]);
        float s = spill_hsum8(l);
        const uint16_t *x = (const uint16_t *)(wrow + r * rb);
        for (int64_t k = i; k < n; k++) s = fmaf(spill_bf16_to_fp32(x[k]), spill_bf16_to_fp32(y[k]), s);
        out[r] = s;
    }
}

void spill_rows_bf16_dpbf16(int64_t n, const void *wrows, uint64_t rb, int nr, const uint16_t *act, float *out) {
    const uint8_t *wrow = wrows;
    int r = 0;
    for (; r + 8 <= nr; r += 8) rows(8, n, wrow + (uint64_t)r * rb, rb, act, out + r);
    for (; r + 4 <= nr; r += 4) rows(4, n, wrow + (uint64_t)r * rb, rb, act, out + r);
    for (; r < nr; r++) rows(1, n, wrow + (uint64_t)r * rb, rb, act, out + r);
}

/* kernels/dot.h's BF16 lane step, written out: what the instruction must give */
static float lane_ref(float acc, const uint16_t *w, const uint16_t *a) {
    acc = fmaf(spill_bf16_to_fp32(w[1]), spill_bf16_to_fp32(a[1]), acc);
    return fmaf(spill_bf16_to_fp32(w[0]), spill_bf16_to_fp32(a[0]), acc);
}

int spill_dpbf16_matches(void) {
    /* 64 rounds of 16 lanes: the accumulator and the two products of similar size and mixed signs, so that
       adding them in the other order, or both at once with one rounding, gives other bits in most lanes */
    uint32_t s = 0x9e3779b9u;
    int differ_order = 0, differ_fused = 0;
    for (int round = 0; round < 64; round++) {
        uint16_t w[32], a[32];
        float acc[16], got[16];
        for (int j = 0; j < 32; j++) {
            s = s * 1664525u + 1013904223u;
            w[j] = (uint16_t)(((s >> 16) & 0x807f) | (uint32_t)(124 + (s >> 8) % 8) << 7);
            s = s * 1664525u + 1013904223u;
            a[j] = (uint16_t)(((s >> 16) & 0x807f) | (uint32_t)(124 + (s >> 8) % 8) << 7);
        }
        for (int l = 0; l < 16; l++) {
            s = s * 1664525u + 1013904223u;
            acc[l] = ((float)(int)(s >> 8) - 8388608.0f) * 0x1p-23f;
        }
        __m512 r = _mm512_dpbf16_ps(_mm512_loadu_ps(acc), (__m512bh)_mm512_loadu_si512(w), (__m512bh)_mm512_loadu_si512(a));
        _mm512_storeu_ps(got, r);
        for (int l = 0; l < 16; l++) {
            float want = lane_ref(acc[l], w + 2 * l, a + 2 * l);
            if (memcmp(&want, &got[l], sizeof want)) return 0;
            float p0 = spill_bf16_to_fp32(w[2 * l]) * spill_bf16_to_fp32(a[2 * l]);
            float p1 = spill_bf16_to_fp32(w[2 * l + 1]) * spill_bf16_to_fp32(a[2 * l + 1]);
            float other = (acc[l] + p0) + p1, fused = (float)((double)acc[l] + (double)p0 + (double)p1);
            differ_order += memcmp(&want, &other, sizeof want) != 0;
            differ_fused += memcmp(&want, &fused, sizeof want) != 0;
        }
    }
    /* the values above must tell the orders apart, else the check checked nothing */
    return differ_order > 16 && differ_fused > 16;
}
