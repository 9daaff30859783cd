/* spill-server's HTTP side (see http.h). libmicrohttpd runs a thread per connection, so a handler may
 * wait for its generation; while it waits it looks at the socket every 100 ms, and a client that has
 * closed it has its request cancelled (its KV blocks are freed at the scheduler's next step). */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "api.h"

struct spill_http {
    struct MHD_Daemon *d;
    spill_http_params p;
    char model_name[256];
    double t0;
    long created; /* when it started, in seconds since the epoch: /v1/models' "created" */
    pthread_mutex_t lock;
    int active, draining, next_id;
    uint64_t http_requests, http_errors;
};

/* A generation in flight: what the scheduler's sink writes and the connection's thread sends. Held
 * by each choice's sink (until its last call) and by the HTTP side (until the answer is sent or
 * abandoned). OpenAI's n: one request of the scheduler's a choice (spill_sched_submit_n). */
typedef struct gen gen;
typedef struct choice {
    gen *g;
    int index, sched_id, first, n_gen;
    spill_finish finish;     /* NONE until its last call */
    char *text;              /* not streamed: the text so far */
    size_t len, cap;
    spill_token_logprob *lp; /* not streamed: the tokens' log probabilities so far, when asked */
    int n_lp, cap_lp;
    size_t text_offset;      /* stream: the characters of the tokens whose log probabilities were sent */
} choice;

struct gen {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int refs;
    char *buf;          /* stream: server-sent events not sent yet */
    size_t len, cap, off;
    int n, n_done, done; /* choices; those finished; all of them finished */
    int failed;          /* a choice ended in an error */
    choice *ch;
    int n_prompt;
    spill_api_req req;  /* chat, stream, include_usage, logprobs, n */
    const spill_tokenizer *tok;
    char id[40], model[256];
    long created;
    spill_http *h;
    spill_sched *sched;
    int fd;
    int cancelling; /* a choice failed and the others were cancelled (the HTTP side's) */
};

static void gen_unref(gen *g) {
    pthread_mutex_lock(&g->lock);
    int left = --g->refs;
    pthread_mutex_unlock(&g->lock);
    if (left) return;
    spill_api_req_free(&g->req);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cv);
    free(g->buf);
    for (int i = 0; i < g->n; i++) free(g->ch[i].text), free(g->ch[i].lp);
    free(g->ch);
    free(g);
}

/* s[0..n) after *buf's *len bytes, kept NUL-terminated; out of memory: the text is cut short rather than
   the server brought down */
static void append(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t c = (*len + n + 1) * 2;
        char *b = realloc(*buf, c);
        if (!b) return;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = 0;
}

/* under g->lock: events to send */
static void gen_append(gen *g, const char *s, size_t n) {
    if (g->off && g->off == g->len) g->off = g->len = 0; /* all sent: start over */
    append(&g->buf, &g->len, &g->cap, s, n);
}

static void cancel_all(gen *g) {
    for (int i = 0; i < g->n; i++) spill_sched_cancel(g->sched, g->ch[i].sched_id); /* a no-op once finished */
}

/* the usage's completion tokens: every sequence's, sent or not (best_of), under g->lock or once all ended */
static int generated(const gen *g) {
    int n = 0;
    for (int i = 0; i < g->n; i++) n += g->ch[i].n_gen;
    return n;
}

