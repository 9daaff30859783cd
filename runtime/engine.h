/* Where the forward pass runs: the CPU's state, or the GPU's when cs is set. For the callers that
 * do not care which (spill-generate, spill-bench): one forward call, the logits, the KV cache, the
 * weights as placed and the bytes read, whichever state holds them. */
#ifndef SPILL_ENGINE_H
#define SPILL_ENGINE_H

#include "forward.h"
#include "forward_cuda.h"

typedef struct spill_engine {
    spill_state *st;    /* the CPU's, when cs is NULL */
    spill_cu_state *cs; /* the GPU's */
} spill_engine;

/* n tokens of sequence seq at positions pos.. */
static inline int spill_engine_forward(const spill_engine *e, int seq, const int *toks, int n, int pos, spill_err *err) {
    if (e->cs) {
        e->cs->seq = seq;
        return spill_cu_forward(e->cs, toks, n, pos, err);
    }
    e->st->seq = seq;
    return spill_forward(e->st, toks, n, pos, err);
}

/* the last token's logits, in host memory */
static inline float *spill_engine_logits(const spill_engine *e) { return e->cs ? e->cs->logits_host : e->st->logits; }

static inline spill_kv *spill_engine_kv(const spill_engine *e) { return e->cs ? &e->cs->kv : &e->st->kv; }

/* weight bytes per tier as this state holds them (the GPU keeps its own copies) */
static inline const uint64_t *spill_engine_weight_bytes(const spill_engine *e) {
    return e->cs ? e->cs->weight_bytes : e->st->m->weight_bytes;
}

/* So far: weight bytes read per tier, bytes prefetched, time waited for prefetches (the CPU's; on
 * the GPU the compute stream waits on events and nothing on the host measures it, so 0). */
static inline spill_exec_stats spill_engine_stats(const spill_engine *e) {
    spill_exec_stats x;
    memset(&x, 0, sizeof x);
    if (!e->cs) {
        spill_exec_get_stats(e->st->exec, &x);
        return x;
    }
    for (int t = 0; t < SPILL_TIER_COUNT; t++) x.read[t] = e->cs->read[t];
    x.prefetched = e->cs->prefetched;
    return x;
}

#endif
