/* Normalizers of tokenizer.json (NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Prepend,
 * Replace, Sequence), applied to each piece of text between added tokens, as the tokenizers library
 * does. The text is worked on as code points, each tagged with the original byte offset it came
 * from, so that a later Metaspace pre-tokenizer can tell whether a piece starts the input. */
#include "tok_internal.h"

typedef enum { NZ_NF, NZ_LOWER, NZ_STRIP, NZ_PREPEND, NZ_REPLACE } nz_kind;

typedef struct {
    nz_kind kind;
    spill_nf form;        /* NF */
    int left, right;      /* STRIP */
    spill_regex *re;      /* REPLACE */
    uint32_t *cps;        /* PREPEND, REPLACE: the text put in, as code points */
    size_t n_cps;
} nz_op;

struct spill_normalizer {
    nz_op *ops;
    int n, cap;
};

spill_normalizer *spill_norm_new(void) { return calloc(1, sizeof(spill_normalizer)); }

void spill_norm_free(spill_normalizer *nz) {
    if (!nz) return;
    for (int i = 0; i < nz->n; i++) {
        spill_regex_free(nz->ops[i].re);
        free(nz->ops[i].cps);
    }
    free(nz->ops);
    free(nz);
}

int spill_norm_count(const spill_normalizer *nz) { return nz ? nz->n : 0; }

static nz_op *push(spill_normalizer *nz) {
    if (nz->n == nz->cap) {
        int nc = nz->cap ? nz->cap * 2 : 4;
        nz_op *no = realloc(nz->ops, sizeof *no * (size_t)nc);
        if (!no) return NULL;
        nz->ops = no;
        nz->cap = nc;
    }
    nz_op *op = &nz->ops[nz->n++];
    memset(op, 0, sizeof *op);
    return op;
}

/* s[0..n) (valid UTF-8) as code points */
static uint32_t *to_cps(const char *s, size_t n, size_t *count) {
    uint32_t *c = malloc(sizeof *c * (n ? n : 1));
    if (!c) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l;
        c[k++] = spill_utf8_decode(s + i, n - i, &l);
        i += (size_t)l;
    }
    *count = k;
    return c;
}

int spill_norm_add_nf(spill_normalizer *nz, spill_nf form) {
    nz_op *op = push(nz);
    if (!op) return -1;
    op->kind = NZ_NF;
    op->form = form;
    return 0;
}

int spill_norm_add_lowercase(spill_normalizer *nz) {
    nz_op *op = push(nz);
    if (!op) return -1;
    op->kind = NZ_LOWER;
    return 0;
}

int spill_norm_add_strip(spill_normalizer *nz, int left, int right) {
    nz_op *op = push(nz);
    if (!op) return -1;
    op->kind = NZ_STRIP;
    op->left = left;
    op->right = right;
    return 0;
}

int spill_norm_add_prepend(spill_normalizer *nz, const char *s, size_t n) {
    nz_op *op = push(nz);
    if (!op) return -1;
    op->kind = NZ_PREPEND;
    if (!(op->cps = to_cps(s, n, &op->n_cps))) return -1;
    return 0;
}

int spill_norm_add_replace(spill_normalizer *nz, spill_regex *re, const char *content, size_t n) {
    nz_op *op = push(nz);
    if (!op) {
        spill_regex_free(re);
        return -1;
    }
    op->kind = NZ_REPLACE;
    op->re = re;
    if (!(op->cps = to_cps(content, n, &op->n_cps))) return -1;
    return 0;
}

int spill_norm_add_strip_accents(spill_normalizer *nz) {
    /* the library drops every combining mark */
    spill_regex *re = spill_regex_compile("\\p{M}", 5, 0, "StripAccents", NULL);
    if (!re) return -1;
    return spill_norm_add_replace(nz, re, "", 0);
}

/* the working text: code points and their original offsets */
typedef struct {
    uint32_t *c, *tag;
    size_t n, cap;
} cpbuf;

static int cp_reserve(cpbuf *b, size_t n) {
    if (n <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < n) nc *= 2;
    uint32_t *c = realloc(b->c, sizeof *c * nc);
    if (!c) return -1;
    b->c = c;
    uint32_t *t = realloc(b->tag, sizeof *t * nc);
    if (!t) return -1;
    b->tag = t;
    b->cap = nc;
    return 0;
}

static int cp_push(cpbuf *b, uint32_t c, uint32_t tag) {
    if (cp_reserve(b, b->n + 1)) return -1;
    b->c[b->n] = c;
    b->tag[b->n++] = tag;
    return 0;
}

static void cp_swap(cpbuf *a, cpbuf *b) {
    cpbuf t = *a;
    *a = *b;
    *b = t;
}

/* UTF-8 of b (malloc'd) */
static char *cp_utf8(const cpbuf *b, size_t *len) {
    char *s = malloc(b->n * 4 + 1);
    if (!s) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < b->n; i++) o += (size_t)spill_utf8_encode(b->c[i], s + o);
    *len = o;
    return s;
}

