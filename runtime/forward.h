/* The forward pass and the state it runs in: activations (host memory) and the KV cache (placed
 * per layer as the plan says), both obtained from alloc/. */
#ifndef SPILL_FORWARD_H
#define SPILL_FORWARD_H

#include "exec.h"
#include "model.h"

typedef struct spill_state {
    const spill_model *m;
    spill_pool *pool;
    int n_ctx, max_batch;
    float *x;      /* (batch, dim) residual stream */
    float *xb;     /* (batch, max(dim, q_dim)) */
    float *xb2;    /* (batch, dim) */
    float *q;      /* (batch, q_dim) */
    float *k, *v;  /* (batch, kv_dim) */
    float *hb, *hb2; /* (batch, ffn_dim) */
    float *att;    /* (threads, n_ctx) attention scores */
    float *logits; /* (vocab) of the last token */
    uint8_t *act;  /* (batch, act bytes) converted activations for the next matmul */
    const float *act_src; /* what `act` holds, to avoid converting the same rows twice */
    spill_dtype act_type;
    float **kc, **vc; /* (layer) -> (n_ctx, kv_dim) KV cache, placed per layer as the plan says */
    spill_exec *exec; /* carries out the plan at each layer boundary */
    spill_owned buf[16];
    int n_buf;
    uint64_t kv_bytes, act_bytes;
    uint64_t kv_bytes_tier[SPILL_TIER_COUNT];
    spill_owned *kv_buf; /* (2 * layer) */
} spill_state;

int spill_state_init(spill_state *s, const spill_model *m, int n_ctx, int max_batch, spill_pool *pool, spill_err *err);
void spill_state_free(spill_state *s);

/* Run tokens[0..n) at positions pos..pos+n-1 (n <= max_batch, pos+n <= n_ctx); leaves the logits of
 * the last token in s->logits. */
int spill_forward(spill_state *s, const int *tokens, int n, int pos, spill_err *err);

#endif
