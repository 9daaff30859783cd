/* 16-bit rows widened to floats, written once for any SIMD width and compiled by the file that includes
 * it (kernels/dot_avx2.c with F16C, 8 values a step; kernels/dot_neon.c, 4). The includer defines WR_W
 * (values a step), WR_F16(h, o) and WR_BF16(h, o) (WR_W values at h widened into o) and WR_NAME, the
 * function's name. Exact, as spill_widen_rows_c (kernels/ops.c) but for F16 signalling NaNs (returned
 * quiet): the tail goes through spill_dequant_row, other types wholly. */
void WR_NAME(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst) {
    if (t != SPILL_DT_F16 && t != SPILL_DT_BF16) {
        spill_widen_rows_c(t, src, stride, nr, n, dst);
        return;
    }
    /* the rows come from memory (a long context's K and V): the first ones asked for at once, then each
       SPILL_PREFETCH_AHEAD bytes on, within the nr rows */
    const int ahead = (int)((SPILL_PREFETCH_AHEAD + stride - 1) / stride);
    for (int r = 0; r < ahead && r < nr; r++)
        for (int b = 0; b < 2 * n; b += 64) __builtin_prefetch((const uint8_t *)src + (uint64_t)r * stride + b);
    for (int r = 0; r < nr; r++) {
        const uint16_t *h = (const uint16_t *)((const uint8_t *)src + (uint64_t)r * stride);
        if (r + ahead < nr)
            for (int b = 0; b < 2 * n; b += 64) __builtin_prefetch((const uint8_t *)h + (uint64_t)ahead * stride + b);
        float *o = dst + (int64_t)r * n;
        int i = 0;
        if (t == SPILL_DT_F16)
            for (; i + WR_W <= n; i += WR_W) WR_F16(h + i, o + i);
        else
            for (; i + WR_W <= n; i += WR_W) WR_BF16(h + i, o + i);
        if (i < n) spill_dequant_row(t, h + i, o + i, n - i);
    }
}
