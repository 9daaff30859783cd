/* The tensor table (see tensors.h). GGUF names as llama.cpp's converter writes them; Hugging Face
 * names as transformers' Llama, Mistral and Qwen2 modules have them. */
#include "tensors.h"

#include <stddef.h>

const spill_tensor_def spill_layer_defs[SPILL_LAYER_TENSORS] = {
    [SPILL_LT_ATTN_NORM] = {"attn_norm.weight", "input_layernorm.weight", SPILL_DIM_ONE, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_LT_WQ] = {"attn_q.weight", "self_attn.q_proj.weight", SPILL_DIM_Q, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_LT_WK] = {"attn_k.weight", "self_attn.k_proj.weight", SPILL_DIM_KV, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_LT_WV] = {"attn_v.weight", "self_attn.v_proj.weight", SPILL_DIM_KV, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_LT_WO] = {"attn_output.weight", "self_attn.o_proj.weight", SPILL_DIM_MODEL, SPILL_DIM_Q, SPILL_REQUIRED},
    [SPILL_LT_FFN_NORM] = {"ffn_norm.weight", "post_attention_layernorm.weight", SPILL_DIM_ONE, SPILL_DIM_MODEL,
                           SPILL_REQUIRED},
    [SPILL_LT_GATE] = {"ffn_gate.weight", "mlp.gate_proj.weight", SPILL_DIM_FFN, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_LT_UP] = {"ffn_up.weight", "mlp.up_proj.weight", SPILL_DIM_FFN, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_LT_DOWN] = {"ffn_down.weight", "mlp.down_proj.weight", SPILL_DIM_MODEL, SPILL_DIM_FFN, SPILL_REQUIRED},
    [SPILL_LT_BQ] = {"attn_q.bias", "self_attn.q_proj.bias", SPILL_DIM_ONE, SPILL_DIM_Q, SPILL_QKV_BIAS},
    [SPILL_LT_BK] = {"attn_k.bias", "self_attn.k_proj.bias", SPILL_DIM_ONE, SPILL_DIM_KV, SPILL_QKV_BIAS},
    [SPILL_LT_BV] = {"attn_v.bias", "self_attn.v_proj.bias", SPILL_DIM_ONE, SPILL_DIM_KV, SPILL_QKV_BIAS},
};

const spill_tensor_def spill_outer_defs[SPILL_OUTER_TENSORS] = {
    [SPILL_OT_EMBD] = {"token_embd.weight", "model.embed_tokens.weight", SPILL_DIM_VOCAB, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_OT_OUT_NORM] = {"output_norm.weight", "model.norm.weight", SPILL_DIM_ONE, SPILL_DIM_MODEL, SPILL_REQUIRED},
    [SPILL_OT_OUTPUT] = {"output.weight", "lm_head.weight", SPILL_DIM_VOCAB, SPILL_DIM_MODEL, SPILL_UNLESS_TIED},
};

/* the unions' two views must agree: field k is t[k] */
_Static_assert(offsetof(spill_layer, attn_norm) == SPILL_LT_ATTN_NORM * sizeof(spill_weight), "layer table order");
_Static_assert(offsetof(spill_layer, wo) == SPILL_LT_WO * sizeof(spill_weight), "layer table order");
_Static_assert(offsetof(spill_layer, w_down) == SPILL_LT_DOWN * sizeof(spill_weight), "layer table order");
_Static_assert(offsetof(spill_layer, bv) == SPILL_LT_BV * sizeof(spill_weight), "layer table order");
_Static_assert(sizeof(spill_layer) == SPILL_LAYER_TENSORS * sizeof(spill_weight), "layer table size");
_Static_assert(offsetof(spill_weights, output) == SPILL_OT_OUTPUT * sizeof(spill_weight), "outer table order");

int64_t spill_dim_value(const spill_hparams *hp, spill_dim d) {
    switch (d) {
    case SPILL_DIM_ONE: return 1;
    case SPILL_DIM_MODEL: return hp->dim;
    case SPILL_DIM_Q: return (int64_t)hp->n_heads * hp->head_dim;
    case SPILL_DIM_KV: return (int64_t)hp->n_kv_heads * hp->head_dim;
    case SPILL_DIM_FFN: return hp->ffn_dim;
    case SPILL_DIM_VOCAB: return hp->vocab;
    }
    return 0;
}

void spill_tensor_name(const spill_tensor_def *d, int layer, int hf, char *out, size_t len) {
    if (layer < 0) snprintf(out, len, "%s", hf ? d->hf : d->gguf);
    else if (hf) snprintf(out, len, "model.layers.%d.%s", layer, d->hf);
    else snprintf(out, len, "blk.%d.%s", layer, d->gguf);
}
