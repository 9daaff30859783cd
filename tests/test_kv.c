/* The paged KV cache on its own: blocks on demand, copy-on-write forks that share a prefix and
 * diverge, release and reuse, running out of blocks, and the HBM window (newest blocks in HBM, the
 * oldest demoted to host memory) on the emulated backend; each with the cache in F32, F16 and BF16
 * (a 16-bit part is half the bytes, values come back within the type's rounding, to nearest even). */
#include <math.h>

#include "kv.h"
#include "spill_backend.h"
#include "spill_kernels.h"
#include "test_util.h"

static spill_mem *open_mem(void) {
    spill_err err = {{0}};
    spill_mem *m = spill_mem_create("emulated", &err);
    if (!m) fail_msg("%s", err.msg);
    return m;
}

static const spill_dtype kv_types[] = {SPILL_DT_F32, SPILL_DT_F16, SPILL_DT_BF16};

/* a recognisable, not exactly representable value for (tag, layer, d): rounded by a 16-bit cache */
static float val(float tag, int l, int d) { return (tag + l * 0.5f + d) * 1.0009765625f + 0.0001f; }
/* the largest error a cache of type t may make on x: half an ulp (F16 keeps 11 bits, BF16 8) */
static double rounding(spill_dtype t, float x) {
    return t == SPILL_DT_F32 ? 0 : fabs(x) * (t == SPILL_DT_F16 ? 0x1p-11 : 0x1p-8) * (1 + 1e-6);
}

/* write a recognisable value for (seq, layer, pos) into K and V */
static void put(spill_kv *kv, int seq, int pos, float tag) {
    float k[64], v[64];
    assert_true(kv->kv_dim <= 64);
    for (int l = 0; l < kv->L; l++) {
        for (int d = 0; d < kv->kv_dim; d++) k[d] = val(tag, l, d), v[d] = -val(tag, l, d);
        spill_kv_row_put(kv->type, spill_kv_k(kv, seq, l, pos), k, kv->kv_dim);
        spill_kv_row_put(kv->type, spill_kv_v(kv, seq, l, pos), v, kv->kv_dim);
    }
}

static int has(const spill_kv *kv, int seq, int pos, float tag) {
    float kb[64], vb[64];
    for (int l = 0; l < kv->L; l++) {
        const float *k = spill_kv_row_get(kv->type, spill_kv_k(kv, seq, l, pos), kb, kv->kv_dim);
        const float *v = spill_kv_row_get(kv->type, spill_kv_v(kv, seq, l, pos), vb, kv->kv_dim);
        for (int d = 0; d < kv->kv_dim; d++) {
            float x = val(tag, l, d);
            if (fabs(k[d] - x) > rounding(kv->type, x) || fabs(v[d] + x) > rounding(kv->type, x)) return 0;
        }
    }
    return 1;
}

/* store and read back: within half an ulp, ties to even, and the F32 cache exact */
static void test_round_trip(void **s) {
    (void)s;
    float x[256], back[256];
    uint16_t h[256];
    uint64_t r = 7;
    for (int i = 0; i < 256; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(r >> 40) / (float)(1 << 24) - 0.5f) * (float)(1 << (i % 16));
    }
    for (int t = 0; t < 3; t++) {
        spill_dtype kt = kv_types[t];
        uint8_t row[1024];
        spill_kv_row_put(kt, row, x, 256);
        const float *y = spill_kv_row_get(kt, row, back, 256);
        if (kt == SPILL_DT_F32) assert_ptr_equal(y, (const float *)row); /* F32 rows are read in place */
        for (int i = 0; i < 256; i++) assert_true(fabs(y[i] - x[i]) <= rounding(kt, x[i]));
    }
    /* ties go to the even neighbour: 1 + 2^-11 is halfway between F16's 1 and 1 + 2^-10 */
    float ties[4] = {1 + 0x1p-11f, 1 + 3 * 0x1p-11f, 1 + 0x1p-8f, 1 + 3 * 0x1p-8f};
    spill_kv_row_put(SPILL_DT_F16, h, ties, 2);
    assert_true(spill_fp16_to_fp32(h[0]) == 1.0f && spill_fp16_to_fp32(h[1]) == 1 + 0x1p-9f);
    spill_kv_row_put(SPILL_DT_BF16, h, ties + 2, 2);
    assert_true(spill_bf16_to_fp32(h[0]) == 1.0f && spill_bf16_to_fp32(h[1]) == 1 + 0x1p-6f);
    /* the names the flags take */
    spill_dtype t;
    assert_int_equal(spill_kv_type_parse("BF16", &t), 0);
    assert_int_equal(t, SPILL_DT_BF16);
    assert_int_equal(spill_kv_type_parse("q8_0", &t), -1);
    assert_int_equal(spill_kv_type_bytes(SPILL_DT_F16), 2);
    assert_int_equal(spill_kv_type_bytes(SPILL_DT_Q8_0), 0);
}

