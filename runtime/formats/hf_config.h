/* A Hugging Face config.json, read and checked once for the loader and the planner alike. */
#ifndef SPILL_HF_CONFIG_H
#define SPILL_HF_CONFIG_H

#include "hparams.h"

typedef struct spill_hf_config {
    char arch[64];   /* LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM (others are refused) */
    char dtype[16];  /* torch_dtype (or the override): bf16, f16 or f32 */
    int dtype_bytes;
    spill_hparams hp; /* vocab from vocab_size; rotate-half RoPE; qkv_bias for Qwen2 */
    int llama3;       /* rope_type llama3, with: */
    double rope_factor, rope_low, rope_high, rope_old_ctx;
} spill_hf_config;

/* dtype: override torch_dtype (bf16, f16, f32) or NULL */
int spill_hf_config_read(const char *path, const char *dtype, spill_hf_config *c, spill_err *err);

#endif
