/* The CPU twins of the CUDA kernels against the reference math, on the CPU (no GPU needed); the GPU
 * kernels are held to these twins by test_cuda_ops (label gpu).
 *   flash-decoding attention (kernels/flash.c) vs spill_attention_paged: decode at long context (many
 *   splits), prefill (one split, and splits with empty chunks and chunk edges inside a tile of query
 *   tokens), GQA groups of 1, 3 and 4, a 128k
 *   context; the partial buffer never written past spill_flash_partial_floats. The same with the
 *   cache in F16 and BF16: flash equals the reference over the same 16-bit cache to 1e-5, and both are
 *   within the 16-bit rounding of the F32 cache's result. A step of several sequences in one call
 *   (decode of 16 at lengths 5 to 3000, prompt chunks beside decoding tokens, one split when the tiles
 *   fill the GPU): each sequence's rows as that sequence alone gives them.
 *   fused dequantize-GEMV (kernels/gemv.c) vs dequantize-then-dot (spill_dequant_row, double sums):
 *   every format the GPU keeps (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), 1..8 tokens, odd row
 *   counts, rows not a multiple of 32 values (16-bit and F32), an output with rows further apart;
 *   1e-5 of the largest output. The BF16 tiles (spill_dequant_bf16) are the reference's values rounded
 *   to BF16, exactly. */
#include <math.h>

#include "spill_kernels.h"
#include "test_util.h"

static void rnd(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(seed >> 40) / (float)(1 << 24) * 2 - 1;
    }
}

static void close_to(const float *a, const float *b, size_t n, double tol, const char *what) {
    /* test_util.h's loop: a NaN fails it, and Debian's aarch64 gcc 12 does not crash vectorising it */
    double d = max_abs_diff(a, b, n), m = fmax(1e-30, max_abs_diff(b, NULL, n));
    printf("%s: max difference %.3g of %.3g\n", what, d, m);
    if (!(d / m <= tol)) fail_msg("%s: relative difference %.3g > %.3g", what, d / m, tol);
}

/* one attention case: a paged cache of kt (F32, F16, BF16) in blocks of T positions, laid out in memory in
 * reverse order */
