/* Reading the tokenizer fixtures of tests/gen_tokenizer_fixtures.py (tests/fixtures/tokenizers). */
#ifndef SPILL_TOK_FIXTURES_H
#define SPILL_TOK_FIXTURES_H

#include "test_util.h"
#include "tokenizer.h"

#define TOKFX SPILL_FIXTURES_DIR "/tokenizers"

typedef struct {
    char **s;   /* the strings, bytes as generated (some are not UTF-8) */
    size_t *len;
    int n;
} tok_strings;

static inline char *read_file_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}

static inline void tok_strings_load(tok_strings *ts) {
    size_t n;
    char *all = read_file_all(TOKFX "/strings.hex", &n);
    assert_non_null(all);
    int cap = 4096;
    ts->s = malloc(sizeof *ts->s * (size_t)cap);
    ts->len = malloc(sizeof *ts->len * (size_t)cap);
    ts->n = 0;
    for (char *p = all, *e; *p; p = e + 1) {
        e = strchr(p, '\n');
        if (!e) break;
        assert_true(ts->n < cap);
        ts->s[ts->n] = hex_decode(p, (size_t)(e - p), &ts->len[ts->n]);
        ts->n++;
    }
    free(all);
    assert_true(ts->n >= 1000);
}

static inline void tok_strings_free(tok_strings *ts) {
    for (int i = 0; i < ts->n; i++) free(ts->s[i]);
    free(ts->s);
    free(ts->len);
}

/* "1,2,3" or "_" (no ids) into a malloc'd array */
static inline int *ids_parse(const char *s, int *n) {
    int cap = 16, k = 0;
    int *v = malloc(sizeof(int) * (size_t)cap);
    if (strcmp(s, "_"))
        for (const char *p = s; *p;) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p) break;
            if (k == cap) v = realloc(v, sizeof(int) * (size_t)(cap *= 2));
            v[k++] = (int)x;
            p = *end == ',' ? end + 1 : end;
        }
    *n = k;
    return v;
}

static inline void ids_print(FILE *f, const char *what, const int *v, int n) {
    fprintf(f, "  %-10s", what);
    for (int i = 0; i < n && i < 64; i++) fprintf(f, " %d", v[i]);
    if (n > 64) fprintf(f, " ... (%d ids)", n);
    fprintf(f, "\n");
}

static inline void text_print(FILE *f, const char *what, const char *s, size_t n) {
    fprintf(f, "  %-10s \"", what);
    for (size_t i = 0; i < n && i < 160; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fprintf(f, "\\n");
        else if (c == '\t') fprintf(f, "\\t");
        else if (c == '\r') fprintf(f, "\\r");
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fprintf(f, "\"%s\n", n > 160 ? "..." : "");
}

/* tokenize and compare; prints the difference and returns 1 on a mismatch */
static inline int tok_check(const spill_tokenizer *t, const char *what, const char *s, size_t n, int add_special,
                     int parse_special, const char *want_s) {
    int nw, *want = ids_parse(want_s, &nw), *got = NULL, ng = 0;
    spill_err err = {{0}};
    int bad = 0;
    if (spill_tokenize(t, s, n, add_special, parse_special, &got, &ng, &err)) {
        fprintf(stderr, "%s: tokenize failed: %s\n", what, err.msg);
        bad = 1;
    } else if (ng != nw || memcmp(got, want, sizeof(int) * (size_t)nw)) {
        fprintf(stderr, "%s (add_special %d, parse_special %d):\n", what, add_special, parse_special);
        text_print(stderr, "text", s, n);
        ids_print(stderr, "expected", want, nw);
        ids_print(stderr, "spill", got, ng);
        bad = 1;
    }
    free(want);
    free(got);
    return bad;
}

/* detokenize and compare with the hex of the expected text ("=": the input itself) */
static inline int detok_check(const spill_tokenizer *t, const char *what, const char *ids_s, const char *s, size_t n,
                       const char *want_hex) {
    int ni, *ids = ids_parse(ids_s, &ni);
    size_t wn = n;
    char *want = strcmp(want_hex, "=") ? hex_decode(want_hex, strlen(want_hex), &wn) : NULL;
    const char *w = want ? want : s;
    char *out = NULL;
    size_t on = 0;
    spill_err err = {{0}};
    int bad = 0;
    if (spill_detokenize(t, ids, ni, 1, &out, &on, &err)) {
        fprintf(stderr, "%s: detokenize failed: %s\n", what, err.msg);
        bad = 1;
    } else if (on != wn || memcmp(out, w, wn)) {
        fprintf(stderr, "%s: decoding differs\n", what);
        text_print(stderr, "expected", w, wn);
        text_print(stderr, "spill", out, on);
        bad = 1;
    }
    free(ids);
    free(want);
    free(out);
    return bad;
}

#endif
