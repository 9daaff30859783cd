/* A model's hyperparameters: the one struct that says its dimensions, read from a GGUF's metadata
 * (formats/gguf.h: spill_gguf_hparams_read) or a Hugging Face config.json (formats/hf_config.h),
 * with the same checks either way; the loader, the planner and the forward passes all take it. */
#ifndef SPILL_HPARAMS_H
#define SPILL_HPARAMS_H

#include "spill_common.h"

typedef struct spill_hparams {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim;
    int vocab;          /* the embedding's rows; from GGUF metadata 0 until the tensor is seen */
    int ctx_train;      /* the context the model was trained for */
    int rope_dims;      /* dimensions of each head that RoPE rotates */
    float eps;          /* RMSNorm epsilon */
    float rope_base;    /* RoPE frequency base (theta) */
    int rope_adjacent;  /* 1: pairs (2i, 2i+1) as GGUF stores Llama; 0: rotate-half (HF, and GGUF Qwen2) */
    int sliding_window; /* Mistral: attention window in tokens, 0 = none */
    int qkv_bias;       /* Qwen2: q, k and v projections have biases */
    int tied;           /* the output head is the token embedding */
} spill_hparams;

static inline int spill_hparams_q_dim(const spill_hparams *hp) { return hp->n_heads * hp->head_dim; }
static inline int spill_hparams_kv_dim(const spill_hparams *hp) { return hp->n_kv_heads * hp->head_dim; }

#endif
