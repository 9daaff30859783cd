/* The forward pass on a CUDA GPU: the same steps as runtime/forward.c, with the operations of
 * kernels/cuda and cuBLAS for every weight matmul, over memory placed by the plan through alloc/
 * (the cuda-managed or system backend).
 *
 * The model is loaded with spill_model_params.for_gpu: the plan is made for the GPU's copies (F32
 * and BF16 as they are, everything else expanded to F16, vectors F32: spill_gpu_weight_bytes) and
 * the loader copies nothing. spill_cu_state_init then carries the plan out, one contiguous block per
 * region:
 *   - a region in HBM: its block in HBM;
 *   - a region split by `pin`: the leading rows of every matrix in HBM, the other rows in host memory
 *     the GPU reads in place, multiplied as two GEMMs into the two parts of the output;
 *   - a region in host memory: its block in host memory the GPU reads in place (with the plan's
 *     advice: none for `fault`, so the driver migrates on faults);
 *   - a streamed region (`stream`, `auto`): its home block in host memory and a ring of HBM slots.
 *     A second CUDA stream copies layer l+k into a free slot while layer l runs; an event per slot
 *     says "copied" (the compute stream waits on it) and another "used" (the copy stream waits on it
 *     before overwriting the slot).
 * The KV cache is the paged one of runtime/kv.c, its blocks where the plan puts each layer's cache;
 * the block table goes to the GPU once per forward call, for all layers, and a step's K and V go
 * into their blocks in one launch.
 *
 * Not done: CUDA graphs for the decode step (nothing could be measured without a GPU, and the issue
 * asks for them only where they help); sampling runs on the host from the
 * copied logits (the argmax and top-k kernels exist).
 * It has never run on a GPU (docs/gpu.md). */
#ifndef SPILL_FORWARD_CUDA_H
#define SPILL_FORWARD_CUDA_H

#include "kv.h"
#include "model.h"

typedef struct spill_cu_layer {
    spill_weight attn_norm, ffn_norm, bq, bk, bv; /* F32 */
    spill_weight wq, wk, wv, wo, w_gate, w_up, w_down; /* F32, F16 or BF16; split: data (HBM rows), data_hi */
} spill_cu_layer;

typedef struct spill_cu_block {
    void *ptr;
    uint64_t bytes;
} spill_cu_block;

typedef struct spill_cu_state {
    const spill_model *m;
    spill_mem *mem;
    int n_ctx, max_batch;
    int seq; /* the sequence spill_cu_forward extends */
    int read_mapped;
    spill_cu_layer *layers;    /* (n_layers) as placed; a streamed layer's point into its home */
    spill_cu_block *home;      /* (n_layers) a streamed layer's home block, else {NULL, 0} */
    spill_weight embd, out_norm, output;
    float *rope_freq; /* device copy of m->rope_freq, or NULL */
    spill_owned *owned;
    int n_owned;
    spill_kv kv;
    /* the ring: n_slots slots of slot_bytes in HBM */
    int n_slots, ahead;
    uint64_t slot_bytes;
    uint8_t *ring;
    int *slot_layer;  /* (n_slots) the layer a slot holds or is receiving, -1 free */
    int *slot_of;     /* (n_layers) the slot of a streamed layer, -1 none */
    int *slot_age;    /* (n_slots) when it was last used, to choose a slot when none is free */
    int clock;
    int running;      /* the streamed layer whose step is running, -1 none */
    void **ready, **used; /* (n_slots) cudaEvent_t */
    spill_cu_layer view;  /* the running streamed layer, rebased onto its slot */
    /* device work buffers */
    float *x, *xb, *xb2, *q, *k, *v, *hb, *hb2, *logits, *scores;
    void *scratch16;
    int *ids;
    const float **blocks_host; /* (n_layers * blocks per sequence), pinned */
    const float **blocks_dev;
    float *logits_host; /* (vocab) the last token's, after spill_cu_forward */
    struct spill_cu_blas *blas;
    void *stream, *pstream; /* compute, prefetch (cudaStream_t) */
    uint64_t weight_bytes[SPILL_TIER_COUNT]; /* HOST includes mapped_bytes */
    uint64_t mapped_bytes; /* weights read in place from the mapped file (read_mapped) */
    uint64_t prefetched; /* bytes copied into the ring */
    uint64_t *region_bytes; /* (n_regions x 2) each region's bytes in HBM and in host memory */
    uint64_t read[SPILL_TIER_COUNT]; /* weight bytes the forward calls read from each tier (a streamed
                                        layer: from its slot, so HBM) */
} spill_cu_state;

/* Fails with a message that suggests --device cpu when there is no usable GPU, and a smaller
 * --hbm-budget when HBM runs out. */
int spill_cu_state_init(spill_cu_state *s, const spill_model *m, spill_mem *mem, int n_ctx, int max_batch, spill_err *err);
typedef struct spill_cu_params {
    int n_ctx, max_batch;
    int n_seqs;      /* sequences the KV cache holds (--n-parallel: spill_kv_fork shares the prompt's
                        blocks, copy-on-write by the CPU on memory both reach); 0 = 1. spill_cu_forward
                        extends sequence s->seq */
    int kv_block;    /* tokens per KV block; 0 = the default */
    int read_mapped; /* the GPU reads system memory through the CPU's page tables (ATS, Grace): a region
                        the plan leaves in host memory, in place, whose type the GPU multiplies as it
                        is (F32/BF16, or F16 weights) is read from the mapped file without a copy */
} spill_cu_params;
int spill_cu_state_init_params(spill_cu_state *s, const spill_model *m, spill_mem *mem, const spill_cu_params *p,
                               spill_err *err);
void spill_cu_state_free(spill_cu_state *s);
/* tokens[0..n) at positions pos..pos+n-1; leaves the last token's logits in s->logits_host */
int spill_cu_forward(spill_cu_state *s, const int *tokens, int n, int pos, spill_err *err);

#endif
