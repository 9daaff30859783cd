/* A Llama-family model: hyperparameters, weights placed by a plan, tokenizer. */
#ifndef SPILL_MODEL_H
#define SPILL_MODEL_H

#include "gguf.h"
#include "spill_alloc.h"
#include "spill_kernels.h"
#include "spill_policy.h"
#include "tokenizer.h"

/* A weight matrix of `rows` rows of `cols` values (GGUF ne[1] x ne[0]); vectors have rows = 1. */
typedef struct spill_weight {
    const void *data;
    spill_dtype type;
    int64_t rows, cols;
} spill_weight;

typedef struct spill_layer {
    spill_weight attn_norm; /* (dim) F32 */
    spill_weight wq;        /* (n_heads*head_dim, dim) */
    spill_weight wk;        /* (n_kv_heads*head_dim, dim) */
    spill_weight wv;        /* (n_kv_heads*head_dim, dim) */
    spill_weight wo;        /* (dim, n_heads*head_dim) */
    spill_weight ffn_norm;  /* (dim) F32 */
    spill_weight w_gate;    /* (ffn_dim, dim) */
    spill_weight w_up;      /* (ffn_dim, dim) */
    spill_weight w_down;    /* (dim, ffn_dim) */
} spill_layer;

typedef struct spill_hparams {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, ctx_train, rope_dims;
    float eps, rope_base;
    int rope_adjacent; /* 1: pairs (2i, 2i+1) as GGUF stores Llama; 0: rotate-half (HF) */
} spill_hparams;

typedef struct spill_model_params {
    const char *policy;  /* NULL = host */
    int use_mmap;        /* read weights in place from the file where the plan puts them in host memory */
} spill_model_params;

typedef struct spill_owned { void *ptr; size_t size; spill_tier tier; } spill_owned;

typedef struct spill_model {
    spill_hparams hp;
    spill_weight tok_embd;  /* (vocab, dim) */
    spill_weight out_norm;  /* (dim) F32 */
    spill_weight output;    /* (vocab, dim); the embedding when tied */
    spill_layer *layers;    /* (n_layers) */
    spill_gguf gguf;
    spill_tokenizer tok;
    spill_str chat_template; /* inside the file; len 0 if none */
    spill_mem *mem;
    spill_plan plan;
    spill_owned *owned;     /* copies made through alloc/ */
    int n_owned;
    uint64_t mapped_bytes;  /* weights read in place from the file (registered with alloc/) */
    uint64_t weight_bytes[SPILL_TIER_COUNT];
} spill_model;

int spill_model_load(spill_model *m, const char *path, const spill_model_params *p, spill_mem *mem, spill_err *err);
void spill_model_free(spill_model *m);

#endif