static void blocks_and_cow(spill_dtype kt) {
    spill_mem *m = open_mem();
    spill_kv kv;
    spill_err err = {{0}};
    assert_int_equal(spill_kv_init(&kv, m, kt, 3, 8, 64, 4, 4, 0, NULL, &err), 0);
    assert_int_equal(kv.part_bytes, 2ull * 4 * 8 * spill_kv_type_bytes(kt));
    assert_int_equal(kv.blocks_per_seq, 16);
    assert_int_equal(spill_kv_seq_open(&kv, 0, &err), 0);
    /* a 10-token prompt: blocks 0, 1, 2 (the last half full) */
    assert_int_equal(spill_kv_prepare(&kv, 0, 0, 10, &err), 0);
    for (int p = 0; p < 10; p++) put(&kv, 0, p, (float)p);
    assert_int_equal(kv.st.blocks_in_use, 3);
    /* fork twice: nothing is copied yet */
    assert_int_equal(spill_kv_fork(&kv, 0, 1, &err), 0);
    assert_int_equal(spill_kv_fork(&kv, 0, 2, &err), 0);
    assert_int_equal(kv.st.blocks_in_use, 3);
    assert_int_equal(kv.st.shared, 6);
    for (int p = 0; p < 10; p++) assert_true(has(&kv, 2, p, (float)p));
    /* each sequence writes position 10, inside the shared third block: copy-on-write */
    for (int q = 0; q < 3; q++) {
        assert_int_equal(spill_kv_prepare(&kv, q, 10, 1, &err), 0);
        put(&kv, q, 10, 100.0f + q);
    }
    assert_int_equal(kv.st.cow_copies, 2); /* the last writer owns the original */
    assert_int_equal(kv.st.blocks_in_use, 5);
    for (int q = 0; q < 3; q++) {
        assert_true(has(&kv, q, 10, 100.0f + q)); /* diverged */
        for (int p = 0; p < 10; p++) assert_true(has(&kv, q, p, (float)p)); /* the prefix survived the copies */
    }
    /* the first two blocks are still stored once */
    assert_ptr_equal(spill_kv_k(&kv, 0, 0, 0), spill_kv_k(&kv, 2, 0, 0));
    assert_ptr_not_equal(spill_kv_k(&kv, 0, 0, 10), spill_kv_k(&kv, 1, 0, 10));
    /* release: shared blocks stay while someone reads them */
    spill_kv_release(&kv, 1);
    assert_int_equal(kv.st.blocks_in_use, 4);
    assert_true(has(&kv, 0, 3, 3.0f));
    spill_kv_release(&kv, 0);
    spill_kv_release(&kv, 2);
    assert_int_equal(kv.st.blocks_in_use, 0);
    assert_int_equal(kv.st.bytes[SPILL_TIER_HOST], 0);
    spill_mem_stats ms;
    spill_mem_get_stats(m, &ms);
    /* every block went back to the allocator but the spare parts the cache keeps for its next blocks */
    assert_true(kv.n_spare > 0 && kv.n_spare <= kv.spare_cap);
    assert_int_equal(ms.tier[SPILL_TIER_HOST].current, (uint64_t)kv.n_spare * kv.part_bytes);
    /* reuse after release: the spare parts first */
    void *spare = kv.spare[kv.n_spare - 1];
    int n_spare = kv.n_spare;
    assert_int_equal(spill_kv_seq_open(&kv, 1, &err), 0);
    assert_int_equal(spill_kv_prepare(&kv, 1, 0, 64, &err), 0);
    assert_true(kv.n_spare < n_spare);
    int found = 0;
    for (int b = 0; b < kv.max_blocks * kv.L; b++) found |= kv.part[b] == spare;
    assert_true(found);
    assert_int_equal(kv.st.blocks_in_use, 16);
    /* errors: past the context, a sequence not open, one opened twice, forking onto a live one */
    assert_int_equal(spill_kv_prepare(&kv, 1, 60, 5, &err), -1);
    assert_non_null(strstr(err.msg, "context"));
    assert_int_equal(spill_kv_prepare(&kv, 3, 0, 1, &err), -1);
    assert_non_null(strstr(err.msg, "not open"));
    assert_int_equal(spill_kv_seq_open(&kv, 1, &err), -1);
    assert_int_equal(spill_kv_seq_open(&kv, 9, &err), -1);
    assert_int_equal(spill_kv_fork(&kv, 1, 1, &err), -1);
    spill_kv_free(&kv);
    spill_mem_get_stats(m, &ms);
    assert_int_equal(ms.tier[SPILL_TIER_HOST].current, 0); /* the spare parts too */
    spill_mem_free(m);
}

