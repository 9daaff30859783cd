/* kernels/: the math of a Llama-family forward pass on the CPU. Kernels know nothing about where
 * memory lives; they take pointers. */
#ifndef SPILL_KERNELS_H
#define SPILL_KERNELS_H

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tensor data types, numbered as GGUF/ggml number them so that a file's type id maps directly. */
typedef enum spill_dtype {
    SPILL_DT_F32 = 0,
    SPILL_DT_F16 = 1,
    SPILL_DT_Q4_0 = 2,
    SPILL_DT_Q4_1 = 3,
    SPILL_DT_Q8_0 = 8,
    SPILL_DT_Q8_1 = 9, /* activations only */
    SPILL_DT_Q4_K = 12,
    SPILL_DT_Q6_K = 14,
    SPILL_DT_Q8_K = 15, /* activations only: what Q4_K and Q6_K rows are multiplied with */
    SPILL_DT_BF16 = 30,
} spill_dtype;

/* Block formats (little-endian, packed), 32 values per block. */
#define SPILL_QK 32
typedef struct { uint16_t d; int8_t qs[SPILL_QK]; } spill_block_q8_0;            /* x = d*q */
typedef struct { uint16_t d; uint16_t s; int8_t qs[SPILL_QK]; } spill_block_q8_1; /* s = d*sum(q) */
typedef struct { uint16_t d; uint8_t qs[SPILL_QK / 2]; } spill_block_q4_0;        /* x = d*(q-8) */
typedef struct { uint16_t d; uint16_t m; uint8_t qs[SPILL_QK / 2]; } spill_block_q4_1; /* x = d*q+m */
/* In a 4-bit block, byte j holds value j in its low nibble and value j+16 in its high nibble. */

/* K-quant super-blocks of 256 values (kernels/kquant.c says how they are laid out). */
#define SPILL_QK_K 256
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } spill_block_q4_k;
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } spill_block_q6_k;
void spill_dequant_q4_k(const spill_block_q4_k *b, float *y);
void spill_dequant_q6_k(const spill_block_q6_k *b, float *y);
void spill_quantize_q4_k(const float *x, spill_block_q4_k *b);
void spill_quantize_q6_k(const float *x, spill_block_q6_k *b);
/* Activations for the K-quants: 256 values as int8 under one F32 scale (amax/127), with the sum of
 * each 16 of them (the Q4_K minima and Q6_K's offset of 32 are applied through these sums). */
typedef struct { float d; int8_t qs[SPILL_QK_K]; int16_t bsums[SPILL_QK_K / 16]; } spill_block_q8_k;
/* the portable integer dots of a Q4_K / Q6_K row with a Q8_K row: each super-block's products are
 * summed exactly in int32, then scaled in one float step per block; the SIMD ones (kernels/dot_avx2.c,
 * kernels/dot_neon.h) find the same integers and take the same float steps, so they equal these bit for bit */
float spill_dot_q4_k_q8_k(int64_t n, const void *row, const void *act);
float spill_dot_q6_k_q8_k(int64_t n, const void *row, const void *act);
/* x quantized to Q8_K, n a multiple of 256 */
void spill_quantize_q8_k(const float *x, spill_block_q8_k *out, int64_t n);

/* 1 if the loader may accept this type for a weight tensor. */
int spill_dtype_supported(uint32_t type);
const char *spill_dtype_name(uint32_t type);
/* values per block and bytes per block; 0 for unknown types */
uint32_t spill_dtype_block_values(uint32_t type);
uint32_t spill_dtype_block_bytes(uint32_t type);
/* bytes of one row of n values (n a multiple of the block size), or 0 if n does not fit blocks */
uint64_t spill_dtype_row_bytes(uint32_t type, uint64_t n);

/* Dequantize n values of one row. */
void spill_dequant_row(spill_dtype type, const void *row, float *out, int64_t n);