static int run_op(const nz_op *op, cpbuf *cur, cpbuf *nxt, spill_err *err) {
    nxt->n = 0;
    switch (op->kind) {
    case NZ_NF: {
        size_t room = spill_nf_room(op->form, cur->c, cur->n);
        if (cp_reserve(nxt, room + 1)) return -1;
        nxt->n = spill_nf_apply(op->form, cur->c, cur->tag, cur->n, nxt->c, nxt->tag);
        break;
    }
    case NZ_LOWER:
        for (size_t i = 0; i < cur->n; i++) {
            uint32_t l[3];
            int k = spill_cp_lower(cur->c[i], l);
            for (int j = 0; j < k; j++)
                if (cp_push(nxt, l[j], cur->tag[i])) return -1;
        }
        break;
    case NZ_STRIP: {
        size_t a = 0, b = cur->n;
        if (op->left)
            while (a < b && spill_cp_is_space(cur->c[a])) a++;
        if (op->right)
            while (b > a && spill_cp_is_space(cur->c[b - 1])) b--;
        for (size_t i = a; i < b; i++)
            if (cp_push(nxt, cur->c[i], cur->tag[i])) return -1;
        break;
    }
    case NZ_PREPEND:
        if (cur->n == 0) return 0; /* nothing to prepend to: the text stays empty */
        for (size_t j = 0; j < op->n_cps; j++)
            if (cp_push(nxt, op->cps[j], cur->tag[0])) return -1;
        for (size_t i = 0; i < cur->n; i++)
            if (cp_push(nxt, cur->c[i], cur->tag[i])) return -1;
        break;
    case NZ_REPLACE: {
        size_t len = 0;
        char *s = cp_utf8(cur, &len);
        size_t *idx = malloc(sizeof *idx * (len + 1)); /* byte -> code point index */
        if (!s || !idx) {
            free(s);
            free(idx);
            return -1;
        }
        for (size_t i = 0, o = 0; i < cur->n; i++) {
            char tmp[4];
            int l = spill_utf8_encode(cur->c[i], tmp);
            for (int k = 0; k < l; k++) idx[o++] = i;
        }
        idx[len] = cur->n;
        spill_regex_iter it = SPILL_REGEX_ITER_INIT;
        size_t ms, me, done = 0;
        int rc;
        while ((rc = spill_regex_next(op->re, s, len, &it, &ms, &me, err)) == 1) {
            for (size_t i = idx[done]; i < idx[ms]; i++)
                if (cp_push(nxt, cur->c[i], cur->tag[i])) goto oom;
            uint32_t tag = idx[ms] < cur->n ? cur->tag[idx[ms]] : (cur->n ? cur->tag[cur->n - 1] : 0);
            for (size_t j = 0; j < op->n_cps; j++)
                if (cp_push(nxt, op->cps[j], tag)) goto oom;
            done = me;
        }
        if (rc < 0) {
            free(s);
            free(idx);
            return -2;
        }
        for (size_t i = idx[done]; i < cur->n; i++)
            if (cp_push(nxt, cur->c[i], cur->tag[i])) goto oom;
        free(s);
        free(idx);
        break;
    oom:
        free(s);
        free(idx);
        return -1;
    }
    }
    cp_swap(cur, nxt);
    return 0;
}

static int normalize(const spill_normalizer *nz, const char *s, size_t n, size_t orig, cpbuf *cur,
                     spill_err *err) {
    cpbuf nxt = {0};
    if (cp_reserve(cur, n + 1)) goto oom;
    cur->n = 0;
    for (size_t i = 0; i < n;) {
        int l;
        cur->c[cur->n] = spill_utf8_decode(s + i, n - i, &l);
        cur->tag[cur->n++] = (uint32_t)(orig + i > UINT32_MAX ? UINT32_MAX : orig + i);
        i += (size_t)l;
    }
    for (int k = 0; nz && k < nz->n; k++) {
        int rc = run_op(&nz->ops[k], cur, &nxt, err);
        if (rc == -1) goto oom;
        if (rc < 0) {
            free(nxt.c);
            free(nxt.tag);
            return -1;
        }
    }
    free(nxt.c);
    free(nxt.tag);
    return 0;
oom:
    free(nxt.c);
    free(nxt.tag);
    return spill_err_set(err, "out of memory normalizing %zu bytes of text", n);
}

int spill_norm_apply(const spill_normalizer *nz, const char *s, size_t n, size_t orig, spill_pieces *out,
                     spill_err *err) {
    cpbuf cur = {0};
    if (normalize(nz, s, n, orig, &cur, err)) {
        free(cur.c);
        free(cur.tag);
        return -1;
    }
    size_t off = out->len, zero = 0;
    int leading = 1;
    for (size_t i = 0; i < cur.n; i++) {
        char b[4];
        int l = spill_utf8_encode(cur.c[i], b);
        spill_pieces_put(out, b, (size_t)l);
        if (leading && cur.tag[i] == 0) zero += (size_t)l;
        else leading = 0;
    }
    free(cur.c);
    free(cur.tag);
    spill_pieces_add(out, off, out->len - off, zero, -1);
    return out->oom ? spill_err_set(err, "out of memory normalizing %zu bytes of text", n) : 0;
}

int spill_norm_string(const spill_normalizer *nz, const char *s, size_t n, char **out, size_t *out_len,
                      spill_err *err) {
    cpbuf cur = {0};
    int rc = normalize(nz, s, n, 0, &cur, err);
    if (rc == 0) {
        *out = cp_utf8(&cur, out_len);
        if (!*out) rc = spill_err_set(err, "out of memory normalizing an added token");
    }
    free(cur.c);
    free(cur.tag);
    return rc;
}
