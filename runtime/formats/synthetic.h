/* Synthetic models: a GGUF file with a real model's shapes and random weights, written to disk so
 * that the ordinary loader, planner and forward pass run on it — for measuring a 70B-shaped
 * placement on a machine that never downloaded the weights (spill-bench --synthetic). */
#ifndef SPILL_SYNTHETIC_H
#define SPILL_SYNTHETIC_H

#include "spill_common.h"

typedef struct spill_synth_spec {
    char name[32];
    int n_layers, dim, ffn_dim, n_heads, n_kv_heads, vocab, ctx;
    float rope_base;
    uint32_t type; /* weight type (spill_dtype); norms are F32 */
} spill_synth_spec;

/* "llama3-70b", "llama3-8b" or "tiny", with optional ":layers=N", ":vocab=N", ":type=f32|bf16|f16|q8_0|q4_0|q4_k|q6_k". */
int spill_synth_parse(const char *spec, spill_synth_spec *out, spill_err *err);
/* Bytes the file will hold (weights only; the header is small). */
uint64_t spill_synth_bytes(const spill_synth_spec *s);
/* Write it to `path` (created, or truncated); random weights from `seed`. progress: called now and
 * then with bytes written and the total, may be NULL. */
int spill_synth_write(const spill_synth_spec *s, const char *path, uint64_t seed,
                      void (*progress)(uint64_t done, uint64_t total), spill_err *err);

#endif