static void flash_case_t(spill_dtype kt, int T, int n_tok, int pos0, int H, int KVH, int HD, int want_splits_min,
                         int want_splits_max) {
    int len = pos0 + n_tok, nb = (len + T - 1) / T, kv_dim = KVH * HD;
    size_t bfl = (size_t)2 * T * kv_dim, eb = spill_kv_type_bytes(kt);
    float *kvf = malloc(sizeof(float) * bfl * (size_t)nb);
    uint8_t *kv = malloc(eb * bfl * (size_t)nb);
    const void **blocks = malloc(sizeof(void *) * (size_t)nb), **fblocks = malloc(sizeof(void *) * (size_t)nb);
    float *q = malloc(sizeof(float) * (size_t)n_tok * H * HD), *ref = malloc(sizeof(float) * (size_t)n_tok * H * HD);
    float *got = malloc(sizeof(float) * (size_t)n_tok * H * HD), *scores = malloc(sizeof(float) * (size_t)len);
    assert_non_null(kvf), assert_non_null(kv), assert_non_null(blocks), assert_non_null(fblocks), assert_non_null(q);
    assert_non_null(ref), assert_non_null(got), assert_non_null(scores);
    rnd(kvf, bfl * (size_t)nb, 11 + (uint64_t)len);
    rnd(q, (size_t)n_tok * H * HD, 12 + (uint64_t)H);
    for (int i = 0; i < (int)((size_t)n_tok * H * HD); i++) q[i] *= 3; /* peaked softmax: the max matters */
    for (int b = 0; b < nb; b++) {
        spill_kv_row_put(kt, kv + (size_t)b * bfl * eb, kvf + (size_t)b * bfl, (int)bfl);
        blocks[b] = kv + (size_t)(nb - 1 - b) * bfl * eb;
        fblocks[b] = kvf + (size_t)(nb - 1 - b) * bfl;
    }
    float scale = 1.0f / sqrtf((float)HD);
    spill_attention_paged(ref, q, blocks, kt, T, n_tok, pos0, H, KVH, HD, scale, scores);
    int splits = spill_flash_splits((n_tok + SPILL_FLASH_QTILE - 1) / SPILL_FLASH_QTILE, KVH, len);
    printf("T %d, %d tokens at %d, %d heads (%d kv) of %d: %d splits of %d positions\n", T, n_tok, pos0, H, KVH, HD, splits,
           spill_flash_chunk(len, splits));
    assert_in_range(splits, want_splits_min, want_splits_max);
    uint64_t pf = spill_flash_partial_floats(H, KVH, HD);
    if (splits > 1) assert_true((uint64_t)n_tok * H * splits * (HD + 2) <= pf);
    float *partial = malloc(sizeof(float) * (size_t)(pf + 64));
    assert_non_null(partial);
    for (int i = 0; i < 64; i++) partial[pf + i] = 12345.0f;
    assert_int_equal(spill_flash_attention(got, q, blocks, kt, T, n_tok, pos0, H, KVH, HD, scale, partial), 0);
    for (int i = 0; i < 64; i++) assert_true(partial[pf + i] == 12345.0f);
    char what[128];
    snprintf(what, sizeof what, "flash vs paged attention, %s cache (%d tokens at %d)", spill_kv_type_name(kt), n_tok, pos0);
    /* over 128k positions the two orders of summing part ways by a little more */
    close_to(got, ref, (size_t)n_tok * H * HD, len > 65536 ? 3e-5 : 1e-5, what);
    if (kt != SPILL_DT_F32) {
        /* the 16-bit cache against the F32 one: its rounding (half an ulp: 2^-11 of a value in F16,
           2^-8 in BF16), through scores of a peaked softmax */
        spill_attention_paged(ref, q, (const void *const *)fblocks, SPILL_DT_F32, T, n_tok, pos0, H, KVH, HD, scale, scores);
        snprintf(what, sizeof what, "%s cache vs F32 cache (%d tokens at %d)", spill_kv_type_name(kt), n_tok, pos0);
        close_to(got, ref, (size_t)n_tok * H * HD, kt == SPILL_DT_F16 ? 4e-3 : 3e-2, what);
    }
    free(kvf), free(kv), free(blocks), free(fblocks), free(q), free(ref), free(got), free(scores), free(partial);
}

static void flash_case(int T, int n_tok, int pos0, int H, int KVH, int HD, int want_splits_min, int want_splits_max) {
    flash_case_t(SPILL_DT_F32, T, n_tok, pos0, H, KVH, HD, want_splits_min, want_splits_max);
}

/* the cache in F16 and BF16: decode with many splits, prefill with a causal tile, a group of 4 */
static void test_flash_kv16(void **s) {
    (void)s;
    const spill_dtype types[] = {SPILL_DT_F16, SPILL_DT_BF16};
    for (int i = 0; i < 2; i++) {
        flash_case_t(types[i], 16, 1, 1000, 8, 2, 64, 16, 16);
        flash_case_t(types[i], 16, 100, 2, 3, 1, 24, 2, 2);
        flash_case_t(types[i], 7, 3, 300, 12, 3, 24, 5, 5);
        flash_case_t(types[i], 256, 1, 131071, 4, 1, 32, 512, 512);
    }
}

static void test_flash_decode(void **s) {
    (void)s;
    flash_case(16, 1, 1000, 8, 2, 64, 16, 16); /* one token: the positions split 16 ways */
    flash_case(16, 4, 37, 4, 1, 32, 1, 1);     /* a short context: one split */
    flash_case(7, 3, 300, 12, 3, 24, 5, 5);    /* odd block size and head size, group of 4 */
}

