/* Regions and model shapes for planning (see regions.h). */
#include "regions.h"

#include <ctype.h>

#include "hf_config.h"

void spill_shape_free(spill_shape *s) {
    free(s->layer_bytes);
    free(s->layer_params);
    free(s->layer_format);
    memset(s, 0, sizeof *s);
}

static int alloc_layers(spill_shape *s, spill_err *err) {
    s->layer_bytes = calloc((size_t)s->hp.n_layers, sizeof *s->layer_bytes);
    s->layer_params = calloc((size_t)s->hp.n_layers, sizeof *s->layer_params);
    s->layer_format = calloc((size_t)s->hp.n_layers, sizeof *s->layer_format);
    if (!s->layer_bytes || !s->layer_params || !s->layer_format) {
        spill_shape_free(s);
        return spill_err_set(err, "out of memory");
    }
    return 0;
}

int spill_region_tensors(spill_weights *w, const spill_hparams *hp, int r, spill_weight **out) {
    int L = hp->n_layers;
    if (r >= 0 && r < L) {
        for (int i = 0; i < SPILL_LAYER_TENSORS; i++) out[i] = &w->layers[r].t[i];
        return SPILL_LAYER_TENSORS;
    }
    if (r == spill_region_embd(L)) out[0] = &w->tok_embd;
    else if (r == spill_region_output(L) && !hp->tied) out[0] = &w->output;
    else if (r == spill_region_out_norm(L)) out[0] = &w->out_norm;
    else return 0;
    return 1;
}

int spill_shape_from_gguf(const spill_gguf *g, spill_shape *s, spill_err *err) {
    memset(s, 0, sizeof *s);
    if (spill_gguf_arch(g, s->arch, sizeof s->arch, err) || spill_gguf_hparams_read(g, s->arch, &s->hp, err)) return -1;
    s->kv_elem_bytes = 4; /* K and V in F32, the runtime's default (--kv-type) */
    if (alloc_layers(s, err)) return -1;
    uint64_t by_type[64] = {0};
    uint64_t *layer_type = calloc((size_t)s->hp.n_layers * 64, sizeof *layer_type); /* params per (layer, type) */
    if (!layer_type) {
        spill_shape_free(s);
        return spill_err_set(err, "out of memory");
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const spill_gguf_tensor *t = &g->tensors[i];
        uint64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (t->type < 64) by_type[t->type] += t->bytes;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len > 120 ? 120 : t->name.len), t->name.ptr);
        int layer;
        if (sscanf(name, "blk.%d.", &layer) == 1) {
            if (layer < 0 || layer >= s->hp.n_layers) {
                spill_err_set(err, "%s: tensor '%s' names layer %d but block_count is %d", g->path, name, layer,
                              s->hp.n_layers);
                free(layer_type);
                spill_shape_free(s);
                return -1;
            }
            s->layer_bytes[layer] += t->bytes;
            s->layer_params[layer] += t->n_dims >= 2 ? elems : 0; /* norms and biases: no multiply-adds to speak of */
            if (t->n_dims >= 2 && t->type < 64) layer_type[(size_t)layer * 64 + t->type] += elems;
        } else if (!strcmp(name, "token_embd.weight")) {
            s->embd_bytes = t->bytes;
            s->embd_params = elems;
            s->hp.vocab = (int)t->ne[1];
            snprintf(s->embd_format, sizeof s->embd_format, "%s", spill_dtype_name(t->type));
        } else if (!strcmp(name, "output.weight")) {
            s->output_bytes = t->bytes;
            s->output_params = elems;
            snprintf(s->output_format, sizeof s->output_format, "%s", spill_dtype_name(t->type));
        } else {
            s->norm_bytes += t->bytes;
        }
    }
    for (int l = 0; l < s->hp.n_layers; l++) {
        int top = 0;
        for (int t = 1; t < 64; t++)
            if (layer_type[(size_t)l * 64 + t] > layer_type[(size_t)l * 64 + top]) top = t;
        if (layer_type[(size_t)l * 64 + top])
            snprintf(s->layer_format[l], sizeof s->layer_format[l], "%s", spill_dtype_name((uint32_t)top));
    }
    free(layer_type);
    if (!s->embd_bytes) {
        spill_shape_free(s);
        return spill_err_set(err, "%s: tensor 'token_embd.weight' is missing", g->path);
    }
    int best = 0;
    for (int t = 1; t < 64; t++)
        if (by_type[t] > by_type[best]) best = t;
    snprintf(s->dtype, sizeof s->dtype, "%s", spill_dtype_name((uint32_t)best));
    return 0;
}

