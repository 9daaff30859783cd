/* The OpenAI-compatible API's requests and responses (see api.h). */
#include "api.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>

#include "chat.h"
#include "spill_json.h"

static int fail(spill_api_err *e, int status, const char *param, const char *fmt, ...) SPILL_PRINTF(4, 5);
static int fail(spill_api_err *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int want(const spill_json *v, spill_json_type t, const char *key, spill_api_err *e) {
    if (v->type == t) return 0;
    e->status = 400;
    snprintf(e->param, sizeof e->param, "%s", key);
    snprintf(e->msg, sizeof e->msg, "'%s' must be %s, not %s", key, spill_json_type_name(t), spill_json_type_name(v->type));
    return -1;
}

/* a number field within [lo, hi]; absent or null leaves *out as it is */
static int num(const spill_json *j, const char *key, double lo, double hi, float *out, spill_api_err *e) {
    const spill_json *v = spill_json_get(j, key);
    if (!v || v->type == SPILL_JSON_NULL) return 0;
    if (want(v, SPILL_JSON_NUMBER, key, e)) return -1;
    if (!(v->number >= lo && v->number <= hi)) {
        e->status = 400;
        snprintf(e->param, sizeof e->param, "%s", key);
        snprintf(e->msg, sizeof e->msg, "'%s' is %g; it must be in [%g, %g]", key, v->number, lo, hi);
        return -1;
    }
    *out = (float)v->number;
    return 0;
}

static int integer(const spill_json *j, const char *key, int64_t lo, int64_t hi, int64_t *out, int *given,
                   spill_api_err *e) {
    const spill_json *v = spill_json_get(j, key);
    if (given) *given = 0;
    if (!v || v->type == SPILL_JSON_NULL) return 0;
    if (want(v, SPILL_JSON_NUMBER, key, e)) return -1;
    if (!v->is_int || v->integer < lo || v->integer > hi) {
        e->status = 400;
        snprintf(e->param, sizeof e->param, "%s", key);
        snprintf(e->msg, sizeof e->msg, "'%s' must be an integer in %lld..%lld", key, (long long)lo, (long long)hi);
        return -1;
    }
    *out = v->integer;
    if (given) *given = 1;
    return 0;
}

/* OpenAI's fields that spill-server does not do: taken at their "off" value, refused with a 400 naming
   them otherwise, so that no client gets an answer other than the one it asked for without knowing */
static int is_off(const spill_json *v) {
    switch (v->type) {
    case SPILL_JSON_BOOL: return !v->boolean;
    case SPILL_JSON_NUMBER: return v->number == 0;
    case SPILL_JSON_STRING: return v->len == 0;
    case SPILL_JSON_ARRAY:
    case SPILL_JSON_OBJECT: return v->n == 0;
    default: return 1;
    }
}

static int unsupported(const spill_json *j, spill_api_err *e) {
    enum { B = 1 << SPILL_JSON_BOOL, N = 1 << SPILL_JSON_NUMBER, S = 1 << SPILL_JSON_STRING, A = 1 << SPILL_JSON_ARRAY,
           O = 1 << SPILL_JSON_OBJECT };
    static const struct {
        const char *key;
        unsigned types; /* the types it may have */
        const char *type_name, *what;
    } f[] = {
        {"suffix", S, "a string", "suffixes"},
        {"tools", A, "an array", "tool calls"},
        {"functions", A, "an array", "function calls"},
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        const spill_json *v = spill_json_get(j, f[i].key);
        if (!v || v->type == SPILL_JSON_NULL) continue;
        if (!(f[i].types & 1u << v->type))
            return fail(e, 400, f[i].key, "'%s' must be %s, not %s", f[i].key, f[i].type_name,
                        spill_json_type_name(v->type));
        if (!is_off(v)) return fail(e, 400, f[i].key, "'%s': spill-server does not do %s; leave it out", f[i].key, f[i].what);
    }
    const spill_json *tc = spill_json_get(j, "tool_choice");
    if (tc && tc->type != SPILL_JSON_NULL &&
        !(tc->type == SPILL_JSON_STRING && (!strcmp(tc->str, "none") || !strcmp(tc->str, "auto"))))
        return fail(e, 400, "tool_choice", "'tool_choice': spill-server does not do tool calls (\"none\" or \"auto\" only)");
    const spill_json *rf = spill_json_get(j, "response_format");
    if (rf && rf->type != SPILL_JSON_NULL) {
        const spill_json *t = rf->type == SPILL_JSON_OBJECT ? spill_json_get(rf, "type") : NULL;
        if (!t || t->type != SPILL_JSON_STRING || strcmp(t->str, "text"))
            return fail(e, 400, "response_format",
                        "'response_format': spill-server writes plain text only ({\"type\": \"text\"})");
    }
    return 0;
}

/* The repetition penalty, in either server's spelling: vLLM's "repetition_penalty" (over the prompt and
   every generated token) or llama.cpp's "repeat_penalty" (over the last "repeat_last_n" tokens, 64 unless
   given; -1: all of them, 0: the penalty off; a window with vLLM's spelling too). 1 is off in both. */
static int read_repeat(const spill_json *j, spill_api_req *r, spill_api_err *e) {
    static const char *const key[2] = {"repetition_penalty", "repeat_penalty"};
    float p[2] = {0, 0};
    int given[2];
    for (int i = 0; i < 2; i++) {
        const spill_json *v = spill_json_get(j, key[i]);
        given[i] = v && v->type != SPILL_JSON_NULL;
        if (given[i] && want(v, SPILL_JSON_NUMBER, key[i], e)) return -1;
        if (given[i] && !(v->number >= SPILL_REPEAT_MIN && v->number <= SPILL_REPEAT_MAX))
            return fail(e, 400, key[i], "'%s' is %g; it must be in [%g, %g] (1 is off)", key[i], v->number,
                        (double)SPILL_REPEAT_MIN, (double)SPILL_REPEAT_MAX);
        if (given[i]) p[i] = (float)v->number;
    }
    if (given[0] && given[1])
        return fail(e, 400, "repeat_penalty", "'repetition_penalty' and 'repeat_penalty' are the same setting; give one");
    int64_t n = 64;
    int n_given = 0;
    if (integer(j, "repeat_last_n", -1, SPILL_REPEAT_WINDOW_MAX, &n, &n_given, e)) return -1;
    if (!given[0] && !given[1]) return 0;
    r->repeat_penalty = given[0] ? p[0] : p[1];
    r->repeat_window = n_given ? (n < 0 ? 0 : (int)n) : given[0] ? 0 : 64;
    if (n_given && n == 0) r->repeat_penalty = 0; /* llama.cpp's "off" */
    return 0;
}

/* "logit_bias": {"token id": bias, ...}, the ids written in decimal as OpenAI's clients send them */
static int read_logit_bias(const spill_json *b, const spill_model *m, spill_api_req *r, spill_api_err *e) {
    if (!b || b->type == SPILL_JSON_NULL) return 0;
    if (want(b, SPILL_JSON_OBJECT, "logit_bias", e)) return -1;
    if (b->n == 0) return 0;
    if (b->n > SPILL_API_MAX_BIAS)
        return fail(e, 400, "logit_bias", "'logit_bias' has %zu entries; at most %d", b->n, SPILL_API_MAX_BIAS);
    r->bias_id = malloc(sizeof *r->bias_id * b->n);
    r->bias = malloc(sizeof *r->bias * b->n);
    if (!r->bias_id || !r->bias) return fail(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < b->n; i++) {
        const char *k = b->keys[i];
        char *end;
        errno = 0;
        long id = k[0] >= '0' && k[0] <= '9' ? strtol(k, &end, 10) : -1;
        if (id < 0 || errno || *end || id >= m->hp.vocab)
            return fail(e, 400, "logit_bias", "'logit_bias': \"%.40s\" is not a token id of this model (0..%d)", k,
                        m->hp.vocab - 1);
        const spill_json *v = &b->items[i];
        if (v->type != SPILL_JSON_NUMBER || !(fabs(v->number) <= SPILL_LOGIT_BIAS_MAX))
            return fail(e, 400, "logit_bias", "'logit_bias': token %ld's bias must be a number in [-%d, %d]", id,
                        SPILL_LOGIT_BIAS_MAX, SPILL_LOGIT_BIAS_MAX);
        for (int q = 0; q < r->n_bias; q++)
            if (r->bias_id[q] == id) return fail(e, 400, "logit_bias", "'logit_bias': token %ld is given twice", id);
        r->bias_id[r->n_bias] = (int)id;
        r->bias[r->n_bias++] = (float)v->number;
    }
    return 0;
}

/* "prompt": a string, an array of one string, token ids, or an array of one array of ids */
static int read_prompt(const spill_json *p, const spill_model *m, spill_api_req *r, spill_api_err *e) {
    if (p->type == SPILL_JSON_ARRAY && p->n == 1 &&
        (p->items[0].type == SPILL_JSON_STRING || p->items[0].type == SPILL_JSON_ARRAY))
        p = &p->items[0];
    if (p->type == SPILL_JSON_STRING) {
        if (!(r->prompt = malloc(p->len + 1))) return fail(e, 500, NULL, "out of memory");
        memcpy(r->prompt, p->str, p->len + 1);
        return 0;
    }
    if (p->type != SPILL_JSON_ARRAY) return want(p, SPILL_JSON_STRING, "prompt", e);
    if (p->n == 0) return fail(e, 400, "prompt", "'prompt' is empty");
    if (p->items[0].type == SPILL_JSON_STRING || p->items[0].type == SPILL_JSON_ARRAY)
        return fail(e, 400, "prompt", "'prompt' holds %zu prompts; spill-server takes one per request", p->n);
    for (size_t i = 0; i < p->n; i++)
        if (p->items[i].type != SPILL_JSON_NUMBER)
            return fail(e, 400, "prompt", "'prompt' must be a string or token ids; item %zu is %s, not a token id", i,
                        spill_json_type_name(p->items[i].type));
    if (!(r->tokens = malloc(sizeof(int) * p->n))) return fail(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < p->n; i++) {
        const spill_json *t = &p->items[i];
        if (!t->is_int || t->integer < 0 || t->integer >= m->hp.vocab)
            return fail(e, 400, "prompt", "'prompt' item %zu (%g) is not a token id of this model's vocabulary (0..%d)",
                        i, t->number, m->hp.vocab - 1);
        r->tokens[i] = (int)t->integer;
    }
    r->n_tokens = (int)p->n;
    return 0;
}

/* a message's content: a string, or OpenAI's array of parts, whose text parts are joined by newlines (as
   vLLM joins them) into *own */
static int read_content(const spill_json *c, const char *key, const char **out, char **own, spill_api_err *e) {
    if (c->type == SPILL_JSON_STRING) {
        *out = c->str;
        return 0;
    }
    if (c->type != SPILL_JSON_ARRAY) return fail(e, 400, key, "'%s' must be a string or an array of text parts, not %s",
                                                 key, spill_json_type_name(c->type));
    size_t len = 0;
    for (size_t k = 0; k < c->n; k++) {
        const spill_json *part = &c->items[k], *type = NULL, *text = NULL;
        if (part->type == SPILL_JSON_OBJECT) {
            type = spill_json_get(part, "type");
            text = spill_json_get(part, "text");
        }
        if (!type || type->type != SPILL_JSON_STRING || strcmp(type->str, "text") || !text ||
            text->type != SPILL_JSON_STRING)
            return fail(e, 400, key, "'%s[%zu]' is not a text part ({\"type\": \"text\", \"text\": \"...\"}); "
                                     "spill-server takes text only", key, k);
        len += text->len + 1;
    }
    char *buf = malloc(len + 1), *w = buf;
    if (!buf) return fail(e, 500, NULL, "out of memory");
    for (size_t k = 0; k < c->n; k++) {
        const spill_json *text = spill_json_get(&c->items[k], "text");
        if (k) *w++ = '\n';
        memcpy(w, text->str, text->len);
        w += text->len;
    }
    *w = 0;
    *out = *own = buf;
    return 0;
}

static int read_messages(const spill_json *msgs, const spill_model *m, spill_api_req *r, spill_api_err *e) {
    if (want(msgs, SPILL_JSON_ARRAY, "messages", e)) return -1;
    if (msgs->n == 0) return fail(e, 400, "messages", "'messages' is empty");
    if (msgs->n > 4096) return fail(e, 400, "messages", "'messages' holds %zu messages; 4096 is the most", msgs->n);
    spill_chat_msg *cm = calloc(msgs->n, sizeof *cm);
    char **own = calloc(msgs->n, sizeof *own);
    int rc = 0;
    if (!cm || !own) rc = fail(e, 500, NULL, "out of memory");
    for (size_t i = 0; i < msgs->n && !rc; i++) {
        const spill_json *it = &msgs->items[i];
        char key[64];
        snprintf(key, sizeof key, "messages[%zu]", i);
        if (want(it, SPILL_JSON_OBJECT, key, e)) {
            rc = -1;
            break;
        }
        const spill_json *role = spill_json_get(it, "role"), *content = spill_json_get(it, "content");
        snprintf(key, sizeof key, "messages[%zu].role", i);
        if (!role) rc = fail(e, 400, key, "'%s' is missing", key);
        else if (want(role, SPILL_JSON_STRING, key, e)) rc = -1;
        else if (!spill_chat_role(role->str))
            rc = fail(e, 400, key, "'%s' is '%.32s'; spill-server takes system, developer, user or assistant (no tool "
                                   "calls)", key, role->str);
        snprintf(key, sizeof key, "messages[%zu].content", i);
        if (!rc && !content) rc = fail(e, 400, key, "'%s' is missing", key);
        const char *text = NULL;
        if (!rc) rc = read_content(content, key, &text, &own[i], e);
        if (!rc) cm[i] = (spill_chat_msg){role->str, text};
    }
    spill_err err = {{0}};
    if (!rc && spill_chat_format_messages(m->chat_template, cm, (int)msgs->n, &r->prompt, &err))
        rc = fail(e, 400, "messages", "%s", err.msg);
    for (size_t i = 0; own && i < msgs->n; i++) free(own[i]);
    free(own);
    free(cm);
    return rc;
}

int spill_api_parse(int chat, const char *body, size_t len, const spill_model *m, int ctx, spill_api_req *r,
                    spill_api_err *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->chat = chat;
    r->temperature = 1.0f; /* OpenAI's defaults */
    r->top_p = 1.0f;
    r->max_tokens = chat ? 0 : 16;
    spill_json *j = NULL;
    spill_err err = {{0}};
    int rc = -1;
    if (spill_json_parse(body, len, "the request body", &j, &err)) {
        fail(e, 400, NULL, "%s", err.msg);
        goto out;
    }
    if (j->type != SPILL_JSON_OBJECT) {
        fail(e, 400, NULL, "the request body must be an object, not %s", spill_json_type_name(j->type));
        goto out;
    }
    /* any model name is taken (clients often hard-code one); the answer names the model that served it */
    const spill_json *model = spill_json_get(j, "model");
    if (model && model->type != SPILL_JSON_NULL && want(model, SPILL_JSON_STRING, "model", e)) goto out;
    if (unsupported(j, e)) goto out;
    /* the prompt */
    if (chat) {
        const spill_json *msgs = spill_json_get(j, "messages");
        if (!msgs) {
            fail(e, 400, "messages", "'messages' is missing");
            goto out;
        }
        if (read_messages(msgs, m, r, e)) goto out;
    } else {
        const spill_json *p = spill_json_get(j, "prompt");
        if (!p) {
            fail(e, 400, "prompt", "'prompt' is missing");
            goto out;
        }
        if (read_prompt(p, m, r, e)) goto out;
    }
    /* the sampling settings */
    int64_t v = 0;
    int given = 0;
    const spill_json *echo = spill_json_get(j, "echo");
    if (echo && echo->type != SPILL_JSON_NULL) {
        if (want(echo, SPILL_JSON_BOOL, "echo", e)) goto out;
        if (chat && echo->boolean) {
            fail(e, 400, "echo", "'echo' is a completion's (/v1/completions); a chat completion does not echo");
            goto out;
        }
        r->echo = echo->boolean;
    }
    if (integer(j, "max_tokens", r->echo ? 0 : 1, 1 << 24, &v, &given, e)) goto out;
    if (given) r->max_tokens = v ? (int)v : -1; /* echo's 0: the prompt's log probabilities only */
    if (integer(j, "max_completion_tokens", 1, 1 << 24, &v, &given, e)) goto out;
    if (given) r->max_tokens = (int)v;
    if (integer(j, "n", 1, SPILL_API_MAX_N, &v, &given, e)) goto out;
    r->n = given ? (int)v : 1;
    /* best_of: that many sequences, the n likeliest per token sent (checked against stream below) */
    if (integer(j, "best_of", 1, SPILL_API_MAX_N, &v, &given, e)) goto out;
    r->best_of = given ? (int)v : r->n;
    if (r->best_of < r->n) {
        fail(e, 400, "best_of", "'best_of' is %d but n is %d; best_of must be at least n", r->best_of, r->n);
        goto out;
    }
    if (num(j, "temperature", 0, 2, &r->temperature, e) || num(j, "top_p", 0, 1, &r->top_p, e)) goto out;
    if (r->top_p == 0) r->top_p = 1e-6f; /* "only the likeliest token" */
    if (integer(j, "top_k", 0, 1 << 24, &v, &given, e)) goto out;
    if (given) r->top_k = (int)v;
    if (integer(j, "seed", INT64_MIN, INT64_MAX, &v, &r->seed_set, e)) goto out;
    r->seed = (uint64_t)v;
    /* what the sampler does to the logits (spill_logit_adjust), in OpenAI's ranges */
    if (num(j, "presence_penalty", -SPILL_PENALTY_MAX, SPILL_PENALTY_MAX, &r->presence_penalty, e) ||
        num(j, "frequency_penalty", -SPILL_PENALTY_MAX, SPILL_PENALTY_MAX, &r->frequency_penalty, e) ||
        read_logit_bias(spill_json_get(j, "logit_bias"), m, r, e) || read_repeat(j, r, e))
        goto out;
    /* log probabilities: a completion's "logprobs" is how many alternatives (and asks for the chosen
       token's too, 0 included); a chat's is a boolean, "top_logprobs" the alternatives */
    if (chat) {
        const spill_json *lp = spill_json_get(j, "logprobs");
        if (lp && lp->type != SPILL_JSON_NULL) {
            if (want(lp, SPILL_JSON_BOOL, "logprobs", e)) goto out;
            r->logprobs = lp->boolean;
        }
        if (integer(j, "top_logprobs", 0, SPILL_MAX_TOP_LOGPROBS, &v, &given, e)) goto out;
        if (given && v && !r->logprobs) { /* 0 is its off value, which some clients always send */
            fail(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            goto out;
        }
        if (given && r->logprobs) r->top_logprobs = (int)v;
    } else {
        const spill_json *lp = spill_json_get(j, "logprobs");
        if (lp && lp->type == SPILL_JSON_BOOL && !lp->boolean) {
            /* false: off, as some clients send it */
        } else if (integer(j, "logprobs", 0, SPILL_MAX_TOP_LOGPROBS, &v, &given, e)) {
            goto out;
        } else if (given) {
            r->logprobs = 1;
            r->top_logprobs = (int)v;
        }
        const spill_json *tl = spill_json_get(j, "top_logprobs");
        if (tl && tl->type != SPILL_JSON_NULL) {
            fail(e, 400, "top_logprobs", "'top_logprobs' is a chat completion's; a completion's 'logprobs' is the number of "
                                         "alternatives");
            goto out;
        }
    }
    const spill_json *stream = spill_json_get(j, "stream");
    if (stream && stream->type != SPILL_JSON_NULL) {
        if (want(stream, SPILL_JSON_BOOL, "stream", e)) goto out;
        r->stream = stream->boolean;
    }
    if (r->stream && r->best_of > r->n) {
        fail(e, 400, "best_of", "'best_of' above n picks the best sequences once all have ended; it cannot be streamed");
        goto out;
    }
    const spill_json *so = spill_json_get(j, "stream_options");
    if (so && so->type != SPILL_JSON_NULL) {
        if (want(so, SPILL_JSON_OBJECT, "stream_options", e)) goto out;
        if (!r->stream) {
            fail(e, 400, "stream_options", "'stream_options' is only allowed when 'stream' is true");
            goto out;
        }
        const spill_json *iu = spill_json_get(so, "include_usage");
        if (iu && iu->type != SPILL_JSON_NULL) {
            if (want(iu, SPILL_JSON_BOOL, "stream_options.include_usage", e)) goto out;
            r->include_usage = iu->boolean;
        }
    }
    const spill_json *stop = spill_json_get(j, "stop");
    if (stop && stop->type != SPILL_JSON_NULL) {
        if (stop->type == SPILL_JSON_STRING) {
            if (!(r->stop[r->n_stop++] = strdup(stop->str))) goto oom;
        } else if (stop->type == SPILL_JSON_ARRAY) {
            if (stop->n > SPILL_API_MAX_STOP) {
                fail(e, 400, "stop", "'stop' holds %zu strings; 4 is the most", stop->n);
                goto out;
            }
            for (size_t i = 0; i < stop->n; i++) {
                if (stop->items[i].type != SPILL_JSON_STRING) {
                    fail(e, 400, "stop", "'stop' must hold strings; item %zu does not", i);
                    goto out;
                }
                if (!(r->stop[r->n_stop++] = strdup(stop->items[i].str))) goto oom;
            }
        } else {
            fail(e, 400, "stop", "'stop' must be a string or an array of strings");
            goto out;
        }
    }
    /* tokenize, and check the prompt fits */
    if (r->prompt) {
        if (spill_tokenize(&m->tok, r->prompt, strlen(r->prompt), 1, 1, &r->tokens, &r->n_tokens, &err)) {
            fail(e, 400, chat ? "messages" : "prompt", "%s", err.msg);
            goto out;
        }
    }
    if (r->n_tokens == 0) {
        fail(e, 400, chat ? "messages" : "prompt", "the prompt has no tokens");
        goto out;
    }
    if (r->echo) { /* the prompt as given, or its tokens' texts */
        if (r->prompt) {
            r->echo_len = strlen(r->prompt);
            if (!(r->echo_text = strdup(r->prompt))) goto oom;
        } else { /* as the tokenizer detokenizes them: no text for special tokens, SentencePiece's first space dropped */
            spill_err derr;
            if (spill_detokenize(&m->tok, r->tokens, r->n_tokens, 1, &r->echo_text, &r->echo_len, &derr)) {
                fail(e, 500, NULL, "echo: %s", derr.msg); /* the ids were checked: only memory can fail here */
                goto out;
            }
        }
    }
    if (r->n_tokens >= ctx) {
        e->status = 400;
        snprintf(e->param, sizeof e->param, "%s", chat ? "messages" : "prompt");
        snprintf(e->msg, sizeof e->msg, "the prompt is %d tokens; the context holds %d, so a prompt may have at most %d "
                 "(one position is left for the answer) (context_length_exceeded)", r->n_tokens, ctx, ctx - 1);
        goto out;
    }
    rc = 0;
    goto out;
oom:
    fail(e, 500, NULL, "out of memory");
out:
    spill_json_free(j);
    if (rc) spill_api_req_free(r);
    return rc;
}

void spill_api_req_free(spill_api_req *r) {
    free(r->prompt);
    free(r->tokens);
    free(r->echo_text);
    free(r->bias_id);
    free(r->bias);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- writing ---- */

/* the length of the whole, shortest-form UTF-8 sequence at s[0..n), or 0 where there is none */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int len = c < 0x80 ? 1 : c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    if (len <= 1 || (size_t)len > n) return len == 1 ? 1 : 0;
    uint32_t cp = len == 4 ? c & 7u : len == 3 ? c & 15u : c & 31u;
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 63u);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp < 0xE000)) return 0;
    return len;
}

