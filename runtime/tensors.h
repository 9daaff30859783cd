/* The tensors of a Llama-family model, written down once: for each, its GGUF name, its Hugging Face
 * name, its shape in terms of the hyperparameters and whether it may be absent. The loader binds by
 * this table, the placers copy by it, the planner counts by it, and the synthetic-model writer
 * writes by it; nothing else lists the per-layer tensors.
 *
 * spill_weights holds one set of them: the model's as bound (pointing into the mapped file), or a
 * device's as placed (pointing into the memory a plan put them in). */
#ifndef SPILL_TENSORS_H
#define SPILL_TENSORS_H

#include "hparams.h"
#include "spill_kernels.h"

/* A weight matrix of `rows` rows of `cols` values (GGUF ne[1] x ne[0]); vectors have rows = 1.
 * A plan may split a matrix between tiers: rows [0, split) are at `data` (its HBM part) and rows
 * [split, rows) at `data_hi` (its host part). Unsplit: split == rows. data NULL: absent. */
typedef struct spill_weight {
    const void *data;
    spill_dtype type;
    int64_t rows, cols;
    int64_t split;
    const void *data_hi;
} spill_weight;

static inline uint64_t spill_weight_row_bytes(const spill_weight *w) {
    return spill_dtype_row_bytes(w->type, (uint64_t)w->cols);
}
static inline uint64_t spill_weight_bytes(const spill_weight *w) {
    return w->data ? spill_weight_row_bytes(w) * (uint64_t)w->rows : 0;
}
static inline const void *spill_weight_row(const spill_weight *w, int64_t r) {
    return r < w->split ? (const uint8_t *)w->data + (uint64_t)r * spill_weight_row_bytes(w)
                        : (const uint8_t *)w->data_hi + (uint64_t)(r - w->split) * spill_weight_row_bytes(w);
}

/* A dimension of a tensor, in terms of the hyperparameters. */
typedef enum spill_dim { SPILL_DIM_ONE, SPILL_DIM_MODEL, SPILL_DIM_Q, SPILL_DIM_KV, SPILL_DIM_FFN, SPILL_DIM_VOCAB } spill_dim;
int64_t spill_dim_value(const spill_hparams *hp, spill_dim d);

typedef enum spill_presence {
    SPILL_REQUIRED,
    SPILL_QKV_BIAS, /* Qwen2: all three q/k/v biases or none */
    SPILL_UNLESS_TIED, /* the head: absent when it is the embedding */
} spill_presence;

typedef struct spill_tensor_def {
    const char *gguf; /* layer tensors: the name after "blk.N." */
    const char *hf;   /* layer tensors: the name after "model.layers.N." */
    spill_dim rows, cols; /* rows ONE: a vector (norms, biases), kept in F32 by every device */
    spill_presence presence;
} spill_tensor_def;

/* ---- the layer's tensors, in the order of the fields of spill_layer ---- */
enum {
    SPILL_LT_ATTN_NORM, SPILL_LT_WQ, SPILL_LT_WK, SPILL_LT_WV, SPILL_LT_WO, SPILL_LT_FFN_NORM, SPILL_LT_GATE,
    SPILL_LT_UP, SPILL_LT_DOWN, SPILL_LT_BQ, SPILL_LT_BK, SPILL_LT_BV, SPILL_LAYER_TENSORS
};
extern const spill_tensor_def spill_layer_defs[SPILL_LAYER_TENSORS];

typedef union spill_layer {
    struct {
        spill_weight attn_norm; /* (dim) */
        spill_weight wq;        /* (n_heads*head_dim, dim) */
        spill_weight wk;        /* (n_kv_heads*head_dim, dim) */
        spill_weight wv;        /* (n_kv_heads*head_dim, dim) */
        spill_weight wo;        /* (dim, n_heads*head_dim) */
        spill_weight ffn_norm;  /* (dim) */
        spill_weight w_gate;    /* (ffn_dim, dim) */
        spill_weight w_up;      /* (ffn_dim, dim) */
        spill_weight w_down;    /* (dim, ffn_dim) */
        spill_weight bq, bk, bv; /* (q_dim), (kv_dim), (kv_dim): Qwen2's biases; absent elsewhere */
    };
    spill_weight t[SPILL_LAYER_TENSORS];
} spill_layer;

/* ---- the tensors outside the layer stack ---- */
enum { SPILL_OT_EMBD, SPILL_OT_OUT_NORM, SPILL_OT_OUTPUT, SPILL_OUTER_TENSORS };
extern const spill_tensor_def spill_outer_defs[SPILL_OUTER_TENSORS];

/* One set of a model's weights. */
typedef struct spill_weights {
    union {
        struct {
            spill_weight tok_embd; /* (vocab, dim), read one row per token */
            spill_weight out_norm; /* (dim) */
            spill_weight output;   /* (vocab, dim); a copy of tok_embd when tied */
        };
        spill_weight outer[SPILL_OUTER_TENSORS];
    };
    spill_layer *layers; /* (n_layers) */
} spill_weights;

/* "blk.3.attn_q.weight" / "model.layers.3.self_attn.q_proj.weight" (layer < 0: an outer tensor) */
void spill_tensor_name(const spill_tensor_def *d, int layer, int hf, char *out, size_t len);

#endif
