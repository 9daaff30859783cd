/* Each quantized dot product against a scalar dequantize-then-dot reference in double, and the
 * threaded matmul against single dots. Both sides see the same quantized values, so they differ
 * only by float summation order: the tolerance is relative 1e-5 of the sum of |products|. */
#include "spill_kernels.h"
#include "test_util.h"

#include <math.h>

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void check_type(spill_dtype t, int n) {
    float *w = malloc(sizeof(float) * (size_t)n), *x = malloc(sizeof(float) * (size_t)n);
    float *wd = malloc(sizeof(float) * (size_t)n), *xd = malloc(sizeof(float) * (size_t)n);
    uint8_t *wq = malloc(spill_dtype_row_bytes(t, (uint64_t)n)), *xq = malloc(spill_act_bytes(t, n) + 64);
    for (int trial = 0; trial < 50; trial++) {
        float scale = powf(10.0f, (float)(trial % 7) - 3.0f);
        for (int i = 0; i < n; i++) { w[i] = frand() * scale; x[i] = frand() * (1 + (trial % 5)); }
        if (trial == 1) for (int i = 0; i < n; i++) x[i] = 0; /* all-zero blocks */
        spill_quantize_row_ref(t, w, wq, n);
        spill_dequant_row(t, wq, wd, n);
        spill_act_quantize(t, x, xq, n);
        spill_dequant_row(spill_act_type(t) == SPILL_DT_Q8_1 ? SPILL_DT_Q8_0 : spill_act_type(t), xq, xd, n);
        if (spill_act_type(t) == SPILL_DT_Q8_1) { /* q8_1 blocks carry a sum: read them as such */
            const spill_block_q8_1 *b = (const spill_block_q8_1 *)xq;
            for (int i = 0; i < n / 32; i++)
                for (int j = 0; j < 32; j++) xd[i * 32 + j] = spill_fp16_to_fp32(b[i].d) * b[i].qs[j];
        }
        double ref = 0, mag = 0;
        for (int i = 0; i < n; i++) { ref += (double)wd[i] * xd[i]; mag += fabs((double)wd[i] * xd[i]); }
        /* Q4_1 folds the block minimum through the fp16 sum s = d*sum(q): account for its rounding */
        if (t == SPILL_DT_Q4_1) {
            const spill_block_q4_1 *wb = (const spill_block_q4_1 *)wq;
            const spill_block_q8_1 *xb = (const spill_block_q8_1 *)xq;
            ref = 0;
            for (int i = 0; i < n / 32; i++) {
                double d = spill_fp16_to_fp32(wb[i].d), s = 0;
                for (int j = 0; j < 16; j++)
                    s += (double)(wb[i].qs[j] & 15) * xb[i].qs[j] + (double)(wb[i].qs[j] >> 4) * xb[i].qs[j + 16];
                ref += d * spill_fp16_to_fp32(xb[i].d) * s + (double)spill_fp16_to_fp32(wb[i].m) * spill_fp16_to_fp32(xb[i].s);
            }
        }
        float got = spill_vec_dot(t, n, wq, xq);
        double tol = 1e-5 * mag + 1e-30;
        if (fabs(got - ref) > tol)
            fprintf(stderr, "%s n=%d trial %d: got %.9g want %.9g (tol %.3g)\n", spill_dtype_name(t), n, trial, got, ref, tol);
        assert_true(fabs(got - ref) <= tol);
        /* quantization stays within half a step of the input for the 8-bit activations, plus the
         * rounding of the scale to fp16 (|q| <= 127 times a relative 2^-11) */
        /* Q8_K: within half a step of the 256 values' amax/127 (an F32 scale), and each 16's sum kept */
        if (spill_act_type(t) == SPILL_DT_Q8_K) {
            const spill_block_q8_k *b = (const spill_block_q8_k *)xq;
            for (int i = 0; i < n / 256; i++) {
                float amax = 0;
                for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[i * 256 + j]));
                for (int j = 0; j < 256; j++) assert_true(fabsf(xd[i * 256 + j] - x[i * 256 + j]) <= amax / 127 * 0.5f * 1.0001f + 1e-30f);
                for (int g = 0; g < 16; g++) {
                    int sum = 0;
                    for (int j = 0; j < 16; j++) sum += b[i].qs[16 * g + j];
                    assert_int_equal(b[i].bsums[g], sum);
                }
            }
        }
        if (spill_act_type(t) == SPILL_DT_Q8_0 && trial != 1)
            for (int i = 0; i < n; i++) {
                float amax = 0;
                for (int j = i / 32 * 32; j < i / 32 * 32 + 32; j++) amax = fmaxf(amax, fabsf(x[j]));
                assert_true(fabsf(xd[i] - x[i]) <= amax / 127 * (0.5f + 127.0f / 2048) + 1e-6f * amax);
            }
    }
    free(w); free(x); free(wd); free(xd); free(wq); free(xq);
}

static void test_q8_0(void **s) { (void)s; check_type(SPILL_DT_Q8_0, 256); check_type(SPILL_DT_Q8_0, 4096); }
static void test_q4_0(void **s) { (void)s; check_type(SPILL_DT_Q4_0, 256); check_type(SPILL_DT_Q4_0, 1536); }
static void test_q4_1(void **s) { (void)s; check_type(SPILL_DT_Q4_1, 256); check_type(SPILL_DT_Q4_1, 576); }
static void test_f16(void **s) { (void)s; check_type(SPILL_DT_F16, 100); check_type(SPILL_DT_F16, 577); }
static void test_bf16(void **s) { (void)s; check_type(SPILL_DT_BF16, 64); check_type(SPILL_DT_BF16, 333); }
static void test_f32(void **s) { (void)s; check_type(SPILL_DT_F32, 7); check_type(SPILL_DT_F32, 1000); }
static void test_q4_k(void **s) { (void)s; check_type(SPILL_DT_Q4_K, 256); check_type(SPILL_DT_Q4_K, 2816); }
static void test_q6_k(void **s) { (void)s; check_type(SPILL_DT_Q6_K, 256); check_type(SPILL_DT_Q6_K, 2816); }

