/* spill-bench's command line (cli.h): tiers and placement, and serve. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "spill_args.h"
#include "spill_policy.h"

/* ---------------------------------------------------------------- tiers, placement */

static const char usage_head[] =
    "usage: spill-bench tiers [options]\n"
    "       spill-bench placement (-m MODEL.gguf | --synthetic SPEC) [options]\n"
    "       spill-bench serve --url URL [--url URL2] [options]   (spill-bench serve --help)\n"
    "\n"
    "tiers: read bandwidth of every tier from every processor - the CPU reading each NUMA node,\n"
    "and with a GPU: HBM, host memory read in place (mapped pinned, managed preferring host with\n"
    "accessed-by, pageable where supported), prefetch migration both ways, pinned copies.\n"
    "placement: prefill and decode speed for every (HBM budget, policy), bytes per tier, prefetch\n"
    "waits, the bound from measured bandwidths, % of it, and the cost model's prediction beside\n"
    "each measurement. On the CPU, HBM is emulated in host memory (the plans run; the speed is the\n"
    "CPU's). Progress goes to stderr; Ctrl-C stops and prints what was measured so far.\n"
    "\n";

/* the flags that are not options as they are: the program's reads them through spill_bench_opts */
typedef struct bench_flags {
    const char *budgets, *policies, *device, *formats, *stack;
    int json, csv, help;
} bench_flags;

