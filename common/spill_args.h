/* One command-line parser for every program: a table of flags, each with its type, range, where the
 * value goes and its help text. The same table prints --help, so a flag cannot exist undocumented.
 * Options of the SPILL_* table (spill_options.h) are parsed by that table's parser, so a flag and its
 * environment variable accept the same values and fail with the same message. */
#ifndef SPILL_ARGS_H
#define SPILL_ARGS_H

#include <stdio.h>

#include "spill_options.h"

typedef enum spill_arg_type {
    SPILL_ARG_FLAG,   /* int *: set to 1 */
    SPILL_ARG_UNSET,  /* int *: set to 0 (e.g. --no-mmap) */
    SPILL_ARG_INT,    /* int *, within [lo, hi] */
    SPILL_ARG_U64,    /* uint64_t *: a non-negative integer */
    SPILL_ARG_FLOAT,  /* float *: a finite number */
    SPILL_ARG_SIZE,   /* uint64_t *: bytes with K/M/G/T suffixes */
    SPILL_ARG_STRING, /* const char **: the argument itself */
    SPILL_ARG_OPTION, /* spill_options *: set through spill_options_set under the flag's long name */
    SPILL_ARG_HELP,   /* print the usage to help_out; spill_args_parse returns 1 */
} spill_arg_type;

typedef struct spill_arg {
    char short_name;     /* 'm' for -m, or 0 */
    const char *name;    /* "model" for --model */
    spill_arg_type type;
    void *dst;
    long lo, hi;         /* SPILL_ARG_INT's range */
    const char *metavar; /* "FILE", shown in the usage; NULL for flags without a value */
    const char *help;    /* one or more lines ('\n' between them) */
    int *given;          /* optional: set to 1 when the flag appears */
} spill_arg;

/* Table entries: SPILL_ARG(short, name, type, dst, lo, hi, metavar, help), SPILL_ARG_G(..., given),
 * and SPILL_ARG_END last. */
#define SPILL_ARG(s, n, t, d, lo, hi, mv, help) {(s), (n), (t), (d), (lo), (hi), (mv), (help), NULL}
#define SPILL_ARG_G(s, n, t, d, lo, hi, mv, help, given) {(s), (n), (t), (d), (lo), (hi), (mv), (help), (given)}
#define SPILL_ARG_END {0, NULL, SPILL_ARG_FLAG, NULL, 0, 0, NULL, NULL, NULL}

/* Parse argv[first..argc) against args (terminated by an entry with name NULL). 0: parsed; 1: --help
 * was asked for (the usage is printed to help_out, stdout in the programs); -1: err holds "-x ..."
 * naming the flag, the value and what is accepted. */
int spill_args_parse(const spill_arg *args, int argc, char **argv, int first, const char *usage_head, FILE *help_out,
                     spill_err *err);
/* usage_head (the synopsis and description, as given), then one entry per flag. */
void spill_args_usage(const spill_arg *args, const char *usage_head, FILE *f);

#endif
