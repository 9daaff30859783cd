/* Pre-tokenizers of tokenizer.json, as the tokenizers library runs them: each one cuts every piece
 * of text further (a Sequence runs them in order). Split (a regex or a literal, five behaviours,
 * invert) is the general form; Digits, Punctuation, Whitespace and WhitespaceSplit are Splits with a
 * fixed pattern (tokenizer_hf.c builds them); ByteLevel and Metaspace also rewrite the text. */
#include "tok_internal.h"

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

int spill_cp_to_byte(uint32_t cp) {
    static int table[324];
    static int ready;
    if (!ready) { /* idempotent, so a race writes the same values */
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) table[spill_byte_to_cp((unsigned char)b)] = b;
        ready = 1;
    }
    return cp < 324 ? table[cp] : -1;
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
    spill_regex_iter it = {0, SIZE_MAX};
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

static int split_piece(const char *s, size_t n, size_t zero, const spill_regex *re, spill_split_behavior b,
                       int invert, spans *sp, spill_pieces *out, spill_err *err) {
    if (find_spans(re, s, n, sp, err)) return -1;
    if (invert)
        for (size_t i = 0; i < sp->n; i++) sp->v[i].hit = !sp->v[i].hit;
    apply_behavior(sp, b);
    for (size_t i = 0; i < sp->n; i++) {
        if (sp->v[i].hit || sp->v[i].e == sp->v[i].s) continue;
        size_t off = spill_pieces_put(out, s + sp->v[i].s, sp->v[i].e - sp->v[i].s);
        spill_pieces_add(out, off, sp->v[i].e - sp->v[i].s, zero > sp->v[i].s ? zero - sp->v[i].s : 0, -1);
    }
    return 0;
}

/* ---- the rewriting steps ---- */

/* every byte as the UTF-8 of the code point standing for it */
static void byte_map(const char *s, size_t n, size_t zero, spill_pieces *out) {
    size_t off = out->len, z = 0;
    for (size_t i = 0; i < n; i++) {
        char b[4];
        int l = spill_utf8_encode(spill_byte_to_cp((unsigned char)s[i]), b);
        spill_pieces_put(out, b, (size_t)l);
        if (i < zero) z += (size_t)l;
    }
    spill_pieces_add(out, off, out->len - off, z, -1);
}

static int run_op(const pt_op *op, const spill_pieces *in, spill_pieces *out, spans *sp, spill_pieces *tmp,
                  spill_pieces *tmp2, spill_err *err) {
    spill_pieces_clear(out);
    for (int i = 0; i < in->n; i++) {
        const spill_piece *pc = &in->p[i];
        if (pc->id >= 0) {
            spill_pieces_copy(out, in, i);
            continue;
        }
        const char *s = in->text + pc->off;
        size_t n = pc->len, zero = pc->zero;
        switch (op->kind) {
        case PT_SPLIT:
            if (split_piece(s, n, zero, op->re, op->behavior, op->invert, sp, out, err)) return -1;
            break;
        case PT_BYTELEVEL: {
            spill_pieces_clear(tmp);
            spill_pieces_clear(tmp2);
            if (op->add_prefix_space && s[0] != ' ') {
                spill_pieces_put(tmp, " ", 1);
                if (zero) zero++; /* the space takes the place of the first character */
            }
            spill_pieces_put(tmp, s, n);
            if (tmp->oom) return spill_err_set(err, "out of memory");
            if (!op->re) {
                byte_map(tmp->text, tmp->len, zero, out);
                break;
            }
            if (split_piece(tmp->text, tmp->len, zero, op->re, SPILL_SPLIT_ISOLATED, 0, sp, tmp2, err)) return -1;
            for (int k = 0; k < tmp2->n; k++)
                byte_map(tmp2->text + tmp2->p[k].off, tmp2->p[k].len, tmp2->p[k].zero, out);
            if (tmp2->oom) return spill_err_set(err, "out of memory");
            break;
        }
        case PT_METASPACE: {
            spill_pieces_clear(tmp);
            size_t z = 0;
            int starts_rep = n >= (size_t)op->rep_len && !memcmp(s, op->rep, (size_t)op->rep_len);
            int starts_space = n > 0 && s[0] == ' ';
            /* spaces become the replacement first, so a leading space counts as one */
            int prepend = !(starts_rep || starts_space) &&
                          (op->prepend == SPILL_PREPEND_ALWAYS || (op->prepend == SPILL_PREPEND_FIRST && zero > 0));
            if (prepend) {
                spill_pieces_put(tmp, op->rep, (size_t)op->rep_len);
                if (zero) z += (size_t)op->rep_len;
            }
            for (size_t k = 0; k < n; k++) {
                size_t l = s[k] == ' ' ? (size_t)op->rep_len : 1;
                spill_pieces_put(tmp, s[k] == ' ' ? op->rep : s + k, l);
                if (k < zero) z += l;
            }
            if (tmp->oom) return spill_err_set(err, "out of memory");
            if (op->split) {
                if (split_piece(tmp->text, tmp->len, z, op->re, SPILL_SPLIT_MERGED_WITH_NEXT, 0, sp, out, err))
                    return -1;
            } else {
                size_t o = spill_pieces_put(out, tmp->text, tmp->len);
                spill_pieces_add(out, o, tmp->len, z, -1);
            }
            break;
        }
        }
        if (out->oom) return spill_err_set(err, "out of memory pre-tokenizing");
    }
    return 0;
}

int spill_pretok_apply(const spill_pretok *pt, spill_pieces *ps, spill_err *err) {
    if (!pt || pt->n == 0) return 0;
    spill_pieces out = {0}, tmp = {0}, tmp2 = {0};
    spans sp = {0};
    int rc = 0;
    for (int k = 0; k < pt->n && rc == 0; k++) {
        rc = run_op(&pt->ops[k], ps, &out, &sp, &tmp, &tmp2, err);
        spill_pieces t = *ps;
        *ps = out;
        out = t;
    }
    spill_pieces_free(&out);
    spill_pieces_free(&tmp);
    spill_pieces_free(&tmp2);
    free(sp.v);
    return rc;
}