static void test_flash_prefill(void **s) {
    (void)s;
    flash_case(16, 100, 0, 3, 1, 24, 2, 2);  /* causal: the first tokens' second chunk is empty */
    flash_case(16, 100, 2, 3, 1, 24, 2, 2);  /* a chunk edge inside a tile of query tokens: some see none of it */
    flash_case(16, 1200, 5, 8, 2, 16, 1, 1); /* the tokens alone fill the GPU: one split */
    flash_case(16, 301, 5, 8, 2, 16, 3, 3);  /* a last tile of one token */
    flash_case(32, 17, 200, 6, 6, 16, 4, 4); /* no grouping */
}

/* 128k positions: the partial buffer stays the model's size (no scores scratch of the context's) */
static void test_flash_128k(void **s) {
    (void)s;
    flash_case(256, 1, 131071, 4, 1, 32, 512, 512);
    assert_true(spill_flash_partial_floats(64, 8, 128) * 4 < 9u << 20); /* Llama-3-70B's shape: under 9 MiB */
}

/* A step of several sequences in one call (spill_flash_attention_tiles, the GPU's one launch per
 * layer): each sequence with its own blocks (one table, each sequence's list at its offset, blocks
 * out of order in memory), its own length and its own tokens in the step. Each sequence's rows must
 * be what spill_attention_paged gives for that sequence alone; the splits are the whole step's (short
 * sequences get empty chunks), and the partial buffer is never written past its bound. */
static void flash_step_case(spill_dtype kt, int T, int n_seq, const int *n_tok, const int *pos0, int H, int KVH, int HD,
                            int want_splits) {
    int kv_dim = KVH * HD, rows = 0, max_len = 0, nb = 0, n_tiles = 0;
    size_t bfl = (size_t)2 * T * kv_dim, eb = spill_kv_type_bytes(kt);
    int *table = malloc(sizeof(int) * (size_t)n_seq);
    assert_non_null(table);
    for (int i = 0; i < n_seq; i++) {
        int len = pos0[i] + n_tok[i];
        table[i] = nb, nb += (len + T - 1) / T, rows += n_tok[i];
        if (len > max_len) max_len = len;
    }
    uint8_t *kv = malloc(eb * bfl * (size_t)nb);
    float *kvf = malloc(sizeof(float) * bfl * (size_t)nb), *q = malloc(sizeof(float) * (size_t)rows * H * HD);
    float *ref = malloc(sizeof(float) * (size_t)rows * H * HD), *got = malloc(sizeof(float) * (size_t)rows * H * HD);
    float *scores = malloc(sizeof(float) * (size_t)max_len);
    const void **blocks = malloc(sizeof(void *) * (size_t)nb);
    spill_flash_tile *tiles = malloc(sizeof *tiles * (size_t)rows);
    assert_true(kv && kvf && q && ref && got && scores && blocks && tiles);
    rnd(kvf, bfl * (size_t)nb, 51 + (uint64_t)nb);
    rnd(q, (size_t)rows * H * HD, 52);
    for (int i = 0; i < rows * H * HD; i++) q[i] *= 3;
    for (int b = 0; b < nb; b++) {
        spill_kv_row_put(kt, kv + (size_t)b * bfl * eb, kvf + (size_t)b * bfl, (int)bfl);
        blocks[b] = kv + (size_t)(nb - 1 - b) * bfl * eb; /* out of order in memory */
    }
    float scale = 1.0f / sqrtf((float)HD);
    for (int i = 0, t0 = 0; i < n_seq; t0 += n_tok[i++]) {
        size_t at = (size_t)t0 * H * HD;
        spill_attention_paged(ref + at, q + at, blocks + table[i], kt, T, n_tok[i], pos0[i], H, KVH, HD, scale, scores);
        n_tiles += spill_flash_tiles(tiles + n_tiles, t0, n_tok[i], pos0[i], table[i]);
    }
    int splits = spill_flash_splits(n_tiles, KVH, max_len);
    printf("%d sequences, %d tokens, %d tiles, longest %d: %d splits\n", n_seq, rows, n_tiles, max_len, splits);
    assert_int_equal(splits, want_splits);
    uint64_t pf = spill_flash_partial_floats(H, KVH, HD);
    if (splits > 1) assert_true((uint64_t)rows * H * splits * (HD + 2) <= pf);
    float *partial = malloc(sizeof(float) * (size_t)(pf + 64));
    assert_non_null(partial);
    for (int i = 0; i < 64; i++) partial[pf + i] = 12345.0f;
    assert_int_equal(spill_flash_attention_tiles(got, q, blocks, kt, T, tiles, n_tiles, rows, max_len, H, KVH, HD, scale,
                                                 partial),
                     0);
    for (int i = 0; i < 64; i++) assert_true(partial[pf + i] == 12345.0f);
    char what[128];
    snprintf(what, sizeof what, "a step of %d sequences, %s cache, vs each alone", n_seq, spill_kv_type_name(kt));
    close_to(got, ref, (size_t)rows * H * HD, 1e-5, what);
    free(table), free(kv), free(kvf), free(q), free(ref), free(got), free(scores), free(blocks), free(tiles), free(partial);
}

