/* Helpers shared by the tests: where the models are, reading the fixture file, skipping. */
#ifndef SPILL_TEST_UTIL_H
#define SPILL_TEST_UTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sys/wait.h>

/* ctest treats this exit code as "skipped" (SKIP_RETURN_CODE) */
#define SPILL_TEST_SKIP 77

/* tests/models/stories260k-f32.gguf, or $SPILL_STORIES */
static inline const char *stories_path(void) {
    const char *e = getenv("SPILL_STORIES");
    return e && *e ? e : SPILL_MODELS_DIR "/stories260k-f32.gguf";
}

/* the default model in the cache, or $SPILL_SMOLLM */
static inline const char *smollm_path(void) {
    static char buf[4096];
    const char *e = getenv("SPILL_SMOLLM");
    if (e && *e) return e;
    const char *c = getenv("SPILL_CACHE");
    if (c && *c) snprintf(buf, sizeof buf, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", c);
    else snprintf(buf, sizeof buf, "%s/.cache/spill/SmolLM2-135M-Instruct.Q4_1.gguf", getenv("HOME") ? getenv("HOME") : ".");
    return buf;
}

/* Print why and exit with the skip code when a model is absent. */
static inline void require_file(const char *path, const char *why) {
    if (access(path, R_OK)) {
        printf("SKIPPED: %s is not there (%s)\n", path, why);
        fflush(stdout);
        exit(SPILL_TEST_SKIP);
    }
}

static inline char *hex_decode(const char *h, size_t n, size_t *out_len) {
    char *o = malloc(n / 2 + 1);
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned v;
        sscanf(h + i, "%2x", &v);
        o[i / 2] = (char)v;
    }
    o[n / 2] = 0;
    *out_len = n / 2;
    return o;
}

static inline int parse_ids(const char *s, size_t n, int *out, int cap) {
    int k = 0;
    size_t i = 0;
    while (i < n && k < cap) {
        char *end;
        long v = strtol(s + i, &end, 10);
        if (end == s + i) break;
        out[k++] = (int)v;
        i = (size_t)(end - s);
        if (i < n && s[i] == ',') i++;
    }
    return k;
}

/* Split a tab-separated line into fields (in place). */
static inline int split_tabs(char *line, char **f, int cap) {
    int n = 0;
    char *p = line;
    while (n < cap) {
        f[n++] = p;
        char *t = strchr(p, '\t');
        if (!t) break;
        *t = 0;
        p = t + 1;
    }
    char *nl = strchr(f[n - 1], '\n');
    if (nl) *nl = 0;
    return n;
}

/* Run a shell command; stdout (and stderr too when merge is set) into out; the exit status. */
static inline int run_capture(const char *cmd, int merge, char *out, size_t len) {
    char full[16384];
    snprintf(full, sizeof full, "%s%s", cmd, merge ? " 2>&1" : "");
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Run spill-generate with args; its stdout and stderr apart, and its exit status. */
typedef struct run_result {
    int status;
    char out[65536];
    char err[65536];
} run_result;

static inline run_result *run_generate(const char *args) {
    static run_result r;
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s/spill-generate' %s >/tmp/spill-test-out.%d 2>/tmp/spill-test-err.%d", SPILL_BIN_DIR,
             args, (int)getpid(), (int)getpid());
    int st = system(cmd);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    char path[64];
    char *dst[2] = {r.out, r.err};
    const char *which[2] = {"out", "err"};
    for (int i = 0; i < 2; i++) {
        memset(dst[i], 0, sizeof r.out);
        snprintf(path, sizeof path, "/tmp/spill-test-%s.%d", which[i], (int)getpid());
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(dst[i], 1, sizeof r.out - 1, f);
            (void)n;
            fclose(f);
        }
        unlink(path);
    }
    return &r;
}

/* The largest |a[i] - b[i]| over n values (b NULL: the largest |a[i]|), in double; a NaN in either
 * makes it infinite, so that a NaN never passes a tolerance. A plain loop on purpose: GCC 12 for
 * aarch64 stops with an internal compiler error (in vect_transform_reduction) when it vectorises an
 * fmax() reduction over floats widened to double, which is what the tests wrote inline before. */
static inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (b ? (double)b[i] : 0.0));
        if (d != d) return INFINITY;
        if (d > m) m = d;
    }
    return m;
}

#ifdef SPILL_ENGINE_H
/* An engine on the CPU (or the device in p->device) for a model, quiet; fails the test with the
 * message when it cannot open. */
static inline spill_engine *open_engine(const char *path, int ctx, int batch, int threads) {
    spill_err err = {{0}};
    spill_engine_params p = spill_engine_defaults();
    p.model = path;
    p.ctx = ctx;
    p.batch = batch;
    p.threads = threads;
    p.quiet = 1;
    spill_engine *e = NULL;
    if (spill_engine_open(&p, &e, &err)) fail_msg("%s: %s", path, err.msg);
    return e;
}

/* the index of the largest logit, the lower one on ties */
static inline int argmax_logit(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}
#endif

#endif
