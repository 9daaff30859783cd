/* The paged KV cache (see kv.h). */
#include "kv.h"

static void set_err_oom(spill_err *err) { spill_err_set(err, "out of memory for the KV cache's tables"); }

int spill_kv_init(spill_kv *kv, spill_mem *mem, spill_dtype type, int L, int kv_dim, int n_ctx, int max_seqs, int T,
                  int max_blocks, const uint64_t *hbm_bytes, spill_err *err) {
    memset(kv, 0, sizeof *kv);
    uint32_t eb = spill_kv_type_bytes(type);
    if (!eb) return spill_err_set(err, "--kv-type: type %d (%s) is not one of f32|f16|bf16", (int)type, spill_dtype_name(type));
    if (T == 0) T = SPILL_KV_BLOCK_DEFAULT;
    if (T < 1 || T > 65536 || (T & (T - 1)))
        return spill_err_set(err, "--kv-block %d: a block holds a power of two of tokens, 1..65536", T);
    if (L < 1 || kv_dim < 1 || n_ctx < 1 || max_seqs < 1 || max_seqs > 4096)
        return spill_err_set(err, "KV cache: %d layers, %d values per token, %d positions, %d sequences is not a cache",
                             L, kv_dim, n_ctx, max_seqs);
    kv->mem = mem;
    kv->L = L;
    kv->kv_dim = kv_dim;
    kv->T = T;
    kv->n_ctx = n_ctx;
    kv->max_seqs = max_seqs;
    kv->blocks_per_seq = (n_ctx + T - 1) / T;
    kv->max_blocks = max_blocks ? max_blocks : kv->blocks_per_seq * max_seqs;
    kv->type = type;
    kv->row_bytes = (uint64_t)kv_dim * eb;
    kv->part_bytes = 2ull * (uint64_t)T * kv->row_bytes;
    size_t parts = (size_t)kv->max_blocks * (size_t)L;
    kv->ref = calloc((size_t)kv->max_blocks, sizeof *kv->ref);
    kv->part = calloc(parts, sizeof *kv->part);
    kv->tier = calloc(parts, 1);
    kv->stamp = calloc(parts, sizeof *kv->stamp);
    kv->hbm_cap = calloc((size_t)L, sizeof(int));
    kv->hbm_used = calloc((size_t)L, sizeof(int));
    /* freed host parts kept for reuse: up to SPILL_KV_SPARE_BYTES, never more than the cache's parts */
    uint64_t sc = SPILL_KV_SPARE_BYTES / kv->part_bytes;
    kv->spare_cap = sc > parts ? (int)parts : (int)sc;
    kv->spare = kv->spare_cap ? calloc((size_t)kv->spare_cap, sizeof *kv->spare) : NULL;
    kv->table = calloc((size_t)max_seqs, sizeof *kv->table);
    kv->len = malloc(sizeof(int) * (size_t)max_seqs);
    if (!kv->ref || !kv->part || !kv->tier || !kv->stamp || !kv->hbm_cap || !kv->hbm_used || !kv->table || !kv->len ||
        (kv->spare_cap && !kv->spare)) {
        spill_kv_free(kv);
        set_err_oom(err);
        return -1;
    }
    for (int s = 0; s < max_seqs; s++) {
        kv->len[s] = -1;
        if (!(kv->table[s] = malloc(sizeof(int) * (size_t)kv->blocks_per_seq))) {
            spill_kv_free(kv);
            set_err_oom(err);
            return -1;
        }
    }
    for (int l = 0; l < L; l++) {
        uint64_t cap = hbm_bytes ? hbm_bytes[l] / kv->part_bytes : 0;
        kv->hbm_cap[l] = cap > (uint64_t)kv->max_blocks ? kv->max_blocks : (int)cap;
    }
    return 0;
}

static void part_free(spill_kv *kv, size_t i) {
    if (!kv->part[i]) return;
    if (kv->tier[i] == SPILL_TIER_HOST && kv->n_spare < kv->spare_cap) {
        kv->spare[kv->n_spare++] = kv->part[i]; /* kept for the next host part (its contents are dead) */
    } else {
        spill_err err;
        /* the contents are dead: say so to the backend (it may drop the pages), then give it back */
        (void)spill_mem_discard(kv->mem, kv->part[i], kv->part_bytes, &err);
        spill_mem_put(kv->mem, kv->part[i], kv->part_bytes);
    }
    kv->st.bytes[kv->tier[i]] -= kv->part_bytes;
    if (kv->tier[i] == SPILL_TIER_HBM) kv->hbm_used[i % (size_t)kv->L]--;
    kv->part[i] = NULL;
}

/* a host part: a spare one, else a new one */
static void *host_part(spill_kv *kv, const char *what, spill_err *err) {
    if (kv->n_spare) return kv->spare[--kv->n_spare];
    spill_placement pl = {SPILL_TIER_HOST, -1, SPILL_PLACE_CPU_READS | SPILL_PLACE_GPU_READS};
    return spill_mem_alloc_uninit(kv->mem, kv->part_bytes, pl, what, err);
}