static void make_args(spill_bench_opts *o, bench_flags *f, spill_arg *a) {
    int n = 0;
#define ARG(...) a[n++] = (spill_arg)SPILL_ARG(__VA_ARGS__)
    ARG(0, "size", SPILL_ARG_SIZE, &o->size, 0, 0, "SIZE", "tiers: buffer per measurement (default 256M)");
    ARG(0, "reps", SPILL_ARG_INT, &o->reps, 1, 64, "N", "repetitions; median, min and max are reported (tiers: default 5, at\n"
        "least 5; placement: default 1, the median of N runs of each point)");
    ARG(0, "profile-out", SPILL_ARG_STRING, &o->profile_out, 0, 0, "F",
        "tiers: write what was measured as a hardware profile (spill-plan --profile-file F)");
    ARG(0, "disk-file", SPILL_ARG_STRING, &o->disk_file, 0, 0, "F", "tiers (and placement's own, without --profile-file): measure the disk by\n"
        "reading F (e.g. a model file; default: a temporary file of --size in $TMPDIR,\nelse /var/tmp)");
    ARG(0, "formats", SPILL_ARG_STRING, &f->formats, 0, 0, "LIST", "tiers: rate the CPU matmul for these weight formats only, from F32,\n"
        "F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K (default: all; placement rates\nits model's own)");
    ARG(0, "stack-shape", SPILL_ARG_STRING, &f->stack, 0, 0, "D,KV,FF",
        "tiers: the widths of the layers the CPU matmul is rated over: hidden D,\n"
        "k/v rows KV, feed-forward FF (default 1024,256,2816; a model's own widths give\n"
        "the rates its decode meets: SmolLM2-135M's are 576,192,1536). Formats whose\n"
        "blocks do not divide D and FF are rated at the default");
    ARG('m', "model", SPILL_ARG_STRING, &o->model, 0, 0, "F", "placement: a GGUF model");
    ARG(0, "synthetic", SPILL_ARG_STRING, &o->synthetic, 0, 0, "SPEC", "placement: a model of this shape with random weights instead of a file:\n"
        "llama3-70b, llama3-8b, llama3.2-1b or tiny, with :layers=N, :vocab=N,\n:type=f32|bf16|f16|q8_0|q4_0|q4_k|q6_k");
    ARG(0, "budgets", SPILL_ARG_STRING, &f->budgets, 0, 0, "LIST",
        "HBM budgets: percentages of weights + KV cache, or sizes (default 25%,50%,75%,100%)");
    ARG(0, "policies", SPILL_ARG_STRING, &f->policies, 0, 0, "LIST", "from fault, pin, stream, auto, host (default fault,pin,stream,auto)");
    ARG(0, "device", SPILL_ARG_STRING, &f->device, 0, 0, "D", "cpu (default) or cuda: the GPU forward pass over cuda-managed memory,\n"
        "plans carried out by the GPU (docs/status.md says what has run on a GPU)");
    ARG(0, "prompt-tokens", SPILL_ARG_INT, &o->prompt, 1, 1 << 20, "N", "prompt length for prefill (default 512)");
    ARG(0, "gen-tokens", SPILL_ARG_INT, &o->gen, 1, 1 << 20, "N", "tokens decoded (default 128)");
    ARG('t', "threads", SPILL_ARG_INT, &o->threads, 1, 1024, "N", "CPU threads (default: $SPILL_THREADS, else all online CPUs)");
    ARG(0, "profile-file", SPILL_ARG_STRING, &o->profile_file, 0, 0, "F",
        "hardware profile for predictions and the bound (default: measure now)");
    ARG(0, "plan-profile", SPILL_ARG_STRING, &o->plan_profile, 0, 0, "NAME",
        "make the plans for this built-in profile (default: gh200-96 on a machine\nwithout a GPU, so that HBM regions and "
        "rings are exercised; else measured)");
    ARG(0, "host-limits", SPILL_ARG_STRING, &o->host_limits, 0, 0, "LIST", "placement: instead of HBM budgets, sweep host memory limits (percentages\n"
        "of weights + KV cache, or sizes) with the host policy: the layers past each\n"
        "limit are read from the model file every step (the disk tier); the first row is\n"
        "the run with everything in memory");
    ARG(0, "disk-io", SPILL_ARG_STRING, &o->disk_io, 0, 0, "LIST", "placement with --host-limits, how layers past the limit are read: uring (O_DIRECT + io_uring), mmap (through "
        "the mapping, pages dropped after each use) or pagecache (the whole model mapped, in a child process held to the limit "
        "by a memory cgroup: needs root), or a list (default uring,mmap,pagecache)");
    ARG(0, "draft-skip", SPILL_ARG_STRING, &o->draft_skip, 0, 0, "N|LIST", "placement: also decode with a self-speculative draft that skips these\n"
        "layers (a count chosen by calibration, or a list; see spill-generate --help) and\n"
        "report its speed, acceptance and the cost model's predicted speedup");
    ARG(0, "draft-k", SPILL_ARG_INT, &o->draft_k, 1, 63, "K", "placement: proposals per round with --draft-skip (default 3)");
    ARG(0, "draft-vocab", SPILL_ARG_INT, &o->draft_vocab, 0, 1 << 30, "N", "placement: the draft proposes only tokens 0..N-1 (see spill-generate --help; default 0: all)");
    ARG(0, "plot", SPILL_ARG_STRING, &o->plot, 0, 0, "F.svg", "decode tok/s vs budget, one line per policy, the bound dashed");
    ARG(0, "json", SPILL_ARG_FLAG, &f->json, 0, 0, NULL, "JSON instead of the markdown table");
    ARG(0, "csv", SPILL_ARG_FLAG, &f->csv, 0, 0, NULL, "CSV instead of the markdown table");
    ARG('h', "help", SPILL_ARG_HELP, &f->help, 0, 0, NULL, "this text");
    SPILL_ASSERT(n < SPILL_CLI_MAX_ARGS);
    a[n] = (spill_arg)SPILL_ARG_END;
#undef ARG
}

void spill_bench_usage(FILE *f) {
    spill_bench_opts o;
    bench_flags fl;
    spill_arg args[SPILL_CLI_MAX_ARGS];
    make_args(&o, &fl, args);
    spill_args_usage(args, usage_head, f);
}

/* each item of a comma-separated list (of --flag) checked by ok(item, ctx): an empty list or item is
   refused, a trailing comma allowed; the error says the item and what the flag takes (takes) */
