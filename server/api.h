/* The OpenAI-compatible API as data: a request body parsed and checked into what the scheduler needs
 * (no sockets here, so that it is tested and fuzzed on its own), and the JSON of the responses and of
 * the server-sent-event chunks. */
#ifndef SPILL_SERVER_API_H
#define SPILL_SERVER_API_H

#include <stdio.h>

#include "model.h"
#include "scheduler.h"

enum { SPILL_API_MAX_STOP = 4, SPILL_API_MAX_BIAS = 1024 /* logit_bias entries */, SPILL_API_MAX_N = 64 /* choices */ };

typedef struct spill_api_req {
    int chat;           /* /v1/chat/completions (else /v1/completions) */
    char *prompt;       /* the text the model continues: the chat template applied for chat */
    int *tokens;        /* the prompt's ids, with the tokenizer's own BOS */
    int n_tokens;
    int max_tokens;     /* 0: until the context ends; -1: none (a completion's max_tokens 0, with echo) */
    int n;              /* choices sent */
    int best_of;        /* sequences generated (>= n), sequence i sampled with seed + i; above n, the n with the
                           highest mean log probability a token are sent (not streamed) */
    float temperature, top_p;
    int top_k;
    uint64_t seed;
    int seed_set;
    char *stop[SPILL_API_MAX_STOP];
    int n_stop;
    int stream;
    int include_usage;  /* stream_options.include_usage: a last chunk with the usage */
    int logprobs;       /* each token's log probability, */
    int top_logprobs;   /* with this many alternatives (a completion's "logprobs", a chat's "top_logprobs") */
    int echo;           /* a completion's echo: its text begins with the prompt's, its log probabilities with
                           the prompt tokens' (the first one's null) */
    char *echo_text;    /* the prompt as given, or its token ids detokenized */
    size_t echo_len;
    float presence_penalty, frequency_penalty; /* OpenAI's, in [-2, 2] (spill_logit_adjust) */
    float repeat_penalty; /* vLLM's repetition_penalty or llama.cpp's repeat_penalty, in [0.001, 10]; 0: off */
    int repeat_window;    /* its window in tokens (spill_logit_adjust's repeat_window; 0: every token) */
    int *bias_id;       /* logit_bias: (n_bias) token ids, each once, */
    float *bias;        /* and what is added to their logits, in [-100, 100] */
    int n_bias;         /* <= SPILL_API_MAX_BIAS */
} spill_api_req;

typedef struct spill_api_err {
    int status;          /* HTTP status: 400, 404, 405, 413 ... */
    char param[64];      /* the field at fault, or "" */
    char msg[1024];
    char allow[16];      /* a 405's Allow header, or "" */
} spill_api_err;

/* Parse and check a request body for /v1/completions (chat 0) or /v1/chat/completions (chat 1) against
 * the model: types, ranges, the prompt's length against ctx. 0, or -1 with e filled (status 400). */
int spill_api_parse(int chat, const char *body, size_t len, const spill_model *m, int ctx, spill_api_req *out,
                    spill_api_err *e);
/* A zeroed one is a no-op. */
void spill_api_req_free(spill_api_req *r);

/* {"error": {"message", "type", "param", "code"}} */
void spill_api_write_error(FILE *f, const spill_api_err *e);
/* One choice of a response: its text, the log probabilities of its tokens when asked, how it ended. */
typedef struct spill_api_choice {
    const char *text;
    size_t len;
    const spill_token_logprob *lp;
    int n_lp;
    spill_finish finish;
} spill_api_choice;
/* A whole (non-streamed) response: n choices (index 0..n-1); with r->logprobs, each one's tokens' log
 * probabilities, their texts from tok; the usage counts the prompt once and every choice's tokens. */
void spill_api_write_response(FILE *f, const spill_api_req *r, const char *id, long created, const char *model,
                              const spill_api_choice *ch, int n, const spill_tokenizer *tok, int prompt_tokens,
                              int completion_tokens);
/* One server-sent event "data: {...}\n\n" of a stream, for choice `index`: first (chat: the assistant's
 * role), a piece of text (and its tokens' log probabilities, as above), or the last one with the finish
 * reason. *text_offset: the characters of the choice's tokens whose log probabilities earlier chunks
 * listed (0 at the first), moved past this chunk's. */
void spill_api_write_chunk(FILE *f, const spill_api_req *r, const char *id, long created, const char *model, int index,
                           int first, const char *text, size_t len, const spill_tokenizer *tok,
                           const spill_token_logprob *lp, int n_lp, size_t *text_offset, spill_finish finish);
/* OpenAI's last event with stream_options.include_usage: no choices, the usage. */
void spill_api_write_usage_chunk(FILE *f, const spill_api_req *r, const char *id, long created, const char *model,
                                 int prompt_tokens, int completion_tokens);
/* s[0..n) as a JSON string literal; bytes that are not UTF-8 become U+FFFD. */
void spill_api_write_str(FILE *f, const char *s, size_t n);

#endif
