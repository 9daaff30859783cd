#include "tokenizer.h"

#include <unistd.h>

#include "spill_json.h"

#include "unicode.h"

#include <math.h>

/* ---- a string -> int open-addressing map over token texts ---- */
struct spill_strmap {
    uint64_t cap; /* power of two */
    int32_t *slot; /* token id or -1 */
    const spill_tokenizer *t;
};

struct spill_merge {
    int32_t left, right; /* -1 = empty slot */
    int32_t rank, result;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(int32_t a, int32_t b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

static const char *tok_text(const spill_tokenizer *t, int id) { return t->text_buf + t->text_off[id]; }

int spill_token_find(const spill_tokenizer *t, const char *s, size_t n) {
    const spill_strmap *m = t->lookup;
    for (uint64_t i = hash_bytes(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        int32_t id = m->slot[i];
        if (id < 0) return -1;
        if (t->text_len[id] == n && !memcmp(tok_text(t, id), s, n)) return id;
    }
}

static int merge_find(const spill_tokenizer *t, int a, int b, int *result) {
    if (!t->merges) return -1;
    for (uint64_t i = hash_pair(a, b) & (t->merge_cap - 1);; i = (i + 1) & (t->merge_cap - 1)) {
        const struct spill_merge *m = &t->merges[i];
        if (m->left < 0) return -1;
        if (m->left == a && m->right == b) {
            *result = m->result;
            return m->rank;
        }
    }
}

/* GPT-2's reversible byte -> code point map: printable bytes map to themselves, the rest to 256+. */
static uint32_t byte_to_cp(int b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) return (uint32_t)b;
    int n = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255))) n++;
    return 256u + (uint32_t)n;
}

static int cp_to_byte(uint32_t cp) {
    static int table[324];
    static int init = 0;
    if (!init) {
        for (int i = 0; i < 324; i++) table[i] = -1;
        for (int b = 0; b < 256; b++) table[byte_to_cp(b)] = b;
        init = 1;
    }
    return cp < 324 ? table[cp] : -1;
}

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

typedef struct { uint32_t len; int id; } len_id;
static int cmp_len_desc(const void *a, const void *b) {
    const len_id *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

/* Token texts (id order) into one buffer, and the text -> id lookup. t->n_vocab is set; a NULL
 * text is an id with no token (it is never looked up). */
static int tok_set_texts(spill_tokenizer *t, const spill_str *texts, const char *path, spill_err *err) {
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
    t->lookup = calloc(1, sizeof *t->lookup);
    if (!t->text_buf || !t->text_off || !t->text_len || !t->types || !t->lookup)
        return spill_err_set(err, "out of memory");
    uint32_t off = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        if (texts[i].len) memcpy(t->text_buf + off, texts[i].ptr, texts[i].len);
        t->text_buf[off + texts[i].len] = 0;
        t->text_off[i] = off;
        t->text_len[i] = (uint32_t)texts[i].len;
        off += (uint32_t)texts[i].len + 1;
        t->types[i] = texts[i].ptr ? SPILL_TOKTYPE_NORMAL : SPILL_TOKTYPE_UNUSED;
    }
    t->lookup->t = t;
    t->lookup->cap = pow2_at_least((uint64_t)t->n_vocab * 2);
    t->lookup->slot = malloc(sizeof(int32_t) * t->lookup->cap);
    if (!t->lookup->slot) return spill_err_set(err, "out of memory");
    for (uint64_t i = 0; i < t->lookup->cap; i++) t->lookup->slot[i] = -1;
    for (int id = 0; id < t->n_vocab; id++) {
        if (!texts[id].ptr) continue;
        uint64_t i = hash_bytes(tok_text(t, id), t->text_len[id]) & (t->lookup->cap - 1);
        int dup = 0;
        while (t->lookup->slot[i] >= 0) {
            int o = t->lookup->slot[i];
            if (t->text_len[o] == t->text_len[id] && !memcmp(tok_text(t, o), tok_text(t, id), t->text_len[id])) {
                dup = 1; /* the first id with a text wins, as in llama.cpp */
                break;
            }
            i = (i + 1) & (t->lookup->cap - 1);
        }
        if (!dup) t->lookup->slot[i] = id;
    }
    return 0;
}

static int tok_merges_alloc(spill_tokenizer *t, uint64_t n) {
    t->merge_cap = pow2_at_least(n * 2 + 2);
    t->merges = malloc(sizeof *t->merges * t->merge_cap);
    if (!t->merges) return -1;
    for (uint64_t i = 0; i < t->merge_cap; i++) t->merges[i].left = -1;
    return 0;
}

/* Merge rule `rank`: left + right -> their concatenation, where all three are tokens. */
static void tok_merge_add(spill_tokenizer *t, const char *l, size_t ll, const char *r, size_t rl, uint64_t rank) {
    char buf[2 * 65536 + 2];
    if (ll + rl > sizeof buf) return;
    int a = spill_token_find(t, l, ll), b = spill_token_find(t, r, rl);
    memcpy(buf, l, ll);
    memcpy(buf + ll, r, rl);
    int res = spill_token_find(t, buf, ll + rl);
    if (a < 0 || b < 0 || res < 0) return; /* a merge whose parts are not tokens can never apply */
    uint64_t i = hash_pair(a, b) & (t->merge_cap - 1);
    while (t->merges[i].left >= 0 && !(t->merges[i].left == a && t->merges[i].right == b)) i = (i + 1) & (t->merge_cap - 1);
    if (t->merges[i].left >= 0) return; /* keep the first (lowest) rank */
    t->merges[i] = (struct spill_merge){a, b, (int32_t)rank, res};
}

