/* Tokenizers from Hugging Face files: tokenizer.json as the tokenizers library reads it, and the
 * ids tokenizer_config.json and generation_config.json name. Every field that changes the ids is
 * read and checked; a type spill does not implement is refused with the JSON path of its field
 * ("tokenizer.json: pre_tokenizer.pretokenizers[2].type: ..."). truncation and padding are
 * ignored, as transformers ignores them unless a call asks for them. */
#include "tok_internal.h"

#include <unistd.h>

#include "spill_json.h"

typedef struct {
    const char *file;
    spill_err *err;
} hfctx;

#define JP_MAX 256

static int bad(hfctx *c, const char *jp, const char *fmt, const char *detail) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail);
    return spill_err_set(c->err, "%s: %s: %s", c->file, jp, msg);
}

/* JSON paths for messages; a path too long to show ends in "..." */
static void jp_key(char *out, const char *jp, const char *key) {
    if (snprintf(out, JP_MAX, "%s%s%s", jp, *jp ? "." : "", key) >= JP_MAX) memcpy(out + JP_MAX - 4, "...", 4);
}
static void jp_idx(char *out, const char *jp, size_t i) {
    if (snprintf(out, JP_MAX, "%s[%zu]", jp, i) >= JP_MAX) memcpy(out + JP_MAX - 4, "...", 4);
}

/* a field of a given type: 1 present, 0 absent (or null), -1 wrong type */
static int field(hfctx *c, const spill_json *obj, const char *jp, const char *key, spill_json_type type,
                 const spill_json **out) {
    *out = spill_json_get(obj, key);
    if (!*out || (*out)->type == SPILL_JSON_NULL) {
        *out = NULL;
        return 0;
    }
    if ((*out)->type != type) {
        char p[JP_MAX];
        jp_key(p, jp, key);
        return spill_err_set(c->err, "%s: %s: is %s where %s is expected", c->file, p,
                             spill_json_type_name((*out)->type), spill_json_type_name(type));
    }
    return 1;
}

static int get_bool(hfctx *c, const spill_json *obj, const char *jp, const char *key, int def, int *out) {
    const spill_json *v;
    int rc = field(c, obj, jp, key, SPILL_JSON_BOOL, &v);
    if (rc < 0) return -1;
    *out = rc ? v->boolean : def;
    return 0;
}

static int get_uint(hfctx *c, const spill_json *obj, const char *jp, const char *key, int64_t def, int64_t max,
                    int64_t *out) {
    const spill_json *v;
    int rc = field(c, obj, jp, key, SPILL_JSON_NUMBER, &v);
    if (rc < 0) return -1;
    if (rc == 0) {
        *out = def;
        return 0;
    }
    if (!v->is_int || v->integer < 0 || v->integer > max) {
        char p[JP_MAX], lim[64];
        jp_key(p, jp, key);
        snprintf(lim, sizeof lim, "0..%lld", (long long)max);
        return bad(c, p, "must be an integer in %s", lim);
    }
    *out = v->integer;
    return 0;
}

/* a required string field */
static const spill_json *need_str(hfctx *c, const spill_json *obj, const char *jp, const char *key) {
    const spill_json *v;
    int rc = field(c, obj, jp, key, SPILL_JSON_STRING, &v);
    if (rc == 0) {
        char p[JP_MAX];
        jp_key(p, jp, key);
        bad(c, p, "is missing%s", "");
    }
    return rc == 1 ? v : NULL;
}

/* a field holding exactly one character */
static int get_char(hfctx *c, const spill_json *obj, const char *jp, const char *key, uint32_t def, uint32_t *out) {
    const spill_json *v;
    int rc = field(c, obj, jp, key, SPILL_JSON_STRING, &v);
    if (rc < 0) return -1;
    if (rc == 0) {
        *out = def;
        return 0;
    }
    int l = spill_utf8_valid_at(v->str, v->len);
    if (l == 0 || (size_t)l != v->len) {
        char p[JP_MAX];
        jp_key(p, jp, key);
        return bad(c, p, "must be one character%s", "");
    }
    int len;
    *out = spill_utf8_decode(v->str, v->len, &len);
    return 0;
}

/* {"String": s} or {"Regex": s} */
static spill_regex *get_pattern(hfctx *c, const spill_json *obj, const char *jp) {
    char p[JP_MAX];
    jp_key(p, jp, "pattern");
    const spill_json *pat;
    int rc = field(c, obj, jp, "pattern", SPILL_JSON_OBJECT, &pat);
    if (rc <= 0) {
        if (rc == 0) bad(c, p, "is missing (an object with \"String\" or \"Regex\")%s", "");
        return NULL;
    }
    const spill_json *s = spill_json_get_type(pat, "String", SPILL_JSON_STRING);
    const spill_json *r = spill_json_get_type(pat, "Regex", SPILL_JSON_STRING);
    if (!s && !r) {
        bad(c, p, "must hold a \"String\" or a \"Regex\"%s", "");
        return NULL;
    }
    char what[JP_MAX + 64];
    snprintf(what, sizeof what, "%s: %s.%s", c->file, p, s ? "String" : "Regex");
    return spill_regex_compile(s ? s->str : r->str, s ? s->len : r->len, s != NULL, what, c->err);
}

