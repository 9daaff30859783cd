/* What planning needs to know about a model, from a GGUF header or a Hugging Face config.json,
 * without reading any weight; and the region list the planner works on. */
#ifndef SPILL_REGIONS_H
#define SPILL_REGIONS_H

#include "gguf.h"
#include "spill_policy.h"

typedef struct spill_shape {
    char arch[64];  /* "llama", "LlamaForCausalLM" ... */
    char dtype[16]; /* weights' type as read (GGUF: most common tensor type; config: torch_dtype) */
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, ctx_train;
    int tied;
    uint64_t *layer_bytes, *layer_params; /* (n_layers) */
    uint64_t embd_bytes, embd_params, output_bytes, output_params, norm_bytes;
    int kv_elem_bytes; /* bytes per cached K or V element */
} spill_shape;

/* A model's dimensions as the loader and the planner both take them, from either source. */
typedef struct spill_dims {
    int n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim;
    int vocab;     /* config.json's vocab_size; 0 from GGUF metadata (the embedding's rows say it) */
    int ctx;       /* training context */
    int rope_dims; /* dimensions of each head that RoPE rotates */
} spill_dims;

/* A GGUF's dimensions under its architecture's prefix (arch: general.architecture's value), read
 * and checked: block_count, embedding_length, attention.head_count(_kv), feed_forward_length,
 * context_length (2048 when absent, at most 2^24), rope.dimension_count (the head size when absent). */
int spill_gguf_dims_read(const spill_gguf *g, const char *arch, spill_dims *d, spill_err *err);
/* "arch.key" as a u32: 0 read, 1 absent (an error naming it when required), -1 error */
int spill_gguf_arch_u32(const spill_gguf *g, const char *arch, const char *key, int required, uint32_t *out,
                        spill_err *err);

/* A Hugging Face config.json, read once for both the loader and the planner. */
typedef struct spill_hf_config {
    char arch[64];   /* LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM (others are refused) */
    char dtype[16];  /* torch_dtype: bf16, f16 or f32 */
    int dtype_bytes;
    spill_dims d;
    double eps, rope_theta;
    int tied, qkv_bias, sliding_window; /* sliding_window 0 = none */
    int llama3;      /* rope_type llama3, with: */
    double rope_factor, rope_low, rope_high, rope_old_ctx;
} spill_hf_config;

/* dtype: override torch_dtype (bf16, f16, f32) or NULL */
int spill_hf_config_read(const char *path, const char *dtype, spill_hf_config *c, spill_err *err);

/* Sizes from the tensors of a GGUF file (exact), hyperparameters from its metadata. */
int spill_shape_from_gguf(const spill_gguf *g, spill_shape *s, spill_err *err);
/* Sizes computed from a config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) and
 * its torch_dtype (or `dtype` when not NULL: bf16, f16, f32). */
int spill_shape_from_config(const char *path, const char *dtype, spill_shape *s, spill_err *err);
/* the dimensions into a shape */
void spill_shape_set_dims(spill_shape *s, const spill_dims *d);
void spill_shape_free(spill_shape *s);
uint64_t spill_shape_weight_bytes(const spill_shape *s);
/* bytes of K and V for one token, all layers */
uint64_t spill_shape_kv_bytes_per_token(const spill_shape *s);

/* Regions, in this order: n_layers layer weights ("blk.N"), n_layers KV caches ("kv.N", for
 * ctx tokens x batch sequences), then "token_embd", "output" (0 bytes when tied), "output_norm". */
enum { SPILL_REGION_EXTRA = 3 };
int spill_shape_regions(const spill_shape *s, int ctx, int batch, spill_region **out, int *n, spill_err *err);
void spill_regions_free(spill_region *r);

#endif