static void test_blocks_and_cow(void **s) {
    (void)s;
    for (int t = 0; t < 3; t++) blocks_and_cow(kv_types[t]);
}

static void test_out_of_blocks(void **s) {
    (void)s;
    spill_mem *m = open_mem();
    spill_kv kv;
    spill_err err = {{0}};
    /* 5 blocks of 4 tokens in all: one full sequence (16 positions = 4 blocks) plus one block */
    assert_int_equal(spill_kv_init(&kv, m, SPILL_DT_F32, 2, 4, 16, 2, 4, 5, NULL, &err), 0);
    assert_int_equal(spill_kv_seq_open(&kv, 0, &err), 0);
    assert_int_equal(spill_kv_seq_open(&kv, 1, &err), 0);
    assert_int_equal(spill_kv_prepare(&kv, 0, 0, 16, &err), 0);
    assert_int_equal(spill_kv_prepare(&kv, 1, 0, 4, &err), 0);
    assert_int_equal(spill_kv_prepare(&kv, 1, 4, 1, &err), -1);
    assert_non_null(strstr(err.msg, "all 5 blocks of 4 tokens are in use"));
    /* nothing leaked by the failure */
    assert_int_equal(kv.st.blocks_in_use, 5);
    spill_kv_release(&kv, 0);
    assert_int_equal(spill_kv_prepare(&kv, 1, 4, 1, &err), 0);
    spill_kv_free(&kv);
    /* bad block sizes */
    assert_int_equal(spill_kv_init(&kv, m, SPILL_DT_F32, 2, 4, 16, 1, 3, 0, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "power of two"));
    /* a type the cache does not hold */
    assert_int_equal(spill_kv_init(&kv, m, SPILL_DT_Q8_0, 2, 4, 16, 1, 4, 0, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "f32|f16|bf16"));
    spill_mem_free(m);
}