static int check_items(const char *flag, const char *v, int (*ok)(const char *item, const void *ctx), const void *ctx,
                       const char *takes, spill_err *err) {
    if (!*v) return spill_err_set(err, "--%s: an empty list", flag);
    for (const char *c = v;;) {
        size_t l = strcspn(c, ",");
        char e[64];
        if (!l || l >= sizeof e || (snprintf(e, sizeof e, "%.*s", (int)l, c), !ok(e, ctx)))
            return spill_err_set(err, "--%s: '%.*s' is %s", flag, (int)l, c, takes);
        if (!c[l] || !c[l + 1]) return 0;
        c += l + 1;
    }
}

static int is_name(const char *item, const void *names) {
    for (const char *const *n = names; *n; n++)
        if (!strcasecmp(item, *n)) return 1;
    return 0;
}

/* names as "a, b, c" after what out holds */
static void list_names(const char *const *names, char *out, size_t n) {
    for (int k = 0; names[k]; k++) snprintf(out + strlen(out), n - strlen(out), "%s%s", k ? ", " : "", names[k]);
}

/* a list whose every item is one of names (case aside); the error lists them */
static int check_list(const char *flag, const char *v, const char *const *names, spill_err *err) {
    char takes[256] = "not one of ";
    list_names(names, takes, sizeof takes);
    return check_items(flag, v, is_name, names, takes, err);
}

int spill_bench_parse_share(const char *s, double full, uint64_t *bytes, double *frac) {
    size_t len = strlen(s);
    if (len > 1 && s[len - 1] == '%') {
        char *end;
        errno = 0;
        double pct = strtod(s, &end);
        if (errno || end != s + len - 1 || !(pct >= 0 && pct <= 1000)) return -1;
        *bytes = (uint64_t)(pct / 100.0 * full);
        if (frac) *frac = pct / 100.0;
        return 0;
    }
    if (!len || spill_parse_size(s, bytes)) return -1;
    if (frac) *frac = full > 0 ? (double)*bytes / full : 0;
    return 0;
}

static int is_share(const char *item, const void *none_ok) {
    uint64_t b;
    return (*(const int *)none_ok && !strcmp(item, "none")) || !spill_bench_parse_share(item, 1, &b, NULL);
}

/* a list of percentages or sizes (--budgets; --host-limits, where "none" is one too) */
static int check_shares(const char *flag, const char *v, int none_ok, spill_err *err) {
    return check_items(flag, v, is_share, &none_ok, "neither a percentage from 0% to 1000% nor a size (e.g. 512M)", err);
}