void spill_api_write_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
            else if (c == '\n') fputs("\\n", f);
            else if (c == '\r') fputs("\\r", f);
            else if (c == '\t') fputs("\\t", f);
            else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
            i++;
            continue;
        }
        /* a whole, shortest-form UTF-8 sequence passes; anything else is U+FFFD */
        int len = utf8_seq((const unsigned char *)s + i, n - i);
        if (len) {
            fwrite(s + i, 1, (size_t)len, f);
            i += (size_t)len;
        } else {
            fputs("\xef\xbf\xbd", f);
            i++;
        }
    }
    fputc('"', f);
}

/* the characters s[0..n) is written as (each byte that is not UTF-8 one U+FFFD) */
static size_t utf8_chars(const char *s, size_t n) {
    size_t chars = 0;
    for (size_t i = 0; i < n; chars++) {
        int len = utf8_seq((const unsigned char *)s + i, n - i);
        i += len ? (size_t)len : 1;
    }
    return chars;
}

/* JSON has no infinity: a token the logits rule out (-inf) gets OpenAI's -9999 */
static void write_lp(FILE *f, float x) { fprintf(f, "%.9g", isfinite(x) ? x : -9999.0f); }

/* a chat's token entry, left open for what follows: {"token", "logprob", "bytes" */
static void chat_token(FILE *f, const char *b, int n, float lp) {
    fputs("{\"token\": ", f);
    spill_api_write_str(f, b, (size_t)n);
    fputs(", \"logprob\": ", f);
    write_lp(f, lp);
    fputs(", \"bytes\": [", f);
    for (int i = 0; i < n; i++) fprintf(f, i ? ", %d" : "%d", (unsigned char)b[i]);
    fputc(']', f);
}