static const spill_json *type_of(hfctx *c, const spill_json *obj, const char *jp, const char *what) {
    if (obj->type != SPILL_JSON_OBJECT) {
        bad(c, jp, "must be an object (a %s)", what);
        return NULL;
    }
    return need_str(c, obj, jp, "type");
}

static int refuse_type(hfctx *c, const char *jp, const char *type, const char *kind, const char *known) {
    char p[JP_MAX];
    jp_key(p, jp, "type");
    return spill_err_set(c->err, "%s: %s: '%.64s' is not a %s spill implements (%s)", c->file, p, type, kind, known);
}

/* ---- normalizers ---- */
static int add_normalizer(hfctx *c, spill_normalizer *nz, const spill_json *o, const char *jp) {
    const spill_json *ty = type_of(c, o, jp, "normalizer");
    if (!ty) return -1;
    const char *t = ty->str;
    int l, r;
    if (!strcmp(t, "Sequence")) {
        const spill_json *seq;
        char p[JP_MAX];
        if (field(c, o, jp, "normalizers", SPILL_JSON_ARRAY, &seq) <= 0) {
            jp_key(p, jp, "normalizers");
            return seq ? -1 : bad(c, p, "is missing%s", "");
        }
        jp_key(p, jp, "normalizers");
        for (size_t i = 0; i < seq->n; i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            if (add_normalizer(c, nz, &seq->items[i], q)) return -1;
        }
        return 0;
    }
    int rc = 0;
    if (!strcmp(t, "NFC")) rc = spill_norm_add_nf(nz, SPILL_NFC);
    else if (!strcmp(t, "NFD")) rc = spill_norm_add_nf(nz, SPILL_NFD);
    else if (!strcmp(t, "NFKC")) rc = spill_norm_add_nf(nz, SPILL_NFKC);
    else if (!strcmp(t, "NFKD")) rc = spill_norm_add_nf(nz, SPILL_NFKD);
    else if (!strcmp(t, "Lowercase")) rc = spill_norm_add_lowercase(nz);
    else if (!strcmp(t, "StripAccents")) rc = spill_norm_add_strip_accents(nz);
    else if (!strcmp(t, "Strip")) {
        if (get_bool(c, o, jp, "strip_left", 1, &l) || get_bool(c, o, jp, "strip_right", 1, &r)) return -1;
        rc = spill_norm_add_strip(nz, l, r);
    } else if (!strcmp(t, "Prepend")) {
        const spill_json *s = need_str(c, o, jp, "prepend");
        if (!s) return -1;
        rc = spill_norm_add_prepend(nz, s->str, s->len);
    } else if (!strcmp(t, "Replace")) {
        const spill_json *content = need_str(c, o, jp, "content");
        if (!content) return -1;
        spill_regex *re = get_pattern(c, o, jp);
        if (!re) return -1;
        rc = spill_norm_add_replace(nz, re, content->str, content->len);
    } else {
        return refuse_type(c, jp, t, "normalizer",
                           "Sequence, NFC, NFD, NFKC, NFKD, Lowercase, Strip, StripAccents, Prepend, Replace");
    }
    return rc ? spill_err_set(c->err, "out of memory") : 0;
}

/* ---- pre-tokenizers ---- */
static int get_behavior(hfctx *c, const spill_json *o, const char *jp, spill_split_behavior def,
                        spill_split_behavior *out) {
    const spill_json *v;
    int rc = field(c, o, jp, "behavior", SPILL_JSON_STRING, &v);
    if (rc < 0) return -1;
    *out = def;
    if (rc == 0) return 0;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(v->str, names[i])) {
            *out = (spill_split_behavior)i;
            return 0;
        }
    char p[JP_MAX];
    jp_key(p, jp, "behavior");
    return bad(c, p, "'%.64s' is not Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous", v->str);
}

static int get_prepend(hfctx *c, const spill_json *o, const char *jp, spill_prepend *out) {
    /* prepend_scheme, or the older add_prefix_space (false: never) */
    const spill_json *v;
    int aps;
    if (get_bool(c, o, jp, "add_prefix_space", 1, &aps)) return -1;
    int rc = field(c, o, jp, "prepend_scheme", SPILL_JSON_STRING, &v);
    if (rc < 0) return -1;
    *out = SPILL_PREPEND_ALWAYS;
    if (rc == 1) {
        if (!strcmp(v->str, "always")) *out = SPILL_PREPEND_ALWAYS;
        else if (!strcmp(v->str, "never")) *out = SPILL_PREPEND_NEVER;
        else if (!strcmp(v->str, "first")) *out = SPILL_PREPEND_FIRST;
        else {
            char p[JP_MAX];
            jp_key(p, jp, "prepend_scheme");
            return bad(c, p, "'%.64s' is not always, never or first", v->str);
        }
    }
    if (!aps) {
        if (rc == 1 && *out != SPILL_PREPEND_NEVER) {
            char p[JP_MAX];
            jp_key(p, jp, "add_prefix_space");
            return bad(c, p, "false does not agree with prepend_scheme '%s'", v->str);
        }
        *out = SPILL_PREPEND_NEVER;
    }
    return 0;
}