void spill_kv_free(spill_kv *kv) {
    if (kv->part)
        for (size_t i = 0; i < (size_t)kv->max_blocks * (size_t)kv->L; i++) part_free(kv, i);
    while (kv->n_spare) spill_mem_put(kv->mem, kv->spare[--kv->n_spare], kv->part_bytes);
    free(kv->spare);
    for (int s = 0; kv->table && s < kv->max_seqs; s++) free(kv->table[s]);
    free(kv->table);
    free(kv->len);
    free(kv->ref);
    free(kv->part);
    free(kv->tier);
    free(kv->stamp);
    free(kv->hbm_cap);
    free(kv->hbm_used);
    memset(kv, 0, sizeof *kv);
}

/* Move the oldest HBM part of layer l to host memory, making room for a newer one. */
static int demote_oldest(spill_kv *kv, int l, spill_err *err) {
    size_t best = SIZE_MAX;
    for (int b = 0; b < kv->max_blocks; b++) {
        size_t i = (size_t)b * (size_t)kv->L + (size_t)l;
        if (kv->part[i] && kv->tier[i] == SPILL_TIER_HBM && (best == SIZE_MAX || kv->stamp[i] < kv->stamp[best])) best = i;
    }
    if (best == SIZE_MAX) return 0;
    void *h = host_part(kv, "KV block (demoted to host memory)", err);
    if (!h) return -1;
    memcpy(h, kv->part[best], kv->part_bytes);
    spill_mem_put(kv->mem, kv->part[best], kv->part_bytes);
    kv->part[best] = h;
    kv->tier[best] = SPILL_TIER_HOST;
    kv->hbm_used[l]--;
    kv->st.bytes[SPILL_TIER_HBM] -= kv->part_bytes;
    kv->st.bytes[SPILL_TIER_HOST] += kv->part_bytes;
    kv->st.demoted++;
    return 0;
}

/* A free physical block with memory for every layer, placed newest-in-HBM. */
static int block_new(spill_kv *kv, int *out, spill_err *err) {
    int b = -1;
    for (int i = 0; i < kv->max_blocks && b < 0; i++)
        if (!kv->ref[i]) b = i;
    if (b < 0)
        return spill_err_set(err, "KV cache: all %d blocks of %d tokens are in use (%d positions x %d sequences); raise "
                                  "-c/--ctx-size or lower --n-parallel",
                             kv->max_blocks, kv->T, kv->n_ctx, kv->max_seqs);
    for (int l = 0; l < kv->L; l++) {
        size_t i = (size_t)b * (size_t)kv->L + (size_t)l;
        SPILL_ASSERT(!kv->part[i]);
        spill_tier t = SPILL_TIER_HOST;
        if (kv->hbm_cap[l] > 0) {
            if (kv->hbm_used[l] >= kv->hbm_cap[l] && demote_oldest(kv, l, err)) goto fail;
            t = SPILL_TIER_HBM;
        }
        spill_placement pl = {t, -1, SPILL_PLACE_CPU_READS | SPILL_PLACE_GPU_READS};
        char what[64];
        snprintf(what, sizeof what, "KV block %d, layer %d (%s)", b, l, spill_tier_name(t));
        /* written (kv_store) before attention reads a position of it: no zeroing, which on the GPU
           was a cudaMemset and a device synchronize per new block in the decode loop (issue 21) */
        if (t == SPILL_TIER_HOST) kv->part[i] = host_part(kv, what, err);
        else kv->part[i] = spill_mem_alloc_uninit(kv->mem, kv->part_bytes, pl, what, err);
        if (!kv->part[i]) goto fail;
        kv->tier[i] = (uint8_t)t;
        kv->stamp[i] = ++kv->clock;
        if (t == SPILL_TIER_HBM) kv->hbm_used[l]++;
        kv->st.bytes[t] += kv->part_bytes;
    }
    kv->ref[b] = 1;
    kv->st.allocated++;
    kv->st.blocks_in_use++;
    if (kv->st.blocks_in_use > kv->st.blocks_peak) kv->st.blocks_peak = kv->st.blocks_in_use;
    *out = b;
    return 0;
fail:
    for (int l = 0; l < kv->L; l++) part_free(kv, (size_t)b * (size_t)kv->L + (size_t)l);
    return -1;
}

static void block_unref(spill_kv *kv, int b) {
    SPILL_ASSERT(kv->ref[b] > 0);
    if (--kv->ref[b]) return;
    for (int l = 0; l < kv->L; l++) part_free(kv, (size_t)b * (size_t)kv->L + (size_t)l);
    kv->st.blocks_in_use--;
    kv->st.released++;
}

