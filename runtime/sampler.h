/* Picks the next token from logits: greedy (temperature 0), or temperature + top-k + top-p with a
 * seeded generator so that a seed reproduces a run. */
#ifndef SPILL_SAMPLER_H
#define SPILL_SAMPLER_H

#include "spill_common.h"

typedef struct spill_prob { float p; int id; } spill_prob;

typedef struct spill_sampler {
    float temp;  /* 0 = greedy */
    int top_k;   /* 0 = whole vocabulary */
    float top_p; /* 1 = off */
    uint64_t rng;
    int n_vocab;
    spill_prob *cand; /* (n_vocab) scratch: candidates sorted by probability */
    float *prob;      /* (n_vocab) scratch: the probabilities in id order */
    int *top_id;      /* (top_k) scratch for top-k */
    float *top_p_val; /* (top_k) */
    /* spill_sampler_adjust's changes to the logits (none until it is called) */
    int n_bias;
    int *bias_id;     /* (n_bias) */
    float *bias;      /* (n_bias) */
    float presence, frequency;
    int *count;       /* (n_vocab, with a penalty) times each token was taken (spill_sampler_accept) */
    int *seen;        /* (n_vocab, with a penalty) the tokens taken, each once, in the order first taken */
    int n_seen;
    float repeat;     /* the repetition penalty; 0: off */
    int window;       /* its window: the last `window` tokens, the prompt's included; 0: all of them */
    int *rcount;      /* (n_vocab, with it) times each token is in the window */
    int *rlist;       /* (n_vocab, with it) the tokens in the window, each once (rpos: where in rlist) */
    int *rpos;        /* (n_vocab, with it) */
    int n_rlist;
    int *ring;        /* (window, with one) the window's tokens, oldest at ring[ring_at] once full */
    int ring_at, ring_n;
    float *adj;       /* (n_vocab, when adjusting) scratch: the logits changed */
} spill_sampler;

/* OpenAI's logit_bias, presence_penalty and frequency_penalty, and the repetition penalty of llama.cpp
 * (repeat_penalty) and vLLM/Hugging Face (repetition_penalty): what the sampler does to the logits
 * before it picks (greedy too) and before spill_sampler_probs, in this order:
 * - a token's logit gets its bias added;
 * - a token in the repetition window (the last `repeat_window` tokens of the prompt and what was
 *   generated: spill_sampler_context and spill_sampler_accept) has its logit divided by `repeat` when
 *   positive, multiplied by it when not (CTRL's penalty, as llama.cpp, vLLM and transformers apply it);
 * - a token taken c > 0 times so far (spill_sampler_accept: the generated tokens, as OpenAI's formula
 *   counts them, not the prompt's) has presence + c * frequency subtracted.
 * Log probabilities (spill_sampler_logprobs) stay the model's own, as vLLM and OpenAI report them. */
enum { SPILL_LOGIT_BIAS_MAX = 100, SPILL_PENALTY_MAX = 2 }; /* OpenAI's ranges: [-max, max] */
#define SPILL_REPEAT_MIN 0.001f /* repeat in [0.001, 10]: below, a positive logit divided by it could overflow */
#define SPILL_REPEAT_MAX 10.0f
enum { SPILL_REPEAT_WINDOW_MAX = 1 << 24 };
typedef struct spill_logit_adjust {
    const int *bias_id;  /* ids in [0, n_vocab) */
    const float *bias;   /* each in [-100, 100] */
    int n_bias;
    float presence, frequency; /* each in [-2, 2]; 0: off */
    float repeat;        /* in [0.001, 10]; 0 or 1: off */
    int repeat_window;   /* the last this many tokens (>= 1); 0: every token of the sequence */
} spill_logit_adjust;

/* A generated token's log probability under the model, and the most likely tokens at its place
 * (OpenAI's logprobs / top_logprobs): the log-softmax of the logits as the model gave them, before
 * temperature, top-k and top-p, as OpenAI and vLLM report it. */
enum { SPILL_MAX_TOP_LOGPROBS = 20 };
typedef struct spill_token_logprob {
    int id;
    float logprob;
    int n_top;                                 /* <= SPILL_MAX_TOP_LOGPROBS */
    int top_id[SPILL_MAX_TOP_LOGPROBS];        /* most likely first, the lower id first among equals */
    float top_logprob[SPILL_MAX_TOP_LOGPROBS];
} spill_token_logprob;

int spill_sampler_init(spill_sampler *s, int n_vocab, float temp, int top_k, float top_p, uint64_t seed, spill_err *err);
/* Takes a copy of a (NULL or all off: nothing changed, an earlier call's changes stay; once per sampler
 * is the use); -1 with err naming the bad value, the sampler unchanged. */
int spill_sampler_adjust(spill_sampler *s, const spill_logit_adjust *a, spill_err *err);
/* A token taken (generated): counted for the penalties; a no-op without them. */
void spill_sampler_accept(spill_sampler *s, int id);
/* The tokens before the first generated one (the prompt), in order: they enter the repetition window
 * only (presence and frequency count generated tokens); a no-op without a repetition penalty. */
void spill_sampler_context(spill_sampler *s, const int *ids, int n);
void spill_sampler_free(spill_sampler *s);
/* logits are read, not written: spill_sampler_logprobs may read them after */
int spill_sampler_sample(spill_sampler *s, const float *logits);
/* The distribution sample draws from, written out: probs (n_vocab) gets each token's probability
 * after temperature, top-k and top-p (0 for the tokens they cut; greedy: 1 for the argmax).
 * Speculative decoding (spec.h) compares these. */
void spill_sampler_probs(spill_sampler *s, const float *logits, float *probs);
/* token id's log probability under logits (n_vocab of them) and the n_top (<= SPILL_MAX_TOP_LOGPROBS)
 * most likely tokens', into out; the sampler's scratch is used, its state (the generator) is not. */
void spill_sampler_logprobs(spill_sampler *s, const float *logits, int id, int n_top, spill_token_logprob *out);
/* the same with the caller's scratch (n_vocab floats) and no sampler: any thread may run it on its own */
void spill_logprobs(const float *logits, int n_vocab, float *scratch, int id, int n_top, spill_token_logprob *out);
/* A token drawn from probs (n_vocab, summing to about 1; the mass may be any positive total). */
int spill_sampler_draw(spill_sampler *s, const float *probs);
/* uniform in [0, 1) */
float spill_sampler_uniform(spill_sampler *s);

#endif
