/* The paged KV cache, PagedAttention-style.
 *
 * Positions are grouped in blocks of T tokens. A sequence has a block table: logical block i (its
 * positions [iT, (i+1)T)) -> a physical block id. A physical block holds, for every layer
 * separately, T tokens of keys then T tokens of values; each (block, layer) part is allocated from
 * alloc/ on demand, in the tier the policy gives it, so that one layer's KV can sit partly in HBM
 * and partly in host memory. Blocks are reference-counted: forking a sequence shares all of its
 * blocks (a common prompt prefix is stored once), and the first write into a shared block copies
 * it (copy-on-write). When a sequence ends its blocks are released, discarded and freed.
 *
 * Elements are F32 (the default), F16 or BF16 (spill_kv_init's type): a 16-bit cache holds twice the
 * context in the same bytes. Writers round each float to the type (spill_kv_row_put: nearest even),
 * readers widen to F32 (spill_kv_row_get a row, spill_widen_rows many) and sum in F32.
 *
 * Placement: each layer may keep hbm_blocks[l] blocks in HBM (the plan's HBM bytes for that
 * layer's KV region over the block size). New blocks go to HBM; when a layer's allowance is used
 * up, its oldest HBM block is demoted to host memory (copied), so HBM holds the most recent window
 * and the rest lives in host memory. Block size: docs/policies.md.
 *
 * A new block is not zeroed (on a GPU that would be a cudaMemset and a device synchronize per block
 * in the decode loop): positions not yet written hold garbage, possibly NaN. Attention must not
 * read them, not even to multiply them by a zero weight (0 x NaN is NaN). */
#ifndef SPILL_KV_H
#define SPILL_KV_H

#include "spill_alloc.h"
#include "spill_kernels.h"

#define SPILL_KV_BLOCK_DEFAULT 64
/* host memory of freed blocks the cache keeps for its next ones, at most (the rest goes back to the
   allocator at once; all of it at spill_kv_free) */
#define SPILL_KV_SPARE_BYTES ((uint64_t)64 << 20)

typedef struct spill_kv_stats {
    uint64_t blocks_in_use, blocks_peak; /* physical blocks referenced by some sequence */
    uint64_t allocated;                  /* block allocations ever made */
    uint64_t shared;                     /* block references created by forks (blocks stored once, used twice) */
    uint64_t cow_copies;                 /* shared blocks copied on first write */
    uint64_t demoted;                    /* (block, layer) parts moved from HBM to host memory */
    uint64_t released;                   /* blocks released when sequences ended */
    uint64_t bytes[SPILL_TIER_COUNT];    /* KV bytes held now, per tier */
} spill_kv_stats;

typedef struct spill_kv {
    spill_mem *mem;
    int L, kv_dim, T, n_ctx, max_seqs, max_blocks, blocks_per_seq;
    spill_dtype type;    /* of every K and V element: SPILL_DT_F32, _F16 or _BF16 */
    uint64_t row_bytes;  /* one position's K (or V) of one layer: kv_dim elements */
    uint64_t part_bytes; /* one (block, layer): K and V for T tokens */
    int *ref;            /* (max_blocks) references; 0 = free */
    void **part;         /* (max_blocks * L) -> K[T][kv_dim] then V[T][kv_dim], of `type` */
    uint8_t *tier;       /* (max_blocks * L) */
    uint64_t *stamp;     /* (max_blocks * L) allocation order, to find the oldest HBM part */
    uint64_t clock;
    int *hbm_cap, *hbm_used; /* (L) */
    void **spare;        /* (spare_cap) host parts freed and kept for the next blocks: a fresh 2 MiB chunk
                            costs a page fault per 4 KiB on first write (3% of a 16-sequence step) */
    int n_spare, spare_cap;
    int **table;         /* (max_seqs) -> (blocks_per_seq) physical ids, -1 = none */
    int *len;            /* (max_seqs) positions written; -1 = sequence not live */
    spill_kv_stats st;
} spill_kv;

/* hbm_bytes: (L) HBM allowance per layer, or NULL for none. block_tokens 0 = the default.
 * max_blocks 0 = enough for max_seqs full sequences without sharing. type: F32, F16 or BF16. */
int spill_kv_init(spill_kv *kv, spill_mem *mem, spill_dtype type, int n_layers, int kv_dim, int n_ctx, int max_seqs,
                  int block_tokens, int max_blocks, const uint64_t *hbm_bytes, spill_err *err);
void spill_kv_free(spill_kv *kv);

/* Start a sequence (empty). */
int spill_kv_seq_open(spill_kv *kv, int seq, spill_err *err);
/* Make positions [pos, pos+n) of seq writable: blocks allocated, shared ones copied. */
int spill_kv_prepare(spill_kv *kv, int seq, int pos, int n, spill_err *err);
/* dst (not live) becomes a copy of src that shares all of src's blocks. */
int spill_kv_fork(spill_kv *kv, int src, int dst, spill_err *err);
/* dst (not live) becomes a sequence of src's first n positions (n <= src's length), sharing the blocks
 * that hold them; a block only partly inside is shared too and copied on dst's first write into it. */
int spill_kv_fork_prefix(spill_kv *kv, int src, int dst, int n, spill_err *err);
/* Drop positions [n, len) of seq: the blocks wholly past n are released. */
int spill_kv_truncate(spill_kv *kv, int seq, int n, spill_err *err);
/* End a sequence: release, discard and free its blocks. */
void spill_kv_release(spill_kv *kv, int seq);
/* Physical blocks no sequence holds, and how many preparing [pos, pos+n) of seq would take (new
 * blocks and copies on write). */
int spill_kv_blocks_free(const spill_kv *kv);
int spill_kv_blocks_needed(const spill_kv *kv, int seq, int pos, int n);
/* positions written to seq, -1 when it is not open */
static inline int spill_kv_len(const spill_kv *kv, int seq) { return seq >= 0 && seq < kv->max_seqs ? kv->len[seq] : -1; }

/* Keys of (seq, layer) at position pos: kv_dim elements of kv->type (row_bytes); the values are
 * T * row_bytes further. */
static inline uint8_t *spill_kv_k(const spill_kv *kv, int seq, int layer, int pos) {
    int b = kv->table[seq][pos / kv->T];
    return (uint8_t *)kv->part[(size_t)b * (size_t)kv->L + (size_t)layer] + (size_t)(pos % kv->T) * kv->row_bytes;
}
static inline uint8_t *spill_kv_v(const spill_kv *kv, int seq, int layer, int pos) {
    return spill_kv_k(kv, seq, layer, pos) + (size_t)kv->T * kv->row_bytes;
}

#endif
