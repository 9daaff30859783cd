/* 8 consecutive values of a weight row, dequantized to F32: the one decoder of the block formats
 * (kernels/spill_kernels.h) that the GPU's fused GEMV, its BF16 tile expansion and its embedding
 * lookup share. It is also compiled as C by their CPU twins (kernels/gemv.c), so the twins test it
 * on the CPU against the reference spill_dequant_row (tests/test_twins.c).
 * Piece c of a row is columns [8c, 8c + 8): a quarter of a Q8_0/Q4_0/Q4_1 block, a quarter of a
 * 32-value sub-block of a Q4_K or Q6_K super-block, or 8 F32/F16/BF16 values (fewer at the end of a
 * row whose length is not a multiple of 8: the rest are set to 0). Pieces of 8 let the 32 lanes of a
 * warp read 256 consecutive values at once (a Q4_K or Q6_K super-block, 8 Q8_0 blocks), each lane
 * its 4-32 bytes of weights in one or two wide loads, where pieces of 32 had each lane read its own
 * block byte by byte (2026-12-04 on an H200: Q4_K at 3% of HBM's bandwidth).
 * Sums that the reference writes as a*b + c are fused here (fmaf), so that the GPU and the C build of
 * this file round alike. Small integers become floats exactly either way: (float)n in C, a magic
 * number on the GPU (an int-to-float conversion runs at an eighth of the FMA rate on sm_80-sm_90). */
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

#ifdef __CUDACC__
/* n (0 <= n < 2^23) minus off, exactly, without an I2F: 2^23 + n has n as its mantissa */
#define SPILL_DQ_U2F(n, off) (__int_as_float(0x4B000000 | (int)(n)) - (8388608.0f + (off)))
#define SPILL_DQ_UNROLL _Pragma("unroll")
#else
#include <string.h>
#define SPILL_DQ_U2F(n, off) ((float)(n) - (off))
#define SPILL_DQ_UNROLL
#endif

#define SPILL_DQ_CHUNK 8

/* the types the GPU multiplies without expanding them first */
SPILL_DQ_HOST_FN int spill_dq_supported(int type) {
    return type == SPILL_DT_F32 || type == SPILL_DT_F16 || type == SPILL_DT_BF16 || type == SPILL_DT_Q8_0 ||
           type == SPILL_DT_Q4_0 || type == SPILL_DT_Q4_1 || type == SPILL_DT_Q4_K || type == SPILL_DT_Q6_K;
}

/* the 8 bytes at p as a little-endian integer (every target spill builds for is little-endian): on
 * the GPU one load as wide as p's alignment allows */
