/* The BPE model: a pre-token starts as one symbol per character and the merge with the lowest rank
 * is applied, leftmost first, until none applies. The order is the one of the tokenizers library's
 * Word::merge_all and of llama.cpp (a heap of (rank, position)); a queued merge whose pair has
 * changed meanwhile is applied only if the pair there still merges into the same token, which is
 * the check both make. */
#include "tok_internal.h"

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

int spill_bpe_merges_alloc(spill_tokenizer *t, uint64_t n) {
    struct spill_tok_impl *im = t->impl;
    uint64_t cap = 16;
    while (cap < n * 2 + 2) cap <<= 1;
    im->merges = malloc(sizeof *im->merges * cap);
    if (!im->merges) return -1;
    im->merge_cap = cap;
    for (uint64_t i = 0; i < cap; i++) im->merges[i].left = -1;
    return 0;
}

void spill_bpe_merge_add(spill_tokenizer *t, int a, int b, int res, int rank, int keep_last) {
    struct spill_tok_impl *im = t->impl;
    uint64_t mask = im->merge_cap - 1, i = hash_pair(a, b) & mask;
    while (im->merges[i].left >= 0 && !(im->merges[i].left == a && im->merges[i].right == b)) i = (i + 1) & mask;
    if (im->merges[i].left >= 0 && !keep_last) return;
    im->merges[i] = (spill_merge){a, b, rank, res};
}

int spill_bpe_merge_find(const spill_tokenizer *t, int a, int b, int *result) {
    const struct spill_tok_impl *im = t->impl;
    if (!im->merges || a < 0 || b < 0) return -1;
    uint64_t mask = im->merge_cap - 1;
    for (uint64_t i = hash_pair(a, b) & mask;; i = (i + 1) & mask) {
        const spill_merge *m = &im->merges[i];
        if (m->left < 0) return -1;
        if (m->left == a && m->right == b) {
            *result = m->result;
            return m->rank;
        }
    }
}

/* ---- one word ---- */
typedef struct { int id, prev, next; size_t start, len; } bsym;
typedef struct { int rank, pos, id; } bmerge;

typedef struct spill_bpe_scratch {
    bsym *sym;
    int n, cap;
    bmerge *heap;
    int hn, hcap;
    int oom;
} bword;

spill_bpe_scratch *spill_bpe_scratch_new(void) { return calloc(1, sizeof(bword)); }

void spill_bpe_scratch_free(spill_bpe_scratch *w) {
    if (!w) return;
    free(w->sym);
    free(w->heap);
    free(w);
}

static void sym_add(bword *w, int id, size_t start, size_t len) {
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 32;
        bsym *ns = realloc(w->sym, sizeof *ns * (size_t)nc);
        if (!ns) {
            w->oom = 1;
            return;
        }
        w->sym = ns;
        w->cap = nc;
    }
    w->sym[w->n] = (bsym){id, w->n - 1, -1, start, len};
    if (w->n > 0) w->sym[w->n - 1].next = w->n;
    w->n++;
}

static int before(const bmerge *x, const bmerge *y) { return x->rank != y->rank ? x->rank < y->rank : x->pos < y->pos; }