static void hbm_window(spill_dtype kt) {
    spill_mem *m = open_mem();
    spill_kv kv;
    spill_err err = {{0}};
    int L = 2, D = 16, T = 8;
    uint64_t part = 2ull * T * D * spill_kv_type_bytes(kt); /* half the F32 part's bytes at F16 and BF16 */
    uint64_t hbm[2] = {3 * part, 0}; /* layer 0 keeps 3 blocks in HBM, layer 1 none */
    assert_int_equal(spill_kv_init(&kv, m, kt, L, D, 128, 1, T, 0, hbm, &err), 0);
    assert_int_equal(kv.part_bytes, part);
    assert_int_equal(spill_kv_seq_open(&kv, 0, &err), 0);
    for (int p = 0; p < 6 * T; p++) {
        assert_int_equal(spill_kv_prepare(&kv, 0, p, 1, &err), 0);
        put(&kv, 0, p, (float)p);
    }
    /* 6 blocks: the newest 3 of layer 0 in HBM, the older 3 demoted; layer 1 all in host memory */
    assert_int_equal(kv.hbm_used[0], 3);
    assert_int_equal(kv.hbm_used[1], 0);
    assert_int_equal(kv.st.demoted, 3);
    assert_int_equal(kv.st.bytes[SPILL_TIER_HBM], 3 * part);
    assert_int_equal(kv.st.bytes[SPILL_TIER_HOST], 9 * part);
    for (int b = 0; b < 6; b++) {
        int id = kv.table[0][b];
        assert_int_equal(kv.tier[(size_t)id * L + 0], b >= 3 ? SPILL_TIER_HBM : SPILL_TIER_HOST);
        assert_int_equal(kv.tier[(size_t)id * L + 1], SPILL_TIER_HOST);
    }
    for (int p = 0; p < 6 * T; p++) assert_true(has(&kv, 0, p, (float)p)); /* demotion kept the contents */
    spill_mem_stats ms;
    spill_mem_get_stats(m, &ms);
    assert_int_equal(ms.tier[SPILL_TIER_HBM].current, 3 * part);
    spill_kv_free(&kv);
    spill_mem_get_stats(m, &ms);
    assert_int_equal(ms.tier[SPILL_TIER_HBM].current, 0);
    assert_int_equal(ms.tier[SPILL_TIER_HOST].current, 0);
    spill_mem_free(m);
}

/* A released block's host parts are kept as spares and the next host part comes from them, a demotion's
   included: with HBM full, releasing an old (demoted) block leaves two spares and HBM as it was; the
   next block demotes the oldest HBM part into one spare and puts its host layer into the other */
static void test_spares_in_demotion(void **s) {
    (void)s;
    spill_mem *m = open_mem();
    spill_kv kv;
    spill_err err = {{0}};
    int L = 2, D = 16, T = 8;
    uint64_t part = 2ull * T * D * 4;
    uint64_t hbm[2] = {3 * part, 0}; /* layer 0 keeps 3 blocks in HBM, layer 1 none */
    assert_int_equal(spill_kv_init(&kv, m, SPILL_DT_F32, L, D, 128, 2, T, 0, hbm, &err), 0);
    assert_true(kv.spare_cap >= 2);
    assert_int_equal(spill_kv_seq_open(&kv, 1, &err), 0);
    assert_int_equal(spill_kv_seq_open(&kv, 0, &err), 0);
    for (int p = 0; p < T; p++) { /* sequence 1's block first: the oldest */
        assert_int_equal(spill_kv_prepare(&kv, 1, p, 1, &err), 0);
        put(&kv, 1, p, 1000.0f + (float)p);
    }
    for (int p = 0; p < 3 * T; p++) { /* sequence 0's three: the third demotes sequence 1's */
        assert_int_equal(spill_kv_prepare(&kv, 0, p, 1, &err), 0);
        put(&kv, 0, p, (float)p);
    }
    assert_int_equal(kv.st.demoted, 1);
    assert_int_equal(kv.hbm_used[0], 3);
    assert_int_equal(kv.n_spare, 0);
    spill_kv_release(&kv, 1); /* both of its parts in host memory now: two spares, HBM still full */
    assert_int_equal(kv.n_spare, 2);
    assert_int_equal(kv.hbm_used[0], 3);
    void *a = kv.spare[0], *b = kv.spare[1];
    for (int p = 3 * T; p < 4 * T; p++) {
        assert_int_equal(spill_kv_prepare(&kv, 0, p, 1, &err), 0);
        put(&kv, 0, p, (float)p);
    }
    assert_int_equal(kv.st.demoted, 2);
    assert_int_equal(kv.n_spare, 0); /* the demotion's host part and the new block's layer 1 */
    int b0 = kv.table[0][0], b3 = kv.table[0][3];
    assert_true(kv.part[(size_t)b0 * L + 0] == a || kv.part[(size_t)b0 * L + 0] == b); /* demoted into a spare */
    assert_true(kv.part[(size_t)b3 * L + 1] == a || kv.part[(size_t)b3 * L + 1] == b);
    assert_int_equal(kv.tier[(size_t)b0 * L + 0], SPILL_TIER_HOST);
    for (int p = 0; p < 4 * T; p++) assert_true(has(&kv, 0, p, (float)p)); /* the contents moved with it */
    spill_kv_free(&kv);
    spill_mem_stats ms;
    spill_mem_get_stats(m, &ms);
    assert_int_equal(ms.tier[SPILL_TIER_HBM].current, 0);
    assert_int_equal(ms.tier[SPILL_TIER_HOST].current, 0);
    spill_mem_free(m);
}