int spill_shape_from_config(const char *path, const char *dtype, spill_shape *s, spill_err *err) {
    memset(s, 0, sizeof *s);
    spill_hf_config c;
    if (spill_hf_config_read(path, dtype, &c, err)) return -1;
    snprintf(s->arch, sizeof s->arch, "%s", c.arch);
    snprintf(s->dtype, sizeof s->dtype, "%s", c.dtype);
    s->hp = c.hp;
    s->kv_elem_bytes = 4; /* K and V in F32, the runtime's default (--kv-type) */
    if (alloc_layers(s, err)) return -1;
    uint64_t eb = (uint64_t)c.dtype_bytes;
    /* every tensor of the table, at the checkpoint's element size */
    for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
        const spill_tensor_def *d = &spill_layer_defs[i];
        if (d->presence == SPILL_QKV_BIAS && !s->hp.qkv_bias) continue;
        uint64_t n = (uint64_t)spill_dim_value(&s->hp, d->rows) * (uint64_t)spill_dim_value(&s->hp, d->cols);
        for (int l = 0; l < s->hp.n_layers; l++) {
            s->layer_bytes[l] += n * eb;
            if (d->rows != SPILL_DIM_ONE) s->layer_params[l] += n; /* norms and biases: no multiply-adds to speak of */
        }
    }
    uint64_t D = (uint64_t)s->hp.dim;
    s->embd_params = (uint64_t)s->hp.vocab * D;
    s->embd_bytes = s->embd_params * eb;
    s->output_params = s->hp.tied ? 0 : s->embd_params;
    s->output_bytes = s->output_params * eb;
    s->norm_bytes = D * eb;
    /* every matrix in the checkpoint's type: "bf16" -> "BF16", as the weights are held */
    char f[12] = "";
    for (size_t i = 0; i + 1 < sizeof f && s->dtype[i]; i++) f[i] = (char)toupper((unsigned char)s->dtype[i]);
    for (int l = 0; l < s->hp.n_layers; l++) snprintf(s->layer_format[l], sizeof s->layer_format[l], "%s", f);
    snprintf(s->embd_format, sizeof s->embd_format, "%s", f);
    snprintf(s->output_format, sizeof s->output_format, "%s", f);
    return 0;
}

int spill_shape_from_weights(const spill_weights *w, const spill_hparams *hp,
                             uint64_t (*bytes)(const void *ctx, const spill_weight *w), const void *ctx, spill_shape *s,
                             spill_err *err) {
    memset(s, 0, sizeof *s);
    s->hp = *hp;
    s->kv_elem_bytes = 4; /* K and V in F32, the runtime's default (--kv-type) */
    if (alloc_layers(s, err)) return -1;
    for (int l = 0; l < hp->n_layers; l++) {
        uint64_t by[64] = {0};
        int top = -1;
        for (int i = 0; i < SPILL_LAYER_TENSORS; i++) {
            const spill_weight *t = &w->layers[l].t[i];
            if (t->data) s->layer_bytes[l] += bytes(ctx, t);
            if (t->data && t->rows > 1) {
                s->layer_params[l] += (uint64_t)t->rows * (uint64_t)t->cols;
                if ((unsigned)t->type < 64 && (by[t->type] += (uint64_t)t->rows * (uint64_t)t->cols) > (top < 0 ? 0 : by[top]))
                    top = (int)t->type;
            }
        }
        if (top >= 0) snprintf(s->layer_format[l], sizeof s->layer_format[l], "%s", spill_dtype_name((uint32_t)top));
    }
    snprintf(s->embd_format, sizeof s->embd_format, "%s", spill_dtype_name(w->tok_embd.type));
    if (!hp->tied) snprintf(s->output_format, sizeof s->output_format, "%s", spill_dtype_name(w->output.type));
    s->embd_bytes = bytes(ctx, &w->tok_embd);
    s->embd_params = (uint64_t)w->tok_embd.rows * (uint64_t)w->tok_embd.cols;
    s->output_bytes = hp->tied ? 0 : bytes(ctx, &w->output);
    s->output_params = hp->tied ? 0 : s->embd_params;
    s->norm_bytes = bytes(ctx, &w->out_norm);
    return 0;
}

