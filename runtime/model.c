/* Loading a model: map its files, read the hyperparameters, bind every tensor of the table and
 * check its shape, build the tokenizer (see model.h). */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_config.h"
#include "spill_json.h"

/* A tensor as the loader needs it, from either source. ne0 = cols (contiguous), ne1 = rows. */
typedef struct tview {
    const void *data;
    uint32_t type;
    int n_dims;
    uint64_t ne0, ne1;
} tview;

/* 1 and *v when the tensor is there, 0 when not; its name in its file in `shown` */
static int find_tensor(const spill_model *m, const spill_tensor_def *d, int layer, tview *v, char *shown, size_t len) {
    spill_tensor_name(d, layer, m->hf, shown, len);
    if (!m->hf) {
        const spill_gguf_tensor *t = spill_gguf_tensor_find(&m->gguf, shown);
        if (!t) return 0;
        *v = (tview){t->data, t->type, (int)t->n_dims, t->ne[0], t->ne[1]};
        return 1;
    }
    const spill_st_tensor *t = spill_st_find(&m->st, shown);
    if (!t) return 0;
    /* safetensors writes the slowest dimension first */
    *v = (tview){t->data, t->type, t->n_dims, t->n_dims >= 2 ? t->shape[1] : t->n_dims == 1 ? t->shape[0] : 1,
                 t->n_dims >= 2 ? t->shape[0] : 1};
    return 1;
}

/* Bind one tensor of the table and check its shape: 0 bound, 1 absent (and allowed to be), -1 error.
 * Vectors (norms, biases) may be F32, F16 or BF16 here; every device reads them as F32. */
static int bind(spill_model *m, const spill_tensor_def *d, int layer, spill_weight *w, spill_err *err) {
    tview t;
    char shown[160];
    memset(w, 0, sizeof *w);
    if (!find_tensor(m, d, layer, &t, shown, sizeof shown)) {
        if (d->presence != SPILL_REQUIRED) return 1;
        return spill_err_set(err, "%s: tensor '%s' is missing", m->path, shown);
    }
    int64_t rows = spill_dim_value(&m->hp, d->rows), cols = spill_dim_value(&m->hp, d->cols);
    int is_vec = d->rows == SPILL_DIM_ONE;
    if ((is_vec && (t.n_dims != 1 || t.ne0 != (uint64_t)cols)) ||
        (!is_vec && (t.n_dims != 2 || t.ne0 != (uint64_t)cols || t.ne1 != (uint64_t)rows))) {
        if (is_vec)
            return spill_err_set(err, "%s: tensor '%s' has shape [%llu x %llu]; expected [%lld]", m->path, shown,
                                 (unsigned long long)t.ne0, (unsigned long long)t.ne1, (long long)cols);
        return spill_err_set(err, "%s: tensor '%s' has shape [%llu x %llu]; expected [%lld x %lld] (from the model's "
                                  "hyperparameters)", m->path, shown, (unsigned long long)t.ne0, (unsigned long long)t.ne1,
                             (long long)cols, (long long)rows);
    }
    int vec_ok = t.type == SPILL_DT_F32 || t.type == SPILL_DT_F16 || t.type == SPILL_DT_BF16;
    if (!spill_dtype_supported(t.type) || (is_vec && !vec_ok))
        return spill_err_set(err, "%s: tensor '%s' has type %s, which spill cannot use here (%s)", m->path, shown,
                             spill_dtype_name(t.type),
                             is_vec ? "norms and biases must be F32, F16 or BF16" : "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K are");
    *w = (spill_weight){t.data, (spill_dtype)t.type, rows, cols, rows, NULL};
    return 0;
}

/* the embedding says how large the vocabulary is; the tokenizer must fit it */
static int check_vocab(spill_model *m, spill_err *err) {
    tview emb;
    char shown[160];
    const spill_tensor_def *d = &spill_outer_defs[SPILL_OT_EMBD];
    if (!find_tensor(m, d, -1, &emb, shown, sizeof shown))
        return spill_err_set(err, "%s: tensor '%s' is missing", m->path, shown);
    if (emb.n_dims != 2 || emb.ne1 > (1u << 24))
        return spill_err_set(err, "%s: tensor '%s' must be 2-D with at most 2^24 rows", m->path, shown);
    if (m->hf && emb.ne1 != (uint64_t)m->hp.vocab)
        return spill_err_set(err, "%s: tensor '%s' has %llu rows but config.json says vocab_size %d", m->path, shown,
                             (unsigned long long)emb.ne1, m->hp.vocab);
    m->hp.vocab = (int)emb.ne1;
    /* a Hugging Face vocabulary may be padded past the tokenizer's last id; a GGUF one may not */
    if (m->hp.vocab < m->tok.n_vocab || (!m->hf && m->hp.vocab != m->tok.n_vocab))
        return spill_err_set(err, "%s: %s has %d rows but the tokenizer has %d tokens", m->path, shown, m->hp.vocab,
                             m->tok.n_vocab);
    return 0;
}