/* the scheduler's sink, on its thread: one choice's text */
static void sink(void *user, const char *text, size_t len, int n_tokens, const spill_token_logprob *lp, int n_lp,
                 spill_finish finish) {
    choice *c = user;
    gen *g = c->g;
    pthread_mutex_lock(&g->lock);
    c->n_gen += n_tokens;
    int last = finish != SPILL_FINISH_NONE, all = last && g->n_done + 1 == g->n;
    int after_error = g->failed; /* streamed: once a choice failed, the others (being cancelled) send nothing */
    if (finish == SPILL_FINISH_ERROR) g->failed = 1;
    if (!g->req.stream) {
        if (finish == SPILL_FINISH_ERROR) c->len = 0; /* the answer is the message alone (not after an echoed prompt) */
        append(&c->text, &c->len, &c->cap, text, len);
        if (n_lp && c->n_lp + n_lp > c->cap_lp) {
            int cap = (c->n_lp + n_lp) * 2;
            spill_token_logprob *p = realloc(c->lp, sizeof *p * (size_t)cap);
            if (p) c->lp = p, c->cap_lp = cap;
        }
        if (n_lp && c->n_lp + n_lp <= c->cap_lp) { /* out of memory: the log probabilities are cut short, as the text */
            memcpy(c->lp + c->n_lp, lp, sizeof *lp * (size_t)n_lp);
            c->n_lp += n_lp;
        }
    } else if (len || n_lp || last || c->first) {
        if (after_error) len = 0, n_lp = 0, c->first = 0;
        char *ev = NULL;
        size_t evn = 0;
        FILE *f = open_memstream(&ev, &evn);
        if (f) {
            if (finish == SPILL_FINISH_ERROR && !after_error) { /* one error event, whichever choice fails first */
                spill_api_err e = {.status = 500};
                snprintf(e.msg, sizeof e.msg, "%.*s", (int)(len > 900 ? 900 : len), text);
                fputs("data: ", f);
                spill_api_write_error(f, &e);
                fputs("\n\n", f);
            } else if (!after_error) {
                if (c->first && g->req.echo && finish != SPILL_FINISH_CANCELLED) {
                    /* the prompt, in a chunk of its own; with logprobs, this first call carries the prompt
                       tokens' (spill_request.prompt_logprobs) */
                    int n_plp = g->req.logprobs ? n_lp : 0;
                    spill_api_write_chunk(f, &g->req, g->id, g->created, g->model, c->index, 1, g->req.echo_text,
                                          g->req.echo_len, g->tok, lp, n_plp, &c->text_offset, SPILL_FINISH_NONE);
                    lp = n_lp > n_plp ? lp + n_plp : NULL;
                    n_lp -= n_plp;
                    c->first = 0;
                }
                int fin = finish == SPILL_FINISH_CANCELLED ? SPILL_FINISH_STOP : finish;
                if (len || n_lp || last || c->first)
                    spill_api_write_chunk(f, &g->req, g->id, g->created, g->model, c->index, c->first, text, len, g->tok,
                                          lp, n_lp, &c->text_offset, fin);
            }
            if (all) { /* the last choice's end: the usage (with include_usage, none after an error), then the end */
                if (g->req.include_usage && !g->failed) {
                    spill_api_write_usage_chunk(f, &g->req, g->id, g->created, g->model, g->n_prompt, generated(g));
                }
                fputs("data: [DONE]\n\n", f);
            }
            if (!fclose(f)) gen_append(g, ev, evn);
            free(ev);
        }
        c->first = 0;
    }
    if (last) {
        c->finish = finish;
        g->n_done++;
        g->done = all;
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->lock);
    if (last) gen_unref(g); /* the sink's reference */
}

/* the client closed its side (a read would return end of file) */
static int peer_closed(int fd) {
    if (fd < 0) return 0;
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* wait (under g->lock) for news, a tenth of a second at a time; 1 when the client went away */
static int wait_news(gen *g) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000 * 1000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_cond_timedwait(&g->cv, &g->lock, &ts);
    return peer_closed(g->fd);
}

