/* Attention's weighted sum of values with the sums in registers, written once for any SIMD width and
 * compiled by the file that includes it (kernels/dots_avx512.c in 512-bit registers, kernels/dot_neon.c
 * in 128-bit ones). The includer defines AV_VEC (a register of AV_W floats), AV_LOAD(p), AV_STORE(p, x),
 * AV_SET1(f), AV_FMA(b, x, acc) (acc + b * x, fused: fmaf's rounding) and AV_NAME, the function's name.
 *
 * The same bits as spill_attn_values_c (kernels/ops.c): each output element is fmaf(a, v, out) over
 * the positions in increasing order, the same operations in the same order; only where the running sums
 * live changes. The portable loop loads, fuses and stores every query's sums once per position (80% of
 * attention's time in a decode step of 16 sequences); here up to 4 queries' sums of up to 4 registers
 * stay in registers across a block's positions, each value row loaded once for them. */

/* NI queries (out[i], att + i * ld, lens[i]) and NV registers of their sums from element d0 */
static inline __attribute__((always_inline)) void av_group(int NI, int NV, float *const *out, int d0, const float *att,
                                                           int64_t ld, const int *lens, const float *v, int64_t vs, int p0,
                                                           int np) {
    AV_VEC acc[4][4];
    int e[4], common = np;
    for (int i = 0; i < NI; i++) { /* query i sees the block's positions before e[i] */
        int k = lens[i] - p0;
        e[i] = k < 0 ? 0 : k > np ? np : k;
        common = e[i] < common ? e[i] : common;
        for (int k2 = 0; k2 < NV; k2++) acc[i][k2] = AV_LOAD(out[i] + d0 + AV_W * k2);
    }
    /* the rows SPILL_PREFETCH_AHEAD bytes on, within the block (a long context's values come from memory) */
    const int ahead = (int)((SPILL_PREFETCH_AHEAD + 4 * vs - 1) / (4 * vs));
    int p = 0;
    for (; p < common; p++) {
        const float *vp = v + (int64_t)p * vs + d0;
        if (p + ahead < np)
            for (int b = 0; b < 4 * AV_W * NV; b += 64) __builtin_prefetch((const char *)(vp + (int64_t)ahead * vs) + b);
        AV_VEC x[4];
        for (int k = 0; k < NV; k++) x[k] = AV_LOAD(vp + AV_W * k);
        for (int i = 0; i < NI; i++) {
            AV_VEC b = AV_SET1(att[(int64_t)i * ld + p0 + p]);
            for (int k = 0; k < NV; k++) acc[i][k] = AV_FMA(b, x[k], acc[i][k]);
        }
    }
    for (int i = 0; i < NI; i++) /* a prefill tile's later queries see more of the block */
        for (int q = common; q < e[i]; q++) {
            const float *vp = v + (int64_t)q * vs + d0;
            AV_VEC b = AV_SET1(att[(int64_t)i * ld + p0 + q]);
            for (int k = 0; k < NV; k++) acc[i][k] = AV_FMA(b, AV_LOAD(vp + AV_W * k), acc[i][k]);
        }
    for (int i = 0; i < NI; i++)
        for (int k = 0; k < NV; k++) AV_STORE(out[i] + d0 + AV_W * k, acc[i][k]);
}

#define AV_CASE(ni, nv)                                                                                     \
    case (ni) * 8 + (nv): av_group(ni, nv, out + i0, d0, att + (int64_t)i0 * ld, ld, lens + i0, v, vs, p0, np); break

void AV_NAME(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v, int64_t vs, int p0,
             int np, int hd) {
    int d0 = 0;
    while (d0 + AV_W <= hd) {
        int nv = (hd - d0) / AV_W;
        nv = nv > 4 ? 4 : nv;
        for (int i0 = 0; i0 < nq; i0 += 4) {
            int ni = nq - i0 < 4 ? nq - i0 : 4;
            switch (ni * 8 + nv) {
                AV_CASE(1, 1); AV_CASE(1, 2); AV_CASE(1, 3); AV_CASE(1, 4);
                AV_CASE(2, 1); AV_CASE(2, 2); AV_CASE(2, 3); AV_CASE(2, 4);
                AV_CASE(3, 1); AV_CASE(3, 2); AV_CASE(3, 3); AV_CASE(3, 4);
                AV_CASE(4, 1); AV_CASE(4, 2); AV_CASE(4, 3); AV_CASE(4, 4);
            }
        }
        d0 += AV_W * nv;
    }
    for (int i = 0; i < nq && d0 < hd; i++) /* the elements past the last register, as the portable loop */
        for (int p = p0; p < p0 + np && p < lens[i]; p++)
            for (int d = d0; d < hd; d++) out[i][d] = fmaf(att[(int64_t)i * ld + p], v[(int64_t)(p - p0) * vs + d], out[i][d]);
}
#undef AV_CASE
