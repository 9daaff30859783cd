/* Added and special tokens: found in the text before anything else runs, so that "<|im_start|>"
 * becomes one id whatever the pre-tokenizer would make of it. Two ways to find them:
 *  - the tokenizers library (AddedVocabulary): one left-to-right scan taking the longest token at
 *    the leftmost place, with the per-token lstrip/rstrip/single_word options;
 *  - llama.cpp (tokenizer_st_partition): every token in turn, longest text first, split out
 *    wherever it occurs in the text that is left. */
#include "tok_internal.h"

static int cmp_added(const void *a, const void *b) {
    const spill_added_tok *x = a, *y = b;
    unsigned char cx = x->len ? (unsigned char)x->text[0] : 0, cy = y->len ? (unsigned char)y->text[0] : 0;
    if (cx != cy) return cx < cy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

int spill_added_build(spill_added_set *set, spill_added_tok *toks, int n) {
    /* empty texts can never match */
    int k = 0;
    for (int i = 0; i < n; i++)
        if (toks[i].len > 0) toks[k++] = toks[i];
    set->t = toks;
    set->n = k;
    qsort(toks, (size_t)k, sizeof *toks, cmp_added);
    int b = 0;
    for (int c = 0; c <= 256; c++) {
        while (b < k && (unsigned char)toks[b].text[0] < c) b++;
        set->first[c] = c == 256 ? k : b;
    }
    return 0;
}

void spill_added_free(spill_added_set *set) {
    free(set->t);
    memset(set, 0, sizeof *set);
}

/* the longest token of the set that matches at s[p..n), or NULL */
static const spill_added_tok *longest_at(const spill_added_set *set, const char *s, size_t n, size_t p) {
    unsigned char c = (unsigned char)s[p];
    for (int i = set->first[c]; i < set->first[c + 1]; i++) {
        const spill_added_tok *a = &set->t[i];
        if (a->len <= n - p && !memcmp(s + p, a->text, a->len)) return a;
    }
    return NULL;
}

/* is the character that ends s[0..p) / starts s[p..n) a word character (Rust's \w)? */
static int word_before(const spill_regex *word_re, const char *s, size_t p) {
    if (p == 0) return 0;
    size_t q = p - 1;
    while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
    size_t ms, me;
    return spill_regex_find(word_re, s + q, p - q, 0, &ms, &me, NULL) == 1;
}
static int word_after(const spill_regex *word_re, const char *s, size_t n, size_t p) {
    if (p >= n) return 0;
    int l;
    spill_utf8_decode(s + p, n - p, &l);
    size_t ms, me;
    return spill_regex_find(word_re, s + p, (size_t)l, 0, &ms, &me, NULL) == 1;
}

/* the start of the run of whitespace that ends at p */
static size_t space_run_before(const char *s, size_t p, size_t floor) {
    while (p > floor) {
        size_t q = p - 1;
        while (q > floor && ((unsigned char)s[q] & 0xC0) == 0x80) q--;
        int l;
        uint32_t cp = spill_utf8_decode(s + q, p - q, &l);
        if (!spill_cp_is_space(cp) || (size_t)l != p - q) break;
        p = q;
    }
    return p;
}
static size_t space_run_after(const char *s, size_t n, size_t p) {
    while (p < n) {
        int l;
        uint32_t cp = spill_utf8_decode(s + p, n - p, &l);
        if (!spill_cp_is_space(cp)) break;
        p += (size_t)l;
    }
    return p;
}

/* the tokenizers library's find_matches over one piece */
static void split_leftmost_longest(const spill_added_set *set, int parse_special, const spill_regex *word_re,
                                   const spill_pieces *in, int pi, spill_pieces *out) {
    const spill_piece *pc = &in->p[pi];
    const char *s = in->text + pc->off;
    size_t n = pc->len, done = 0, p = 0;
    while (p < n) {
        const spill_added_tok *a = longest_at(set, s, n, p);
        if (!a) {
            p++;
            continue;
        }
        size_t start = p, stop = p + a->len;
        p = stop; /* matches never overlap: the search goes on after this one, used or not */
        if (a->special && !parse_special) continue;
        if (a->single_word && word_re &&
            (word_before(word_re, s, start) || word_after(word_re, s, n, stop)))
            continue;
        if (a->lstrip) start = space_run_before(s, start, done);
        if (a->rstrip) stop = space_run_after(s, n, stop);
        if (start > done) {
            size_t off = spill_pieces_put(out, s + done, start - done);
            spill_pieces_add(out, off, start - done, pc->zero > done ? pc->zero - done : 0, -1);
        }
        spill_pieces_add(out, out->len, 0, 0, a->id);
        done = stop;
        p = stop;
    }
    if (n > done) {
        size_t off = spill_pieces_put(out, s + done, n - done);
        spill_pieces_add(out, off, n - done, pc->zero > done ? pc->zero - done : 0, -1);
    }
}

/* llama.cpp: one token split out of every text piece of `in` */
static void split_one(const spill_added_tok *a, const spill_pieces *in, spill_pieces *out) {
    for (int i = 0; i < in->n; i++) {
        const spill_piece *pc = &in->p[i];
        if (pc->id >= 0 || pc->len < a->len) {
            spill_pieces_copy(out, in, i);
            continue;
        }
        const char *s = in->text + pc->off;
        size_t done = 0;
        for (size_t p = 0; p + a->len <= pc->len;) {
            if (s[p] != a->text[0] || memcmp(s + p, a->text, a->len)) {
                p++;
                continue;
            }
            if (p > done) {
                size_t off = spill_pieces_put(out, s + done, p - done);
                spill_pieces_add(out, off, p - done, pc->zero > done ? pc->zero - done : 0, -1);
            }
            spill_pieces_add(out, out->len, 0, 0, a->id);
            p += a->len;
            done = p;
        }
        if (pc->len > done) {
            size_t off = spill_pieces_put(out, s + done, pc->len - done);
            spill_pieces_add(out, off, pc->len - done, pc->zero > done ? pc->zero - done : 0, -1);
        }
    }
}

static int piece_has(const spill_pieces *ps, const spill_added_tok *a) {
    for (int i = 0; i < ps->n; i++) {
        const spill_piece *pc = &ps->p[i];
        if (pc->id < 0 && pc->len >= a->len && memmem(ps->text + pc->off, pc->len, a->text, a->len)) return 1;
    }
    return 0;
}

static int cmp_longest(const void *a, const void *b) {
    const spill_added_tok *x = *(const spill_added_tok *const *)a, *y = *(const spill_added_tok *const *)b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

int spill_added_split(const spill_added_set *set, spill_added_mode mode, int parse_special,
                      const spill_regex *word_re, const spill_pieces *in, spill_pieces *out, spill_err *err) {
    spill_pieces_clear(out);
    if (mode == SPILL_ADDED_LEFTMOST_LONGEST) {
        for (int i = 0; i < in->n; i++) {
            if (in->p[i].id >= 0 || set->n == 0) spill_pieces_copy(out, in, i);
            else split_leftmost_longest(set, parse_special, word_re, in, i, out);
        }
        return out->oom ? spill_err_set(err, "out of memory splitting out added tokens") : 0;
    }
    /* llama.cpp: tokens longest first; ties by id (llama.cpp leaves them in no defined order) */
    const spill_added_tok **order = malloc(sizeof *order * (size_t)(set->n ? set->n : 1));
    spill_pieces cur = {0}, next = {0};
    if (!order) return spill_err_set(err, "out of memory splitting out special tokens");
    for (int i = 0; i < set->n; i++) order[i] = &set->t[i];
    qsort(order, (size_t)set->n, sizeof *order, cmp_longest);
    for (int i = 0; i < in->n; i++) spill_pieces_copy(&cur, in, i);
    for (int k = 0; k < set->n && !cur.oom; k++) {
        const spill_added_tok *a = order[k];
        if (a->special && !parse_special) continue; /* control and unknown tokens (user-defined ones always match) */
        if (!piece_has(&cur, a)) continue;
        spill_pieces_clear(&next);
        split_one(a, &cur, &next);
        spill_pieces tmp = cur;
        cur = next;
        next = tmp;
        if (cur.oom) break;
    }
    free(order);
    for (int i = 0; i < cur.n; i++) spill_pieces_copy(out, &cur, i);
    int oom = cur.oom || out->oom;
    spill_pieces_free(&cur);
    spill_pieces_free(&next);
    return oom ? spill_err_set(err, "out of memory splitting out special tokens") : 0;
}