/* a streamed answer: the events as they come */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gen *g = cls;
    pthread_mutex_lock(&g->lock);
    while (g->off == g->len && !g->done)
        if (wait_news(g)) {
            pthread_mutex_unlock(&g->lock);
            cancel_all(g);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    int cancel = g->failed && !g->cancelling; /* the answer has failed: the other choices stop */
    if (cancel) g->cancelling = 1;
    if (g->off == g->len) {
        pthread_mutex_unlock(&g->lock);
        if (cancel) cancel_all(g);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    size_t n = g->len - g->off < max ? g->len - g->off : max;
    memcpy(buf, g->buf + g->off, n);
    g->off += n;
    pthread_mutex_unlock(&g->lock);
    if (cancel) cancel_all(g);
    return (ssize_t)n;
}

static void stream_done(void *cls) {
    gen *g = cls;
    cancel_all(g); /* a no-op for those finished */
    spill_http *h = g->h;
    gen_unref(g);
    pthread_mutex_lock(&h->lock);
    h->active--;
    pthread_mutex_unlock(&h->lock);
}

/* ---- responses ---- */

static enum MHD_Result send_buf(struct MHD_Connection *c, int status, const char *type, char *body, size_t n,
                                int retry_after, const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", type);
    if (retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", s);
    }
    if (allow) MHD_add_response_header(r, "Allow", allow); /* a 405's (RFC 9110) */
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result send_error(spill_http *h, struct MHD_Connection *c, const spill_api_err *e) {
    char *body = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&body, &n);
    if (!f) return MHD_NO;
    spill_api_write_error(f, e);
    fclose(f);
    pthread_mutex_lock(&h->lock);
    h->http_errors++;
    pthread_mutex_unlock(&h->lock);
    return send_buf(c, e->status, "application/json", body, n, e->status == 429 || e->status == 503 ? h->p.retry_after_s : 0,
                    e->allow[0] ? e->allow : NULL);
}

static enum MHD_Result send_text(struct MHD_Connection *c, int status, const char *type, const char *text) {
    char *b = strdup(text);
    return b ? send_buf(c, status, type, b, strlen(b), 0, NULL) : MHD_NO;
}

/* GET /v1/models (one: 0) and GET /v1/models/{id} (one: 1) */
static enum MHD_Result models(spill_http *h, struct MHD_Connection *c, int one) {
    char *body = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&body, &n);
    if (!f) return MHD_NO;
    fputs(one ? "{\"id\": " : "{\"object\": \"list\", \"data\": [{\"id\": ", f);
    spill_api_write_str(f, h->model_name, strlen(h->model_name));
    fprintf(f, ", \"object\": \"model\", \"created\": %ld, \"owned_by\": \"spill\", \"context_length\": %d}%s",
            h->created, spill_engine_ctx(h->p.engine), one ? "" : "]}");
    fclose(f);
    return send_buf(c, 200, "application/json", body, n, 0, NULL);
}

/* Prometheus text exposition */
static enum MHD_Result metrics(spill_http *h, struct MHD_Connection *c) {
    spill_sched_stats st;
    spill_sched_get_stats(h->p.sched, &st);
    spill_engine_stats es;
    spill_engine_get_stats(h->p.engine, &es);
    pthread_mutex_lock(&h->lock);
    uint64_t http_requests = h->http_requests, http_errors = h->http_errors;
    int active = h->active;
    pthread_mutex_unlock(&h->lock);
    double up = spill_now() - h->t0;
    char *body = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&body, &n);
    if (!f) return MHD_NO;
