/* spill-bench serve: the same client load against one or more OpenAI-compatible servers (spill-server,
 * llama.cpp's), at each concurrency: aggregate generated tokens per second, time to first token and
 * the time between tokens (p50, p99), from streamed /v1/completions requests. A client is a thread with
 * libcurl; a token is a server-sent event that carries text (a server that sends several tokens in
 * one event is counted by the usage it reports, when it reports one). */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <strings.h>

#include "cli.h"
#include "spill_json.h"

typedef struct sample {
    double ttft;          /* seconds to the first token */
    double *gaps;         /* seconds between tokens */
    int n_gaps, cap_gaps;
    int tokens, events;
    int ok;
    char err[160];
} sample;

typedef struct client_ctx {
    sample *s;
    double t0, last;
    char line[1 << 16];
    size_t ll;
    int usage_tokens;
} client_ctx;

static void add_gap(sample *s, double g) {
    if (s->n_gaps == s->cap_gaps) {
        int cap = s->cap_gaps ? 2 * s->cap_gaps : 64;
        double *n = realloc(s->gaps, sizeof *n * (size_t)cap);
        if (!n) return;
        s->gaps = n;
        s->cap_gaps = cap;
    }
    s->gaps[s->n_gaps++] = g;
}

/* one server-sent event line "data: {...}" */
static void on_event(client_ctx *c, const char *data, size_t n) {
    if (n >= 6 && !memcmp(data, "[DONE]", 6)) return;
    spill_json *j;
    spill_err err;
    if (spill_json_parse(data, n, "an event", &j, &err)) return;
    const spill_json *ch = spill_json_get_type(j, "choices", SPILL_JSON_ARRAY);
    const spill_json *text = ch && ch->n ? spill_json_get_type(&ch->items[0], "text", SPILL_JSON_STRING) : NULL;
    const spill_json *usage = spill_json_get_type(j, "usage", SPILL_JSON_OBJECT);
    const spill_json *ct = usage ? spill_json_get_type(usage, "completion_tokens", SPILL_JSON_NUMBER) : NULL;
    if (ct) c->usage_tokens = (int)ct->number;
    if (text && text->len) {
        double now = spill_now();
        if (!c->s->events) c->s->ttft = now - c->t0;
        else add_gap(c->s, now - c->last);
        c->last = now;
        c->s->events++;
    }
    spill_json_free(j);
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *user) {
    client_ctx *c = user;
    size_t n = size * nmemb;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            if (c->ll > 6 && !memcmp(c->line, "data: ", 6)) on_event(c, c->line + 6, c->ll - 6);
            c->ll = 0;
        } else if (c->ll + 1 < sizeof c->line) {
            c->line[c->ll++] = p[i];
        }
    }
    return n;
}

typedef struct level_ctx {
    const char *url, *body_fmt;
    const char *const *prompts;
    int n_prompts, max_tokens, n_requests;
    int next;
    pthread_mutex_t lock;
    sample *samples;
} level_ctx;

static void *client_main(void *arg) {
    level_ctx *L = arg;
    CURL *h = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&L->lock);
        int i = L->next < L->n_requests ? L->next++ : -1;
        pthread_mutex_unlock(&L->lock);
        if (i < 0 || !h) break;
        sample *s = &L->samples[i];
        char body[8192];
        char prompt[4096];
        /* the prompt as a JSON string (the prompts are plain ASCII without quotes or backslashes);
           repeat_penalty 1 (off) because llama-cpp-python's server applies 1.1 unless told, while spill-server
           and OpenAI's API default to no penalty: both servers then decode plain greedy */
        snprintf(prompt, sizeof prompt, "%s", L->prompts[i % L->n_prompts]);
        snprintf(body, sizeof body, "{\"model\": \"bench\", \"prompt\": \"%s\", \"max_tokens\": %d, \"temperature\": 0, "
                                    "\"repeat_penalty\": 1, \"stream\": true, \"stream_options\": {\"include_usage\": true}}",
                 prompt, L->max_tokens);
        client_ctx *c = calloc(1, sizeof *c);
        if (!c) break;
        c->s = s;
        struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, L->url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 600L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        c->t0 = spill_now();
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK) snprintf(s->err, sizeof s->err, "%s", curl_easy_strerror(rc));
        else if (status != 200) snprintf(s->err, sizeof s->err, "HTTP %ld", status);
        else s->ok = s->events > 0;
        s->tokens = c->usage_tokens > s->events ? c->usage_tokens : s->events;
        curl_slist_free_all(hd);
        free(c);
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
    if (!n) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

typedef struct result {
    int conc, ok, failed, tokens;
    double wall, tok_s, ttft50, ttft99, itl50, itl99;
    char err[160];
} result;

