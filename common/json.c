/* Strict JSON: a recursive-descent parser into a tree (see spill_json.h). */
#include "spill_json.h"

#include <errno.h>
#include <math.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

typedef struct parser {
    const char *s;
    size_t n, i;
    const char *what;
    spill_err *err;
    int depth;
} parser;

static int perr(parser *p, size_t at, const char *msg) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < at && k < p->n; k++) {
        if (p->s[k] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return spill_err_set(p->err, "%s: invalid JSON at byte %zu (line %zu, column %zu): %s", p->what, at, line, col, msg);
}

static void skip_ws(parser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int parse_value(parser *p, spill_json *v);

static int hex4(parser *p, unsigned *out) {
    if (p->n - p->i < 4) return perr(p, p->i, "truncated \\u escape");
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->i + k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return perr(p, p->i + k, "bad hex digit in \\u escape");
    }
    p->i += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* length of a valid UTF-8 sequence starting at s (RFC 3629: no overlongs, no surrogates), else 0 */
static size_t utf8_len(const unsigned char *s, size_t avail) {
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
    else return 0;
    if (avail < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static int parse_string(parser *p, char **out, size_t *out_len) {
    size_t start = p->i;
    p->i++; /* opening quote */
    /* the decoded string is never longer than the source */
    size_t end = p->i;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n) return perr(p, start, "unterminated string");
    char *o = malloc(end - p->i + 1);
    if (!o) return spill_err_set(p->err, "%s: out of memory", p->what);
    size_t k = 0;
    while (p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c >= 0x20 && c < 0x80 && c != '\\') { /* a run of plain ASCII, copied at once */
            size_t r = p->i + 1;
            while (r < end && (unsigned char)p->s[r] >= 0x20 && (unsigned char)p->s[r] < 0x80 && p->s[r] != '\\' &&
                   p->s[r] != '"')
                r++;
            memcpy(o + k, p->s + p->i, r - p->i);
            k += r - p->i;
            p->i = r;
            continue;
        }
        if (c < 0x20) {
            free(o);
            return perr(p, p->i, "control character in string (must be escaped)");
        }
        if (c == '\\') {
            char e = p->s[p->i + 1];
            p->i += 2;
            switch (e) {
            case '"': o[k++] = '"'; break;
            case '\\': o[k++] = '\\'; break;
            case '/': o[k++] = '/'; break;
            case 'b': o[k++] = '\b'; break;
            case 'f': o[k++] = '\f'; break;
            case 'n': o[k++] = '\n'; break;
            case 'r': o[k++] = '\r'; break;
            case 't': o[k++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (hex4(p, &cp)) {
                    free(o);
                    return -1;
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(o);
                    return perr(p, p->i - 6, "lone low surrogate in \\u escape");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (p->n - p->i < 6 || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
                        free(o);
                        return perr(p, p->i, "high surrogate not followed by a low one");
                    }
                    p->i += 2;
                    if (hex4(p, &lo)) {
                        free(o);
                        return -1;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        free(o);
                        return perr(p, p->i - 6, "high surrogate not followed by a low one");
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                k += put_utf8(o + k, cp);
                break;
            }
            default: free(o); return perr(p, p->i - 1, "unknown escape");
            }
            continue;
        }
        size_t l = utf8_len((const unsigned char *)p->s + p->i, p->n - p->i);
        if (!l) {
            free(o);
            return perr(p, p->i, "invalid UTF-8");
        }
        memcpy(o + k, p->s + p->i, l);
        k += l;
        p->i += l;
    }
    p->i++; /* closing quote */
    o[k] = 0;
    *out = o;
    *out_len = k;
    return 0;
}

static int parse_number(parser *p, spill_json *v) {
    size_t start = p->i;
    size_t i = p->i;
    int integral = 1;
    if (i < p->n && p->s[i] == '-') i++;
    if (i >= p->n) return perr(p, start, "truncated number");
    if (p->s[i] == '0') {
        i++;
    } else if (p->s[i] >= '1' && p->s[i] <= '9') {
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    } else {
        return perr(p, start, "unexpected character");
    }
    if (i < p->n && p->s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') return perr(p, i, "digit expected after '.'");
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->n || p->s[i] < '0' || p->s[i] > '9') return perr(p, i, "digit expected in exponent");
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    }
    size_t len = i - start;
    size_t neg = p->s[start] == '-';
    if (integral && len - neg <= 18) { /* exact in int64, and (double) rounds it as strtod would */
        int64_t x = 0;
        for (size_t k = start + neg; k < i; k++) x = x * 10 + (p->s[k] - '0');
        v->type = SPILL_JSON_NUMBER;
        v->is_int = 1;
        v->integer = neg ? -x : x;
        v->number = neg ? -(double)x : (double)x; /* -0 stays -0.0 */
        p->i = i;
        return 0;
    }
    char buf[64];
    char *tmp = len < sizeof buf ? buf : malloc(len + 1);
    if (!tmp) return spill_err_set(p->err, "%s: out of memory", p->what);
    memcpy(tmp, p->s + start, len);
    tmp[len] = 0;
    errno = 0;
    v->number = strtod(tmp, NULL);
    if (!isfinite(v->number)) {
        if (tmp != buf) free(tmp);
        return perr(p, start, "number out of range");
    }
    if (integral) {
        errno = 0;
        long long ll = strtoll(tmp, NULL, 10);
        if (!errno) {
            v->is_int = 1;
            v->integer = ll;
        }
    }
    if (tmp != buf) free(tmp);
    v->type = SPILL_JSON_NUMBER;
    p->i = i;
    return 0;
}

static int lit(parser *p, const char *word) {
    size_t l = strlen(word);
    if (p->n - p->i < l || memcmp(p->s + p->i, word, l)) return perr(p, p->i, "unexpected characters");
    p->i += l;
    return 0;
}

static void free_value(spill_json *v);
typedef struct keyset keyset;
static int parse_container_body(parser *p, spill_json *v, int object, size_t start, keyset *ks);

/* grow-by-doubling arrays for items while parsing */
static int push(parser *p, spill_json *v, size_t *cap, int object) {
    if (v->n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 2;
    spill_json *ni = realloc(v->items, nc * sizeof *ni);
    if (!ni) return spill_err_set(p->err, "%s: out of memory", p->what);
    v->items = ni;
    if (object) {
        char **nk = realloc(v->keys, nc * sizeof *nk);
        if (!nk) return spill_err_set(p->err, "%s: out of memory", p->what);
        v->keys = nk;
    }
    *cap = nc;
    return 0;
}

/* the items of a closed container keep no spare capacity: without this every [x] kept room for 8 */
static void shrink(spill_json *v, size_t cap) {
    if (v->n == cap || !v->n) return;
    spill_json *ni = realloc(v->items, v->n * sizeof *ni);
    if (ni) v->items = ni;
    if (v->keys) {
        char **nk = realloc(v->keys, v->n * sizeof *nk);
        if (nk) v->keys = nk;
    }
}

/* duplicate keys: a linear scan for small objects, a hash set once an object grows (a tokenizer's
   vocabulary is an object of 150,000 keys). The hash is keyed with random bytes drawn for each set
   (SipHash-1-3): with a fixed hash, keys that all fall into one bucket can be computed in advance,
   and 65,536 of them (3.5 MB) took 13 s to check instead of 30 ms. */
typedef struct keyset {
    size_t *slot; /* index + 1 into the object's keys; 0 = empty */
    size_t cap;
    uint64_t key[2];
} keyset;

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                                       \
    do {                                                                                                               \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                                      \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                                         \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                                         \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                                      \
    } while (0)

static uint64_t key_hash(const keyset *ks, const char *key) {
    const unsigned char *m = (const unsigned char *)key;
    size_t len = strlen(key), end = len - len % 8;
    uint64_t v0 = 0x736f6d6570736575ull ^ ks->key[0], v1 = 0x646f72616e646f6dull ^ ks->key[1];
    uint64_t v2 = 0x6c7967656e657261ull ^ ks->key[0], v3 = 0x7465646279746573ull ^ ks->key[1];
    for (size_t i = 0; i < end; i += 8) {
        uint64_t w = 0;
        for (int b = 0; b < 8; b++) w |= (uint64_t)m[i + b] << (8 * b);
        v3 ^= w;
        SIPROUND;
        v0 ^= w;
    }
    uint64_t w = (uint64_t)len << 56;
    for (size_t b = 0; b < len % 8; b++) w |= (uint64_t)m[end + b] << (8 * b);
    v3 ^= w;
    SIPROUND;
    v0 ^= w;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void keyset_seed(keyset *ks) {
    if (getrandom(ks->key, sizeof ks->key, GRND_NONBLOCK) == (ssize_t)sizeof ks->key) return;
    struct timespec ts; /* no entropy yet (early boot): weaker, still not known in advance */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ks->key[0] = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)ks;
    ks->key[1] = ks->key[0] * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)&ts;
}

/* 1 if key is already in obj (keys[0..n)), else adds index n; -1 out of memory */
static int keyset_add(keyset *ks, spill_json *obj, size_t n, const char *key) {
    if (n < 32) {
        for (size_t k = 0; k < n; k++)
            if (!strcmp(obj->keys[k], key)) return 1;
        return 0;
    }
    if ((n + 1) * 2 > ks->cap) {
        if (!ks->cap) keyset_seed(ks);
        size_t cap = ks->cap ? ks->cap * 4 : 256;
        size_t *ns = calloc(cap, sizeof *ns);
        if (!ns) return -1;
        free(ks->slot);
        ks->slot = ns;
        ks->cap = cap;
        for (size_t k = 0; k < n; k++) { /* keys[0..n) are distinct by now */
            size_t i = (size_t)key_hash(ks, obj->keys[k]) & (cap - 1);
            while (ns[i]) i = (i + 1) & (cap - 1);
            ns[i] = k + 1;
        }
    }
    size_t i = (size_t)key_hash(ks, key) & (ks->cap - 1);
    while (ks->slot[i]) {
        if (!strcmp(obj->keys[ks->slot[i] - 1], key)) return 1;
        i = (i + 1) & (ks->cap - 1);
    }
    ks->slot[i] = n + 1;
    return 0;
}

static int parse_container(parser *p, spill_json *v, int object) {
    size_t start = p->i;
    keyset ks = {NULL, 0, {0, 0}};
    int rc = parse_container_body(p, v, object, start, &ks);
    free(ks.slot);
    return rc;
}

static int parse_container_body(parser *p, spill_json *v, int object, size_t start, keyset *ks) {
    if (++p->depth > SPILL_JSON_MAX_DEPTH) return perr(p, start, "nested deeper than 128 levels");
    v->type = object ? SPILL_JSON_OBJECT : SPILL_JSON_ARRAY;
    p->i++;
    size_t cap = 0;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == (object ? '}' : ']')) {
        p->i++;
        p->depth--;
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (push(p, v, &cap, object)) return -1;
        char *key = NULL;
        if (object) {
            size_t klen, kat = p->i;
            if (p->i >= p->n || p->s[p->i] != '"') return perr(p, p->i, "object key (a string) expected");
            if (parse_string(p, &key, &klen)) return -1;
            if (strlen(key) != klen) { /* keys are C strings: "a\u0000b" would be read as "a" */
                free(key);
                return perr(p, kat, "\\u0000 in an object key");
            }
            int dup = keyset_add(ks, v, v->n, key);
            if (dup) {
                free(key);
                return dup < 0 ? spill_err_set(p->err, "%s: out of memory", p->what) : perr(p, kat, "duplicate key");
            }
            skip_ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') {
                free(key);
                return perr(p, p->i, "':' expected after an object key");
            }
            p->i++;
            skip_ws(p);
        }
        spill_json *item = &v->items[v->n];
        memset(item, 0, sizeof *item);
        if (object) v->keys[v->n] = key;
        v->n++; /* counted before parsing so that a failure frees what was started */
        if (parse_value(p, item)) return -1;
        skip_ws(p);
        if (p->i >= p->n) return perr(p, start, object ? "unterminated object" : "unterminated array");
        char c = p->s[p->i];
        if (c == ',') {
            p->i++;
            skip_ws(p);
            if (p->i < p->n && p->s[p->i] == (object ? '}' : ']')) return perr(p, p->i, "trailing comma");
            continue;
        }
        if (c == (object ? '}' : ']')) {
            p->i++;
            p->depth--;
            shrink(v, cap);
            return 0;
        }
        return perr(p, p->i, object ? "',' or '}' expected" : "',' or ']' expected");
    }
}

static int parse_value(parser *p, spill_json *v) {
    skip_ws(p);
    if (p->i >= p->n) return perr(p, p->i, "value expected, found the end");
    v->offset = p->i;
    switch (p->s[p->i]) {
    case '{': return parse_container(p, v, 1);
    case '[': return parse_container(p, v, 0);
    case '"': v->type = SPILL_JSON_STRING; return parse_string(p, &v->str, &v->len);
    case 't': v->type = SPILL_JSON_BOOL; v->boolean = 1; return lit(p, "true");
    case 'f': v->type = SPILL_JSON_BOOL; return lit(p, "false");
    case 'n': v->type = SPILL_JSON_NULL; return lit(p, "null");
    default: return parse_number(p, v);
    }
}

static void free_value(spill_json *v) {
    free(v->str);
    for (size_t k = 0; k < v->n; k++) {
        free_value(&v->items[k]);
        if (v->keys) free(v->keys[k]);
    }
    free(v->items);
    free(v->keys);
}

int spill_json_parse(const char *text, size_t len, const char *what, spill_json **out, spill_err *err) {
    *out = NULL;
    parser p = {text, len, 0, what ? what : "JSON", err, 0};
    spill_json *root = calloc(1, sizeof *root);
    if (!root) return spill_err_set(err, "%s: out of memory", p.what);
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) p.i = 3; /* a UTF-8 byte-order mark is tolerated */
    if (parse_value(&p, root)) {
        spill_json_free(root);
        return -1;
    }
    skip_ws(&p);
    if (p.i != p.n) {
        spill_json_free(root);
        return perr(&p, p.i, "text after the end of the document");
    }
    *out = root;
    return 0;
}

