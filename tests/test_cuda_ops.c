/* gpu: every CUDA operation against its CPU twin on random inputs, with the tolerance it is held to:
 *   rmsnorm, swiglu, add, get_rows (all types): 1e-5 relative (the same arithmetic, other rounding)
 *   rope (both conventions, with and without a frequency table): 1e-4 (cosf/sinf differ in the last bits)
 *   softmax: 1e-5; argmax: the same index; KV store (F32, and F16 / BF16 rounded to nearest even), top-k: exact
 *   fused dequantize-GEMV vs its twin (kernels/gemv.c): 1e-6 of the largest output (the same decoder and
 *   order of sums); BF16 tiles for prefill: equal to the twin's
 *   flash-decoding attention over a paged KV cache vs its twin (kernels/flash.c): 1e-5, decode with many
 *   splits, batched decode, prefill, a 128k context; the cache in F32, F16 and BF16; a step of several
 *   sequences in one launch (each its own length, tokens and block list) vs the twin's same step
 *   rope and the KV store with each token at its own position (and block list), rmsnorm of gathered rows
 *   gemm (cuBLAS, F16 and BF16 weights): F16 2e-2 relative to the largest output; BF16 1e-3, since both
 *   sides round the activations to BF16 (the CPU's BF16 kernels take BF16 activations since 2026-12-05;
 *   before, F32 ones, hence the wider bound then) and differ only in the order of their F32 sums
 * Skips with the driver's reason without a device. */
#include <math.h>

#include "gpu_util.h"
#include "spill_cuda_ops.h"
#include "spill_kernels.h"

#ifdef SPILL_HAVE_CUDA
#include <cuda_runtime_api.h>

static void rnd(float *x, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)(seed >> 40) / (float)(1 << 24) * 2 - 1;
    }
}