static int run_level(const char *url, int conc, int n_requests, int max_tokens, const char *const *prompts, int n_prompts,
                     result *r) {
    memset(r, 0, sizeof *r);
    r->conc = conc;
    level_ctx L = {url, NULL, prompts, n_prompts, max_tokens, n_requests, 0, PTHREAD_MUTEX_INITIALIZER, NULL};
    L.samples = calloc((size_t)n_requests, sizeof *L.samples);
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    if (!L.samples || !th) return -1;
    double t0 = spill_now();
    for (int i = 0; i < conc; i++) pthread_create(&th[i], NULL, client_main, &L);
    for (int i = 0; i < conc; i++) pthread_join(th[i], NULL);
    r->wall = spill_now() - t0;
    double *ttft = calloc((size_t)n_requests, sizeof *ttft), *gaps = NULL;
    int n_ttft = 0, n_gaps = 0;
    for (int i = 0; i < n_requests; i++) {
        sample *s = &L.samples[i];
        if (!s->ok) {
            r->failed++;
            if (!r->err[0]) snprintf(r->err, sizeof r->err, "%s", s->err[0] ? s->err : "no tokens");
            free(s->gaps);
            continue;
        }
        r->ok++;
        r->tokens += s->tokens;
        ttft[n_ttft++] = s->ttft;
        double *ng = realloc(gaps, sizeof *gaps * (size_t)(n_gaps + s->n_gaps + 1));
        if (ng) {
            gaps = ng;
            memcpy(gaps + n_gaps, s->gaps, sizeof *gaps * (size_t)s->n_gaps);
            n_gaps += s->n_gaps;
        }
        free(s->gaps);
    }
    r->tok_s = r->wall > 0 ? r->tokens / r->wall : 0;
    r->ttft50 = pct(ttft, n_ttft, 0.5), r->ttft99 = pct(ttft, n_ttft, 0.99);
    r->itl50 = pct(gaps, n_gaps, 0.5), r->itl99 = pct(gaps, n_gaps, 0.99);
    free(ttft), free(gaps), free(L.samples), free(th);
    return 0;
}

/* prompts of ordinary text, different for each request */
static const char *const prompts[] = {
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "The history of the printing press begins in the fifteenth century, when",
    "Write a short story about a robot who learns to paint.",
    "Explain how a refrigerator keeps food cold, step by step.",
    "The three most important inventions of the last hundred years are",
    "In the morning the market was already full of people buying",
    "A recipe for bread needs flour, water, salt and yeast. First you",
    "The river ran through the valley and the children liked to",
};

int spill_bench_serve(int argc, char **argv) {
    spill_bench_serve_opts o;
    spill_err err = {{0}};
    int rc = spill_bench_serve_cli(&o, argc, argv, stdout, &err);
    if (rc) {
        if (rc < 0) fprintf(stderr, "spill-bench serve: %s\n", err.msg);
        return rc < 0 ? 2 : 0;
    }
    const char *const *urls = o.url;
    int n_urls = o.n_urls, n_conc = o.n_conc, max_tokens = o.max_tokens, per = o.per, min_requests = o.min_requests;
    const int *conc = o.conc;
    char (*label)[128] = o.label;
    curl_global_init(CURL_GLOBAL_ALL);
    result res[8][32];
    int n_p = (int)(sizeof prompts / sizeof *prompts);
    for (int k = 0; k < n_conc; k++)
        for (int u = 0; u < n_urls; u++) { /* the servers take turns at each level: the same load, close in time */
            char full[1024];
            snprintf(full, sizeof full, "%s/v1/completions", urls[u]);
            int n_req = conc[k] * per > min_requests ? conc[k] * per : min_requests;
            fprintf(stderr, "spill-bench serve: %s, %d clients, %d requests ...", label[u], conc[k], n_req);
            run_level(full, conc[k], n_req, max_tokens, prompts, n_p, &res[u][k]);
            const result *r = &res[u][k];
            fprintf(stderr, " %.1f tok/s, ttft p50 %.0f ms, itl p50 %.1f ms%s%s\n", r->tok_s, r->ttft50 * 1e3,
                    r->itl50 * 1e3, r->failed ? ", failed: " : "", r->failed ? r->err : "");
        }
    curl_global_cleanup();
    if (o.json) {
        printf("{\"max_tokens\": %d, \"servers\": [", max_tokens);
        for (int u = 0; u < n_urls; u++) {
            printf("%s\n {\"label\": ", u ? "," : "");
            spill_json_write_str(stdout, label[u]);
            printf(", \"levels\": [");
            for (int k = 0; k < n_conc; k++) {
                const result *r = &res[u][k];
                printf("%s{\"concurrency\": %d, \"ok\": %d, \"failed\": %d, \"tokens\": %d, \"seconds\": %.4f, \"tok_s\": %.4f, "
                       "\"ttft_p50_s\": %.5f, \"ttft_p99_s\": %.5f, \"itl_p50_s\": %.5f, \"itl_p99_s\": %.5f}",
                       k ? ", " : "", r->conc, r->ok, r->failed, r->tokens, r->wall, r->tok_s, r->ttft50, r->ttft99, r->itl50,
                       r->itl99);
            }
            printf("]}");
        }
        printf("\n]}\n");
        return 0;
    }
    printf("| concurrency | server | tok/s | vs %s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | requests ok/failed |\n",
           label[n_urls > 1 ? 1 : 0]);
    printf("|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
    for (int k = 0; k < n_conc; k++)
        for (int u = 0; u < n_urls; u++) {
            const result *r = &res[u][k], *peer = &res[n_urls > 1 ? 1 : 0][k];
            printf("| %d | %s | %.1f | %.2fx | %.0f | %.0f | %.1f | %.1f | %d/%d |\n", r->conc, label[u], r->tok_s,
                   peer->tok_s > 0 ? r->tok_s / peer->tok_s : 0, r->ttft50 * 1e3, r->ttft99 * 1e3, r->itl50 * 1e3,
                   r->itl99 * 1e3, r->ok, r->failed);
        }
    return 0;
}
