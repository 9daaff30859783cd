/* 32 consecutive values of a weight row, dequantized to F32: the one decoder of the block formats
 * (kernels/spill_kernels.h) that the GPU's fused GEMV, its BF16 tile expansion and its embedding
 * lookup share. It is also compiled as C by their CPU twins (kernels/gemv.c), so the twins test it
 * on the CPU against the reference spill_dequant_row (tests/test_twins.c).
 * Chunk c of a row is columns [32c, 32c + 32): one Q8_0/Q4_0/Q4_1 block, one 32-value sub-block of a
 * Q4_K or Q6_K super-block, or 32 F32/F16/BF16 values (fewer at the end of a row whose length is not a
 * multiple of 32: the rest are set to 0). Sums that the reference writes as a*b + c are fused here
 * (fmaf), so that the GPU and the C build of this file round alike. */
#ifndef SPILL_DEQUANT_CUH
#define SPILL_DEQUANT_CUH

#include "spill_kernels.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define SPILL_DQ_FN __device__ static inline
#define SPILL_DQ_HOST_FN __host__ __device__ static inline
#define SPILL_DQ_H2F(h) __half2float(__ushort_as_half(h))
#define SPILL_DQ_BF2F(h) __uint_as_float((unsigned)(h) << 16)
#else
#include <math.h>
#define SPILL_DQ_FN static inline
#define SPILL_DQ_HOST_FN static inline
#define SPILL_DQ_H2F(h) spill_fp16_to_fp32(h)
#define SPILL_DQ_BF2F(h) spill_bf16_to_fp32(h)
#endif

#define SPILL_DQ_CHUNK 32

/* the types the GPU multiplies without expanding them first */
SPILL_DQ_HOST_FN int spill_dq_supported(int type) {
    return type == SPILL_DT_F32 || type == SPILL_DT_F16 || type == SPILL_DT_BF16 || type == SPILL_DT_Q8_0 ||
           type == SPILL_DT_Q4_0 || type == SPILL_DT_Q4_1 || type == SPILL_DT_Q4_K || type == SPILL_DT_Q6_K;
}

/* Q4_K's 6-bit scale and min of sub-block j (0..7), packed in 12 bytes */
SPILL_DQ_FN void spill_dq_scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* v[0..32) = chunk c of a row of `cols` values of `type`; returns how many are real (32 but at a short end) */
SPILL_DQ_FN int spill_dq_chunk(int type, const uint8_t *row, int64_t cols, int64_t c, float *v) {
    int n = cols - c * SPILL_DQ_CHUNK < SPILL_DQ_CHUNK ? (int)(cols - c * SPILL_DQ_CHUNK) : SPILL_DQ_CHUNK;
    switch (type) {
    case SPILL_DT_F32:
    case SPILL_DT_F16:
    case SPILL_DT_BF16:
        for (int j = 0; j < SPILL_DQ_CHUNK; j++) {
            int64_t k = c * SPILL_DQ_CHUNK + j;
            if (j >= n) v[j] = 0;
            else if (type == SPILL_DT_F32) v[j] = ((const float *)row)[k];
            else if (type == SPILL_DT_F16) v[j] = SPILL_DQ_H2F(((const uint16_t *)row)[k]);
            else v[j] = SPILL_DQ_BF2F(((const uint16_t *)row)[k]);
        }
        return n;
    case SPILL_DT_Q8_0: {
        const spill_block_q8_0 *b = (const spill_block_q8_0 *)row + c;
        float d = SPILL_DQ_H2F(b->d);
        for (int j = 0; j < SPILL_QK; j++) v[j] = d * (float)b->qs[j];
        return SPILL_QK;
    }
    case SPILL_DT_Q4_0: {
        const spill_block_q4_0 *b = (const spill_block_q4_0 *)row + c;
        float d = SPILL_DQ_H2F(b->d);
        for (int j = 0; j < SPILL_QK / 2; j++) {
            v[j] = d * (float)((b->qs[j] & 15) - 8);
            v[j + 16] = d * (float)((b->qs[j] >> 4) - 8);
        }
        return SPILL_QK;
    }
    case SPILL_DT_Q4_1: {
        const spill_block_q4_1 *b = (const spill_block_q4_1 *)row + c;
        float d = SPILL_DQ_H2F(b->d), m = SPILL_DQ_H2F(b->m);
        for (int j = 0; j < SPILL_QK / 2; j++) {
            v[j] = fmaf(d, (float)(b->qs[j] & 15), m);
            v[j + 16] = fmaf(d, (float)(b->qs[j] >> 4), m);
        }
        return SPILL_QK;
    }
    case SPILL_DT_Q4_K: {
        const spill_block_q4_k *b = (const spill_block_q4_k *)row + c / 8;
        int j = (int)(c % 8), sc, mn;
        spill_dq_scale_min_k4(j, b->scales, &sc, &mn);
        float d = SPILL_DQ_H2F(b->d) * (float)sc, m = SPILL_DQ_H2F(b->dmin) * (float)mn;
        const uint8_t *q = b->qs + (j / 2) * 32; /* two sub-blocks share 32 bytes: low nibbles, then high */
        for (int l = 0; l < 32; l++) v[l] = fmaf(d, (float)((j & 1) ? q[l] >> 4 : q[l] & 0xF), -m);
        return 32;
    }
    default: { /* Q6_K: per 128 values, quarter k of 32 takes ql's low or high nibbles and qh's bits 2k, 2k+1 */
        const spill_block_q6_k *b = (const spill_block_q6_k *)row + c / 8;
        int j = (int)(c % 8), half = j / 4, k = j % 4;
        const uint8_t *ql = b->ql + half * 64 + (k & 1) * 32, *qh = b->qh + half * 32;
        const int8_t *sc = b->scales + half * 8 + k * 2;
        float d = SPILL_DQ_H2F(b->d);
        for (int l = 0; l < 32; l++) {
            int q = (int)(((k >= 2 ? ql[l] >> 4 : ql[l] & 0xF)) | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
            v[l] = d * (float)sc[l / 16] * (float)q;
        }
        return 32;
    }
    }
}

#endif