static void test_dequant_q4_1_error_bound(void **s) {
    (void)s;
    float x[64], y[64];
    spill_block_q4_1 b[2];
    for (int i = 0; i < 64; i++) x[i] = frand() * 3;
    spill_quantize_row_ref(SPILL_DT_Q4_1, x, b, 64);
    spill_dequant_row(SPILL_DT_Q4_1, b, y, 64);
    for (int i = 0; i < 64; i++) {
        float d = spill_fp16_to_fp32(b[i / 32].d);
        assert_true(fabsf(x[i] - y[i]) <= d * 0.5f + 2e-3f);
    }
}

static void test_matmul_threads_equal_dots(void **s) {
    (void)s;
    /* one token (rows 8 or 6 at a time where the one-token kernels take them so), batches below, at and past the
       tile, columns so wide that the workers split the batch into chunks
       of tokens (kernels/ops.c prepares at most 320 KiB per chunk on a worker's stack), and so wide that
       two tiles' prepared activations (F32/F16/BF16, 8 x 24576 floats) go on the heap */
    spill_dtype types[] = {SPILL_DT_Q4_1, SPILL_DT_Q8_0, SPILL_DT_Q4_0, SPILL_DT_F16, SPILL_DT_BF16, SPILL_DT_F32,
                           SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    int shapes[][3] = {{77, 256, 3}, {77, 256, 37}, {9, 16384, 11}, {5, 24576, 19}, {77, 256, 1}, {45, 2048, 1}, {45, 512, 2}, {45, 512, 6},
                       /* 4, 5 and 7 tokens: Q4_1's panels from one tile on (an odd token last) */
                       {45, 512, 4}, {45, 512, 5}, {45, 512, 7},
                       /* a partial last tile in the panels: two tokens, three */
                       {45, 512, 10}, {45, 512, 15},
                       /* widths that only F32, F16 and BF16 rows take: the values past the last 8 */
                       {19, 77, 9}, {33, 5, 12}, {16, 1003, 8}, {21, 3, 16},
                       /* and one token: rows 8 (VNNI, vdpbf16ps) or 6 (AVX2's F32, F16, BF16), 4, 2 and 1 at a time with
                          the values past the last 8 */
                       {31, 77, 1}, {23, 1003, 1},
                       /* one token against rows over 8 KiB apart in a group of 4: AVX2 Q8_0 one row at a time, the
                          others' prefetch along each row */
                       {9, 16384, 1}};
    for (unsigned ti = 0; ti < sizeof types / sizeof *types; ti++)
        for (unsigned si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            spill_dtype t = types[ti];
            int rows = shapes[si][0], cols = shapes[si][1], batch = shapes[si][2];
            uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)cols), ab = spill_act_bytes(t, cols);
            if (!rb) continue; /* the width holds no whole block of this format */
            uint8_t *w = malloc(rb * (uint64_t)rows), *a = malloc(ab * (uint64_t)batch);
            float *tmp = malloc(sizeof(float) * (size_t)cols);
            float *out1 = malloc(sizeof(float) * (size_t)(rows * batch)), *out4 = malloc(sizeof(float) * (size_t)(rows * batch));
            for (int r = 0; r < rows; r++) {
                for (int i = 0; i < cols; i++) tmp[i] = frand();
                spill_quantize_row_ref(t, tmp, w + rb * (uint64_t)r, cols);
            }
            for (int b = 0; b < batch; b++) {
                for (int i = 0; i < cols; i++) tmp[i] = frand();
                spill_act_quantize(t, tmp, a + ab * (uint64_t)b, cols);
            }
            spill_pool *p1 = spill_pool_create(1), *p4 = spill_pool_create(4);
            spill_matmul(p1, out1, w, t, rows, cols, a, batch);
            spill_matmul(p4, out4, w, t, rows, cols, a, batch);
            for (int b = 0; b < batch; b++)
                for (int r = 0; r < rows; r++) {
                    float d = spill_vec_dot(t, cols, w + rb * (uint64_t)r, a + ab * (uint64_t)b);
                    assert_true(out1[b * rows + r] == d); /* bit-identical: same dot, any thread count or batch */
                    assert_true(out4[b * rows + r] == d);
                }
            spill_pool_free(p1);
            spill_pool_free(p4);
            free(w);
            free(a);
            free(tmp);
            free(out1);
            free(out4);
        }
}

/* Several matrices in one pass (spill_matmul_parts: a layer's q, k, v) give each part's rows the
   one-token dot's bits, into a row of ldo floats per token that is wider than the part (nothing past its
   rows written), on 1, 3 and 65 threads (more threads than kernels/ops.c's 64 runs of units, so some
   share a run), for one token, a batch past the panels and a partial tile */