static void test_hbm_window(void **s) {
    (void)s;
    for (int t = 0; t < 3; t++) hbm_window(kv_types[t]);
}

/* the reference attention (the GPU kernel's CPU twin) reads through the block table and equals a
   plain attention over contiguous K and V (as the cache holds them: rounded to its type) */
static void attention_reference(spill_dtype kt) {
    spill_mem *m = open_mem();
    spill_kv kv;
    spill_err err = {{0}};
    enum { H = 4, KVH = 2, HD = 8, D = KVH * HD, NT = 3, POS0 = 9, LEN = POS0 + NT };
    assert_int_equal(spill_kv_init(&kv, m, kt, 1, D, 64, 2, 4, 0, NULL, &err), 0);
    assert_int_equal(spill_kv_seq_open(&kv, 1, &err), 0);
    assert_int_equal(spill_kv_prepare(&kv, 1, 0, LEN, &err), 0);
    float K[LEN][D], V[LEN][D], q[NT * H * HD], got[NT * H * HD], scores[LEN];
    uint64_t r = 5;
    for (int p = 0; p < LEN; p++)
        for (int d = 0; d < D; d++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            K[p][d] = (float)(r >> 40) / (float)(1 << 24) - 0.5f;
            V[p][d] = (float)((r >> 20) & 0xFFFF) / 65536.0f - 0.5f;
        }
    for (int p = 0; p < LEN; p++) { /* stored, then read back as the cache rounded them */
        float row[D];
        spill_kv_row_put(kt, spill_kv_k(&kv, 1, 0, p), K[p], D);
        spill_kv_row_put(kt, spill_kv_v(&kv, 1, 0, p), V[p], D);
        memcpy(K[p], spill_kv_row_get(kt, spill_kv_k(&kv, 1, 0, p), row, D), sizeof row);
        memcpy(V[p], spill_kv_row_get(kt, spill_kv_v(&kv, 1, 0, p), row, D), sizeof row);
    }
    for (int i = 0; i < NT * H * HD; i++) q[i] = (float)((i * 37) % 17) / 17.0f - 0.5f;
    const void *blocks[16];
    for (int b = 0; b * kv.T < LEN; b++) blocks[b] = kv.part[(size_t)kv.table[1][b] * (size_t)kv.L];
    float scale = 1.0f / sqrtf(HD);
    spill_attention_paged(got, q, blocks, kt, kv.T, NT, POS0, H, KVH, HD, scale, scores);
    for (int t = 0; t < NT; t++)
        for (int h = 0; h < H; h++) {
            int len = POS0 + t + 1, kvh = h / (H / KVH);
            double w[LEN], mx = -1e30, sum = 0;
            for (int p = 0; p < len; p++) {
                double dot = 0;
                for (int d = 0; d < HD; d++) dot += (double)q[(t * H + h) * HD + d] * K[p][kvh * HD + d];
                w[p] = dot * scale;
                if (w[p] > mx) mx = w[p];
            }
            for (int p = 0; p < len; p++) sum += (w[p] = exp(w[p] - mx));
            for (int d = 0; d < HD; d++) {
                double o = 0;
                for (int p = 0; p < len; p++) o += w[p] / sum * V[p][kvh * HD + d];
                assert_true(fabs(o - got[(t * H + h) * HD + d]) < 1e-5);
            }
        }
    /* the store twin (the GPU's kv_store) writes where spill_kv_k / spill_kv_v read, across a block edge */
    enum { SP = POS0 - 2 };
    float k2[NT * D], v2[NT * D];
    for (int i = 0; i < NT * D; i++) k2[i] = (float)i, v2[i] = -(float)i;
    void *wblocks[16];
    for (int b = 0; b * kv.T < LEN; b++) wblocks[b] = kv.part[(size_t)kv.table[1][b] * (size_t)kv.L];
    assert_true(SP / kv.T != (SP + NT - 1) / kv.T);
    spill_kv_store_paged(wblocks, kt, kv.T, D, SP, NT, k2, v2);
    uint8_t want[D * 4];
    float row[D];
    for (int t = 0; t < NT; t++) {
        spill_kv_row_put(kt, want, k2 + t * D, D);
        assert_memory_equal(spill_kv_k(&kv, 1, 0, SP + t), want, kv.row_bytes);
        spill_kv_row_put(kt, want, v2 + t * D, D);
        assert_memory_equal(spill_kv_v(&kv, 1, 0, SP + t), want, kv.row_bytes);
    }
    /* the positions on either side are untouched */
    assert_memory_equal(spill_kv_row_get(kt, spill_kv_k(&kv, 1, 0, SP - 1), row, D), K[SP - 1], sizeof(float) * D);
    assert_memory_equal(spill_kv_row_get(kt, spill_kv_v(&kv, 1, 0, SP + NT), row, D), V[SP + NT], sizeof(float) * D);
    spill_kv_free(&kv);
    spill_mem_free(m);
}