/* A weight row of type W is multiplied with an activation vector converted to W's partner type:
 * Q4_1 -> Q8_1, Q4_0/Q8_0 -> Q8_0, Q4_K/Q6_K -> Q8_K, F16 -> F16, BF16 -> BF16 (rounded to nearest
 * even as llama.cpp's and the GPU's BF16 products round them; subnormals to zero, as AVX-512 BF16's
 * conversion does), F32 -> F32. */
spill_dtype spill_act_type(spill_dtype wtype);
uint64_t spill_act_bytes(spill_dtype wtype, int64_t n);
void spill_act_quantize(spill_dtype wtype, const float *x, void *out, int64_t n);
/* the same in portable C: spill_act_quantize (SIMD where the CPU has it) equals it bit for bit for every
   finite input (a NaN or infinite activation gives NaN or infinite products either way) */
void spill_act_quantize_portable(spill_dtype wtype, const float *x, void *out, int64_t n);
/* dot(weight row, converted activation) over n values */
float spill_vec_dot(spill_dtype wtype, int64_t n, const void *wrow, const void *act);

/* The portable C version of spill_vec_dot; the SIMD ones must equal it bit for bit. */
float spill_vec_dot_scalar(spill_dtype wtype, int64_t n, const void *wrow, const void *act);

/* Instruction sets the CPU dot products come in. Every build has the portable C kernels; an x86-64
 * build also has AVX2 ones, an aarch64 build NEON ones with and without the int8 dot product. Which
 * run is decided at run time from what the CPU reports (kernels/cpu.c), never at build time. */
typedef enum spill_isa {
    SPILL_ISA_PORTABLE = 0, /* C: the reference */
    SPILL_ISA_AVX2,         /* x86-64 with AVX2, FMA and F16C */
    SPILL_ISA_NEON,         /* aarch64: Advanced SIMD, on every aarch64 CPU */
    SPILL_ISA_NEON_DOTPROD, /* aarch64 with the int8 dot product (SDOT; Grace has it) */
    SPILL_ISA_COUNT
} spill_isa;
const char *spill_isa_name(spill_isa isa);
/* 1 when this build has isa's kernels and this CPU runs them */
int spill_isa_available(spill_isa isa);
/* the one spill_vec_dot and spill_dot_f32 use: the best available */
spill_isa spill_isa_best(void);
/* spill_vec_dot with isa's kernels (which must be available): how the tests compare them */
float spill_vec_dot_isa(spill_isa isa, spill_dtype wtype, int64_t n, const void *wrow, const void *act);
/* 1 when spill_vec_dot uses SIMD kernels on this CPU */
int spill_kernels_simd(void);
/* 1 when the F32 and F16 tiles of batched matmuls run in 512-bit registers (x86-64 with AVX-512 F, VL
   and DQ, unless SPILL_AVX512=0); the same bits either way */
int spill_kernels_avx512(void);
/* 1 when BF16 matmuls take AVX-512 BF16's vdpbf16ps (this CPU has it, its bits are the portable dot's,
   checked at start-up, and neither SPILL_AVX512 nor SPILL_DPBF16 is 0); the same bits either way but
   where a lane's sum falls below 2^-126, which the instruction flushes to zero (kernels/dots_bf16.c) */
int spill_kernels_avx512_bf16(void);
/* 1 when the Q8_0, Q4_0 and Q4_1 tiles of batched matmuls run in 512-bit registers with VNNI (AVX-512 F,
   VL, DQ, BW and VNNI, unless SPILL_AVX512=0); the same bits either way */
int spill_kernels_avx512_vnni(void);

/* nr weight rows (row_bytes apart) against nt tokens: out[t * ldo + r] = spill_vec_dot(w, n, row r,
 * act + t * stride), bit for bit, with each row decoded once per SPILL_DOTS_TILE tokens where
 * spill_dots_tiled(w), and several rows' independent sums interleaved (kernels/dots.c). sc holds the
 * activations' scales as floats, made once per matmul by spill_dots_prepare into
 * spill_dots_scales_len(w, n, nt) floats (0: none needed, sc may be NULL). Pass a few rows at a time
 * (SPILL_DOTS_ROWS): each row meets all nt tokens while it is in L1. */