static void test_matmul_parts(void **s) {
    (void)s;
    spill_dtype types[] = {SPILL_DT_Q4_1, SPILL_DT_Q8_0, SPILL_DT_Q4_0, SPILL_DT_F16, SPILL_DT_F32, SPILL_DT_Q4_K};
    enum { COLS = 512, NP = 3, LDO = 100 };
    const int rows[NP] = {45, 16, 7}, batches[] = {1, 5, 16, 19};
    for (unsigned ti = 0; ti < sizeof types / sizeof *types; ti++) {
        spill_dtype t = types[ti];
        uint64_t rb = spill_dtype_row_bytes(t, COLS), ab = spill_act_bytes(t, COLS);
        float tmp[COLS];
        uint8_t *w[NP];
        for (int i = 0; i < NP; i++) {
            w[i] = malloc(rb * (uint64_t)rows[i]);
            for (int r = 0; r < rows[i]; r++) {
                for (int k = 0; k < COLS; k++) tmp[k] = frand();
                spill_quantize_row_ref(t, tmp, w[i] + rb * (uint64_t)r, COLS);
            }
        }
        uint8_t *a = malloc(ab * 19);
        for (int b = 0; b < 19; b++) {
            for (int k = 0; k < COLS; k++) tmp[k] = frand();
            spill_act_quantize(t, tmp, a + ab * (uint64_t)b, COLS);
        }
        float *out = malloc(sizeof(float) * NP * LDO * 19);
        const int threads[] = {1, 3, 65};
        for (unsigned hi = 0; hi < sizeof threads / sizeof *threads; hi++) {
            spill_pool *p = spill_pool_create(threads[hi]);
            for (unsigned bi = 0; bi < sizeof batches / sizeof *batches; bi++) {
                int batch = batches[bi];
                for (int i = 0; i < NP * LDO * 19; i++) out[i] = -99.0f;
                spill_matmul_part parts[NP];
                for (int i = 0; i < NP; i++) parts[i] = (spill_matmul_part){out + i * LDO * 19, LDO, w[i], rows[i]};
                spill_matmul_parts(p, parts, NP, t, COLS, a, batch);
                for (int i = 0; i < NP; i++)
                    for (int b = 0; b < 19; b++)
                        for (int r = 0; r < LDO; r++) {
                            float got = out[i * LDO * 19 + b * LDO + r];
                            if (b < batch && r < rows[i])
                                assert_true(got == spill_vec_dot(t, COLS, w[i] + rb * (uint64_t)r, a + ab * (uint64_t)b));
                            else
                                assert_true(got == -99.0f);
                        }
            }
            spill_pool_free(p);
        }
        for (int i = 0; i < NP; i++) free(w[i]);
        free(a);
        free(out);
    }
}

/* The tiled products (rows against several tokens, kernels/dots.c) equal spill_vec_dot per row and token
 * bit for bit, for every type, at every batch size up to 19 tokens (tiles one and two at a time, remainders 0..3), for 1 to 11 rows
 * at once (the kernels' row groups of 8, 4, 2 and 1), with an output stride, and with hostile extremes
 * (-128 in a Q8_0 weight, large scales). */
#define NR_MAX 11
#define NT_MAX 19 /* 16-token calls (K-quant VNNI) and a remainder of 3 */
#define LDO 13
static void test_dots_tiled_equal_dot(void **s) {
    (void)s;
    spill_dtype types[] = {SPILL_DT_Q8_0, SPILL_DT_Q4_0, SPILL_DT_Q4_1, SPILL_DT_F16, SPILL_DT_BF16, SPILL_DT_F32,
                           SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    int tiled = 0;
    for (unsigned ti = 0; ti < sizeof types / sizeof *types; ti++) {
        spill_dtype t = types[ti];
        tiled += spill_dots_tiled(t);
        int blk = (int)spill_dtype_block_values(t);
        for (int n = blk; n <= 1536; n += blk * (blk >= 256 ? 2 : 13)) {
            uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)n), ab = spill_act_bytes(t, n);
            uint8_t *w = malloc(rb * NR_MAX), *a = malloc(ab * NT_MAX);
            float *tmp = malloc(sizeof(float) * (size_t)n), out[NT_MAX * LDO], want[NR_MAX][NT_MAX];
            for (int r = 0; r < NR_MAX; r++) {
                for (int i = 0; i < n; i++) tmp[i] = frand() * (float)(1 + (n + r) % 5);
                spill_quantize_row_ref(t, tmp, w + rb * (uint64_t)r, n);
            }
            if (t == SPILL_DT_Q8_0) ((spill_block_q8_0 *)w)[0].qs[3] = -128;
            for (int b = 0; b < NT_MAX; b++) {
                for (int i = 0; i < n; i++) tmp[i] = frand() * (b == 5 ? 1000.0f : 3.0f);
                spill_act_quantize(t, tmp, a + ab * (uint64_t)b, n);
                for (int r = 0; r < NR_MAX; r++) want[r][b] = spill_vec_dot(t, n, w + rb * (uint64_t)r, a + ab * (uint64_t)b);
            }
            for (int nr = 1; nr <= NR_MAX; nr++)
                for (int nt = 1; nt <= NT_MAX; nt++) {
                    for (int i = 0; i < NT_MAX * LDO; i++) out[i] = -1.0f;
                    float *sc = malloc(sizeof(float) * (spill_dots_scales_len(t, n, nt) + 1));
                    spill_dots_prepare(t, n, a, ab, nt, sc);
                    spill_vec_dots(t, n, w, rb, nr, a, ab, nt, sc, out, LDO);
                    free(sc);
                    for (int b = 0; b < NT_MAX; b++)
                        for (int r = 0; r < LDO; r++) {
                            float got = out[b * LDO + r];
                            if (b >= nt || r >= nr) { /* nothing between rows' outputs, nothing past the batch */
                                assert_true(got == -1.0f);
                                continue;
                            }
                            if (got != want[r][b])
                                fprintf(stderr, "%s n=%d nr=%d nt=%d row %d token %d: tiled %.9g, one by one %.9g\n",
                                        spill_dtype_name(t), n, nr, nt, r, b, got, want[r][b]);
                            assert_true(got == want[r][b]);
                        }
                }
            free(w);
            free(a);
            free(tmp);
        }
    }
    printf("types with a tiled kernel in this build: %d\n", tiled);
}

/* K-quant blocks at the extremes the file formats allow, which spill's own quantizer never writes:
 * Q4_K scales and mins of 63 with every value 15, Q6_K scales of -128 and 127 (llama.cpp's files have
 * negative ones) with every value 63 or 0, activations of +-127: every instruction set's dot and the
 * tiles equal the portable dot, which equals the dequantized dot (no int16 or int32 overflow anywhere) */
