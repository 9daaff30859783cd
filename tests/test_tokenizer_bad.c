/* Hostile tokenizer input: broken tokenizer.json files (wrong types, unknown types, out-of-range ids,
 * bad patterns, deep nesting, bad UTF-8), broken config files and GGUF tokenizer metadata are
 * refused with a message naming the file and the JSON path or key; random bytes as text never
 * fail or crash; a long text stays fast. Run under ASan it also checks that nothing leaks. */
#include <time.h>

#include "tok_fixtures.h"

static char dir[] = "/tmp/spill-tokbad-XXXXXX";

static int setup(void **s) {
    (void)s;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s) {
    (void)s;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) ? -1 : 0;
}

static const char *write_file(const char *name, const char *text, size_t n) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
    return path;
}

#define ADDED "[{\"id\":0,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}]"
#define PRE "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"
#define MODEL "{\"type\":\"BPE\",\"vocab\":{\"<s>\":0,\"a\":1,\"b\":2,\"ab\":3,\"\\u0120\":4},\"merges\":[\"a b\"]}"
#define DOC(added, norm, pre, post, dec, model)                                                                  \
    "{\"version\":\"1.0\",\"added_tokens\":" added ",\"normalizer\":" norm ",\"pre_tokenizer\":" pre \
    ",\"post_processor\":" post ",\"decoder\":" dec ",\"model\":" model "}"
#define WITH_MODEL(m) DOC(ADDED, "null", PRE, "null", "null", m)
#define WITH_PRE(p) DOC(ADDED, "null", p, "null", "null", MODEL)
#define WITH_NORM(n) DOC(ADDED, n, PRE, "null", "null", MODEL)
#define WITH_DEC(d) DOC(ADDED, "null", PRE, "null", d, MODEL)
#define WITH_POST(p) DOC(ADDED, "null", PRE, p, "null", MODEL)
#define WITH_ADDED(a) DOC(a, "null", PRE, "null", "null", MODEL)

