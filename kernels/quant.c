/* Block formats and dot products on quantized blocks.
 *
 * Integer dot products keep 8 float lanes, each summing the products of 4 adjacent values of a
 * block, scaled and fused-multiply-added per block, then reduced pairwise (l, l+4), (0+2, 1+3).
 * This is the shape llama.cpp's x86 kernels have, so spill and its peer round alike; it is also a
 * shape compilers vectorise well. */
#include "spill_kernels.h"

#include <math.h>

int spill_dtype_supported(uint32_t t) {
    switch (t) {
    case SPILL_DT_F32: case SPILL_DT_F16: case SPILL_DT_BF16:
    case SPILL_DT_Q4_0: case SPILL_DT_Q4_1: case SPILL_DT_Q8_0: case SPILL_DT_Q4_K: case SPILL_DT_Q6_K:
        return 1;
    default:
        return 0;
    }
}

const char *spill_dtype_name(uint32_t t) {
    switch (t) {
    case SPILL_DT_F32: return "F32";
    case SPILL_DT_F16: return "F16";
    case SPILL_DT_Q4_0: return "Q4_0";
    case SPILL_DT_Q4_1: return "Q4_1";
    case 6: return "Q5_0";
    case 7: return "Q5_1";
    case SPILL_DT_Q8_0: return "Q8_0";
    case SPILL_DT_Q8_1: return "Q8_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 12: return "Q4_K";
    case 13: return "Q5_K";
    case 14: return "Q6_K";
    case 15: return "Q8_K";
    case SPILL_DT_BF16: return "BF16";
    default: return "unknown";
    }
}

uint32_t spill_dtype_block_values(uint32_t t) {
    switch (t) {
    case SPILL_DT_F32: case SPILL_DT_F16: case SPILL_DT_BF16: return 1;
    case SPILL_DT_Q4_0: case SPILL_DT_Q4_1: case SPILL_DT_Q8_0: case SPILL_DT_Q8_1: return SPILL_QK;
    case SPILL_DT_Q4_K: case SPILL_DT_Q6_K: return SPILL_QK_K;
    default: return 0;
    }
}

uint32_t spill_dtype_block_bytes(uint32_t t) {
    switch (t) {
    case SPILL_DT_F32: return 4;
    case SPILL_DT_F16: case SPILL_DT_BF16: return 2;
    case SPILL_DT_Q4_0: return sizeof(spill_block_q4_0);
    case SPILL_DT_Q4_1: return sizeof(spill_block_q4_1);
    case SPILL_DT_Q8_0: return sizeof(spill_block_q8_0);
    case SPILL_DT_Q8_1: return sizeof(spill_block_q8_1);
    case SPILL_DT_Q4_K: return sizeof(spill_block_q4_k);
    case SPILL_DT_Q6_K: return sizeof(spill_block_q6_k);
    default: return 0;
    }
}

uint64_t spill_dtype_row_bytes(uint32_t t, uint64_t n) {
    uint32_t bv = spill_dtype_block_values(t), bb = spill_dtype_block_bytes(t);
    if (!bv || n % bv) return 0;
    return n / bv * bb;
}

_Static_assert(sizeof(spill_block_q8_0) == 34, "q8_0 block is 34 bytes");
_Static_assert(sizeof(spill_block_q8_1) == 36, "q8_1 block is 36 bytes");
_Static_assert(sizeof(spill_block_q4_0) == 18, "q4_0 block is 18 bytes");
_Static_assert(sizeof(spill_block_q4_1) == 20, "q4_1 block is 20 bytes");

