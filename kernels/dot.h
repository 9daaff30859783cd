/* Inside kernels/: the dot-product kernels of one instruction set, as a table, and what every
 * version shares. The portable C kernels (kernels/dot.c) define the result: each SIMD version
 * (dot_avx2.c, dot_neon.c, dot_neon_dotprod.c) computes the same operations in the same order and
 * must equal them bit for bit (tests/test_quant.c checks every format at odd sizes).
 *
 * The shape they all share: 8 float lanes; lane l of a 32-value block of integers is the exact
 * integer sum of the 4 products of values 4l..4l+3, multiplied by the block's scale and added to the
 * lane with one fused multiply-add; F32 and F16 fused-multiply-add value i into lane i % 8; BF16 (whose
 * activations are BF16 too) adds to lane l of each 16 values the products of values 2l + 1 then 2l, each
 * with its own rounding, which is what AVX-512 BF16's vdpbf16ps does (kernels/dots_bf16.c). At the
 * end the lanes are reduced pairwise: (l, l+4), then (0+2, 1+3); values after the last full 8 are
 * added one by one. This is the shape llama.cpp's x86 kernels have, so spill and its peer round
 * alike, and it is what both AVX2 (8 lanes) and NEON (two registers of 4) do naturally. (BF16: the
 * values after the last full 16.) */
#ifndef SPILL_KERNELS_DOT_H
#define SPILL_KERNELS_DOT_H

#include <math.h>
#include <string.h>

#include "spill_kernels.h"

/* dot(weight row of n values, the activation converted for it by spill_act_quantize) */
typedef float (*spill_dot_fn)(int64_t n, const void *w, const void *act);

/* nr rows of w (rb bytes apart) against one activation: out[r] = that table's dot of row r, bit for
 * bit, several rows' sums interleaved (independent chains, the activation loaded once); returns 0,
 * computing nothing, for a type it has no such kernel for */
typedef int (*spill_rows_fn)(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out);

/* nr rows against SPILL_DOTS_TILE tokens (act + t * stride): out[t * ldo + r] = that table's dot, bit
 * for bit, each row decoded once for the tokens; returns 0, computing nothing, for a type it has no
 * such kernel for */
typedef int (*spill_tile_fn)(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act,
                             uint64_t stride, float *out, int64_t ldo);

/* spill_act_quantize_portable's work for activation type at (Q8_0, Q8_1, F16, Q8_K), the same bits for every
 * finite input; returns 0, writing nothing, for a type it has no kernel for. Q8_0/Q8_1: per block the
 * largest |x| (a NaN skipped, as the portable loop does), d = amax / 127, each value x * spill_q8_factor
 * rounded half to even (the default rounding mode, as nearbyintf rounds), d and Q8_1's d * sum as F16
 * by the portable conversion; F16: each value rounded to nearest even, as spill_fp32_to_fp16 does */
typedef int (*spill_act_fn)(spill_dtype at, const float *x, void *out, int64_t n);

typedef struct spill_dot_table {
    spill_dot_fn f32, f16, bf16, q8_0, q4_0, q4_1, q4_k, q6_k;
    spill_rows_fn rows; /* NULL: one row at a time */
    spill_tile_fn tile; /* NULL: one token at a time. AVX2's tiles, which take scales prepared once per
                           matmul, are called by kernels/dots.c directly (spill_dots4_avx2) */
    spill_act_fn act;   /* NULL: the portable one */
} spill_dot_table;

/* floats a tile of 4 tokens' BF16 activations takes, prepared for spill_dots_bf16_avx512: 4 * n values of 2 bytes */
#define SPILL_BF16_TILE_FLOATS(n) ((size_t)2 * (size_t)(n))

/* the active table's rows kernel (kernels/dot.c): 0 when it has none for w */
int spill_vec_dot_rows(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out);
/* the active table's tile kernel: 0 when it has none for w */
int spill_vec_dot_tile(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                       float *out, int64_t ldo);

extern const spill_dot_table spill_dot_portable;
#if defined(SPILL_DOT_AVX2)
extern const spill_dot_table spill_dot_avx2;
#endif
#if defined(SPILL_DOT_NEON)
extern const spill_dot_table spill_dot_neon;
#endif
#if defined(SPILL_DOT_NEON_DOTPROD)
extern const spill_dot_table spill_dot_neon_dotprod;
#endif

