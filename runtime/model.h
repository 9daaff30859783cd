/* A Llama-family model: hyperparameters, weights placed by a plan, tokenizer. */
#ifndef SPILL_MODEL_H
#define SPILL_MODEL_H

#include "gguf.h"
#include "safetensors.h"
#include "spill_alloc.h"
#include "spill_kernels.h"
#include "regions.h"
#include "spill_policy.h"
#include "tokenizer.h"

/* A weight matrix of `rows` rows of `cols` values (GGUF ne[1] x ne[0]); vectors have rows = 1.
 * A plan may split a matrix between tiers: rows [0, split) are at `data` (its HBM part) and rows
 * [split, rows) at `data_hi` (its host part). Unsplit: split == rows. */
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
static inline const void *spill_weight_row(const spill_weight *w, int64_t r) {
    return r < w->split ? (const uint8_t *)w->data + (uint64_t)r * spill_weight_row_bytes(w)
                        : (const uint8_t *)w->data_hi + (uint64_t)(r - w->split) * spill_weight_row_bytes(w);
}

/* The GPU's copy of a weight: F32 and BF16 as they are, everything else expanded to F16 (what
 * cuBLAS multiplies); vectors (rows == 1) in F32. Each tensor starts on a 256-byte boundary. */
enum { SPILL_GPU_ALIGN = 256 };
static inline spill_dtype spill_gpu_weight_type(const spill_weight *w) {
    if (w->rows == 1) return SPILL_DT_F32;
    return w->type == SPILL_DT_F32 || w->type == SPILL_DT_BF16 ? w->type : SPILL_DT_F16;
}
static inline uint64_t spill_gpu_weight_bytes(const spill_weight *w) {
    if (!w->data) return 0;
    uint64_t b = spill_dtype_row_bytes(spill_gpu_weight_type(w), (uint64_t)w->cols) * (uint64_t)w->rows;
    return (b + SPILL_GPU_ALIGN - 1) / SPILL_GPU_ALIGN * SPILL_GPU_ALIGN;
}

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
    spill_weight bq, bk, bv; /* (q_dim), (kv_dim), (kv_dim) F32 biases (Qwen2); data NULL when absent */
} spill_layer;

typedef struct spill_hparams {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, ctx_train, rope_dims;
    float eps, rope_base;
    int rope_adjacent; /* 1: pairs (2i, 2i+1) as GGUF stores Llama; 0: rotate-half (HF, and GGUF Qwen2) */
    int sliding_window; /* Mistral: attention window in tokens, 0 = none */
} spill_hparams;

/* HBM the GPU's work buffers take beside the plan's regions (activations, attention scores, logits,
 * the KV block table): kept out of the budget the GPU's plan is made for. */
static inline uint64_t spill_gpu_work_bytes(const spill_hparams *hp, int n_ctx, int max_batch) {
    uint64_t B = (uint64_t)(max_batch > 0 ? max_batch : 1), q_dim = (uint64_t)hp->n_heads * (uint64_t)hp->head_dim;
    uint64_t kv_dim = (uint64_t)hp->n_kv_heads * (uint64_t)hp->head_dim, dim = (uint64_t)hp->dim;
    uint64_t wide = q_dim > dim ? q_dim : dim, widest = wide > (uint64_t)hp->ffn_dim ? wide : (uint64_t)hp->ffn_dim;
    uint64_t f = B * (dim * 2 + wide + q_dim + 2 * kv_dim + 2 * (uint64_t)hp->ffn_dim) + (uint64_t)hp->vocab +
                 B * (uint64_t)hp->n_heads * (uint64_t)n_ctx;
    /* + 16-bit activations, token ids, the block table (blocks of 16 tokens at the least), RoPE
       frequencies, and one alignment granule per buffer */
    return 4 * f + 2 * B * widest + 4 * B + 8 * (uint64_t)hp->n_layers * ((uint64_t)n_ctx / 16 + 1) +
           4 * (uint64_t)hp->rope_dims + 16 * SPILL_ALLOC_ALIGN;
}

typedef struct spill_model_params {
    const char *policy;  /* NULL = host */
    int use_mmap;        /* read weights in place from the file where the plan puts them in host memory */
    int ctx;             /* context the KV cache is planned for; 0 = min(4096, the model's) */
    const spill_profile *profile; /* NULL = the built-in cpu profile */
    uint64_t hbm_budget; /* bytes of HBM the plan may use */
    int for_gpu;         /* plan for the GPU's copies (spill_gpu_weight_bytes, biases included) and
                            place nothing: the weights stay where they were bound (the mapped file)
                            and runtime/forward_cuda.c carries the plan out with its own copies */
    int gpu_batch;       /* for_gpu: tokens per forward call, for spill_gpu_work_bytes (0 = 1) */
} spill_model_params;

typedef struct spill_owned { void *ptr; size_t size; spill_tier tier; } spill_owned;

typedef struct spill_model {
    spill_hparams hp;
    spill_weight tok_embd;  /* (vocab, dim) */
    spill_weight out_norm;  /* (dim) F32 */
    spill_weight output;    /* (vocab, dim); the embedding when tied */
    int tied;
    spill_layer *layers;    /* (n_layers) */
    spill_gguf gguf;        /* a GGUF model ... */
    spill_safetensors st;   /* ... or a Hugging Face directory's safetensors */
    int hf;
    char *path;
    spill_tokenizer tok;
    char *chat_template_buf; /* HF: tokenizer_config.json's template (chat_template points here) */
    float *rope_freq;       /* (rope_dims/2) inverse frequencies when scaled (llama3), else NULL */
    spill_str chat_template; /* inside the file; len 0 if none */
    spill_mem *mem;
    int n_ctx;              /* the context the plan (and the KV cache) is for */
    spill_region *regions;  /* (n_regions) as planned: see regions.h for the order */
    int n_regions;
    spill_plan plan;        /* the decode plan, carried out for the whole run */
    uint64_t *region_hbm;   /* (n_regions) bytes of each region actually placed in HBM */
    spill_owned *owned;     /* copies made through alloc/ */
    int n_owned;
    uint64_t mapped_bytes;  /* weights read in place from the file (registered with alloc/) */
    uint64_t weight_bytes[SPILL_TIER_COUNT];
    int for_gpu;            /* see spill_model_params */
} spill_model;

int spill_model_load(spill_model *m, const char *path, const spill_model_params *p, spill_mem *mem, spill_err *err);
void spill_model_free(spill_model *m);

#endif