#define SPILL_DOTS_TILE 4
#define SPILL_DOTS_ROWS 4
/* the rows to pass at a time for w in a matmul of batch tokens: SPILL_DOTS_ROWS, or 8 where the one-token
   kernels take 8 rows at once (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K with AVX-512 VNNI), so that tokens past the
   tiles use them too, or 6 where the tiles take 3 and the batch fills a tile (F32, F16 with AVX2 and
   without AVX-512; fewer tokens take the one-token kernels, 4 rows at a time) */
int spill_dots_rows_together(spill_dtype w, int batch);
int spill_dots_tiled(spill_dtype w);
size_t spill_dots_scales_len(spill_dtype w, int64_t n, int nt);
void spill_dots_prepare(spill_dtype w, int64_t n, const void *act, uint64_t stride, int nt, float *sc);
void spill_vec_dots(spill_dtype w, int64_t n, const void *wrows, uint64_t row_bytes, int nr, const void *act,
                    uint64_t stride, int nt, const float *sc, float *out, int64_t ldo);

/* The same for up to SPILL_DOTS_PANEL rows with the rows in the lanes of SIMD registers where
 * spill_dots_panel_ok(w): Q8_0, Q4_0, Q4_1, Q4_K and Q6_K in 512-bit registers with AVX-512 VNNI
 * (kernels/dots_vnni.c), Q8_0, Q4_0 and Q4_1 in 256-bit ones, 8 rows each, with AVX2 alone
 * (kernels/dots_avx2.c). The rows are laid out once in panel (spill_dots_panel_bytes(w, n) bytes) and
 * meet every token; one scale product serves 16 (AVX2: 8) rows. The same bits as spill_vec_dots. sc as
 * spill_dots_prepare made it for these nt tokens. */
#define SPILL_DOTS_PANEL 16
int spill_dots_panel_ok(spill_dtype w);
/* The fewest tokens for which a matmul lays its rows out in panels (0: never): where the panels beat the
 * tiles on the matmul harness (docs/results.md): Q4_1 from one tile (its tiles spend a second
 * product on the block minimum), the others from two; without VNNI (the AVX2 panel) Q4_1 and Q4_0 from
 * 2 tokens, Q8_0 from three tiles. */
int spill_dots_panel_from(spill_dtype w);
size_t spill_dots_panel_bytes(spill_dtype w, int64_t n);
void spill_vec_dots_panel(spill_dtype w, int64_t n, const void *wrows, uint64_t row_bytes, int nr, const void *act,
                          uint64_t stride, int nt, const float *sc, void *panel, float *out, int64_t ldo);

/* Scalar references used by tests: quantize a float row to a weight type (round to nearest). */
void spill_quantize_row_ref(spill_dtype type, const float *x, void *out, int64_t n);

/* ---- thread pool: run fn(ctx, i, n) for i in [0, n) workers, the caller included ----
 * One thread issues a pool's jobs, one job at a time: fn must not issue a job on the same pool (a
 * nested job would overwrite the current one's word). spill_pool_create may start fewer threads than
 * asked when the system refuses (it says so on stderr): spill_pool_size is the truth. */
typedef struct spill_pool spill_pool;
spill_pool *spill_pool_create(int n_threads);
void spill_pool_free(spill_pool *p);
int spill_pool_size(const spill_pool *p);
typedef void (*spill_pool_fn)(void *ctx, int ith, int nth);
/* every thread runs fn once (fn may split work by ith / nth); returns when all have */
void spill_pool_run(spill_pool *p, spill_pool_fn fn, void *ctx);
/* fn takes its work from shared counters until none is left: it runs on the caller and on the workers
   that come before the caller's fn returns, never on one that comes later (a worker the OS has not
   scheduled is not waited for); returns when every fn that started has returned. ith is still unique
   per thread (per-thread scratch), but fewer than nth threads may take part */