/* the table of isa, NULL when this build has none for it */
const spill_dot_table *spill_dot_table_of(spill_isa isa);

#if defined(SPILL_DOT_AVX2)
/* kernels/dots_avx2.c: 4 tokens' scales as floats; nr rows (rb bytes apart) against 4 tokens
 * (out[t * ldo + r]); nr rows against one token (out[r]; 0 when w has no such kernel) */
void spill_dots_prepare_avx2(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc);
void spill_dots4_avx2(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                      const float *sc, float *out, int64_t ldo);
/* Q4_0 rows against nt >= 8 tokens with each row unpacked once (kernels/dots_avx2.c); returns the tokens
   done (whole tiles), 0 where nt is too few or the rows too many (more than 4 rows of 16384 values: then
   Q4_0's own tile, which unpacks them for every 4 tokens) */
int spill_dots_q4_0_unpacked_avx2(int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, uint64_t stride,
                                  int nt, const float *sc, size_t pt, float *out, int64_t ldo);
int spill_dots_rows_avx2(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out);
/* kernels/dots_avx2.c: nr <= 16 rows of Q8_0, Q4_0 or Q4_1 laid out in a panel with the rows in the lanes of
   256-bit registers (spill_dots_qpanel_bytes_avx2(w, n) bytes), then any number of tokens against it, one at
   a time for each 8 rows, their prepared floats (tile k's at sc + k * pt) as spill_dots_prepare_avx2 made
   them without AVX-512 VNNI; meanwhile next_len bytes from next (NULL for none) are prefetched */
size_t spill_dots_qpanel_bytes_avx2(spill_dtype w, int64_t n);
void spill_dots_panel_pack_avx2(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, void *panel);
void spill_dots_panel_avx2(spill_dtype w, int64_t n, const void *panel, int nr, const void *act, uint64_t stride, int nt,
                           const float *sc, size_t pt, float *out, int64_t ldo, const void *next, uint64_t next_len);
#endif
/* spill_widen_rows: the portable loop (kernels/ops.c) and its SIMD twins, the same values */
void spill_widen_rows_c(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst);
#if defined(SPILL_DOT_AVX2)
void spill_widen_rows_avx2(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst);
#endif
#if defined(__aarch64__)
void spill_widen_rows_neon(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst);
#endif
/* spill_attn_values: the portable loop (kernels/ops.c) and its SIMD twins (kernels/attn_values.h), the same bits */
void spill_attn_values_c(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v, int64_t vs,
                         int p0, int np, int hd);
#if defined(SPILL_DOT_AVX512)
/* kernels/dots_avx512.c: F32 rows against nq queries (query i at q + i * qs), out[i * ldo + r] the one-token
   dot's bits, two rows per register */
void spill_scores_f32_avx512(int64_t n, const float *rows, int64_t rs, int nr, const float *q, int64_t qs, int nq, float *out,
                             int64_t ldo);
void spill_attn_values_avx512(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v,
                              int64_t vs, int p0, int np, int hd);
#endif
#if defined(SPILL_DOT_AVX2)
/* attention's scores against F32 keys for 1-3 queries (kernels/dots_avx2.c); 0 for other counts */
int spill_scores_f32_avx2(int64_t n, const float *rows, int64_t rs, int nr, const float *q, int64_t qs, int nq, float *out,
                          int64_t ldo);
void spill_attn_values_avx2(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v,
                            int64_t vs, int p0, int np, int hd);
#endif
#if defined(__aarch64__)
void spill_attn_values_neon(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v,
                            int64_t vs, int p0, int np, int hd);
#endif
#if defined(SPILL_DOT_AVX512)
/* kernels/cpu.c: AVX-512 F, VL and DQ usable here (and SPILL_AVX512 is not 0) */
int spill_cpu_avx512(void);
/* kernels/cpu.c: and BW and VNNI */
int spill_cpu_avx512_vnni(void);
/* 1 when the F32/F16/BF16 tiles of w run in 512-bit registers: F32 and F16 with AVX-512 (kernels/dots_avx512.c),
   BF16 with AVX-512 BF16 that passed spill_dpbf16_matches() (kernels/dots_bf16.c) */
int spill_cpu_wide512(spill_dtype w);
/* AVX-512 BF16 on this CPU, its vdpbf16ps giving kernels/dot.h's BF16 bits (asked once; SPILL_DPBF16=0 or
   SPILL_AVX512=0 turn it off) */
