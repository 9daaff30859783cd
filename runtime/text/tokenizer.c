/* The tokenizer's core: the vocabulary (text <-> id), encoding through the stages, BOS/EOS, and
 * the end-of-generation test. The stages live in their own files (tok_internal.h lists them); the
 * loaders in tokenizer_gguf.c and tokenizer_hf.c. */
#include "tok_internal.h"

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

int spill_token_find(const spill_tokenizer *t, const char *s, size_t n) {
    const struct spill_tok_impl *im = t->impl;
    if (!im || !im->map_slot) return -1;
    uint64_t mask = im->map_cap - 1;
    for (uint64_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        int32_t id = im->map_slot[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && !memcmp(spill_tok_text(t, id), s, n)) return id;
    }
}

int spill_tok_begin(spill_tokenizer *t, spill_tok_flavor flavor, spill_err *err) {
    memset(t, 0, sizeof *t);
    t->bos = t->eos = t->eot = t->unk = -1;
    for (int i = 0; i < 8; i++) t->eog_extra[i] = -1;
    t->impl = calloc(1, sizeof *t->impl);
    if (!t->impl) return spill_err_set(err, "out of memory");
    t->impl->flavor = flavor;
    for (int b = 0; b < 256; b++) t->impl->byte_tok[b] = -1;
    return 0;
}

int spill_tok_set_texts(spill_tokenizer *t, const spill_str *texts, const char *path, spill_err *err) {
    struct spill_tok_impl *im = t->impl;
    uint64_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        if (texts[i].len > 65536)
            return spill_err_set(err, "%s: token %d has a %llu-byte text; the limit is 65536", path, i,
                                 (unsigned long long)texts[i].len);
        total += texts[i].len + 1;
    }
    if (total > UINT32_MAX)
        return spill_err_set(err, "%s: token texts total %llu bytes; the limit is 4 GiB", path, (unsigned long long)total);
    t->text_buf = malloc(total ? total : 1);
    t->text_off = malloc(sizeof(uint32_t) * (size_t)t->n_vocab);
    t->text_len = malloc(sizeof(uint32_t) * (size_t)t->n_vocab);
    t->types = malloc(sizeof(int32_t) * (size_t)t->n_vocab);
    if (!t->text_buf || !t->text_off || !t->text_len || !t->types) return spill_err_set(err, "out of memory");
    uint32_t off = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        if (texts[i].len) memcpy(t->text_buf + off, texts[i].ptr, texts[i].len);
        t->text_buf[off + texts[i].len] = 0;
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)texts[i].len;
        off += (uint32_t)texts[i].len + 1;
        t->types[i] = texts[i].ptr ? SPILL_TOKTYPE_NORMAL : SPILL_TOKTYPE_UNUSED;
    }
    im->map_cap = 16;
    while (im->map_cap < (uint64_t)t->n_vocab * 2) im->map_cap <<= 1;
    im->map_slot = malloc(sizeof(int32_t) * im->map_cap);
    if (!im->map_slot) return spill_err_set(err, "out of memory");
    for (uint64_t i = 0; i < im->map_cap; i++) im->map_slot[i] = -1;
    uint64_t mask = im->map_cap - 1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (!texts[id].ptr) continue;
        uint64_t i = hash_bytes(spill_tok_text(t, id), t->text_len[id]) & mask;
        int dup = 0;
        while (im->map_slot[i] >= 0) {
            int o = im->map_slot[i];
            if (t->text_len[o] == t->text_len[id] && !memcmp(spill_tok_text(t, o), spill_tok_text(t, id), t->text_len[id])) {
                dup = 1; /* the first id with a text keeps it */
                break;
            }
            i = (i + 1) & mask;
        }
        if (!dup) im->map_slot[i] = id;
    }
    return 0;
}