void spill_pool_share(spill_pool *p, spill_pool_fn fn, void *ctx);

/* ---- ops ---- */
/* out[t*rows + r] = dot(W row r, act_t) for t < batch; W is rows x cols of wtype, act holds `batch`
 * converted vectors of spill_act_bytes(wtype, cols) bytes each. */
void spill_matmul(spill_pool *pool, float *out, const void *w, spill_dtype wtype, int64_t rows,
                  int64_t cols, const void *act, int batch);
/* The same with out[t*ldo + r]: a block of rows of a wider result (a weight split between tiers). */
void spill_matmul_ld(spill_pool *pool, float *out, int64_t ldo, const void *w, spill_dtype wtype, int64_t rows,
                     int64_t cols, const void *act, int batch);
/* Several matrices of one type and width against the same activations in one pass over the pool (a
 * layer's q, k and v; gate and up): part i's rows into parts[i].out[t * ldo + r]; 1 to 4 parts. Each
 * result the bits of spill_matmul_ld on that part alone. */
typedef struct spill_matmul_part {
    float *out;
    int64_t ldo;
    const void *w;
    int64_t rows;
} spill_matmul_part;
void spill_matmul_parts(spill_pool *pool, const spill_matmul_part *parts, int n_parts, spill_dtype wtype, int64_t cols,
                        const void *act, int batch);
/* out = x / rms(x) * w */
void spill_rmsnorm(float *out, const float *x, const float *w, int n, float eps);
/* Rotary embedding in two steps, so that one position's angles serve every head of every layer.
 * spill_rope_angles: cs[2i], cs[2i+1] = cos, sin of theta_i for i < rot_dims/2, where theta_i =
 * pos * inv_freq[i] when inv_freq is given (scaled RoPE, e.g. llama3), else pos * base^(-2i/rot_dims).
 * spill_rope_apply: rotates n_heads vectors of head_dim in place by those angles; adjacent = 1:
 * pairs (2i, 2i+1) as GGUF stores Llama; 0: pairs (i, i+d/2) as Hugging Face does. */
void spill_rope_angles(float *cs, int rot_dims, int pos, float base, const float *inv_freq);
void spill_rope_apply(float *x, int n_heads, int head_dim, int rot_dims, const float *cs, int adjacent);
/* Both at once for one position (what the CUDA RoPE kernel is compared with); rot_dims <= 1024. */
void spill_rope(float *x, int n_heads, int head_dim, int rot_dims, int pos, float base, const float *inv_freq,
                int adjacent);
/* Causal attention of n_tok query tokens (positions pos0..pos0+n_tok-1) over a paged KV cache:
 * blocks[i] holds positions [i*T, (i+1)*T): T rows of keys (kv_dim = n_kv_heads*head_dim) then T rows
 * of values, in the cache's element type (F32, F16 or BF16; sums in F32). out and q are (n_tok, n_heads*head_dim); scores is scratch of pos0+n_tok floats. The
 * reference (one thread) for the GPU kernel; the forward pass runs the same math in parallel. */
/* The k (<= n) largest of n values, largest first, the lower index first among equals; NaN counts as
 * -inf (so with fewer than k finite values the rest are -inf and NaN entries by index). The GPU's
 * top-k kernel's twin. */
void spill_topk(const float *x, int n, int k, int *idx, float *val);
/* The KV cache's element types: F32 (the default), F16 and BF16. spill_kv_type_bytes: bytes of one
 * element, 0 for any other type; spill_kv_type_parse: "f32", "f16" or "bf16" (any case), -1 for
 * anything else; spill_kv_type_name: the same lower-case names. */