static void test_kquant_extremes(void **s) {
    (void)s;
    enum { NB = 3, N = 256 * NB };
    static spill_block_q4_k w4[NB];
    static spill_block_q6_k w6[NB];
    static spill_block_q8_k a[4][NB];
    static float wd[N], ad[N];
    for (int b = 0; b < NB; b++) {
        w4[b].d = spill_fp32_to_fp16(0.5f), w4[b].dmin = spill_fp32_to_fp16(b == 1 ? 0.25f : -0.125f);
        memset(w4[b].scales, 0xFF, sizeof w4[b].scales); /* every 6-bit scale and min 63 */
        memset(w4[b].qs, b == 2 ? 0x0F : 0xFF, sizeof w4[b].qs);
        w6[b].d = spill_fp32_to_fp16(b == 1 ? -0.75f : 0.5f);
        memset(w6[b].ql, b == 2 ? 0x00 : 0xFF, sizeof w6[b].ql);
        memset(w6[b].qh, b == 2 ? 0x00 : 0xFF, sizeof w6[b].qh);
        for (int g = 0; g < 16; g++) w6[b].scales[g] = (int8_t)(g % 2 ? 127 : -128);
    }
    for (int t = 0; t < 4; t++)
        for (int b = 0; b < NB; b++) {
            a[t][b].d = 0.01f * (float)(t + 1);
            for (int g = 0; g < 16; g++) {
                int sum = 0;
                for (int j = 0; j < 16; j++) {
                    int v = 16 * g + j;
                    a[t][b].qs[v] = (int8_t)(t == 0 ? 127 : t == 1 ? -127 : (v + t) % 3 == 0 ? -127 : 127);
                    sum += a[t][b].qs[v];
                }
                a[t][b].bsums[g] = (int16_t)sum;
            }
        }
    const void *rows[2] = {w4, w6};
    spill_dtype types[2] = {SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    for (int k = 0; k < 2; k++) {
        spill_dtype ty = types[k];
        spill_dequant_row(ty, rows[k], wd, N);
        float want[4];
        for (int t = 0; t < 4; t++) {
            spill_dequant_row(SPILL_DT_Q8_K, a[t], ad, N);
            double ref = 0, mag = 0;
            for (int i = 0; i < N; i++) ref += (double)wd[i] * ad[i], mag += fabs((double)wd[i] * ad[i]);
            want[t] = spill_vec_dot_scalar(ty, N, rows[k], a[t]);
            if (fabs(want[t] - ref) > 1e-5 * mag)
                fail_msg("%s extremes, token %d: portable %.9g, dequantized %.9g", spill_dtype_name(ty), t, want[t], ref);
            for (int isa = 1; isa < SPILL_ISA_COUNT; isa++) {
                if (!spill_isa_available((spill_isa)isa)) continue;
                float got = spill_vec_dot_isa((spill_isa)isa, ty, N, rows[k], a[t]);
                if (memcmp(&got, &want[t], sizeof got))
                    fail_msg("%s %s extremes, token %d: %.9g, portable %.9g", spill_isa_name((spill_isa)isa),
                             spill_dtype_name(ty), t, got, want[t]);
            }
        }
        float out[4], *sc = malloc(sizeof(float) * (spill_dots_scales_len(ty, N, 4) + 1));
        spill_dots_prepare(ty, N, a, sizeof a[0], 4, sc);
        spill_vec_dots(ty, N, rows[k], spill_dtype_row_bytes(ty, N), 1, a, sizeof a[0], 4, sc, out, 1);
        free(sc);
        for (int t = 0; t < 4; t++)
            if (memcmp(&out[t], &want[t], sizeof out[t]))
                fail_msg("%s extremes, tile token %d: %.9g, one by one %.9g", spill_dtype_name(ty), t, out[t], want[t]);
    }
}

/* a batched matmul on 2 threads of rows x cols weights w against batch tokens a, every result equal to the
   one-token dot bit for bit; what names the case in the failure */
static void matmul_equals_dots(spill_dtype t, const uint8_t *w, int rows, int cols, const uint8_t *a, int batch,
                               const char *what) {
    uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)cols), ab = spill_act_bytes(t, cols);
    float *out = malloc(sizeof(float) * (size_t)(rows * batch));
    spill_pool *p = spill_pool_create(2);
    spill_matmul(p, out, w, t, rows, cols, a, batch);
    for (int b = 0; b < batch; b++)
        for (int r = 0; r < rows; r++) {
            float d = spill_vec_dot(t, cols, w + rb * (uint64_t)r, a + ab * (uint64_t)b);
            if (memcmp(&out[b * rows + r], &d, sizeof d))
                fail_msg("%s %s, %d x %d, %d tokens: token %d row %d: %.9g, one by one %.9g", spill_dtype_name(t), what, rows,
                         cols, batch, b, r, out[b * rows + r], d);
        }
    spill_pool_free(p);
    free(out);
}

/* Batched matmuls of Q8_0, Q4_0 and Q4_1 at the ends of their ranges (which the panels of
 * kernels/dots_vnni.c take 16 rows at a time, Q8_0's values shifted by 128, and those of kernels/dots_avx2.c
 * 8 rows at a time, Q8_0's signs moved onto the activations): weights of -128 and 127,
 * nibbles of 0 and 15, activations of -127 and 127, large and tiny scales; every result equal to the
 * one-token dot, for 16 rows and for 16 + 7 (a panel with 9 rows left empty). */