static const struct {
    const char *doc, *want; /* the message must name this (after the file name) */
} cases[] = {
    {"{", "tokenizer.json"},
    {"[]", "not a JSON object"},
    {"{\"version\":\"1.0\"}", "model: is missing"},
    {WITH_MODEL("\"BPE\""), "model: is a string where an object is expected"},
    {WITH_MODEL("{\"type\":\"Unigram\",\"vocab\":[]}"), "model.type: 'Unigram' is not a model"},
    {WITH_MODEL("{\"type\":\"WordPiece\",\"vocab\":{}}"), "model.type: 'WordPiece'"},
    {WITH_MODEL("{\"vocab\":{},\"merges\":[]}"), "model.type: is missing"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}"), "model.vocab[\"a\"]: must be a token id"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":99999999999},\"merges\":[]}"), "model.vocab[\"a\"]"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}"), "model.vocab[\"a\"]"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}"), "model.vocab[\"a\"]"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":1},\"merges\":[]}"), "has the id of another token"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1},\"merges\":{}}"), "model.merges: is an object where an array"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1},\"merges\":[7]}"), "model.merges[0]: is neither"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":2,\"ab\":3},\"merges\":[\"a b c\"]}"), "model.merges[0]"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":2,\"ab\":3},\"merges\":[\"ab\"]}"), "model.merges[0]"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":2,\"ab\":3},\"merges\":[\"a b\",\"a zz\"]}"),
     "model.merges[1]: merges tokens that are not all in model.vocab (the right one)"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1,\"b\":2},\"merges\":[[\"a\",\"b\"]]}"), "(their concatenation)"},
    {WITH_MODEL("{\"type\":\"BPE\",\"vocab\":{\"a\":1},\"merges\":[[\"a\"]]}"), "model.merges[0]"},
    {WITH_MODEL("{\"type\":\"BPE\",\"dropout\":0.5,\"vocab\":{\"a\":1},\"merges\":[]}"), "model.dropout"},
    {WITH_MODEL("{\"type\":\"BPE\",\"continuing_subword_prefix\":\"##\",\"vocab\":{\"a\":1},\"merges\":[]}"),
     "model.continuing_subword_prefix"},
    {WITH_MODEL("{\"type\":\"BPE\",\"byte_fallback\":\"yes\",\"vocab\":{\"a\":1},\"merges\":[]}"),
     "model.byte_fallback: is a string where a boolean"},
    {WITH_MODEL("{\"type\":\"BPE\",\"unk_token\":\"<nope>\",\"vocab\":{\"a\":1},\"merges\":[]}"), "model.unk_token"},
    {DOC("[]", "null", PRE, "null", "null", "{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}"), "model.vocab: is empty"},
    {WITH_ADDED("[{\"id\":-1,\"content\":\"x\"}]"), "added_tokens[0].id"},
    {WITH_ADDED("[{\"id\":16777216,\"content\":\"x\"}]"), "added_tokens[0].id"},
    {WITH_ADDED("[{\"content\":\"x\"}]"), "added_tokens[0]: has no id"},
    {WITH_ADDED("[{\"id\":5,\"content\":5}]"), "added_tokens[0].content: is a number"},
    {WITH_ADDED("[{\"id\":5}]"), "added_tokens[0].content: is missing"},
    {WITH_ADDED("[\"x\"]"), "added_tokens[0]: must be an object"},
    {WITH_ADDED("3"), "added_tokens: is a number"},
    {WITH_ADDED("[{\"id\":5,\"content\":\"x\",\"special\":1}]"), "added_tokens[0].special"},
    {WITH_PRE("{\"type\":\"UnicodeScripts\"}"), "pre_tokenizer.type: 'UnicodeScripts' is not a pre-tokenizer"},
    {WITH_PRE("{\"type\":\"Sequence\",\"pretokenizers\":[" PRE ",{\"type\":\"BertPreTokenizer\"}]}"),
     "pre_tokenizer.pretokenizers[1].type: 'BertPreTokenizer'"},
    {WITH_PRE("{\"type\":\"Sequence\"}"), "pre_tokenizer.pretokenizers: is missing"},
    {WITH_PRE("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},\"behavior\":\"Isolated\",\"invert\":false}"),
     "pre_tokenizer.pattern.Regex: the regular expression does not compile"},
    {WITH_PRE("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"invert\":false}"), "pre_tokenizer.behavior: is missing"},
    {WITH_PRE("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},\"behavior\":\"Sideways\"}"), "pre_tokenizer.behavior: 'Sideways'"},
    {WITH_PRE("{\"type\":\"Split\",\"pattern\":{\"Other\":\"a\"},\"behavior\":\"Isolated\"}"), "pre_tokenizer.pattern: must hold"},
    {WITH_PRE("{\"type\":\"Split\",\"behavior\":\"Isolated\"}"), "pre_tokenizer.pattern: is missing"},
    {WITH_PRE("{\"type\":\"Metaspace\",\"replacement\":\"ab\"}"), "pre_tokenizer.replacement: must be one character"},
    {WITH_PRE("{\"type\":\"Metaspace\",\"prepend_scheme\":\"sometimes\"}"), "pre_tokenizer.prepend_scheme: 'sometimes'"},
    {WITH_PRE("{\"type\":\"Metaspace\",\"add_prefix_space\":false,\"prepend_scheme\":\"always\"}"),
     "pre_tokenizer.add_prefix_space: false does not agree"},
    {WITH_PRE("{\"type\":\"Digits\",\"individual_digits\":\"yes\"}"), "pre_tokenizer.individual_digits"},
    {WITH_PRE("7"), "pre_tokenizer: is a number where an object"},
    {WITH_PRE("{}"), "pre_tokenizer.type: is missing"},
    {WITH_NORM("{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"\"}"), "normalizer.type: 'Precompiled' is not a normalizer"},
    {WITH_NORM("{\"type\":\"Sequence\"}"), "normalizer.normalizers: is missing"},
    {WITH_NORM("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"}}]}"),
     "normalizer.normalizers[1].content: is missing"},
    {WITH_NORM("{\"type\":\"Prepend\",\"prepend\":3}"), "normalizer.prepend: is a number"},
    {WITH_NORM("{\"type\":\"Strip\",\"strip_left\":0}"), "normalizer.strip_left"},
    {WITH_DEC("{\"type\":\"WordPiece\",\"prefix\":\"##\"}"), "decoder.type: 'WordPiece' is not a decoder"},
    {WITH_DEC("{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0}"), "decoder.start: must be an integer"},
    {WITH_DEC("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},5]}"), "decoder.decoders[1]: must be an object"},
    {WITH_DEC("{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[\"},\"content\":\"\"}"), "decoder.pattern.Regex"},
    {WITH_POST("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}}],"
               "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[0],\"tokens\":[\"<s>\"]}}}"),
     "post_processor.single: has no {\"Sequence\""},
    {WITH_POST("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
               "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[999],"
               "\"tokens\":[\"<s>\"]}}}"),
     "post_processor.single[0]: names a token id outside the vocabulary"},
    {WITH_POST("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<x>\",\"type_id\":0}},"
               "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{}}"),
     "post_processor.special_tokens: has no ids for '<x>'"},
    {WITH_POST("{\"type\":\"TemplateProcessing\",\"single\":[{\"Sequence\":{\"id\":\"B\",\"type_id\":0}}]}"),
     "post_processor.single[0]"},
    {WITH_POST("{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
               "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":"
               "[0,0,0,0,0,0,0,0,0],\"tokens\":[]}}}"),
     "adds more than 8 tokens"},
    {WITH_POST("{\"type\":\"RobertaProcessing\",\"cls\":[\"<s>\",0]}"), "post_processor.sep: must be"},
    {WITH_POST("{\"type\":\"BertProcessing\",\"sep\":[\"<s>\",0],\"cls\":[\"x\",99]}"), "post_processor.cls: must be"},
    {WITH_POST("{\"type\":\"Foo\"}"), "post_processor.type: 'Foo' is not a post-processor"},
};