/* The tokens split out of the text before tokenizing, longest first. */
static int tok_specials(spill_tokenizer *t) {
    t->special = malloc(sizeof(int) * (size_t)t->n_vocab);
    len_id *li = malloc(sizeof *li * (size_t)t->n_vocab);
    if (!t->special || !li) {
        free(li);
        return -1;
    }
    t->n_special = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        int ty = t->types[id];
        if ((ty == SPILL_TOKTYPE_CONTROL || ty == SPILL_TOKTYPE_USER_DEFINED || ty == SPILL_TOKTYPE_UNKNOWN) &&
            t->text_len[id] > 0)
            li[t->n_special++] = (len_id){t->text_len[id], id};
    }
    qsort(li, (size_t)t->n_special, sizeof *li, cmp_len_desc);
    for (int i = 0; i < t->n_special; i++) t->special[i] = li[i].id;
    free(li);
    return 0;
}

int spill_tokenizer_init(spill_tokenizer *t, const spill_gguf *g, spill_err *err) {
    memset(t, 0, sizeof *t);
    t->eot = -1;
    for (int i = 0; i < 8; i++) t->eog_extra[i] = -1;
    spill_str model;
    int rc = spill_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc < 0) return -1;
    if (rc == 1) return spill_err_set(err, "%s: no tokenizer (metadata 'tokenizer.ggml.model' is missing)", g->path);
    if (spill_str_eq(model, "llama")) t->kind = SPILL_TOK_SPM;
    else if (spill_str_eq(model, "gpt2")) t->kind = SPILL_TOK_BPE;
    else
        return spill_err_set(err, "%s: tokenizer model '%.*s' is not supported (llama and gpt2 are)", g->path,
                             (int)(model.len > 64 ? 64 : model.len), model.ptr);

    const spill_gguf_kv *tokens;
    rc = spill_gguf_get_arr(g, "tokenizer.ggml.tokens", SPILL_GGUF_STRING, &tokens, err);
    if (rc < 0) return -1;
    if (rc == 1) return spill_err_set(err, "%s: metadata 'tokenizer.ggml.tokens' is missing", g->path);
    if (tokens->arr_count == 0 || tokens->arr_count > (1u << 24))
        return spill_err_set(err, "%s: tokenizer.ggml.tokens has %llu entries; 1..16777216 are allowed", g->path,
                             (unsigned long long)tokens->arr_count);
    t->n_vocab = (int)tokens->arr_count;
    spill_str *texts = malloc(sizeof *texts * (size_t)t->n_vocab);
    if (!texts) return spill_err_set(err, "out of memory");
    spill_gguf_arr_strings(tokens, texts);
    rc = tok_set_texts(t, texts, g->path, err);
    free(texts);
    if (rc) {
        spill_tokenizer_free(t);
        return -1;
    }

    const spill_gguf_kv *arr;
    rc = spill_gguf_get_arr(g, "tokenizer.ggml.token_type", SPILL_GGUF_I32, &arr, err);
    if (rc < 0) goto fail;
    if (rc == 0) {
        if (arr->arr_count != (uint64_t)t->n_vocab) {
            spill_err_set(err, "%s: tokenizer.ggml.token_type has %llu entries but there are %d tokens", g->path,
                          (unsigned long long)arr->arr_count, t->n_vocab);
            goto fail;
        }
        memcpy(t->types, arr->arr_data, sizeof(int32_t) * (size_t)t->n_vocab);
    }
    if (t->kind == SPILL_TOK_SPM) {
        t->scores = calloc((size_t)t->n_vocab, sizeof(float));
        if (!t->scores) goto oom;
        rc = spill_gguf_get_arr(g, "tokenizer.ggml.scores", SPILL_GGUF_F32, &arr, err);
        if (rc < 0) goto fail;
        if (rc == 0) {
            if (arr->arr_count != (uint64_t)t->n_vocab) {
                spill_err_set(err, "%s: tokenizer.ggml.scores has %llu entries but there are %d tokens", g->path,
                              (unsigned long long)arr->arr_count, t->n_vocab);
                goto fail;
            }
            memcpy(t->scores, arr->arr_data, sizeof(float) * (size_t)t->n_vocab);
        }
        for (int b = 0; b < 256; b++) {
            char name[8];
            snprintf(name, sizeof name, "<0x%02X>", b);
            t->byte_tok[b] = spill_token_find(t, name, 6);
        }
        t->add_space_prefix = 1;
    } else {
        rc = spill_gguf_get_arr(g, "tokenizer.ggml.merges", SPILL_GGUF_STRING, &arr, err);
        if (rc < 0) goto fail;
        if (rc == 1) {
            spill_err_set(err, "%s: a gpt2 tokenizer needs metadata 'tokenizer.ggml.merges'", g->path);
            goto fail;
        }
        spill_str *ms = malloc(sizeof *ms * (arr->arr_count ? arr->arr_count : 1));
        if (!ms) goto oom;
        spill_gguf_arr_strings(arr, ms);
        if (tok_merges_alloc(t, arr->arr_count)) {
            free(ms);
            goto oom;
        }
        for (uint64_t r = 0; r < arr->arr_count; r++) {
            /* "left right": split at the first space after the first byte (a side may be a lone space-char) */
            const char *sp = ms[r].len > 1 ? memchr(ms[r].ptr + 1, ' ', ms[r].len - 1) : NULL;
            if (!sp) {
                spill_err_set(err, "%s: tokenizer.ggml.merges entry %llu ('%.*s') is not two tokens separated by a space",
                              g->path, (unsigned long long)r, (int)(ms[r].len > 64 ? 64 : ms[r].len), ms[r].ptr);
                free(ms);
                goto fail;
            }
            size_t ll = (size_t)(sp - ms[r].ptr);
            tok_merge_add(t, ms[r].ptr, ll, sp + 1, ms[r].len - ll - 1, r);
        }
        free(ms);
        spill_str pre;
        rc = spill_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
        if (rc < 0) goto fail;
        if (rc == 0 && spill_str_eq(pre, "smollm")) t->pre_digits = 1;
        else if (rc == 0 && spill_str_eq(pre, "llama-bpe")) t->pre_llama3 = 3;
        else if (rc == 0 && spill_str_eq(pre, "qwen2")) t->pre_llama3 = 1;
        else if (rc == 0 && !spill_str_eq(pre, "gpt2") && !spill_str_eq(pre, "default"))
            fprintf(stderr, "spill: %s: pre-tokenizer '%.*s' is not known; using the GPT-2 rules\n", g->path,
                    (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
        t->add_space_prefix = 0; /* byte-level BPE encodes spaces itself */
    }

    /* special ids; absent ids fall back to the conventions of the tokenizer kind */
    uint32_t v;
    t->bos = t->kind == SPILL_TOK_SPM ? 1 : -1;
    t->eos = t->kind == SPILL_TOK_SPM ? 2 : -1;
    if ((rc = spill_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v, err)) < 0) goto fail;
    if (rc == 0) t->bos = (int)v;
    if ((rc = spill_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &v, err)) < 0) goto fail;
    if (rc == 0) t->eos = (int)v;
    if ((rc = spill_gguf_get_u32(g, "tokenizer.ggml.eot_token_id", &v, err)) < 0) goto fail;
    if (rc == 0) t->eot = (int)v;
    if (t->bos >= t->n_vocab || t->eos >= t->n_vocab || t->eot >= t->n_vocab) {
        spill_err_set(err, "%s: special token id (bos %d, eos %d, eot %d) is outside the vocabulary of %d", g->path,
                      t->bos, t->eos, t->eot, t->n_vocab);
        goto fail;
    }
    if (t->eot < 0) { /* chat models name their end of turn by text */
        static const char *eots[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"};
        for (size_t i = 0; i < sizeof eots / sizeof *eots && t->eot < 0; i++) {
            int id = spill_token_find(t, eots[i], strlen(eots[i]));
            if (id >= 0 && t->types[id] == SPILL_TOKTYPE_CONTROL) t->eot = id;
        }
    }
    t->add_bos = t->kind == SPILL_TOK_SPM;
    int b;
    if ((rc = spill_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, err)) < 0) goto fail;
    if (rc == 0) t->add_bos = b;
    if (t->add_bos && t->bos < 0) t->add_bos = 0;
    if (t->kind == SPILL_TOK_SPM) {
        if ((rc = spill_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, err)) < 0) goto fail;
        if (rc == 0) t->add_space_prefix = b;
    }

    if (tok_specials(t)) goto oom;
    return 0;