int spill_cpu_avx512_bf16(void);
/* kernels/dots_bf16.c: 1 when this CPU's vdpbf16ps gives kernels/dot.h's BF16 lanes on values that tell the
   possible orders and roundings apart */
int spill_dpbf16_matches(void);
/* kernels/dots_bf16.c: BF16 rows against ntiles (1 or 2) tiles of 4 tokens with vdpbf16ps, the activations
   as spill_dots_prepare_bf16_avx512 laid them out (tile k's at sc + k * pt floats; it lays out a partial last
   tile too, zeros for its missing tokens), the results of the first nt <= 4 * ntiles tokens stored: the
   one-token dot's bits */
void spill_dots_bf16_avx512(int ntiles, int nt, int64_t n, const void *wrows, uint64_t rb, int nr, const float *sc,
                            size_t pt, float *out, int64_t ldo);
void spill_dots_prepare_bf16_avx512(int64_t n, const void *act, uint64_t stride, int nt, float *sc);
/* kernels/dots_bf16.c: the one-token BF16 dot and nr rows against one token with vdpbf16ps (256-bit: the 8
   lanes of kernels/dot.h), for kernels/dot_avx2.c where spill_cpu_avx512_bf16() */
float spill_dot_bf16_dpbf16(int64_t n, const uint16_t *x, const uint16_t *y);
void spill_rows_bf16_dpbf16(int64_t n, const void *wrows, uint64_t rb, int nr, const uint16_t *act, float *out);

/* kernels/dots_vnni.c: spill_dots4_avx2's Q8_0, Q4_0, Q4_1 tiles, the same bits with vpdpbusd in 512-bit
   registers, for ntiles (1 or 2) tiles of 4 tokens at once (tile k's tokens from act + 4k * stride, its
   prepared floats at sc + k * pt, made by spill_dots_prepare_avx2 as they are where this is true) */
void spill_dots_quant_vnni(spill_dtype w, int ntiles, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act,
                           uint64_t stride, const float *sc, size_t pt, float *out, int64_t ldo);
/* kernels/dots_vnni.c: nr <= 16 rows of Q8_0, Q4_0 or Q4_1 laid out in a panel (spill_dots_qpanel_bytes(n)),
   then any number of tokens against it (two at a time, an odd one last), their prepared floats (tile k's at sc + k * pt) as
   spill_dots_prepare_avx2 made them where spill_cpu_avx512_vnni(); meanwhile next_len bytes from next
   (the next rows the caller will lay out; NULL for none) are prefetched */
size_t spill_dots_qpanel_bytes(int64_t n);
void spill_dots_panel_pack_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, void *panel);
void spill_dots_panel_vnni(spill_dtype w, int64_t n, const void *panel, int nr, const void *act, uint64_t stride, int nt,
                           const float *sc, size_t pt, float *out, int64_t ldo, const void *next, uint64_t next_len);
/* kernels/dots_vnni.c: the same for Q4_K and Q6_K (spill_dots_kpanel_bytes(n)); the tokens in whole tiles of 4,
   prepared by spill_dots_prepare_kquant_vnni */
size_t spill_dots_kpanel_bytes(int64_t n);
void spill_dots_kpanel_pack_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, void *panel);
void spill_dots_kpanel_vnni(spill_dtype w, int64_t n, const void *panel, int nr, const void *act, uint64_t stride, int nt,
                            const float *sc, size_t pt, float *out, int64_t ldo, const void *next, uint64_t next_len);
/* kernels/dots_vnni.c: the K-quants' tiles (Q4_K, Q6_K), the same bits as the one-token dot, for ntiles (1 or 2)
   tiles of 4 tokens at once; their activations as spill_dots_prepare_kquant_vnni laid them out (tile k's at
   sc + k * pt, SPILL_KQ_PREP floats per 256-value block) */
void spill_dots_prepare_kquant_vnni(int64_t n, const void *act, uint64_t stride, int nt, float *sc);
void spill_dots_kquant_vnni(spill_dtype w, int ntiles, int64_t n, const void *wrows, uint64_t rb, int nr, const float *sc,
                            size_t pt, float *out, int64_t ldo);
/* kernels/dots_vnni.c: Q8_0, Q4_0 and Q4_1 against one token, 8 rows at a time (out[r] the one-token dot's bits);
   returns the rows it did (a multiple of 8), the caller does the rest */