/* Rust's \w (regex crate, Unicode): Alphabetic, marks, decimal digits, connectors, joiners */
#define RE_WORD_CLASS "\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}"
/* Rust's char::is_whitespace: the White_Space property */
#define RE_SPACE_CLASS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static int add_fixed_split(hfctx *c, spill_pretok *pt, const char *jp, const char *pattern, spill_split_behavior b,
                           int invert) {
    char what[JP_MAX + 64];
    snprintf(what, sizeof what, "%s: %s", c->file, jp);
    spill_regex *re = spill_regex_compile(pattern, strlen(pattern), 0, what, c->err);
    if (!re) return -1;
    return spill_pretok_add_split(pt, re, b, invert) ? spill_err_set(c->err, "out of memory") : 0;
}

static int add_pretok(hfctx *c, spill_pretok *pt, const spill_json *o, const char *jp) {
    const spill_json *ty = type_of(c, o, jp, "pre-tokenizer");
    if (!ty) return -1;
    const char *t = ty->str;
    if (!strcmp(t, "Sequence")) {
        const spill_json *seq;
        char p[JP_MAX];
        jp_key(p, jp, "pretokenizers");
        int rc = field(c, o, jp, "pretokenizers", SPILL_JSON_ARRAY, &seq);
        if (rc <= 0) return rc < 0 ? -1 : bad(c, p, "is missing%s", "");
        for (size_t i = 0; i < seq->n; i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            if (add_pretok(c, pt, &seq->items[i], q)) return -1;
        }
        return 0;
    }
    if (!strcmp(t, "Split")) {
        spill_split_behavior b;
        int invert;
        if (get_behavior(c, o, jp, SPILL_SPLIT_ISOLATED, &b) || get_bool(c, o, jp, "invert", 0, &invert)) return -1;
        if (!spill_json_get(o, "behavior")) {
            char p[JP_MAX];
            jp_key(p, jp, "behavior");
            return bad(c, p, "is missing%s", "");
        }
        spill_regex *re = get_pattern(c, o, jp);
        if (!re) return -1;
        return spill_pretok_add_split(pt, re, b, invert) ? spill_err_set(c->err, "out of memory") : 0;
    }
    if (!strcmp(t, "ByteLevel")) {
        int aps, use_regex;
        if (get_bool(c, o, jp, "add_prefix_space", 1, &aps) || get_bool(c, o, jp, "use_regex", 1, &use_regex)) return -1;
        return spill_pretok_add_bytelevel(pt, aps, use_regex, c->err);
    }
    if (!strcmp(t, "Digits")) {
        int individual;
        if (get_bool(c, o, jp, "individual_digits", 0, &individual)) return -1;
        return add_fixed_split(c, pt, jp, "\\p{N}", individual ? SPILL_SPLIT_ISOLATED : SPILL_SPLIT_CONTIGUOUS, 0);
    }
    if (!strcmp(t, "Punctuation")) {
        spill_split_behavior b;
        if (get_behavior(c, o, jp, SPILL_SPLIT_ISOLATED, &b)) return -1;
        return add_fixed_split(c, pt, jp, "[\\p{P}!-/:-@\\[-`{-~]", b, 0);
    }
    if (!strcmp(t, "Whitespace")) /* the library's \w+|[^\w\s]+, keeping the matches */
        return add_fixed_split(c, pt, jp, "[" RE_WORD_CLASS "]+|[^" RE_WORD_CLASS RE_SPACE_CLASS "]+",
                               SPILL_SPLIT_REMOVED, 1);
    if (!strcmp(t, "WhitespaceSplit"))
        return add_fixed_split(c, pt, jp, "[" RE_SPACE_CLASS "]", SPILL_SPLIT_REMOVED, 0);
    if (!strcmp(t, "Metaspace")) {
        uint32_t rep = 0x2581;
        spill_prepend prepend = SPILL_PREPEND_ALWAYS;
        int split = 1;
        if (get_char(c, o, jp, "replacement", 0x2581, &rep) || get_prepend(c, o, jp, &prepend) ||
            get_bool(c, o, jp, "split", 1, &split))
            return -1;
        return spill_pretok_add_metaspace(pt, rep, prepend, split, c->err);
    }
    return refuse_type(c, jp, t, "pre-tokenizer",
                       "Sequence, Split, ByteLevel, Digits, Punctuation, Whitespace, WhitespaceSplit, Metaspace");
}