uint32_t spill_kv_type_bytes(spill_dtype t);
int spill_kv_type_parse(const char *name, spill_dtype *out);
const char *spill_kv_type_name(spill_dtype t);
/* n floats into the cache's type: F16 and BF16 round to nearest even (spill_fp32_to_fp16/_bf16). */
void spill_kv_row_put(spill_dtype t, void *dst, const float *src, int n);
/* a row of n cached values as floats: the row itself when t is F32, else converted into buf. Readers
 * call it once per row, so the type is decided per row, never per value. */
const float *spill_kv_row_get(spill_dtype t, const void *src, float *buf, int n);
/* Write n_tok tokens' K and V rows (kv_dim each) at positions pos0.. into the paged cache, converted to
 * kv_type: blocks[b] holds T positions of K, then T of V (runtime/kv.c's layout for one layer). */
void spill_kv_store_paged(void *const *blocks, spill_dtype kv_type, int T, int kv_dim, int pos0, int n_tok,
                          const float *k, const float *v);
void spill_attention_paged(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T, int n_tok,
                           int pos0, int n_heads, int n_kv_heads, int head_dim, float scale, float *scores);
/* Flash-decoding attention: the same result as spill_attention_paged (to float rounding) with no
 * scores scratch. The positions of each (query token, KV head) are cut into `splits` chunks
 * (spill_flash_splits: enough chunks to give the GPU about SPILL_FLASH_BLOCKS blocks at small batch,
 * one chunk when the tokens alone fill it); each chunk is walked in tiles of SPILL_FLASH_TILE positions
 * with an online softmax for all the query heads of the KV head's group and up to SPILL_FLASH_QTILE
 * query tokens at once (causal within the tile), so each K and V row is read once per group and tile
 * of tokens. With several chunks, each leaves its unnormalised output, running max and running
 * sum in `partial` (spill_flash_partial_floats floats: bounded by the model's shape, not by the
 * context) and spill_flash_combine weighs them together. The CPU twin of kernels/cuda/attention.cu;
 * returns -1 only when out of memory. */
#define SPILL_FLASH_TILE 16
#define SPILL_FLASH_QTILE 4
#define SPILL_FLASH_MIN_CHUNK 64
#define SPILL_FLASH_BLOCKS 512
/* A tile of a step's attention: nt (1..SPILL_FLASH_QTILE) consecutive tokens of one sequence, rows
 * t0.. of q and out, at positions pos0.., that sequence's block list at blocks + table. A step of many
 * sequences is one launch over all their tiles. */
typedef struct spill_flash_tile {
    int t0, nt, pos0, table;
} spill_flash_tile;
/* the tiles of one run of n_tok tokens (rows t0.., positions pos0.., its blocks at `table`) into
 * tiles[0..], (n_tok + SPILL_FLASH_QTILE - 1) / SPILL_FLASH_QTILE of them; returns how many */
int spill_flash_tiles(spill_flash_tile *tiles, int t0, int n_tok, int pos0, int table);
/* chunks per (tile, KV head) for n_tiles tiles whose longest sequence has max_len positions */
int spill_flash_splits(int n_tiles, int n_kv_heads, int max_len);
/* positions per chunk: max_len / splits rounded up to whole tiles */
int spill_flash_chunk(int max_len, int splits);
uint64_t spill_flash_partial_floats(int n_heads, int n_kv_heads, int head_dim);
/* partial: rows x splits x hd outputs, then rows x splits x (max, sum); rows = n_tok * n_heads */
void spill_flash_combine(float *out, const float *partial, int rows, int splits, int hd);
/* one sequence's n_tok tokens at pos0.. (blocks: its block list) */
int spill_flash_attention(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T, int n_tok,
                          int pos0, int n_heads, int n_kv_heads, int head_dim, float scale, float *partial);
/* a step's tiles (spill_flash_tiles of each run) over the n_tok rows of q and out; no tile reaches
 * past max_len positions (pos0 + nt <= max_len), which with n_tiles sets the splits */