int spill_json_parse_file(const char *path, size_t max_bytes, spill_json **out, spill_err *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return spill_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return spill_err_set(err, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fclose(f);
        return spill_err_set(err, "%s: %lld bytes; the limit for this file is %zu", path, (long long)st.st_size,
                             max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(f);
        return spill_err_set(err, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return spill_err_set(err, "%s: read %zu of %zu bytes", path, got, n);
    }
    int rc = spill_json_parse(buf, n, path, out, err);
    free(buf);
    return rc;
}

void spill_json_free(spill_json *j) {
    if (!j) return;
    free_value(j);
    free(j);
}

const spill_json *spill_json_get(const spill_json *obj, const char *key) {
    if (!obj || obj->type != SPILL_JSON_OBJECT) return NULL;
    for (size_t k = 0; k < obj->n; k++)
        if (!strcmp(obj->keys[k], key)) return &obj->items[k];
    return NULL;
}

const spill_json *spill_json_get_type(const spill_json *obj, const char *key, spill_json_type t) {
    const spill_json *v = spill_json_get(obj, key);
    return v && v->type == t ? v : NULL;
}

const char *spill_json_type_name(spill_json_type t) {
    static const char *const names[] = {"null", "a boolean", "a number", "a string", "an array", "an object"};
    return (unsigned)t < 6 ? names[t] : "?";
}

int spill_json_get_int(const spill_json *obj, const char *key, int64_t lo, int64_t hi, int64_t def, int64_t *out,
                       const char *what, spill_err *err) {
    const spill_json *v = spill_json_get(obj, key);
    if (!v || v->type == SPILL_JSON_NULL) {
        *out = def;
        return 0;
    }
    if (v->type != SPILL_JSON_NUMBER || !v->is_int)
        return spill_err_set(err, "%s: \"%s\" should be an integer but is %s", what, key,
                             v->type == SPILL_JSON_NUMBER ? "a fraction" : spill_json_type_name(v->type));
    if (v->integer < lo || v->integer > hi)
        return spill_err_set(err, "%s: \"%s\" is %lld; it must be in %lld..%lld", what, key, (long long)v->integer,
                             (long long)lo, (long long)hi);
    *out = v->integer;
    return 0;
}

int spill_json_get_num(const spill_json *obj, const char *key, double def, double *out, const char *what,
                       spill_err *err) {
    const spill_json *v = spill_json_get(obj, key);
    if (!v || v->type == SPILL_JSON_NULL) {
        *out = def;
        return 0;
    }
    if (v->type != SPILL_JSON_NUMBER)
        return spill_err_set(err, "%s: \"%s\" should be a number but is %s", what, key, spill_json_type_name(v->type));
    *out = v->number;
    return 0;
}

void spill_json_write_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}