/* the formats spill-bench tiers rates (benchmarks/spill_bench.c: rate_types) */
static const char *const bench_formats[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K", NULL};

int spill_bench_cli(spill_bench_opts *o, int argc, char **argv, FILE *help_out, spill_err *err) {
    *o = (spill_bench_opts){.size = 256u << 20, .prompt = 512, .gen = 128, .draft_k = 3, .disk_io = "uring,mmap,pagecache"};
    bench_flags f = {.budgets = "25%,50%,75%,100%", .policies = "fault,pin,stream,auto", .device = "cpu"};
    spill_arg args[SPILL_CLI_MAX_ARGS];
    make_args(o, &f, args);
    const char *cmd = argc >= 2 ? argv[1] : "";
    if (!strcmp(cmd, "tiers")) {
        o->cmd = SPILL_BENCH_TIERS;
    } else if (!strcmp(cmd, "placement")) {
        o->cmd = SPILL_BENCH_PLACEMENT;
    } else if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        spill_args_usage(args, usage_head, help_out);
        return 1;
    } else {
        return *cmd ? spill_err_set(err, "unknown command '%s' (tiers, placement or serve)", cmd)
                    : spill_err_set(err, "no command (tiers, placement or serve)");
    }
    int rc = spill_args_parse(args, argc, argv, 2, usage_head, help_out, err);
    if (rc) return rc;
    o->f = f.json ? SPILL_BENCH_JSON : f.csv ? SPILL_BENCH_CSV : SPILL_BENCH_TABLE;
    /* whole or not at all: a list cut short would end in a budget or policy nobody gave */
    if (strlen(f.budgets) >= sizeof o->budgets)
        return spill_err_set(err, "--budgets: a list of at most %d characters, got %zu", (int)sizeof o->budgets - 1,
                             strlen(f.budgets));
    if (strlen(f.policies) >= sizeof o->policies)
        return spill_err_set(err, "--policies: a list of at most %d characters, got %zu", (int)sizeof o->policies - 1,
                             strlen(f.policies));
    if (check_shares("budgets", f.budgets, 0, err)) return -1;
    snprintf(o->budgets, sizeof o->budgets, "%s", f.budgets);
    if (o->host_limits && check_shares("host-limits", o->host_limits, 1, err)) return -1;
    static const char *const disk_modes[] = {"uring", "mmap", "pagecache", NULL};
    if (check_list("disk-io", o->disk_io, disk_modes, err)) return -1;
    if (check_list("policies", f.policies, spill_policy_names, err)) return -1;
    snprintf(o->policies, sizeof o->policies, "%s", f.policies);
    if (f.formats) {
        if (strlen(f.formats) >= sizeof o->formats)
            return spill_err_set(err, "--formats: a list of at most %d characters, got %zu", (int)sizeof o->formats - 1,
                                 strlen(f.formats));
        if (check_list("formats", f.formats, bench_formats, err)) return -1;
        snprintf(o->formats, sizeof o->formats, "%s", f.formats);
    }
    const int stack_default[3] = SPILL_BENCH_STACK_DEFAULT;
    memcpy(o->stack_shape, stack_default, sizeof o->stack_shape);
    if (f.stack) {
        const char *c = f.stack;
        for (int i = 0; i < 3; i++) {
            char *end;
            errno = 0;
            long v = isdigit((unsigned char)*c) ? strtol(c, &end, 10) : -1;
            if (v < 0 || *end != (i < 2 ? ',' : '\0'))
                return spill_err_set(err, "--stack-shape expects three widths D,KV,FF (e.g. 576,192,1536), got '%s'",
                                     f.stack);
            if (errno || v < 32 || v > 65536 || v % 32)
                return spill_err_set(err, "--stack-shape: %.*s is not a multiple of 32 in 32..65536", (int)(end - c), c);
            o->stack_shape[i] = (int)v;
            c = end + 1;
        }
    }
    o->tier_reps = o->reps ? o->reps : 5;
    if (!o->reps) o->reps = 1;
    if (o->cmd == SPILL_BENCH_TIERS && o->tier_reps < 5)
        return spill_err_set(err, "--reps expects an integer in 5..64 for tiers, got %d", o->tier_reps);
    if (o->size < (1u << 20) || o->size > (64ull << 30)) return spill_err_set(err, "--size expects 1M..64G");
    if (!strcasecmp(f.device, "cuda")) o->cuda = 1;
    else if (strcasecmp(f.device, "cpu")) return spill_err_set(err, "--device %s: cpu or cuda", f.device);
    if (o->plan_profile && !is_name(o->plan_profile, spill_profile_names)) {
        char known[256] = "";
        list_names(spill_profile_names, known, sizeof known);
        return spill_err_set(err, "--plan-profile '%s' is not built in (known: %s)", o->plan_profile, known);
    }
    if (o->cmd == SPILL_BENCH_PLACEMENT && !!o->model == !!o->synthetic)
        return spill_err_set(err, "placement needs -m MODEL.gguf or --synthetic SPEC (one of them)");
    return 0;
}

/* ---------------------------------------------------------------- serve */