static int bind_all(spill_model *m, spill_err *err) {
    spill_hparams *hp = &m->hp;
    if (check_vocab(m, err)) return -1;
    spill_weights *w = &m->w;
    for (int i = 0; i < SPILL_OUTER_TENSORS; i++) {
        int rc = bind(m, &spill_outer_defs[i], -1, &w->outer[i], err);
        if (rc < 0) return -1;
        if (rc == 1) w->output = w->tok_embd; /* tied embeddings: the head is the embedding */
        if (i == SPILL_OT_OUTPUT) hp->tied = rc == 1;
    }
    if (!(w->layers = calloc((size_t)hp->n_layers, sizeof *w->layers))) return spill_err_set(err, "out of memory");
    for (int l = 0; l < hp->n_layers; l++) {
        int biases = 0;
        for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
            int rc = bind(m, &spill_layer_defs[i], l, &w->layers[l].t[i], err);
            if (rc < 0) return -1;
            biases += spill_layer_defs[i].presence == SPILL_QKV_BIAS && rc == 0;
        }
        /* q/k/v biases (Qwen2): all three or none, the same in every layer */
        if ((biases != 0 && biases != 3) || (l > 0 && (biases == 3) != hp->qkv_bias))
            return spill_err_set(err, "%s: layer %d has %d of the 3 q/k/v biases (%s)", m->path, l, biases,
                                 l > 0 ? "and the layers before it differ" : "all three or none");
        hp->qkv_bias = biases == 3;
    }
    return 0;
}

/* GGUF: llama.cpp's form of llama3 RoPE scaling, per-dimension divisors of the frequencies */
static int rope_freqs_gguf(spill_model *m, spill_err *err) {
    const spill_gguf_tensor *t = spill_gguf_tensor_find(&m->gguf, "rope_freqs.weight");
    if (!t) return 0;
    int half = m->hp.rope_dims / 2;
    if (t->n_dims != 1 || t->ne[0] != (uint64_t)half ||
        (t->type != SPILL_DT_F32 && t->type != SPILL_DT_F16 && t->type != SPILL_DT_BF16))
        return spill_err_set(err, "%s: tensor 'rope_freqs.weight' must be %d values of F32, F16 or BF16", m->path, half);
    float *div = malloc(sizeof(float) * (size_t)half);
    if (!(m->rope_freq = malloc(sizeof(float) * (size_t)half)) || !div) {
        free(div);
        return spill_err_set(err, "out of memory");
    }
    spill_dequant_row((spill_dtype)t->type, t->data, div, half);
    for (int i = 0; i < half; i++)
        m->rope_freq[i] = 1.0f / powf(m->hp.rope_base, (float)(2 * i) / (float)m->hp.rope_dims) / div[i];
    free(div);
    return 0;
}

/* config.json's llama3 scaling: long wavelengths slowed by `factor`, short ones kept, a ramp between */
static int rope_freqs_hf(spill_model *m, const spill_hf_config *c, spill_err *err) {
    if (!c->llama3) return 0;
    int half = m->hp.rope_dims / 2;
    if (!(m->rope_freq = malloc(sizeof(float) * (size_t)half))) return spill_err_set(err, "out of memory");
    double lo_wl = c->rope_old_ctx / c->rope_low, hi_wl = c->rope_old_ctx / c->rope_high;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf(m->hp.rope_base, (float)(2 * i) / (float)m->hp.rope_dims);
        double wl = 2 * M_PI / inv, f = inv;
        if (wl > lo_wl) {
            f = inv / c->rope_factor;
        } else if (wl >= hi_wl) {
            double smooth = (c->rope_old_ctx / wl - c->rope_low) / (c->rope_high - c->rope_low);
            f = (1 - smooth) * inv / c->rope_factor + smooth * inv;
        }
        m->rope_freq[i] = (float)f;
    }
    return 0;
}

static int chat_template_hf(spill_model *m, spill_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", m->path);
    if (access(path, R_OK)) return 0;
    spill_json *j;
    if (spill_json_parse_file(path, 64 << 20, &j, err)) return -1;
    const spill_json *t = spill_json_get_type(j, "chat_template", SPILL_JSON_STRING);
    if (t && !(m->chat_template_buf = strdup(t->str))) {
        spill_json_free(j);
        return spill_err_set(err, "out of memory");
    }
    if (t) m->chat_template = (spill_str){m->chat_template_buf, strlen(m->chat_template_buf)};
    spill_json_free(j);
    return 0;
}

