#define PCRE2_CODE_UNIT_WIDTH 8
#include "regex.h"

#include <pcre2.h>
#include <pthread.h>

#include "unicode.h"

struct spill_regex {
    pcre2_code *code;
    pcre2_match_data *md; /* one per regex, used under lock: spill-server tokenizes on every connection's
                             thread at once, and two matches in one match data left a thread looping */
    pthread_mutex_t lock;
    char what[160];
};

/* Oniguruma's \s is the White_Space property and its \w the Unicode word class; PCRE2's \s also
 * takes U+180E and its \w leaves out marks and takes every number. Rewrite them to the properties
 * (outside and inside character classes; a \W inside a class is left to PCRE2). */
#define WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
static char *onig_classes(const char *p, size_t n, size_t *out_n) {
    char *o = malloc(n * 40 + 1);
    if (!o) return NULL;
    size_t k = 0;
    int in_class = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            const char *rep = NULL;
            if (e == 's') rep = "\\p{White_Space}";
            else if (e == 'S') rep = "\\P{White_Space}";
            else if (e == 'w') rep = in_class ? WORD_CLASS : "[" WORD_CLASS "]";
            else if (e == 'W' && !in_class) rep = "[^" WORD_CLASS "]";
            if (rep) {
                size_t l = strlen(rep);
                memcpy(o + k, rep, l);
                k += l;
            } else {
                o[k++] = c;
                o[k++] = e;
            }
            i++;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            o[k++] = c;
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < n && p[i + 1] == '^') o[k++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']') o[k++] = p[++i];
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        o[k++] = c;
    }
    *out_n = k;
    return o;
}

spill_regex *spill_regex_compile(const char *pattern, size_t pattern_len, int literal, const char *what,
                                 spill_err *err) {
    spill_regex *re = calloc(1, sizeof *re);
    if (!re) {
        spill_err_set(err, "out of memory compiling %s", what);
        return NULL;
    }
    snprintf(re->what, sizeof re->what, "%s", what);
    uint32_t opts = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
    int code;
    PCRE2_SIZE at;
    size_t tn = pattern_len;
    char *translated = literal ? NULL : onig_classes(pattern, pattern_len, &tn);
    if (!literal && !translated) {
        free(re);
        spill_err_set(err, "out of memory compiling %s", what);
        return NULL;
    }
    re->code = pcre2_compile((PCRE2_SPTR)(literal ? pattern : translated), tn, opts, &code, &at, NULL);
    free(translated);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        spill_err_set(err, "%s: the regular expression does not compile at offset %zu: %s (pattern: %.200s)", what,
                      (size_t)at, (const char *)msg, pattern);
        free(re);
        return NULL;
    }
    /* JIT where the platform has it (x86-64 and aarch64 do); the interpreter otherwise */
    (void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!re->md || pthread_mutex_init(&re->lock, NULL)) {
        pcre2_match_data_free(re->md);
        pcre2_code_free(re->code);
        free(re);
        spill_err_set(err, "out of memory compiling %s", what);
        return NULL;
    }
    return re;
}

void spill_regex_free(spill_regex *re) {
    if (!re) return;
    pthread_mutex_destroy(&re->lock);
    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
    free(re);
}

static int find_opts(const spill_regex *re, const char *s, size_t n, size_t from, uint32_t opts, size_t *ms,
                     size_t *me, spill_err *err) {
    spill_regex *w = (spill_regex *)re; /* the match data and its lock: scratch, not the pattern */
    pthread_mutex_lock(&w->lock);
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, from, opts | PCRE2_NO_UTF_CHECK, w->md, NULL);
    if (rc >= 0) {
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        *ms = ov[0];
        *me = ov[1];
    }
    pthread_mutex_unlock(&w->lock);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        return spill_err_set(err, "%s: matching failed: %s", re->what, (const char *)msg);
    }
    return 1;
}

/* PCRE2 runs with PCRE2_NO_UTF_CHECK (its own check would scan the rest of the text at every match:
 * quadratic over a long prompt), so the text is checked here, once. Valid text in gives valid pieces
 * out, but an added token whose text is not valid UTF-8 (a hostile tokenizer) can cut a character in
 * two: such a piece is refused, never matched. */
static int check_utf8(const spill_regex *re, const char *s, size_t n, spill_err *err) {
    if (spill_utf8_valid(s, n)) return 0;
    return spill_err_set(err, "%s: a %zu-byte piece of the text is not valid UTF-8 (an added token whose text is "
                              "not valid UTF-8 can cut a character in two); it is refused rather than matched",
                         re->what, n);
}

int spill_regex_find(const spill_regex *re, const char *s, size_t n, size_t from, size_t *ms, size_t *me,
                     spill_err *err) {
    if (check_utf8(re, s, n, err)) return -1;
    return find_opts(re, s, n, from, 0, ms, me, err);
}

int spill_regex_next(const spill_regex *re, const char *s, size_t n, spill_regex_iter *it, size_t *ms, size_t *me,
                     spill_err *err) {
    if (!it->checked) {
        if (check_utf8(re, s, n, err)) return -1;
        it->checked = 1;
    }
    for (;;) {
        if (it->pos > n) return 0;
        int rc = find_opts(re, s, n, it->pos, 0, ms, me, err);
        if (rc <= 0) return rc;
        if (*me == *ms && it->last_end == *me) {
            int l = 1;
            if (it->pos < n) spill_utf8_decode(s + it->pos, n - it->pos, &l);
            it->pos += (size_t)l;
            continue;
        }
        it->pos = *me;
        it->last_end = *me;
        return 1;
    }
}
