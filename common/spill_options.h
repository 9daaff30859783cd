/* Runtime options: one table of SPILL_<NAME> environment variables, each with its default and a
 * doc line. Command-line flags go through the same parser (spill_options_set), so "--hbm-budget 80G"
 * and SPILL_HBM_BUDGET=80G mean the same thing and fail with the same message.
 * Precedence: defaults < environment < command line. */
#ifndef SPILL_OPTIONS_H
#define SPILL_OPTIONS_H

#include <stdio.h>

#include "spill_common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spill_options {
    char backend[32];     /* SPILL_BACKEND */
    char device[16];      /* SPILL_DEVICE */
    int cuda_graphs;      /* SPILL_CUDA_GRAPHS: decode steps replayed as CUDA graphs */
    char policy[32];      /* SPILL_POLICY */
    uint64_t hbm_budget;  /* SPILL_HBM_BUDGET, bytes; 0 = free HBM at start minus the reserve */
    uint64_t hbm_reserve; /* SPILL_HBM_RESERVE, bytes */
    uint64_t host_limit;  /* SPILL_HOST_LIMIT, bytes; 0 = no limit beyond what the machine has */
    int host_node;        /* SPILL_HOST_NODE; -1 = let the system choose */
    int threads;          /* SPILL_THREADS; 0 = one per core */
    char alloc_log[512];  /* SPILL_ALLOC_LOG: CSV file of backend calls, "" = off */
    int log;              /* SPILL_LOG: diagnostic messages on stderr */
    int stats;            /* SPILL_STATS: per-tier statistics on stderr at exit */
    char memgetinfo[16];  /* SPILL_MEMGETINFO (preload shim): real | virtual */
    char tokenizer_pre[64]; /* SPILL_TOKENIZER_PRE: read a GGUF's tokenizer.ggml.pre as this type, "" = as written */
    char kv_type[8];      /* SPILL_KV_TYPE: f32 | f16 | bf16, the KV cache's elements */
} spill_options;

typedef enum spill_option_type {
    SPILL_OPT_STRING,
    SPILL_OPT_CHOICE, /* a string from a fixed list */
    SPILL_OPT_SIZE,   /* bytes, with K/M/G/T suffixes */
    SPILL_OPT_INT,
    SPILL_OPT_BOOL, /* 1/0, on/off, yes/no, true/false */
} spill_option_type;

typedef struct spill_option_def {
    const char *name; /* "hbm-budget": the flag is --hbm-budget, the variable SPILL_HBM_BUDGET */
    const char *env;
    spill_option_type type;
    const char *def;     /* default, as text, parsed by the same code as everything else */
    const char *choices; /* SPILL_OPT_CHOICE: "a|b|c"; SPILL_OPT_INT: the range, "lo..hi" or "lo..", or NULL */
    const char *doc;
} spill_option_def;

/* The table, terminated by an entry with name == NULL. */
extern const spill_option_def spill_option_table[];

/* Fill every field with its default. */
void spill_options_defaults(spill_options *o);
/* Apply SPILL_* variables from the environment. A bad value is an error naming the variable, the
 * value and what is accepted. A SPILL_* variable that is not in the table is reported once to
 * `warn` (may be NULL). */
int spill_options_from_env(spill_options *o, FILE *warn, spill_err *err);
/* Set one option by its name ("hbm-budget") or variable name ("SPILL_HBM_BUDGET"). */
int spill_options_set(spill_options *o, const char *name, const char *value, spill_err *err);
/* Print the table: variable, default, doc line; current values when o is not NULL. */
void spill_options_print(const spill_options *o, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
