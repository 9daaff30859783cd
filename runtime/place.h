/* Carrying a plan out on one device: where the weights go (spill_place) and what moves at each layer
 * boundary while the forward pass runs (spill_exec). Written once for every device; what differs per
 * device is its placer: the type it multiplies each weight in, how it copies into placed memory,
 * what it can read where it lies, the HBM its work buffers take, and how its ring's copies travel
 * (the CPU: a prefetch thread; CUDA: a copy queue ordered by events).
 *
 * spill_place, region by region as the plan says:
 *   - a region in HBM: every tensor copied into an HBM block;
 *   - a region split by `pin`: the leading rows of every matrix in HBM, the other rows in host memory,
 *     multiplied as two matmuls into the two parts of the output;
 *   - a region in host memory: read where it is bound (the mapped file) when the plan says in place
 *     and the device can, else copied into a host block;
 *   - a streamed region: its home in host memory (in place or copied), and a ring of HBM slots.
 * One block per (tier, advice), so that the arena rounds each up to 2 MiB once and every range gets
 * the advice its regions were planned with.
 *
 * spill_exec_begin(x, l), before layer l runs: the plan's evictions, the fetch of layer l if it is
 * streamed and not there yet, the plan's prefetches (layer l+k into a free slot), then the wait for
 * layer l's copy; it returns the layer as the forward pass reads it. spill_exec_end(x, l) after it:
 * the slot may be overwritten once the computation is done with it. */
#ifndef SPILL_PLACE_H
#define SPILL_PLACE_H

#include "disk.h"
#include "model.h"
#include "spill_alloc.h"

/* One copy of the ring's transport: a tensor from its home into a slot. */
typedef struct spill_copy {
    void *dst;
    const void *src;
    size_t n;
} spill_copy;

typedef struct spill_placer_iface {
    const char *device; /* "cpu", "cuda": for messages */
    uint64_t align;     /* each placed tensor starts on this boundary */
    int split_lookups;  /* a table read one row per token (the embedding) may be split between tiers */
    int drafts_in_place; /* a draft step (layers skipped: speculative decoding) reads streamed layers
                            where they live rather than copying them through the ring */
    /* the type the device multiplies a weight in; vectors are F32 on every device */
    spill_dtype (*held_type)(const spill_weight *w);
    /* HBM the device's work buffers take beside the plan's regions, from the table it allocates them
       by: activations, scores, logits, the KV block table (0: they live in host memory); n_seqs: the
       sequences the KV cache holds, of which a step may run up to `batch` */
    uint64_t (*work_bytes)(const spill_hparams *hp, int n_ctx, int batch, int n_seqs, int kv_block);
    /* may the device read this bound tensor where it lies, as it is? streamed: as the source of the
       ring's copies rather than as a matmul's operand */
    int (*in_place)(void *ctx, const spill_weight *w, int streamed);
    /* rows [r0, r1) of src, converted to type t, into placed memory at dst */
    int (*put_rows)(void *ctx, const spill_weight *src, spill_dtype t, int64_t r0, int64_t r1, void *dst,
                    spill_err *err);
    /* the ring: start the copies into slot `slot` once its last reader is done; make the computation
       wait for them; tell that the computation is done reading the slot */
    int (*fetch)(void *ctx, int slot, const spill_copy *copies, int n, spill_err *err);
    int (*wait)(void *ctx, int slot, spill_err *err);
    int (*done)(void *ctx, int slot, spill_err *err);
    /* the disk tier's slots, for a device whose computation runs behind the host (NULL: the CPU, where
       a layer is done when spill_exec_end is called): mark that the computation queued so far is what
       reads disk slot `slot`; wait on the host until it is done, before reads overwrite the slot */
    int (*disk_done)(void *ctx, int slot, spill_err *err);
    int (*disk_reuse)(void *ctx, int slot, spill_err *err);
    /* the disk slots' memory (NULL: the engine's allocator, in host memory) */
    int (*disk_alloc)(void *ctx, size_t bytes, void **out, spill_err *err);
    void (*disk_free)(void *ctx, void *p, size_t bytes);
} spill_placer_iface;

typedef struct spill_placer {
    const spill_placer_iface *iface;
    void *ctx;
} spill_placer;