/* a token's text (a piece of a character comes out as U+FFFD, its bytes in "bytes") */
static int token_text(const spill_tokenizer *tok, int id, char *buf, int cap) {
    int n = spill_token_to_bytes(tok, id, buf, cap);
    return n < 0 ? 0 : n > cap ? cap : n;
}

/* "logprobs": a completion's {"tokens", "token_logprobs", "top_logprobs", "text_offset"}, a chat's
 * {"content": [...]}; null when not asked for. *offset: the characters of the tokens before these (a
 * stream's earlier chunks), moved past them. */
static void write_logprobs(FILE *f, const spill_api_req *r, const spill_tokenizer *tok, const spill_token_logprob *lp,
                           int n, size_t *offset) {
    if (!r->logprobs || !tok) {
        fputs("null", f);
        return;
    }
    char b[256];
    if (r->chat) {
        fputs("{\"content\": [", f);
        for (int i = 0; i < n; i++) {
            if (i) fputs(", ", f);
            chat_token(f, b, token_text(tok, lp[i].id, b, (int)sizeof b), lp[i].logprob);
            fputs(", \"top_logprobs\": [", f);
            for (int k = 0; k < lp[i].n_top; k++) {
                if (k) fputs(", ", f);
                chat_token(f, b, token_text(tok, lp[i].top_id[k], b, (int)sizeof b), lp[i].top_logprob[k]);
                fputc('}', f);
            }
            fputs("]}", f);
        }
        fputs("], \"refusal\": null}", f);
        return;
    }
    fputs("{\"tokens\": [", f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        int bn = token_text(tok, lp[i].id, b, (int)sizeof b);
        spill_api_write_str(f, b, (size_t)bn);
    }
    fputs("], \"token_logprobs\": [", f);
    for (int i = 0; i < n; i++) { /* NaN: an echoed prompt's first token, which nothing comes before */
        if (i) fputs(", ", f);
        if (isnan(lp[i].logprob)) fputs("null", f);
        else write_lp(f, lp[i].logprob);
    }
    /* one object per token, its alternatives' texts to their log probabilities (two tokens with one
       text: the likelier one's) */
    fputs("], \"top_logprobs\": [", f);
    for (int i = 0; i < n; i++) {
        if (isnan(lp[i].logprob)) {
            fputs(i ? ", null" : "null", f);
            continue;
        }
        fputs(i ? ", {" : "{", f);
        char seen[SPILL_MAX_TOP_LOGPROBS][256];
        int seen_len[SPILL_MAX_TOP_LOGPROBS], n_seen = 0;
        for (int k = 0; k < lp[i].n_top; k++) {
            char *t = seen[n_seen];
            int tn = token_text(tok, lp[i].top_id[k], t, (int)sizeof seen[0]), dup = 0;
            for (int q = 0; q < n_seen && !dup; q++) dup = seen_len[q] == tn && !memcmp(seen[q], t, (size_t)tn);
            if (dup) continue;
            seen_len[n_seen++] = tn;
            if (n_seen > 1) fputs(", ", f);
            spill_api_write_str(f, t, (size_t)tn);
            fputs(": ", f);
            write_lp(f, lp[i].top_logprob[k]);
        }
        fputc('}', f);
    }
    /* where each token's text begins in the completion's text, in characters as vLLM counts them */
    fputs("], \"text_offset\": [", f);
    for (int i = 0; i < n; i++) {
        fprintf(f, i ? ", %zu" : "%zu", *offset);
        *offset += utf8_chars(b, (size_t)token_text(tok, lp[i].id, b, (int)sizeof b));
    }
    fputs("]}", f);
}

