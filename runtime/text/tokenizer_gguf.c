/* Tokenizers from GGUF metadata (tokenizer.ggml.*), with llama.cpp's meaning:
 *  - model "llama": SentencePiece-style score merges, <0xXX> byte fallback, a space in front of
 *    each text fragment (add_space_prefix), BOS by default;
 *  - model "gpt2": byte-level BPE whose pre-tokenizer is named by tokenizer.ggml.pre. Each known
 *    type stands for the pre-tokenizer of the tokenizer.json the converter read (the splits below,
 *    then the byte-level map) and for llama.cpp's flags: ignore_merges, BOS by default, tidying
 *    spaces when detokenizing. An unknown type is refused, naming it and the known ones.
 * tokenizer.ggml.add_bos_token / add_eos_token override the defaults. */
#include "tok_internal.h"

/* The patterns of the tokenizer.json files (written with \x{} escapes where they are not ASCII) */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3                                                                                         \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                      \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_TEKKEN                                                                                       \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"         \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}|" \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
/* DeepSeek-LLM's cased letters */
#define RE_DEEPSEEK_LETTERS                                                                                        \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"             \
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}"     \
    "\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"         \
    "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-"        \
    "\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}"         \
    "\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}"         \
    "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}"         \
    "\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}"          \
    "\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-"         \
    "\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}" \
    "\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-"       \
    "\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"       \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}"        \
    "\\x{1E900}-\\x{1E943}]+"
#define RE_CJK "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"

static const char *const rules_gpt2[] = {RE_GPT2, NULL};
static const char *const rules_llama3[] = {RE_LLAMA3, NULL};
static const char *const rules_qwen2[] = {RE_QWEN2, NULL};
static const char *const rules_tekken[] = {RE_TEKKEN, NULL};
static const char *const rules_digits_gpt2[] = {"\\p{N}", RE_GPT2, NULL};
static const char *const rules_deepseek_llm[] = {
    "[\\r\\n]", RE_DEEPSEEK_LETTERS, "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    "\\s+$", RE_CJK, "\\p{N}+", NULL};
static const char *const rules_deepseek_coder[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK, "\\p{N}", NULL};
static const char *const rules_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]", NULL};
/* llama.cpp's own rules for a BPE file that names no type (converted before types existed) */
static const char *const rules_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]", NULL};

typedef struct gguf_pre_type {
    const char *name;
    const char *const *splits; /* Split patterns (Isolated) run in order, then the byte-level map */
    unsigned char ignore_merges, add_bos, clean_spaces;
} gguf_pre_type;

/* the types of the Llama and Qwen2 families, named as convert_hf_to_gguf.py names them (plus
 * "gpt2", the name spill used to accept) */
static const gguf_pre_type pre_types[] = {
    {"default", rules_default, 0, 0, 1},
    {"llama-bpe", rules_llama3, 1, 1, 1},
    {"llama3", rules_llama3, 1, 1, 1},
    {"llama-v3", rules_llama3, 1, 1, 1},
    {"falcon3", rules_llama3, 1, 1, 1},
    {"pixtral", rules_llama3, 1, 1, 1},
    {"smaug-bpe", rules_llama3, 0, 0, 1},
    {"dbrx", rules_llama3, 0, 0, 1},
    {"gpt-2", rules_gpt2, 0, 0, 1},
    {"gpt2", rules_gpt2, 0, 0, 1},
    {"qwen2", rules_qwen2, 0, 0, 0},
    {"deepseek-r1-qwen", rules_qwen2, 0, 0, 0},
    {"megrez", rules_qwen2, 0, 0, 1},
    {"smollm", rules_digits_gpt2, 0, 0, 0},
    {"starcoder", rules_digits_gpt2, 0, 0, 1},
    {"refact", rules_digits_gpt2, 0, 0, 1},
    {"deepseek-llm", rules_deepseek_llm, 0, 0, 0},
    {"deepseek-coder", rules_deepseek_coder, 0, 0, 0},
    {"tekken", rules_tekken, 1, 1, 0},
    {"falcon", rules_falcon, 0, 0, 1},
};

const char *spill_tokenizer_pre_types(void) {
    static char buf[512];
    if (!buf[0]) {
        size_t o = 0;
        for (size_t i = 0; i < sizeof pre_types / sizeof *pre_types; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? ", " : "", pre_types[i].name);
    }
    return buf;
}

static const gguf_pre_type *find_pre(const char *s, size_t n) {
    for (size_t i = 0; i < sizeof pre_types / sizeof *pre_types; i++)
        if (strlen(pre_types[i].name) == n && !memcmp(pre_types[i].name, s, n)) return &pre_types[i];
    return NULL;
}