static int check_seq(const spill_kv *kv, int seq, int live, spill_err *err) {
    if (seq < 0 || seq >= kv->max_seqs)
        return spill_err_set(err, "KV cache: sequence %d; this cache holds 0..%d", seq, kv->max_seqs - 1);
    if (live && kv->len[seq] < 0) return spill_err_set(err, "KV cache: sequence %d is not open", seq);
    if (!live && kv->len[seq] >= 0) return spill_err_set(err, "KV cache: sequence %d is already open", seq);
    return 0;
}

int spill_kv_seq_open(spill_kv *kv, int seq, spill_err *err) {
    if (check_seq(kv, seq, 0, err)) return -1;
    kv->len[seq] = 0;
    for (int i = 0; i < kv->blocks_per_seq; i++) kv->table[seq][i] = -1;
    return 0;
}

int spill_kv_prepare(spill_kv *kv, int seq, int pos, int n, spill_err *err) {
    if (check_seq(kv, seq, 1, err)) return -1;
    if (pos < 0 || n < 1 || pos + n > kv->n_ctx)
        return spill_err_set(err, "KV cache: positions %d..%d; the context holds %d", pos, pos + n - 1, kv->n_ctx);
    for (int lb = pos / kv->T; lb <= (pos + n - 1) / kv->T; lb++) {
        int *slot = &kv->table[seq][lb];
        if (*slot < 0) {
            if (block_new(kv, slot, err)) return -1;
        } else if (kv->ref[*slot] > 1) {
            /* copy-on-write: this sequence is about to write into a block others still read */
            int nb;
            if (block_new(kv, &nb, err)) return -1;
            for (int l = 0; l < kv->L; l++)
                memcpy(kv->part[(size_t)nb * (size_t)kv->L + (size_t)l], kv->part[(size_t)*slot * (size_t)kv->L + (size_t)l],
                       kv->part_bytes);
            block_unref(kv, *slot);
            *slot = nb;
            kv->st.cow_copies++;
        }
    }
    if (pos + n > kv->len[seq]) kv->len[seq] = pos + n;
    return 0;
}

int spill_kv_fork(spill_kv *kv, int src, int dst, spill_err *err) {
    if (check_seq(kv, src, 1, err) || check_seq(kv, dst, 0, err)) return -1;
    kv->len[dst] = kv->len[src];
    for (int i = 0; i < kv->blocks_per_seq; i++) {
        int b = kv->table[src][i];
        kv->table[dst][i] = b;
        if (b >= 0) {
            kv->ref[b]++;
            kv->st.shared++;
        }
    }
    return 0;
}

int spill_kv_fork_prefix(spill_kv *kv, int src, int dst, int n, spill_err *err) {
    if (check_seq(kv, src, 1, err) || check_seq(kv, dst, 0, err)) return -1;
    if (n < 0 || n > kv->len[src])
        return spill_err_set(err, "KV cache: a prefix of %d positions of sequence %d, which holds %d", n, src, kv->len[src]);
    kv->len[dst] = n;
    int shared = (n + kv->T - 1) / kv->T;
    for (int i = 0; i < kv->blocks_per_seq; i++) {
        int b = i < shared ? kv->table[src][i] : -1;
        kv->table[dst][i] = b;
        if (b >= 0) {
            kv->ref[b]++;
            kv->st.shared++;
        }
    }
    return 0;
}

int spill_kv_truncate(spill_kv *kv, int seq, int n, spill_err *err) {
    if (check_seq(kv, seq, 1, err)) return -1;
    if (n < 0 || n > kv->len[seq])
        return spill_err_set(err, "KV cache: truncating sequence %d of %d positions to %d", seq, kv->len[seq], n);
    for (int i = (n + kv->T - 1) / kv->T; i < kv->blocks_per_seq; i++)
        if (kv->table[seq][i] >= 0) {
            block_unref(kv, kv->table[seq][i]);
            kv->table[seq][i] = -1;
        }
    kv->len[seq] = n;
    return 0;
}

int spill_kv_blocks_free(const spill_kv *kv) {
    int n = 0;
    for (int b = 0; b < kv->max_blocks; b++) n += !kv->ref[b];
    return n;
}

int spill_kv_blocks_needed(const spill_kv *kv, int seq, int pos, int n) {
    if (seq < 0 || seq >= kv->max_seqs || n < 1 || pos < 0) return 0;
    int need = 0, live = kv->len[seq] >= 0;
    for (int lb = pos / kv->T; lb <= (pos + n - 1) / kv->T && lb < kv->blocks_per_seq; lb++) {
        int b = live ? kv->table[seq][lb] : -1;
        need += b < 0 || kv->ref[b] > 1;
    }
    return need;
}

void spill_kv_release(spill_kv *kv, int seq) {
    if (seq < 0 || seq >= kv->max_seqs || kv->len[seq] < 0) return;
    for (int i = 0; i < kv->blocks_per_seq; i++)
        if (kv->table[seq][i] >= 0) {
            block_unref(kv, kv->table[seq][i]);
            kv->table[seq][i] = -1;
        }
    kv->len[seq] = -1;
}
