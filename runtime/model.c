#include "model.h"

#include <math.h>
#include <sys/stat.h>

#include "spill_json.h"

#include <unistd.h>

static int get_f32(const spill_gguf *g, const char *arch, const char *key, float *out, spill_err *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return spill_gguf_get_f32(g, full, out, err) < 0 ? -1 : 0;
}

/* A tensor as the loader needs it, from either source. ne0 = cols (contiguous), ne1 = rows. */
typedef struct tview {
    const void *data;
    uint32_t type;
    int n_dims;
    uint64_t ne0, ne1;
} tview;

/* GGUF tensor names -> Hugging Face's (Llama, Mistral and Qwen2 share them) */
static void hf_name(const char *g, char *out, size_t n) {
    static const struct { const char *gguf, *hf; } layer[] = {
        {"attn_norm.weight", "input_layernorm.weight"},   {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"},     {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_q.bias", "self_attn.q_proj.bias"},         {"attn_k.bias", "self_attn.k_proj.bias"},
        {"attn_v.bias", "self_attn.v_proj.bias"},         {"attn_output.weight", "self_attn.o_proj.weight"},
        {"ffn_norm.weight", "post_attention_layernorm.weight"}, {"ffn_gate.weight", "mlp.gate_proj.weight"},
        {"ffn_up.weight", "mlp.up_proj.weight"},          {"ffn_down.weight", "mlp.down_proj.weight"},
    };
    int l, off = 0;
    if (sscanf(g, "blk.%d.%n", &l, &off) == 1 && off > 0) {
        for (size_t i = 0; i < sizeof layer / sizeof *layer; i++)
            if (!strcmp(g + off, layer[i].gguf)) {
                snprintf(out, n, "model.layers.%d.%s", l, layer[i].hf);
                return;
            }
    }
    if (!strcmp(g, "token_embd.weight")) snprintf(out, n, "model.embed_tokens.weight");
    else if (!strcmp(g, "output_norm.weight")) snprintf(out, n, "model.norm.weight");
    else if (!strcmp(g, "output.weight")) snprintf(out, n, "lm_head.weight");
    else snprintf(out, n, "%s", g);
}

/* 1 and *v when the tensor is there; the name it has in its file in `shown` */
static int find_tensor(const spill_model *m, const char *name, tview *v, char *shown, size_t len) {
    if (!m->hf) {
        snprintf(shown, len, "%s", name);
        const spill_gguf_tensor *t = spill_gguf_tensor_find(&m->gguf, name);
        if (!t) return 0;
        *v = (tview){t->data, t->type, (int)t->n_dims, t->ne[0], t->ne[1]};
        return 1;
    }
    hf_name(name, shown, len);
    const spill_st_tensor *t = spill_st_find(&m->st, shown);
    if (!t) return 0;
    *v = (tview){t->data, t->type, t->n_dims, t->n_dims >= 2 ? t->shape[1] : t->n_dims == 1 ? t->shape[0] : 1,
                 t->n_dims >= 2 ? t->shape[0] : 1};
    if (t->n_dims > 2) v->n_dims = t->n_dims;
    return 1;
}

/* Find a tensor and check its shape: cols = ne[0], rows = ne[1] (1 for vectors). Vectors (norms,
 * biases) may be any float type here; they are made F32 after binding. */
static int bind(spill_model *m, const char *name, int64_t rows, int64_t cols, int optional, spill_weight *w,
                spill_err *err) {
    tview t;
    char shown[160];
    if (!find_tensor(m, name, &t, shown, sizeof shown)) {
        if (optional) return 1;
        return spill_err_set(err, "%s: tensor '%s' is missing", m->path, shown);
    }
    int is_vec = rows == 1;
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
    w->data = t.data;
    w->type = (spill_dtype)t.type;
    w->rows = rows;
    w->cols = cols;
    w->split = rows;
    w->data_hi = NULL;
    return 0;
}

static uint64_t wbytes(const spill_weight *w) {
    return w->data ? spill_dtype_row_bytes(w->type, (uint64_t)w->cols) * (uint64_t)w->rows : 0;
}

/* what the planner counts for a weight: its bytes as placed here, or as the GPU holds it */
static uint64_t plan_bytes(const spill_model *m, const spill_weight *w) {
    return m->for_gpu ? spill_gpu_weight_bytes(w) : wbytes(w);
}