#define M(name, type, help, fmt, ...) fprintf(f, "# HELP " name " " help "\n# TYPE " name " " type "\n" name fmt "\n", __VA_ARGS__)
    M("spill_uptime_seconds", "gauge", "Seconds since the server started.", " %.3f", up);
    M("spill_http_requests_total", "counter", "HTTP requests received.", " %llu", (unsigned long long)http_requests);
    M("spill_http_errors_total", "counter", "HTTP requests answered with an error status.", " %llu", (unsigned long long)http_errors);
    M("spill_requests_total", "counter", "Generation requests accepted.", " %llu", (unsigned long long)st.requests);
    M("spill_requests_finished_total", "counter", "Generation requests finished (any reason).", " %llu", (unsigned long long)st.finished);
    M("spill_requests_cancelled_total", "counter", "Requests cancelled (client gone, shutdown).", " %llu", (unsigned long long)st.cancelled);
    M("spill_requests_rejected_total", "counter", "Requests refused because the queue was full.", " %llu", (unsigned long long)st.rejected);
    M("spill_preemptions_total", "counter", "Sequences preempted when the KV cache ran out.", " %llu", (unsigned long long)st.preempted);
    M("spill_prompt_tokens_total", "counter", "Prompt tokens accepted.", " %llu", (unsigned long long)st.prompt_tokens);
    M("spill_prompt_tokens_reused_total", "counter", "Prompt positions shared from a running sequence instead of computed.",
      " %llu", (unsigned long long)st.reused_tokens);
    M("spill_generated_tokens_total", "counter", "Tokens generated.", " %llu", (unsigned long long)st.generated_tokens);
    M("spill_steps_total", "counter", "Engine steps.", " %llu", (unsigned long long)st.steps);
    M("spill_step_tokens_total", "counter", "Tokens over all engine steps (divided by steps: the mean batch).", " %llu",
      (unsigned long long)st.step_tokens);
    M("spill_busy_seconds_total", "counter", "Seconds spent in engine steps.", " %.3f", st.busy_s);
    M("spill_tokens_per_second", "gauge", "Generated tokens per second of engine time.", " %.3f",
      st.busy_s > 0 ? (double)st.generated_tokens / st.busy_s : 0.0);
    M("spill_queue_length", "gauge", "Requests waiting for a slot.", " %d", st.waiting);
    M("spill_requests_running", "gauge", "Requests holding a slot.", " %d", st.running);
    M("spill_step_token_cap", "gauge", "With --itl-target: the tokens a step may hold within it, as timed so far (0: no target).",
      " %d", st.step_cap);
    M("spill_http_active", "gauge", "Answers not fully sent yet.", " %d", active);
    fprintf(f, "# HELP spill_kv_blocks KV cache blocks by state.\n# TYPE spill_kv_blocks gauge\n"
               "spill_kv_blocks{state=\"free\"} %d\nspill_kv_blocks{state=\"used\"} %d\n",
            st.kv_blocks_free, st.kv_blocks - st.kv_blocks_free);
    fprintf(f, "# HELP spill_kv_bytes KV cache bytes by memory tier.\n# TYPE spill_kv_bytes gauge\n"
               "spill_kv_bytes{tier=\"hbm\"} %llu\nspill_kv_bytes{tier=\"host\"} %llu\n",
            (unsigned long long)st.kv.bytes[SPILL_TIER_HBM], (unsigned long long)st.kv.bytes[SPILL_TIER_HOST]);
    fprintf(f, "# HELP spill_weight_bytes Weight bytes by memory tier.\n# TYPE spill_weight_bytes gauge\n"
               "spill_weight_bytes{tier=\"hbm\"} %llu\nspill_weight_bytes{tier=\"host\"} %llu\n",
            (unsigned long long)es.weights[SPILL_TIER_HBM], (unsigned long long)es.weights[SPILL_TIER_HOST]);
#undef M
    fclose(f);
    return send_buf(c, 200, "text/plain; version=0.0.4", body, n, 0, NULL);
}

/* POST /v1/completions and /v1/chat/completions */
/* a sequence's mean log probability a token (of those it generated; -inf for none) */
static double mean_logprob(const gen *g, const choice *c) {
    int k = g->req.echo && g->req.logprobs ? g->n_prompt : 0; /* the prompt's records come first */
    if (k > c->n_lp) k = c->n_lp;
    double sum = 0;
    for (int i = k; i < c->n_lp; i++) sum += c->lp[i].logprob;
    return c->n_lp > k ? sum / (c->n_lp - k) : -INFINITY;
}

/* the sequences in the order they are sent: as generated when all are (best_of = n), else the likeliest a
   token first, the lower index first among equals (best_of's ranking) */
static void best_first(const gen *g, int *order) {
    double score[SPILL_API_MAX_N];
    for (int i = 0; i < g->n; i++) order[i] = i, score[i] = g->n > g->req.n ? mean_logprob(g, &g->ch[i]) : 0;
    for (int i = 1; i < g->n; i++) /* insertion sort: stable, and n is at most 64 */
        for (int k = i; k > 0 && score[order[k]] > score[order[k - 1]]; k--) {
            int t = order[k];
            order[k] = order[k - 1], order[k - 1] = t;
        }
}