SPILL_DQ_FN uint64_t spill_dq_ld8(const uint8_t *p) {
#ifdef __CUDACC__
    const uintptr_t a = (uintptr_t)p;
    if ((a & 7) == 0) return *(const unsigned long long *)p;
    if ((a & 3) == 0) return *(const unsigned *)p | (uint64_t) * (const unsigned *)(p + 4) << 32;
    if ((a & 1) == 0) {
        const unsigned short *h = (const unsigned short *)p;
        return h[0] | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 32 | (uint64_t)h[3] << 48;
    }
    uint64_t v = 0;
    SPILL_DQ_UNROLL
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
#else
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#endif
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

/* v[0..8) = piece c of a row of `cols` values of `type`; returns how many are real (8 but at a short end) */
SPILL_DQ_FN int spill_dq_chunk(int type, const uint8_t *row, int64_t cols, int64_t c, float *v) {
    switch (type) {
    case SPILL_DT_F32:
    case SPILL_DT_F16:
    case SPILL_DT_BF16: {
        int n = cols - c * SPILL_DQ_CHUNK < SPILL_DQ_CHUNK ? (int)(cols - c * SPILL_DQ_CHUNK) : SPILL_DQ_CHUNK;
        const int es = type == SPILL_DT_F32 ? 4 : 2;
        const uint8_t *p = row + (size_t)c * SPILL_DQ_CHUNK * es;
        if (n == SPILL_DQ_CHUNK) { /* whole: 32 or 16 bytes in wide loads */
            SPILL_DQ_UNROLL
            for (int i = 0; i < es; i++) {
                uint64_t w = spill_dq_ld8(p + 8 * i);
                if (type == SPILL_DT_F32) {
                    uint32_t lo = (uint32_t)w, hi = (uint32_t)(w >> 32);
                    float flo, fhi;
                    memcpy(&flo, &lo, 4);
                    memcpy(&fhi, &hi, 4);
                    v[2 * i] = flo, v[2 * i + 1] = fhi;
                } else {
                    SPILL_DQ_UNROLL
                    for (int h = 0; h < 4; h++) {
                        uint16_t u = (uint16_t)(w >> (16 * h));
                        v[4 * i + h] = type == SPILL_DT_F16 ? SPILL_DQ_H2F(u) : SPILL_DQ_BF2F(u);
                    }
                }
            }
            return n;
        }
        SPILL_DQ_UNROLL
        for (int j = 0; j < SPILL_DQ_CHUNK; j++) {
            if (j >= n) v[j] = 0;
            else if (type == SPILL_DT_F32) memcpy(&v[j], p + 4 * j, 4);
            else {
                uint16_t u;
                memcpy(&u, p + 2 * j, 2);
                v[j] = type == SPILL_DT_F16 ? SPILL_DQ_H2F(u) : SPILL_DQ_BF2F(u);
            }
        }
        return n;
    }
    case SPILL_DT_Q8_0: { /* quarter c % 4 of block c / 4 */
        const spill_block_q8_0 *b = (const spill_block_q8_0 *)row + c / 4;
        const float d = SPILL_DQ_H2F(b->d);
        const uint64_t w = spill_dq_ld8((const uint8_t *)b->qs + 8 * (c % 4));
        SPILL_DQ_UNROLL
        for (int j = 0; j < 8; j++) v[j] = d * SPILL_DQ_U2F(((w >> (8 * j)) & 0xFF) ^ 0x80, 128.0f);
        return 8;
    }
    case SPILL_DT_Q4_0: /* quarters 0, 1: low nibbles of bytes 0-7, 8-15; quarters 2, 3: their high nibbles */
    case SPILL_DT_Q4_1: {
        const int q = (int)(c % 4), sh = q >= 2 ? 4 : 0;
        if (type == SPILL_DT_Q4_0) {
            const spill_block_q4_0 *b = (const spill_block_q4_0 *)row + c / 4;
            const float d = SPILL_DQ_H2F(b->d);
            const uint64_t w = spill_dq_ld8(b->qs + 8 * (q & 1));
            SPILL_DQ_UNROLL
            for (int j = 0; j < 8; j++) v[j] = d * SPILL_DQ_U2F((w >> (8 * j + sh)) & 15, 8.0f);
        } else {
            const spill_block_q4_1 *b = (const spill_block_q4_1 *)row + c / 4;
            const float d = SPILL_DQ_H2F(b->d), m = SPILL_DQ_H2F(b->m);
            const uint64_t w = spill_dq_ld8(b->qs + 8 * (q & 1));
            SPILL_DQ_UNROLL
            for (int j = 0; j < 8; j++) v[j] = fmaf(d, SPILL_DQ_U2F((w >> (8 * j + sh)) & 15, 0.0f), m);
        }
        return 8;
    }
    case SPILL_DT_Q4_K: { /* sub-block j = (c % 32) / 4 of super-block c / 32, its quarter c % 4 */
        const spill_block_q4_k *b = (const spill_block_q4_k *)row + c / 32;
        const int j = (int)(c % 32) / 4, part = (int)(c % 4);
        int sc, mn;
        spill_dq_scale_min_k4(j, b->scales, &sc, &mn);
        const float d = SPILL_DQ_H2F(b->d) * SPILL_DQ_U2F(sc, 0.0f), m = SPILL_DQ_H2F(b->dmin) * SPILL_DQ_U2F(mn, 0.0f);
        /* two sub-blocks share 32 bytes: the even one their low nibbles, the odd one the high */
        const uint64_t w = spill_dq_ld8(b->qs + (j / 2) * 32 + part * 8);
        const int sh = (j & 1) * 4;
        SPILL_DQ_UNROLL
        for (int l = 0; l < 8; l++) v[l] = fmaf(d, SPILL_DQ_U2F((w >> (8 * l + sh)) & 15, 0.0f), -m);
        return 8;
    }
    default: { /* Q6_K: per 128 values, quarter k of 32 takes ql's low or high nibbles and qh's bits 2k, 2k+1 */
        const spill_block_q6_k *b = (const spill_block_q6_k *)row + c / 32;
        const int jj = (int)(c % 32) / 4, part = (int)(c % 4), half = jj / 4, k = jj % 4;
        const uint64_t wl = spill_dq_ld8(b->ql + half * 64 + (k & 1) * 32 + part * 8);
        const uint64_t wh = spill_dq_ld8(b->qh + half * 32 + part * 8);
        const float ds = SPILL_DQ_H2F(b->d) * (float)b->scales[half * 8 + k * 2 + part / 2];
        const int shl = k >= 2 ? 4 : 0, shh = 2 * k;
        SPILL_DQ_UNROLL
        for (int l = 0; l < 8; l++) {
            unsigned q = (unsigned)((wl >> (8 * l + shl)) & 15) | (unsigned)(((wh >> (8 * l + shh)) & 3) << 4);
            v[l] = ds * SPILL_DQ_U2F(q, 32.0f);
        }
        return 8;
    }
    }
}

#endif