static void set_dims(spill_hparams *hp, const spill_dims *d) {
    hp->n_layers = d->n_layers;
    hp->dim = d->dim;
    hp->n_heads = d->n_heads;
    hp->n_kv_heads = d->n_kv_heads;
    hp->head_dim = d->head_dim;
    hp->ffn_dim = d->ffn_dim;
    hp->vocab = d->vocab;
    hp->ctx_train = d->ctx;
    hp->rope_dims = d->rope_dims;
}

static int read_hparams(spill_model *m, spill_err *err) {
    const spill_gguf *g = &m->gguf;
    spill_str arch;
    int rc = spill_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc < 0) return -1;
    if (rc == 1) return spill_err_set(err, "%s: metadata 'general.architecture' is missing", g->path);
    if (!spill_str_eq(arch, "llama") && !spill_str_eq(arch, "qwen2"))
        return spill_err_set(err, "%s: architecture '%.*s' is not supported (llama and qwen2 are)", g->path,
                             (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    const char *a = spill_str_eq(arch, "llama") ? "llama" : "qwen2";
    spill_dims d;
    if (spill_gguf_dims_read(g, a, &d, err)) return -1;
    spill_hparams *hp = &m->hp;
    set_dims(hp, &d); /* vocab: from token_embd.weight */
    hp->eps = 1e-5f;
    hp->rope_base = 10000.0f;
    if (get_f32(g, a, "attention.layer_norm_rms_epsilon", &hp->eps, err) || get_f32(g, a, "rope.freq_base", &hp->rope_base, err))
        return -1;
    if (!(hp->eps > 0 && hp->eps < 1))
        return spill_err_set(err, "%s: %s.attention.layer_norm_rms_epsilon is %g; (0, 1) is allowed", g->path, a, hp->eps);
    if (!(hp->rope_base > 1)) return spill_err_set(err, "%s: %s.rope.freq_base is %g; it must be > 1", g->path, a, hp->rope_base);
    hp->rope_adjacent = !strcmp(a, "llama"); /* llama.cpp stores Qwen2 with rotate-half (NEOX) RoPE */
    return 0;
}

/* The Hugging Face config.json (spill_hf_config_read reads and checks it). */
static int read_hparams_hf(spill_model *m, spill_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", m->path);
    spill_hf_config c;
    if (spill_hf_config_read(path, NULL, &c, err)) return -1;
    spill_hparams *hp = &m->hp;
    set_dims(hp, &c.d);
    hp->rope_adjacent = 0; /* Hugging Face rotates pairs (i, i + d/2) */
    hp->eps = (float)c.eps;
    hp->rope_base = (float)c.rope_theta;
    hp->sliding_window = c.sliding_window;
    if (!c.llama3) return 0;
    /* llama3 frequency scaling: long wavelengths slowed by `factor`, short ones kept, a smooth ramp between */
    int half = hp->rope_dims / 2;
    if (!(m->rope_freq = malloc(sizeof(float) * (size_t)half))) return spill_err_set(err, "out of memory");
    double lo_wl = c.rope_old_ctx / c.rope_low, hi_wl = c.rope_old_ctx / c.rope_high;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf((float)c.rope_theta, (float)(2 * i) / (float)hp->rope_dims);
        double wl = 2 * M_PI / inv, f = inv;
        if (wl > lo_wl) {
            f = inv / c.rope_factor;
        } else if (wl >= hi_wl) {
            double smooth = (c.rope_old_ctx / wl - c.rope_low) / (c.rope_high - c.rope_low);
            f = (1 - smooth) * inv / c.rope_factor + smooth * inv;
        }
        m->rope_freq[i] = (float)f;
    }
    return 0;
}