/* ---- decoders ---- */
static int add_decoder(hfctx *c, spill_decoder *d, const spill_json *o, const char *jp) {
    const spill_json *ty = type_of(c, o, jp, "decoder");
    if (!ty) return -1;
    const char *t = ty->str;
    int rc = 0;
    if (!strcmp(t, "Sequence")) {
        const spill_json *seq;
        char p[JP_MAX];
        jp_key(p, jp, "decoders");
        int frc = field(c, o, jp, "decoders", SPILL_JSON_ARRAY, &seq);
        if (frc <= 0) return frc < 0 ? -1 : bad(c, p, "is missing%s", "");
        for (size_t i = 0; i < seq->n; i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            if (add_decoder(c, d, &seq->items[i], q)) return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) rc = spill_dec_add_bytelevel(d);
    else if (!strcmp(t, "ByteFallback")) rc = spill_dec_add_byte_fallback(d);
    else if (!strcmp(t, "Fuse")) rc = spill_dec_add_fuse(d);
    else if (!strcmp(t, "Metaspace")) {
        uint32_t rep = 0x2581;
        spill_prepend prepend = SPILL_PREPEND_ALWAYS;
        if (get_char(c, o, jp, "replacement", 0x2581, &rep) || get_prepend(c, o, jp, &prepend)) return -1;
        rc = spill_dec_add_metaspace(d, rep, prepend);
    } else if (!strcmp(t, "Strip")) {
        uint32_t ch = ' ';
        int64_t start = 0, stop = 0;
        if (get_char(c, o, jp, "content", ' ', &ch) || get_uint(c, o, jp, "start", 0, 1 << 20, &start) ||
            get_uint(c, o, jp, "stop", 0, 1 << 20, &stop))
            return -1;
        rc = spill_dec_add_strip(d, ch, (int)start, (int)stop);
    } else if (!strcmp(t, "Replace")) {
        const spill_json *content = need_str(c, o, jp, "content");
        if (!content) return -1;
        spill_regex *re = get_pattern(c, o, jp);
        if (!re) return -1;
        rc = spill_dec_add_replace(d, re, content->str, content->len);
    } else {
        return refuse_type(c, jp, t, "decoder", "Sequence, ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace");
    }
    return rc ? spill_err_set(c->err, "out of memory") : 0;
}

/* ---- post-processors: the ids before and after a single sequence ---- */
typedef struct {
    int pre[8], n_pre, suf[8], n_suf;
} specials;

static int push_id(hfctx *c, const char *jp, int *arr, int *n, int id) {
    if (*n >= 8) return bad(c, jp, "adds more than 8 tokens around the text%s", "");
    arr[(*n)++] = id;
    return 0;
}

/* ["text", id] */
static int pair_id(hfctx *c, const spill_json *o, const char *jp, const char *key, int n_vocab, int *id) {
    char p[JP_MAX];
    jp_key(p, jp, key);
    const spill_json *v = spill_json_get(o, key);
    if (!v || v->type != SPILL_JSON_ARRAY || v->n != 2 || v->items[1].type != SPILL_JSON_NUMBER || !v->items[1].is_int ||
        v->items[1].integer < 0 || v->items[1].integer >= n_vocab)
        return bad(c, p, "must be [\"token\", id] with an id of the vocabulary%s", "");
    *id = (int)v->items[1].integer;
    return 0;
}

static int add_post(hfctx *c, const spill_json *o, const char *jp, int n_vocab, specials *sp) {
    const spill_json *ty = type_of(c, o, jp, "post-processor");
    if (!ty) return -1;
    const char *t = ty->str;
    specials mine = {0};
    if (!strcmp(t, "Sequence")) {
        const spill_json *seq;
        char p[JP_MAX];
        jp_key(p, jp, "processors");
        int rc = field(c, o, jp, "processors", SPILL_JSON_ARRAY, &seq);
        if (rc <= 0) return rc < 0 ? -1 : bad(c, p, "is missing%s", "");
        for (size_t i = 0; i < seq->n; i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            if (add_post(c, &seq->items[i], q, n_vocab, sp)) return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(t, "RobertaProcessing") || !strcmp(t, "BertProcessing")) {
        int cls = -1, sep = -1;
        if (pair_id(c, o, jp, "cls", n_vocab, &cls) || pair_id(c, o, jp, "sep", n_vocab, &sep)) return -1;
        mine.pre[mine.n_pre++] = cls;
        mine.suf[mine.n_suf++] = sep;
    } else if (!strcmp(t, "TemplateProcessing")) {
        const spill_json *single, *tokens;
        char p[JP_MAX];
        jp_key(p, jp, "single");
        int rc = field(c, o, jp, "single", SPILL_JSON_ARRAY, &single);
        if (rc <= 0) return rc < 0 ? -1 : bad(c, p, "is missing%s", "");
        if (field(c, o, jp, "special_tokens", SPILL_JSON_OBJECT, &tokens) < 0) return -1;
        int seen_seq = 0;
        for (size_t i = 0; i < single->n; i++) {
            char q[JP_MAX];
            jp_idx(q, p, i);
            const spill_json *it = &single->items[i], *st, *sq;
            if (it->type != SPILL_JSON_OBJECT) return bad(c, q, "must be an object%s", "");
            if ((sq = spill_json_get_type(it, "Sequence", SPILL_JSON_OBJECT))) {
                const spill_json *id = spill_json_get_type(sq, "id", SPILL_JSON_STRING);
                if (!id || strcmp(id->str, "A") || seen_seq) return bad(c, q, "a single sequence's template holds $A once%s", "");
                seen_seq = 1;
                continue;
            }
            st = spill_json_get_type(it, "SpecialToken", SPILL_JSON_OBJECT);
            const spill_json *name = st ? spill_json_get_type(st, "id", SPILL_JSON_STRING) : NULL;
            if (!name) return bad(c, q, "must be {\"SpecialToken\": {\"id\": ...}} or {\"Sequence\": {\"id\": \"A\"}}%s", "");
            const spill_json *def = tokens ? spill_json_get_type(tokens, name->str, SPILL_JSON_OBJECT) : NULL;
            const spill_json *ids = def ? spill_json_get_type(def, "ids", SPILL_JSON_ARRAY) : NULL;
            if (!ids) {
                char r[JP_MAX];
                jp_key(r, jp, "special_tokens");
                return bad(c, r, "has no ids for '%.64s'", name->str);
            }
            for (size_t k = 0; k < ids->n; k++) {
                const spill_json *x = &ids->items[k];
                if (x->type != SPILL_JSON_NUMBER || !x->is_int || x->integer < 0 || x->integer >= n_vocab)
                    return bad(c, q, "names a token id outside the vocabulary (%.64s)", name->str);
                if (seen_seq ? push_id(c, q, mine.suf, &mine.n_suf, (int)x->integer)
                             : push_id(c, q, mine.pre, &mine.n_pre, (int)x->integer))
                    return -1;
            }
        }
        if (!seen_seq) return bad(c, p, "has no {\"Sequence\": {\"id\": \"A\"}}%s", "");
    } else {
        return refuse_type(c, jp, t, "post-processor", "Sequence, TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing");
    }
    /* processors run in order, each around what the previous ones made */
    specials out = {0};
    for (int i = 0; i < mine.n_pre; i++)
        if (push_id(c, jp, out.pre, &out.n_pre, mine.pre[i])) return -1;
    for (int i = 0; i < sp->n_pre; i++)
        if (push_id(c, jp, out.pre, &out.n_pre, sp->pre[i])) return -1;
    for (int i = 0; i < sp->n_suf; i++)
        if (push_id(c, jp, out.suf, &out.n_suf, sp->suf[i])) return -1;
    for (int i = 0; i < mine.n_suf; i++)
        if (push_id(c, jp, out.suf, &out.n_suf, mine.suf[i])) return -1;
    *sp = out;
    return 0;
}

/* ---- the BPE model ---- */
static int load_model(hfctx *c, spill_tokenizer *t, const spill_json *model, const spill_json *added) {
    struct spill_tok_impl *im = t->impl;
    const spill_json *ty = type_of(c, model, "model", "model");
    if (!ty) return -1;
    if (strcmp(ty->str, "BPE"))
        return spill_err_set(c->err, "%s: model.type: '%.64s' is not a model spill implements (BPE is; Unigram, "
                                     "WordPiece and WordLevel are not)", c->file, ty->str);
    const spill_json *vocab, *merges, *v;
    if (field(c, model, "model", "vocab", SPILL_JSON_OBJECT, &vocab) <= 0)
        return vocab ? -1 : bad(c, "model.vocab", "is missing%s", "");
    if (field(c, model, "model", "merges", SPILL_JSON_ARRAY, &merges) <= 0)
        return merges ? -1 : bad(c, "model.merges", "is missing%s", "");
    int rc = field(c, model, "model", "dropout", SPILL_JSON_NUMBER, &v);
    if (rc < 0) return -1;
    if (rc == 1 && v->number != 0.0) return bad(c, "model.dropout", "is set: dropout makes encoding random; spill encodes as with none%s", "");
    const char *fields[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        rc = field(c, model, "model", fields[i], SPILL_JSON_STRING, &v);
        if (rc < 0) return -1;
        if (rc == 1 && v->len) {
            char p[JP_MAX];
            jp_key(p, "model", fields[i]);
            return bad(c, p, "'%.32s' is set; spill does not implement subword prefixes or suffixes", v->str);
        }
    }
    if (get_bool(c, model, "model", "byte_fallback", 0, &im->byte_fallback) ||
        get_bool(c, model, "model", "fuse_unk", 0, &im->fuse_unk) ||
        get_bool(c, model, "model", "ignore_merges", 0, &im->ignore_merges))
        return -1;

    /* ids: the vocabulary and the added tokens */
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->n; i++) {
        const spill_json *x = &vocab->items[i];
        if (x->type != SPILL_JSON_NUMBER || !x->is_int || x->integer < 0 || x->integer >= (1 << 24)) {
            char p[JP_MAX];
            snprintf(p, sizeof p, "model.vocab[\"%.64s\"]", vocab->keys[i]);
            return bad(c, p, "must be a token id (0..16777215)%s", "");
        }
        if (x->integer > max_id) max_id = x->integer;
    }
    for (size_t i = 0; added && i < added->n; i++) {
        char p[JP_MAX];
        jp_idx(p, "added_tokens", i);
        int64_t id = 0;
        if (added->items[i].type != SPILL_JSON_OBJECT) return bad(c, p, "must be an object%s", "");
        if (!spill_json_get(&added->items[i], "id")) return bad(c, p, "has no id%s", "");
        if (get_uint(c, &added->items[i], p, "id", 0, (1 << 24) - 1, &id) || !need_str(c, &added->items[i], p, "content"))
            return -1;
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return bad(c, "model.vocab", "is empty%s", "");
    t->kind = SPILL_TOK_BPE;
    t->n_vocab = (int)max_id + 1;
    spill_str *texts = calloc((size_t)t->n_vocab, sizeof *texts);
    im->added_only = calloc((size_t)t->n_vocab, 1);
    im->is_special = calloc((size_t)t->n_vocab, 1);
    if (!texts || !im->added_only || !im->is_special) {
        free(texts);
        return spill_err_set(c->err, "out of memory");
    }
    for (size_t i = 0; i < vocab->n; i++) {
        spill_str *tx = &texts[vocab->items[i].integer];
        if (tx->ptr) {
            free(texts);
            char p[JP_MAX];
            snprintf(p, sizeof p, "model.vocab[\"%.64s\"]", vocab->keys[i]);
            return bad(c, p, "has the id of another token%s", "");
        }
        *tx = (spill_str){vocab->keys[i], strlen(vocab->keys[i])};
    }
    for (size_t i = 0; added && i < added->n; i++) {
        const spill_json *ct = spill_json_get(&added->items[i], "content");
        int64_t id = spill_json_get(&added->items[i], "id")->integer;
        if (!texts[id].ptr) im->added_only[id] = 1;
        texts[id] = (spill_str){ct->str, ct->len};
    }
    rc = spill_tok_set_texts(t, texts, c->file, c->err);
    free(texts);
    if (rc) return -1;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        int id = spill_token_find(t, name, 6);
        im->byte_tok[b] = id >= 0 && !im->added_only[id] ? id : -1;
    }
    rc = field(c, model, "model", "unk_token", SPILL_JSON_STRING, &v);
    if (rc < 0) return -1;
    if (rc == 1 && (t->unk = spill_token_find(t, v->str, v->len)) < 0)
        return bad(c, "model.unk_token", "'%.64s' is not in the vocabulary", v->str);

    /* merges: "a b" or ["a", "b"]; both parts and their concatenation must be tokens */
    if (merges->n > (1u << 26)) return bad(c, "model.merges", "has more than 67108864 entries%s", "");
    if (spill_bpe_merges_alloc(t, merges->n)) return spill_err_set(c->err, "out of memory");
    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t r = 0; r < merges->n; r++) {
        const spill_json *m = &merges->items[r];
        const char *a, *b;
        size_t al, bl;
        char p[JP_MAX];
        jp_idx(p, "model.merges", r);
        if (m->type == SPILL_JSON_STRING) {
            const char *sp = memchr(m->str, ' ', m->len);
            if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp - m->str) - 1)) {
                free(cat);
                return bad(c, p, "'%.64s' is not two tokens separated by one space", m->str);
            }
            a = m->str, al = (size_t)(sp - m->str), b = sp + 1, bl = m->len - al - 1;
        } else if (m->type == SPILL_JSON_ARRAY && m->n == 2 && m->items[0].type == SPILL_JSON_STRING &&
                   m->items[1].type == SPILL_JSON_STRING) {
            a = m->items[0].str, al = m->items[0].len, b = m->items[1].str, bl = m->items[1].len;
        } else {
            free(cat);
            return bad(c, p, "is neither \"a b\" nor [\"a\", \"b\"]%s", "");
        }
        if (al + bl > cat_cap) {
            char *nc = realloc(cat, al + bl + 1);
            if (!nc) {
                free(cat);
                return spill_err_set(c->err, "out of memory");
            }
            cat = nc;
            cat_cap = al + bl + 1;
        }
        memcpy(cat, a, al);
        memcpy(cat + al, b, bl);
        int ia = spill_token_find(t, a, al), ib = spill_token_find(t, b, bl), ir = spill_token_find(t, cat, al + bl);
        if (ia < 0 || ib < 0 || ir < 0 || im->added_only[ia] || im->added_only[ib] || im->added_only[ir]) {
            free(cat);
            return bad(c, p, "merges tokens that are not all in model.vocab (%s)",
                       ia < 0 || im->added_only[ia] ? "the left one" : ib < 0 || im->added_only[ib] ? "the right one" : "their concatenation");
        }
        spill_bpe_merge_add(t, ia, ib, ir, (int)r, 1); /* a pair given twice keeps its last rank, as the library does */
    }
    free(cat);
    return 0;
}

