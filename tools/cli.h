/* Each program's command line apart from its main: the flag table, the defaults, and the checks that
 * need no file, model or device. The programs call these first; tests/fuzz/fuzz_cli.c calls them on
 * any argv, so every program's own table is fuzzed.
 *
 * Every spill_<program>_cli returns 0 (run), 1 (--help was asked for: the usage went to help_out,
 * stdout in the programs; exit 0) or -1 (err holds the message; the program prints it after
 * "<program>: " and exits 2). Strings in the options point into argv or at literals: nothing is
 * allocated, nothing to free. env: the SPILL_* options the flags start from (spill_options_from_env's
 * result in the programs, the defaults in the fuzzer): the flags override them, and nothing here reads
 * the environment. */
#ifndef SPILL_CLI_H
#define SPILL_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "spill_options.h"

/* ---- spill-generate (tools/cli_generate.c) ---- */
#define SPILL_GENERATE_DEFAULT_PROMPT "Once upon a time"
#define SPILL_DEFAULT_MODEL_NAME "SmolLM2-135M-Instruct.Q4_1.gguf" /* in ~/.cache/spill/ */
/* room in the flag tables built at run time, the end marker included (checked as they are built) */
#define SPILL_CLI_MAX_ARGS 48

typedef struct spill_generate_opts {
    const char *model, *prompt, *prompt_file, *profile, *profile_file, *draft_skip, *draft_file, *disk_io; /* NULL: not given */
    int n_predict, top_k, threads, chat, verbose, ctx, batch, use_mmap, n_parallel, kv_block, draft_k, draft_vocab;
    int seed_set, policy_set; /* --seed, --policy given */
    float temp, top_p;
    float presence_penalty, frequency_penalty; /* spill_logit_adjust's; 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;    /* its window; -1: the whole context, 0: the penalty off */
    uint64_t seed;
    spill_options env; /* the SPILL_* table: defaults < environment < the flags */
} spill_generate_opts;

int spill_generate_cli(spill_generate_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out,
                       spill_err *err);

/* ---- spill-info (tools/cli_info.c) ---- */
typedef struct spill_info_opts {
    int json, options;
    spill_options env;
} spill_info_opts;

int spill_info_cli(spill_info_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out, spill_err *err);

/* ---- spill-plan (tools/cli_plan.c) ---- */
typedef struct spill_plan_opts {
    const char *model, *config; /* exactly one of them */
    const char *dtype, *profile, *profile_file;
    const char *policy; /* one of spill_policy_names, or "all" (any case) */
    int ctx, batch, prompt, json;
    int budget_set; /* --hbm-budget given */
    spill_options env;
} spill_plan_opts;

int spill_plan_cli(spill_plan_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out, spill_err *err);

/* ---- spill-server (tools/cli_server.c) ---- */
typedef struct spill_server_opts {
    const char *model, *host, *profile, *profile_file, *name;
    int port, ctx, batch, parallel, kv_block, kv_blocks, max_waiting, chunk, budget, threads, use_mmap;
    int itl_target; /* --itl-target, ms (0: none) */
    int policy_set; /* --policy given */
    spill_options env;
} spill_server_opts;

int spill_server_cli(spill_server_opts *o, const spill_options *env, int argc, char **argv, FILE *help_out,
                     spill_err *err);

/* ---- spill-bench tiers | placement (tools/cli_bench.c) ---- */
typedef enum spill_bench_cmd { SPILL_BENCH_NONE, SPILL_BENCH_TIERS, SPILL_BENCH_PLACEMENT } spill_bench_cmd;
typedef enum spill_bench_fmt { SPILL_BENCH_TABLE, SPILL_BENCH_JSON, SPILL_BENCH_CSV } spill_bench_fmt;

/* the layer widths (hidden, k/v rows, feed-forward) spill-bench rates the CPU matmul over by default */
#define SPILL_BENCH_STACK_DEFAULT {1024, 256, 2816}

typedef struct spill_bench_opts {
    spill_bench_cmd cmd; /* SPILL_BENCH_NONE after an error about argv[1]: print the usage to stderr too */
    spill_bench_fmt f;
    /* tiers */
    uint64_t size; /* 1M..64G */
    int tier_reps; /* 5..64 */
    const char *profile_out, *disk_file;
    char formats[128]; /* --formats: known names only, comma-separated; "" for all */
    int stack_shape[3]; /* --stack-shape DIM,KV,FF: the one-token rates' layer widths (SPILL_BENCH_STACK_DEFAULT) */
    /* placement (-m or --synthetic, exactly one) */
    const char *model, *synthetic, *profile_file, *plot, *plan_profile;
    char budgets[256], policies[256]; /* policies: known names only, comma-separated */
    int prompt, gen, reps, draft_k, draft_vocab;
    int threads; /* 0: not given (the program's default: SPILL_THREADS, else every online CPU) */
    int cuda;    /* --device cuda: asked for; whether there is a GPU is the program's to find out */
    const char *host_limits, *disk_io, *draft_skip;
} spill_bench_opts;

/* argv[1] is the command; "serve" is spill_bench_serve_cli's. */
int spill_bench_cli(spill_bench_opts *o, int argc, char **argv, FILE *help_out, spill_err *err);
/* one entry of --budgets or --host-limits: a percentage of full ("25%", 0% to 1000%) or a size ("512M");
   0 with *bytes and *frac (bytes / full; frac may be NULL) set, or -1 */
int spill_bench_parse_share(const char *s, double full, uint64_t *bytes, double *frac);
/* The usage of tiers and placement (spill-bench -h, and on stderr before an unknown command). */
void spill_bench_usage(FILE *f);

/* ---- spill-bench serve (tools/cli_bench.c) ---- */
#define SPILL_BENCH_SERVE_MAX_URLS 8
#define SPILL_BENCH_SERVE_MAX_LEVELS 32

typedef struct spill_bench_serve_opts {
    const char *url[SPILL_BENCH_SERVE_MAX_URLS]; /* at least one */
    char label[SPILL_BENCH_SERVE_MAX_URLS][128]; /* --labels, else the URLs */
    int n_urls;
    int conc[SPILL_BENCH_SERVE_MAX_LEVELS], n_conc; /* 1..1024 each */
    int max_tokens, per, min_requests, json;
} spill_bench_serve_opts;

/* argv[1] is "serve". */
int spill_bench_serve_cli(spill_bench_serve_opts *o, int argc, char **argv, FILE *help_out, spill_err *err);

#endif