static enum MHD_Result generate(spill_http *h, struct MHD_Connection *c, int chat, const char *body, size_t len) {
    spill_api_err e;
    gen *g = calloc(1, sizeof *g);
    if (!g) return MHD_NO;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->refs = 1; /* the HTTP side's */
    g->h = h;
    g->sched = h->p.sched;
    const spill_model *m = spill_engine_model(h->p.engine);
    if (spill_api_parse(chat, body, len, m, spill_engine_ctx(h->p.engine), &g->req, &e)) {
        gen_unref(g);
        return send_error(h, c, &e);
    }
    if (!(g->ch = calloc((size_t)g->req.best_of, sizeof *g->ch))) {
        gen_unref(g);
        return MHD_NO;
    }
    g->n = g->req.best_of; /* sequences: best_of, of which n are sent */
    for (int i = 0; i < g->n; i++) g->ch[i] = (choice){.g = g, .index = i, .first = 1};
    pthread_mutex_lock(&h->lock);
    int draining = h->draining, id = ++h->next_id;
    if (!draining) h->active++;
    pthread_mutex_unlock(&h->lock);
    if (draining) {
        gen_unref(g);
        spill_api_err busy = {.status = 503, .msg = "the server is shutting down"};
        return send_error(h, c, &busy);
    }
    snprintf(g->id, sizeof g->id, "%s-%d", chat ? "chatcmpl" : "cmpl", id);
    snprintf(g->model, sizeof g->model, "%s", h->model_name);
    g->created = (long)time(NULL);
    g->n_prompt = g->req.n_tokens;
    g->tok = &m->tok;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    g->fd = ci ? ci->connect_fd : -1;
    spill_logit_adjust adjust = {g->req.bias_id, g->req.bias, g->req.n_bias, g->req.presence_penalty,
                                 g->req.frequency_penalty, g->req.repeat_penalty, g->req.repeat_window};
    spill_request r = {g->req.tokens, g->req.n_tokens, g->req.max_tokens, g->req.temperature, g->req.top_p,
                       g->req.top_k, g->req.seed_set ? g->req.seed : (uint64_t)time(NULL) ^ (uint64_t)id << 20,
                       (const char *const *)g->req.stop, g->req.n_stop, g->req.logprobs || g->n > g->req.n, g->req.top_logprobs,
                       g->req.echo && g->req.logprobs, &adjust};
    if (g->req.echo && !g->req.stream) /* each text begins with it */
        for (int i = 0; i < g->n; i++) append(&g->ch[i].text, &g->ch[i].len, &g->ch[i].cap, g->req.echo_text, g->req.echo_len);
    spill_err err = {{0}};
    int full = 0, ids[SPILL_API_MAX_N] = {0};
    void *users[SPILL_API_MAX_N];
    for (int i = 0; i < g->n; i++) users[i] = &g->ch[i];
    g->refs += g->n; /* the sinks', once submitted */
    int slots, queue;
    spill_sched_limits(h->p.sched, &slots, &queue);
    const int too_many = g->n > slots + queue; /* more than the server could ever hold at once: no retry helps */
    if (g->req.echo && g->req.max_tokens < 0 && !g->req.logprobs) {
        /* the prompt back and nothing more: no need of the model (sched_id stays 0, which no request has) */
        for (int i = 0; i < g->n; i++) sink(&g->ch[i], "", 0, 0, NULL, 0, SPILL_FINISH_LENGTH);
    } else if (too_many || spill_sched_submit_n(h->p.sched, &r, g->n, sink, users, ids, &full, &err)) {
        g->refs -= g->n;
        pthread_mutex_lock(&h->lock);
        h->active--;
        pthread_mutex_unlock(&h->lock);
        spill_api_err ee = {.status = full ? 429 : 400};
        if (too_many) {
            const char *name = g->n > g->req.n ? "best_of" : "n";
            snprintf(ee.msg, sizeof ee.msg, "%s is %d; this server runs %d sequences and queues %d more", name, g->n,
                     slots, queue);
            snprintf(ee.param, sizeof ee.param, "%s", name);
        } else {
            snprintf(ee.msg, sizeof ee.msg, "%s", err.msg);
            if (full && strstr(err.msg, "shutting down")) ee.status = 503;
        }
        gen_unref(g);
        return send_error(h, c, &ee);
    }
    for (int i = 0; i < g->n; i++) g->ch[i].sched_id = ids[i]; /* read by cancel_all only, on this side */
    if (g->req.stream) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, g, stream_done);
        if (!resp) {
            stream_done(g);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    /* not streamed: wait for the end here (this connection's own thread), then answer at once */
    pthread_mutex_lock(&g->lock);
    int gone = 0;
    while (!g->done && !g->failed && !gone) gone = wait_news(g);
    int failed = g->failed;
    spill_api_err ee = {.status = 500, .msg = "generation failed"};
    for (int i = 0; failed && i < g->n; i++) /* the sinks of the others may still run: read under the lock */
        if (g->ch[i].finish == SPILL_FINISH_ERROR && g->ch[i].text)
            snprintf(ee.msg, sizeof ee.msg, "%.900s", g->ch[i].text);
    pthread_mutex_unlock(&g->lock);
    enum MHD_Result rc;
    if (gone || failed) cancel_all(g); /* a failed answer is the error: the other choices stop */
    if (gone) {
        rc = MHD_NO;
    } else if (failed) {
        rc = send_error(h, c, &ee);
    } else {
        char *out = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&out, &n);
        spill_api_choice ch[SPILL_API_MAX_N];
        int order[SPILL_API_MAX_N];
        best_first(g, order);
        for (int i = 0; i < g->req.n; i++) {
            const choice *ci = &g->ch[order[i]];
            ch[i] = (spill_api_choice){ci->text ? ci->text : "", ci->len, ci->lp, ci->n_lp, ci->finish};
        }
        if (!f) {
            rc = MHD_NO;
        } else {
            spill_api_write_response(f, &g->req, g->id, g->created, g->model, ch, g->req.n, g->tok, g->n_prompt, generated(g));
            fclose(f);
            rc = send_buf(c, 200, "application/json", out, n, 0, NULL);
        }
    }
    pthread_mutex_lock(&h->lock);
    h->active--;
    pthread_mutex_unlock(&h->lock);
    gen_unref(g);
    return rc;
}

