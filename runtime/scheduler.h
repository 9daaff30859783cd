/* Continuous batching over one engine: requests arrive and leave at any time; each step runs one
 * token of every sequence that is decoding and prompt chunks of those still prefilling, all in one
 * engine step, so that every weight is read once per step for everyone (runtime/engine.h).
 *
 *  - Admission: a waiting request gets a sequence slot when one is free and the KV cache has the
 *    blocks its prompt needs. A prompt that begins like a running sequence's (at least one KV block)
 *    shares that sequence's blocks (copy-on-write) and prefills only the rest; siblings of one
 *    submission (spill_sched_submit_n) keep their place at the front of the queue while the first
 *    computes it (admission steps past them), then share it.
 *  - Each step: decode tokens first, then prefill chunks, up to the engine's batch.
 *  - When the KV cache cannot hold a step, the most recently admitted sequence is preempted: its blocks
 *    are freed and it goes back to the front of the queue with what it generated so far, to be
 *    recomputed; its sampler goes on where it was, so preemption never changes a request's tokens.
 *  - A request ends at an end-of-generation token, max_tokens, a stop string, the context's end, or
 *    when it is cancelled (a client that went away); its blocks are freed at once.
 * The sink receives each request's text in pieces that are whole UTF-8 sequences and never part of a
 * stop string, then one last call with the finish reason. The scheduler runs on a thread of its own;
 * submit, cancel and the statistics may be called from any thread. */
#ifndef SPILL_SCHEDULER_H
#define SPILL_SCHEDULER_H

#include "engine.h"
#include "sampler.h"

typedef struct spill_sched spill_sched;

typedef enum spill_finish {
    SPILL_FINISH_NONE,      /* not finished */
    SPILL_FINISH_STOP,      /* an end-of-generation token or a stop string */
    SPILL_FINISH_LENGTH,    /* max_tokens, or the context is full */
    SPILL_FINISH_CANCELLED, /* spill_sched_cancel, or the scheduler stopped without draining */
    SPILL_FINISH_ERROR,     /* the engine failed; the message is in the text */
} spill_finish;
const char *spill_finish_name(spill_finish f); /* "stop", "length", "cancelled", "error" */

/* Called on the scheduler's thread: text (len bytes, may be 0) generated since the last call and
 * n_tokens tokens, and, on the last call, finish != NONE. Must not call back into the scheduler
 * except spill_sched_cancel. A request that asked for log probabilities gets those of the tokens
 * whose text is complete in what was sent (n_lp of them at lp, valid during the call): with a stop
 * string, the tokens that wrote any of the text before it; the others get none (lp NULL). A request
 * that asked for its prompt's log probabilities gets them first, in a call of their own (no text, no
 * tokens; unless it fails or is cancelled before its prompt is computed): n_lp = its n_prompt records,
 * the first with logprob NaN (no token comes before it), each other token's under the logits of the
 * position before it, with top_logprobs alternatives. */
typedef void (*spill_sched_sink)(void *user, const char *text, size_t len, int n_tokens, const spill_token_logprob *lp,
                                 int n_lp, spill_finish finish);

typedef struct spill_request {
    const int *prompt; /* token ids, with the model's BOS if it wants one */
    int n_prompt;
    int max_tokens;    /* at most this many generated tokens (clamped to the context); 0: until the context ends;
                          -1: none (the prompt is computed for its log probabilities: prompt_logprobs, which
                          -1 needs) */
    float temp, top_p; /* as spill_sampler_init */
    int top_k;
    uint64_t seed;
    const char *const *stop; /* stop strings; the text ends before the first one found */
    int n_stop;
    int logprobs;      /* 1: each generated token's log probability to the sink, */
    int top_logprobs;  /* with this many most likely alternatives (0..SPILL_MAX_TOP_LOGPROBS) */
    int prompt_logprobs; /* 1: the prompt's tokens' log probabilities too, before the rest (with top_logprobs
                            alternatives); such a prompt shares no other sequence's blocks, its every
                            position's logits being needed (OpenAI's echo with logprobs) */
    const spill_logit_adjust *adjust; /* logit bias, presence, frequency and repetition penalties (copied; the
                                         prompt enters the repetition window at submit); NULL: none */
} spill_request;