static void test_flash_step(void **s) {
    (void)s;
    /* decode of 16 sequences, 5 to 3000 positions: split 8 ways, the short ones' later chunks empty */
    int n16[16], p16[16];
    for (int i = 0; i < 16; i++) n16[i] = 1, p16[i] = 4 + (i * 2999) / 15;
    flash_step_case(SPILL_DT_F32, 16, 16, n16, p16, 8, 4, 64, 8);
    flash_step_case(SPILL_DT_BF16, 16, 16, n16, p16, 8, 4, 64, 8);
    /* prompt chunks beside decoding tokens: runs of 6, 1, 3 and 9 tokens, one at position 0 */
    int nm[4] = {6, 1, 3, 9}, pm[4] = {0, 700, 65, 130};
    flash_step_case(SPILL_DT_F32, 7, 4, nm, pm, 12, 3, 24, 11);
    flash_step_case(SPILL_DT_F16, 16, 4, nm, pm, 12, 3, 24, 11);
    /* many tiles fill the GPU alone: one split */
    int nb[3] = {300, 1, 450}, pb[3] = {20, 90, 3};
    flash_step_case(SPILL_DT_F32, 16, 3, nb, pb, 4, 2, 32, 1);
}

static const spill_dtype gemv_types[] = {SPILL_DT_F32,  SPILL_DT_F16,  SPILL_DT_BF16, SPILL_DT_Q8_0,
                                         SPILL_DT_Q4_0, SPILL_DT_Q4_1, SPILL_DT_Q4_K, SPILL_DT_Q6_K};

/* rows x cols weights of `type` from random values; cols must suit the type */
static uint8_t *make_weights(spill_dtype type, int64_t rows, int64_t cols, uint64_t seed) {
    uint64_t rb = spill_dtype_row_bytes(type, (uint64_t)cols);
    assert_true(rb > 0);
    float *f = malloc(sizeof(float) * (size_t)cols);
    uint8_t *w = malloc(rb * (uint64_t)rows);
    assert_non_null(f), assert_non_null(w);
    for (int64_t r = 0; r < rows; r++) {
        rnd(f, (size_t)cols, seed + (uint64_t)r);
        spill_quantize_row_ref(type, f, w + (uint64_t)r * rb, cols);
    }
    free(f);
    return w;
}