int spill_dots_quant_rows_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out);
/* the same against nt tokens (act + t * stride, out + t * ldo), up to 3 at once sharing each row pair's loads */
int spill_dots_quant_rows_multi_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act,
                                     uint64_t stride, int nt, float *out, int64_t ldo);
/* kernels/dots_vnni.c: the K-quants against one token, 8 rows at a time (out[r] the one-token dot's bits);
   returns the rows it did (a multiple of 8), the caller does the rest */
int spill_dots_kquant_rows_vnni(spill_dtype w, int64_t n, const void *wrows, uint64_t rb, int nr, const void *act, float *out);
/* kernels/dots_avx512.c: spill_dots4_avx2's F32 and F16 tiles (BF16: handed to kernels/dots_bf16.c), the same bits in 512-bit registers, for
   ntiles (1 or 2) tiles of 4 tokens at once, the activations as spill_dots_prepare_wide_avx512 made them
   (tile k's at sc + k * pt) */
void spill_dots_wide_avx512(spill_dtype w, int ntiles, int64_t n, const void *wrows, uint64_t rb, int nr, const float *sc,
                            size_t pt, float *out, int64_t ldo);
void spill_dots_prepare_wide_avx512(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc);
#endif

/* floats per 256-value block and tile of 4 tokens that the K-quants' VNNI tiles take prepared (kernels/dots_vnni.c:
   the tokens' scales, their values in pairs of tokens, their 16- and 32-value sums) */
#define SPILL_KQ_PREP (4 + 256 + 32 + 16)

