/* The regions a plan places, and what planning needs to know about a model to list them — from a
 * GGUF header, a Hugging Face config.json, or a loaded model's tensors — without reading a weight.
 *
 * Regions, in this order (ask the helpers below for a position; never compute one):
 *   layer weights "blk.N" (n_layers), layer KV caches "kv.N" (n_layers), "token_embd", "output"
 *   (0 bytes when tied), "output_norm". */
#ifndef SPILL_REGIONS_H
#define SPILL_REGIONS_H

#include "gguf.h"
#include "spill_policy.h"
#include "tensors.h"

static inline int spill_region_count(int n_layers) { return 2 * n_layers + 3; }
static inline int spill_region_layer(int n_layers, int layer) { return (void)n_layers, layer; }
static inline int spill_region_kv(int n_layers, int layer) { return n_layers + layer; }
static inline int spill_region_embd(int n_layers) { return 2 * n_layers; }
static inline int spill_region_output(int n_layers) { return 2 * n_layers + 1; }
static inline int spill_region_out_norm(int n_layers) { return 2 * n_layers + 2; }
/* the layer whose weights region r is, or -1 (a KV cache or a region outside the layer stack) */
static inline int spill_region_weights_layer(int n_layers, int r) { return r >= 0 && r < n_layers ? r : -1; }
/* the region the head is read from: the embedding's when tied */
static inline int spill_region_head(int n_layers, int tied) {
    return tied ? spill_region_embd(n_layers) : spill_region_output(n_layers);
}

/* The weights of region r in a set (layer regions: all SPILL_LAYER_TENSORS, absent ones with data
 * NULL; the head: none when tied; KV regions: none). Returns how many were written to out. */
int spill_region_tensors(spill_weights *w, const spill_hparams *hp, int r, spill_weight **out);

/* A model as the planner sees it. */
typedef struct spill_shape {
    char arch[64];  /* "llama", "LlamaForCausalLM" ... */
    char dtype[16]; /* weights' type as read (GGUF: most common tensor type; config: torch_dtype) */
    spill_hparams hp;
    uint64_t *layer_bytes, *layer_params; /* (n_layers) */
    uint64_t embd_bytes, embd_params, output_bytes, output_params, norm_bytes;
    char (*layer_format)[12];              /* (n_layers) the format most of a layer's multiply-adds are in */
    char embd_format[12], output_format[12]; /* "" when unknown */
    int kv_elem_bytes; /* bytes per cached K or V element: 4 (F32, what the shape_from_* give) or 2 (--kv-type f16/bf16) */
} spill_shape;

/* Sizes from the tensors of a GGUF file (exact), hyperparameters from its metadata. */
int spill_shape_from_gguf(const spill_gguf *g, spill_shape *s, spill_err *err);
/* Sizes computed from a config.json (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) and
 * its torch_dtype (or `dtype` when not NULL: bf16, f16, f32). */
int spill_shape_from_config(const char *path, const char *dtype, spill_shape *s, spill_err *err);
/* Sizes of a set of weights as a device holds them: bytes(ctx, w) for each tensor present. */
int spill_shape_from_weights(const spill_weights *w, const spill_hparams *hp,
                             uint64_t (*bytes)(const void *ctx, const spill_weight *w), const void *ctx, spill_shape *s,
                             spill_err *err);
/* A zeroed shape is freed as a no-op. */
void spill_shape_free(spill_shape *s);
uint64_t spill_shape_weight_bytes(const spill_shape *s);
/* bytes of K and V for one token, all layers */
uint64_t spill_shape_kv_bytes_per_token(const spill_shape *s);

/* The regions of a shape, for a KV cache of ctx tokens x batch sequences (one allocation: free with
 * spill_regions_free). */
int spill_shape_regions(const spill_shape *s, int ctx, int batch, spill_region **out, int *n, spill_err *err);
void spill_regions_free(spill_region *r);

#endif