static void heap_push(bword *w, bmerge m) {
    if (w->hn == w->hcap) {
        int nc = w->hcap ? w->hcap * 2 : 32;
        bmerge *nh = realloc(w->heap, sizeof *nh * (size_t)nc);
        if (!nh) {
            w->oom = 1;
            return;
        }
        w->heap = nh;
        w->hcap = nc;
    }
    int i = w->hn++;
    while (i > 0 && before(&m, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = m;
}

static bmerge heap_pop(bword *w) {
    bmerge top = w->heap[0], last = w->heap[--w->hn];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= w->hn) break;
        if (c + 1 < w->hn && before(&w->heap[c + 1], &w->heap[c])) c++;
        if (!before(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->hn > 0) w->heap[i] = last;
    return top;
}

static void queue_pair(const spill_tokenizer *t, bword *w, int pos) {
    if (pos < 0) return;
    int next = w->sym[pos].next;
    if (next < 0) return;
    int res, rank = spill_bpe_merge_find(t, w->sym[pos].id, w->sym[next].id, &res);
    if (rank >= 0) heap_push(w, (bmerge){rank, pos, res});
}

static void merge_all(const spill_tokenizer *t, bword *w) {
    w->hn = 0;
    for (int i = 0; i + 1 < w->n; i++) queue_pair(t, w, i);
    while (w->hn > 0 && !w->oom) {
        bmerge m = heap_pop(w);
        bsym *s = &w->sym[m.pos];
        if (s->len == 0 || s->next < 0) continue;
        bsym *r = &w->sym[s->next];
        int res;
        if (spill_bpe_merge_find(t, s->id, r->id, &res) < 0 || res != m.id) continue; /* out of date */
        s->id = m.id;
        s->len += r->len;
        r->len = 0;
        s->next = r->next;
        if (s->next >= 0) w->sym[s->next].prev = m.pos;
        queue_pair(t, w, s->prev);
        queue_pair(t, w, m.pos);
    }
}

/* a token of the model's own vocabulary (tokenizer.json keeps added tokens apart) */
static int model_find(const spill_tokenizer *t, const char *s, size_t n) {
    int id = spill_token_find(t, s, n);
    return id >= 0 && t->impl->added_only && t->impl->added_only[id] ? -1 : id;
}

void spill_bpe_encode(const spill_tokenizer *t, spill_bpe_scratch *scratch, const char *s, size_t n, spill_ids *out) {
    const struct spill_tok_impl *im = t->impl;
    if (n == 0) return;
    if (im->ignore_merges) {
        int id = model_find(t, s, n);
        if (id >= 0) {
            spill_ids_push(out, id);
            return;
        }
    }
    bword w = *scratch; /* its buffers, grown as needed and handed back */
    w.n = w.hn = w.oom = 0;
    int gguf = im->flavor == SPILL_FLAVOR_GGUF;
    int unk_pending = 0; /* fuse_unk: one <unk> for a run of unknown characters */
    for (size_t i = 0; i < n;) {
        size_t l = (size_t)spill_utf8_len((unsigned char)s[i]);
        if (l > n - i) l = n - i;
        int id = model_find(t, s + i, l);
        if (gguf || id >= 0) {
            if (unk_pending) {
                sym_add(&w, t->unk, i, 0);
                unk_pending = 0;
            }
            sym_add(&w, id, i, l);
            i += l;
            continue;
        }
        /* tokenizer.json: a character not in the vocabulary */
        int bytes_ok = im->byte_fallback;
        for (size_t k = 0; k < l && bytes_ok; k++) bytes_ok = im->byte_tok[(unsigned char)s[i + k]] >= 0;
        if (bytes_ok) {
            for (size_t k = 0; k < l; k++) sym_add(&w, im->byte_tok[(unsigned char)s[i + k]], i + k, 1);
        } else if (t->unk >= 0) {
            if (unk_pending && !im->fuse_unk) sym_add(&w, t->unk, i, 0);
            unk_pending = 1;
        }
        i += l;
    }
    if (unk_pending) sym_add(&w, t->unk, n, 0);
    /* a zero length marks merged-away symbols; give the <unk> ones a length that cannot be confused */
    for (int k = 0; k < w.n; k++)
        if (w.sym[k].len == 0) w.sym[k].len = 1, w.sym[k].start = SIZE_MAX;
    if (!w.oom) merge_all(t, &w);
    for (int k = 0; k < w.n && !w.oom; k = w.sym[k].next) {
        const bsym *y = &w.sym[k];
        if (y->id >= 0) {
            spill_ids_push(out, y->id);
        } else {
            /* llama.cpp: a symbol that is not a token goes out byte by byte, where the bytes are tokens */
            for (size_t b = 0; b < y->len; b++) {
                int id = spill_token_find(t, s + y->start + b, 1);
                if (id >= 0) spill_ids_push(out, id);
            }
        }
        if (y->next < 0) break;
    }
    if (w.oom) out->oom = 1;
    *scratch = w;
}