/* added tokens: types, and the two sets matched before and after normalization */
static int load_added(hfctx *c, spill_tokenizer *t, const spill_json *added) {
    struct spill_tok_impl *im = t->impl;
    size_t n = added ? added->n : 0;
    spill_added_tok *raw = calloc(n + 1, sizeof *raw), *norm = calloc(n + 1, sizeof *norm);
    size_t owned = 0;
    for (size_t i = 0; i < n; i++) owned += spill_json_get(&added->items[i], "content")->len * 18 + 1;
    im->owned = malloc(owned + 1);
    im->dec_text = calloc((size_t)t->n_vocab, sizeof *im->dec_text);
    im->dec_len = calloc((size_t)t->n_vocab, sizeof *im->dec_len);
    if (!raw || !norm || !im->owned || !im->dec_text || !im->dec_len) {
        free(raw);
        free(norm);
        return spill_err_set(c->err, "out of memory");
    }
    int nr = 0, nn = 0, any_single_word = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const spill_json *a = &added->items[i];
        char p[JP_MAX];
        jp_idx(p, "added_tokens", i);
        int special, normalized, lstrip, rstrip, single_word;
        if (get_bool(c, a, p, "special", 0, &special) || get_bool(c, a, p, "lstrip", 0, &lstrip) ||
            get_bool(c, a, p, "rstrip", 0, &rstrip) || get_bool(c, a, p, "single_word", 0, &single_word))
            goto fail;
        if (get_bool(c, a, p, "normalized", !special, &normalized)) goto fail;
        const spill_json *ct = spill_json_get(a, "content");
        int id = (int)spill_json_get(a, "id")->integer;
        t->types[id] = special ? SPILL_TOKTYPE_CONTROL : SPILL_TOKTYPE_USER_DEFINED;
        im->is_special[id] = (unsigned char)special;
        any_single_word |= single_word;
        /* the text as the vocabulary keeps it: the JSON document goes away */
        spill_added_tok at = {id, spill_tok_text(t, id), t->text_len[id], (unsigned char)special, (unsigned char)normalized,
                              (unsigned char)lstrip, (unsigned char)rstrip, (unsigned char)single_word};
        if (!normalized) {
            raw[nr++] = at;
            continue;
        }
        if (spill_norm_count(im->norm)) { /* matched in normalized text, so normalized too */
            char *s;
            size_t sl;
            if (spill_norm_string(im->norm, ct->str, ct->len, &s, &sl, c->err)) goto fail;
            if (sl > ct->len * 18) sl = ct->len * 18; /* cannot happen: no character grows past 18 */
            memcpy(im->owned + o, s, sl);
            free(s);
            at.text = im->owned + o;
            at.len = sl;
            im->dec_text[id] = at.text;
            im->dec_len[id] = (uint32_t)sl;
            o += sl + 1;
        }
        norm[nn++] = at;
    }
    im->added_mode = SPILL_ADDED_LEFTMOST_LONGEST;
    spill_added_build(&im->added_raw, raw, nr);
    spill_added_build(&im->added_norm, norm, nn);
    if (any_single_word) {
        const char *w = "^[" RE_WORD_CLASS "]$";
        if (!(im->word_re = spill_regex_compile(w, strlen(w), 0, "the word class of single_word", c->err))) return -1;
    }
    return 0;