static void test_matmul_extremes(void **s) {
    (void)s;
    spill_dtype types[] = {SPILL_DT_Q8_0, SPILL_DT_Q4_0, SPILL_DT_Q4_1};
    const int cols = 96, nb = cols / SPILL_QK;
    for (int bi = 0, batch = 1; bi < 3; bi++, batch = bi == 1 ? 2 : 13) /* one token, two, a panel (an odd token last) */
        for (unsigned ti = 0; ti < 3; ti++)
            for (int rows = 16; rows <= 23; rows += 7) {
                spill_dtype t = types[ti];
                uint64_t rb = spill_dtype_row_bytes(t, cols), ab = spill_act_bytes(t, cols), xb = rb / (uint64_t)nb;
                uint8_t *w = calloc((size_t)rows, rb), *a = calloc((size_t)batch, ab);
                float *tmp = malloc(sizeof(float) * cols);
                for (int r = 0; r < rows; r++)
                    for (int b = 0; b < nb; b++) {
                        uint8_t *blk = w + rb * (uint64_t)r + (uint64_t)b * xb;
                        uint16_t d = (uint16_t)((r + b) % 3 == 0 ? 0x7bff : (r + b) % 3 == 1 ? 0x0400 : 0x3c00); /* 65504, 2^-14, 1 */
                        memcpy(blk, &d, 2);
                        if (t == SPILL_DT_Q8_0) {
                            for (int k = 0; k < SPILL_QK; k++) blk[2 + k] = (uint8_t)((k + r) % 2 ? 0x80 : 0x7f); /* -128, 127 */
                        } else {
                            int off = t == SPILL_DT_Q4_1 ? 4 : 2;
                            if (t == SPILL_DT_Q4_1) memcpy(blk + 2, &d, 2); /* m */
                            for (int k = 0; k < SPILL_QK / 2; k++)
                                blk[off + k] = (uint8_t)((k + r) % 3 == 0 ? 0x0f : (k + r) % 3 == 1 ? 0xf0 : 0);
                        }
                    }
                for (int b = 0; b < batch; b++) {
                    for (int i = 0; i < cols; i++) tmp[i] = (i + b) % 2 ? 1.0f : -1.0f;
                    spill_act_quantize(t, tmp, a + ab * (uint64_t)b, cols);
                }
                matmul_equals_dots(t, w, rows, cols, a, batch, "extremes");
                free(w), free(a), free(tmp);
            }
}

/* spill_vec_dots_panel called directly, as kernels/ops.c calls it, for Q8_0, Q4_0 and Q4_1: every row
 * count of a panel (1-16: one half or two, a half full or not) against token counts on both sides of
 * the panels' thresholds and of a tile (a partial last tile included), each result the one-token dot's
 * bits, nothing written past the nr rows of a token's output row or past its tokens. Where the CPU has
 * no panel (spill_dots_panel_ok false) the call falls back to the tiles and must give the same. */
static void test_panel_equal_dots(void **s) {
    (void)s;
    spill_dtype types[] = {SPILL_DT_Q8_0, SPILL_DT_Q4_0, SPILL_DT_Q4_1};
    const int widths[] = {64, 576}, counts[] = {1, 2, 3, 4, 5, 8, 9, 11, 12, 13, 19};
    enum { PNR = 16, PLDO = 21, PNT = 19 };
    const float sentinel = -12345.0f;
    for (unsigned ti = 0; ti < 3; ti++)
        for (unsigned wi = 0; wi < 2; wi++) {
            spill_dtype t = types[ti];
            const int cols = widths[wi];
            uint64_t rb = spill_dtype_row_bytes(t, (uint64_t)cols), ab = spill_act_bytes(t, cols);
            uint8_t *w = malloc(rb * PNR), *a = malloc(ab * PNT);
            float *tmp = malloc(sizeof(float) * (size_t)cols), *out = malloc(sizeof(float) * PLDO * (PNT + 1));
            size_t plen = spill_dots_panel_bytes(t, cols);
            void *panel = aligned_alloc(64, (plen + 63) / 64 * 64 + 64);
            assert_non_null(w), assert_non_null(a), assert_non_null(tmp), assert_non_null(out), assert_non_null(panel);
            for (int r = 0; r < PNR; r++) {
                for (int i = 0; i < cols; i++) tmp[i] = frand();
                spill_quantize_row_ref(t, tmp, w + rb * (uint64_t)r, cols);
            }
            for (int b = 0; b < PNT; b++) {
                for (int i = 0; i < cols; i++) tmp[i] = frand() * (1 + b % 3);
                spill_act_quantize(t, tmp, a + ab * (uint64_t)b, cols);
            }
            for (unsigned ci = 0; ci < sizeof counts / sizeof *counts; ci++) {
                const int nt = counts[ci];
                size_t slen = spill_dots_scales_len(t, cols, nt);
                float *sc = malloc(sizeof(float) * (slen ? slen : 1));
                assert_non_null(sc);
                spill_dots_prepare(t, cols, a, ab, nt, sc);
                for (int nr = 1; nr <= PNR; nr++) {
                    for (int k = 0; k < PLDO * (PNT + 1); k++) out[k] = sentinel;
                    spill_vec_dots_panel(t, cols, w, rb, nr, a, ab, nt, slen ? sc : NULL, panel, out, PLDO);
                    for (int b = 0; b < PNT + 1; b++)
                        for (int r = 0; r < PLDO; r++) {
                            float got = out[b * PLDO + r];
                            if (b < nt && r < nr) {
                                float d = spill_vec_dot(t, cols, w + rb * (uint64_t)r, a + ab * (uint64_t)b);
                                if (got != d)
                                    fail_msg("%s, %d wide, %d rows, %d tokens: row %d token %d %.9g, the dot %.9g",
                                             spill_dtype_name(t), cols, nr, nt, r, b, got, d);
                            } else if (got != sentinel) {
                                fail_msg("%s, %d wide, %d rows, %d tokens: wrote row %d token %d", spill_dtype_name(t),
                                         cols, nr, nt, r, b);
                            }
                        }
                }
                free(sc);
            }
            free(w), free(a), free(tmp), free(out), free(panel);
        }
}

/* Batched matmuls of Q4_K and Q6_K (the panels of kernels/dots_vnni.c at 8 tokens and more, the one-token
 * kernels below) over blocks of arbitrary bytes: every scale byte, Q6_K's scales negative as often as not
 * (files made elsewhere have them; spill's own quantizer never writes one), activations at +-127; every
 * result equal to the one-token dot, for 16 rows and 16 + 7, 1, 3 and 12 tokens */