oom:
    spill_err_set(err, "out of memory building the tokenizer");
fail:
    spill_tokenizer_free(t);
    return -1;
}

void spill_tokenizer_free(spill_tokenizer *t) {
    if (t->lookup) free(t->lookup->slot);
    free(t->lookup);
    free(t->text_buf);
    free(t->text_off);
    free(t->text_len);
    free(t->scores);
    free(t->types);
    free(t->merges);
    free(t->special);
    memset(t, 0, sizeof *t);
}

/* ---- growable id vector ---- */
typedef struct { int *v; int n, cap; int oom; } ivec;
static void ivec_push(ivec *a, int x) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 64;
        int *nv = realloc(a->v, sizeof(int) * (size_t)nc);
        if (!nv) { a->oom = 1; return; }
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
}

/* ---- symbol merging shared by SPM (best score) and BPE (lowest rank) ----
 * Symbols are byte ranges of `s`; each holds the id of the token it currently is (or -1). Each
 * pass picks the best adjacent pair, leftmost on ties, which is the order a priority queue of
 * bigrams gives; pair scores are cached and recomputed only next to a merge. */
typedef struct { int start, len, id; } sym;

static double pair_score(const spill_tokenizer *t, const char *s, const sym *a, const sym *b, int *res) {
    if (t->kind == SPILL_TOK_BPE) {
        if (a->id < 0 || b->id < 0) return -INFINITY;
        int r = merge_find(t, a->id, b->id, res);
        return r < 0 ? -INFINITY : -(double)r;
    }
    int id = spill_token_find(t, s + a->start, (size_t)(a->len + b->len));
    if (id < 0) return -INFINITY;
    *res = id;
    return t->scores[id];
}

