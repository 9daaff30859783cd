/* The NEON dot products for every aarch64 CPU (kernels/dot_neon.h): a block's 4-product sums from
 * widening multiplies (int8 x int8 fits int16 exactly) and two pairwise adds. */
#include <arm_neon.h>

static inline int32x4_t sum4_neon(int8x16_t a, int8x16_t b) {
    int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b)), hi = vmull_s8(vget_high_s8(a), vget_high_s8(b));
    return vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

#define SUM4(a, b) sum4_neon(a, b)
#define DOT_TABLE spill_dot_neon
#include "dot_neon.h"

#define AV_VEC float32x4_t
#define AV_W 4
#define AV_LOAD(p) vld1q_f32(p)
#define AV_STORE(p, x) vst1q_f32(p, x)
#define AV_SET1(f) vdupq_n_f32(f)
#define AV_FMA(b, x, acc) vfmaq_f32(acc, b, x)
#define AV_NAME spill_attn_values_neon
#include "attn_values.h"

/* 16-bit rows widened 4 values an instruction: F16 by FCVTL, BF16 by a shift into the high half (both exact) */
void spill_widen_rows_neon(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst) {
    if (t != SPILL_DT_F16 && t != SPILL_DT_BF16) {
        spill_widen_rows_c(t, src, stride, nr, n, dst);
        return;
    }
    for (int r = 0; r < nr; r++) {
        const uint16_t *h = (const uint16_t *)((const uint8_t *)src + (uint64_t)r * stride);
        float *o = dst + (int64_t)r * n;
        int i = 0;
        if (t == SPILL_DT_F16)
            for (; i + 4 <= n; i += 4) vst1q_f32(o + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h + i))));
        else
            for (; i + 4 <= n; i += 4) vst1q_u32((uint32_t *)(o + i), vshll_n_u16(vld1_u16(h + i), 16));
        if (i < n) spill_dequant_row(t, h + i, o + i, n - i);
    }
}