void spill_dequant_row(spill_dtype t, const void *row, float *out, int64_t n) {
    switch (t) {
    case SPILL_DT_F32:
        memcpy(out, row, (size_t)n * 4);
        return;
    case SPILL_DT_F16: {
        const uint16_t *h = row;
        for (int64_t i = 0; i < n; i++) out[i] = spill_fp16_to_fp32(h[i]);
        return;
    }
    case SPILL_DT_BF16: {
        const uint16_t *h = row;
        for (int64_t i = 0; i < n; i++) out[i] = spill_bf16_to_fp32(h[i]);
        return;
    }
    case SPILL_DT_Q8_0: {
        const spill_block_q8_0 *b = row;
        for (int64_t i = 0; i < n / SPILL_QK; i++) {
            float d = spill_fp16_to_fp32(b[i].d);
            for (int j = 0; j < SPILL_QK; j++) out[i * SPILL_QK + j] = d * (float)b[i].qs[j];
        }
        return;
    }
    case SPILL_DT_Q4_0: {
        const spill_block_q4_0 *b = row;
        for (int64_t i = 0; i < n / SPILL_QK; i++) {
            float d = spill_fp16_to_fp32(b[i].d);
            for (int j = 0; j < SPILL_QK / 2; j++) {
                out[i * SPILL_QK + j] = d * (float)((b[i].qs[j] & 15) - 8);
                out[i * SPILL_QK + j + 16] = d * (float)((b[i].qs[j] >> 4) - 8);
            }
        }
        return;
    }
    case SPILL_DT_Q4_1: {
        const spill_block_q4_1 *b = row;
        for (int64_t i = 0; i < n / SPILL_QK; i++) {
            float d = spill_fp16_to_fp32(b[i].d), m = spill_fp16_to_fp32(b[i].m);
            for (int j = 0; j < SPILL_QK / 2; j++) {
                out[i * SPILL_QK + j] = d * (float)(b[i].qs[j] & 15) + m;
                out[i * SPILL_QK + j + 16] = d * (float)(b[i].qs[j] >> 4) + m;
            }
        }
        return;
    }
    case SPILL_DT_Q4_K:
        for (int64_t i = 0; i < n / SPILL_QK_K; i++) spill_dequant_q4_k((const spill_block_q4_k *)row + i, out + i * SPILL_QK_K);
        return;
    case SPILL_DT_Q6_K:
        for (int64_t i = 0; i < n / SPILL_QK_K; i++) spill_dequant_q6_k((const spill_block_q6_k *)row + i, out + i * SPILL_QK_K);
        return;
    default:
        SPILL_ASSERT(!"dequant of an unsupported type");
    }
}

spill_dtype spill_act_type(spill_dtype w) {
    switch (w) {
    case SPILL_DT_Q4_1: return SPILL_DT_Q8_1;
    case SPILL_DT_Q4_0: case SPILL_DT_Q8_0: return SPILL_DT_Q8_0;
    case SPILL_DT_F16: return SPILL_DT_F16;
    default: return SPILL_DT_F32;
    }
}

uint64_t spill_act_bytes(spill_dtype w, int64_t n) { return spill_dtype_row_bytes(spill_act_type(w), (uint64_t)n); }

/* amax/127 scale, values multiplied by 127/amax and rounded half-to-even (the SIMD rounding mode) */
static void quantize_q8(const float *x, int8_t *qs, uint16_t *d_out, uint16_t *s_out) {
    float amax = 0;
    for (int j = 0; j < SPILL_QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.f;
    float id = amax != 0.0f ? 127.f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < SPILL_QK; j++) {
        qs[j] = (int8_t)nearbyintf(x[j] * id);
        sum += qs[j];
    }
    *d_out = spill_fp32_to_fp16(d);
    if (s_out) *s_out = spill_fp32_to_fp16(d * (float)sum);
}

void spill_act_quantize(spill_dtype w, const float *x, void *out, int64_t n) {
    switch (spill_act_type(w)) {
    case SPILL_DT_Q8_0: {
        spill_block_q8_0 *b = out;
        for (int64_t i = 0; i < n / SPILL_QK; i++) quantize_q8(x + i * SPILL_QK, b[i].qs, &b[i].d, NULL);
        return;
    }
    case SPILL_DT_Q8_1: {
        spill_block_q8_1 *b = out;
        for (int64_t i = 0; i < n / SPILL_QK; i++) quantize_q8(x + i * SPILL_QK, b[i].qs, &b[i].d, &b[i].s);
        return;
    }
    case SPILL_DT_F16: {
        uint16_t *h = out;
        for (int64_t i = 0; i < n; i++) h[i] = spill_fp32_to_fp16(x[i]);
        return;
    }
    default:
        memcpy(out, x, (size_t)n * 4);
        return;
    }
}

static inline float hsum8(const float a[8]) {
    float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
    return (r0 + r2) + (r1 + r3);
}

/* lane l of a block = sum of the 4 products of values 4l..4l+3 */
#define LANES_FMA(acc, d, q)                                            \
    for (int l = 0; l < 8; l++) {                                       \
        int s_ = q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3]; \
        acc[l] = fmaf(d, (float)s_, acc[l]);                            \
    }

static float dot_q8_0_scalar(int64_t n, const spill_block_q8_0 *x, const spill_block_q8_0 *y) {
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int p[SPILL_QK];
        for (int j = 0; j < SPILL_QK; j++) p[j] = x[i].qs[j] * y[i].qs[j];
        float d = spill_fp16_to_fp32(x[i].d) * spill_fp16_to_fp32(y[i].d);
        LANES_FMA(acc, d, p);
    }
    return hsum8(acc);
}