static void *dev(const void *host, size_t bytes) {
    void *d = NULL;
    assert_int_equal(cudaMalloc(&d, bytes), cudaSuccess);
    if (host) assert_int_equal(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    return d;
}

static void back(void *host, const void *d, size_t bytes) {
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_int_equal(cudaMemcpy(host, d, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
}

static void close_to(const float *a, const float *b, size_t n, double tol, const char *what) {
    double d = max_abs_diff(a, b, n), m = fmax(1e-30, max_abs_diff(b, NULL, n));
    printf("%s: max difference %.3g of %.3g\n", what, d, m);
    if (d / m > tol) fail_msg("%s: relative difference %.3g > %.3g", what, d / m, tol);
}

static void test_norm_and_elementwise(void **s) {
    (void)s;
    spill_err err = {{0}};
    enum { R = 7, D = 1000 };
    float x[R * D], w[D], ref[R * D], got[R * D], u[R * D];
    rnd(x, R * D, 1), rnd(w, D, 2), rnd(u, R * D, 3);
    for (int r = 0; r < R; r++) spill_rmsnorm(ref + r * D, x + r * D, w, D, 1e-5f);
    float *dx = dev(x, sizeof x), *dw = dev(w, sizeof w), *dy = dev(NULL, sizeof x), *du = dev(u, sizeof u);
    assert_int_equal(spill_cu_rmsnorm(dy, dx, dw, R, D, 1e-5f, NULL, &err), 0);
    back(got, dy, sizeof got);
    close_to(got, ref, R * D, 1e-5, "rmsnorm");
    /* gathered rows (the head's kept tokens): rows 6, 0 and 3, in that order */
    int rows[3] = {6, 0, 3}, *drows = dev(rows, sizeof rows);
    for (int r = 0; r < 3; r++) spill_rmsnorm(ref + r * D, x + rows[r] * D, w, D, 1e-5f);
    assert_int_equal(spill_cu_rmsnorm_rows(dy, dx, drows, dw, 3, D, 1e-5f, NULL, &err), 0);
    back(got, dy, sizeof(float) * 3 * D);
    close_to(got, ref, 3 * D, 1e-5, "rmsnorm of gathered rows");
    cudaFree(drows);
    spill_swiglu(ref, x, u, R * D);
    assert_int_equal(spill_cu_swiglu(dy, dx, du, R * D, NULL, &err), 0);
    back(got, dy, sizeof got);
    close_to(got, ref, R * D, 1e-5, "swiglu");
    memcpy(ref, x, sizeof x);
    spill_add(ref, u, R * D);
    assert_int_equal(spill_cu_add(dx, du, R * D, NULL, &err), 0);
    back(got, dx, sizeof got);
    close_to(got, ref, R * D, 1e-6, "add");
    memcpy(ref, got, sizeof got); /* dx as it now is, plus w on every row */
    spill_add_rows(ref, w, R, D);
    assert_int_equal(spill_cu_add_rows(dx, dw, R, D, NULL, &err), 0);
    back(got, dx, sizeof got);
    close_to(got, ref, R * D, 1e-6, "add_rows");
    cudaFree(dx), cudaFree(dw), cudaFree(dy), cudaFree(du);
}

static void test_rope_softmax_argmax(void **s) {
    (void)s;
    spill_err err = {{0}};
    enum { T = 5, H = 4, HD = 64 };
    float x[T * H * HD], ref[T * H * HD], got[T * H * HD], freq[HD / 2];
    for (int i = 0; i < HD / 2; i++) freq[i] = powf(500000.0f, -2.0f * i / HD) / (i > 20 ? 8.0f : 1.0f);
    float *dfreq = dev(freq, sizeof freq);
    for (int variant = 0; variant < 4; variant++) {
        int adjacent = variant & 1, table = variant >> 1;
        rnd(x, sizeof x / 4, 10 + (uint64_t)variant);
        memcpy(ref, x, sizeof x);
        /* each token at its own position: a step of several sequences */
        int pos[T] = {100, 101, 7, 3000, 0};
        for (int t = 0; t < T; t++) spill_rope(ref + t * H * HD, H, HD, HD, pos[t], 10000.0f, table ? freq : NULL, adjacent);
        float *dx = dev(x, sizeof x);
        int *dpos = dev(pos, sizeof pos);
        assert_int_equal(spill_cu_rope(dx, T, H, HD, HD, dpos, 10000.0f, table ? dfreq : NULL, adjacent, NULL, &err), 0);
        back(got, dx, sizeof got);
        close_to(got, ref, sizeof x / 4, 1e-4, adjacent ? "rope (adjacent)" : "rope (rotate-half)");
        cudaFree(dx), cudaFree(dpos);
    }
    cudaFree(dfreq);
    enum { SR = 3, SN = 5000 };
    static float sx[SR * SN], sref[SR * SN], sgot[SR * SN];
    rnd(sx, SR * SN, 5);
    memcpy(sref, sx, sizeof sx);
    for (int r = 0; r < SR; r++) spill_softmax(sref + r * SN, SN, 0.125f);
    float *dsx = dev(sx, sizeof sx);
    assert_int_equal(spill_cu_softmax(dsx, SR, SN, 0.125f, NULL, &err), 0);
    back(sgot, dsx, sizeof sgot);
    close_to(sgot, sref, SR * SN, 1e-5, "softmax");
    /* argmax: the first of equal maxima */
    sx[1234] = 7, sx[4321] = 7;
    int best = 0, *dbest = dev(NULL, sizeof(int));
    assert_int_equal(cudaMemcpy(dsx, sx, sizeof(float) * SN, cudaMemcpyHostToDevice), cudaSuccess);
    assert_int_equal(spill_cu_argmax(dsx, SN, dbest, NULL, &err), 0);
    back(&best, dbest, sizeof best);
    assert_int_equal(best, 1234);
    cudaFree(dsx), cudaFree(dbest);
}

static void test_topk(void **s) {
    (void)s;
    spill_err err = {{0}};
    enum { N = 50000, K = 40 };
    static float x[N];
    rnd(x, N, 77);
    x[100] = x[200] = 5.0f; /* a tie at the top: the lower index first */
    x[300] = NAN;
    int ref_i[K], got_i[K];
    float ref_v[K], got_v[K];
    spill_topk(x, N, K, ref_i, ref_v);
    float *dx = dev(x, sizeof x), *dv = dev(NULL, sizeof got_v);
    int *di = dev(NULL, sizeof got_i);
    if (spill_cu_topk(dx, N, K, di, dv, NULL, &err)) fail_msg("%s", err.msg);
    back(got_i, di, sizeof got_i), back(got_v, dv, sizeof got_v);
    assert_memory_equal(got_i, ref_i, sizeof ref_i);
    assert_memory_equal(got_v, ref_v, sizeof ref_v);
    cudaFree(dx), cudaFree(dv), cudaFree(di);
    /* fewer finite values than k (masked logits): every index inside the vocabulary, as the twin */
    for (int i = 0; i < N; i++) x[i] = i % 1000 == 0 ? (float)(i / 1000) : -INFINITY;
    x[5] = NAN;
    spill_topk(x, N, K, ref_i, ref_v);
    dx = dev(x, sizeof x), dv = dev(NULL, sizeof got_v), di = dev(NULL, sizeof got_i);
    if (spill_cu_topk(dx, N, K, di, dv, NULL, &err)) fail_msg("%s", err.msg);
    back(got_i, di, sizeof got_i), back(got_v, dv, sizeof got_v);
    for (int j = 0; j < K; j++) assert_true(got_i[j] >= 0 && got_i[j] < N);
    assert_memory_equal(got_i, ref_i, sizeof ref_i);
    assert_memory_equal(got_v, ref_v, sizeof ref_v);
    cudaFree(dx), cudaFree(dv), cudaFree(di);
}

static void test_get_rows(void **s) {
    (void)s;
    spill_err err = {{0}};
    enum { V = 50, C = 256 };
    float table[V * C], ref[3 * C], got[3 * C];
    rnd(table, V * C, 7);
    int ids[3] = {0, 49, 17};
    spill_dtype types[] = {SPILL_DT_F32,  SPILL_DT_F16,  SPILL_DT_BF16, SPILL_DT_Q8_0,
                           SPILL_DT_Q4_0, SPILL_DT_Q4_1, SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    static uint8_t q[V * C * 4];
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        uint64_t rb = spill_dtype_row_bytes(types[k], C);
        for (int r = 0; r < V; r++) spill_quantize_row_ref(types[k], table + r * C, q + r * rb, C);
        for (int i = 0; i < 3; i++) spill_dequant_row(types[k], q + (uint64_t)ids[i] * rb, ref + i * C, C);
        void *dq = dev(q, rb * V);
        int *dids = dev(ids, sizeof ids);
        float *dout = dev(NULL, sizeof got);
        assert_int_equal(spill_cu_get_rows(dout, dq, types[k], C, dids, 3, NULL, &err), 0);
        back(got, dout, sizeof got);
        close_to(got, ref, 3 * C, 1e-6, spill_dtype_name(types[k]));
        cudaFree(dq), cudaFree(dids), cudaFree(dout);
    }
}

/* flash-decoding on the GPU vs its twin (kernels/flash.c, itself checked against the plain attention
   in test_twins): a cache of kt (F32, F16, BF16) in blocks of T positions, out of order in memory as a
   block table leaves them */
static void attention_case_t(spill_dtype kt, int T, int NT, int POS0, int H, int KVH, int HD) {
    spill_err err = {{0}};
    int len = POS0 + NT, NB = (len + T - 1) / T, KV = KVH * HD;
    size_t bfl = (size_t)2 * T * KV, nq = (size_t)NT * H * HD, eb = spill_kv_type_bytes(kt), bb = bfl * eb;
    uint64_t pf = spill_flash_partial_floats(H, KVH, HD);
    float *kvf = malloc(sizeof(float) * bfl * NB), *q = malloc(sizeof(float) * nq), *ref = malloc(sizeof(float) * nq);
    float *got = malloc(sizeof(float) * nq), *partial = malloc(sizeof(float) * pf), *scores = malloc(sizeof(float) * len);
    uint8_t *kv = malloc(bb * NB);
    const void **host_blocks = malloc(sizeof(void *) * NB), **dev_blocks = malloc(sizeof(void *) * NB);
    assert_true(kvf && kv && q && ref && got && partial && scores && host_blocks && dev_blocks);
    rnd(kvf, bfl * NB, 20 + (uint64_t)len), rnd(q, nq, 30);
    for (int i = 0; i < NB; i++) spill_kv_row_put(kt, kv + (size_t)i * bb, kvf + (size_t)i * bfl, (int)bfl);
    for (int i = 0; i < NB; i++) host_blocks[i] = kv + (size_t)((i * 7) % NB) * bb;
    float scale = 1.0f / sqrtf((float)HD);
    assert_int_equal(spill_flash_attention(ref, q, host_blocks, kt, T, NT, POS0, H, KVH, HD, scale, partial), 0);
    spill_attention_paged(got, q, host_blocks, kt, T, NT, POS0, H, KVH, HD, scale, scores);
    /* as in test_twins: over 64k positions the two orders of summation part by more (seen on an H200 host: 1.24e-5) */
    close_to(got, ref, nq, len > 65536 ? 3e-5 : 1e-5, "twin vs plain attention");
    uint8_t *dkv = dev(kv, bb * NB);
    float *dq = dev(q, sizeof(float) * nq), *dout = dev(NULL, sizeof(float) * nq);
    float *dpartial = dev(NULL, sizeof(float) * pf);
    for (int i = 0; i < NB; i++) dev_blocks[i] = dkv + ((const uint8_t *)host_blocks[i] - kv);
    void *dtable = dev(dev_blocks, sizeof(void *) * NB);
    spill_flash_tile *tiles = malloc(sizeof *tiles * (size_t)NT);
    assert_non_null(tiles);
    int n_tiles = spill_flash_tiles(tiles, 0, NT, POS0, 0);
    void *dtiles = dev(tiles, sizeof *tiles * (size_t)n_tiles);
    if (spill_cu_attention(dout, dq, (const void *const *)dtable, kt, T, dtiles, n_tiles, NT, len, H, KVH, HD, scale, dpartial,
                           NULL, &err))
        fail_msg("%s", err.msg);
    back(got, dout, sizeof(float) * nq);
    char what[160];
    snprintf(what, sizeof what, "attention, %s cache (%d tokens at %d, %d heads, %d kv, %d dims, %d splits)",
             spill_kv_type_name(kt), NT, POS0, H, KVH, HD, spill_flash_splits(n_tiles, KVH, len));
    close_to(got, ref, nq, 1e-5, what);
    cudaFree(dkv), cudaFree(dq), cudaFree(dout), cudaFree(dpartial), cudaFree(dtable), cudaFree(dtiles);
    free(tiles);
    free(kvf), free(kv), free(q), free(ref), free(got), free(partial), free(scores), free(host_blocks), free(dev_blocks);
}

static void attention_case(int T, int NT, int POS0, int H, int KVH, int HD) {
    attention_case_t(SPILL_DT_F32, T, NT, POS0, H, KVH, HD);
}

static void test_attention(void **s) {
    (void)s;
    attention_case(4, 3, 15, 4, 2, 32);        /* the old case: a short context, one split */
    attention_case(16, 1, 4000, 32, 8, 128);   /* decode, Llama-3-8B's heads: many splits and the combine */
    attention_case(16, 8, 2000, 64, 8, 128);   /* batched decode, Llama-3-70B's heads */
    attention_case(16, 200, 0, 9, 3, 64);      /* prefill from position 0: empty chunks for the first tokens */
    attention_case(16, 102, 2, 3, 1, 24);      /* a chunk edge inside a tile of query tokens, a last tile of two */
    attention_case(16, 600, 7, 32, 8, 128);    /* a longer prompt: one split, tiles of 4 query tokens */
    attention_case(7, 5, 333, 14, 2, 24);      /* odd block size and head size, group of 7 */
    attention_case(16, 1, 131071, 8, 1, 256);  /* 128k context, head size 256: more than 48 KiB of shared memory */
}

/* the cache in F16 and BF16 (--kv-type): the kernel widens each element as it loads the tile */
static void test_attention_kv16(void **s) {
    (void)s;
    const spill_dtype types[] = {SPILL_DT_F16, SPILL_DT_BF16};
    for (int i = 0; i < 2; i++) {
        attention_case_t(types[i], 16, 1, 4000, 32, 8, 128);  /* decode: many splits and the combine */
        attention_case_t(types[i], 16, 8, 2000, 64, 8, 128);  /* batched decode, Llama-3-70B's heads */
        attention_case_t(types[i], 16, 102, 2, 3, 1, 24);     /* prefill: a chunk edge inside a tile */
        attention_case_t(types[i], 7, 5, 333, 14, 2, 24);     /* odd block size and head size */
        attention_case_t(types[i], 16, 1, 131071, 8, 1, 256); /* 128k context, head size 256 */
    }
}

/* A step of several sequences in one launch against the twin's same step (test_twins holds the twin
 * to each sequence alone): each sequence its own length, tokens and block list in one table */
static void attention_step_case(spill_dtype kt, int T, int n_seq, const int *n_tok, const int *pos0, int H, int KVH, int HD) {
    spill_err err = {{0}};
    int KV = KVH * HD, rows = 0, max_len = 0, NB = 0, n_tiles = 0;
    int *table = malloc(sizeof(int) * (size_t)n_seq);
    assert_non_null(table);
    for (int i = 0; i < n_seq; i++) {
        int len = pos0[i] + n_tok[i];
        table[i] = NB, NB += (len + T - 1) / T, rows += n_tok[i];
        if (len > max_len) max_len = len;
    }
    size_t bfl = (size_t)2 * T * KV, nq = (size_t)rows * H * HD, eb = spill_kv_type_bytes(kt), bb = bfl * eb;
    uint64_t pf = spill_flash_partial_floats(H, KVH, HD);
    float *kvf = malloc(sizeof(float) * bfl * NB), *q = malloc(sizeof(float) * nq), *ref = malloc(sizeof(float) * nq);
    float *got = malloc(sizeof(float) * nq), *partial = malloc(sizeof(float) * pf);
    uint8_t *kv = malloc(bb * NB);
    const void **host_blocks = malloc(sizeof(void *) * NB), **dev_blocks = malloc(sizeof(void *) * NB);
    spill_flash_tile *tiles = malloc(sizeof *tiles * (size_t)rows);
    assert_true(kvf && kv && q && ref && got && partial && host_blocks && dev_blocks && tiles);
    rnd(kvf, bfl * NB, 60 + (uint64_t)NB), rnd(q, nq, 61);
    for (int i = 0; i < NB; i++) spill_kv_row_put(kt, kv + (size_t)i * bb, kvf + (size_t)i * bfl, (int)bfl);
    for (int i = 0; i < NB; i++) host_blocks[i] = kv + (size_t)(NB - 1 - i) * bb; /* out of order */
    for (int i = 0, t0 = 0; i < n_seq; t0 += n_tok[i++])
        n_tiles += spill_flash_tiles(tiles + n_tiles, t0, n_tok[i], pos0[i], table[i]);
    float scale = 1.0f / sqrtf((float)HD);
    assert_int_equal(spill_flash_attention_tiles(ref, q, host_blocks, kt, T, tiles, n_tiles, rows, max_len, H, KVH, HD, scale,
                                                 partial),
                     0);
    uint8_t *dkv = dev(kv, bb * NB);
    float *dq = dev(q, sizeof(float) * nq), *dout = dev(NULL, sizeof(float) * nq), *dpartial = dev(NULL, sizeof(float) * pf);
    for (int i = 0; i < NB; i++) dev_blocks[i] = dkv + ((const uint8_t *)host_blocks[i] - kv);
    void *dtable = dev(dev_blocks, sizeof(void *) * NB), *dtiles = dev(tiles, sizeof *tiles * (size_t)n_tiles);
    if (spill_cu_attention(dout, dq, (const void *const *)dtable, kt, T, dtiles, n_tiles, rows, max_len, H, KVH, HD, scale,
                           dpartial, NULL, &err))
        fail_msg("%s", err.msg);
    back(got, dout, sizeof(float) * nq);
    char what[160];
    snprintf(what, sizeof what, "attention, a step of %d sequences, %s cache (%d tiles, longest %d, %d splits)", n_seq,
             spill_kv_type_name(kt), n_tiles, max_len, spill_flash_splits(n_tiles, KVH, max_len));
    close_to(got, ref, nq, 1e-5, what);
    cudaFree(dkv), cudaFree(dq), cudaFree(dout), cudaFree(dpartial), cudaFree(dtable), cudaFree(dtiles);
    free(table), free(kvf), free(kv), free(q), free(ref), free(got), free(partial), free(host_blocks), free(dev_blocks);
    free(tiles);
}

static void test_attention_step(void **s) {
    (void)s;
    int n16[16], p16[16];
    for (int i = 0; i < 16; i++) n16[i] = 1, p16[i] = 4 + (i * 2999) / 15;
    attention_step_case(SPILL_DT_F32, 16, 16, n16, p16, 32, 8, 128); /* decode of 16, Llama-3-8B's heads */
    attention_step_case(SPILL_DT_BF16, 16, 16, n16, p16, 64, 8, 128);
    int nm[4] = {6, 1, 3, 9}, pm[4] = {0, 700, 65, 130}; /* prompt chunks beside decoding tokens */
    attention_step_case(SPILL_DT_F32, 7, 4, nm, pm, 12, 3, 24);
    attention_step_case(SPILL_DT_F16, 16, 4, nm, pm, 14, 2, 24);
    int nb[3] = {300, 1, 450}, pb[3] = {20, 90, 3}; /* tiles enough for one split */
    attention_step_case(SPILL_DT_F32, 16, 3, nb, pb, 4, 2, 32);
}

/* the store at each element type: F32 a copy, F16 / BF16 rounded to nearest even as the twin rounds;
   one launch for two sequences: three tokens of the first (blocks 0-1 of the table), then two of the
   second (its block 2), each at its own position */
static void kv_store_case(spill_dtype kt) {
    spill_err err = {{0}};
    enum { T = 4, NB = 3, KV = 96, NT = 5 };
    int pos[NT] = {2, 3, 4, 1, 2}, tab[NT] = {0, 0, 0, 2, 2};
    size_t bb = (size_t)2 * T * KV * spill_kv_type_bytes(kt);
    static float init[NB * 2 * T * KV], k[NT * KV], v[NT * KV];
    static uint8_t blocks[NB * 2 * T * KV * 4], ref[NB * 2 * T * KV * 4], got[NB * 2 * T * KV * 4];
    rnd(init, NB * 2 * T * KV, 40);
    spill_kv_row_put(kt, blocks, init, NB * 2 * T * KV);
    memcpy(ref, blocks, bb * NB);
    rnd(k, NT * KV, 41), rnd(v, NT * KV, 42);
    int order[NB] = {2, 0, 1};
    void *host_blocks[NB];
    for (int i = 0; i < NB; i++) host_blocks[i] = ref + (size_t)order[i] * bb;
    for (int t = 0; t < NT; t++) spill_kv_store_paged(host_blocks + tab[t], kt, T, KV, pos[t], 1, k + t * KV, v + t * KV);
    uint8_t *dblocks = dev(blocks, bb * NB);
    float *dk = dev(k, sizeof k), *dv = dev(v, sizeof v);
    void *dev_blocks[NB];
    for (int i = 0; i < NB; i++) dev_blocks[i] = dblocks + (size_t)order[i] * bb;
    void *dtable = dev(dev_blocks, sizeof dev_blocks);
    int *dpos = dev(pos, sizeof pos), *dtab = dev(tab, sizeof tab);
    if (spill_cu_kv_store((void *const *)dtable, kt, T, KV, dpos, dtab, NT, dk, dv, NULL, &err)) fail_msg("%s", err.msg);
    back(got, dblocks, bb * NB);
    assert_memory_equal(got, ref, bb * NB); /* exact, and nothing else touched */
    cudaFree(dblocks), cudaFree(dk), cudaFree(dv), cudaFree(dtable), cudaFree(dpos), cudaFree(dtab);
}

static void test_kv_store(void **s) {
    (void)s;
    kv_store_case(SPILL_DT_F32);
    kv_store_case(SPILL_DT_F16);
    kv_store_case(SPILL_DT_BF16);
}

static void test_gemm(void **s) {
    (void)s;
    spill_err err = {{0}};
    enum { R = 96, C = 512, T = 5 };
    static float w[R * C], x[T * C], ref[T * R], got[T * R];
    rnd(w, R * C, 8), rnd(x, T * C, 9);
    spill_cu_blas *b;
    if (spill_cu_blas_create(&b, &err)) fail_msg("%s", err.msg);
    spill_pool *pool = spill_pool_create(1);
    spill_dtype types[2] = {SPILL_DT_F16, SPILL_DT_BF16};
    for (int k = 0; k < 2; k++) {
        static uint16_t wq[R * C];
        spill_quantize_row_ref(types[k], w, wq, R * C);
        static uint8_t act[T * C * 4];
        for (int t = 0; t < T; t++) spill_act_quantize(types[k], x + t * C, act + t * spill_act_bytes(types[k], C), C);
        spill_matmul(pool, ref, wq, types[k], R, C, act, T);
        void *dw = dev(wq, sizeof wq), *dscratch = dev(NULL, sizeof(uint16_t) * T * C);
        float *dx = dev(x, sizeof x), *dout = dev(NULL, sizeof got);
        if (spill_cu_gemm(b, dout, dw, types[k], R, C, dx, T, dscratch, NULL, &err)) fail_msg("%s", err.msg);
        back(got, dout, sizeof got);
        close_to(got, ref, T * R, types[k] == SPILL_DT_F16 ? 2e-2 : 1e-3, types[k] == SPILL_DT_F16 ? "gemm F16" : "gemm BF16");
        cudaFree(dw), cudaFree(dscratch), cudaFree(dx), cudaFree(dout);
    }
    /* quantized weights are expanded at load, not multiplied here: refused with the reason */
    assert_int_equal(spill_cu_gemm(b, NULL, NULL, SPILL_DT_Q4_0, R, C, NULL, T, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "expanded at load"));
    spill_pool_free(pool);
    spill_cu_blas_destroy(b);
}

/* the fused dequantize-GEMV and the BF16 tiles vs their twins (kernels/gemv.c, themselves checked
   against dequantize-then-dot in test_twins): every format, 1..8 tokens, an output with a row gap */
static void test_gemv(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_dtype types[] = {SPILL_DT_F32,  SPILL_DT_F16,  SPILL_DT_BF16, SPILL_DT_Q8_0,
                           SPILL_DT_Q4_0, SPILL_DT_Q4_1, SPILL_DT_Q4_K, SPILL_DT_Q6_K};
    enum { R = 301, C = 4096, LDO = 320 };
    static float wf[C], x[SPILL_GEMV_MAX_TOK * C], ref[SPILL_GEMV_MAX_TOK * LDO], got[SPILL_GEMV_MAX_TOK * LDO];
    static uint8_t w[(size_t)R * C * 4];
    static uint16_t bref[(size_t)R * C], bgot[(size_t)R * C];
    rnd(x, SPILL_GEMV_MAX_TOK * C, 50);
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        uint64_t rb = spill_dtype_row_bytes(types[k], C);
        for (int r = 0; r < R; r++) {
            rnd(wf, C, 60 + (uint64_t)r);
            spill_quantize_row_ref(types[k], wf, w + (uint64_t)r * rb, C);
        }
        void *dw = dev(w, rb * R);
        float *dx = dev(x, sizeof x), *dout = dev(NULL, sizeof got);
        int tokens[] = {1, 2, 5, 8};
        for (int i = 0; i < 4; i++) {
            int nt = tokens[i];
            memset(ref, 0, sizeof ref);
            spill_gemv(ref, LDO, w, types[k], R, C, x, nt);
            assert_int_equal(cudaMemset(dout, 0, sizeof got), cudaSuccess);
            if (spill_cu_gemv(dout, LDO, dw, types[k], R, C, dx, nt, NULL, &err)) fail_msg("%s", err.msg);
            back(got, dout, sizeof got);
            char what[64];
            snprintf(what, sizeof what, "gemv %s, %d tokens", spill_dtype_name(types[k]), nt);
            close_to(got, ref, (size_t)LDO * nt, 1e-6, what);
        }
        /* weights 2 bytes and activations 4 bytes past an alignment of 16: the decoder's loads take
           the width each address allows, and the activations are read one float at a time */
        uint8_t *dw_odd = dev(NULL, rb * R + 16);
        float *dx_odd = dev(NULL, sizeof x + 16);
        assert_int_equal(cudaMemcpy(dw_odd + 2, w, rb * R, cudaMemcpyHostToDevice), cudaSuccess);
        assert_int_equal(cudaMemcpy(dx_odd + 1, x, sizeof x, cudaMemcpyHostToDevice), cudaSuccess);
        for (int nt = 1; nt <= SPILL_GEMV_MAX_TOK; nt += 4) {
            memset(ref, 0, sizeof ref);
            spill_gemv(ref, LDO, w, types[k], R, C, x, nt);
            assert_int_equal(cudaMemset(dout, 0, sizeof got), cudaSuccess);
            if (spill_cu_gemv(dout, LDO, dw_odd + 2, types[k], R, C, dx_odd + 1, nt, NULL, &err)) fail_msg("%s", err.msg);
            back(got, dout, sizeof got);
            char what[80];
            snprintf(what, sizeof what, "gemv %s, %d tokens, unaligned", spill_dtype_name(types[k]), nt);
            close_to(got, ref, (size_t)LDO * nt, 1e-6, what);
        }
        cudaFree(dw_odd), cudaFree(dx_odd);
        spill_dequant_bf16(bref, w, types[k], R, C);
        void *dbf = dev(NULL, sizeof bgot);
        if (spill_cu_dequant_bf16(dbf, dw, types[k], R, C, NULL, &err)) fail_msg("%s", err.msg);
        back(bgot, dbf, sizeof bgot);
        assert_memory_equal(bgot, bref, sizeof bref);
        printf("dequant_bf16 %s: equal to the twin\n", spill_dtype_name(types[k]));
        cudaFree(dw), cudaFree(dx), cudaFree(dout), cudaFree(dbf);
    }
}

int main(void) {
    require_gpu();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_norm_and_elementwise),
        cmocka_unit_test(test_rope_softmax_argmax),
        cmocka_unit_test(test_get_rows),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_kv16),
        cmocka_unit_test(test_attention_step),
        cmocka_unit_test(test_kv_store),
        cmocka_unit_test(test_topk),
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_gemv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#else
int main(void) {
    require_gpu(); /* says there is no CUDA in this build, and skips */
    return SPILL_TEST_SKIP;
}
#endif