int spill_flash_attention_tiles(float *out, const float *q, const void *const *blocks, spill_dtype kv_type, int T,
                                const spill_flash_tile *tiles, int n_tiles, int n_tok, int max_len, int n_heads,
                                int n_kv_heads, int head_dim, float scale, float *partial);
/* Decode's matmul on weights as the file holds them (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K):
 * out[t*ldo + r] = dot(row r of w, x[t]) for n_tok <= SPILL_GEMV_MAX_TOK tokens of `cols` F32 values,
 * each block dequantized to F32 as it is read, F32 sums. The CPU twin of kernels/cuda/gemv.cu (same
 * decoder, same order of sums); the CPU's forward pass has its own quantized dot products. */
#define SPILL_GEMV_MAX_TOK 8
void spill_gemv(float *out, int64_t ldo, const void *w, spill_dtype type, int64_t rows, int64_t cols, const float *x,
                int n_tok);
/* rows x cols of w, dequantized and rounded to BF16 (row-major, cols apart): prefill's tiles for
 * cuBLAS. BF16, not F16: F16 overflows past 65504, which activations and some weights reach. */
void spill_dequant_bf16(uint16_t *out, const void *w, spill_dtype type, int64_t rows, int64_t cols);
/* In place: x = softmax(x * scale) over n values */
/* e^x as softmax and SwiGLU compute it (kernels/ops.c): float operations only, the same bits on every
 * CPU, within 2 ulp of expf; 0 below -87.33, infinity above 88.72 */
float spill_expf(float x);
/* the largest of x[0..n) (NaNs passed over; -INFINITY when none), in vectorized lanes */
float spill_maxf(const float *x, int n);
/* y[i] = spill_expf((x[i] - shift) / div) for i < n (y may be x), and their sum in double, added in 8
 * lanes in a fixed order: the same bits on every CPU */
double spill_exp_sum(float *y, const float *x, int n, float shift, float div);
void spill_softmax(float *x, int n, float scale);
/* Attention's weighted sum of values over a block of np positions from p0: for each query i < nq and
 * position p0 <= p < p0 + np with p < lens[i], out[i][d] = fmaf(att[i * ld + p], v[(p - p0) * vs + d],
 * out[i][d]) for d < hd, positions in increasing order (the same bits on every CPU; SIMD where there
 * is one, the sums kept in registers across the block) */
/* Attention's scores against F32 keys: nr rows of n floats (row r at rows + r * rs) against nq queries
 * (query i at q + i * qs), out[i * ldo + r] = spill_dot_f32 of the two, bit for bit (with AVX-512 two rows
 * per register, each loaded once for every query; with AVX2 and 1-3 queries 8, 6 or 4 rows at a time, each
 * loaded once for the queries; else spill_vec_dots) */
void spill_scores_f32(int64_t n, const float *rows, int64_t rs, int nr, const float *q, int64_t qs, int nq, float *out,
                      int64_t ldo);
void spill_attn_values(float *const *out, const float *att, int64_t ld, const int *lens, int nq, const float *v, int64_t vs,
                       int p0, int np, int hd);
/* nr rows of a 16-bit KV cache (row r at src + r * stride bytes, n values of type t) as floats, row r at
 * dst + r * n: exact, the values spill_dequant_row gives (F16C / NEON conversions where the CPU has them),
 * but for an F16 signalling NaN, which the instructions return quieted (no writer stores one: checked
 * over all 65,536 patterns, only those 974 differ) */
void spill_widen_rows(spill_dtype t, const void *src, uint64_t stride, int nr, int n, float *dst);
/* out = silu(gate) * up */
void spill_swiglu(float *out, const float *gate, const float *up, int n);
/* out += x */
void spill_add(float *out, const float *x, int n);
/* each of `rows` rows of out (cols wide) += bias (cols): the q/k/v biases of a batch */
void spill_add_rows(float *out, const float *bias, int rows, int cols);
float spill_dot_f32(const float *a, const float *b, int n);

#ifdef __cplusplus
}
#endif
#endif