static void gemv_case(spill_dtype type, int64_t rows, int64_t cols, int n_tok, int64_t ldo) {
    uint64_t rb = spill_dtype_row_bytes(type, (uint64_t)cols);
    uint8_t *w = make_weights(type, rows, cols, 100 + (uint64_t)type);
    float *x = malloc(sizeof(float) * (size_t)(cols * n_tok)), *wr = malloc(sizeof(float) * (size_t)cols);
    float *ref = calloc((size_t)(ldo * n_tok), sizeof(float)), *got = calloc((size_t)(ldo * n_tok), sizeof(float));
    assert_non_null(x), assert_non_null(wr), assert_non_null(ref), assert_non_null(got);
    rnd(x, (size_t)(cols * n_tok), 200 + (uint64_t)n_tok);
    for (int64_t r = 0; r < rows; r++) {
        spill_dequant_row(type, w + (uint64_t)r * rb, wr, cols);
        for (int t = 0; t < n_tok; t++) {
            double acc = 0;
            for (int64_t c = 0; c < cols; c++) acc += (double)wr[c] * x[t * cols + c];
            ref[t * ldo + r] = (float)acc;
        }
    }
    for (int64_t i = 0; i < ldo * n_tok; i++) got[i] = 7.0f; /* the gaps between rows stay untouched */
    spill_gemv(got, ldo, w, type, rows, cols, x, n_tok);
    for (int t = 0; t < n_tok; t++)
        for (int64_t r = rows; r < ldo; r++) assert_true(got[t * ldo + r] == 7.0f), got[t * ldo + r] = 0;
    char what[96];
    snprintf(what, sizeof what, "gemv %s %lld x %lld, %d tokens", spill_dtype_name(type), (long long)rows, (long long)cols,
             n_tok);
    close_to(got, ref, (size_t)(ldo * n_tok), 1e-5, what);
    /* prefill's BF16 tiles: the reference's values, rounded */
    uint16_t *bf = malloc(sizeof(uint16_t) * (size_t)(rows * cols));
    assert_non_null(bf);
    spill_dequant_bf16(bf, w, type, rows, cols);
    for (int64_t r = 0; r < rows; r++) {
        spill_dequant_row(type, w + (uint64_t)r * rb, wr, cols);
        for (int64_t c = 0; c < cols; c++) {
            float a = spill_bf16_to_fp32(bf[r * cols + c]), b = spill_bf16_to_fp32(spill_fp32_to_bf16(wr[c]));
            if (a != b && fabsf(a - b) > 1e-6f * fabsf(b) + 1e-30f) /* (fused d*q+m may round otherwise: one BF16 ulp) */
                assert_true(fabsf(a - b) <= fabsf(b) / 128);
        }
    }
    free(w), free(x), free(wr), free(ref), free(got), free(bf);
}

static void test_gemv_formats(void **s) {
    (void)s;
    for (size_t k = 0; k < sizeof gemv_types / sizeof *gemv_types; k++) {
        spill_dtype t = gemv_types[k];
        int kq = t == SPILL_DT_Q4_K || t == SPILL_DT_Q6_K;
        gemv_case(t, 37, kq ? 768 : 96, 1, 37);      /* decode: one token, odd rows, fewer pieces than lanes (K-quants: 3 a lane) */
        gemv_case(t, 5, kq ? 2304 : 1120, 3, 9);     /* more pieces than lanes, an output with rows 9 apart */
        gemv_case(t, 11, kq ? 256 : 32, 8, 11);      /* the most tokens, one block or one super-block */
    }
}

/* F32 and 16-bit rows need not hold whole pieces of 8 */
static void test_gemv_ragged(void **s) {
    (void)s;
    gemv_case(SPILL_DT_F32, 7, 45, 2, 7);
    gemv_case(SPILL_DT_F16, 3, 1001, 5, 4);
    gemv_case(SPILL_DT_BF16, 2, 17, 1, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flash_decode),
        cmocka_unit_test(test_flash_prefill),
        cmocka_unit_test(test_flash_128k),
        cmocka_unit_test(test_flash_kv16),
        cmocka_unit_test(test_flash_step),
        cmocka_unit_test(test_gemv_formats),
        cmocka_unit_test(test_gemv_ragged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