static void test_bad_json(void **s) {
    (void)s;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *path = write_file("tokenizer.json", cases[i].doc, strlen(cases[i].doc));
        spill_tokenizer t;
        spill_err err = {{0}};
        int rc = spill_tokenizer_init_json(&t, path, &err);
        if (rc == 0 || !strstr(err.msg, cases[i].want) || !strstr(err.msg, "tokenizer.json")) {
            fprintf(stderr, "case %zu: %s\n  got: %s\n  wanted a message with: %s\n", i, cases[i].doc,
                    rc ? err.msg : "(accepted)", cases[i].want);
            if (rc == 0) spill_tokenizer_free(&t);
            fail();
        }
        assert_null(t.impl);
    }
    printf("%zu broken tokenizer.json files refused with the file and the JSON path named\n", sizeof cases / sizeof *cases);
    /* the base document itself loads */
    const char *ok = WITH_MODEL(MODEL);
    spill_tokenizer t;
    spill_err err = {{0}};
    if (spill_tokenizer_init_json(&t, write_file("tokenizer.json", ok, strlen(ok)), &err)) fail_msg("%s", err.msg);
    spill_tokenizer_free(&t);
}

static void test_deep_and_bad_bytes(void **s) {
    (void)s;
    spill_tokenizer t;
    spill_err err = {{0}};
    /* 300 nested Sequences */
    char *deep = malloc(20000);
    size_t o = 0;
    o += (size_t)sprintf(deep + o, "{\"model\":" MODEL ",\"pre_tokenizer\":");
    for (int i = 0; i < 300; i++) o += (size_t)sprintf(deep + o, "{\"type\":\"Sequence\",\"pretokenizers\":[");
    o += (size_t)sprintf(deep + o, PRE);
    for (int i = 0; i < 300; i++) o += (size_t)sprintf(deep + o, "]}");
    o += (size_t)sprintf(deep + o, "}");
    assert_int_equal(spill_tokenizer_init_json(&t, write_file("tokenizer.json", deep, o), &err), -1);
    assert_non_null(strstr(err.msg, "nested deeper"));
    free(deep);
    /* invalid UTF-8 inside a JSON string */
    const char bad[] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\xff\":1},\"merges\":[]}}";
    assert_int_equal(spill_tokenizer_init_json(&t, write_file("tokenizer.json", bad, sizeof bad - 1), &err), -1);
    assert_non_null(strstr(err.msg, "UTF-8"));
    /* no file */
    assert_int_equal(spill_tokenizer_init_json(&t, "/nonexistent/tokenizer.json", &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/tokenizer.json"));
}

static void test_bad_configs(void **s) {
    (void)s;
    const char *tj = WITH_MODEL(MODEL);
    write_file("tokenizer.json", tj, strlen(tj));
    struct { const char *file, *doc, *want; } cfgs[] = {
        {"tokenizer_config.json", "{\"bos_token\":\"<nope>\"}", "bos_token '<nope>' is not a token"},
        {"tokenizer_config.json", "{\"eos_token\":5}", "eos_token must be a token text"},
        {"tokenizer_config.json", "{\"add_bos_token\":\"yes\"}", "add_bos_token: is a string where a boolean"},
        {"tokenizer_config.json", "[1]", "not a JSON object"},
        {"generation_config.json", "{\"eos_token_id\":[1,99999]}", "eos_token_id value is not a token id"},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
        char other[600];
        snprintf(other, sizeof other, "%s/%s", dir, i == 4 ? "tokenizer_config.json" : "generation_config.json");
        unlink(other);
        write_file(cfgs[i].file, cfgs[i].doc, strlen(cfgs[i].doc));
        spill_tokenizer t;
        spill_err err = {{0}};
        int rc = spill_tokenizer_init_hf(&t, dir, &err);
        if (rc == 0 || !strstr(err.msg, cfgs[i].want) || !strstr(err.msg, cfgs[i].file)) {
            fprintf(stderr, "config %zu: got %s\n", i, rc ? err.msg : "(accepted)");
            if (rc == 0) spill_tokenizer_free(&t);
            fail();
        }
        char p[600];
        snprintf(p, sizeof p, "%s/%s", dir, cfgs[i].file);
        unlink(p);
    }
}

/* ---- a GGUF writer for tokenizer metadata alone ---- */
typedef struct { char *b; size_t n, cap; uint64_t n_kv; } gbuf;
static void gput(gbuf *g, const void *p, size_t n) {
    if (g->n + n > g->cap) g->b = realloc(g->b, g->cap = (g->n + n) * 2 + 64);
    memcpy(g->b + g->n, p, n);
    g->n += n;
}
static void gstr(gbuf *g, const char *s) {
    uint64_t l = strlen(s);
    gput(g, &l, 8);
    gput(g, s, l);
}
static void kv_str(gbuf *g, const char *k, const char *v) {
    uint32_t ty = SPILL_GGUF_STRING;
    gstr(g, k), gput(g, &ty, 4), gstr(g, v), g->n_kv++;
}
static void kv_u32(gbuf *g, const char *k, uint32_t v) {
    uint32_t ty = SPILL_GGUF_U32;
    gstr(g, k), gput(g, &ty, 4), gput(g, &v, 4), g->n_kv++;
}
static void kv_bool(gbuf *g, const char *k, int v) {
    uint32_t ty = SPILL_GGUF_BOOL;
    uint8_t b = (uint8_t)v;
    gstr(g, k), gput(g, &ty, 4), gput(g, &b, 1), g->n_kv++;
}
static void kv_strs(gbuf *g, const char *k, const char *const *v, uint64_t n) {
    uint32_t ty = SPILL_GGUF_ARRAY, et = SPILL_GGUF_STRING;
    gstr(g, k), gput(g, &ty, 4), gput(g, &et, 4), gput(g, &n, 8);
    for (uint64_t i = 0; i < n; i++) gstr(g, v[i]);
    g->n_kv++;
}
static void kv_i32s(gbuf *g, const char *k, const int32_t *v, uint64_t n) {
    uint32_t ty = SPILL_GGUF_ARRAY, et = SPILL_GGUF_I32;
    gstr(g, k), gput(g, &ty, 4), gput(g, &et, 4), gput(g, &n, 8), gput(g, v, 4 * n), g->n_kv++;
}
static const char *gguf_write(gbuf *kvs) {
    gbuf out = {0};
    uint32_t magic = 0x46554747, version = 3;
    uint64_t n_tensors = 0;
    gput(&out, &magic, 4), gput(&out, &version, 4), gput(&out, &n_tensors, 8), gput(&out, &kvs->n_kv, 8);
    gput(&out, kvs->b, kvs->n);
    const char *p = write_file("t.gguf", out.b, out.n);
    free(out.b);
    free(kvs->b);
    memset(kvs, 0, sizeof *kvs);
    return p;
}

static const char *const toks[] = {"<s>", "a", "b", "ab", "\xC4\xA0"};
static const int32_t types[] = {3, 1, 1, 1, 1};

static int gguf_try(gbuf *kvs, spill_err *err) {
    const char *path = gguf_write(kvs);
    spill_gguf g;
    if (spill_gguf_open(&g, path, err)) return -2;
    spill_tokenizer t;
    int rc = spill_tokenizer_init(&t, &g, err);
    if (rc == 0) spill_tokenizer_free(&t);
    else assert_null(t.impl);
    spill_gguf_close(&g);
    return rc;
}

static void test_bad_gguf(void **s) {
    (void)s;
    gbuf k = {0};
    spill_err err = {{0}};
    const char *merges[] = {"a b"}, *bad_merges[] = {"ab"};
    /* a good one first */
    kv_str(&k, "tokenizer.ggml.model", "gpt2"), kv_str(&k, "tokenizer.ggml.pre", "gpt-2");
    kv_strs(&k, "tokenizer.ggml.tokens", toks, 5), kv_i32s(&k, "tokenizer.ggml.token_type", types, 5);
    kv_strs(&k, "tokenizer.ggml.merges", merges, 1);
    assert_int_equal(gguf_try(&k, &err), 0);
    struct { int what; const char *want; } cases[] = {
        {0, "tokenizer.ggml.model 'bert' is not supported"},
        {1, "'tokenizer.ggml.model' is missing"},
        {2, "tokenizer.ggml.token_type has 4 entries but there are 5 tokens"},
        {3, "tokenizer.ggml.merges entry 0 ('ab') is not two tokens"},
        {4, "needs metadata 'tokenizer.ggml.merges'"},
        {5, "a BOS token is to be added (the default of its pre-tokenizer type) but tokenizer.ggml.bos_token_id is missing"},
        {6, "tokenizer.ggml.eos_token_id = 9 is outside the vocabulary of 5 tokens"},
        {7, "tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id is missing"},
        {8, "metadata 'tokenizer.ggml.tokens' is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int w = cases[i].what;
        if (w != 1) kv_str(&k, "tokenizer.ggml.model", w == 0 ? "bert" : "gpt2");
        kv_str(&k, "tokenizer.ggml.pre", w == 5 ? "llama-bpe" : "gpt-2");
        if (w != 8) kv_strs(&k, "tokenizer.ggml.tokens", toks, 5);
        kv_i32s(&k, "tokenizer.ggml.token_type", types, w == 2 ? 4 : 5);
        if (w != 4) kv_strs(&k, "tokenizer.ggml.merges", w == 3 ? bad_merges : merges, 1);
        if (w == 6) kv_u32(&k, "tokenizer.ggml.eos_token_id", 9);
        if (w == 7) kv_bool(&k, "tokenizer.ggml.add_eos_token", 1);
        int rc = gguf_try(&k, &err);
        if (rc != -1 || !strstr(err.msg, cases[i].want) || !strstr(err.msg, "t.gguf")) {
            fprintf(stderr, "gguf case %zu: %s\n  wanted: %s\n", i, rc ? err.msg : "(accepted)", cases[i].want);
            fail();
        }
    }
    /* no tokenizer.ggml.pre: llama.cpp's 'default' rules, with a warning */
    kv_str(&k, "tokenizer.ggml.model", "gpt2");
    kv_strs(&k, "tokenizer.ggml.tokens", toks, 5), kv_strs(&k, "tokenizer.ggml.merges", merges, 1);
    assert_int_equal(gguf_try(&k, &err), 0);
}

/* a control token whose text is not valid UTF-8 ("\xBF\xBD", the tail of U+FFFD) cuts the repaired
 * text in the middle of a character: the piece before it is refused with a message, never given to
 * the regex engine (PCRE2 runs without its own UTF-8 check; found by fuzz_gguf as a read past the
 * end and an endless loop) */
static void test_token_cuts_character(void **s) {
    (void)s;
    static const char *const cut_toks[] = {"<s>", "a", "b", "ab", "\xC4\xA0", "\xBF\xBD"};
    static const int32_t cut_types[] = {3, 1, 1, 1, 1, 3};
    const char *merges[] = {"a b"};
    static const char *const pres[] = {"default", "gpt-2", "llama-bpe", "qwen2"};
    for (size_t p = 0; p < sizeof pres / sizeof *pres; p++) {
        gbuf k = {0};
        kv_str(&k, "tokenizer.ggml.model", "gpt2"), kv_str(&k, "tokenizer.ggml.pre", pres[p]);
        kv_strs(&k, "tokenizer.ggml.tokens", cut_toks, 6), kv_i32s(&k, "tokenizer.ggml.token_type", cut_types, 6);
        kv_strs(&k, "tokenizer.ggml.merges", merges, 1), kv_u32(&k, "tokenizer.ggml.bos_token_id", 0);
        const char *path = gguf_write(&k);
        spill_gguf g;
        spill_tokenizer t;
        spill_err err = {{0}};
        if (spill_gguf_open(&g, path, &err) || spill_tokenizer_init(&t, &g, &err)) fail_msg("%s: %s", pres[p], err.msg);
        int *ids = NULL, n = 0;
        /* valid text: the control token never matches inside a character */
        assert_int_equal(spill_tokenize(&t, "ab \xC3\xA9", 5, 0, 1, &ids, &n, &err), 0);
        for (int i = 0; i < n; i++) assert_true(ids[i] >= 0 && ids[i] < 5);
        free(ids);
        ids = NULL;
        /* "\xFF" becomes U+FFFD (EF BF BD) and the control token takes its last two bytes */
        int rc = spill_tokenize(&t, "ab\xFF", 3, 0, 1, &ids, &n, &err);
        if (rc != -1 || !strstr(err.msg, "not valid UTF-8")) fail_msg("%s: %s", pres[p], rc ? err.msg : "(accepted)");
        assert_null(ids);
        spill_tokenizer_free(&t);
        spill_gguf_close(&g);
    }
}

/* a Replace decoder after ByteFallback or ByteLevel: in a stream a token alone may be part of a
 * character; the pattern runs over the valid runs and the other bytes pass as they are (the regex
 * layer refuses invalid UTF-8) */
static void test_replace_after_bytes(void **s) {
    (void)s;
    static const char fallback[] =
        "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,"
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"}]},"
        "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"vocab\":{\"<unk>\":0,\"<0xE2>\":1,\"<0x82>\":2,"
        "\"<0xAC>\":3,\"\\u2581a\":4},\"merges\":[]}}";
    static const char bytelevel[] =
        "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,"
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteLevel\"},"
        "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":\"b\"}]},"
        "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"\\u00c3\":1,\"\\u00c3a\":2,\"\\u00a9\":3},\"merges\":[\"\\u00c3 a\"]}}";
    spill_tokenizer t;
    spill_err err = {{0}};
    char buf[16];
    if (spill_tokenizer_init_json(&t, write_file("tokenizer.json", fallback, strlen(fallback)), &err))
        fail_msg("%s", err.msg);
    assert_int_equal(spill_token_to_bytes(&t, 1, buf, sizeof buf), 1); /* E2 alone: the byte, not nothing */
    assert_int_equal((unsigned char)buf[0], 0xE2);
    assert_int_equal(spill_token_to_bytes(&t, 4, buf, sizeof buf), 2);
    assert_memory_equal(buf, " a", 2);
    int ids[] = {1, 2, 3, 4};
    char *out = NULL;
    size_t len = 0;
    if (spill_detokenize(&t, ids, 4, 0, &out, &len, &err)) fail_msg("%s", err.msg);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "\xE2\x82\xAC a", 5);
    free(out);
    spill_tokenizer_free(&t);
    if (spill_tokenizer_init_json(&t, write_file("tokenizer.json", bytelevel, strlen(bytelevel)), &err))
        fail_msg("%s", err.msg);
    /* "Ãa" is the bytes C3 61: a lead byte, then 'a', which the Replace still reaches */
    assert_int_equal(spill_token_to_bytes(&t, 2, buf, sizeof buf), 2);
    assert_memory_equal(buf, "\xC3" "b", 2);
    int ids2[] = {1, 3};
    if (spill_detokenize(&t, ids2, 2, 0, &out, &len, &err)) fail_msg("%s", err.msg);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "\xC3\xA9", 2); /* "é" once whole */
    free(out);
    spill_tokenizer_free(&t);
}

/* random bytes, special-token fragments and long runs: tokenizing never fails, decoding neither */
static void fuzz_one(const spill_tokenizer *t, const char *name) {
    unsigned seed = 12345;
    static const char *frag[] = {"<s>", "</s>", "<|im_start|>", "<|endoftext|>", "<|begin", "\xe2\x96\x81", " ", "\n",
                                 "\xff", "\xed\xa0\x80", "\xf0\x9f\x98", "'s", "123", "\xcc\x81"};
    char buf[512];
    for (int it = 0; it < 3000; it++) {
        size_t n = 0, want = (size_t)(rand_r(&seed) % 200);
        while (n < want) {
            if (rand_r(&seed) % 3 == 0) {
                const char *f = frag[rand_r(&seed) % (sizeof frag / sizeof *frag)];
                size_t l = strlen(f);
                if (n + l > sizeof buf) break;
                memcpy(buf + n, f, l);
                n += l;
            } else {
                buf[n++] = (char)(rand_r(&seed) & 0xFF);
            }
        }
        int *ids, k;
        spill_err err = {{0}};
        for (int mode = 0; mode < 4; mode++) {
            if (spill_tokenize(t, buf, n, mode & 1, mode >> 1, &ids, &k, &err)) fail_msg("%s: %s", name, err.msg);
            char *out;
            size_t on;
            if (spill_detokenize(t, ids, k, mode & 1, &out, &on, &err)) fail_msg("%s: %s", name, err.msg);
            char piece[64];
            for (int i = 0; i < k; i++) spill_token_to_bytes(t, ids[i], piece, sizeof piece);
            free(out);
            free(ids);
        }
    }
    /* out-of-range ids decode to nothing */
    int odd[] = {-5, t->n_vocab, 1 << 30};
    char *out;
    size_t on;
    spill_err err = {{0}};
    assert_int_equal(spill_detokenize(t, odd, 3, 0, &out, &on, &err), 0);
    assert_int_equal(on, 0);
    free(out);
    assert_int_equal(spill_token_to_bytes(t, -1, NULL, 0), 0);
}

static void test_fuzz_text(void **s) {
    (void)s;
    const char *shapes[] = {"gpt2", "llama3", "qwen2", "mistral", "llama2-legacy", "misc-a", "misc-b"};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/hf/%s/tokenizer.json", TOKFX, shapes[i]);
        spill_tokenizer t;
        spill_err err = {{0}};
        if (spill_tokenizer_init_json(&t, path, &err)) fail_msg("%s", err.msg);
        fuzz_one(&t, shapes[i]);
        spill_tokenizer_free(&t);
    }
    const char *types[] = {"spm", "llama-bpe", "deepseek-llm", "tekken"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/gguf/%s.gguf", TOKFX, types[i]);
        spill_gguf g;
        spill_tokenizer t;
        spill_err err = {{0}};
        if (spill_gguf_open(&g, path, &err) || spill_tokenizer_init(&t, &g, &err)) fail_msg("%s", err.msg);
        fuzz_one(&t, types[i]);
        spill_tokenizer_free(&t);
        spill_gguf_close(&g);
    }
    printf("%zu tokenizers x 3000 random texts x 4 modes: no failure\n", sizeof shapes / sizeof *shapes + 4);
}