static int bind_all(spill_model *m, spill_err *err) {
    spill_hparams *hp = &m->hp;
    tview emb;
    char shown[160];
    if (!find_tensor(m, "token_embd.weight", &emb, shown, sizeof shown))
        return spill_err_set(err, "%s: tensor '%s' is missing", m->path, shown);
    if (emb.n_dims != 2 || emb.ne1 > (1u << 24))
        return spill_err_set(err, "%s: tensor '%s' must be 2-D with at most 2^24 rows", m->path, shown);
    if (m->hf && emb.ne1 != (uint64_t)hp->vocab)
        return spill_err_set(err, "%s: tensor '%s' has %llu rows but config.json says vocab_size %d", m->path, shown,
                             (unsigned long long)emb.ne1, hp->vocab);
    hp->vocab = (int)emb.ne1;
    /* a Hugging Face vocabulary may be padded past the tokenizer's last id; a GGUF one may not */
    if (hp->vocab < m->tok.n_vocab || (!m->hf && hp->vocab != m->tok.n_vocab))
        return spill_err_set(err, "%s: %s has %d rows but the tokenizer has %d tokens", m->path, shown, hp->vocab,
                             m->tok.n_vocab);
    int64_t q_dim = (int64_t)hp->n_heads * hp->head_dim, kv_dim = (int64_t)hp->n_kv_heads * hp->head_dim;
    if (bind(m, "token_embd.weight", hp->vocab, hp->dim, 0, &m->tok_embd, err) ||
        bind(m, "output_norm.weight", 1, hp->dim, 0, &m->out_norm, err))
        return -1;
    int rc = bind(m, "output.weight", hp->vocab, hp->dim, 1, &m->output, err);
    if (rc < 0) return -1;
    if (rc == 1) {
        m->output = m->tok_embd; /* tied embeddings */
        m->tied = 1;
    }
    m->layers = calloc((size_t)hp->n_layers, sizeof *m->layers);
    if (!m->layers) return spill_err_set(err, "out of memory");
    for (int l = 0; l < hp->n_layers; l++) {
        spill_layer *L = &m->layers[l];
        char n[9][64];
        const char *suffix[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
        for (int i = 0; i < 9; i++) snprintf(n[i], sizeof n[i], "blk.%d.%s.weight", l, suffix[i]);
        if (bind(m, n[0], 1, hp->dim, 0, &L->attn_norm, err) || bind(m, n[1], q_dim, hp->dim, 0, &L->wq, err) ||
            bind(m, n[2], kv_dim, hp->dim, 0, &L->wk, err) || bind(m, n[3], kv_dim, hp->dim, 0, &L->wv, err) ||
            bind(m, n[4], hp->dim, q_dim, 0, &L->wo, err) || bind(m, n[5], 1, hp->dim, 0, &L->ffn_norm, err) ||
            bind(m, n[6], hp->ffn_dim, hp->dim, 0, &L->w_gate, err) || bind(m, n[7], hp->ffn_dim, hp->dim, 0, &L->w_up, err) ||
            bind(m, n[8], hp->dim, hp->ffn_dim, 0, &L->w_down, err))
            return -1;
        /* q/k/v biases (Qwen2): all three or none */
        char b[3][64];
        snprintf(b[0], sizeof b[0], "blk.%d.attn_q.bias", l);
        snprintf(b[1], sizeof b[1], "blk.%d.attn_k.bias", l);
        snprintf(b[2], sizeof b[2], "blk.%d.attn_v.bias", l);
        int r0 = bind(m, b[0], 1, q_dim, 1, &L->bq, err), r1 = r0 < 0 ? -1 : bind(m, b[1], 1, kv_dim, 1, &L->bk, err);
        int r2 = r1 < 0 ? -1 : bind(m, b[2], 1, kv_dim, 1, &L->bv, err);
        if (r0 < 0 || r1 < 0 || r2 < 0) return -1;
        if (r0 != r1 || r1 != r2)
            return spill_err_set(err, "%s: layer %d has some of the q/k/v biases but not all three", m->path, l);
    }
    return 0;
}

static int own(spill_model *m, void *p, size_t size, spill_tier tier, spill_err *err) {
    if (!p) return -1;
    spill_owned *n = realloc(m->owned, sizeof *n * (size_t)(m->n_owned + 1));
    if (!n) {
        spill_mem_put(m->mem, p, size);
        return spill_err_set(err, "out of memory");
    }
    m->owned = n;
    m->owned[m->n_owned++] = (spill_owned){p, size, tier};
    return 0;
}

/* All copies of one tier share one allocation: a 2 MiB-grained arena would otherwise round every
 * region up on its own, which for layers of 2-4 MiB wastes up to half of them. Placing runs twice:
 * first counting (base == NULL), then copying into the block that count asked for. */
typedef struct bump {
    uint8_t *base;
    uint64_t used;
} bump;

static uint8_t *bump_take(bump *b, uint64_t n) {
    b->used = spill_align_up(b->used, 64);
    uint8_t *p = b->base ? b->base + b->used : NULL;
    b->used += n;
    return p;
}

/* Copy a group of weights into a block and repoint them there. */
static void place_copy(bump *b, spill_weight **ws, int nw) {
    for (int i = 0; i < nw; i++) {
        uint8_t *dst = bump_take(b, wbytes(ws[i]));
        if (!dst) continue;
        memcpy(dst, ws[i]->data, wbytes(ws[i]));
        ws[i]->data = dst;
    }
}

/* Move the leading rows of each matrix of a group into an HBM block, about `hbm` bytes in all, in the
 * same proportion for each; the rest stays where it is. Returns the bytes moved. */
static uint64_t place_split(bump *b, spill_weight **ws, int nw, uint64_t total, uint64_t hbm) {
    double f = total ? (double)hbm / (double)total : 0;
    uint64_t moved = 0;
    for (int i = 0; i < nw; i++) {
        int64_t rows = ws[i]->rows > 1 ? (int64_t)(f * (double)ws[i]->rows) : 0;
        if (!rows) continue;
        uint64_t n = (uint64_t)rows * spill_weight_row_bytes(ws[i]);
        uint8_t *dst = bump_take(b, n);
        moved += n;
        if (!dst) continue;
        memcpy(dst, ws[i]->data, n);
        ws[i]->data_hi = (const uint8_t *)ws[i]->data + n;
        ws[i]->data = dst;
        ws[i]->split = rows;
    }
    return moved;
}

/* the weights of region r (see regions.h for the order); 0 for KV regions */
static int region_weights(spill_model *m, int r, spill_weight **ws, char *what, size_t len) {
    int L = m->hp.n_layers;
    if (r < L) {
        spill_layer *l = &m->layers[r];
        spill_weight *all[9] = {&l->attn_norm, &l->wq, &l->wk, &l->wv, &l->wo, &l->ffn_norm, &l->w_gate, &l->w_up, &l->w_down};
        memcpy(ws, all, sizeof all);
        snprintf(what, len, "layer %d weights", r);
        return 9;
    }
    if (r < 2 * L) return 0;
    if (r == 2 * L) {
        ws[0] = &m->tok_embd;
        snprintf(what, len, "token embedding");
        return 1;
    }
    if (r == 2 * L + 1) {
        if (m->tied) return 0; /* the embedding is the head */
        ws[0] = &m->output;
        snprintf(what, len, "output head");
        return 1;
    }
    ws[0] = &m->out_norm;
    snprintf(what, len, "output norm");
    return 1;
}

/* Norms and biases as F32 (the forward pass reads them as floats): a converted copy from alloc/
 * when the file has them in 16 bits. Also the llama3 frequency table of a GGUF (rope_freqs.weight). */
static int vectors_to_f32(spill_model *m, spill_err *err) {
    spill_weight *vs[3 + 5 * 1024];
    int n = 0;
    vs[n++] = &m->out_norm;
    for (int l = 0; l < m->hp.n_layers; l++) {
        spill_layer *L = &m->layers[l];
        vs[n++] = &L->attn_norm;
        vs[n++] = &L->ffn_norm;
        if (L->bq.data) vs[n++] = &L->bq, vs[n++] = &L->bk, vs[n++] = &L->bv;
    }
    uint64_t need = 0;
    for (int i = 0; i < n; i++)
        if (vs[i]->type != SPILL_DT_F32) need += (uint64_t)vs[i]->cols * 4;
    if (need) {
        float *dst = spill_mem_alloc(m->mem, need, spill_placement_host(), "norms and biases as F32", err);
        if (!dst || own(m, dst, need, SPILL_TIER_HOST, err)) return -1;
        for (int i = 0; i < n; i++) {
            if (vs[i]->type == SPILL_DT_F32) continue;
            spill_dequant_row(vs[i]->type, vs[i]->data, dst, vs[i]->cols);
            vs[i]->data = dst;
            vs[i]->type = SPILL_DT_F32;
            dst += vs[i]->cols;
        }
    }
    if (!m->hf && !m->rope_freq) {
        spill_weight f;
        int rc = bind(m, "rope_freqs.weight", 1, m->hp.rope_dims / 2, 1, &f, err);
        if (rc < 0) return -1;
        if (rc == 0) { /* per-dimension divisors of the frequencies (llama.cpp's form of llama3 scaling) */
            int half = m->hp.rope_dims / 2;
            float *div = malloc(sizeof(float) * (size_t)half);
            if (!(m->rope_freq = malloc(sizeof(float) * (size_t)half)) || !div) {
                free(div);
                return spill_err_set(err, "out of memory");
            }
            spill_dequant_row(f.type, f.data, div, half);
            for (int i = 0; i < half; i++)
                m->rope_freq[i] = 1.0f / powf(m->hp.rope_base, (float)(2 * i) / (float)m->hp.rope_dims) / div[i];
            free(div);
        }
    }
    return 0;
}

static int load_chat_template_hf(spill_model *m, spill_err *err) {
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

/* The planner's view of the model, from the weights as bound (GGUF or safetensors alike). */
static int model_shape(const spill_model *m, spill_shape *s, spill_err *err) {
    memset(s, 0, sizeof *s);
    const spill_hparams *hp = &m->hp;
    s->n_layers = hp->n_layers;
    s->dim = hp->dim;
    s->n_heads = hp->n_heads;
    s->n_kv_heads = hp->n_kv_heads;
    s->head_dim = hp->head_dim;
    s->ffn_dim = hp->ffn_dim;
    s->vocab = hp->vocab;
    s->ctx_train = hp->ctx_train;
    s->kv_elem_bytes = 4;
    s->tied = m->tied;
    s->layer_bytes = calloc((size_t)hp->n_layers, sizeof *s->layer_bytes);
    s->layer_params = calloc((size_t)hp->n_layers, sizeof *s->layer_params);
    if (!s->layer_bytes || !s->layer_params) {
        spill_shape_free(s);
        return spill_err_set(err, "out of memory");
    }
    for (int l = 0; l < hp->n_layers; l++) {
        const spill_layer *L = &m->layers[l];
        const spill_weight *ws[12] = {&L->attn_norm, &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_norm, &L->w_gate, &L->w_up,
                                      &L->w_down, &L->bq, &L->bk, &L->bv};
        /* the CPU's regions leave the (tiny) biases out; the GPU packs them with the layer */
        for (int i = 0; i < (m->for_gpu ? 12 : 9); i++) {
            s->layer_bytes[l] += plan_bytes(m, ws[i]);
            if (ws[i]->rows > 1) s->layer_params[l] += (uint64_t)ws[i]->rows * (uint64_t)ws[i]->cols;
        }
    }
    s->embd_bytes = plan_bytes(m, &m->tok_embd);
    s->embd_params = (uint64_t)m->tok_embd.rows * (uint64_t)m->tok_embd.cols;
    s->output_bytes = m->tied ? 0 : plan_bytes(m, &m->output);
    s->output_params = m->tied ? 0 : s->embd_params;
    s->norm_bytes = plan_bytes(m, &m->out_norm);
    return 0;
}

/* Bytes the arena adds on top of a plan's HBM bytes: the weights' block and the ring each round up
 * to whole 2 MiB chunks, and KV blocks fill chunks of their own. */
static uint64_t plan_slack(const spill_model *m) {
    const uint64_t G = SPILL_ARENA_GRAIN;
    int L = m->hp.n_layers, weights = 0, kv = 0;
    for (int r = 0; r < m->n_regions; r++) {
        if (!m->plan.region[r].hbm_bytes) continue;
        if (r >= L && r < 2 * L) kv = 1;
        else weights = 1;
    }
    return (uint64_t)(weights + kv + (m->plan.ring_slots > 0)) * G;
}

int spill_model_load(spill_model *m, const char *path, const spill_model_params *p, spill_mem *mem, spill_err *err) {
    memset(m, 0, sizeof *m);
    m->mem = mem;
    m->for_gpu = p->for_gpu;
    double t0 = spill_now();
    struct stat sb;
    m->hf = !stat(path, &sb) && S_ISDIR(sb.st_mode);
    if (!(m->path = strdup(path))) return spill_err_set(err, "out of memory");
    if (m->hf) {
        /* a Hugging Face directory: config.json, tokenizer.json, safetensors (mapped, read lazily) */
        if (read_hparams_hf(m, err) || spill_tokenizer_init_hf(&m->tok, path, err)) goto fail;
        if (spill_st_open_dir(&m->st, path, err)) goto fail;
        if (bind_all(m, err) || load_chat_template_hf(m, err)) goto fail;
    } else {
        if (spill_gguf_open(&m->gguf, path, err)) goto fail;
        if (read_hparams(m, err) || spill_tokenizer_init(&m->tok, &m->gguf, err)) goto fail;
        if (bind_all(m, err)) goto fail;
        if (spill_gguf_get_str(&m->gguf, "tokenizer.chat_template", &m->chat_template, err) < 0) goto fail;
    }
    if (vectors_to_f32(m, err)) goto fail;

    const spill_hparams *hp = &m->hp;
    m->n_ctx = p->ctx ? p->ctx : (hp->ctx_train < 4096 ? hp->ctx_train : 4096);
    if (m->n_ctx > hp->ctx_train) {
        spill_err_set(err, "--ctx-size %d is larger than the model's context of %d tokens", m->n_ctx, hp->ctx_train);
        goto fail;
    }
    if (hp->sliding_window && m->n_ctx > hp->sliding_window) {
        spill_err_set(err, "%s: this model attends through a sliding window of %d tokens, which spill does not implement "
                           "yet; use -c/--ctx-size %d or less", path, hp->sliding_window, hp->sliding_window);
        goto fail;
    }
    /* regions from the model's own tensors (the same list spill-plan shows), then the plan */
    spill_shape shape;
    if (model_shape(m, &shape, err)) goto fail;
    int rc = spill_shape_regions(&shape, m->n_ctx, 1, &m->regions, &m->n_regions, err);
    spill_shape_free(&shape);
    if (rc) goto fail;
    SPILL_ASSERT(m->n_regions == 2 * hp->n_layers + SPILL_REGION_EXTRA);
    m->region_hbm = calloc((size_t)m->n_regions, sizeof *m->region_hbm);
    if (!m->region_hbm) {
        spill_err_set(err, "out of memory");
        goto fail;
    }
    uint64_t budget = p->hbm_budget;
    if (m->for_gpu && budget) {
        /* the GPU's work buffers take their share of the budget first */
        uint64_t w = spill_gpu_work_bytes(hp, m->n_ctx, p->gpu_batch) + SPILL_ARENA_GRAIN;
        if (w >= budget) {
            spill_err_set(err, "an HBM budget of %.1f MiB does not hold the GPU's work buffers (%.1f MiB for a context of "
                               "%d and batches of %d); raise --hbm-budget or lower -c/--ctx-size or -b/--batch-size",
                          budget / 1048576.0, w / 1048576.0, m->n_ctx, p->gpu_batch > 0 ? p->gpu_batch : 1);
            goto fail;
        }
        budget -= w;
    }
    spill_plan_params pp = {p->policy, {budget, 0}, p->use_mmap, p->profile, {0, 1}};
    if (spill_plan_make(m->regions, m->n_regions, &pp, &m->plan, err)) goto fail;
    /* The budget limits what alloc/ really holds, and its arena rounds to 2 MiB chunks per placement.
       Plan again with that slack taken off, so that carrying the plan out stays within the budget. */
    uint64_t slack = plan_slack(m);
    if (slack && budget) {
        spill_plan_free(&m->plan);
        pp.budget[SPILL_TIER_HBM] = budget > slack ? budget - slack : 0;
        if (spill_plan_make(m->regions, m->n_regions, &pp, &m->plan, err)) {
            size_t l = strlen(err->msg);
            snprintf(err->msg + l, sizeof err->msg - l, " (%.1f MiB of the budget go to 2 MiB chunk rounding)",
                     slack / 1048576.0);
            goto fail;
        }
    }

    if (m->for_gpu) {
        /* the GPU's state makes the copies the plan asks for; here the weights stay as bound */
        if (m->tied) m->output = m->tok_embd;
        for (int r = 0; r < m->n_regions; r++) {
            spill_weight *ws[9];
            char what[64];
            int nw = region_weights(m, r, ws, what, sizeof what);
            for (int i = 0; i < nw; i++) m->weight_bytes[SPILL_TIER_HOST] += wbytes(ws[i]);
        }
        fprintf(stderr, "spill: read %s: %d layers, dim %d, %d heads (%d kv), vocab %d, %.2f MiB of weights in %.2f s "
                        "(planned for the GPU: policy %s%s%s)\n",
                path, hp->n_layers, hp->dim, hp->n_heads, hp->n_kv_heads, hp->vocab,
                (double)m->weight_bytes[SPILL_TIER_HOST] / (1 << 20), spill_now() - t0, m->plan.policy,
                strcmp(m->plan.policy, m->plan.chosen) ? " -> " : "", strcmp(m->plan.policy, m->plan.chosen) ? m->plan.chosen : "");
        return 0;
    }

    /* twice: count what each tier's block must hold, then allocate the blocks and copy */
    bump blk[SPILL_TIER_COUNT] = {{NULL, 0}, {NULL, 0}};
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            for (int t = 0; t < SPILL_TIER_COUNT; t++) {
                uint64_t need = blk[t].used;
                blk[t].used = 0;
                if (!need) continue;
                /* one placement per block: weights are read-mostly; the reader is the GPU for a GPU profile */
                const spill_profile *prof = p->profile;
                unsigned adv = SPILL_PLACE_READ_MOSTLY | (prof && prof->has_gpu && strcmp(m->plan.chosen, "host")
                                                              ? SPILL_PLACE_GPU_READS : SPILL_PLACE_CPU_READS);
                spill_placement pl = {(spill_tier)t, -1, adv};
                const char *what = t == SPILL_TIER_HBM ? "weights in HBM" : "weights copied into host memory";
                if (!(blk[t].base = spill_mem_alloc(m->mem, need, pl, what, err)) || own(m, blk[t].base, need, (spill_tier)t, err))
                    goto fail;
            }
        }
        for (int r = 0; r < m->n_regions; r++) {
            spill_region_plan rp = m->plan.region[r];
            spill_weight *ws[9];
            char what[64];
            int nw = region_weights(m, r, ws, what, sizeof what);
            if (!nw) continue;
            uint64_t bytes = 0;
            for (int i = 0; i < nw; i++) bytes += wbytes(ws[i]);
            if (rp.tier == SPILL_TIER_HBM) {
                place_copy(&blk[SPILL_TIER_HBM], ws, nw);
                m->region_hbm[r] = bytes;
            } else {
                /* the home is host memory: the file itself, or a copy */
                if (!rp.in_place) place_copy(&blk[SPILL_TIER_HOST], ws, nw);
                if (rp.hbm_bytes && !rp.streamed) m->region_hbm[r] = place_split(&blk[SPILL_TIER_HBM], ws, nw, bytes, rp.hbm_bytes);
                if (pass == 1 && rp.in_place) {
                    spill_mem_register(m->mem, SPILL_TIER_HOST, bytes);
                    m->mapped_bytes += bytes;
                }
            }
            if (pass == 0) continue;
            if (r == 2 * hp->n_layers && m->tied) m->output = m->tok_embd; /* the head follows the embedding */
            m->weight_bytes[SPILL_TIER_HBM] += m->region_hbm[r];
            m->weight_bytes[SPILL_TIER_HOST] += bytes - m->region_hbm[r];
            if (isatty(2)) fprintf(stderr, "\rspill: placing weights %d/%d", r + 1, m->n_regions);
        }
    }
    fprintf(stderr, "%sspill: loaded %s: %d layers, dim %d, %d heads (%d kv), vocab %d, %.2f MiB of weights in %.2f s (policy %s%s)\n",
                isatty(2) ? "\r" : "", path, hp->n_layers, hp->dim, hp->n_heads, hp->n_kv_heads, hp->vocab,
                (double)(m->weight_bytes[0] + m->weight_bytes[1]) / (1 << 20), spill_now() - t0, m->plan.policy,
                p->use_mmap ? ", weights mapped from the file" : ", weights copied");
    return 0;
fail:
    spill_model_free(m);
    return -1;
}

void spill_model_free(spill_model *m) {
    for (int i = 0; i < m->n_owned; i++) spill_mem_put(m->mem, m->owned[i].ptr, m->owned[i].size);
    if (m->mem && m->mapped_bytes) spill_mem_unregister(m->mem, SPILL_TIER_HOST, m->mapped_bytes);
    free(m->owned);
    free(m->layers);
    free(m->region_hbm);
    free(m->rope_freq);
    free(m->chat_template_buf);
    free(m->path);
    spill_st_close(&m->st);
    spill_regions_free(m->regions);
    spill_plan_free(&m->plan);
    spill_tokenizer_free(&m->tok);
    if (m->gguf.map) spill_gguf_close(&m->gguf);
    memset(m, 0, sizeof *m);
}
