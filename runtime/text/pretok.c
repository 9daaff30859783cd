/* Pre-tokenizers of tokenizer.json, as the tokenizers library runs them: each one cuts every piece
 * of text further (a Sequence runs them in order). Split (a regex or a literal, five behaviours,
 * invert) is the general form; Digits, Punctuation, Whitespace and WhitespaceSplit are Splits with a
 * fixed pattern (tokenizer_hf.c builds them); ByteLevel and Metaspace also rewrite the text. */
#include "tok_internal.h"

#include <pthread.h>

typedef enum { PT_SPLIT, PT_BYTELEVEL, PT_METASPACE } pt_kind;

typedef struct {
    pt_kind kind;
    spill_regex *re;               /* SPLIT; BYTELEVEL with use_regex: GPT-2's pattern */
    spill_split_behavior behavior; /* SPLIT */
    int invert;                    /* SPLIT */
    int add_prefix_space;          /* BYTELEVEL */
    char rep[4];                   /* METASPACE: the replacement character, UTF-8 */
    int rep_len;
    spill_prepend prepend;         /* METASPACE */
    int split;                     /* METASPACE */
} pt_op;

struct spill_pretok {
    pt_op *ops;
    int n, cap;
};

const char spill_gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

uint32_t spill_byte_to_cp(unsigned char b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    /* the other 68 bytes, in order, get 256, 257, ... */
    uint32_t n = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174)) n++;
    return 256u + n;
}

static int cp_table[324];
static pthread_once_t cp_once = PTHREAD_ONCE_INIT;

static void cp_table_init(void) {
    for (int i = 0; i < 324; i++) cp_table[i] = -1;
    for (int b = 0; b < 256; b++) cp_table[spill_byte_to_cp((unsigned char)b)] = b;
}

int spill_cp_to_byte(uint32_t cp) {
    pthread_once(&cp_once, cp_table_init); /* tokenizers run on several threads at once (spill-server) */
    return cp < 324 ? cp_table[cp] : -1;
}

spill_pretok *spill_pretok_new(void) { return calloc(1, sizeof(spill_pretok)); }

void spill_pretok_free(spill_pretok *pt) {
    if (!pt) return;
    for (int i = 0; i < pt->n; i++) spill_regex_free(pt->ops[i].re);
    free(pt->ops);
    free(pt);
}

static pt_op *push(spill_pretok *pt) {
    if (pt->n == pt->cap) {
        int nc = pt->cap ? pt->cap * 2 : 4;
        pt_op *no = realloc(pt->ops, sizeof *no * (size_t)nc);
        if (!no) return NULL;
        pt->ops = no;
        pt->cap = nc;
    }
    pt_op *op = &pt->ops[pt->n++];
    memset(op, 0, sizeof *op);
    return op;
}

int spill_pretok_add_split(spill_pretok *pt, spill_regex *re, spill_split_behavior behavior, int invert) {
    pt_op *op = push(pt);
    if (!op) {
        spill_regex_free(re);
        return -1;
    }
    op->kind = PT_SPLIT;
    op->re = re;
    op->behavior = behavior;
    op->invert = invert;
    return 0;
}

int spill_pretok_add_bytelevel(spill_pretok *pt, int add_prefix_space, int use_regex, spill_err *err) {
    spill_regex *re = NULL;
    if (use_regex && !(re = spill_regex_compile(spill_gpt2_pattern, strlen(spill_gpt2_pattern), 0,
                                                "the ByteLevel pre-tokenizer", err)))
        return -1;
    pt_op *op = push(pt);
    if (!op) {
        spill_regex_free(re);
        return spill_err_set(err, "out of memory");
    }
    op->kind = PT_BYTELEVEL;
    op->re = re;
    op->add_prefix_space = add_prefix_space;
    return 0;
}

int spill_pretok_add_metaspace(spill_pretok *pt, uint32_t replacement, spill_prepend prepend, int split,
                               spill_err *err) {
    char rep[4];
    int rep_len = spill_utf8_encode(replacement, rep);
    spill_regex *re = split ? spill_regex_compile(rep, (size_t)rep_len, 1, "the Metaspace pre-tokenizer", err) : NULL;
    if (split && !re) return -1;
    pt_op *op = push(pt);
    if (!op) {
        spill_regex_free(re);
        return spill_err_set(err, "out of memory");
    }
    op->kind = PT_METASPACE;
    op->re = re;
    memcpy(op->rep, rep, sizeof rep);
    op->rep_len = rep_len;
    op->prepend = prepend;
    op->split = split;
    return 0;
}

