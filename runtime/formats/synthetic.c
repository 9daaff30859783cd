/* A minimal GGUF v3 writer and the synthetic models it writes (see synthetic.h). */
#include "synthetic.h"

#include <errno.h>
#include <strings.h>

#include "gguf.h"
#include "spill_kernels.h"
#include "tensors.h"

static const spill_synth_spec presets[] = {
    /* Llama-3(.1)-70B and -8B: hidden, ffn, heads, kv heads, vocab from their config.json */
    {"llama3-70b", 80, 8192, 28672, 64, 8, 128256, 8192, 500000.0f, SPILL_DT_BF16},
    {"llama3-8b", 32, 4096, 14336, 32, 8, 128256, 8192, 500000.0f, SPILL_DT_BF16},
    {"llama3.2-1b", 16, 2048, 8192, 32, 8, 128256, 8192, 500000.0f, SPILL_DT_BF16},
    {"tiny", 4, 256, 768, 8, 2, 512, 1024, 10000.0f, SPILL_DT_F16},
};

int spill_synth_parse(const char *spec, spill_synth_spec *out, spill_err *err) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec ? spec : "");
    char *save = NULL, *tok = strtok_r(buf, ":", &save);
    int found = 0;
    for (size_t i = 0; tok && i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(tok, presets[i].name)) {
            *out = presets[i];
            found = 1;
        }
    if (!found)
        return spill_err_set(err, "--synthetic '%s': known shapes are llama3-70b, llama3-8b, llama3.2-1b and tiny, with optional "
                                  ":layers=N, :vocab=N, :type=f32|bf16|f16|q8_0|q4_0|q4_k|q6_k", spec ? spec : "");
    while ((tok = strtok_r(NULL, ":", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) return spill_err_set(err, "--synthetic: '%s' is not key=value", tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        char *end;
        long n = strtol(v, &end, 10);
        if (!strcmp(k, "layers") && !*end && n >= 1 && n <= 1024) out->n_layers = (int)n;
        else if (!strcmp(k, "vocab") && !*end && n >= 260 && n <= (1 << 20)) out->vocab = (int)n;
        else if (!strcmp(k, "type") && !strcasecmp(v, "bf16")) out->type = SPILL_DT_BF16;
        else if (!strcmp(k, "type") && !strcasecmp(v, "f16")) out->type = SPILL_DT_F16;
        else if (!strcmp(k, "type") && !strcasecmp(v, "q8_0")) out->type = SPILL_DT_Q8_0;
        else if (!strcmp(k, "type") && !strcasecmp(v, "q4_0")) out->type = SPILL_DT_Q4_0;
        else if (!strcmp(k, "type") && !strcasecmp(v, "q4_k")) out->type = SPILL_DT_Q4_K;
        else if (!strcmp(k, "type") && !strcasecmp(v, "q6_k")) out->type = SPILL_DT_Q6_K;
        else if (!strcmp(k, "type") && !strcasecmp(v, "f32")) out->type = SPILL_DT_F32;
        else
            return spill_err_set(err, "--synthetic: '%s=%s' is not valid (layers=1..1024, vocab=260..1048576, "
                                      "type=f32|bf16|f16|q8_0|q4_0|q4_k|q6_k)", k, v);
    }
    return 0;
}

/* the tensors, in file order: name, rows, cols (rows = 1 for a vector) */
typedef struct tinfo {
    char name[64];
    uint64_t rows, cols;
    uint32_t type;
} tinfo;

/* one tensor of the table with the spec's dimensions: vectors F32, matrices of the spec's type */
static tinfo one(const spill_synth_spec *s, const spill_tensor_def *d, int layer) {
    spill_hparams hp = {.dim = s->dim, .n_heads = s->n_heads, .n_kv_heads = s->n_kv_heads,
                        .head_dim = s->dim / s->n_heads, .ffn_dim = s->ffn_dim, .vocab = s->vocab};
    tinfo t;
    spill_tensor_name(d, layer, 0, t.name, sizeof t.name);
    t.rows = (uint64_t)spill_dim_value(&hp, d->rows);
    t.cols = (uint64_t)spill_dim_value(&hp, d->cols);
    t.type = d->rows == SPILL_DIM_ONE ? SPILL_DT_F32 : s->type;
    return t;
}

/* Every tensor of the table a Llama has (no biases), in file order: the embedding, the layers, the
 * final norm and the head. */
static int tensors(const spill_synth_spec *s, tinfo **out) {
    int per_layer = 0;
    for (int i = 0; i < SPILL_LAYER_TENSORS; i++) per_layer += spill_layer_defs[i].presence == SPILL_REQUIRED;
    tinfo *t = calloc((size_t)(per_layer * s->n_layers + SPILL_OUTER_TENSORS), sizeof *t);
    if (!t) return -1;
    int k = 0;
    t[k++] = one(s, &spill_outer_defs[SPILL_OT_EMBD], -1);
    for (int l = 0; l < s->n_layers; l++)
        for (int i = 0; i < SPILL_LAYER_TENSORS; i++)
            if (spill_layer_defs[i].presence == SPILL_REQUIRED) t[k++] = one(s, &spill_layer_defs[i], l);
    t[k++] = one(s, &spill_outer_defs[SPILL_OT_OUT_NORM], -1);
    t[k++] = one(s, &spill_outer_defs[SPILL_OT_OUTPUT], -1);
    *out = t;
    return k;
}

static uint64_t tbytes(const tinfo *t) { return spill_dtype_row_bytes(t->type, t->cols) * t->rows; }

uint64_t spill_synth_bytes(const spill_synth_spec *s) {
    tinfo *t;
    int n = tensors(s, &t);
    uint64_t b = 0;
    for (int i = 0; i < n; i++) b += spill_align_up(tbytes(&t[i]), 32);
    free(t);
    return b;
}

/* ---- writing ---- */

typedef struct w {
    FILE *f;
    int bad;
} w;

static void put(w *o, const void *p, size_t n) {
    if (!o->bad && fwrite(p, 1, n, o->f) != n) o->bad = errno ? errno : EIO;
}
static void u32(w *o, uint32_t v) { put(o, &v, 4); }
static void u64(w *o, uint64_t v) { put(o, &v, 8); }
static void str(w *o, const char *s) {
    u64(o, strlen(s));
    put(o, s, strlen(s));
}
static void kv_str(w *o, const char *k, const char *v) {
    str(o, k);
    u32(o, SPILL_GGUF_STRING);
    str(o, v);
}
static void kv_u32(w *o, const char *k, uint32_t v) {
    str(o, k);
    u32(o, SPILL_GGUF_U32);
    u32(o, v);
}
static void kv_f32(w *o, const char *k, float v) {
    str(o, k);
    u32(o, SPILL_GGUF_F32);
    put(o, &v, 4);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int spill_synth_write(const spill_synth_spec *s, const char *path, uint64_t seed,
                      void (*progress)(uint64_t, uint64_t), spill_err *err) {
    tinfo *t;
    int n = tensors(s, &t);
    if (n < 0) return spill_err_set(err, "out of memory");
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(t);
        return spill_err_set(err, "%s: cannot create: %s", path, strerror(errno));
    }
    w o = {f, 0};
    int V = s->vocab, nkv = 15;
    put(&o, "GGUF", 4);
    u32(&o, 3);
    u64(&o, (uint64_t)n);
    u64(&o, (uint64_t)nkv);
    kv_str(&o, "general.architecture", "llama");
    kv_str(&o, "general.name", s->name);
    kv_u32(&o, "llama.block_count", (uint32_t)s->n_layers);
    kv_u32(&o, "llama.embedding_length", (uint32_t)s->dim);
    kv_u32(&o, "llama.feed_forward_length", (uint32_t)s->ffn_dim);
    kv_u32(&o, "llama.attention.head_count", (uint32_t)s->n_heads);
    kv_u32(&o, "llama.attention.head_count_kv", (uint32_t)s->n_kv_heads);
    kv_u32(&o, "llama.context_length", (uint32_t)s->ctx);
    kv_f32(&o, "llama.rope.freq_base", s->rope_base);
    kv_f32(&o, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_str(&o, "tokenizer.ggml.model", "llama");
    /* a SentencePiece vocabulary: <unk> <s> </s>, the 256 byte tokens, then fillers */
    str(&o, "tokenizer.ggml.tokens");
    u32(&o, SPILL_GGUF_ARRAY);
    u32(&o, SPILL_GGUF_STRING);
    u64(&o, (uint64_t)V);
    char tok[32];
    for (int i = 0; i < V; i++) {
        if (i == 0) snprintf(tok, sizeof tok, "<unk>");
        else if (i == 1) snprintf(tok, sizeof tok, "<s>");
        else if (i == 2) snprintf(tok, sizeof tok, "</s>");
        else if (i < 259) snprintf(tok, sizeof tok, "<0x%02X>", i - 3);
        else snprintf(tok, sizeof tok, "\xe2\x96\x81t%d", i);
        str(&o, tok);
    }
    str(&o, "tokenizer.ggml.token_type");
    u32(&o, SPILL_GGUF_ARRAY);
    u32(&o, SPILL_GGUF_I32);
    u64(&o, (uint64_t)V);
    for (int i = 0; i < V; i++) u32(&o, i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1);
    kv_u32(&o, "tokenizer.ggml.bos_token_id", 1);
    kv_u32(&o, "tokenizer.ggml.eos_token_id", 2);
    /* tensor infos */
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        str(&o, t[i].name);
        u32(&o, t[i].rows == 1 ? 1 : 2);
        u64(&o, t[i].cols);
        if (t[i].rows != 1) u64(&o, t[i].rows);
        u32(&o, t[i].type);
        u64(&o, off);
        off += spill_align_up(tbytes(&t[i]), 32);
    }
    long pos = ftell(f);
    static const uint8_t zeros[32];
    if (pos >= 0) put(&o, zeros, (size_t)(spill_align_up((uint64_t)pos, 32) - (uint64_t)pos));
    /* data: norms 1.0; matrices random in about +-0.05 (quantized through the reference quantizer) */
    uint64_t rs = seed * 0x9E3779B97F4A7C15ull + 1, done = 0, total = off;
    size_t cap = 0;
    float *row = NULL;
    uint8_t *q = NULL;
    for (int i = 0; i < n && !o.bad; i++) {
        uint64_t rb = spill_dtype_row_bytes(t[i].type, t[i].cols);
        if (t[i].cols > cap) {
            cap = t[i].cols;
            free(row);
            free(q);
            row = malloc(sizeof(float) * cap);
            q = malloc(cap * sizeof(float) + 64); /* F32 rows are the widest */
            if (!row || !q) {
                o.bad = ENOMEM;
                break;
            }
        }
        for (uint64_t r = 0; r < t[i].rows && !o.bad; r++) {
            for (uint64_t c = 0; c < t[i].cols; c++)
                row[c] = t[i].rows == 1 ? 1.0f : ((float)(rng_next(&rs) >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
            spill_quantize_row_ref((spill_dtype)t[i].type, row, q, (int64_t)t[i].cols);
            put(&o, q, rb);
        }
        uint64_t b = tbytes(&t[i]);
        put(&o, zeros, (size_t)(spill_align_up(b, 32) - b));
        done += spill_align_up(b, 32);
        if (progress) progress(done, total);
    }
    free(row);
    free(q);
    free(t);
    if (fclose(f) && !o.bad) o.bad = errno ? errno : EIO;
    if (o.bad) {
        remove(path); /* nothing half-written is left behind */
        return spill_err_set(err, "%s: writing the synthetic model failed: %s", path, strerror(o.bad));
    }
    return 0;
}