/* a Q4_K block's 8 6-bit scales and mins, unpacked from its 12 bytes (kernels/kquant.c) */
static inline void spill_q4_k_scales(const uint8_t *q, int sc[8], int mn[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        mn[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0xF) | ((q[j] >> 6) << 4);
        mn[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
}

/* How a K-quant super-block against Q8_K ends, in every implementation (so they agree bit for bit):
 * Q4_K: sumi = sum_j sc_j * sum(q * a) over the block, exact in int32; the minima come in through the
 * activations' 16-value sums. Q6_K: sumi = sum_g sc_g * sum(q * a); its values' offset of 32 likewise. */
/* the float steps, given the exact integers: summ = sum_j mn_j * (the activations' sums of sub-block j),
   offset = sum_g sc_g * (the activations' sums of group g) (SIMD kernels may sum them in any order) */
static inline float spill_q4_k_end(float acc, float dx, float mx, float yd, int32_t sumi, int32_t summ) {
    acc = fmaf(dx * yd, (float)sumi, acc);
    return fmaf(-(mx * yd), (float)summ, acc);
}
static inline float spill_q6_k_end(float acc, float dx, float yd, int32_t sumi, int32_t offset) {
    return fmaf(dx * yd, (float)(sumi - 32 * offset), acc);
}
static inline float spill_q4_k_block(float acc, float dx, float mx, const spill_block_q8_k *y, int32_t sumi, const int mn[8]) {
    int32_t summ = 0;
    for (int j = 0; j < 8; j++) summ += mn[j] * (y->bsums[2 * j] + y->bsums[2 * j + 1]);
    return spill_q4_k_end(acc, dx, mx, y->d, sumi, summ);
}
static inline float spill_q6_k_block(float acc, float dx, const spill_block_q8_k *y, int32_t sumi, const int8_t *sc) {
    int32_t offset = 0;
    for (int g = 0; g < 16; g++) offset += sc[g] * y->bsums[g];
    return spill_q6_k_end(acc, dx, y->d, sumi, offset);
}

/* The factor a Q8 block's values are multiplied by before rounding (spill_act_quantize_portable and its
 * SIMD twins): 127 / amax, and 0 where that is not a finite number (amax 0, or so small, an all-subnormal
 * block, that 127 / amax overflows: its values would become infinities, which no integer conversion
 * defines; its scale d = amax / 127 is an F16 0 anyway) */
static inline float spill_q8_factor(float amax) {
    float id = amax != 0.0f ? 127.f / amax : 0.0f;
    return id <= 3.4e38f ? id : 0.0f;
}

/* An activation for BF16 weights: rounded to nearest even (spill_fp32_to_bf16), a subnormal to a zero of
 * its sign, as AVX-512 BF16's vcvtneps2bf16 does (it takes subnormal inputs as zero) */
static inline uint16_t spill_bf16_act(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000);
    return spill_fp32_to_bf16(f);
}

/* 4 bytes from p as one int32 (unaligned): a lane group's 4 values, broadcast by the panels (kernels/dots_vnni.c,
   kernels/dots_avx2.c) */
static inline int32_t spill_ld32(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline float spill_hsum8(const float a[8]) {
    float r0 = a[0] + a[4], r1 = a[1] + a[5], r2 = a[2] + a[6], r3 = a[3] + a[7];
    return (r0 + r2) + (r1 + r3);
}

/* Weights stream from memory once per token and the hardware prefetcher does not run far enough
 * ahead of it, so the SIMD kernels ask for the bytes 8 KiB ahead. Measured on the 2-core x86 dev VM,
 * SmolLM2 Q4_1 decode, 2 threads: none 67 tok/s, 512 B 89, 2 KiB 171, 4 KiB 189, 8 KiB 168 (2026-11);
 * on the same VM running faster (2026-12-04, host reads at 46 GB/s), decode at 4 / 8 / 16 KiB, two
 * rounds: SmolLM2 Q4_1 235, 218 / 232, 219 / 209, 201 tok/s; Q8_0 183, 183 / 210, 206 / 185, 184; BF16
 * 135, 139 / 140, 146 / 143, 146; a Llama-3.2-1B-shaped Q4_K_M 134, 128 / 162, 158 / 174, 165. 8 KiB is
 * never the worst and gains most where one thread's reads were short of misses in flight. */
#define SPILL_PREFETCH_AHEAD 8192

/* every cache line of a block of `bytes` at x, SPILL_PREFETCH_AHEAD further on: a K-quant block (144 or
 * 210 bytes) spans 3 or 4 lines, and prefetching only the first two of a Q4_K block left one-token Q4_K
 * at 51 GMAC/s against 75-81 with all of them (65536 x 2048 rows from memory, 2 threads) */
static inline __attribute__((always_inline)) void spill_prefetch_block(const void *x, size_t bytes) {
    const char *p = (const char *)x + SPILL_PREFETCH_AHEAD;
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
    __builtin_prefetch(p + bytes - 1);
}

/* Attention's F32 key rows (row p at rows + p * rs floats, n floats of it used) SPILL_PREFETCH_AHEAD bytes
 * of rows on (a long context's K cache is read from memory: 16 sequences at 400 positions are 295 MB of
 * SmolLM2's K and V per step): a scores kernel at rows [r, r + R) asks for every line of the R rows
 * from r + spill_key_rows_ahead(rs) on, those below nr. */
static inline int64_t spill_key_rows_ahead(int64_t rs) { return (SPILL_PREFETCH_AHEAD + 4 * rs - 1) / (4 * rs); }
static inline __attribute__((always_inline)) void spill_prefetch_key_rows(const float *rows, int64_t rs, int64_t n,
                                                                          int64_t from, int R, int64_t nr) {
    for (int64_t p = from; p < from + R && p < nr; p++)
        for (int64_t b = 0; b < 4 * n; b += 64) __builtin_prefetch((const char *)(rows + p * rs) + b);
}

/* (The NEON kernels' prefetch, kernels/dot_neon.h; x86's one-token kernels ask for one stream instead,
 * spill_rows_prefetch_blocks below, which was never measured on Arm.) Where a kernel that walks R rows
 * of rb bytes side by side (rows r at wrow + r * rb), now at byte off of each, prefetches row 0's bytes
 * (row r's: the result + r * rb): SPILL_PREFETCH_AHEAD along the row,
 * and past the row's end on into the row R further on, the one the next call walks. Straight ahead
 * landed in the call's own rows when rows are shorter than 4 KiB (a 1024-wide F16 row is 2 KiB), which
 * are being read anyway. One-token matmul over a 256 MiB stack of 1024-wide layers, 2 threads, the x86
 * dev VM, 3 interleaved runs each: F16 6.4-7.6 -> 9.4-10.4 GMAC/s, BF16 5.9-7.4 -> 8.9-9.9. */
/* (off + SPILL_PREFETCH_AHEAD - rb) % rb, for off < rb, needs no division in the loop: wrap is
   spill_rows_prefetch_wrap(rb), taken once per call */
static inline uint64_t spill_rows_prefetch_wrap(uint64_t rb) {
    return rb && rb <= SPILL_PREFETCH_AHEAD ? (SPILL_PREFETCH_AHEAD - rb) % rb : 0;
}
static inline const uint8_t *spill_rows_prefetch_at(const uint8_t *wrow, uint64_t rb, int R, uint64_t off, uint64_t wrap) {
    uint64_t ahead = off + SPILL_PREFETCH_AHEAD;
    if (ahead < rb) return wrow + ahead;
    uint64_t o = rb <= SPILL_PREFETCH_AHEAD ? off + wrap : ahead - rb; /* < 2 rb, resp. < rb */
    if (o >= rb) o -= rb;
    return wrow + (uint64_t)R * rb + o;
}

/* One-token kernels walk R rows side by side (row r at wrow + r * rb, as a matmul's rows are packed), now
 * at byte off of each, and ask for the lines they will read as ONE stream: the stretch of R rows is
 * prefetched in order, R times as fast as the kernel walks a row, running on into the next call's rows
 * without a seam. It runs spill_rows_stream_ahead(rb, R) = (R - 1) * rb + SPILL_PREFETCH_AHEAD bytes
 * past the stretch's start: row R - 1's first line is then asked for SPILL_PREFETCH_AHEAD bytes of
 * stream before it is read, the least lead of any line (the stream at SPILL_PREFETCH_AHEAD alone gave 8
 * BF16 rows of 576 a lead of 128 bytes). The lines go to L2 (some wait up to twice the stretch before
 * they are read) except where the caller says into_l1. Measured on a 2-vCPU Zen 4 VM with AVX-512, 256
 * MiB of rows from memory, one thread, best of 5, two or three alternated rounds (docs/results.md,
 * 2026-12-07), GB/s:
 * - R streams, each row SPILL_PREFETCH_AHEAD ahead along itself (what the 8-row AVX-512 kernels did):
 *   Q8_0 8 rows (VNNI) of 576 6.9, of 1536 9.2-11.4, of 8192 17.6-18.3; as this stream 20-23.6,
 *   20.9-24.9, 20.9-22.7. Q4_K 8 rows of 1536 10-12 -> 17-18; Q6_K 8 rows of 2048 11.7 -> 20-28.
 * - L2 against L1, the same stream: VNNI Q8_0 of 1536 20.9-22.5 / 15.9-17.3, BF16 8 rows of 1536
 *   19.3-20.2 / 14.7-15.8, AVX2 Q6_K 4 rows of 1536 17-19 / 9.5; but AVX2's Q4_0, Q4_1 and Q8_0 rows
 *   (rows_quant, 4 at a time, compute-bound near the memory's rate) 13-15 / 15-16.6 at 1536: they ask
 *   for L1.
 * The stream does not stop at the call's last row: it runs on into the rows after them, which a
 * matmul's next call reads next within a matrix (the next few rows for a batch's tokens, or the
 * thread's next unit: kernels/ops.c gives each thread a run of consecutive units). Stopping it there
 * (commit fb7bb79) left batched steps, which call a kernel for 4-8 rows at a time, with no prefetch
 * at all for rows under 8 KiB: 2 and 3 tokens took 2-3x one token's time (docs/results.md). Asking for
 * a call's first stretch at once (which no stream reached) measured within the noise, so it is not
 * done. */
static inline uint64_t spill_rows_stream_ahead(uint64_t rb, int R) {
    return (uint64_t)(R - 1) * rb + SPILL_PREFETCH_AHEAD;
}

/* The stream's step for a kernel at byte off of each row that reads step bytes of each (a block), or
 * that calls it once per 64 bytes of each row (step 64): the step * R bytes at
 * wrow + spill_rows_stream_ahead(rb, R) + off * R (consecutive calls' addresses at most 64 bytes apart,
 * so every line is asked for), into L1 where into_l1 (a constant), else L2. Always inlined: gcc 12
 * otherwise kept such a helper out of line, found it did nothing but prefetch (no side effects to gcc)
 * and deleted its calls. */
static inline __attribute__((always_inline)) void spill_rows_prefetch_blocks(const uint8_t *wrow, uint64_t rb, int R,
                                                                             uint64_t off, uint64_t step, int into_l1) {
    const uint8_t *p = wrow + spill_rows_stream_ahead(rb, R) + off * (uint64_t)R;
    if (into_l1)
        for (uint64_t b = 0; b < step * (uint64_t)R; b += 64) __builtin_prefetch(p + b, 0, 3);
    else
        for (uint64_t b = 0; b < step * (uint64_t)R; b += 64) __builtin_prefetch(p + b, 0, 2);
}

#endif
