/* Block formats: sizes, dequantization, the activations' conversion, reference quantizers. The dot
 * products on them are in kernels/dot.c and its SIMD twins (kernels/dot.h). */
#include "dot.h"

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
    case SPILL_DT_Q4_K: case SPILL_DT_Q6_K: case SPILL_DT_Q8_K: return SPILL_QK_K;
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
    case SPILL_DT_Q8_K: return sizeof(spill_block_q8_k);
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
    case SPILL_DT_Q8_K: {
        const spill_block_q8_k *b = row;
        for (int64_t i = 0; i < n / SPILL_QK_K; i++)
            for (int j = 0; j < SPILL_QK_K; j++) out[i * SPILL_QK_K + j] = b[i].d * (float)b[i].qs[j];
        return;
    }
    default:
        SPILL_ASSERT(!"dequant of an unsupported type");
    }
}

spill_dtype spill_act_type(spill_dtype w) {
    switch (w) {
    case SPILL_DT_Q4_1: return SPILL_DT_Q8_1;
    case SPILL_DT_Q4_0: case SPILL_DT_Q8_0: return SPILL_DT_Q8_0;
    case SPILL_DT_F16: return SPILL_DT_F16;
    case SPILL_DT_BF16: return SPILL_DT_BF16;
    case SPILL_DT_Q4_K: case SPILL_DT_Q6_K: return SPILL_DT_Q8_K;
    default: return SPILL_DT_F32;
    }
}

uint64_t spill_act_bytes(spill_dtype w, int64_t n) { return spill_dtype_row_bytes(spill_act_type(w), (uint64_t)n); }

/* amax/127 scale, values multiplied by 127/amax and rounded half-to-even (the SIMD rounding mode).
 * `a > amax ? a : amax` rather than fmaxf: the same value while amax is a number (it starts at 0, and
 * both skip a NaN input), but fmaxf is a library call on x86-64 (its NaN rule is not maxss's), 32 of
 * them a block, before every matmul on the calling thread while the others wait; this one the
 * compiler keeps in registers. */
static void quantize_q8(const float *x, int8_t *qs, uint16_t *d_out, uint16_t *s_out) {
    float amax = 0;
    for (int j = 0; j < SPILL_QK; j++) {
        float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    float d = amax / 127.f;
    float id = spill_q8_factor(amax);
    int sum = 0;
    for (int j = 0; j < SPILL_QK; j++) {
        qs[j] = (int8_t)nearbyintf(x[j] * id);
        sum += qs[j];
    }
    *d_out = spill_fp32_to_fp16(d);
    if (s_out) *s_out = spill_fp32_to_fp16(d * (float)sum);
}

void spill_act_quantize_portable(spill_dtype w, const float *x, void *out, int64_t n) {
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
    case SPILL_DT_BF16: {
        uint16_t *h = out;
        for (int64_t i = 0; i < n; i++) h[i] = spill_bf16_act(x[i]);
        return;
    }
    case SPILL_DT_Q8_K:
        spill_quantize_q8_k(x, out, n);
        return;
    default:
        memcpy(out, x, (size_t)n * 4);
        return;
    }
}

void spill_quantize_row_ref(spill_dtype t, const float *x, void *out, int64_t n) {
    switch (t) {
    case SPILL_DT_F32: memcpy(out, x, (size_t)n * 4); return;
    case SPILL_DT_F16: for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = spill_fp32_to_fp16(x[i]); return;
    case SPILL_DT_BF16: for (int64_t i = 0; i < n; i++) ((uint16_t *)out)[i] = spill_fp32_to_bf16(x[i]); return;
    case SPILL_DT_Q8_0: spill_act_quantize_portable(SPILL_DT_Q8_0, x, out, n); return;
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