static int load_hf(spill_model *m, spill_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", m->path);
    spill_hf_config c;
    if (spill_hf_config_read(path, NULL, &c, err)) return -1;
    snprintf(m->arch, sizeof m->arch, "%s", c.arch);
    m->hp = c.hp;
    if (rope_freqs_hf(m, &c, err) || spill_tokenizer_init_hf(&m->tok, m->path, err) ||
        spill_st_open_dir(&m->st, m->path, err) || bind_all(m, err))
        return -1;
    return chat_template_hf(m, err);
}

static int load_gguf(spill_model *m, const char *tokenizer_pre, spill_err *err) {
    spill_gguf *g = &m->gguf;
    if (spill_gguf_open(g, m->path, err) || spill_gguf_arch(g, m->arch, sizeof m->arch, err)) return -1;
    if (strcmp(m->arch, "llama") && strcmp(m->arch, "qwen2"))
        return spill_err_set(err, "%s: architecture '%s' is not supported (llama and qwen2 are)", m->path, m->arch);
    if (spill_gguf_hparams_read(g, m->arch, &m->hp, err) || spill_tokenizer_init_pre(&m->tok, g, tokenizer_pre, err) ||
        bind_all(m, err) ||
        rope_freqs_gguf(m, err))
        return -1;
    return spill_gguf_get_str(g, "tokenizer.chat_template", &m->chat_template, err) < 0 ? -1 : 0;
}

/* the identity of every mapped file, for spill_model_check_files */
static int note_files(spill_model *m, spill_err *err) {
    int n = m->hf ? m->st.n_files : 1;
    if (!(m->files = calloc((size_t)n, sizeof *m->files))) return spill_err_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        spill_model_file *f = &m->files[i];
        f->path = m->hf ? m->st.files[i].path : m->gguf.path;
        f->mapped = m->hf ? m->st.files[i].size : m->gguf.size;
        struct stat sb;
        if (stat(f->path, &sb)) return spill_err_set(err, "%s: %s", f->path, strerror(errno));
        f->dev = (uint64_t)sb.st_dev, f->ino = (uint64_t)sb.st_ino;
        f->mtime_s = (int64_t)sb.st_mtim.tv_sec, f->mtime_ns = (int64_t)sb.st_mtim.tv_nsec;
    }
    m->n_files = n;
    return 0;
}

int spill_model_load(spill_model *m, const char *path, spill_err *err) { return spill_model_load_with(m, path, NULL, err); }

int spill_model_load_with(spill_model *m, const char *path, const char *tokenizer_pre, spill_err *err) {
    memset(m, 0, sizeof *m);
    struct stat sb;
    m->hf = !stat(path, &sb) && S_ISDIR(sb.st_mode);
    if (!(m->path = strdup(path))) return spill_err_set(err, "out of memory");
    if (m->hf ? load_hf(m, err) : load_gguf(m, tokenizer_pre && *tokenizer_pre ? tokenizer_pre : NULL, err) ||
        note_files(m, err)) {
        spill_model_free(m);
        return -1;
    }
    return 0;
}

int spill_model_check_files(const spill_model *m, spill_err *err) {
    for (int i = 0; i < m->n_files; i++) {
        const spill_model_file *f = &m->files[i];
        struct stat sb;
        if (stat(f->path, &sb) || (uint64_t)sb.st_dev != f->dev || (uint64_t)sb.st_ino != f->ino) continue;
        if ((uint64_t)sb.st_size < f->mapped)
            return spill_err_set(err, "%s: the file is now %llu bytes but %llu were mapped when the model was loaded: it "
                                      "was truncated while in use", f->path, (unsigned long long)sb.st_size,
                                 (unsigned long long)f->mapped);
        if ((int64_t)sb.st_mtim.tv_sec != f->mtime_s || (int64_t)sb.st_mtim.tv_nsec != f->mtime_ns)
            return spill_err_set(err, "%s: the file was modified while in use (it changed after the model was loaded); "
                                      "replace a model file by renaming a new one over it", f->path);
    }
    return 0;
}

void spill_model_free(spill_model *m) {
    free(m->w.layers);
    free(m->rope_freq);
    free(m->chat_template_buf);
    free(m->files);
    free(m->path);
    spill_st_close(&m->st);
    spill_tokenizer_free(&m->tok);
    spill_gguf_close(&m->gguf);
    memset(m, 0, sizeof *m);
}

int spill_model_regions(const spill_model *m, uint64_t (*bytes)(const void *ctx, const spill_weight *w),
                        const void *ctx, int n_ctx, int batch, spill_dtype kv_type, spill_region **out, int *n,
                        spill_err *err) {
    spill_shape s;
    if (spill_shape_from_weights(&m->w, &m->hp, bytes, ctx, &s, err)) return -1;
    s.kv_elem_bytes = (int)spill_kv_type_bytes(kv_type);
    snprintf(s.arch, sizeof s.arch, "%s", m->arch);
    int rc = spill_shape_regions(&s, n_ctx, batch, out, n, err);
    spill_shape_free(&s);
    return rc;
}