fail:
    free(raw);
    free(norm);
    return -1;
}

static int load_json(spill_tokenizer *t, const char *path, specials *sp, spill_err *err) {
    hfctx c = {path, err};
    spill_json *j = NULL;
    if (spill_tok_begin(t, SPILL_FLAVOR_HF, err)) return -1;
    struct spill_tok_impl *im = t->impl;
    im->repair = SPILL_UTF8_MAXIMAL;
    if (spill_json_parse_file(path, 512u << 20, &j, err)) goto fail;
    if (j->type != SPILL_JSON_OBJECT) {
        spill_err_set(err, "%s: the document is not a JSON object", path);
        goto fail;
    }
    const spill_json *model, *added, *o;
    if (field(&c, j, "", "model", SPILL_JSON_OBJECT, &model) <= 0) {
        if (!model) bad(&c, "model", "is missing%s", "");
        goto fail;
    }
    if (field(&c, j, "", "added_tokens", SPILL_JSON_ARRAY, &added) < 0) goto fail;
    /* the normalizer first: added tokens with normalized = true are matched in normalized form */
    if (!(im->norm = spill_norm_new()) || !(im->pre = spill_pretok_new()) || !(im->dec = spill_dec_new())) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    int rc = field(&c, j, "", "normalizer", SPILL_JSON_OBJECT, &o);
    if (rc < 0 || (rc == 1 && add_normalizer(&c, im->norm, o, "normalizer"))) goto fail;
    rc = field(&c, j, "", "pre_tokenizer", SPILL_JSON_OBJECT, &o);
    if (rc < 0 || (rc == 1 && add_pretok(&c, im->pre, o, "pre_tokenizer"))) goto fail;
    rc = field(&c, j, "", "decoder", SPILL_JSON_OBJECT, &o);
    if (rc < 0 || (rc == 1 && add_decoder(&c, im->dec, o, "decoder"))) goto fail;
    im->has_decoder = rc == 1;
    if (load_model(&c, t, model, added) || load_added(&c, t, added)) goto fail;
    rc = field(&c, j, "", "post_processor", SPILL_JSON_OBJECT, &o);
    if (rc < 0 || (rc == 1 && add_post(&c, o, "post_processor", t->n_vocab, sp))) goto fail;
    spill_json_free(j);
    return 0;
fail:
    spill_json_free(j);
    spill_tokenizer_free(t);
    return -1;
}