static void test_matmul_kquant_bytes(void **s) {
    (void)s;
    spill_dtype types[] = {SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    const int cols = 512;
    uint32_t rng = 12345;
    for (unsigned ti = 0; ti < 2; ti++)
        for (int rows = 16; rows <= 23; rows += 7)
            for (int bi = 0, batch = 1; bi < 3; bi++, batch = bi == 1 ? 3 : 12) {
                spill_dtype t = types[ti];
                uint64_t rb = spill_dtype_row_bytes(t, cols), ab = spill_act_bytes(t, cols);
                uint8_t *w = malloc(rb * (uint64_t)rows), *a = malloc(ab * (uint64_t)batch);
                float *tmp = malloc(sizeof(float) * cols);
                for (uint64_t k = 0; k < rb * (uint64_t)rows; k++) {
                    rng = rng * 1103515245u + 12345u;
                    w[k] = (uint8_t)(rng >> 16);
                }
                /* scales that are finite and not huge: d (and Q4_K's dmin) of 1/64, 1 or 2^-14 */
                uint64_t bb = rb / (uint64_t)(cols / SPILL_QK_K);
                for (int r = 0; r < rows; r++)
                    for (int b = 0; b < cols / SPILL_QK_K; b++) {
                        uint8_t *blk = w + rb * (uint64_t)r + (uint64_t)b * bb;
                        uint16_t d = (uint16_t)((r + b) % 3 == 0 ? 0x2400 : (r + b) % 3 == 1 ? 0x3c00 : 0x0400);
                        if (t == SPILL_DT_Q4_K) memcpy(blk, &d, 2), memcpy(blk + 2, &d, 2);
                        else memcpy(blk + offsetof(spill_block_q6_k, d), &d, 2);
                    }
                for (int b = 0; b < batch; b++) {
                    for (int i = 0; i < cols; i++) tmp[i] = (i * 7 + b) % 3 ? 1.0f : -1.0f;
                    spill_act_quantize(t, tmp, a + ab * (uint64_t)b, cols);
                }
                matmul_equals_dots(t, w, rows, cols, a, batch, "bytes");
                free(w), free(a), free(tmp);
            }
}

/* Every instruction set's dot products that this build has and this CPU runs equal the portable C
 * ones bit for bit: every format, sizes of 1 to 33 blocks (float formats: any size, so that the
 * tails after the last 8 values are covered), scales from tiny (F16 subnormals) to large. */
static void test_simd_equals_portable(void **s) {
    (void)s;
    static const spill_dtype types[] = {SPILL_DT_F32, SPILL_DT_F16, SPILL_DT_BF16, SPILL_DT_Q8_0,
                                        SPILL_DT_Q4_0, SPILL_DT_Q4_1, SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    enum { NMAX = 256 * 5 };
    static float w[NMAX], x[NMAX];
    static uint8_t wq[NMAX * 4], xq[NMAX * 4];
    int simd = 0;
    printf("dot products used here: %s; F32/F16 tiles in 512-bit registers: %s; BF16 tiles with vdpbf16ps: %s; Q8_0/Q4_0/Q4_1 tiles with "
           "AVX-512 VNNI: %s\n",
           spill_isa_name(spill_isa_best()), spill_kernels_avx512() ? "yes" : "no", spill_kernels_avx512_bf16() ? "yes" : "no",
           spill_kernels_avx512_vnni() ? "yes" : "no");
    const char *e = getenv("SPILL_AVX512");
    if (e && !strcmp(e, "0")) { /* test_quant_avx2: turned off */
        assert_int_equal(spill_kernels_avx512(), 0);
        assert_int_equal(spill_kernels_avx512_vnni(), 0);
        assert_int_equal(spill_kernels_avx512_bf16(), 0);
    }
    if (spill_kernels_avx512_bf16()) assert_int_equal(spill_kernels_avx512_vnni(), 1);
    if (spill_kernels_avx512_vnni()) assert_int_equal(spill_kernels_avx512(), 1);
    for (int isa = 1; isa < SPILL_ISA_COUNT; isa++) {
        if (!spill_isa_available((spill_isa)isa)) {
            printf("%s: not in this build or not on this CPU\n", spill_isa_name((spill_isa)isa));
            continue;
        }
        simd++;
        long checked = 0;
        for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
            spill_dtype t = types[ti];
            int bv = (int)spill_dtype_block_values(t);
            for (int trial = 0; trial < 120; trial++) {
                int n = bv == 1 ? 1 + (trial * 37) % 1031 : bv * (1 + trial % (bv == 32 ? 33 : 5));
                float scale = trial % 7 == 3 ? 1e-5f : (float)(trial % 9 + 1);
                for (int i = 0; i < n; i++) {
                    w[i] = frand() * scale;
                    x[i] = frand() * (trial % 2 ? 100 : 1e-3f);
                }
                spill_quantize_row_ref(t, w, wq, n);
                spill_act_quantize(t, x, xq, n);
                float a = spill_vec_dot_isa((spill_isa)isa, t, n, wq, xq), b = spill_vec_dot_scalar(t, n, wq, xq);
                if (memcmp(&a, &b, sizeof a))
                    fail_msg("%s %s n=%d: %.9g, portable %.9g", spill_isa_name((spill_isa)isa), spill_dtype_name(t), n, a, b);
                checked++;
            }
        }
        printf("%s: %ld dot products of 8 formats equal to the portable ones\n", spill_isa_name((spill_isa)isa), checked);
    }
    /* what runs is one of them */
    assert_true(spill_isa_available(spill_isa_best()));
    assert_int_equal(spill_kernels_simd(), spill_isa_best() != SPILL_ISA_PORTABLE);
#if defined(__aarch64__)
    assert_true(spill_isa_available(SPILL_ISA_NEON)); /* part of the architecture */
#endif
    if (!simd) printf("no SIMD dot products to compare on this machine\n");
}

/* BF16 weights meet BF16 activations (kernels/dot.h): lane l of each 16 values adds the product of
 * values 2l + 1, then that of 2l, each with its own rounding (vdpbf16ps's order), the 8 lanes are summed
 * pairwise, the values past the last 16 added one by one. Written out here on values where the other
 * order (or a lane per value, as F32 takes them) gives other bits, and compared with every instruction
 * set's dot, the active one's tiles (vdpbf16ps where the CPU has it and passed its check) and its rows. */
static float bf16_dot_ref(const uint16_t *w, const uint16_t *a, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int l = 0; l < 8; l++) {
            acc[l] = fmaf(spill_bf16_to_fp32(w[i + 2 * l + 1]), spill_bf16_to_fp32(a[i + 2 * l + 1]), acc[l]);
            acc[l] = fmaf(spill_bf16_to_fp32(w[i + 2 * l]), spill_bf16_to_fp32(a[i + 2 * l]), acc[l]);
        }
    float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for (; i < n; i++) s = fmaf(spill_bf16_to_fp32(w[i]), spill_bf16_to_fp32(a[i]), s);
    return s;
}
static void test_bf16_lanes(void **s) {
    (void)s;
    enum { N = 16 * 9 + 5, NT = 11 };
    static uint16_t w[4][N], a[NT][N];
    float x[N];
    int differ = 0, checked = 0;
    for (int trial = 0; trial < 40; trial++) {
        for (int r = 0; r < 4; r++) {
            for (int i = 0; i < N; i++) /* large and small products side by side: the order of additions shows */
                x[i] = frand() * (i % 3 == 0 ? 4096.0f : 1.0f) * (float)(1 + trial % 4);
            spill_quantize_row_ref(SPILL_DT_BF16, x, w[r], N);
        }
        for (int t = 0; t < NT; t++) {
            for (int i = 0; i < N; i++) x[i] = frand() * (i % 5 == 1 ? 1e-3f : 3.0f);
            spill_act_quantize(SPILL_DT_BF16, x, a[t], N);
            for (int i = 0; i < N; i++) /* the activations are x rounded to BF16 */
                assert_true(a[t][i] == spill_fp32_to_bf16(x[i]));
        }
        float out[NT * 4];
        float *sc = malloc(sizeof(float) * (spill_dots_scales_len(SPILL_DT_BF16, N, NT) + 1));
        spill_dots_prepare(SPILL_DT_BF16, N, a, sizeof a[0], NT, sc);
        spill_vec_dots(SPILL_DT_BF16, N, w, sizeof w[0], 4, a, sizeof a[0], NT, sc, out, 4);
        free(sc);
        for (int t = 0; t < NT; t++)
            for (int r = 0; r < 4; r++) {
                float want = bf16_dot_ref(w[r], a[t], N);
                assert_true(spill_vec_dot_scalar(SPILL_DT_BF16, N, w[r], a[t]) == want);
                for (int isa = 1; isa < SPILL_ISA_COUNT; isa++)
                    if (spill_isa_available((spill_isa)isa))
                        assert_true(spill_vec_dot_isa((spill_isa)isa, SPILL_DT_BF16, N, w[r], a[t]) == want);
                if (out[t * 4 + r] != want)
                    fail_msg("trial %d row %d token %d: tiled %.9g, want %.9g", trial, r, t, out[t * 4 + r], want);
                /* the even product first, or one lane per value: what the definition is not */
                float acc[8] = {0}, other;
                for (int i = 0; i + 16 <= N; i += 16)
                    for (int l = 0; l < 8; l++) {
                        acc[l] = fmaf(spill_bf16_to_fp32(w[r][i + 2 * l]), spill_bf16_to_fp32(a[t][i + 2 * l]), acc[l]);
                        acc[l] = fmaf(spill_bf16_to_fp32(w[r][i + 2 * l + 1]), spill_bf16_to_fp32(a[t][i + 2 * l + 1]), acc[l]);
                    }
                other = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
                for (int i = N / 16 * 16; i < N; i++) other = fmaf(spill_bf16_to_fp32(w[r][i]), spill_bf16_to_fp32(a[t][i]), other);
                differ += other != want;
                checked++;
            }
    }
    /* values around 1e-19, whose lanes' sums fall below 2^-126 (vdpbf16ps flushes them, the fused
       multiply-adds keep them): on this CPU a token's result is still the same alone, in a tile, in rows */
    for (int trial = 0; trial < 4; trial++) {
        for (int r = 0; r < 4; r++) {
            for (int i = 0; i < N; i++) x[i] = frand() * 1e-19f;
            spill_quantize_row_ref(SPILL_DT_BF16, x, w[r], N);
        }
        for (int t = 0; t < NT; t++) {
            for (int i = 0; i < N; i++) x[i] = frand() * 1e-19f;
            spill_act_quantize(SPILL_DT_BF16, x, a[t], N);
        }
        float out[NT * 4], one[4];
        float *sc = malloc(sizeof(float) * (spill_dots_scales_len(SPILL_DT_BF16, N, NT) + 1));
        spill_dots_prepare(SPILL_DT_BF16, N, a, sizeof a[0], NT, sc);
        spill_vec_dots(SPILL_DT_BF16, N, w, sizeof w[0], 4, a, sizeof a[0], NT, sc, out, 4);
        free(sc);
        for (int t = 0; t < NT; t++) {
            spill_vec_dots(SPILL_DT_BF16, N, w, sizeof w[0], 4, a[t], sizeof a[0], 1, NULL, one, 1);
            for (int r = 0; r < 4; r++) {
                float alone = spill_vec_dot(SPILL_DT_BF16, N, w[r], a[t]);
                if (out[t * 4 + r] != alone || one[r] != alone)
                    fail_msg("tiny values, row %d token %d: tiled %.9g, rows %.9g, alone %.9g", r, t, out[t * 4 + r], one[r], alone);
            }
        }
    }
    printf("BF16 dots with the pairs' order written out: %d, vdpbf16ps tiles: %s; %d would differ in the other order\n",
           checked, spill_kernels_avx512_bf16() ? "yes" : "no", differ);
    assert_true(differ > checked / 10); /* the values tell the orders apart */
}