static int build_pretok(spill_tokenizer *t, const gguf_pre_type *pt, const char *path, spill_err *err) {
    struct spill_tok_impl *im = t->impl;
    if (!(im->pre = spill_pretok_new())) return spill_err_set(err, "out of memory");
    for (int i = 0; pt->splits[i]; i++) {
        char what[160];
        snprintf(what, sizeof what, "%s: pre-tokenizer type '%s', pattern %d", path, pt->name, i);
        spill_regex *re = spill_regex_compile(pt->splits[i], strlen(pt->splits[i]), 0, what, err);
        if (!re) return -1;
        if (spill_pretok_add_split(im->pre, re, SPILL_SPLIT_ISOLATED, 0)) return spill_err_set(err, "out of memory");
    }
    return spill_pretok_add_bytelevel(im->pre, 0, 0, err);
}

/* special tokens: split out before anything else (control and unknown ones only with parse_special) */
static int build_added(spill_tokenizer *t) {
    struct spill_tok_impl *im = t->impl;
    int n = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        int ty = t->types[id];
        n += ty == SPILL_TOKTYPE_CONTROL || ty == SPILL_TOKTYPE_USER_DEFINED || ty == SPILL_TOKTYPE_UNKNOWN;
    }
    spill_added_tok *a = calloc((size_t)(n ? n : 1), sizeof *a);
    if (!a) return -1;
    int k = 0;
    for (int id = 0; id < t->n_vocab; id++) {
        int ty = t->types[id];
        if (ty != SPILL_TOKTYPE_CONTROL && ty != SPILL_TOKTYPE_USER_DEFINED && ty != SPILL_TOKTYPE_UNKNOWN) continue;
        a[k++] = (spill_added_tok){.id = id, .text = spill_tok_text(t, id), .len = t->text_len[id],
                                   .special = ty != SPILL_TOKTYPE_USER_DEFINED};
    }
    im->added_mode = SPILL_ADDED_LONGEST_FIRST;
    return spill_added_build(&im->added_raw, a, k);
}