static void set_specials(spill_tokenizer *t, const specials *sp) {
    struct spill_tok_impl *im = t->impl;
    memcpy(im->prefix, sp->pre, sizeof sp->pre);
    memcpy(im->suffix, sp->suf, sizeof sp->suf);
    im->n_prefix = sp->n_pre;
    im->n_suffix = sp->n_suf;
    if (t->bos < 0 && im->n_prefix > 0) t->bos = im->prefix[0];
    t->add_bos = im->n_prefix > 0 && im->prefix[0] == t->bos;
    t->add_eos = im->n_suffix > 0 && im->suffix[im->n_suffix - 1] == t->eos;
}

int spill_tokenizer_init_json(spill_tokenizer *t, const char *path, spill_err *err) {
    specials sp = {0};
    if (load_json(t, path, &sp, err)) return -1;
    set_specials(t, &sp);
    spill_tok_find_eot(t);
    return 0;
}

/* a token named in tokenizer_config.json: "text" or {"content": "text"}; -1 when absent */
static int config_token(const spill_tokenizer *t, const spill_json *cfg, const char *key, const char *path,
                        spill_err *err) {
    const spill_json *v = spill_json_get(cfg, key);
    if (!v || v->type == SPILL_JSON_NULL) return -1;
    if (v->type == SPILL_JSON_OBJECT) v = spill_json_get_type(v, "content", SPILL_JSON_STRING);
    if (!v || v->type != SPILL_JSON_STRING)
        return spill_err_set(err, "%s: %s must be a token text or {\"content\": text}", path, key), -2;
    int id = spill_token_find(t, v->str, v->len);
    if (id < 0) return spill_err_set(err, "%s: %s '%.64s' is not a token of tokenizer.json", path, key, v->str), -2;
    return id;
}