static const char *reason(spill_finish f) { return f == SPILL_FINISH_LENGTH ? "length" : "stop"; }

static void usage(FILE *f, int p, int c) {
    fprintf(f, "\"usage\": {\"prompt_tokens\": %d, \"completion_tokens\": %d, \"total_tokens\": %d}", p, c, p + c);
}

static void head(FILE *f, const char *object, const char *id, long created, const char *model) {
    fprintf(f, "{\"id\": ");
    spill_api_write_str(f, id, strlen(id));
    fprintf(f, ", \"object\": \"%s\", \"created\": %ld, \"model\": ", object, created);
    spill_api_write_str(f, model, strlen(model));
}

void spill_api_write_error(FILE *f, const spill_api_err *e) {
    fprintf(f, "{\"error\": {\"message\": ");
    spill_api_write_str(f, e->msg, strlen(e->msg));
    const char *type = e->status == 429 || e->status == 503 ? "server_busy"
                       : e->status >= 500                  ? "server_error"
                                                           : "invalid_request_error";
    fprintf(f, ", \"type\": \"%s\", \"param\": ", type);
    if (e->param[0]) spill_api_write_str(f, e->param, strlen(e->param));
    else fputs("null", f);
    fprintf(f, ", \"code\": %d}}", e->status);
}

