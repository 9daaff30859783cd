/* The SPILL_* option table and its one parser (see spill_options.h). */
#include "spill_options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <strings.h>

const spill_option_def spill_option_table[] = {
    {"backend", "SPILL_BACKEND", SPILL_OPT_CHOICE, "auto", "auto|host|emulated|system|cuda-managed|cuda-device",
     "memory backend; auto picks from the device's attributes (host when there is no GPU)"},
    {"device", "SPILL_DEVICE", SPILL_OPT_CHOICE, "auto", "auto|cpu|cuda", "where the forward pass runs"},
    {"cuda-graphs", "SPILL_CUDA_GRAPHS", SPILL_OPT_BOOL, "1", NULL,
     "cuda: replay each decode step as one CUDA graph where the plan allows (no ring, no disk tier)"},
    {"policy", "SPILL_POLICY", SPILL_OPT_CHOICE, "host", "host|fault|pin|stream|auto", "placement policy (see spill-plan --help)"},
    {"hbm-budget", "SPILL_HBM_BUDGET", SPILL_OPT_SIZE, "0", NULL,
     "most GPU memory spill may hold; 0 = free HBM at start minus SPILL_HBM_RESERVE"},
    {"hbm-reserve", "SPILL_HBM_RESERVE", SPILL_OPT_SIZE, "1G", NULL,
     "HBM left to the CUDA context, cuBLAS workspaces and other programs when the budget is automatic"},
    {"host-limit", "SPILL_HOST_LIMIT", SPILL_OPT_SIZE, "0", NULL,
     "most host memory spill may allocate; 0 = what the machine has available"},
    {"host-node", "SPILL_HOST_NODE", SPILL_OPT_INT, "-1", "-1..",
     "host NUMA node the forward pass's threads run on and host memory is taken from first; -1 = the system's choice"},
    {"threads", "SPILL_THREADS", SPILL_OPT_INT, "0", "0..1024", "CPU threads for the forward pass; 0 = all online CPUs"},
    {"alloc-log", "SPILL_ALLOC_LOG", SPILL_OPT_STRING, "", NULL,
     "write a CSV line per backend call (alloc, free, advise, prefetch, discard) to this file"},
    {"log", "SPILL_LOG", SPILL_OPT_BOOL, "0", NULL, "diagnostic messages on stderr"},
    {"stats", "SPILL_STATS", SPILL_OPT_BOOL, "0", NULL, "print bytes per tier, peaks and call counts at exit"},
    {"memgetinfo", "SPILL_MEMGETINFO", SPILL_OPT_CHOICE, "real", "real|virtual",
     "preload shim: what cudaMemGetInfo reports; virtual adds host memory (programs may then overfill)"},
    {"tokenizer-pre", "SPILL_TOKENIZER_PRE", SPILL_OPT_STRING, "", NULL,
     "GGUF: read tokenizer.ggml.pre as this known type, for a file whose type is missing or unknown"},
    {"kv-type", "SPILL_KV_TYPE", SPILL_OPT_CHOICE, "f32", "f32|f16|bf16",
     "the KV cache's element type; f16 and bf16 take half the bytes of f32 (twice the context in the same memory)"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

/* where each option lives in spill_options, in table order */
static const struct {
    size_t off, size;
} slot[] = {
    {offsetof(spill_options, backend), sizeof(((spill_options *)0)->backend)},
    {offsetof(spill_options, device), sizeof(((spill_options *)0)->device)},
    {offsetof(spill_options, cuda_graphs), sizeof(int)},
    {offsetof(spill_options, policy), sizeof(((spill_options *)0)->policy)},
    {offsetof(spill_options, hbm_budget), sizeof(uint64_t)},
    {offsetof(spill_options, hbm_reserve), sizeof(uint64_t)},
    {offsetof(spill_options, host_limit), sizeof(uint64_t)},
    {offsetof(spill_options, host_node), sizeof(int)},
    {offsetof(spill_options, threads), sizeof(int)},
    {offsetof(spill_options, alloc_log), sizeof(((spill_options *)0)->alloc_log)},
    {offsetof(spill_options, log), sizeof(int)},
    {offsetof(spill_options, stats), sizeof(int)},
    {offsetof(spill_options, memgetinfo), sizeof(((spill_options *)0)->memgetinfo)},
    {offsetof(spill_options, tokenizer_pre), sizeof(((spill_options *)0)->tokenizer_pre)},
    {offsetof(spill_options, kv_type), sizeof(((spill_options *)0)->kv_type)},
};

static int n_options(void) {
    int n = 0;
    while (spill_option_table[n].name) n++;
    return n;
}

static int choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && !strncasecmp(c, v, n)) return 1;
        c += len + (bar ? 1 : 0);
    }
    return 0;
}