static void merge_symbols(const spill_tokenizer *t, const char *s, int n, ivec *out) {
    if (n == 0) return;
    int cap = n;
    sym *sy = malloc(sizeof *sy * (size_t)cap);
    double *sc = malloc(sizeof *sc * (size_t)cap);
    int *res = malloc(sizeof *res * (size_t)cap);
    if (!sy || !sc || !res) {
        free(sy); free(sc); free(res);
        out->oom = 1;
        return;
    }
    int m = 0;
    for (int i = 0; i < n;) {
        int l = spill_utf8_len((unsigned char)s[i]);
        if (i + l > n) l = n - i;
        sy[m].start = i;
        sy[m].len = l;
        sy[m].id = spill_token_find(t, s + i, (size_t)l);
        m++;
        i += l;
    }
    for (int i = 0; i + 1 < m; i++) sc[i] = pair_score(t, s, &sy[i], &sy[i + 1], &res[i]);
    for (;;) {
        int best = -1;
        for (int i = 0; i + 1 < m; i++)
            if (sc[i] > -INFINITY && (best < 0 || sc[i] > sc[best])) best = i;
        if (best < 0) break;
        sy[best].len += sy[best + 1].len;
        sy[best].id = res[best];
        memmove(&sy[best + 1], &sy[best + 2], sizeof *sy * (size_t)(m - best - 2));
        memmove(&sc[best + 1], &sc[best + 2], sizeof *sc * (size_t)(m > best + 2 ? m - best - 2 : 0));
        memmove(&res[best + 1], &res[best + 2], sizeof *res * (size_t)(m > best + 2 ? m - best - 2 : 0));
        m--;
        if (best > 0) sc[best - 1] = pair_score(t, s, &sy[best - 1], &sy[best], &res[best - 1]);
        if (best + 1 < m) sc[best] = pair_score(t, s, &sy[best], &sy[best + 1], &res[best]);
    }
    for (int i = 0; i < m; i++) {
        if (sy[i].id >= 0) {
            ivec_push(out, sy[i].id);
            continue;
        }
        for (int j = 0; j < sy[i].len; j++) { /* fall back to one token per byte */
            unsigned char c = (unsigned char)s[sy[i].start + j];
            int id = -1;
            if (t->kind == SPILL_TOK_SPM) {
                id = t->byte_tok[c];
            } else {
                char e[4];
                int el = spill_utf8_encode(byte_to_cp(c), e);
                id = spill_token_find(t, e, (size_t)el);
            }
            if (id >= 0) ivec_push(out, id);
            else if (t->kind == SPILL_TOK_SPM && t->n_vocab > 0) ivec_push(out, 0); /* <unk> */
        }
    }
    free(sy);
    free(sc);
    free(res);
}

/* ---- BPE: GPT-2 pre-tokenization, then byte-level encoding and merges per piece ---- */
static void bpe_piece(const spill_tokenizer *t, const char *s, int n, ivec *out, char *enc) {
    int el = 0;
    for (int i = 0; i < n; i++) el += spill_utf8_encode(byte_to_cp((unsigned char)s[i]), enc + el);
    merge_symbols(t, enc, el, out);
}

/* 's 't 're 've 'm 'll 'd | ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ | \s+(?!\S) | \s+ over s[0..n). */
static void gpt2_split(const spill_tokenizer *t, const char *s, int n, ivec *out, char *enc) {
#define CP_AT(p, lenp) ((p) < n ? spill_utf8_decode(s + (p), (size_t)(n - (p)), (lenp)) : (*(lenp) = 0, 0xFFFFFFFFu))
    int pos = 0;
    while (pos < n) {
        int l0, l1;
        uint32_t c = CP_AT(pos, &l0);
        int start = pos;
        if (c == '\'' && pos + 1 < n) {
            char a = s[pos + 1], b = pos + 2 < n ? s[pos + 2] : 0;
            int k = 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') k = 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) k = 3;
            if (k) {
                bpe_piece(t, s + pos, k, out, enc);
                pos += k;
                continue;
            }
        }
        int p = pos;
        uint32_t c2 = c;
        if (c == ' ') {
            c2 = CP_AT(pos + 1, &l1);
            p = pos + 1;
        }
        if (c2 != 0xFFFFFFFFu && spill_cp_is_letter(c2)) {
            int l;
            while (p < n && spill_cp_is_letter(CP_AT(p, &l))) p += l;
            bpe_piece(t, s + start, p - start, out, enc);
            pos = p;
            continue;
        }
        if (c2 != 0xFFFFFFFFu && spill_cp_is_number(c2)) {
            int l;
            while (p < n && spill_cp_is_number(CP_AT(p, &l))) p += l;
            bpe_piece(t, s + start, p - start, out, enc);
            pos = p;
            continue;
        }
        if (c2 != 0xFFFFFFFFu && !spill_cp_is_space(c2)) {
            int l;
            for (;;) {
                if (p >= n) break;
                uint32_t d = CP_AT(p, &l);
                if (spill_cp_is_space(d) || spill_cp_is_letter(d) || spill_cp_is_number(d)) break;
                p += l;
            }
            bpe_piece(t, s + start, p - start, out, enc);
            pos = p;
            continue;
        }
        /* whitespace run: leave its last character to the next piece when a non-space follows */
        int l, q = pos, nws = 0, last = pos;
        while (q < n && spill_cp_is_space(CP_AT(q, &l))) {
            last = q;
            q += l;
            nws++;
        }
        if (nws > 1 && q < n) q = last;
        else if (nws == 0) q = pos + l0; /* nothing matched: one character on its own */
        bpe_piece(t, s + start, q - start, out, enc);
        pos = q;
    }
#undef CP_AT
}