/* a long text is linear: 4 MB of words, and 1 MB without a space (one pre-token) */
static void test_long_text(void **s) {
    (void)s;
    spill_tokenizer t;
    spill_err err = {{0}};
    if (spill_tokenizer_init_json(&t, TOKFX "/hf/mistral/tokenizer.json", &err)) fail_msg("%s", err.msg);
    size_t n = 4u << 20;
    char *text = malloc(n);
    static const char *w[] = {"the ", "people ", "water ", "Zürich ", "日本語", "12345 ", "\n"};
    for (size_t o = 0; o < n;) {
        const char *x = w[o % 7];
        size_t l = strlen(x);
        if (o + l > n) l = n - o;
        memcpy(text + o, x, l);
        o += l;
    }
    for (int pass = 0; pass < 2; pass++) {
        size_t len = pass ? 1u << 20 : n;
        if (pass) memset(text, 'a', len);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int *ids, k;
        assert_int_equal(spill_tokenize(&t, text, len, 1, 1, &ids, &k, &err), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double sec = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        printf("%zu bytes%s: %d tokens in %.2f s\n", len, pass ? " with no space" : "", k, sec);
        assert_true(k > 0);
        assert_true(sec < 30); /* quadratic merging would take hours; sanitizers make it a few times slower */
        free(ids);
    }
    free(text);
    spill_tokenizer_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_deep_and_bad_bytes),
        cmocka_unit_test(test_bad_configs),
        cmocka_unit_test(test_bad_gguf),
        cmocka_unit_test(test_token_cuts_character),
        cmocka_unit_test(test_replace_after_bytes),
        cmocka_unit_test(test_fuzz_text),
        cmocka_unit_test(test_long_text),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