/* The activations' conversion this CPU runs (SIMD where it has it) equals the portable one byte for byte:
 * Q8_0, Q8_1, F16, Q8_K and BF16 (which flushes F32 subnormals to zero), sizes with and without a tail after the last full vector, values from F16
 * subnormals to past F16's range (infinity), halfway cases of the rounding (Q8: a block whose factor
 * is exactly 1, its values k + 0.5), all-zero blocks, all-subnormal blocks (127 / amax overflows), and
 * blocks whose largest value is negative. */
static void test_act_quantize_equals_portable(void **s) {
    (void)s;
    static const spill_dtype weights[] = {SPILL_DT_Q8_0, SPILL_DT_Q4_1, SPILL_DT_F16, SPILL_DT_Q4_K, SPILL_DT_BF16}; /* -> Q8_0, Q8_1, F16, Q8_K, BF16 */
    enum { NMAX = 256 * 3 + 5 };
    static float x[NMAX];
    static uint8_t got[NMAX * 4], want[NMAX * 4];
    int checked = 0;
    for (unsigned wi = 0; wi < sizeof weights / sizeof *weights; wi++) {
        spill_dtype w = weights[wi];
        int step = (int)spill_dtype_block_values(spill_act_type(w)); /* F16 1, Q8_0/Q8_1 32, Q8_K 256 */
        for (int n = step; n <= NMAX; n += step * (step == 1 ? 7 : 1)) {
            for (int trial = 0; trial < 6; trial++) {
                float scale = trial == 0 ? 1e-6f : trial == 1 ? 70000.0f : trial == 2 ? 1.0f : 30.0f;
                for (int i = 0; i < n; i++) x[i] = frand() * scale;
                if (trial == 3 && step == 1)
                    for (int i = 0; i < n; i++) x[i] = (float)((int)(frand() * 8)) * 0.5f + 0.25f; /* ties */
                if (trial == 3 && step >= 32)
                    for (int i = 0; i < n; i++) /* factor 1 (amax 127): every value a tie k + 0.5 */
                        x[i] = i % step == 0 ? 127.0f : (float)((int)(frand() * 120)) + 0.5f;
                if (trial == 0 && step >= 32)
                    for (int i = 0; i < n && i < 2 * step; i++) x[i] = frand() * 1e-39f; /* subnormal blocks */
                if (trial == 4)
                    for (int i = 0; i < n && i < (step > 1 ? step : 32); i++) x[i] = 0; /* a zero block */
                if (trial == 5 && n >= 32) x[7] = -100; /* the largest magnitude negative */
                if (trial == 2 && step == 1)
                    for (int i = 0; i < n; i++) x[i] = ldexpf(1.0f + (float)(i % 1024) / 1024.0f, -24 + i % 8) * (i % 2 ? -1 : 1);
                if (trial == 5 && step == 1) /* F32 subnormals (BF16: to zeros of their sign), ties of BF16's rounding, the largest floats */
                    for (int i = 0; i < n; i++)
                        x[i] = i % 4 == 0 ? frand() * 1e-39f : i % 4 == 1 ? ldexpf(1.0f + 0x1p-8f, i % 60 - 30) : i % 4 == 2 ? 3.4e38f * frand() : x[i];
                uint64_t nb = spill_act_bytes(w, n);
                memset(got, 0xa5, nb + 8);
                memset(want, 0x5a, nb + 8);
                spill_act_quantize(w, x, got, n);
                spill_act_quantize_portable(w, x, want, n);
                if (memcmp(got, want, nb))
                    for (uint64_t b = 0; b < nb; b++)
                        if (got[b] != want[b]) {
                            fprintf(stderr, "%s n=%d trial %d: byte %llu: %u, portable %u\n", spill_dtype_name(spill_act_type(w)), n,
                                    trial, (unsigned long long)b, got[b], want[b]);
                            break;
                        }
                assert_memory_equal(got, want, nb);
                assert_int_equal(got[nb], 0xa5); /* nothing written past the row */
                checked++;
            }
        }
    }
    printf("%d activation rows converted as the portable code converts them (%s)\n", checked, spill_isa_name(spill_isa_best()));
}