/* Llama-3's pre-tokenizer (Qwen2's with max_digits = 1):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,3} | ?[^\s\p{L}\p{N}]+[\r\n]*
 *   | \s*[\r\n]+ | \s+(?!\S) | \s+
 * tried in that order at each position, as a regex engine would. */
static void llama3_split(const spill_tokenizer *t, const char *s, int n, int max_digits, ivec *out, char *enc) {
#define CP(p, lenp) ((p) < n ? spill_utf8_decode(s + (p), (size_t)(n - (p)), (lenp)) : (*(lenp) = 0, 0xFFFFFFFFu))
#define IS_NL(c) ((c) == '\r' || (c) == '\n')
#define IS_OTHER(c) ((c) != 0xFFFFFFFFu && !spill_cp_is_space(c) && !spill_cp_is_letter(c) && !spill_cp_is_number(c))
    int pos = 0;
    while (pos < n) {
        int l0, l1, l;
        uint32_t c = CP(pos, &l0);
        int end = -1;
        if (c == '\'' && pos + 1 < n) {
            char a = (char)(s[pos + 1] | 0x20), b = pos + 2 < n ? (char)(s[pos + 2] | 0x20) : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') end = pos + 2;
            else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) end = pos + 3;
        }
        if (end < 0) {
            /* an optional non-letter, non-number, non-newline, then letters */
            int p = pos;
            if (!spill_cp_is_letter(c) && !spill_cp_is_number(c) && !IS_NL(c)) {
                uint32_t d = CP(pos + l0, &l1);
                if (d != 0xFFFFFFFFu && spill_cp_is_letter(d)) p = pos + l0;
            }
            if (spill_cp_is_letter(CP(p, &l))) {
                while (p < n && spill_cp_is_letter(CP(p, &l))) p += l;
                end = p;
            }
        }
        if (end < 0 && spill_cp_is_number(c)) {
            int p = pos, k = 0;
            while (p < n && k < max_digits && spill_cp_is_number(CP(p, &l))) p += l, k++;
            end = p;
        }
        if (end < 0) {
            int p = pos;
            if (c == ' ' && IS_OTHER(CP(pos + 1, &l1))) p = pos + 1;
            if (IS_OTHER(CP(p, &l))) {
                while (p < n && IS_OTHER(CP(p, &l))) p += l;
                while (p < n && IS_NL(CP(p, &l))) p += l;
                end = p;
            }
        }
        if (end < 0) {
            /* whitespace: up to the last newline of the run; else leave the last space to what follows */
            int q = pos, last_nl = -1, last = pos, nws = 0;
            while (q < n && spill_cp_is_space(CP(q, &l))) {
                uint32_t d = CP(q, &l);
                last = q;
                q += l;
                nws++;
                if (IS_NL(d)) last_nl = q;
            }
            if (last_nl > 0) end = last_nl;
            else if (q < n && nws > 1) end = last;
            else end = q > pos ? q : pos + l0;
        }
        bpe_piece(t, s + pos, end - pos, out, enc);
        pos = end;
    }
#undef CP
#undef IS_NL
#undef IS_OTHER
}

static void bpe_fragment(const spill_tokenizer *t, const char *s, int n, ivec *out, char *enc) {
    if (t->pre_llama3) {
        llama3_split(t, s, n, t->pre_llama3, out, enc);
        return;
    }
    if (!t->pre_digits) {
        gpt2_split(t, s, n, out, enc);
        return;
    }
    int seg = 0, pos = 0;
    while (pos < n) {
        int l;
        uint32_t c = spill_utf8_decode(s + pos, (size_t)(n - pos), &l);
        if (spill_cp_is_number(c)) {
            if (pos > seg) gpt2_split(t, s + seg, pos - seg, out, enc);
            bpe_piece(t, s + pos, l, out, enc);
            seg = pos + l;
        }
        pos += l;
    }
    if (n > seg) gpt2_split(t, s + seg, n - seg, out, enc);
}