static int get_id(const spill_gguf *g, const char *key, int *id, int n_vocab, spill_err *err) {
    uint32_t v;
    int rc = spill_gguf_get_u32(g, key, &v, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    if (v >= (uint32_t)n_vocab)
        return spill_err_set(err, "%s: %s = %u is outside the vocabulary of %d tokens", g->path, key, v, n_vocab);
    *id = (int)v;
    return 0;
}

int spill_tokenizer_init(spill_tokenizer *t, const spill_gguf *g, spill_err *err) {
    return spill_tokenizer_init_pre(t, g, NULL, err);
}

int spill_tokenizer_init_pre(spill_tokenizer *t, const spill_gguf *g, const char *force_pre, spill_err *err) {
    if (spill_tok_begin(t, SPILL_FLAVOR_GGUF, err)) return -1;
    struct spill_tok_impl *im = t->impl;
    spill_str model;
    int rc = spill_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc < 0) goto fail;
    if (rc == 1) {
        spill_err_set(err, "%s: no tokenizer (metadata 'tokenizer.ggml.model' is missing)", g->path);
        goto fail;
    }
    if (spill_str_eq(model, "llama")) t->kind = SPILL_TOK_SPM;
    else if (spill_str_eq(model, "gpt2")) t->kind = SPILL_TOK_BPE;
    else {
        spill_err_set(err, "%s: tokenizer.ggml.model '%.*s' is not supported (llama and gpt2 are)", g->path,
                      (int)(model.len > 64 ? 64 : model.len), model.ptr);
        goto fail;
    }

    const spill_gguf_kv *tokens;
    rc = spill_gguf_get_arr(g, "tokenizer.ggml.tokens", SPILL_GGUF_STRING, &tokens, err);
    if (rc < 0) goto fail;
    if (rc == 1) {
        spill_err_set(err, "%s: metadata 'tokenizer.ggml.tokens' is missing", g->path);
        goto fail;
    }
    if (tokens->arr_count == 0 || tokens->arr_count > (1u << 24)) {
        spill_err_set(err, "%s: tokenizer.ggml.tokens has %llu entries; 1..16777216 are allowed", g->path,
                      (unsigned long long)tokens->arr_count);
        goto fail;
    }
    t->n_vocab = (int)tokens->arr_count;
    spill_str *texts = malloc(sizeof *texts * (size_t)t->n_vocab);
    if (!texts) goto oom;
    spill_gguf_arr_strings(tokens, texts);
    rc = spill_tok_set_texts(t, texts, g->path, err);
    free(texts);
    if (rc) goto fail;

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

    const gguf_pre_type *pre = NULL;
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
            im->byte_tok[b] = spill_token_find(t, name, 6);
        }
        /* the text's bytes are kept as they are: invalid UTF-8 becomes byte tokens */
        im->repair = SPILL_UTF8_KEEP;
        im->add_space_prefix = 1;
        t->add_bos = 1;
        t->bos = 1 < t->n_vocab ? 1 : -1;
        t->eos = 2 < t->n_vocab ? 2 : -1;
        t->unk = 0;
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
        if (arr->arr_count > INT32_MAX || spill_bpe_merges_alloc(t, arr->arr_count)) {
            free(ms);
            goto oom;
        }
        for (uint64_t r = 0; r < arr->arr_count; r++) {
            /* "left right", split at the first space after the first byte (a side may be a lone space-char) */
            const char *sp = ms[r].len > 1 ? memchr(ms[r].ptr + 1, ' ', ms[r].len - 1) : NULL;
            if (!sp) {
                spill_err_set(err, "%s: tokenizer.ggml.merges entry %llu ('%.*s') is not two tokens separated by a space",
                              g->path, (unsigned long long)r, (int)(ms[r].len > 64 ? 64 : ms[r].len), ms[r].ptr);
                free(ms);
                goto fail;
            }
            size_t ll = (size_t)(sp - ms[r].ptr), rl = ms[r].len - ll - 1;
            int a = spill_token_find(t, ms[r].ptr, ll), b = spill_token_find(t, sp + 1, rl);
            char *cat = malloc(ll + rl + 1);
            if (!cat) {
                free(ms);
                goto oom;
            }
            memcpy(cat, ms[r].ptr, ll);
            memcpy(cat + ll, sp + 1, rl);
            int res = spill_token_find(t, cat, ll + rl);
            free(cat);
            /* a merge whose parts or result are not tokens can never apply */
            if (a >= 0 && b >= 0 && res >= 0) spill_bpe_merge_add(t, a, b, res, (int)r, 0);
        }
        free(ms);

        spill_str pre_name = {0};
        if (force_pre) {
            pre_name = (spill_str){force_pre, strlen(force_pre)};
        } else {
            rc = spill_gguf_get_str(g, "tokenizer.ggml.pre", &pre_name, err);
            if (rc < 0) goto fail;
            if (rc == 1) {
                fprintf(stderr, "spill: %s: tokenizer.ggml.pre is missing (a file converted before pre-tokenizer types "
                                "existed); using llama.cpp's 'default' rules, which may not be the model's\n", g->path);
                pre_name = (spill_str){"default", 7};
            }
        }
        pre = find_pre(pre_name.ptr, pre_name.len);
        if (!pre) {
            spill_err_set(err, "%s: %s '%.*s' is not a pre-tokenizer type spill knows (%s); its splitting rules "
                               "decide the ids, so it is refused rather than guessed (--tokenizer-pre TYPE or "
                               "SPILL_TOKENIZER_PRE forces one of the known types)",
                          g->path, force_pre ? "the forced pre-tokenizer type" : "tokenizer.ggml.pre",
                          (int)(pre_name.len > 64 ? 64 : pre_name.len), pre_name.ptr, spill_tokenizer_pre_types());
            goto fail;
        }
        if (build_pretok(t, pre, g->path, err)) goto fail;
        im->repair = SPILL_UTF8_PER_BYTE;
        im->ignore_merges = pre->ignore_merges;
        im->clean_spaces = pre->clean_spaces;
        t->add_bos = pre->add_bos;
    }

    /* special ids; absent ones keep the defaults of the model kind */
    if (get_id(g, "tokenizer.ggml.bos_token_id", &t->bos, t->n_vocab, err) ||
        get_id(g, "tokenizer.ggml.eos_token_id", &t->eos, t->n_vocab, err) ||
        get_id(g, "tokenizer.ggml.eot_token_id", &t->eot, t->n_vocab, err) ||
        get_id(g, "tokenizer.ggml.unknown_token_id", &t->unk, t->n_vocab, err))
        goto fail;
    int b;
    if ((rc = spill_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, err)) < 0) goto fail;
    if (rc == 0) t->add_bos = b;
    if ((rc = spill_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, err)) < 0) goto fail;
    if (rc == 0) t->add_eos = b;
    if (t->add_bos && t->bos < 0) {
        spill_err_set(err, "%s: a BOS token is to be added (%s) but tokenizer.ggml.bos_token_id is missing", g->path,
                      pre ? "the default of its pre-tokenizer type" : "tokenizer.ggml.add_bos_token");
        goto fail;
    }
    if (t->add_eos && t->eos < 0) {
        spill_err_set(err, "%s: tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing", g->path);
        goto fail;
    }
    if (t->add_bos) im->prefix[im->n_prefix++] = t->bos;
    if (t->add_eos) im->suffix[im->n_suffix++] = t->eos;
    if (t->kind == SPILL_TOK_SPM) {
        if ((rc = spill_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, err)) < 0) goto fail;
        if (rc == 0) im->add_space_prefix = b;
    }
    if (t->eot < 0) spill_tok_find_eot(t);
    if (build_added(t)) goto oom;
    return 0;
oom:
    spill_err_set(err, "%s: out of memory building the tokenizer", g->path);
fail:
    spill_tokenizer_free(t);
    return -1;
}