/* Bytes a weight takes as the device holds it (its type there, rounded up to the alignment): what
 * the planner counts. ctx is the placer's iface. */
uint64_t spill_placer_bytes(const void *iface, const spill_weight *w);

/* ---- the weights as placed ---- */

typedef struct spill_placed_block {
    spill_placement pl;
    uint64_t used; /* while placing */
    uint64_t size; /* allocated */
    uint8_t *base;
} spill_placed_block;

enum { SPILL_PLACED_BLOCKS = 8 };

typedef struct spill_placed {
    spill_weights w;                       /* as the device reads them */
    uint64_t (*region)[SPILL_TIER_COUNT];  /* (n_regions) bytes of each region held in each tier */
    uint64_t bytes[SPILL_TIER_COUNT];      /* weights per tier; host includes the mapped bytes */
    uint64_t mapped;                       /* read in place from the model file (registered with alloc/) */
    spill_mem *mem;
    spill_placed_block block[SPILL_PLACED_BLOCKS];
    int n_blocks;
} spill_placed;

int spill_place(const spill_placer *p, const spill_model *m, const spill_region *regions, const spill_plan *plan,
                spill_mem *mem, spill_placed *out, spill_err *err);
/* A zeroed one is freed as a no-op. */
void spill_placed_free(spill_placed *pl);

/* ---- the plan carried out step by step ---- */

typedef struct spill_exec_stats {
    double wait_s;                   /* time the computation waited for a copy (host-side waits only) */
    uint64_t read[SPILL_TIER_COUNT]; /* weight bytes read from each tier */
    uint64_t prefetched;             /* bytes copied into the ring */
    uint64_t layers_run;
} spill_exec_stats;

typedef struct spill_exec {
    spill_placer placer;
    const spill_hparams *hp;
    const spill_plan *plan;
    const spill_placed *placed;
    spill_mem *mem;
    int n_slots, ahead;
    uint64_t slot_bytes;
    uint8_t *ring;     /* n_slots x slot_bytes in HBM, one allocation */
    int *slot_layer;   /* (n_slots) the layer a slot holds or is receiving, -1 free */
    int *slot_age;     /* (n_slots) when it was last used, to choose a slot when none is free */
    int *slot_of;      /* (n_layers) the slot of a streamed layer, -1 none */
    spill_layer *view; /* (n_slots) each slot's layer, its tensors in the slot */
    int clock, running;
    const uint8_t *skip; /* (n_layers) the layers this step skips, or NULL */
    spill_disk *disk;    /* the plan's layers on disk, or NULL */
    spill_exec_stats st;
} spill_exec;

/* The ring the plan asks for, in HBM, and the fill: the first `ahead` streamed layers. */
int spill_exec_init(spill_exec *x, spill_placer placer, const spill_hparams *hp, const spill_plan *plan,
                    const spill_placed *placed, spill_mem *mem, spill_err *err);
/* The disk tier, when the plan has layers on disk: their reads start here (the first `disk_ahead`),
 * and spill_exec_begin of any layer keeps the next ones coming. */
int spill_exec_open_disk(spill_exec *x, const spill_model *m, spill_disk_mode mode, spill_err *err);
/* A zeroed one is freed as a no-op. The device's queues must be idle. */
void spill_exec_free(spill_exec *x);
/* Before layer l: returns the layer as the forward pass reads it, or NULL with err set. */
const spill_layer *spill_exec_begin(spill_exec *x, int l, spill_err *err);
/* The layers the next step skips (NULL: none), set before its first spill_exec_begin. While layers
 * are skipped the plan's ring actions (made for every layer in order) give way to: keep in the ring
 * the running layer and the next `ahead` streamed layers that will run, in order, wrapping to the next
 * step's first ones; let the others go. A skipped layer is never fetched. */
void spill_exec_skip(spill_exec *x, const uint8_t *skip);
/* After layer l. */
int spill_exec_end(spill_exec *x, int l, spill_err *err);
/* Reads outside the layer stack: the embedding rows of one step, and the head and final norm. */
void spill_exec_embd(spill_exec *x, const int *tokens, int n);
/* share: the part of the head's rows the step multiplied (1: all; a draft's reduced vocabulary less) */
void spill_exec_head(spill_exec *x, double share);

#endif
