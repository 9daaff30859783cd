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

/* 32 unsigned nibbles of a 4-bit block, value j in byte j */
static inline __m256i nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

#endif