/* ---- the access handler ---- */

typedef struct body {
    char *buf;
    size_t len, cap;
    int too_big;
} body;

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    spill_http *h = cls;
    body *b = *con_cls;
    if (!b) { /* the headers: make room for the body */
        if (!(b = calloc(1, sizeof *b))) return MHD_NO;
        *con_cls = b;
        pthread_mutex_lock(&h->lock);
        h->http_requests++;
        pthread_mutex_unlock(&h->lock);
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (b->too_big || b->len + n > h->p.max_body) {
            b->too_big = 1;
            return MHD_YES;
        }
        if (b->len + n + 1 > b->cap) {
            size_t cap = (b->len + n + 1) * 2;
            if (cap > h->p.max_body + 1) cap = h->p.max_body + 1;
            char *nb = realloc(b->buf, cap);
            if (!nb) return MHD_NO;
            b->buf = nb;
            b->cap = cap;
        }
        memcpy(b->buf + b->len, upload, n);
        b->len += n;
        return MHD_YES;
    }
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) {
        if (!get) goto not_allowed;
        pthread_mutex_lock(&h->lock);
        int draining = h->draining;
        pthread_mutex_unlock(&h->lock);
        return draining ? send_text(c, 503, "application/json", "{\"status\": \"shutting down\"}")
                        : send_text(c, 200, "application/json", "{\"status\": \"ok\"}");
    }
    if (!strcmp(url, "/v1/models")) {
        if (!get) goto not_allowed;
        return models(h, c, 0);
    }
    if (!strncmp(url, "/v1/models/", 11)) {
        if (!get) goto not_allowed;
        if (!strcmp(url + 11, h->model_name)) return models(h, c, 1);
        spill_api_err e = {.status = 404, .param = "model"};
        snprintf(e.msg, sizeof e.msg, "the model '%.200s' does not exist; this server has '%.200s'", url + 11,
                 h->model_name);
        return send_error(h, c, &e);
    }
    if (!strcmp(url, "/metrics")) {
        if (!get) goto not_allowed;
        return metrics(h, c);
    }
    int chat = !strcmp(url, "/v1/chat/completions");
    if (chat || !strcmp(url, "/v1/completions")) {
        if (!post) goto not_allowed;
        if (b->too_big) {
            spill_api_err e = {.status = 413};
            snprintf(e.msg, sizeof e.msg, "the request body is larger than %zu bytes", h->p.max_body);
            return send_error(h, c, &e);
        }
        return generate(h, c, chat, b->buf ? b->buf : "", b->len);
    }
    {
        spill_api_err e = {.status = 404};
        snprintf(e.msg, sizeof e.msg, "no route %.200s %.200s (the API has /v1/completions, /v1/chat/completions, "
                                      "/v1/models, /v1/models/{id}, /health, /metrics)", method, url);
        return send_error(h, c, &e);
    }