static float dot_q4_0_scalar(int64_t n, const spill_block_q4_0 *x, const spill_block_q8_0 *y) {
    float acc[8] = {0};
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int p[SPILL_QK];
        for (int j = 0; j < SPILL_QK / 2; j++) {
            p[j] = ((x[i].qs[j] & 15) - 8) * y[i].qs[j];
            p[j + 16] = ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
        }
        float d = spill_fp16_to_fp32(x[i].d) * spill_fp16_to_fp32(y[i].d);
        LANES_FMA(acc, d, p);
    }
    return hsum8(acc);
}

static float dot_q4_1_scalar(int64_t n, const spill_block_q4_1 *x, const spill_block_q8_1 *y) {
    float acc[8] = {0};
    float summs = 0;
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        int p[SPILL_QK];
        for (int j = 0; j < SPILL_QK / 2; j++) {
            p[j] = (x[i].qs[j] & 15) * y[i].qs[j];
            p[j + 16] = (x[i].qs[j] >> 4) * y[i].qs[j + 16];
        }
        summs = fmaf(spill_fp16_to_fp32(x[i].m), spill_fp16_to_fp32(y[i].s), summs);
        float d = spill_fp16_to_fp32(x[i].d) * spill_fp16_to_fp32(y[i].d);
        LANES_FMA(acc, d, p);
    }
    return hsum8(acc) + summs;
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
/* The same computation with AVX2: maddubs + madd give exactly the 8 lanes of 4 products above,
 * the integer sums are exact, and the float steps (scale product, fused multiply-add per lane,
 * pairwise reduction) are the same operations in the same order, so results are bit-identical
 * to the scalar versions (tests/test_quant.c checks this). */
#include <immintrin.h>
#define SPILL_SIMD 1

/* Weights stream from memory once per token and the hardware prefetcher does not run far enough
 * ahead of it, so the kernels ask for the bytes 4 KiB ahead. Measured on the 2-core x86 dev VM,
 * SmolLM2 Q4_1 decode, 2 threads: none 67 tok/s, 512 B 89, 2 KiB 171, 4 KiB 189, 8 KiB 168. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 4096
#endif

static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

static inline float hsum8_avx(__m256 v) {
    float a[8];
    _mm256_storeu_ps(a, v);
    return hsum8(a);
}

/* 32 unsigned nibbles of a 4-bit block, value j in byte j */
static inline __m256i nibbles(const uint8_t *qs) {
    __m128i b = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(both, _mm256_set1_epi8(15));
}

/* lanes of 4 products of signed x and signed y */
static inline __m256 lanes_ss(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x), sy = _mm256_sign_epi8(y, x);
    __m256i p16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

static float dot_q8_0(int64_t n, const spill_block_q8_0 *x, const spill_block_q8_0 *y) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256 l = lanes_ss(_mm256_loadu_si256((const __m256i *)x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(d, l, acc);
    }
    return hsum8_avx(acc);
}

static float dot_q4_0(int64_t n, const spill_block_q4_0 *x, const spill_block_q8_0 *y) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + PREFETCH_AHEAD, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256i qx = _mm256_sub_epi8(nibbles(x[i].qs), _mm256_set1_epi8(8));
        __m256 l = lanes_ss(qx, _mm256_loadu_si256((const __m256i *)y[i].qs));
        acc = _mm256_fmadd_ps(d, l, acc);
    }
    return hsum8_avx(acc);
}

static float dot_q4_1(int64_t n, const spill_block_q4_1 *x, const spill_block_q8_1 *y) {
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / SPILL_QK; i++) {
        _mm_prefetch((const char *)(x + i) + PREFETCH_AHEAD, _MM_HINT_T0);
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        __m256i p16 = _mm256_maddubs_epi16(nibbles(x[i].qs), _mm256_loadu_si256((const __m256i *)y[i].qs));
        __m256 l = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
        acc = _mm256_fmadd_ps(d, l, acc);
    }
    return hsum8_avx(acc) + summs;
}
#else
#define SPILL_SIMD 0
#define dot_q8_0 dot_q8_0_scalar
#define dot_q4_0 dot_q4_0_scalar
#define dot_q4_1 dot_q4_1_scalar
#endif

int spill_kernels_simd(void) { return SPILL_SIMD; }

float spill_vec_dot_scalar(spill_dtype w, int64_t n, const void *wrow, const void *act) {
    switch (w) {
    case SPILL_DT_Q8_0: return dot_q8_0_scalar(n, wrow, act);
    case SPILL_DT_Q4_0: return dot_q4_0_scalar(n, wrow, act);
    case SPILL_DT_Q4_1: return dot_q4_1_scalar(n, wrow, act);
    default: return spill_vec_dot(w, n, wrow, act);
    }
}

