/* Self-speculative decoding with a layer-skip draft.
 *
 * The draft is the model itself with some layers skipped (spill_batch.skip): k cheap steps propose k
 * tokens, then one batched step of the whole model over the last token and the k proposals checks
 * them all, so one read of the weights can yield up to k+1 tokens. A proposal d drawn from the
 * draft's distribution q is kept with probability min(1, p(d)/q(d)), p the model's distribution at
 * that position; the first one refused is replaced by a draw from max(0, p - q) renormalised, and
 * when all are kept one more token is drawn from the model's last distribution. The tokens so made
 * are distributed exactly as plain sampling from p (Leviathan et al. 2023, Chen et al. 2023); with
 * greedy sampling p and q are one-hot and the text is exactly plain greedy decoding's.
 *
 * Which layers to skip: by calibration, the layers whose output hidden state is closest (cosine
 * similarity, averaged over the tokens of a few built-in prompts) to their input, i.e. the ones that
 * change the residual stream least; never the first or the last. The per-layer similarities are
 * kept in a small JSON file next to the model so that calibration runs once. docs/speculative.md. */
#ifndef SPILL_SPEC_H
#define SPILL_SPEC_H

#include "engine.h"
#include "sampler.h"

typedef struct spill_spec_stats {
    uint64_t rounds;       /* verification steps */
    uint64_t drafted;      /* proposals made */
    uint64_t accepted;     /* proposals kept */
    uint64_t produced;     /* tokens out (accepted + one per round) */
    double draft_s, verify_s; /* time in the draft's steps and in the verifications */
} spill_spec_stats;

typedef struct spill_spec {
    spill_engine *e;
    int seq, k, n_layers, vocab;
    int head_rows; /* the draft's vocabulary: tokens [0, head_rows) (0: all), spill_batch.head_rows */
    uint8_t *skip; /* (n_layers) */
    float *q;      /* (k, vocab) the draft's distributions */
    float *p;      /* (vocab) the model's distribution at one position */
    int *tok, *pos; /* (k + 1) the verification's batch */
    int *seqv;     /* (k + 1) */
    uint8_t *out;  /* (k + 1) */
    spill_spec_stats st;
} spill_spec;

/* skip: (n_layers) 1 = the draft skips the layer. k: proposals per round, 1..the engine's batch - 1.
 * draft_vocab: 0 (the whole vocabulary), or the draft proposes only tokens [0, draft_vocab) and its head
 * reads only their rows on the CPU (the GPU computes every row; spill_engine_step makes the rest -inf on
 * every device; --draft-vocab; byte-pair vocabularies number their tokens in the order the
 * merges were learned, so the low ids are the frequent ones). The output stays exact: the rule below
 * holds for any draft distribution, one that gives the other tokens no mass included. */
int spill_spec_init(spill_spec *sp, spill_engine *e, int seq, const uint8_t *skip, int k, int draft_vocab, spill_err *err);
void spill_spec_free(spill_spec *sp);

/* One round. Sequence seq holds positions [0, pos) and `last` is the token at pos, not yet run. Writes
 * 1..k+1 tokens to out (room for k+1) and returns their count n; the sequence then holds [0, pos + n)
 * (last and the kept proposals), the last token out being the next one to run, as after n plain
 * steps. Near the end of the context fewer proposals are made (none at the last position). */
int spill_spec_round(spill_spec *sp, spill_sampler *smp, int last, int pos, int *out, spill_err *err);

/* ---- which layers to skip ---- */

/* Per-layer cosine similarity of each layer's output hidden state to its input, averaged over every
 * token of the built-in calibration prompts, run on the CPU (a copy of base with device cpu, policy
 * host and a trace hook). cos: (the model's n_layers). */
int spill_draft_calibrate(const spill_engine_params *base, double *cos, int n_layers, spill_err *err);

/* The calibration file for a model: PATH.spill-draft.json beside a GGUF file, spill-draft.json in a
 * Hugging Face directory. */
void spill_draft_path(const char *model, char *out, size_t n);
/* Reads cos from path when it was written for this model (n_layers and the model file's size match):
 * 1 read, 0 absent or stale (why in err->msg), -1 unreadable or malformed. */
int spill_draft_load(const char *path, const char *model, double *cos, int n_layers, spill_err *err);
/* Writes it whole or not at all (a temporary renamed into place). */
int spill_draft_save(const char *path, const char *model, const double *cos, int n_layers, spill_err *err);

/* skip: the n layers of highest similarity, never layer 0 or n_layers-1 (n <= n_layers - 2). */
int spill_draft_choose(const double *cos, int n_layers, int n, uint8_t *skip, spill_err *err);
/* A --draft-skip value: a count ("8": chosen by calibration; *count set, skip untouched) or a list of
 * layers and ranges ("3,5,10-14", or "7," for one layer; skip set, *count = -1). */
int spill_draft_parse(const char *spec, int n_layers, uint8_t *skip, int *count, spill_err *err);

/* --draft-skip as a program takes it: a list is used as given; a count is chosen from the calibration
 * at calib_path (NULL: spill_draft_path of base->model), which is made (and written there) when
 * absent or stale. Progress and the choice go to stderr unless quiet. skip: (the model's n_layers). */
int spill_draft_resolve(const spill_engine_params *base, int n_layers, const char *spec, const char *calib_path, int quiet,
                        uint8_t *skip, spill_err *err);

#endif
