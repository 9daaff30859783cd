/* K-quants (llama.cpp's super-block formats, 256 values per block): Q4_K and Q6_K.
 *   Q4_K: 8 sub-blocks of 32 values, each with a 6-bit scale and a 6-bit min under two fp16
 *         super-scales; x = d*sc*q - dmin*m, q in 0..15                       144 bytes
 *   Q6_K: 16 sub-blocks of 16 values, each with an int8 scale under one fp16 super-scale;
 *         x = d*sc*(q - 32), q in 0..63 (4 low bits in ql, 2 high bits in qh)  210 bytes
 * The dot products are integer ones against activations quantized to Q8_K (below). The quantizers are simple min/max ones (valid files, not llama.cpp's optimised
 * search); they exist for the tests and the synthetic models. */
#include <math.h>

#include "dot.h"

_Static_assert(sizeof(spill_block_q4_k) == 144, "q4_K block is 144 bytes");
_Static_assert(sizeof(spill_block_q6_k) == 210, "q6_K block is 210 bytes");

_Static_assert(sizeof(spill_block_q8_k) == 292, "q8_K block is 292 bytes");

void spill_dequant_q4_k(const spill_block_q4_k *b, float *y) {
    float d = spill_fp16_to_fp32(b->d), dmin = spill_fp16_to_fp32(b->dmin);
    const uint8_t *q = b->qs;
    int sc[8], mn[8];
    spill_q4_k_scales(b->scales, sc, mn);
    for (int j = 0; j < 8; j += 2) { /* two sub-blocks share 32 bytes: low nibbles, then high */
        float d0 = d * (float)sc[j], n0 = dmin * (float)mn[j], d1 = d * (float)sc[j + 1], n1 = dmin * (float)mn[j + 1];
        for (int l = 0; l < 32; l++) y[l] = d0 * (float)(q[l] & 0xF) - n0;
        for (int l = 0; l < 32; l++) y[32 + l] = d1 * (float)(q[l] >> 4) - n1;
        y += 64;
        q += 32;
    }
}

void spill_dequant_q6_k(const spill_block_q6_k *b, float *y) {
    float d = spill_fp16_to_fp32(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = (int)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = (int)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = (int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = (int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
        y += 128;
        ql += 64;
        qh += 32;
        sc += 8;
    }
}

/* Activations as Q8_K: amax/127 in F32, values times 127/amax rounded half-to-even (as Q8_0's), and
 * the sums of each 16. F32 rather than Q8_0's fp16 scale: one per 256 values costs nothing. */
void spill_quantize_q8_k(const float *x, spill_block_q8_k *out, int64_t n) {
    for (int64_t i = 0; i < n / SPILL_QK_K; i++, x += SPILL_QK_K) {
        float amax = 0;
        for (int j = 0; j < SPILL_QK_K; j++) {
            float a = fabsf(x[j]);
            amax = a > amax ? a : amax;
        }
        float id = spill_q8_factor(amax);
        out[i].d = amax / 127.f;
        for (int g = 0; g < SPILL_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 16 * g; j < 16 * g + 16; j++) {
                out[i].qs[j] = (int8_t)nearbyintf(x[j] * id);
                sum += out[i].qs[j];
            }
            out[i].bsums[g] = (int16_t)sum;
        }
    }
}

/* sum of x*d*(sc*q - m) over a block is d*sum_j sc_j*sum(q*a) - dmin*sum_j m_j*sum(a), times a's scale;
 * |sum_j sc_j*sum(q*a)| <= 8 * 63 * 32 * 15 * 127, far inside int32 */
float spill_dot_q4_k_q8_k(int64_t n, const void *row, const void *act) {
    const spill_block_q4_k *x = row;
    const spill_block_q8_k *y = act;
    float acc = 0;
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        const uint8_t *q = x[i].qs;
        const int8_t *a = y[i].qs;
        int32_t sumi = 0;
        int sc[8], mn[8];
        spill_q4_k_scales(x[i].scales, sc, mn);
        for (int j = 0; j < 8; j += 2, q += 32, a += 64) {
            int d0 = 0, d1 = 0;
            for (int l = 0; l < 32; l++) {
                d0 += (q[l] & 0xF) * a[l];
                d1 += (q[l] >> 4) * a[l + 32];
            }
            sumi += sc[j] * d0 + sc[j + 1] * d1;
        }
        acc = spill_q4_k_block(acc, spill_fp16_to_fp32(x[i].d), spill_fp16_to_fp32(x[i].dmin), y + i, sumi, mn);
    }
    return acc;
}

/* value v of a Q6_K block has scale sc[v / 16]; sum(sc*(q - 32)*a) = sum_g sc_g*(sum(q*a) - 32*bsum_g),
 * at most 16 * 128 * 16 * 63 * 127 in magnitude: inside int32 */