static void spm_fragment(const spill_tokenizer *t, const char *s, int n, int space_prefix, ivec *out, char *enc) {
    /* spaces become U+2581 (3 bytes); an optional leading space */
    int el = 0;
    if (space_prefix) { memcpy(enc, "\xE2\x96\x81", 3); el = 3; }
    for (int i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(enc + el, "\xE2\x96\x81", 3); el += 3; }
        else enc[el++] = s[i];
    }
    merge_symbols(t, enc, el, out);
}

int spill_tokenize(const spill_tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                   int **out, int *n_out, spill_err *err) {
    if (len > (1u << 30)) return spill_err_set(err, "prompt of %zu bytes is larger than the 1 GiB limit", len);
    ivec o = {0};
    char *enc = malloc(len * 4 + 8); /* worst case: every byte becomes a 3-4 byte sequence */
    /* fragments: special tokens are found first, longest text first, and the text between them is
     * tokenized normally */
    typedef struct { size_t off, len; int id; } frag;
    int nf = 1, capf = 16;
    frag *fr = malloc(sizeof *fr * (size_t)capf);
    if (!enc || !fr) {
        free(enc);
        free(fr);
        return spill_err_set(err, "out of memory tokenizing a %zu-byte prompt", len);
    }
    fr[0] = (frag){0, len, -1};
    if (parse_special) {
        for (int si = 0; si < t->n_special; si++) {
            int id = t->special[si];
            if (t->types[id] == SPILL_TOKTYPE_UNKNOWN) continue;
            const char *st = tok_text(t, id);
            size_t sl = t->text_len[id];
            for (int f = 0; f < nf; f++) {
                if (fr[f].id >= 0 || fr[f].len < sl) continue;
                const char *base = text + fr[f].off;
                const char *hit = NULL;
                for (size_t k = 0; k + sl <= fr[f].len; k++)
                    if (base[k] == st[0] && !memcmp(base + k, st, sl)) { hit = base + k; break; }
                if (!hit) continue;
                if (nf + 2 > capf) {
                    capf *= 2;
                    frag *nfr = realloc(fr, sizeof *fr * (size_t)capf);
                    if (!nfr) { free(fr); free(enc); free(o.v); return spill_err_set(err, "out of memory"); }
                    fr = nfr;
                }
                size_t before = (size_t)(hit - base), after = fr[f].len - before - sl;
                frag tail = {fr[f].off + before + sl, after, -1};
                memmove(&fr[f + 3], &fr[f + 1], sizeof *fr * (size_t)(nf - f - 1));
                fr[f].len = before;
                fr[f + 1] = (frag){fr[f].off + before, sl, id};
                fr[f + 2] = tail;
                nf += 2;
                f++; /* continue scanning in the tail */
            }
        }
    }
    if (add_bos && t->bos >= 0) ivec_push(&o, t->bos);
    int prev_special = 1;
    for (int f = 0; f < nf; f++) {
        if (fr[f].id >= 0) {
            ivec_push(&o, fr[f].id);
            prev_special = 1;
            continue;
        }
        if (fr[f].len == 0) continue;
        if (t->kind == SPILL_TOK_SPM)
            spm_fragment(t, text + fr[f].off, (int)fr[f].len, t->add_space_prefix && prev_special, &o, enc);
        else
            bpe_fragment(t, text + fr[f].off, (int)fr[f].len, &o, enc);
        prev_special = 0;
    }
    free(fr);
    free(enc);
    if (o.oom) {
        free(o.v);
        return spill_err_set(err, "out of memory tokenizing a %zu-byte prompt", len);
    }
    *out = o.v;
    *n_out = o.n;
    return 0;
}

int spill_token_to_bytes(const spill_tokenizer *t, int id, char *buf, int cap) {
    if (id < 0 || id >= t->n_vocab) return 0;
    int ty = t->types[id];
    if (ty == SPILL_TOKTYPE_CONTROL || ty == SPILL_TOKTYPE_UNUSED) return 0;
    const char *s = tok_text(t, id);
    int n = (int)t->text_len[id], o = 0;
#define PUT(c) do { if (o < cap) buf[o] = (char)(c); o++; } while (0)
    if (ty == SPILL_TOKTYPE_USER_DEFINED) {
        for (int i = 0; i < n; i++) PUT(s[i]);
        return o;
    }
    if (t->kind == SPILL_TOK_SPM) {
        unsigned v;
        if (ty == SPILL_TOKTYPE_BYTE && n == 6 && sscanf(s, "<0x%02X>", &v) == 1) {
            PUT(v);
            return o;
        }
        for (int i = 0; i < n; i++) {
            if (i + 2 < n && !memcmp(s + i, "\xE2\x96\x81", 3)) { PUT(' '); i += 2; }
            else PUT(s[i]);
        }
        return o;
    }
    for (int i = 0; i < n;) {
        int l;
        uint32_t cp = spill_utf8_decode(s + i, (size_t)(n - i), &l);
        int b = cp_to_byte(cp);
        if (b >= 0) PUT(b);
        else for (int k = 0; k < l; k++) PUT(s[i + k]); /* not byte-encoded: pass through */
        i += l;
    }
#undef PUT
    return o;
}

