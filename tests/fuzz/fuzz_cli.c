/* Every program's own command line (tools/cli.h): the first byte picks the program or subcommand,
 * the rest are its argv words separated by NUL. The flags start from the SPILL_* defaults, not the
 * environment; --help's text goes to a discarding stream. After a parse that says "run", what the
 * program goes on to use must hold: numbers in their ranges, enums valid, strings pointing into argv
 * (or at the defaults) and the cross-flag rules each program checks before it loads anything. */
#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "fuzz.h"
#include "spill_policy.h"

enum { MAX_WORDS = 64 };

static const char *in_lo, *in_hi; /* the argv words' buffer */

/* NULL, a word of argv, or the default it started as */
static int from_argv(const char *p, const char *def) {
    return !p || p == def || (p >= in_lo && p < in_hi);
}

static int is_word(const char *p, char **argv, int argc) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(p, argv[i])) return 1;
    return 0;
}

static int terminated(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

/* a value of a SPILL_OPT_CHOICE option is one of its table's choices */
static int choice_ok(const char *name, const char *v) {
    for (const spill_option_def *d = spill_option_table; d->name; d++) {
        if (strcmp(d->name, name)) continue;
        for (const char *c = d->choices; *c;) {
            size_t l = strcspn(c, "|");
            if (strlen(v) == l && !strncmp(c, v, l)) return 1;
            c += l + (c[l] == '|');
        }
        return 0;
    }
    return 0;
}

static void check_env(const spill_options *e) {
    FUZZ_CHECK(terminated(e->backend, sizeof e->backend) && choice_ok("backend", e->backend));
    FUZZ_CHECK(terminated(e->device, sizeof e->device) && choice_ok("device", e->device));
    FUZZ_CHECK(terminated(e->policy, sizeof e->policy) && choice_ok("policy", e->policy));
    FUZZ_CHECK(terminated(e->alloc_log, sizeof e->alloc_log));
    FUZZ_CHECK(terminated(e->tokenizer_pre, sizeof e->tokenizer_pre));
    FUZZ_CHECK(e->threads >= 0 && e->threads <= 1024 && e->host_node >= -1);
}

static int pow2_or_0(int x) { return x >= 0 && !(x & (x - 1)); }
static int flag(int x) { return x == 0 || x == 1; }

static int known_policy(const char *p, size_t l) {
    for (int k = 0; spill_policy_names[k]; k++)
        if (strlen(spill_policy_names[k]) == l && !strncasecmp(p, spill_policy_names[k], l)) return 1;
    return 0;
}

static void check_generate(const spill_generate_opts *o) {
    FUZZ_CHECK(from_argv(o->model, NULL) && from_argv(o->prompt, NULL) && from_argv(o->prompt_file, NULL));
    FUZZ_CHECK(from_argv(o->profile, NULL) && from_argv(o->profile_file, NULL) && from_argv(o->draft_skip, NULL));
    FUZZ_CHECK(from_argv(o->draft_file, NULL) && from_argv(o->disk_io, NULL));
    FUZZ_CHECK(o->n_predict >= 0 && o->n_predict <= 1 << 24);
    FUZZ_CHECK(o->top_k >= 0 && o->top_k <= 1 << 24);
    FUZZ_CHECK(o->threads == 0 || (o->threads >= 1 && o->threads <= 1024));
    FUZZ_CHECK(o->ctx == 0 || (o->ctx >= 1 && o->ctx <= 1 << 24));
    FUZZ_CHECK(o->batch >= 1 && o->batch <= 4096);
    FUZZ_CHECK(o->n_parallel >= 1 && o->n_parallel <= 64);
    FUZZ_CHECK(pow2_or_0(o->kv_block) && o->kv_block <= 65536);
    FUZZ_CHECK(o->draft_k >= 1 && o->draft_k <= 64 && o->draft_vocab >= 0 && o->draft_vocab <= 1 << 30);
    FUZZ_CHECK(!(o->draft_skip && o->n_parallel > 1));
    FUZZ_CHECK(!o->draft_skip || (*o->draft_skip && !o->draft_skip[strspn(o->draft_skip, "0123456789,-")]));
    FUZZ_CHECK(!o->disk_io || !strcasecmp(o->disk_io, "uring") || !strcasecmp(o->disk_io, "mmap"));
    FUZZ_CHECK(isfinite(o->temp) && o->temp >= 0 && o->temp <= 100);
    FUZZ_CHECK(o->top_p > 0 && o->top_p <= 1);
    FUZZ_CHECK(flag(o->chat) && flag(o->verbose) && flag(o->use_mmap) && flag(o->seed_set) && flag(o->policy_set));
    check_env(&o->env);
}

static void check_plan(const spill_plan_opts *o) {
    FUZZ_CHECK(!o->model != !o->config);
    FUZZ_CHECK(from_argv(o->model, NULL) && from_argv(o->config, NULL) && from_argv(o->dtype, NULL));
    FUZZ_CHECK(from_argv(o->profile_file, NULL) && o->profile && o->policy);
    FUZZ_CHECK(!strcasecmp(o->policy, "all") || known_policy(o->policy, strlen(o->policy)));
    FUZZ_CHECK(o->ctx == 0 || (o->ctx >= 1 && o->ctx <= 1 << 24));
    FUZZ_CHECK(o->batch >= 1 && o->batch <= 1 << 24 && o->prompt >= 1 && o->prompt <= 1 << 24);
    FUZZ_CHECK(flag(o->json) && flag(o->budget_set));
    FUZZ_CHECK(!o->dtype || o->config);
    check_env(&o->env);
}

static void check_server(const spill_server_opts *o) {
    FUZZ_CHECK(from_argv(o->model, NULL) && from_argv(o->profile, NULL) && from_argv(o->profile_file, NULL));
    FUZZ_CHECK(from_argv(o->name, NULL) && o->host);
    struct in_addr a4;
    FUZZ_CHECK(inet_pton(AF_INET, o->host, &a4) == 1); /* checked before the model loads */
    FUZZ_CHECK(o->port >= 0 && o->port <= 65535);
    FUZZ_CHECK(o->ctx == 0 || (o->ctx >= 1 && o->ctx <= 1 << 24));
    FUZZ_CHECK(o->batch >= 1 && o->batch <= 4096 && o->parallel >= 1 && o->parallel <= 256);
    FUZZ_CHECK(o->chunk == 0 || (o->chunk >= 1 && o->chunk <= 4096));
    FUZZ_CHECK(o->max_waiting == 0 || (o->max_waiting >= 1 && o->max_waiting <= 1 << 20));
    FUZZ_CHECK(pow2_or_0(o->kv_block) && o->kv_block <= 65536);
    FUZZ_CHECK(o->kv_blocks == 0 || (o->kv_blocks >= 1 && o->kv_blocks <= 1 << 24));
    FUZZ_CHECK(o->threads == 0 || (o->threads >= 1 && o->threads <= 1024));
    FUZZ_CHECK(flag(o->use_mmap) && flag(o->policy_set));
    check_env(&o->env);
}

/* a comma-separated list the program splits later: the flag's value as given, or the default */
static int list_ok(const char *list, const char *def, char **argv, int argc) {
    return !strcmp(list, def) || is_word(list, argv, argc);
}

/* every entry a percentage (0-1000%) or a size ("none" too where none_ok), or every entry a word of words */
static int entries_ok(const char *list, int none_ok, const char *const *words) {
    if (!*list) return 0;
    for (const char *c = list;;) {
        size_t l = strcspn(c, ",");
        char e[64];
        if (l >= sizeof e) return 0;
        snprintf(e, sizeof e, "%.*s", (int)l, c);
        uint64_t b;
        double f;
        int ok = 0;
        if (words)
            for (int k = 0; words[k]; k++) ok |= !strcasecmp(e, words[k]);
        else
            ok = (none_ok && !strcmp(e, "none")) ||
                 (!spill_bench_parse_share(e, 1e9, &b, &f) && (e[l - 1] != '%' || (f >= 0 && f <= 10)));
        if (!ok) return 0;
        if (!c[l] || !c[l + 1]) return 1; /* a trailing comma is allowed, as in every list */
        c += l + 1;
    }
}

static void check_bench(const spill_bench_opts *o, char **argv, int argc) {
    FUZZ_CHECK(o->cmd == SPILL_BENCH_TIERS || o->cmd == SPILL_BENCH_PLACEMENT);
    FUZZ_CHECK(o->f == SPILL_BENCH_TABLE || o->f == SPILL_BENCH_JSON || o->f == SPILL_BENCH_CSV);
    FUZZ_CHECK(o->size >= 1u << 20 && o->size <= 64ull << 30);
    FUZZ_CHECK(o->tier_reps >= (o->cmd == SPILL_BENCH_TIERS ? 5 : 1) && o->tier_reps <= 64);
    FUZZ_CHECK(o->reps >= 1 && o->reps <= 64);
    FUZZ_CHECK(o->prompt >= 1 && o->prompt <= 1 << 20 && o->gen >= 1 && o->gen <= 1 << 20);
    FUZZ_CHECK(o->threads == 0 || (o->threads >= 1 && o->threads <= 1024));
    FUZZ_CHECK(o->draft_k >= 1 && o->draft_k <= 63 && o->draft_vocab >= 0 && o->draft_vocab <= 1 << 30 && flag(o->cuda));
    FUZZ_CHECK(o->cmd != SPILL_BENCH_PLACEMENT || !o->model != !o->synthetic);
    FUZZ_CHECK(from_argv(o->profile_out, NULL) && from_argv(o->disk_file, NULL) && from_argv(o->model, NULL));
    FUZZ_CHECK(from_argv(o->synthetic, NULL) && from_argv(o->profile_file, NULL) && from_argv(o->plot, NULL));
    FUZZ_CHECK(from_argv(o->plan_profile, NULL) && from_argv(o->host_limits, NULL) && from_argv(o->draft_skip, NULL));
    FUZZ_CHECK(o->disk_io);
    static const char *const modes[] = {"uring", "mmap", "pagecache", NULL};
    FUZZ_CHECK(entries_ok(o->budgets, 0, NULL) && (!o->host_limits || entries_ok(o->host_limits, 1, NULL)));
    FUZZ_CHECK(entries_ok(o->disk_io, 0, modes));
    /* the lists the run splits: whole, and the policies known */
    FUZZ_CHECK(list_ok(o->budgets, "25%,50%,75%,100%", argv, argc));
    FUZZ_CHECK(list_ok(o->policies, "fault,pin,stream,auto", argv, argc));
    for (const char *c = o->policies; *c;) {
        size_t l = strcspn(c, ",");
        FUZZ_CHECK(known_policy(c, l));
        c += l + (c[l] == ',');
    }
}

static void check_serve(const spill_bench_serve_opts *o) {
    FUZZ_CHECK(o->n_urls >= 1 && o->n_urls <= SPILL_BENCH_SERVE_MAX_URLS);
    for (int u = 0; u < o->n_urls; u++) {
        FUZZ_CHECK(o->url[u] >= in_lo && o->url[u] < in_hi);
        FUZZ_CHECK(terminated(o->label[u], sizeof o->label[u]));
    }
    FUZZ_CHECK(o->n_conc >= 1 && o->n_conc <= SPILL_BENCH_SERVE_MAX_LEVELS);
    for (int k = 0; k < o->n_conc; k++) FUZZ_CHECK(o->conc[k] >= 1 && o->conc[k] <= 1024);
    FUZZ_CHECK(o->max_tokens >= 1 && o->max_tokens <= 4096 && o->per >= 1 && o->per <= 1000);
    FUZZ_CHECK(o->min_requests >= 1 && o->min_requests <= 100000 && flag(o->json));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096) return 0;
    static const char *const prog[] = {"spill-generate", "spill-info", "spill-plan", "spill-server",
                                       "spill-bench", "spill-bench", "spill-bench", "spill-bench"};
    static const char *const sub[] = {NULL, NULL, NULL, NULL, "tiers", "placement", NULL, "serve"};
    int which = data[0] % 8;
    size_t n = size - 1;
    char *buf = malloc(n + 1);
    memcpy(buf, data + 1, n);
    buf[n] = '\0';
    in_lo = buf, in_hi = buf + n + 1;
    char *argv[MAX_WORDS + 3];
    int argc = 0;
    argv[argc++] = (char *)prog[which];
    if (sub[which]) argv[argc++] = (char *)sub[which];
    /* no words at all when the input ends after the first byte: argc 1 for spill-bench (which == 6) */
    for (char *p = buf; n && p <= buf + n && argc < MAX_WORDS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    spill_options env;
    spill_options_defaults(&env);
    spill_err err = {{0}};
    FILE *help = fuzz_null();
    int rc;
    switch (which) {
    case 0: {
        spill_generate_opts o;
        if (!(rc = spill_generate_cli(&o, &env, argc, argv, help, &err))) check_generate(&o);
        break;
    }
    case 1: {
        spill_info_opts o;
        if (!(rc = spill_info_cli(&o, &env, argc, argv, help, &err))) {
            FUZZ_CHECK(flag(o.json) && flag(o.options));
            check_env(&o.env);
        }
        break;
    }
    case 2: {
        spill_plan_opts o;
        if (!(rc = spill_plan_cli(&o, &env, argc, argv, help, &err))) check_plan(&o);
        break;
    }
    case 3: {
        spill_server_opts o;
        if (!(rc = spill_server_cli(&o, &env, argc, argv, help, &err))) check_server(&o);
        break;
    }
    case 7: {
        spill_bench_serve_opts o;
        if (!(rc = spill_bench_serve_cli(&o, argc, argv, help, &err))) check_serve(&o);
        break;
    }
    default: {
        spill_bench_opts o;
        if (!(rc = spill_bench_cli(&o, argc, argv, help, &err))) check_bench(&o, argv, argc);
        else if (rc < 0 && which != 6) FUZZ_CHECK(o.cmd == (which == 4 ? SPILL_BENCH_TIERS : SPILL_BENCH_PLACEMENT));
        break;
    }
    }
    FUZZ_CHECK(rc == 0 || rc == 1 || (rc == -1 && err.msg[0]));
    free(buf);
    return 0;
}