not_allowed: {
    spill_api_err e = {.status = 405};
    const char *allow = !strcmp(url, "/v1/completions") || !strcmp(url, "/v1/chat/completions") ? "POST" : "GET";
    snprintf(e.msg, sizeof e.msg, "%.200s takes %s, not %.20s", url, allow, method);
    snprintf(e.allow, sizeof e.allow, "%s", allow);
    return send_error(h, c, &e);
}
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode code) {
    (void)cls, (void)c, (void)code;
    body *b = *con_cls;
    if (b) free(b->buf);
    free(b);
    *con_cls = NULL;
}

int spill_http_start(spill_http **out, const spill_http_params *p, spill_err *err) {
    *out = NULL;
    spill_http *h = calloc(1, sizeof *h);
    if (!h) return spill_err_set(err, "out of memory");
    h->p = *p;
    if (!h->p.max_body) h->p.max_body = 8u << 20;
    if (!h->p.max_connections) h->p.max_connections = 256;
    if (!h->p.retry_after_s) h->p.retry_after_s = 1;
    snprintf(h->model_name, sizeof h->model_name, "%s", p->model_name ? p->model_name : "spill");
    h->t0 = spill_now();
    h->created = (long)time(NULL);
    pthread_mutex_init(&h->lock, NULL);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)p->port);
    const char *host = p->host && *p->host ? p->host : "127.0.0.1";
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        free(h);
        return spill_err_set(err, "--host '%s' is not an IPv4 address (e.g. 127.0.0.1 or 0.0.0.0)", host);
    }
    if (p->port < 0 || p->port > 65535) {
        free(h);
        return spill_err_set(err, "--port %d: 0..65535 (0 = any free port)", p->port);
    }
    h->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
                            NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_NOTIFY_COMPLETED,
                            completed, h, MHD_OPTION_CONNECTION_LIMIT, (unsigned)h->p.max_connections,
                            MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!h->d) {
        int e = errno;
        pthread_mutex_destroy(&h->lock);
        free(h);
        return spill_err_set(err, "cannot listen on %s:%d: %s", host, p->port, e ? strerror(e) : "libmicrohttpd refused");
    }
    *out = h;
    return 0;
}

int spill_http_port(const spill_http *h) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? i->port : -1;
}

void spill_http_drain(spill_http *h) {
    pthread_mutex_lock(&h->lock);
    h->draining = 1;
    pthread_mutex_unlock(&h->lock);
}

int spill_http_active(spill_http *h) {
    pthread_mutex_lock(&h->lock);
    int n = h->active;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void spill_http_stop(spill_http *h) {
    if (!h) return;
    MHD_stop_daemon(h->d);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