static int parse_into(spill_options *o, int i, const char *value, const char *who, spill_err *err) {
    const spill_option_def *d = &spill_option_table[i];
    void *dst = (char *)o + slot[i].off;
    switch (d->type) {
    case SPILL_OPT_CHOICE:
        if (!choice_ok(d->choices, value))
            return spill_err_set(err, "%s: '%s' is not one of %s", who, value, d->choices);
        /* fall through */
    case SPILL_OPT_STRING:
        if (strlen(value) >= slot[i].size)
            return spill_err_set(err, "%s: value is %zu characters; the limit is %zu", who, strlen(value),
                                 slot[i].size - 1);
        memcpy(dst, value, strlen(value) + 1);
        if (d->type == SPILL_OPT_CHOICE)
            for (char *p = dst; *p; p++) *p = (char)tolower((unsigned char)*p);
        return 0;
    case SPILL_OPT_SIZE: {
        uint64_t v;
        if (spill_parse_size(value, &v))
            return spill_err_set(err, "%s: '%s' is not a size (bytes, or a number with K, M, G or T)", who, value);
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    case SPILL_OPT_INT: {
        char *end = NULL;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < INT_MIN / 2 || v > INT_MAX / 2)
            return spill_err_set(err, "%s: '%s' is not an integer", who, value);
        /* the table's range, "lo..hi" or "lo.." (the flags of the same name take the same) */
        if (d->choices) {
            char *hi = NULL;
            long lo = strtol(d->choices, &hi, 10);
            int has_hi = hi[0] == '.' && hi[1] == '.' && hi[2];
            if (v < lo || (has_hi && v > strtol(hi + 2, NULL, 10)))
                return spill_err_set(err, "%s: '%s' is outside %s (%s)", who, value, d->choices, d->doc);
        }
        int iv = (int)v;
        memcpy(dst, &iv, sizeof iv);
        return 0;
    }
    case SPILL_OPT_BOOL: {
        int v;
        if (!strcasecmp(value, "1") || !strcasecmp(value, "on") || !strcasecmp(value, "yes") ||
            !strcasecmp(value, "true"))
            v = 1;
        else if (!strcasecmp(value, "0") || !strcasecmp(value, "off") || !strcasecmp(value, "no") ||
                 !strcasecmp(value, "false") || !*value)
            v = 0;
        else
            return spill_err_set(err, "%s: '%s' is not a yes/no value (1/0, on/off, yes/no, true/false)", who,
                                 value);
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    }
    return spill_err_set(err, "%s: unknown option type", who);
}

void spill_options_defaults(spill_options *o) {
    memset(o, 0, sizeof *o);
    for (int i = 0; spill_option_table[i].name; i++) {
        spill_err err;
        /* the defaults are parsed by the same code as user input; a bad default is a bug */
        SPILL_ASSERT(parse_into(o, i, spill_option_table[i].def, spill_option_table[i].env, &err) == 0);
    }
}

static int find(const char *name) {
    const char *flag = name;
    while (*flag == '-') flag++;
    for (int i = 0; spill_option_table[i].name; i++)
        if (!strcmp(spill_option_table[i].name, flag) || !strcmp(spill_option_table[i].env, name)) return i;
    return -1;
}

int spill_options_set(spill_options *o, const char *name, const char *value, spill_err *err) {
    int i = find(name);
    if (i < 0) return spill_err_set(err, "unknown option '%s'", name);
    if (!value) return spill_err_set(err, "--%s needs a value", spill_option_table[i].name);
    char who[96];
    snprintf(who, sizeof who, "%s%s", name[0] == 'S' ? "" : "--", name[0] == 'S' ? name : spill_option_table[i].name);
    return parse_into(o, i, value, who, err);
}

extern char **environ;

int spill_options_from_env(spill_options *o, FILE *warn, spill_err *err) {
    SPILL_ASSERT((int)(sizeof slot / sizeof slot[0]) == n_options());
    for (int i = 0; spill_option_table[i].name; i++) {
        const char *v = getenv(spill_option_table[i].env);
        if (v && parse_into(o, i, v, spill_option_table[i].env, err)) return -1;
    }
    if (warn) {
        /* a misspelt variable silently doing nothing is worse than a line on stderr */
        static int warned;
        for (char **e = environ; e && *e && !warned; e++) {
            if (strncmp(*e, "SPILL_", 6)) continue;
            const char *eq = strchr(*e, '=');
            size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
            int known = 0;
            for (int i = 0; spill_option_table[i].name && !known; i++)
                known = strlen(spill_option_table[i].env) == len && !strncmp(spill_option_table[i].env, *e, len);
            /* variables read by the scripts and tests, not by the runtime */
            static const char *const other[] = {"SPILL_BUILD", "SPILL_CACHE", "SPILL_MODEL", "SPILL_STORIES",
                                                "SPILL_SMOLLM", NULL};
            for (int i = 0; other[i] && !known; i++) known = strlen(other[i]) == len && !strncmp(other[i], *e, len);
            if (!known) {
                fprintf(warn, "spill: warning: %.*s is not a spill option (spill-info --options lists them)\n",
                        (int)len, *e);
                warned = 1;
            }
        }
    }
    return 0;
}

static void print_value(const spill_options *o, int i, FILE *f) {
    const void *src = (const char *)o + slot[i].off;
    switch (spill_option_table[i].type) {
    case SPILL_OPT_STRING:
    case SPILL_OPT_CHOICE: fprintf(f, "%s", (const char *)src); break;
    case SPILL_OPT_SIZE: {
        uint64_t v;
        memcpy(&v, src, sizeof v);
        fprintf(f, "%llu", (unsigned long long)v);
        break;
    }
    case SPILL_OPT_INT:
    case SPILL_OPT_BOOL: {
        int v;
        memcpy(&v, src, sizeof v);
        fprintf(f, "%d", v);
        break;
    }
    }
}

void spill_options_print(const spill_options *o, FILE *f) {
    fprintf(f, "%-18s %-8s %s\n", "variable", "default", "meaning");
    for (int i = 0; spill_option_table[i].name; i++) {
        const spill_option_def *d = &spill_option_table[i];
        fprintf(f, "%-18s %-8s %s", d->env, *d->def ? d->def : "\"\"", d->doc);
        if (d->choices) fprintf(f, " (%s)", d->choices);
        if (o) {
            fprintf(f, " [now: ");
            print_value(o, i, f);
            fprintf(f, "]");
        }
        fprintf(f, "\n");
    }
}