/* ---- splitting one piece (NormalizedString::split) ---- */
typedef struct { size_t s, e; int hit; } span;
typedef struct { span *v; size_t n, cap; } spans;

static int spans_push(spans *a, size_t s, size_t e, int hit) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 32;
        span *nv = realloc(a->v, sizeof *nv * nc);
        if (!nv) return -1;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = (span){s, e, hit};
    return 0;
}

/* matches and the text between them, covering s[0..n) */
static int find_spans(const spill_regex *re, const char *s, size_t n, spans *out, spill_err *err) {
    out->n = 0;
    spill_regex_iter it = SPILL_REGEX_ITER_INIT;
    size_t ms, me, prev = 0;
    int rc;
    while ((rc = spill_regex_next(re, s, n, &it, &ms, &me, err)) == 1) {
        if (prev != ms && spans_push(out, prev, ms, 0)) return spill_err_set(err, "out of memory");
        if (spans_push(out, ms, me, 1)) return spill_err_set(err, "out of memory");
        prev = me;
    }
    if (rc < 0) return -1;
    if (prev != n && spans_push(out, prev, n, 0)) return spill_err_set(err, "out of memory");
    return 0;
}

/* apply a behaviour to the spans in place: hit = 1 afterwards means "remove" */
static void apply_behavior(spans *a, spill_split_behavior b) {
    size_t w = 0;
    int prev_hit = 0;
    switch (b) {
    case SPILL_SPLIT_REMOVED: return;
    case SPILL_SPLIT_ISOLATED:
        for (size_t i = 0; i < a->n; i++) a->v[i].hit = 0;
        return;
    case SPILL_SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < a->n; i++) {
            int hit = a->v[i].hit;
            if (w > 0 && hit == prev_hit) a->v[w - 1].e = a->v[i].e;
            else a->v[w++] = (span){a->v[i].s, a->v[i].e, 0};
            prev_hit = hit;
        }
        a->n = w;
        return;
    case SPILL_SPLIT_MERGED_WITH_PREVIOUS:
        for (size_t i = 0; i < a->n; i++) {
            int hit = a->v[i].hit;
            if (w > 0 && hit && !prev_hit) a->v[w - 1].e = a->v[i].e;
            else a->v[w++] = (span){a->v[i].s, a->v[i].e, 0};
            prev_hit = hit;
        }
        a->n = w;
        return;
    case SPILL_SPLIT_MERGED_WITH_NEXT: {
        /* the same from the right: a match joins what follows it */
        size_t r = a->n;
        for (size_t i = a->n; i-- > 0;) {
            int hit = a->v[i].hit;
            if (r < a->n && hit && !prev_hit) a->v[r].s = a->v[i].s;
            else a->v[--r] = (span){a->v[i].s, a->v[i].e, 0};
            prev_hit = hit;
        }
        memmove(a->v, a->v + r, sizeof *a->v * (a->n - r));
        a->n -= r;
        return;
    }
    }
}

/* matches of one piece, split by a behaviour: spans with hit = 0 are the pieces to keep */
static int split_spans(const char *s, size_t n, const spill_regex *re, spill_split_behavior b, int invert, spans *sp,
                       spill_err *err) {
    if (find_spans(re, s, n, sp, err)) return -1;
    if (invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].hit = !sp->v[i].hit;
    apply_behavior(sp, b);
    return 0;
}

/* ---- the walk: each piece goes through the remaining steps at once (depth first), so that a long
 * text never becomes a long list of pieces; each step has its own scratch ---- */
typedef struct {
    spans sp;
    char *buf, *map; /* the piece rewritten (prefix, spaces); its bytes mapped */
    size_t buf_cap, map_cap;
} level;

struct spill_pretok_scratch {
    level *lv;
    int n;
};

typedef struct {
    const spill_pretok *pt;
    spill_pretok_scratch *sc;
    spill_piece_fn fn;
    void *ctx;
    spill_err *err;
} walk;

static int reserve(char **b, size_t *cap, size_t n) {
    if (n <= *cap) return 0;
    size_t nc = *cap ? *cap : 256;
    while (nc < n) {
        if (nc > SIZE_MAX / 2) return -1;
        nc *= 2;
    }
    char *nb = realloc(*b, nc);
    if (!nb) return -1;
    *b = nb;
    *cap = nc;
    return 0;
}

static int step(const walk *w, int k, const char *s, size_t n, size_t zero);

/* the spans of s that survive, each to the next step */
static int each_span(const walk *w, int k, const char *s, size_t zero, const spans *sp) {
    for (size_t i = 0; i < sp->n; i++) {
        const span *x = &sp->v[i];
        if (x->hit || x->e == x->s) continue;
        if (step(w, k + 1, s + x->s, x->e - x->s, zero > x->s ? zero - x->s : 0)) return -1;
    }
    return 0;
}