int spill_tokenizer_init_hf(spill_tokenizer *t, const char *dir, spill_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    specials sp = {0};
    spill_json *cfg = NULL, *gen = NULL;
    if (load_json(t, path, &sp, err)) return -1;
    /* bos/eos: tokenizer_config.json; BOS/EOS added: the post-processor, else add_bos_token/add_eos_token */
    int add_bos = 0, add_eos = 0;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (!access(path, R_OK)) {
        if (spill_json_parse_file(path, 64 << 20, &cfg, err)) goto fail;
        if (cfg->type != SPILL_JSON_OBJECT) {
            spill_err_set(err, "%s: the document is not a JSON object", path);
            goto fail;
        }
        if ((t->bos = config_token(t, cfg, "bos_token", path, err)) == -2) goto fail;
        if ((t->eos = config_token(t, cfg, "eos_token", path, err)) == -2) goto fail;
        hfctx c = {path, err};
        if (get_bool(&c, cfg, "", "add_bos_token", 0, &add_bos) || get_bool(&c, cfg, "", "add_eos_token", 0, &add_eos))
            goto fail;
    }
    if (sp.n_pre == 0 && sp.n_suf == 0) {
        if (add_bos && t->bos >= 0) sp.pre[sp.n_pre++] = t->bos;
        if (add_eos && t->eos >= 0) sp.suf[sp.n_suf++] = t->eos;
    }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if (!access(path, R_OK)) {
        if (spill_json_parse_file(path, 1 << 20, &gen, err)) goto fail;
        const spill_json *e = gen->type == SPILL_JSON_OBJECT ? spill_json_get(gen, "eos_token_id") : NULL;
        int k = 0;
        const spill_json *one = e && e->type == SPILL_JSON_NUMBER ? e : NULL;
        for (size_t i = 0; e && (one ? i < 1 : e->type == SPILL_JSON_ARRAY && i < e->n) && k < 8; i++) {
            const spill_json *x = one ? one : &e->items[i];
            if (x->type != SPILL_JSON_NUMBER || !x->is_int || x->integer < 0 || x->integer >= t->n_vocab) {
                spill_err_set(err, "%s: eos_token_id %s is not a token id of this vocabulary (0..%d)", path,
                              x->type == SPILL_JSON_NUMBER ? "value" : "entry", t->n_vocab - 1);
                goto fail;
            }
            if (t->eos < 0) t->eos = (int)x->integer;
            else if (x->integer != t->eos) t->eog_extra[k++] = (int)x->integer;
        }
    }
    set_specials(t, &sp);
    spill_tok_find_eot(t);
    spill_json_free(cfg);
    spill_json_free(gen);
    return 0;
fail:
    spill_json_free(cfg);
    spill_json_free(gen);
    spill_tokenizer_free(t);
    return -1;
}
