/* A Llama-family model as its files give it: the tensors bound by the tensor table (pointing into
 * the mapped GGUF or safetensors files, checked against the hyperparameters), the hyperparameters,
 * the tokenizer and the chat template, and the regions a plan places. Nothing here allocates placed
 * memory: a device's placer (place.h) carries a plan out from these bindings. */
#ifndef SPILL_MODEL_H
#define SPILL_MODEL_H

#include "gguf.h"
#include "regions.h"
#include "safetensors.h"
#include "tensors.h"
#include "tokenizer.h"

/* A file the model maps, as it was when loaded: which file (device, inode), its size and time. */
typedef struct spill_model_file {
    const char *path;  /* the gguf's or the safetensors file's own path */
    uint64_t mapped;   /* bytes mapped */
    uint64_t dev, ino;
    int64_t mtime_s, mtime_ns;
} spill_model_file;

typedef struct spill_model {
    char *path;
    int hf;                  /* a Hugging Face directory (else a GGUF file) */
    spill_gguf gguf;         /* a GGUF model ... */
    spill_safetensors st;    /* ... or a Hugging Face directory's safetensors */
    char arch[64];           /* "llama", "qwen2", "LlamaForCausalLM" ... */
    spill_hparams hp;
    spill_weights w;         /* as bound: inside the mapped file(s), in the file's types */
    float *rope_freq;        /* (rope_dims/2) inverse frequencies when scaled (llama3), else NULL */
    spill_tokenizer tok;
    spill_str chat_template; /* the model's chat template; len 0 if none */
    char *chat_template_buf; /* a Hugging Face template (chat_template points here) */
    spill_model_file *files; /* (n_files) the mapped files, for spill_model_check_files */
    int n_files;
} spill_model;

/* A GGUF file or a Hugging Face directory (config.json, tokenizer.json, safetensors). Every failure
 * names the file, the field and the value. */
int spill_model_load(spill_model *m, const char *path, spill_err *err);
/* The same, reading a GGUF's tokenizer.ggml.pre as `tokenizer_pre` (a known type) when not NULL. */
int spill_model_load_with(spill_model *m, const char *path, const char *tokenizer_pre, spill_err *err);
/* A zeroed model is freed as a no-op. */
void spill_model_free(spill_model *m);

/* Are the mapped files still what was loaded? A file truncated in place would make reading its
 * mapping past the new end a SIGBUS, and one rewritten in place would give other weights: either is
 * an error naming the file (the engine checks before every step). A file replaced by another (a
 * rename over it) or deleted is fine: the mapping keeps the old one. A truncation between this check
 * and the reads it guards is not caught. */
int spill_model_check_files(const spill_model *m, spill_err *err);

/* The regions of this model for a KV cache of n_ctx tokens x batch sequences of kv_type, each weight counted
 * as bytes(ctx, w) — what the device that will hold it takes (place.h: spill_placer_bytes). */
int spill_model_regions(const spill_model *m, uint64_t (*bytes)(const void *ctx, const spill_weight *w),
                        const void *ctx, int n_ctx, int batch, spill_dtype kv_type, spill_region **out, int *n,
                        spill_err *err);

#endif