static int step(const walk *w, int k, const char *s, size_t n, size_t zero) {
    if (n == 0) return 0; /* the library drops empty pieces */
    if (k == w->pt->n) return w->fn(w->ctx, s, n, zero);
    const pt_op *op = &w->pt->ops[k];
    level *lv = &w->sc->lv[k];
    switch (op->kind) {
    case PT_SPLIT:
        if (split_spans(s, n, op->re, op->behavior, op->invert, &lv->sp, w->err)) return -1;
        return each_span(w, k, s, zero, &lv->sp);
    case PT_BYTELEVEL: {
        /* a leading space unless there is one; split by GPT-2's pattern; every byte mapped */
        int prefix = op->add_prefix_space && s[0] != ' ';
        if (reserve(&lv->buf, &lv->buf_cap, n + 1) || reserve(&lv->map, &lv->map_cap, 2 * (n + 1)))
            return spill_err_set(w->err, "out of memory");
        if (prefix) lv->buf[0] = ' ';
        memcpy(lv->buf + prefix, s, n);
        size_t len = n + (size_t)prefix;
        if (zero) zero += (size_t)prefix; /* the space takes the place of the first character */
        if (op->re) {
            if (split_spans(lv->buf, len, op->re, SPILL_SPLIT_ISOLATED, 0, &lv->sp, w->err)) return -1;
        } else {
            lv->sp.n = 0;
            if (spans_push(&lv->sp, 0, len, 0)) return spill_err_set(w->err, "out of memory");
        }
        for (size_t i = 0; i < lv->sp.n; i++) {
            const span *x = &lv->sp.v[i];
            if (x->e == x->s) continue;
            size_t o = 0, z = 0;
            for (size_t j = x->s; j < x->e; j++) {
                int l = spill_utf8_encode(spill_byte_to_cp((unsigned char)lv->buf[j]), lv->map + o);
                if (j < zero) z += (size_t)l;
                o += (size_t)l;
            }
            if (step(w, k + 1, lv->map, o, z)) return -1;
        }
        return 0;
    }
    case PT_METASPACE: {
        /* spaces become the replacement (so a leading space counts as one); a leading one added
         * always, or only to the piece that starts the input; then split before each */
        size_t rl = (size_t)op->rep_len;
        if (reserve(&lv->buf, &lv->buf_cap, (n + 1) * rl)) return spill_err_set(w->err, "out of memory");
        int starts = s[0] == ' ' || (n >= rl && !memcmp(s, op->rep, rl));
        int prepend = !starts && (op->prepend == SPILL_PREPEND_ALWAYS || (op->prepend == SPILL_PREPEND_FIRST && zero > 0));
        size_t o = 0, z = 0;
        if (prepend) {
            memcpy(lv->buf, op->rep, rl);
            o = rl;
            if (zero) z = rl;
        }
        for (size_t j = 0; j < n; j++) {
            size_t l = s[j] == ' ' ? rl : 1;
            memcpy(lv->buf + o, s[j] == ' ' ? op->rep : s + j, l);
            o += l;
            if (j < zero) z += l;
        }
        if (!op->split) return step(w, k + 1, lv->buf, o, z);
        if (split_spans(lv->buf, o, op->re, SPILL_SPLIT_MERGED_WITH_NEXT, 0, &lv->sp, w->err)) return -1;
        return each_span(w, k, lv->buf, z, &lv->sp);
    }
    }
    return 0;
}

spill_pretok_scratch *spill_pretok_scratch_new(const spill_pretok *pt) {
    spill_pretok_scratch *sc = calloc(1, sizeof *sc);
    int n = pt ? pt->n : 0;
    if (!sc || !(sc->lv = calloc((size_t)(n ? n : 1), sizeof *sc->lv))) {
        free(sc);
        return NULL;
    }
    sc->n = n;
    return sc;
}

void spill_pretok_scratch_free(spill_pretok_scratch *sc) {
    if (!sc) return;
    for (int i = 0; i < sc->n; i++) {
        free(sc->lv[i].sp.v);
        free(sc->lv[i].buf);
        free(sc->lv[i].map);
    }
    free(sc->lv);
    free(sc);
}

int spill_pretok_run(const spill_pretok *pt, spill_pretok_scratch *sc, const char *s, size_t n, size_t zero,
                     spill_piece_fn fn, void *ctx, spill_err *err) {
    static const spill_pretok none = {0};
    walk w = {pt ? pt : &none, sc, fn, ctx, err};
    return step(&w, 0, s, n, zero);
}