static void test_type_table(void **s) {
    (void)s;
    assert_int_equal(spill_dtype_row_bytes(SPILL_DT_Q4_1, 64), 40);
    assert_int_equal(spill_dtype_row_bytes(SPILL_DT_Q4_1, 65), 0); /* not whole blocks */
    assert_int_equal(spill_dtype_row_bytes(SPILL_DT_Q4_K, 256), 144);
    assert_int_equal(spill_dtype_row_bytes(SPILL_DT_Q6_K, 512), 420);
    assert_int_equal(spill_dtype_row_bytes(SPILL_DT_Q4_K, 64), 0); /* a K-quant row is whole 256-value blocks */
    assert_int_equal(spill_dtype_row_bytes(11, 256), 0);           /* Q3_K: not readable in this build */
    assert_false(spill_dtype_supported(11));
    assert_true(spill_dtype_supported(SPILL_DT_Q6_K));
    assert_string_equal(spill_dtype_name(14), "Q6_K");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_0), cmocka_unit_test(test_q4_0), cmocka_unit_test(test_q4_1),
        cmocka_unit_test(test_f16), cmocka_unit_test(test_bf16), cmocka_unit_test(test_f32), cmocka_unit_test(test_q4_k), cmocka_unit_test(test_q6_k), cmocka_unit_test(test_kquant_extremes),
        cmocka_unit_test(test_dequant_q4_1_error_bound), cmocka_unit_test(test_matmul_threads_equal_dots), cmocka_unit_test(test_matmul_parts),
        cmocka_unit_test(test_matmul_extremes),
        cmocka_unit_test(test_panel_equal_dots),
        cmocka_unit_test(test_matmul_kquant_bytes),
        cmocka_unit_test(test_simd_equals_portable), cmocka_unit_test(test_dots_tiled_equal_dot), cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_act_quantize_equals_portable), cmocka_unit_test(test_bf16_lanes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