float spill_dot_q6_k_q8_k(int64_t n, const void *row, const void *act) {
    const spill_block_q6_k *x = row;
    const spill_block_q8_k *y = act;
    float acc = 0;
    for (int64_t i = 0; i < n / SPILL_QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *a = y[i].qs;
        int32_t sumi = 0;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, a += 128) {
            for (int k = 0; k < 4; k++) { /* quarter k: 32 values, two groups of 16 */
                const uint8_t *lo = ql + (k & 1) * 32;
                int d[2] = {0, 0};
                for (int l = 0; l < 32; l++) {
                    int q = (k >= 2 ? lo[l] >> 4 : lo[l] & 0xF) | (((qh[l] >> (2 * k)) & 3) << 4);
                    d[l / 16] += q * a[32 * k + l];
                }
                for (int h = 0; h < 2; h++) sumi += x[i].scales[8 * half + 2 * k + h] * d[h];
            }
        }
        acc = spill_q6_k_block(acc, spill_fp16_to_fp32(x[i].d), y + i, sumi, x[i].scales);
    }
    return acc;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

void spill_quantize_q4_k(const float *x, spill_block_q4_k *b) {
    float sc[8], mn[8], dmax = 0, mmax = 0;
    for (int j = 0; j < 8; j++) {
        float lo = 0, hi = 0; /* the min is at most 0: x = d*q - m with m >= 0 */
        for (int l = 0; l < 32; l++) {
            lo = fminf(lo, x[32 * j + l]);
            hi = fmaxf(hi, x[32 * j + l]);
        }
        sc[j] = (hi - lo) / 15;
        mn[j] = -lo;
        dmax = fmaxf(dmax, sc[j]);
        mmax = fmaxf(mmax, mn[j]);
    }
    float d = dmax / 63, dmin = mmax / 63;
    b->d = spill_fp32_to_fp16(d);
    b->dmin = spill_fp32_to_fp16(dmin);
    d = spill_fp16_to_fp32(b->d);
    dmin = spill_fp16_to_fp32(b->dmin);
    int isc[8], imn[8];
    for (int j = 0; j < 8; j++) {
        isc[j] = d > 0 ? clampi((int)lrintf(sc[j] / d), 0, 63) : 0;
        imn[j] = dmin > 0 ? clampi((int)lrintf(mn[j] / dmin), 0, 63) : 0;
    }
    memset(b->scales, 0, sizeof b->scales);
    for (int j = 0; j < 4; j++) {
        b->scales[j] = (uint8_t)(isc[j] | ((isc[j + 4] >> 4) << 6));
        b->scales[j + 4] = (uint8_t)(imn[j] | ((imn[j + 4] >> 4) << 6));
        b->scales[j + 8] = (uint8_t)((isc[j + 4] & 0xF) | ((imn[j + 4] & 0xF) << 4));
    }
    for (int j = 0; j < 8; j += 2)
        for (int l = 0; l < 32; l++) {
            int q[2];
            for (int k = 0; k < 2; k++) {
                float s = d * (float)isc[j + k], m = dmin * (float)imn[j + k];
                q[k] = s > 0 ? clampi((int)lrintf((x[32 * (j + k) + l] + m) / s), 0, 15) : 0;
            }
            b->qs[16 * j + l] = (uint8_t)(q[0] | (q[1] << 4));
        }
}

void spill_quantize_q6_k(const float *x, spill_block_q6_k *b) {
    float s[16], smax = 0;
    for (int j = 0; j < 16; j++) {
        float amax = 0;
        for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
        s[j] = amax / 31;
        smax = fmaxf(smax, s[j]);
    }
    float d = smax / 127;
    b->d = spill_fp32_to_fp16(d);
    d = spill_fp16_to_fp32(b->d);
    for (int j = 0; j < 16; j++) b->scales[j] = (int8_t)(d > 0 ? clampi((int)lrintf(s[j] / d), -128, 127) : 0);
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int v = 0; v < 256; v++) {
        int chunk = v / 128, w = v % 128, g = w / 32, l = w % 32;
        int si = chunk * 8 + l / 16 + 2 * g;
        float step = d * (float)b->scales[si];
        int q = step > 0 ? clampi((int)lrintf(x[v] / step), -32, 31) + 32 : 32;
        uint8_t *ql = b->ql + 64 * chunk, *qh = b->qh + 32 * chunk;
        int li = (g == 1 || g == 3) ? l + 32 : l;
        if (g < 2) ql[li] |= (uint8_t)(q & 0xF);
        else ql[li] |= (uint8_t)((q & 0xF) << 4);
        qh[l] |= (uint8_t)(((q >> 4) & 3) << (2 * g));
    }
}