uint64_t spill_shape_weight_bytes(const spill_shape *s) {
    uint64_t b = s->embd_bytes + s->output_bytes + s->norm_bytes;
    for (int l = 0; l < s->hp.n_layers; l++) b += s->layer_bytes[l];
    return b;
}

uint64_t spill_shape_kv_bytes_per_token(const spill_shape *s) {
    return 2ull * (uint64_t)s->hp.n_layers * (uint64_t)s->hp.n_kv_heads * (uint64_t)s->hp.head_dim *
           (uint64_t)s->kv_elem_bytes;
}

int spill_shape_regions(const spill_shape *s, int ctx, int batch, spill_region **out, int *n, spill_err *err) {
    int L = s->hp.n_layers, nr = spill_region_count(L);
    /* names and formats live right after the array, so one free releases everything */
    size_t names = (size_t)nr * 16;
    spill_region *r = calloc(1, sizeof *r * (size_t)nr + names + (size_t)nr * 12);
    if (!r) return spill_err_set(err, "out of memory");
    char *nm = (char *)(r + nr), *fm = nm + names;
    uint64_t kv_layer = 2ull * (uint64_t)s->hp.n_kv_heads * (uint64_t)s->hp.head_dim * (uint64_t)s->kv_elem_bytes *
                        (uint64_t)(ctx > 0 ? ctx : 1) * (uint64_t)(batch > 0 ? batch : 1);
    /* attention's multiply-adds per token and layer, at the full context: each query head's scores
       against ctx keys and its sum of ctx values. The arithmetic is F32 whatever the cache holds (16-bit
       rows are widened), so the CPU's F32 rate prices it (policies/cost.c) */
    uint64_t attn_macs = 2ull * (uint64_t)(ctx > 0 ? ctx : 1) * (uint64_t)s->hp.n_heads * (uint64_t)s->hp.head_dim;
    for (int l = 0; l < L; l++) {
        int w = spill_region_layer(L, l), k = spill_region_kv(L, l);
        snprintf(nm + (size_t)w * 16, 16, "blk.%d", l);
        snprintf(fm + (size_t)w * 12, 12, "%s", s->layer_format ? s->layer_format[l] : "");
        r[w] = (spill_region){nm + (size_t)w * 16, s->layer_bytes[l], l, SPILL_REGION_WEIGHT, 1.0, s->layer_params[l],
                              fm[(size_t)w * 12] ? fm + (size_t)w * 12 : NULL};
        snprintf(nm + (size_t)k * 16, 16, "kv.%d", l);
        r[k] = (spill_region){nm + (size_t)k * 16, kv_layer, l, SPILL_REGION_KV, 1.0, attn_macs, "F32"};
    }
    /* an untied embedding is read one row per token; a tied one is also the head, read whole */
    int tied = s->hp.tied;
    double embd_reads = tied ? 1.0 : 1.0 / (s->hp.vocab > 0 ? s->hp.vocab : 1);
    char *fe = fm + (size_t)spill_region_embd(L) * 12, *fo = fm + (size_t)spill_region_output(L) * 12;
    snprintf(fe, 12, "%s", s->embd_format);
    snprintf(fo, 12, "%s", s->output_format);
    r[spill_region_embd(L)] = (spill_region){"token_embd", s->embd_bytes, -1, SPILL_REGION_WEIGHT, embd_reads,
                                             tied ? s->embd_params : 0, *fe ? fe : NULL};
    r[spill_region_output(L)] = (spill_region){"output", s->output_bytes, -1, SPILL_REGION_WEIGHT, 1.0, s->output_params,
                                               *fo ? fo : NULL};
    r[spill_region_out_norm(L)] = (spill_region){"output_norm", s->norm_bytes, -1, SPILL_REGION_WEIGHT, 1.0, 0, NULL};
    *out = r;
    *n = nr;
    return 0;
}

void spill_regions_free(spill_region *r) { free(r); }
