/* Ids back to text.
 *  - tokenizer.json: the decoder chain of the tokenizers library (ByteLevel, Metaspace,
 *    ByteFallback, Fuse, Strip, Replace, Sequence) over the tokens' texts; no decoder joins the
 *    texts with spaces, as the library does.
 *  - GGUF: llama.cpp's token_to_piece per token (U+2581 -> ' ' and <0xXX> byte tokens for
 *    SentencePiece vocabularies, GPT-2's byte map for BPE ones; control tokens print nothing),
 *    and for a whole sequence its detokenize (the first space of an add_space_prefix vocabulary
 *    dropped, and the "clean spaces" passes of the BPE types that ask for them).
 * spill_token_to_bytes is the streaming form: one token as it prints in the middle of a text. */
#include "tok_internal.h"

typedef enum { DEC_BYTELEVEL, DEC_METASPACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP, DEC_REPLACE } dec_kind;

typedef struct {
    dec_kind kind;
    char ch[4];          /* METASPACE: replacement; STRIP: content (UTF-8) */
    int ch_len;
    spill_prepend prepend;
    int start, stop;     /* STRIP */
    spill_regex *re;     /* REPLACE */
    char *content;       /* REPLACE */
    size_t content_len;
} dec_op;

struct spill_decoder {
    dec_op *ops;
    int n, cap;
};

spill_decoder *spill_dec_new(void) { return calloc(1, sizeof(spill_decoder)); }

void spill_dec_free(spill_decoder *d) {
    if (!d) return;
    for (int i = 0; i < d->n; i++) {
        spill_regex_free(d->ops[i].re);
        free(d->ops[i].content);
    }
    free(d->ops);
    free(d);
}