int spill_token_is_eog(const spill_tokenizer *t, int id) {
    if (id == t->eos || id == t->eot) return 1;
    for (int i = 0; i < 8; i++)
        if (t->eog_extra[i] >= 0 && id == t->eog_extra[i]) return 1;
    return 0;
}

/* ---- Hugging Face tokenizer.json ---- */

static const char *const llama3_pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const qwen2_pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* the Split regex of a pre_tokenizer (alone or in a Sequence), or NULL */
static const char *split_regex(const spill_json *pre) {
    const spill_json *type = spill_json_get_type(pre, "type", SPILL_JSON_STRING);
    if (!type) return NULL;
    if (!strcmp(type->str, "Split")) {
        const spill_json *pat = spill_json_get_type(pre, "pattern", SPILL_JSON_OBJECT);
        const spill_json *re = pat ? spill_json_get_type(pat, "Regex", SPILL_JSON_STRING) : NULL;
        return re ? re->str : NULL;
    }
    if (!strcmp(type->str, "Sequence")) {
        const spill_json *seq = spill_json_get_type(pre, "pretokenizers", SPILL_JSON_ARRAY);
        for (size_t i = 0; seq && i < seq->n; i++) {
            const char *r = split_regex(&seq->items[i]);
            if (r) return r;
        }
    }
    return NULL;
}

/* a token named in tokenizer_config.json: "text" or {"content": "text"} */
static int config_token(const spill_tokenizer *t, const spill_json *cfg, const char *key) {
    const spill_json *v = spill_json_get(cfg, key);
    if (v && v->type == SPILL_JSON_OBJECT) v = spill_json_get_type(v, "content", SPILL_JSON_STRING);
    if (!v || v->type != SPILL_JSON_STRING) return -1;
    return spill_token_find(t, v->str, v->len);
}