void spill_api_write_response(FILE *f, const spill_api_req *r, const char *id, long created, const char *model,
                              const spill_api_choice *ch, int n, const spill_tokenizer *tok, int prompt_tokens,
                              int completion_tokens) {
    head(f, r->chat ? "chat.completion" : "text_completion", id, created, model);
    fputs(", \"choices\": [", f);
    for (int i = 0; i < n; i++) {
        size_t offset = 0;
        fprintf(f, "%s{\"index\": %d, ", i ? ", " : "", i);
        if (r->chat) {
            fputs("\"message\": {\"role\": \"assistant\", \"content\": ", f);
            spill_api_write_str(f, ch[i].text, ch[i].len);
            fputs("}", f);
        } else {
            fputs("\"text\": ", f);
            spill_api_write_str(f, ch[i].text, ch[i].len);
        }
        fputs(", \"logprobs\": ", f);
        write_logprobs(f, r, tok, ch[i].lp, ch[i].n_lp, &offset);
        fprintf(f, ", \"finish_reason\": \"%s\"}", reason(ch[i].finish));
    }
    fputs("], ", f);
    usage(f, prompt_tokens, completion_tokens);
    fputs("}", f);
}

void spill_api_write_chunk(FILE *f, const spill_api_req *r, const char *id, long created, const char *model, int index,
                           int first, const char *text, size_t len, const spill_tokenizer *tok,
                           const spill_token_logprob *lp, int n_lp, size_t *text_offset, spill_finish finish) {
    fputs("data: ", f);
    head(f, r->chat ? "chat.completion.chunk" : "text_completion", id, created, model);
    fprintf(f, ", \"choices\": [{\"index\": %d, ", index);
    if (r->chat) {
        fputs("\"delta\": {", f);
        if (first) fputs("\"role\": \"assistant\"", f);
        if (len) {
            fputs(first ? ", \"content\": " : "\"content\": ", f);
            spill_api_write_str(f, text, len);
        }
        fputs("}", f);
    } else {
        fputs("\"text\": ", f);
        spill_api_write_str(f, text, len);
    }
    fputs(", \"logprobs\": ", f);
    write_logprobs(f, r, tok, lp, n_lp, text_offset);
    if (finish == SPILL_FINISH_NONE) fputs(", \"finish_reason\": null}]}\n\n", f);
    else fprintf(f, ", \"finish_reason\": \"%s\"}]}\n\n", reason(finish));
}

void spill_api_write_usage_chunk(FILE *f, const spill_api_req *r, const char *id, long created, const char *model,
                                 int prompt_tokens, int completion_tokens) {
    fputs("data: ", f);
    head(f, r->chat ? "chat.completion.chunk" : "text_completion", id, created, model);
    fputs(", \"choices\": [], ", f);
    usage(f, prompt_tokens, completion_tokens);
    fputs("}\n\n", f);
}