static const char serve_usage_head[] =
    "usage: spill-bench serve --url URL [--url URL2 ...] [options]\n"
    "\n"
    "The same client load against each server's /v1/completions (streamed, temperature 0): at each\n"
    "concurrency, aggregate generated tokens per second, time to first token and the time between\n"
    "tokens (p50, p99). The servers must be running; benchmarks/peers/bench_serve.py starts spill-server\n"
    "and llama.cpp's server on one model and runs this against both.\n"
    "\n";

int spill_bench_serve_cli(spill_bench_serve_opts *o, int argc, char **argv, FILE *help_out, spill_err *err) {
    *o = (spill_bench_serve_opts){.max_tokens = 64, .per = 2, .min_requests = 8};
    const char *conc_list = "1,2,4,8,16,32", *url = NULL, *labels = NULL;
    int help = 0;
    const spill_arg args[] = {
        SPILL_ARG(0, "url", SPILL_ARG_STRING, &url, 0, 0, "URL", "a server's base, e.g. http://127.0.0.1:8080 (repeat for several)"),
        SPILL_ARG(0, "labels", SPILL_ARG_STRING, &labels, 0, 0, "A,B", "names of the servers in the table (default: their URLs)"),
        SPILL_ARG(0, "concurrency", SPILL_ARG_STRING, &conc_list, 0, 0, "LIST", "clients at once (default 1,2,4,8,16,32)"),
        SPILL_ARG(0, "max-tokens", SPILL_ARG_INT, &o->max_tokens, 1, 4096, "N", "tokens asked of each request (default 64)"),
        SPILL_ARG(0, "requests-per-client", SPILL_ARG_INT, &o->per, 1, 1000, "N", "requests each client sends (default 2)"),
        SPILL_ARG(0, "min-requests", SPILL_ARG_INT, &o->min_requests, 1, 100000, "N", "at least this many requests per level (default 8)"),
        SPILL_ARG(0, "json", SPILL_ARG_FLAG, &o->json, 0, 0, NULL, "JSON instead of the markdown table"),
        SPILL_ARG('h', "help", SPILL_ARG_HELP, &help, 0, 0, NULL, "this text"),
        SPILL_ARG_END,
    };
    /* --url may repeat: collect them, then parse the rest */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return spill_err_set(err, "out of memory");
    int nr = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--url") && i + 1 < argc) {
            if (o->n_urls == SPILL_BENCH_SERVE_MAX_URLS) {
                free(rest);
                return spill_err_set(err, "--url: at most %d servers, got more", SPILL_BENCH_SERVE_MAX_URLS);
            }
            o->url[o->n_urls++] = argv[++i];
            continue;
        }
        rest[nr++] = argv[i];
    }
    int rc = spill_args_parse(args, nr, rest, 2, serve_usage_head, help_out, err);
    free(rest);
    if (rc) return rc;
    if (!o->n_urls) return spill_err_set(err, "give at least one --url");
    /* an empty list is an error, not a run that measures nothing; a trailing comma is allowed */
    for (const char *c = conc_list; *c || !o->n_conc;) {
        char *end;
        long v = strtol(c, &end, 10);
        if (end == c || v < 1 || v > 1024 || (*end && *end != ','))
            return spill_err_set(err, "--concurrency '%s': a comma-separated list of 1..1024", conc_list);
        if (o->n_conc == SPILL_BENCH_SERVE_MAX_LEVELS)
            return spill_err_set(err, "--concurrency '%s': at most %d levels", conc_list, SPILL_BENCH_SERVE_MAX_LEVELS);
        o->conc[o->n_conc++] = (int)v;
        c = *end ? end + 1 : end;
    }
    for (int u = 0; u < o->n_urls; u++) snprintf(o->label[u], sizeof o->label[u], "%s", o->url[u]);
    if (labels) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", labels);
        char *save = NULL;
        int u = 0;
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (u == o->n_urls) return spill_err_set(err, "--labels '%s': more labels than the %d --url", labels, o->n_urls);
            snprintf(o->label[u++], sizeof o->label[0], "%s", t);
        }
    }
    return 0;
}
