/* The forward pass and the state it runs in: activations (host memory) and the KV cache (placed
 * per layer as the plan says), both obtained from alloc/. */
#ifndef SPILL_FORWARD_H
#define SPILL_FORWARD_H

#include "exec.h"
#include "kv.h"
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
    float *rope_cs; /* (batch, rope_dims) cos and sin of each token's RoPE angles */
    uint8_t *act;  /* (batch, act bytes) converted activations for the next matmul */
    const float *act_src; /* what `act` holds, to avoid converting the same rows twice */
    spill_dtype act_type;
    spill_kv kv;      /* the paged KV cache, placed per layer as the plan says */
    int seq;          /* the sequence spill_forward extends */
    spill_exec *exec; /* carries out the plan at each layer boundary */
    spill_owned buf[16];
    int n_buf;
    uint64_t act_bytes;
    /* Optional: called with each intermediate tensor of a forward step as it is produced (names as
     * llama.cpp's graph calls them: attn_norm, Qcur, Kcur, Vcur (after RoPE for Q/K), kqv_out,
     * attn_out, ffn_inp, ffn_norm, ffn_gate, ffn_up, ffn_swiglu, ffn_out, l_out; layer -1 for
     * result_norm and result_output). For comparing with a peer's intermediates, token by token. */
    void (*trace)(void *ctx, const char *name, int layer, const float *x, int64_t n);
    void *trace_ctx;
} spill_state;

typedef struct spill_state_params {
    int n_ctx;     /* positions per sequence */
    int max_batch; /* tokens per forward step */
    int n_seqs;    /* sequences the KV cache holds at once (--n-parallel); 0 = 1 */
    int kv_block;  /* tokens per KV block; 0 = the default */
} spill_state_params;

/* One sequence (0), open and empty, with the default KV block size. */
int spill_state_init(spill_state *s, const spill_model *m, int n_ctx, int max_batch, spill_pool *pool, spill_err *err);
int spill_state_init_params(spill_state *s, const spill_model *m, const spill_state_params *p, spill_pool *pool,
                            spill_err *err);
void spill_state_free(spill_state *s);

/* Run tokens[0..n) of sequence s->seq at positions pos..pos+n-1 (n <= max_batch, pos+n <= n_ctx);
 * leaves the logits of the last token in s->logits. */
int spill_forward(spill_state *s, const int *tokens, int n, int pos, spill_err *err);

#endif
