/* The forward pass on a CUDA GPU: the same steps as runtime/forward.c, with the operations of
 * kernels/cuda and cuBLAS for every weight matmul, over memory placed by the plan through alloc/
 * (use the cuda-managed or cuda-device backend). At setup the weights are copied into placed memory
 * in a type cuBLAS multiplies: F32 and BF16 stay as they are, everything else becomes F16; norms and
 * biases become F32. The KV cache is the paged one of runtime/kv.c, its blocks in placed memory.
 *
 * What it does not do yet: the stream policy's ring (streamed layers are read in place from host
 * memory), rows split between tiers (a split region is read from its host home), a second stream for
 * prefetches, CUDA graphs. It has never run on a GPU (docs/gpu.md). */
#ifndef SPILL_FORWARD_CUDA_H
#define SPILL_FORWARD_CUDA_H

#include "kv.h"
#include "model.h"

typedef struct spill_cu_layer {
    spill_weight attn_norm, ffn_norm, bq, bk, bv; /* F32 */
    spill_weight wq, wk, wv, wo, w_gate, w_up, w_down; /* F32, F16 or BF16 */
} spill_cu_layer;

typedef struct spill_cu_state {
    const spill_model *m;
    spill_mem *mem;
    int n_ctx, max_batch;
    spill_cu_layer *layers;
    spill_weight embd, out_norm, output;
    float *rope_freq; /* device copy of m->rope_freq, or NULL */
    spill_owned *owned;
    int n_owned;
    spill_kv kv;
    /* device work buffers */
    float *x, *xb, *xb2, *q, *k, *v, *hb, *hb2, *logits, *scores;
    void *scratch16;
    int *ids;
    const float **blocks_host; /* (blocks per sequence) */
    const float **blocks_dev;
    float *logits_host; /* (vocab) the last token's, after spill_cu_forward */
    struct spill_cu_blas *blas;
    void *stream;
    uint64_t weight_bytes[SPILL_TIER_COUNT];
} spill_cu_state;

/* Fails with a message that suggests --device cpu when there is no usable GPU. */
int spill_cu_state_init(spill_cu_state *s, const spill_model *m, spill_mem *mem, int n_ctx, int max_batch, spill_err *err);
void spill_cu_state_free(spill_cu_state *s);
/* tokens[0..n) at positions pos..pos+n-1; leaves the last token's logits in s->logits_host */
int spill_cu_forward(spill_cu_state *s, const int *tokens, int n, int pos, spill_err *err);

#endif