int spill_tokenizer_init_hf(spill_tokenizer *t, const char *dir, spill_err *err) {
    memset(t, 0, sizeof *t);
    t->eot = -1;
    for (int i = 0; i < 8; i++) t->eog_extra[i] = -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    spill_json *j = NULL, *cfg = NULL, *gen = NULL;
    spill_str *texts = NULL;
    if (spill_json_parse_file(path, 256 << 20, &j, err)) return -1;
    int rc = -1;
    const spill_json *model = spill_json_get_type(j, "model", SPILL_JSON_OBJECT);
    const spill_json *mtype = model ? spill_json_get_type(model, "type", SPILL_JSON_STRING) : NULL;
    const spill_json *vocab = model ? spill_json_get_type(model, "vocab", SPILL_JSON_OBJECT) : NULL;
    const spill_json *merges = model ? spill_json_get_type(model, "merges", SPILL_JSON_ARRAY) : NULL;
    const spill_json *added = spill_json_get_type(j, "added_tokens", SPILL_JSON_ARRAY);
    if (!mtype || strcmp(mtype->str, "BPE") || !vocab || !merges) {
        spill_err_set(err, "%s: only byte-level BPE tokenizers are supported (model.type \"BPE\" with \"vocab\" and "
                           "\"merges\"); this one is %s", path, mtype ? mtype->str : "of no known type");
        goto out;
    }
    const spill_json *bf = spill_json_get_type(model, "byte_fallback", SPILL_JSON_BOOL);
    if (bf && bf->boolean) {
        spill_err_set(err, "%s: a BPE with byte_fallback (SentencePiece-style, e.g. Llama 2) is not supported yet; "
                           "convert the model to GGUF", path);
        goto out;
    }
    /* ids: the vocabulary and the added tokens, each id at most once */
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->n; i++) {
        const spill_json *v = &vocab->items[i];
        if (v->type != SPILL_JSON_NUMBER || !v->is_int || v->integer < 0 || v->integer >= (1 << 24)) {
            spill_err_set(err, "%s: vocab entry '%.64s' has no valid id (0..16777215)", path, vocab->keys[i]);
            goto out;
        }
        if (v->integer > max_id) max_id = v->integer;
    }
    for (size_t i = 0; added && i < added->n; i++) {
        const spill_json *id = spill_json_get_type(&added->items[i], "id", SPILL_JSON_NUMBER);
        const spill_json *c = spill_json_get_type(&added->items[i], "content", SPILL_JSON_STRING);
        if (!id || !id->is_int || id->integer < 0 || id->integer >= (1 << 24) || !c) {
            spill_err_set(err, "%s: added_tokens entry %zu needs an id (0..16777215) and a content", path, i);
            goto out;
        }
        if (id->integer > max_id) max_id = id->integer;
    }
    if (max_id < 0) {
        spill_err_set(err, "%s: the vocabulary is empty", path);
        goto out;
    }
    t->kind = SPILL_TOK_BPE;
    t->n_vocab = (int)max_id + 1;
    texts = calloc((size_t)t->n_vocab, sizeof *texts);
    if (!texts) {
        spill_err_set(err, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < vocab->n; i++) {
        spill_str *tx = &texts[vocab->items[i].integer];
        if (tx->ptr) {
            spill_err_set(err, "%s: id %lld is given to two tokens", path, (long long)vocab->items[i].integer);
            goto out;
        }
        *tx = (spill_str){vocab->keys[i], strlen(vocab->keys[i])};
    }
    for (size_t i = 0; added && i < added->n; i++) {
        const spill_json *c = spill_json_get(&added->items[i], "content");
        texts[spill_json_get(&added->items[i], "id")->integer] = (spill_str){c->str, c->len};
    }
    if (tok_set_texts(t, texts, path, err)) goto out;
    for (size_t i = 0; added && i < added->n; i++) {
        const spill_json *sp = spill_json_get_type(&added->items[i], "special", SPILL_JSON_BOOL);
        t->types[spill_json_get(&added->items[i], "id")->integer] =
            sp && sp->boolean ? SPILL_TOKTYPE_CONTROL : SPILL_TOKTYPE_USER_DEFINED;
    }
    if (tok_merges_alloc(t, merges->n)) {
        spill_err_set(err, "out of memory");
        goto out;
    }
    for (size_t r = 0; r < merges->n; r++) {
        const spill_json *m = &merges->items[r];
        if (m->type == SPILL_JSON_STRING) { /* "left right" */
            const char *sp = m->len > 1 ? memchr(m->str + 1, ' ', m->len - 1) : NULL;
            if (!sp) {
                spill_err_set(err, "%s: merge %zu ('%.64s') is not two tokens separated by a space", path, r, m->str);
                goto out;
            }
            size_t ll = (size_t)(sp - m->str);
            tok_merge_add(t, m->str, ll, sp + 1, m->len - ll - 1, r);
        } else if (m->type == SPILL_JSON_ARRAY && m->n == 2 && m->items[0].type == SPILL_JSON_STRING &&
                   m->items[1].type == SPILL_JSON_STRING) { /* ["left", "right"] */
            tok_merge_add(t, m->items[0].str, m->items[0].len, m->items[1].str, m->items[1].len, r);
        } else {
            spill_err_set(err, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", path, r);
            goto out;
        }
    }
    /* the pre-tokenizer: the regexes spill implements by hand, recognised by their text */
    const spill_json *pre = spill_json_get_type(j, "pre_tokenizer", SPILL_JSON_OBJECT);
    const char *re = pre ? split_regex(pre) : NULL;
    if (re && !strcmp(re, llama3_pattern)) {
        t->pre_llama3 = 3;
    } else if (re && !strcmp(re, qwen2_pattern)) {
        t->pre_llama3 = 1;
    } else if (re) {
        spill_err_set(err, "%s: the pre-tokenizer's pattern is not one spill knows (Llama-3, Qwen2, GPT-2): %.120s", path, re);
        goto out;
    } else {
        const spill_json *ptype = pre ? spill_json_get_type(pre, "type", SPILL_JSON_STRING) : NULL;
        if (!ptype || strcmp(ptype->str, "ByteLevel")) {
            spill_err_set(err, "%s: the pre-tokenizer (%s) is not one spill knows (Llama-3, Qwen2, GPT-2 ByteLevel)", path,
                          ptype ? ptype->str : "none");
            goto out;
        }
    }
    /* bos/eos: tokenizer_config.json; what ends generation: generation_config.json */
    t->bos = t->eos = -1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!access(path, R_OK)) {
        if (spill_json_parse_file(path, 64 << 20, &cfg, err)) goto out;
        t->bos = config_token(t, cfg, "bos_token");
        t->eos = config_token(t, cfg, "eos_token");
        const spill_json *ab = spill_json_get_type(cfg, "add_bos_token", SPILL_JSON_BOOL);
        t->add_bos = ab ? ab->boolean && t->bos >= 0 : 0;
    }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (!access(path, R_OK)) {
        if (spill_json_parse_file(path, 1 << 20, &gen, err)) goto out;
        const spill_json *e = spill_json_get(gen, "eos_token_id");
        int k = 0;
        const spill_json *one = e && e->type == SPILL_JSON_NUMBER ? e : NULL;
        for (size_t i = 0; e && (one ? i < 1 : e->type == SPILL_JSON_ARRAY && i < e->n) && k < 8; i++) {
            const spill_json *x = one ? one : &e->items[i];
            if (x->type != SPILL_JSON_NUMBER || !x->is_int || x->integer < 0 || x->integer >= t->n_vocab) {
                spill_err_set(err, "%s: eos_token_id %s is not a token id of this vocabulary (0..%d)", path,
                              x->type == SPILL_JSON_NUMBER ? "value" : "entry", t->n_vocab - 1);
                goto out;
            }
            if (t->eos < 0) t->eos = (int)x->integer;
            else t->eog_extra[k++] = (int)x->integer;
        }
    }
    {
        static const char *eots[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"};
        for (size_t i = 0; i < sizeof eots / sizeof *eots && t->eot < 0; i++) {
            int id = spill_token_find(t, eots[i], strlen(eots[i]));
            if (id >= 0 && t->types[id] == SPILL_TOKTYPE_CONTROL) t->eot = id;
        }
    }
    if (tok_specials(t)) {
        spill_err_set(err, "out of memory");
        goto out;
    }
    rc = 0;
out:
    free(texts);
    spill_json_free(j);
    spill_json_free(cfg);
    spill_json_free(gen);
    if (rc) spill_tokenizer_free(t);
    return rc;
}