float spill_dot_f32(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(a[i + l], b[i + l], acc[l]);
    float s = hsum8(acc);
    for (; i < n; i++) s = fmaf(a[i], b[i], s);
    return s;
}

static float dot_f16(int64_t n, const uint16_t *x, const uint16_t *y) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(spill_fp16_to_fp32(x[i + l]), spill_fp16_to_fp32(y[i + l]), acc[l]);
    float s = hsum8(acc);
    for (; i < n; i++) s = fmaf(spill_fp16_to_fp32(x[i]), spill_fp16_to_fp32(y[i]), s);
    return s;
}

static float dot_bf16(int64_t n, const uint16_t *x, const float *y) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) acc[l] = fmaf(spill_bf16_to_fp32(x[i + l]), y[i + l], acc[l]);
    float s = hsum8(acc);
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(x[i]), y[i], s);
    return s;
}

float spill_vec_dot(spill_dtype w, int64_t n, const void *wrow, const void *act) {
    switch (w) {
    case SPILL_DT_F32: return spill_dot_f32(wrow, act, (int)n);
    case SPILL_DT_F16: return dot_f16(n, wrow, act);
    case SPILL_DT_BF16: return dot_bf16(n, wrow, act);
    case SPILL_DT_Q8_0: return dot_q8_0(n, wrow, act);
    case SPILL_DT_Q4_0: return dot_q4_0(n, wrow, act);
    case SPILL_DT_Q4_1: return dot_q4_1(n, wrow, act);
    case SPILL_DT_Q4_K: case SPILL_DT_Q6_K: return spill_dot_kquant(w, n, wrow, act);
    default: SPILL_ASSERT(!"dot of an unsupported type"); return 0;
    }
}

void spill_quantize_row_ref(spill_dtype t, const float *x, void *out, int64_t n) {
    switch (t) {
    case SPILL_DT_F32: memcpy(out, x, (size_t)n * 4); return;
    case SPILL_DT_F16: for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = spill_fp32_to_fp16(x[i]); return;
    case SPILL_DT_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = spill_fp32_to_bf16(x[i]); return;
    case SPILL_DT_Q8_0: spill_act_quantize(SPILL_DT_Q8_0, x, out, n); return;
    case SPILL_DT_Q4_0: {
        spill_block_q4_0 *b = out;
        for (int64_t i = 0; i < n / SPILL_QK; i++) {
            const float *v = x + i * SPILL_QK;
            float amax = 0, max = 0;
            for (int j = 0; j < SPILL_QK; j++)
                if (fabsf(v[j]) > amax) { amax = fabsf(v[j]); max = v[j]; }
            float d = max / -8, id = d ? 1.0f / d : 0;
            b[i].d = spill_fp32_to_fp16(d);
            for (int j = 0; j < SPILL_QK / 2; j++) {
                int q0 = (int)fminf(15, v[j] * id + 8.5f), q1 = (int)fminf(15, v[j + 16] * id + 8.5f);
                b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        return;
    }
    case SPILL_DT_Q4_1: {
        spill_block_q4_1 *b = out;
        for (int64_t i = 0; i < n / SPILL_QK; i++) {
            const float *v = x + i * SPILL_QK;
            float mn = v[0], mx = v[0];
            for (int j = 1; j < SPILL_QK; j++) { mn = fminf(mn, v[j]); mx = fmaxf(mx, v[j]); }
            float d = (mx - mn) / 15, id = d ? 1.0f / d : 0;
            b[i].d = spill_fp32_to_fp16(d);
            b[i].m = spill_fp32_to_fp16(mn);
            for (int j = 0; j < SPILL_QK / 2; j++) {
                int q0 = (int)fminf(15, (v[j] - mn) * id + 0.5f), q1 = (int)fminf(15, (v[j + 16] - mn) * id + 0.5f);
                b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
            }
        }
        return;
    }
    case SPILL_DT_Q4_K:
        for (int64_t i = 0; i < n / SPILL_QK_K; i++) spill_quantize_q4_k(x + i * SPILL_QK_K, (spill_block_q4_k *)out + i);
        return;
    case SPILL_DT_Q6_K:
        for (int64_t i = 0; i < n / SPILL_QK_K; i++) spill_quantize_q6_k(x + i * SPILL_QK_K, (spill_block_q6_k *)out + i);
        return;
    default: SPILL_ASSERT(!"quantize of an unsupported type");
    }
}
