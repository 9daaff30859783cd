/* The SentencePiece-style model of GGUF "llama" vocabularies, as llama.cpp runs it: the text's
 * spaces become U+2581 (with one in front when add_space_prefix asks for it), it starts as one
 * symbol per UTF-8 character, and the adjacent pair whose concatenation is the token with the
 * highest score is merged, leftmost first, until no pair is a token. Symbols left that are not
 * tokens go out as their <0xXX> byte tokens. Invalid UTF-8 is kept: a truncated sequence is one
 * symbol, which then falls back to bytes. */
#include "tok_internal.h"

typedef struct { int prev, next; size_t start, len; } ssym;

/* llama.cpp's length of a UTF-8 sequence from its first byte: by the high four bits alone, so that
 * 0xF8..0xFF start 4-byte symbols too (and then fall back to bytes) */
static size_t lead_len(unsigned char c) {
    static const unsigned char by_high[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return by_high[c >> 4];
}
typedef struct { float score; int left, right; size_t size; } sbigram;

typedef struct {
    ssym *sym;
    sbigram *heap;
    int hn, hcap;
    int oom;
} sword;

/* higher score first, then the leftmost */
static int above(const sbigram *x, const sbigram *y) { return x->score != y->score ? x->score > y->score : x->left < y->left; }

static void heap_push(sword *w, sbigram b) {
    if (w->hn == w->hcap) {
        int nc = w->hcap ? w->hcap * 2 : 32;
        sbigram *nh = realloc(w->heap, sizeof *nh * (size_t)nc);
        if (!nh) {
            w->oom = 1;
            return;
        }
        w->heap = nh;
        w->hcap = nc;
    }
    int i = w->hn++;
    while (i > 0 && above(&b, &w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = b;
}

static sbigram heap_pop(sword *w) {
    sbigram top = w->heap[0], last = w->heap[--w->hn];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= w->hn) break;
        if (c + 1 < w->hn && above(&w->heap[c + 1], &w->heap[c])) c++;
        if (!above(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (w->hn > 0) w->heap[i] = last;
    return top;
}

static void try_bigram(const spill_tokenizer *t, sword *w, const char *s, int left, int right) {
    if (left < 0 || right < 0) return;
    size_t size = w->sym[left].len + w->sym[right].len;
    int id = spill_token_find(t, s + w->sym[left].start, size);
    if (id < 0) return;
    heap_push(w, (sbigram){t->scores[id], left, right, size});
}

static void emit_bytes(const spill_tokenizer *t, const char *s, size_t n, spill_ids *out) {
    for (size_t k = 0; k < n; k++) {
        int id = t->impl->byte_tok[(unsigned char)s[k]];
        if (id < 0) id = spill_token_find(t, s + k, 1); /* llama.cpp's fallback: the byte as text */
        if (id < 0) id = t->unk;
        if (id >= 0) spill_ids_push(out, id);
    }
}

void spill_spm_encode(const spill_tokenizer *t, const char *text, size_t n, int space_prefix, spill_ids *out) {
    /* escape: a leading U+2581 when asked, every ' ' as U+2581 */
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += text[i] == ' ';
    size_t len = n + 2 * spaces + (space_prefix ? 3 : 0);
    char *s = malloc(len ? len : 1);
    sword w = {0};
    w.sym = malloc(sizeof *w.sym * (len ? len : 1));
    if (!s || !w.sym) {
        free(s);
        free(w.sym);
        out->oom = 1;
        return;
    }
    size_t o = 0;
    if (space_prefix) memcpy(s, "\xE2\x96\x81", 3), o = 3;
    for (size_t i = 0; i < n; i++) {
        if (text[i] == ' ') memcpy(s + o, "\xE2\x96\x81", 3), o += 3;
        else s[o++] = text[i];
    }
    int m = 0;
    for (size_t i = 0; i < len;) {
        size_t l = lead_len((unsigned char)s[i]);
        if (l > len - i) l = len - i;
        w.sym[m] = (ssym){m - 1, i + l == len ? -1 : m + 1, i, l};
        m++;
        i += l;
    }
    for (int i = 1; i < m; i++) try_bigram(t, &w, s, i - 1, i);
    while (w.hn > 0 && !w.oom) {
        sbigram b = heap_pop(&w);
        ssym *l = &w.sym[b.left], *r = &w.sym[b.right];
        if (l->len == 0 || r->len == 0 || l->len + r->len != b.size) continue; /* out of date */
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) w.sym[r->next].prev = b.left;
        try_bigram(t, &w, s, l->prev, b.left);
        try_bigram(t, &w, s, b.left, l->next);
    }
    for (int i = 0; m > 0 && i >= 0 && !w.oom; i = w.sym[i].next) {
        int id = spill_token_find(t, s + w.sym[i].start, w.sym[i].len);
        if (id >= 0) spill_ids_push(out, id);
        else emit_bytes(t, s + w.sym[i].start, w.sym[i].len, out);
    }
    if (w.oom) out->oom = 1;
    free(s);
    free(w.sym);
    free(w.heap);
}