static dec_op *push(spill_decoder *d, dec_kind kind) {
    if (d->n == d->cap) {
        int nc = d->cap ? d->cap * 2 : 4;
        dec_op *no = realloc(d->ops, sizeof *no * (size_t)nc);
        if (!no) return NULL;
        d->ops = no;
        d->cap = nc;
    }
    dec_op *op = &d->ops[d->n++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    return op;
}

int spill_dec_add_bytelevel(spill_decoder *d) { return push(d, DEC_BYTELEVEL) ? 0 : -1; }
int spill_dec_add_byte_fallback(spill_decoder *d) { return push(d, DEC_BYTE_FALLBACK) ? 0 : -1; }
int spill_dec_add_fuse(spill_decoder *d) { return push(d, DEC_FUSE) ? 0 : -1; }

int spill_dec_add_metaspace(spill_decoder *d, uint32_t replacement, spill_prepend prepend) {
    dec_op *op = push(d, DEC_METASPACE);
    if (!op) return -1;
    op->ch_len = spill_utf8_encode(replacement, op->ch);
    op->prepend = prepend;
    return 0;
}

int spill_dec_add_strip(spill_decoder *d, uint32_t content, int start, int stop) {
    dec_op *op = push(d, DEC_STRIP);
    if (!op) return -1;
    op->ch_len = spill_utf8_encode(content, op->ch);
    op->start = start;
    op->stop = stop;
    return 0;
}

int spill_dec_add_replace(spill_decoder *d, spill_regex *re, const char *content, size_t n) {
    dec_op *op = push(d, DEC_REPLACE);
    if (!op) {
        spill_regex_free(re);
        return -1;
    }
    op->re = re;
    if (!(op->content = malloc(n + 1))) return -1;
    memcpy(op->content, content, n);
    op->content_len = n;
    return 0;
}

/* ---- the chain over a list of token texts ---- */

/* the bytes of a <0xXX> token, or -1 (the library: six characters, "<0x", two hex digits, ">") */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static void put_lossy(spill_pieces *out, const char *s, size_t n) {
    char *fixed = malloc(n * 3 + 1);
    if (!fixed) {
        out->oom = 1;
        return;
    }
    size_t m = spill_utf8_repair_into(s, n, SPILL_UTF8_MAXIMAL, fixed);
    size_t off = spill_pieces_put(out, fixed, m);
    spill_pieces_add(out, off, m, 0, -1);
    free(fixed);
}

/* Replace over s[0..n), a run run_op found valid UTF-8: each match becomes the content */
static int replace_run(const dec_op *op, const char *s, size_t n, spill_pieces *out, spill_err *err) {
    spill_regex_iter it = SPILL_REGEX_ITER_CHECKED;
    size_t done = 0, ms, me;
    int rc;
    while ((rc = spill_regex_next(op->re, s, n, &it, &ms, &me, err)) == 1) {
        spill_pieces_put(out, s + done, ms - done);
        spill_pieces_put(out, op->content, op->content_len);
        done = me;
    }
    if (rc < 0) return -1;
    spill_pieces_put(out, s + done, n - done);
    return 0;
}

/* one step; stream: the list is one token from the middle of a text */
static int run_op(const dec_op *op, const spill_pieces *in, spill_pieces *out, int stream, int joined, spill_err *err) {
    spill_pieces_clear(out);
    switch (op->kind) {
    case DEC_BYTELEVEL: {
        /* all tokens into one: each character to its byte, or the token as it is when one of its
         * characters stands for no byte; then invalid UTF-8 replaced */
        spill_pieces raw = {0};
        for (int i = 0; i < in->n; i++) {
            const char *s = in->text + in->p[i].off;
            size_t n = in->p[i].len, k = 0;
            int all = 1;
            while (k < n && all) {
                int l;
                uint32_t cp = spill_utf8_decode(s + k, n - k, &l);
                all = spill_cp_to_byte(cp) >= 0;
                k += (size_t)l;
            }
            if (!all) {
                spill_pieces_put(&raw, s, n);
                continue;
            }
            for (k = 0; k < n;) {
                int l;
                char b = (char)spill_cp_to_byte(spill_utf8_decode(s + k, n - k, &l));
                spill_pieces_put(&raw, &b, 1);
                k += (size_t)l;
            }
        }
        if (stream) { /* a token alone may be part of a character: keep its bytes */
            size_t off = spill_pieces_put(out, raw.text, raw.len);
            spill_pieces_add(out, off, raw.len, 0, -1);
        } else {
            put_lossy(out, raw.text, raw.len);
        }
        int oom = raw.oom;
        spill_pieces_free(&raw);
        if (oom) out->oom = 1;
        break;
    }
    case DEC_METASPACE:
        for (int i = 0; i < in->n; i++) {
            const char *s = in->text + in->p[i].off;
            size_t n = in->p[i].len, off = out->len;
            int first = i == 0 && !stream && op->prepend != SPILL_PREPEND_NEVER;
            for (size_t k = 0; k < n;) {
                if (n - k >= (size_t)op->ch_len && !memcmp(s + k, op->ch, (size_t)op->ch_len)) {
                    if (!first) spill_pieces_put(out, " ", 1);
                    k += (size_t)op->ch_len;
                } else {
                    spill_pieces_put(out, s + k, 1);
                    k++;
                }
            }
            spill_pieces_add(out, off, out->len - off, 0, -1);
        }
        break;
    case DEC_BYTE_FALLBACK:
        for (int i = 0; i < in->n;) {
            int b = byte_token(in->text + in->p[i].off, in->p[i].len);
            if (b < 0) {
                spill_pieces_copy(out, in, i);
                i++;
                continue;
            }
            /* a run of byte tokens: one string if valid UTF-8, else one U+FFFD per token */
            int j = i;
            char *bytes = malloc((size_t)(in->n - i));
            if (!bytes) return spill_err_set(err, "out of memory decoding");
            size_t nb = 0;
            while (j < in->n && (b = byte_token(in->text + in->p[j].off, in->p[j].len)) >= 0) bytes[nb++] = (char)b, j++;
            if (stream || spill_utf8_valid(bytes, nb)) {
                size_t off = spill_pieces_put(out, bytes, nb);
                spill_pieces_add(out, off, nb, 0, -1);
            } else {
                for (size_t k = 0; k < nb; k++) {
                    size_t off = spill_pieces_put(out, "\xEF\xBF\xBD", 3);
                    spill_pieces_add(out, off, 3, 0, -1);
                }
            }
            free(bytes);
            i = j;
        }
        break;
    case DEC_FUSE: {
        size_t off = out->len;
        for (int i = 0; i < in->n; i++) spill_pieces_put(out, in->text + in->p[i].off, in->p[i].len);
        spill_pieces_add(out, off, out->len - off, 0, -1);
        break;
    }
    case DEC_STRIP:
        for (int i = 0; i < in->n; i++) {
            const char *s = in->text + in->p[i].off;
            size_t a = 0, b = in->p[i].len, cl = (size_t)op->ch_len;
            if (!(stream && joined)) { /* in a stream, a joined text's ends are not this token's */
                for (int k = 0; k < op->start && b - a >= cl && !memcmp(s + a, op->ch, cl); k++) a += cl;
                for (int k = 0; k < op->stop && b - a >= cl && !memcmp(s + b - cl, op->ch, cl); k++) b -= cl;
            }
            size_t off = spill_pieces_put(out, s + a, b - a);
            spill_pieces_add(out, off, b - a, 0, -1);
        }
        break;
    case DEC_REPLACE:
        for (int i = 0; i < in->n; i++) {
            const char *s = in->text + in->p[i].off;
            size_t n = in->p[i].len, off = out->len, a = 0;
            /* a stream's token after ByteLevel or ByteFallback may be part of a character: the
             * pattern runs over each valid run, the bytes between them pass as they are (PCRE2 is
             * never given invalid UTF-8, regex.h) */
            while (a < n) {
                size_t b = a;
                int l;
                while (b < n && (l = spill_utf8_valid_at(s + b, n - b)) > 0) b += (size_t)l;
                if (b > a && replace_run(op, s + a, b - a, out, err)) return -1;
                if (b < n) spill_pieces_put(out, s + b++, 1);
                a = b;
            }
            spill_pieces_add(out, off, out->len - off, 0, -1);
        }
        break;
    }
    /* empty tokens are dropped by spill_pieces_add; an empty list is fine */
    return out->oom ? spill_err_set(err, "out of memory decoding") : 0;
}

static int run_chain(const spill_decoder *d, spill_pieces *ps, int stream, spill_err *err) {
    spill_pieces out = {0};
    int joined = 0, rc = 0;
    for (int k = 0; k < d->n && rc == 0; k++) {
        rc = run_op(&d->ops[k], ps, &out, stream, joined, err);
        joined |= d->ops[k].kind == DEC_FUSE || d->ops[k].kind == DEC_BYTELEVEL;
        spill_pieces t = *ps;
        *ps = out;
        out = t;
    }
    spill_pieces_free(&out);
    return rc;
}

/* ---- GGUF: llama.cpp's pieces ---- */
static size_t gguf_piece(const spill_tokenizer *t, int id, int special, char *buf, size_t cap) {
    int ty = t->types[id];
    const char *s = spill_tok_text(t, id);
    size_t n = t->text_len[id], o = 0;
#define PUT(c) do { if (o < cap) buf[o] = (char)(c); o++; } while (0)
    if (ty == SPILL_TOKTYPE_CONTROL || ty == SPILL_TOKTYPE_UNKNOWN) {
        if (!special) return 0;
        for (size_t i = 0; i < n; i++) PUT(s[i]);
        return o;
    }
    if (ty == SPILL_TOKTYPE_USER_DEFINED) {
        for (size_t i = 0; i < n; i++) PUT(s[i]);
        return o;
    }
    if (t->kind == SPILL_TOK_SPM) {
        if (ty == SPILL_TOKTYPE_BYTE) {
            int b = byte_token(s, n);
            if (b >= 0) PUT(b);
            return o;
        }
        if (ty != SPILL_TOKTYPE_NORMAL) return 0;
        for (size_t i = 0; i < n; i++) {
            if (i + 2 < n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                PUT(' ');
                i += 2;
            } else {
                PUT(s[i]);
            }
        }
        return o;
    }
    if (ty != SPILL_TOKTYPE_NORMAL) return 0;
    for (size_t i = 0; i < n;) {
        int l;
        uint32_t cp = spill_utf8_decode(s + i, n - i, &l);
        int b = spill_cp_to_byte(cp);
        if (b >= 0) PUT(b);
        else for (int k = 0; k < l; k++) PUT(s[i + k]); /* not byte-encoded: as it is */
        i += (size_t)l;
    }
#undef PUT
    return o;
}

/* llama.cpp's clean_spaces passes over a detokenized text (in place); returns the new length */
static size_t clean_spaces(char *s, size_t n) {
    if (n == 0) return 0;
    size_t w = 1;
    for (size_t i = 1; i < n; i++) { /* " ?", " !", " .", " ," lose their space */
        char x = s[i];
        if (s[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) w--;
        s[w++] = x;
    }
    n = w;
    w = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) { /* " ' " -> "'" */
        char x = s[i];
        if (x == '\'' && i + 1 < n && s[i - 1] == ' ' && s[i + 1] == ' ') {
            w--;
            s[w++] = x;
            i++;
            continue;
        }
        s[w++] = x;
    }
    n = w;
    w = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) { /* " 's" " 'm" " 've" " 're" " n't" and the like lose their space */
        char x = s[i];
        if (s[i - 1] == ' ') {
            if (x == '\'' && i + 1 < n) {
                char x1 = s[i + 1];
                if (x1 == 't' || x1 == 'd') { /* " 't", " 'd" */
                    w--;
                } else if (x1 == 's' || x1 == 'm') { /* " 's", " 'm" */
                    w--;
                } else if (i + 2 < n) {
                    char x2 = s[i + 2];
                    if ((x1 == 'l' && x2 == 'l') || (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) w--;
                }
            } else if (x == 'n' && i + 2 < n && s[i + 1] == '\'' && s[i + 2] == 't') { /* " n't" */
                w--;
            }
        }
        s[w++] = x;
    }
    return w;
}

/* ---- public ---- */

static int hf_token_text(const spill_tokenizer *t, int id, int skip_special, spill_pieces *ps) {
    if (id < 0 || id >= t->n_vocab || t->types[id] == SPILL_TOKTYPE_UNUSED) return 0;
    if (skip_special && t->impl->is_special[id]) return 0;
    const char *s = spill_tok_text(t, id);
    size_t n = t->text_len[id];
    if (t->impl->dec_text && t->impl->dec_text[id]) s = t->impl->dec_text[id], n = t->impl->dec_len[id];
    size_t off = spill_pieces_put(ps, s, n);
    spill_pieces_add(ps, off, n, 0, -1);
    return 0;
}

int spill_token_to_bytes(const spill_tokenizer *t, int id, char *buf, int cap) {
    if (id < 0 || id >= t->n_vocab || cap < 0) return 0;
    const struct spill_tok_impl *im = t->impl;
    if (im->flavor == SPILL_FLAVOR_GGUF) {
        size_t n = gguf_piece(t, id, 0, buf, (size_t)cap);
        return n > INT32_MAX ? INT32_MAX : (int)n;
    }
    spill_pieces ps = {0};
    hf_token_text(t, id, 1, &ps);
    if (im->dec && run_chain(im->dec, &ps, 1, NULL)) ps.n = 0;
    size_t o = 0;
    for (int i = 0; i < ps.n; i++) {
        if (!im->has_decoder && i > 0 && o < (size_t)cap) buf[o++] = ' ';
        else if (!im->has_decoder && i > 0) o++;
        size_t l = ps.p[i].len;
        if (o < (size_t)cap) memcpy(buf + o, ps.text + ps.p[i].off, l < (size_t)cap - o ? l : (size_t)cap - o);
        o += l;
    }
    spill_pieces_free(&ps);
    return o > INT32_MAX ? INT32_MAX : (int)o;
}

int spill_detokenize(const spill_tokenizer *t, const int *ids, int n, int skip_special, char **out, size_t *out_len,
                     spill_err *err) {
    const struct spill_tok_impl *im = t->impl;
    *out = NULL;
    *out_len = 0;
    if (im->flavor == SPILL_FLAVOR_GGUF) {
        /* llama.cpp's detokenize: with skip_special, a leading BOS and trailing EOS that the
         * tokenizer adds are dropped and control tokens print nothing */
        int a = 0, b = n, strip = im->add_space_prefix;
        if (skip_special && t->add_bos && b > a && ids[a] == t->bos) a++, strip = 0; /* llama.cpp keeps the space then */
        if (skip_special && t->add_eos && b > a && ids[b - 1] == t->eos) b--;
        size_t total = 0;
        for (int i = a; i < b; i++)
            if (ids[i] >= 0 && ids[i] < t->n_vocab) total += gguf_piece(t, ids[i], !skip_special, NULL, 0);
        char *s = malloc(total + 1);
        if (!s) return spill_err_set(err, "out of memory decoding %d tokens", n);
        size_t o = 0;
        for (int i = a; i < b; i++) {
            if (ids[i] < 0 || ids[i] >= t->n_vocab) continue;
            size_t l = gguf_piece(t, ids[i], !skip_special, s + o, total - o);
            if (strip && l > 0 && s[o] == ' ') {
                memmove(s + o, s + o + 1, l - 1);
                l--;
            }
            strip = 0;
            o += l;
        }
        if (im->clean_spaces) o = clean_spaces(s, o);
        s[o] = 0;
        *out = s;
        *out_len = o;
        return 0;
    }
    spill_pieces ps = {0};
    for (int i = 0; i < n; i++) hf_token_text(t, ids[i], skip_special, &ps);
    if (ps.oom) {
        spill_pieces_free(&ps);
        return spill_err_set(err, "out of memory decoding %d tokens", n);
    }
    if (im->dec && run_chain(im->dec, &ps, 0, err)) {
        spill_pieces_free(&ps);
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < ps.n; i++) total += ps.p[i].len + 1;
    char *s = malloc(total + 1);
    if (!s) {
        spill_pieces_free(&ps);
        return spill_err_set(err, "out of memory decoding %d tokens", n);
    }
    size_t o = 0;
    for (int i = 0; i < ps.n; i++) {
        if (!im->has_decoder && i > 0) s[o++] = ' ';
        memcpy(s + o, ps.text + ps.p[i].off, ps.p[i].len);
        o += ps.p[i].len;
    }
    s[o] = 0;
    spill_pieces_free(&ps);
    *out = s;
    *out_len = o;
    return 0;
}