void spill_tok_find_eot(spill_tokenizer *t) {
    static const char *eots[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"};
    for (size_t i = 0; i < sizeof eots / sizeof *eots && t->eot < 0; i++) {
        int id = spill_token_find(t, eots[i], strlen(eots[i]));
        if (id >= 0 && t->types[id] == SPILL_TOKTYPE_CONTROL) t->eot = id;
    }
}

void spill_tokenizer_free(spill_tokenizer *t) {
    struct spill_tok_impl *im = t->impl;
    if (im) {
        free(im->map_slot);
        free(im->merges);
        spill_added_free(&im->added_raw);
        spill_added_free(&im->added_norm);
        spill_regex_free(im->word_re);
        spill_norm_free(im->norm);
        spill_pretok_free(im->pre);
        spill_dec_free(im->dec);
        free(im->is_special);
        free(im->added_only);
        free(im->owned);
        free(im->dec_text);
        free(im->dec_len);
        free(im);
    }
    free(t->text_buf);
    free(t->text_off);
    free(t->text_len);
    free(t->scores);
    free(t->types);
    memset(t, 0, sizeof *t);
}

int spill_token_is_eog(const spill_tokenizer *t, int id) {
    if (id < 0) return 0;
    if (id == t->eos || id == t->eot) return 1;
    for (int i = 0; i < 8; i++)
        if (t->eog_extra[i] >= 0 && id == t->eog_extra[i]) return 1;
    return 0;
}

/* ---- encoding ---- */

static void swap_pieces(spill_pieces *a, spill_pieces *b) {
    spill_pieces t = *a;
    *a = *b;
    *b = t;
}

typedef struct {
    const spill_tokenizer *t;
    spill_ids *ids;
    spill_bpe_scratch *bpe;
} model_ctx;

/* the model on one pre-token */
static int model_piece(void *ctx, const char *s, size_t n, size_t zero) {
    model_ctx *m = ctx;
    (void)zero;
    if (m->t->kind == SPILL_TOK_SPM) spill_spm_encode(m->t, s, n, m->t->impl->add_space_prefix, m->ids);
    else spill_bpe_encode(m->t, m->bpe, s, n, m->ids);
    return m->ids->oom ? -1 : 0;
}

static int encode(const spill_tokenizer *t, const char *text, size_t len, int parse_special, spill_ids *ids,
                  spill_err *err) {
    const struct spill_tok_impl *im = t->impl;
    spill_pieces a = {0}, b = {0};
    spill_pretok_scratch *sc = NULL;
    model_ctx mc = {t, ids, NULL};
    int rc = -1;
    /* 1. invalid UTF-8, repaired as the library whose rules these are */
    char *fixed = NULL;
    if (im->repair != SPILL_UTF8_KEEP && !spill_utf8_valid(text, len)) {
        if (!(fixed = malloc(len * 3 + 1))) goto oom;
        len = spill_utf8_repair_into(text, len, im->repair, fixed);
        text = fixed;
    }
    size_t off = spill_pieces_put(&a, text, len);
    spill_pieces_add(&a, off, len, len ? (size_t)spill_utf8_len((unsigned char)text[0]) : 0, -1);
    if (a.oom) goto oom;
    /* 2. added tokens in the text as given */
    if (im->added_raw.n) {
        if (spill_added_split(&im->added_raw, im->added_mode, parse_special, im->word_re, &a, &b, err)) goto out;
        swap_pieces(&a, &b);
    }
    /* 3. normalizers, piece by piece; then the added tokens that match normalized text */
    if (spill_norm_count(im->norm)) {
        spill_pieces_clear(&b);
        for (int i = 0; i < a.n; i++) {
            if (a.p[i].id >= 0) spill_pieces_copy(&b, &a, i);
            else if (spill_norm_apply(im->norm, a.text + a.p[i].off, a.p[i].len, a.p[i].zero ? 0 : 1, &b, err)) goto out;
        }
        if (b.oom) goto oom;
        swap_pieces(&a, &b);
    }
    if (im->added_norm.n) {
        if (spill_added_split(&im->added_norm, im->added_mode, parse_special, im->word_re, &a, &b, err)) goto out;
        swap_pieces(&a, &b);
    }
    /* 4. pre-tokenizers, and 5. the model on each pre-token as it comes */
    if (!(sc = spill_pretok_scratch_new(im->pre)) || !(mc.bpe = spill_bpe_scratch_new())) goto oom;
    for (int i = 0; i < a.n; i++) {
        const spill_piece *pc = &a.p[i];
        if (pc->id >= 0) spill_ids_push(ids, pc->id);
        else if (spill_pretok_run(im->pre, sc, a.text + pc->off, pc->len, pc->zero, model_piece, &mc, err)) {
            if (ids->oom) goto oom;
            goto out;
        }
    }
    if (ids->oom) goto oom;
    rc = 0;
    goto out;
oom:
    rc = spill_err_set(err, "out of memory tokenizing a %zu-byte prompt", len);
out:
    spill_pretok_scratch_free(sc);
    spill_bpe_scratch_free(mc.bpe);
    free(fixed);
    spill_pieces_free(&a);
    spill_pieces_free(&b);
    return rc;
}

int spill_tokenize(const spill_tokenizer *t, const char *text, size_t len, int add_special, int parse_special,
                   int **out, int *n_out, spill_err *err) {
    if (len > (1u << 30)) return spill_err_set(err, "prompt of %zu bytes is larger than the 1 GiB limit", len);
    const struct spill_tok_impl *im = t->impl;
    spill_ids text_ids = {0}, ids = {0};
    if (encode(t, text, len, parse_special, &text_ids, err)) {
        free(text_ids.v);
        return -1;
    }
    if (add_special) {
        /* no second BOS when the text brought its own */
        int skip = im->n_prefix > 0 && text_ids.n > 0 && text_ids.v[0] == im->prefix[0] && im->prefix[0] == t->bos;
        for (int i = skip; i < im->n_prefix; i++) spill_ids_push(&ids, im->prefix[i]);
    }
    for (int i = 0; i < text_ids.n; i++) spill_ids_push(&ids, text_ids.v[i]);
    if (add_special)
        for (int i = 0; i < im->n_suffix; i++) spill_ids_push(&ids, im->suffix[i]);
    free(text_ids.v);
    if (ids.oom) {
        free(ids.v);
        return spill_err_set(err, "out of memory tokenizing a %zu-byte prompt", len);
    }
    if (!ids.v && !(ids.v = malloc(sizeof(int)))) return spill_err_set(err, "out of memory");
    *out = ids.v;
    *n_out = ids.n;
    return 0;
}
