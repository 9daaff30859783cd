/* The list of pieces a text is cut into on its way through the tokenizer's stages. */
#include "tok_internal.h"

void spill_pieces_clear(spill_pieces *ps) {
    ps->len = 0;
    ps->n = 0;
}

void spill_pieces_free(spill_pieces *ps) {
    free(ps->text);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}

size_t spill_pieces_put(spill_pieces *ps, const char *s, size_t n) {
    size_t off = ps->len;
    if (ps->oom) return off;
    if (ps->len + n > ps->cap) {
        size_t nc = ps->cap ? ps->cap : 256;
        while (nc < ps->len + n) {
            if (nc > SIZE_MAX / 2) {
                ps->oom = 1;
                return off;
            }
            nc *= 2;
        }
        char *nt = realloc(ps->text, nc);
        if (!nt) {
            ps->oom = 1;
            return off;
        }
        ps->text = nt;
        ps->cap = nc;
    }
    if (n) memcpy(ps->text + ps->len, s, n);
    ps->len += n;
    return off;
}

void spill_pieces_add(spill_pieces *ps, size_t off, size_t len, size_t zero, int id) {
    if (ps->oom || (len == 0 && id < 0)) return;
    if (ps->n == ps->pcap) {
        int nc = ps->pcap ? ps->pcap * 2 : 64;
        spill_piece *np = nc > ps->pcap ? realloc(ps->p, sizeof *np * (size_t)nc) : NULL;
        if (!np) {
            ps->oom = 1;
            return;
        }
        ps->p = np;
        ps->pcap = nc;
    }
    ps->p[ps->n++] = (spill_piece){off, len, zero < len ? zero : len, id};
}

void spill_pieces_copy(spill_pieces *ps, const spill_pieces *from, int i) {
    const spill_piece *q = &from->p[i];
    size_t off = spill_pieces_put(ps, q->len ? from->text + q->off : "", q->len);
    spill_pieces_add(ps, off, q->len, q->zero, q->id);
}