static void test_attention_reference(void **s) {
    (void)s;
    for (int t = 0; t < 3; t++) attention_reference(kv_types[t]);
}

/* A new block in the decode loop is not zeroed: it is written before it is read, and on the GPU the
 * zeroing was a cudaMemset and a device synchronize per block (issue 21). The leaf counts zero calls. */
static spill_backend zc_leaf;
static int zc_calls;
static int zc_zero(void *ctx, void *p, size_t n, spill_placement pl, spill_err *err) {
    zc_calls++;
    return zc_leaf.iface->zero ? zc_leaf.iface->zero(ctx, p, n, pl, err) : (memset(p, 0, n), 0);
}

static void test_blocks_not_zeroed(void **s) {
    (void)s;
    spill_err err = {{0}};
    spill_backend leaf;
    assert_int_equal(spill_backend_emulated_init(&leaf, &err), 0);
    zc_leaf = leaf;
    static spill_backend_iface iface;
    iface = *leaf.iface;
    iface.zero = zc_zero;
    leaf.iface = &iface;
    spill_mem_config mc = {0};
    mc.limit[SPILL_TIER_HBM] = 64u << 20;
    spill_mem *m = spill_mem_wrap(leaf, &mc, "counting zero calls", &err);
    assert_non_null(m);
    spill_kv kv;
    assert_int_equal(spill_kv_init(&kv, m, SPILL_DT_F16, 3, 8, 64, 2, 4, 0, NULL, &err), 0);
    assert_int_equal(spill_kv_seq_open(&kv, 0, &err), 0);
    zc_calls = 0;
    for (int pos = 0; pos < 20; pos++) { /* five blocks of 4 tokens, one token a step */
        assert_int_equal(spill_kv_prepare(&kv, 0, pos, 1, &err), 0);
        put(&kv, 0, pos, (float)pos);
    }
    for (int pos = 0; pos < 20; pos++) assert_true(has(&kv, 0, pos, (float)pos));
    assert_true(kv.st.allocated >= 5);
    assert_int_equal(zc_calls, 0);
    spill_kv_free(&kv);
    spill_mem_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_blocks_and_cow),
        cmocka_unit_test(test_out_of_blocks),
        cmocka_unit_test(test_hbm_window),
        cmocka_unit_test(test_spares_in_demotion),
        cmocka_unit_test(test_blocks_not_zeroed),
        cmocka_unit_test(test_attention_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
