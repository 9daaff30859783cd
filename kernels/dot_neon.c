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

/* 16-bit rows widened 4 values an instruction: F16 by FCVTL, BF16 by a shift into the high half (both exact; kernels/widen_rows.h) */
#define WR_W 4
#define WR_F16(h, o) vst1q_f32(o, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h))))
#define WR_BF16(h, o) vst1q_u32((uint32_t *)(o), vshll_n_u16(vld1_u16(h), 16))
#define WR_NAME spill_widen_rows_neon
#include "widen_rows.h"
