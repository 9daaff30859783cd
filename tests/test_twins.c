/* The CPU twins of the CUDA kernels against the reference math, on the CPU (no GPU needed); the GPU
 * kernels are held to these twins by test_cuda_ops (label gpu).
 *   flash-decoding attention (kernels/flash.c) vs spill_attention_paged: decode at long context (many
 *   splits), prefill (one split, and splits with empty chunks), GQA groups of 1, 3 and 4, a 128k
 *   context; the partial buffer never written past spill_flash_partial_floats. */
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
    double d = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    printf("%s: max difference %.3g of %.3g\n", what, d, m);
    if (!(d / m <= tol)) fail_msg("%s: relative difference %.3g > %.3g", what, d / m, tol);
}

/* one attention case: a paged cache of blocks of T positions, laid out in memory in reverse order */
static void flash_case(int T, int n_tok, int pos0, int H, int KVH, int HD, int want_splits_min, int want_splits_max) {
    int len = pos0 + n_tok, nb = (len + T - 1) / T, kv_dim = KVH * HD;
    size_t bfl = (size_t)2 * T * kv_dim;
    float *kv = malloc(sizeof(float) * bfl * (size_t)nb);
    const float **blocks = malloc(sizeof(float *) * (size_t)nb);
    float *q = malloc(sizeof(float) * (size_t)n_tok * H * HD), *ref = malloc(sizeof(float) * (size_t)n_tok * H * HD);
    float *got = malloc(sizeof(float) * (size_t)n_tok * H * HD), *scores = malloc(sizeof(float) * (size_t)len);
    assert_non_null(kv), assert_non_null(blocks), assert_non_null(q), assert_non_null(ref), assert_non_null(got);
    assert_non_null(scores);
    rnd(kv, bfl * (size_t)nb, 11 + (uint64_t)len);
    rnd(q, (size_t)n_tok * H * HD, 12 + (uint64_t)H);
    for (int i = 0; i < (int)((size_t)n_tok * H * HD); i++) q[i] *= 3; /* peaked softmax: the max matters */
    for (int b = 0; b < nb; b++) blocks[b] = kv + (size_t)(nb - 1 - b) * bfl;
    float scale = 1.0f / sqrtf((float)HD);
    spill_attention_paged(ref, q, blocks, T, n_tok, pos0, H, KVH, HD, scale, scores);
    int splits = spill_flash_splits(n_tok, KVH, len);
    printf("T %d, %d tokens at %d, %d heads (%d kv) of %d: %d splits of %d positions\n", T, n_tok, pos0, H, KVH, HD, splits,
           spill_flash_chunk(len, splits));
    assert_in_range(splits, want_splits_min, want_splits_max);
    uint64_t pf = spill_flash_partial_floats(H, KVH, HD);
    if (splits > 1) assert_true((uint64_t)n_tok * H * splits * (HD + 2) <= pf);
    float *partial = malloc(sizeof(float) * (size_t)(pf + 64));
    assert_non_null(partial);
    for (int i = 0; i < 64; i++) partial[pf + i] = 12345.0f;
    assert_int_equal(spill_flash_attention(got, q, blocks, T, n_tok, pos0, H, KVH, HD, scale, partial), 0);
    for (int i = 0; i < 64; i++) assert_true(partial[pf + i] == 12345.0f);
    char what[96];
    snprintf(what, sizeof what, "flash vs paged attention (%d tokens at %d)", n_tok, pos0);
    close_to(got, ref, (size_t)n_tok * H * HD, 1e-5, what);
    free(kv), free(blocks), free(q), free(ref), free(got), free(scores), free(partial);
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
    flash_case(16, 300, 5, 8, 2, 16, 1, 1);  /* the tokens alone fill the GPU: one split */
    flash_case(32, 17, 200, 6, 6, 16, 4, 4); /* no grouping */
}

/* 128k positions: the partial buffer stays the model's size (no scores scratch of the context's) */
static void test_flash_128k(void **s) {
    (void)s;
    flash_case(256, 1, 131071, 4, 1, 32, 512, 512);
    assert_true(spill_flash_partial_floats(64, 8, 128) * 4 < 8u << 20); /* Llama-3-70B's shape: under 8 MiB */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flash_decode),
        cmocka_unit_test(test_flash_prefill),
        cmocka_unit_test(test_flash_128k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
