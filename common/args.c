/* The command-line parser (see spill_args.h). */
#include "spill_args.h"

#include <errno.h>
#include <math.h>

static const spill_arg *find(const spill_arg *args, const char *a) {
    for (const spill_arg *d = args; d->name; d++) {
        if (a[0] == '-' && a[1] == '-' && !strcmp(a + 2, d->name)) return d;
        if (d->short_name && a[0] == '-' && a[1] == d->short_name && !a[2]) return d;
    }
    return NULL;
}

static int takes_value(const spill_arg *d) {
    return d->type != SPILL_ARG_FLAG && d->type != SPILL_ARG_UNSET && d->type != SPILL_ARG_HELP;
}

static int set(const spill_arg *d, const char *flag, const char *v, spill_err *err) {
    char *end;
    errno = 0;
    switch (d->type) {
    case SPILL_ARG_FLAG: *(int *)d->dst = 1; return 0;
    case SPILL_ARG_UNSET: *(int *)d->dst = 0; return 0;
    case SPILL_ARG_HELP: return 0;
    case SPILL_ARG_STRING: *(const char **)d->dst = v; return 0;
    case SPILL_ARG_OPTION: {
        spill_err oerr;
        if (spill_options_set(d->dst, d->name, v, &oerr)) return spill_err_set(err, "%s", oerr.msg);
        return 0;
    }
    case SPILL_ARG_INT: {
        long x = strtol(v, &end, 10);
        if (errno || *end || end == v || x < d->lo || x > d->hi)
            return spill_err_set(err, "%s expects an integer in %ld..%ld, got '%s'", flag, d->lo, d->hi, v);
        *(int *)d->dst = (int)x;
        return 0;
    }
    case SPILL_ARG_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || *end || end == v || *v == '-')
            return spill_err_set(err, "%s expects a non-negative integer, got '%s'", flag, v);
        *(uint64_t *)d->dst = x;
        return 0;
    }
    case SPILL_ARG_FLOAT: {
        float x = strtof(v, &end);
        if (errno || *end || end == v || !isfinite(x)) return spill_err_set(err, "%s expects a number, got '%s'", flag, v);
        *(float *)d->dst = x;
        return 0;
    }
    case SPILL_ARG_SIZE:
        if (spill_parse_size(v, d->dst))
            return spill_err_set(err, "%s expects a size in bytes with an optional K, M, G or T suffix, got '%s'", flag, v);
        return 0;
    }
    return spill_err_set(err, "%s: unknown kind of flag", flag);
}

int spill_args_parse(const spill_arg *args, int argc, char **argv, int first, const char *usage_head, FILE *help_out,
                     spill_err *err) {
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const spill_arg *d = find(args, a);
        if (!d) {
            if (a[0] == '-' && a[1]) return spill_err_set(err, "unknown argument '%s' (see --help)", a);
            return spill_err_set(err, "unexpected argument '%s' (see --help)", a);
        }
        const char *v = NULL;
        if (takes_value(d)) {
            if (i + 1 >= argc) return spill_err_set(err, "%s needs a value", a);
            v = argv[++i];
        }
        if (set(d, a, v, err)) return -1;
        if (d->given) *d->given = 1;
        if (d->type == SPILL_ARG_HELP) {
            spill_args_usage(args, usage_head, help_out);
            return 1;
        }
    }
    return 0;
}

void spill_args_usage(const spill_arg *args, const char *usage_head, FILE *f) {
    fputs(usage_head, f);
    for (const spill_arg *d = args; d->name; d++) {
        char left[64];
        int n = snprintf(left, sizeof left, "  %c%c%s--%s%s%s", d->short_name ? '-' : ' ',
                         d->short_name ? d->short_name : ' ', d->short_name ? ", " : "  ", d->name,
                         d->metavar ? " " : "", d->metavar ? d->metavar : "");
        const char *h = d->help;
        fprintf(f, "%s", left);
        /* the first line beside the flag, or under it when the flag is wide */
        if (n >= 24) fprintf(f, "\n%24s", "");
        else fprintf(f, "%*s", 24 - n, "");
        for (;;) {
            const char *nl = strchr(h, '\n');
            fprintf(f, "%.*s\n", (int)(nl ? nl - h : (long)strlen(h)), h);
            if (!nl) break;
            h = nl + 1;
            fprintf(f, "%24s", "");
        }
    }
}