typedef struct spill_sched_params {
    int max_waiting;  /* requests queued beyond the running ones and the free slots before submit says "full"; 0 = 64 */
    int prefill_chunk; /* prompt tokens of one sequence per step; 0 = the engine's batch */
    int prefill_budget; /* prompt tokens of all sequences per step while others decode (bounding the time
                           between their tokens), or as many as fill the step to one token per running
                           sequence where that is more; 0 = only the batch bounds them. With nothing decoding, prompts
                           fill the batch */
    double itl_target_ms; /* > 0: a target for an engine step's time, hence the time between a sequence's
                             tokens. Steps' times are fitted as a + b * tokens (policies/pace.c); a request is
                             admitted only while the running sequences are fewer than the tokens a step may
                             hold within the target, and prompts beside decoding tokens fill a step only up
                             to that (at least one token a step). The first request runs alone until a step
                             has been timed. 0: no target */
} spill_sched_params;

typedef struct spill_sched_stats {
    uint64_t requests, finished, cancelled, preempted, rejected; /* since the start */
    uint64_t prompt_tokens, generated_tokens, reused_tokens;     /* reused: prompt positions shared, not computed */
    uint64_t steps, step_tokens;                                 /* step_tokens / steps = the mean batch */
    int max_mixed_prompt;                                        /* most prompt tokens a step held beside decoding ones */
    int max_running;                                             /* most sequences running at once */
    int step_cap;                                                /* itl_target_ms: the tokens a step may hold now (else 0) */
    double busy_s;                                               /* time spent in engine steps */
    int running, waiting;                                        /* now */
    int kv_blocks_free, kv_blocks;                               /* now */
    spill_kv_stats kv;
} spill_sched_stats;

/* The engine's sequences are the scheduler's slots; it must hold no open sequence but 0, which the
 * scheduler closes. The thread starts at once. */
int spill_sched_open(spill_sched **out, spill_engine *e, const spill_sched_params *p, spill_err *err);
/* Stops (see spill_sched_stop with drain 0) and frees; NULL is a no-op. */
void spill_sched_free(spill_sched *s);

/* Queue a request; its id in *id. -1 with err: the queue is full (retry later: *full = 1), or the
 * request cannot run here (its prompt does not fit the context, bad sampling settings). */
int spill_sched_submit(spill_sched *s, const spill_request *r, spill_sched_sink sink, void *user, int *id, int *full,
                       spill_err *err);
/* n requests of one prompt (OpenAI's n): request i samples with seed + i, its sink called with users[i],
 * its id in ids[i]. All are queued or none (*full when the queue cannot take all n; -1 without *full
 * when n exceeds the slots and the queue's places together). The first computes the prompt; the others
 * wait for it, then share its blocks (copy-on-write; also when it ends in the step that computed it),
 * unless the prompt is shorter than a block or its every position's logits are wanted (prompt_logprobs). */
int spill_sched_submit_n(spill_sched *s, const spill_request *r, int n, spill_sched_sink sink, void *const *users, int *ids,
                         int *full, spill_err *err);
/* The most sequences one submission may carry: the slots and the queue's places beyond them (a
 * spill_sched_submit_n with more is refused at once, full or not). */
void spill_sched_limits(const spill_sched *s, int *slots, int *max_waiting);
/* The request ends with SPILL_FINISH_CANCELLED at the next step (or at once when still waiting). */
void spill_sched_cancel(spill_sched *s, int id);
/* No more submissions; drain 1: finish what runs and what waits, then stop; 0: cancel them. Waits. */
void spill_sched_stop(spill_sched *s, int drain);
void spill_sched_get_stats(spill_sched *s, spill_sched_stats *out);

#endif
