/* Model shapes for planning (see regions.h). */
#include "regions.h"

#include <strings.h>

#include "spill_json.h"
#include "spill_kernels.h"

void spill_shape_free(spill_shape *s) {
    free(s->layer_bytes);
    free(s->layer_params);
    memset(s, 0, sizeof *s);
}

static int alloc_layers(spill_shape *s, spill_err *err) {
    s->layer_bytes = calloc((size_t)s->n_layers, sizeof *s->layer_bytes);
    s->layer_params = calloc((size_t)s->n_layers, sizeof *s->layer_params);
    if (!s->layer_bytes || !s->layer_params) return spill_err_set(err, "out of memory");
    return 0;
}

int spill_gguf_arch_u32(const spill_gguf *g, const char *arch, const char *key, int required, uint32_t *out,
                        spill_err *err) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int rc = spill_gguf_get_u32(g, k, out, err);
    if (rc == 1 && required) return spill_err_set(err, "%s: metadata '%s' is missing", g->path, k);
    return rc;
}

void spill_shape_set_dims(spill_shape *s, const spill_dims *d) {
    s->n_layers = d->n_layers;
    s->dim = d->dim;
    s->n_heads = d->n_heads;
    s->n_kv_heads = d->n_kv_heads;
    s->head_dim = d->head_dim;
    s->ffn_dim = d->ffn_dim;
    s->vocab = d->vocab;
    s->ctx_train = d->ctx;
}

int spill_gguf_dims_read(const spill_gguf *g, const char *a, spill_dims *d, spill_err *err) {
    uint32_t n_layers = 0, dim = 0, n_heads = 0, n_kv = 0, ffn = 0, ctx = 0, rope_dims = 0;
    if (spill_gguf_arch_u32(g, a, "block_count", 1, &n_layers, err) < 0 ||
        spill_gguf_arch_u32(g, a, "embedding_length", 1, &dim, err) < 0 ||
        spill_gguf_arch_u32(g, a, "attention.head_count", 1, &n_heads, err) < 0 ||
        spill_gguf_arch_u32(g, a, "attention.head_count_kv", 0, &n_kv, err) < 0 ||
        spill_gguf_arch_u32(g, a, "feed_forward_length", 1, &ffn, err) < 0 ||
        spill_gguf_arch_u32(g, a, "context_length", 0, &ctx, err) < 0 ||
        spill_gguf_arch_u32(g, a, "rope.dimension_count", 0, &rope_dims, err) < 0)
        return -1;
    if (!n_kv) n_kv = n_heads;
    if (n_layers < 1 || n_layers > 1024)
        return spill_err_set(err, "%s: %s.block_count is %u; 1..1024 is allowed", g->path, a, n_layers);
    if (dim < 1 || dim > 65536)
        return spill_err_set(err, "%s: %s.embedding_length is %u; 1..65536 is allowed", g->path, a, dim);
    if (n_heads < 1 || dim % n_heads)
        return spill_err_set(err, "%s: %s.attention.head_count is %u, which does not divide embedding_length %u", g->path,
                             a, n_heads, dim);
    if (n_kv > n_heads || n_heads % n_kv)
        return spill_err_set(err, "%s: %s.attention.head_count_kv is %u, which does not divide head_count %u", g->path, a,
                             n_kv, n_heads);
    if (ffn < 1 || ffn > 1u << 20)
        return spill_err_set(err, "%s: %s.feed_forward_length is %u; 1..1048576 is allowed", g->path, a, ffn);
    memset(d, 0, sizeof *d);
    d->n_layers = (int)n_layers;
    d->dim = (int)dim;
    d->n_heads = (int)n_heads;
    d->n_kv_heads = (int)n_kv;
    d->head_dim = (int)(dim / n_heads);
    d->ffn_dim = (int)ffn;
    d->ctx = ctx < 1 ? 2048 : ctx > (1u << 24) ? 1 << 24 : (int)ctx;
    d->rope_dims = rope_dims ? (int)rope_dims : d->head_dim;
    if (d->rope_dims > d->head_dim || d->rope_dims % 2)
        return spill_err_set(err, "%s: %s.rope.dimension_count is %d; it must be even and at most the head size %d",
                             g->path, a, d->rope_dims, d->head_dim);
    return 0;
}

int spill_shape_from_gguf(const spill_gguf *g, spill_shape *s, spill_err *err) {
    memset(s, 0, sizeof *s);
    spill_str arch;
    int rc = spill_gguf_get_str(g, "general.architecture", &arch, err);
    if (rc < 0) return -1;
    if (rc == 1) return spill_err_set(err, "%s: metadata 'general.architecture' is missing", g->path);
    snprintf(s->arch, sizeof s->arch, "%.*s", (int)(arch.len > 60 ? 60 : arch.len), arch.ptr);
    spill_dims d;
    if (spill_gguf_dims_read(g, s->arch, &d, err)) return -1;
    spill_shape_set_dims(s, &d); /* vocab: from token_embd.weight below */
    s->kv_elem_bytes = 4; /* the CPU runtime keeps K and V in F32 */
    if (alloc_layers(s, err)) return -1;
    uint64_t by_type[64] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const spill_gguf_tensor *t = &g->tensors[i];
        uint64_t elems = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        if (t->type < 64) by_type[t->type] += t->bytes;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len > 120 ? 120 : t->name.len), t->name.ptr);
        int layer;
        if (sscanf(name, "blk.%d.", &layer) == 1) {
            if (layer < 0 || layer >= s->n_layers)
                return spill_err_set(err, "%s: tensor '%s' names layer %d but block_count is %d", g->path, name, layer,
                                     s->n_layers);
            s->layer_bytes[layer] += t->bytes;
            s->layer_params[layer] += t->n_dims >= 2 ? elems : 0; /* norms and biases: no multiply-adds to speak of */
        } else if (!strcmp(name, "token_embd.weight")) {
            s->embd_bytes = t->bytes;
            s->embd_params = elems;
            s->vocab = (int)t->ne[1];
        } else if (!strcmp(name, "output.weight")) {
            s->output_bytes = t->bytes;
            s->output_params = elems;
        } else {
            s->norm_bytes += t->bytes;
        }
    }
    if (!s->embd_bytes) return spill_err_set(err, "%s: tensor 'token_embd.weight' is missing", g->path);
    s->tied = s->output_bytes == 0;
    int best = 0;
    for (int t = 1; t < 64; t++)
        if (by_type[t] > by_type[best]) best = t;
    snprintf(s->dtype, sizeof s->dtype, "%s", spill_dtype_name((uint32_t)best));
    return 0;
}

int spill_hf_config_read(const char *path, const char *dtype, spill_hf_config *c, spill_err *err) {
    memset(c, 0, sizeof *c);
    spill_json *j;
    if (spill_json_parse_file(path, 4 << 20, &j, err)) return -1;
    int rc = -1;
    const spill_json *archs = spill_json_get_type(j, "architectures", SPILL_JSON_ARRAY);
    const char *a = archs && archs->n && archs->items[0].type == SPILL_JSON_STRING ? archs->items[0].str : NULL;
    if (!a || (strcmp(a, "LlamaForCausalLM") && strcmp(a, "MistralForCausalLM") && strcmp(a, "Qwen2ForCausalLM"))) {
        spill_err_set(err, "%s: architecture '%s' is not supported (LlamaForCausalLM, MistralForCausalLM and "
                           "Qwen2ForCausalLM are)", path, a ? a : "(none given)");
        goto out;
    }
    snprintf(c->arch, sizeof c->arch, "%s", a);
    c->qkv_bias = !strcmp(a, "Qwen2ForCausalLM");
    int64_t L, dim, heads, kv, ffn, vocab, ctx, hd, sw = 0;
    if (spill_json_get_int(j, "num_hidden_layers", 1, 1024, -1, &L, path, err) ||
        spill_json_get_int(j, "hidden_size", 1, 65536, -1, &dim, path, err) ||
        spill_json_get_int(j, "num_attention_heads", 1, 1024, -1, &heads, path, err) ||
        spill_json_get_int(j, "num_key_value_heads", 1, 1024, 0, &kv, path, err) ||
        spill_json_get_int(j, "intermediate_size", 1, 1 << 20, -1, &ffn, path, err) ||
        spill_json_get_int(j, "vocab_size", 1, 1 << 24, -1, &vocab, path, err) ||
        spill_json_get_int(j, "max_position_embeddings", 1, 1 << 24, 4096, &ctx, path, err) ||
        spill_json_get_int(j, "head_dim", 1, 4096, 0, &hd, path, err))
        goto out;
    const char *need[] = {"num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size"};
    int64_t *vals[] = {&L, &dim, &heads, &ffn, &vocab};
    for (int i = 0; i < 5; i++)
        if (*vals[i] < 0) {
            spill_err_set(err, "%s: \"%s\" is missing", path, need[i]);
            goto out;
        }
    if (!kv) kv = heads;
    if (!hd) {
        if (dim % heads) {
            spill_err_set(err, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld", path,
                          (long long)dim, (long long)heads);
            goto out;
        }
        hd = dim / heads;
    }
    if (heads % kv || hd % 2) {
        spill_err_set(err, "%s: %lld heads, %lld key/value heads and head size %lld do not fit together", path,
                      (long long)heads, (long long)kv, (long long)hd);
        goto out;
    }
    c->d = (spill_dims){.n_layers = (int)L, .dim = (int)dim, .n_heads = (int)heads, .n_kv_heads = (int)kv,
                        .head_dim = (int)hd, .ffn_dim = (int)ffn, .vocab = (int)vocab, .ctx = (int)ctx,
                        .rope_dims = (int)hd};
    const spill_json *td = spill_json_get_type(j, "torch_dtype", SPILL_JSON_STRING);
    if (!td) td = spill_json_get_type(j, "dtype", SPILL_JSON_STRING);
    const char *dt = dtype ? dtype : td ? td->str : "bfloat16";
    if (!strcasecmp(dt, "bfloat16") || !strcasecmp(dt, "bf16")) c->dtype_bytes = 2, dt = "bf16";
    else if (!strcasecmp(dt, "float16") || !strcasecmp(dt, "f16")) c->dtype_bytes = 2, dt = "f16";
    else if (!strcasecmp(dt, "float32") || !strcasecmp(dt, "f32")) c->dtype_bytes = 4, dt = "f32";
    else {
        spill_err_set(err, "%s: dtype '%s' is not one of bfloat16, float16, float32", path, dt);
        goto out;
    }
    snprintf(c->dtype, sizeof c->dtype, "%s", dt);
    const spill_json *tie = spill_json_get_type(j, "tie_word_embeddings", SPILL_JSON_BOOL);
    c->tied = tie ? tie->boolean : 0;
    /* rope_theta and rope_scaling at the top (transformers 4) or inside rope_parameters (5) */
    const spill_json *rp = spill_json_get_type(j, "rope_parameters", SPILL_JSON_OBJECT);
    const spill_json *rs = spill_json_get_type(j, "rope_scaling", SPILL_JSON_OBJECT);
    if (!rs) rs = rp;
    if (spill_json_get_num(j, "rms_norm_eps", 1e-5, &c->eps, path, err) ||
        spill_json_get_num(j, "rope_theta", 10000.0, &c->rope_theta, path, err) ||
        (rp && spill_json_get_num(rp, "rope_theta", c->rope_theta, &c->rope_theta, path, err)))
        goto out;
    if (!(c->eps > 0 && c->eps < 1) || !(c->rope_theta > 1)) {
        spill_err_set(err, "%s: rms_norm_eps %g or rope_theta %g is out of range", path, c->eps, c->rope_theta);
        goto out;
    }
    const spill_json *sws = spill_json_get(j, "sliding_window");
    const spill_json *use_sw = spill_json_get_type(j, "use_sliding_window", SPILL_JSON_BOOL);
    if (sws && sws->type == SPILL_JSON_NUMBER && (!use_sw || use_sw->boolean) &&
        spill_json_get_int(j, "sliding_window", 1, 1 << 24, 0, &sw, path, err))
        goto out;
    c->sliding_window = (int)sw;
    const spill_json *rt = rs ? spill_json_get_type(rs, "rope_type", SPILL_JSON_STRING) : NULL;
    if (!rt && rs) rt = spill_json_get_type(rs, "type", SPILL_JSON_STRING);
    if (rt && !strcmp(rt->str, "llama3")) {
        c->llama3 = 1;
        if (spill_json_get_num(rs, "factor", 8.0, &c->rope_factor, path, err) ||
            spill_json_get_num(rs, "low_freq_factor", 1.0, &c->rope_low, path, err) ||
            spill_json_get_num(rs, "high_freq_factor", 4.0, &c->rope_high, path, err) ||
            spill_json_get_num(rs, "original_max_position_embeddings", 8192, &c->rope_old_ctx, path, err))
            goto out;
        if (!(c->rope_factor >= 1) || !(c->rope_high > c->rope_low) || !(c->rope_low > 0) || !(c->rope_old_ctx >= 1)) {
            spill_err_set(err, "%s: rope_scaling (llama3) has factor %g, low_freq_factor %g, high_freq_factor %g: "
                               "factor >= 1 and high > low > 0 are needed", path, c->rope_factor, c->rope_low, c->rope_high);
            goto out;
        }
    } else if (rt && strcmp(rt->str, "default")) {
        spill_err_set(err, "%s: rope scaling '%s' is not supported (llama3 is)", path, rt->str);
        goto out;
    }
    rc = 0;
out:
    spill_json_free(j);
    return rc;
}

int spill_shape_from_config(const char *path, const char *dtype, spill_shape *s, spill_err *err) {
    memset(s, 0, sizeof *s);
    spill_hf_config c;
    if (spill_hf_config_read(path, dtype, &c, err)) return -1;
    snprintf(s->arch, sizeof s->arch, "%s", c.arch);
    snprintf(s->dtype, sizeof s->dtype, "%s", c.dtype);
    s->tied = c.tied;
    spill_shape_set_dims(s, &c.d);
    s->kv_elem_bytes = 2; /* a GPU keeps K and V in 16 bits */
    if (alloc_layers(s, err)) {
        spill_shape_free(s);
        return -1;
    }
    uint64_t eb = (uint64_t)c.dtype_bytes, D = (uint64_t)c.d.dim;
    uint64_t q = (uint64_t)c.d.n_heads * (uint64_t)c.d.head_dim, kvd = (uint64_t)c.d.n_kv_heads * (uint64_t)c.d.head_dim;
    uint64_t mat = D * q + 2 * D * kvd + q * D + 3 * D * (uint64_t)c.d.ffn_dim;
    uint64_t vec = 2 * D + (c.qkv_bias ? q + 2 * kvd : 0); /* norms, and Qwen2's q/k/v biases */
    for (int l = 0; l < s->n_layers; l++) {
        s->layer_params[l] = mat;
        s->layer_bytes[l] = (mat + vec) * eb;
    }
    s->embd_params = (uint64_t)c.d.vocab * D;
    s->embd_bytes = s->embd_params * eb;
    s->output_params = s->tied ? 0 : s->embd_params;
    s->output_bytes = s->output_params * eb;
    s->norm_bytes = D * eb;
    return 0;
}

uint64_t spill_shape_weight_bytes(const spill_shape *s) {
    uint64_t b = s->embd_bytes + s->output_bytes + s->norm_bytes;
    for (int l = 0; l < s->n_layers; l++) b += s->layer_bytes[l];
    return b;
}

uint64_t spill_shape_kv_bytes_per_token(const spill_shape *s) {
    return 2ull * (uint64_t)s->n_layers * (uint64_t)s->n_kv_heads * (uint64_t)s->head_dim * (uint64_t)s->kv_elem_bytes;
}

int spill_shape_regions(const spill_shape *s, int ctx, int batch, spill_region **out, int *n, spill_err *err) {
    int L = s->n_layers, nr = 2 * L + SPILL_REGION_EXTRA;
    /* names live right after the array, so one free releases everything */
    size_t names = (size_t)nr * 16;
    spill_region *r = calloc(1, sizeof *r * (size_t)nr + names);
    if (!r) return spill_err_set(err, "out of memory");
    char *nm = (char *)(r + nr);
    uint64_t kv_layer = 2ull * (uint64_t)s->n_kv_heads * (uint64_t)s->head_dim * (uint64_t)s->kv_elem_bytes *
                        (uint64_t)(ctx > 0 ? ctx : 1) * (uint64_t)(batch > 0 ? batch : 1);
    for (int l = 0; l < L; l++) {
        snprintf(nm + (size_t)l * 16, 16, "blk.%d", l);
        r[l] = (spill_region){nm + (size_t)l * 16, s->layer_bytes[l], l, SPILL_REGION_WEIGHT, 1.0, s->layer_params[l]};
        snprintf(nm + (size_t)(L + l) * 16, 16, "kv.%d", l);
        r[L + l] = (spill_region){nm + (size_t)(L + l) * 16, kv_layer, l, SPILL_REGION_KV, 1.0, 0};
    }
    /* an untied embedding is read one row per token; a tied one is also the head, read whole */
    double embd_reads = s->tied ? 1.0 : 1.0 / (s->vocab > 0 ? s->vocab : 1);
    r[2 * L] = (spill_region){"token_embd", s->embd_bytes, -1, SPILL_REGION_WEIGHT, embd_reads, s->tied ? s->embd_params : 0};
    r[2 * L + 1] = (spill_region){"output", s->output_bytes, -1, SPILL_REGION_WEIGHT, 1.0, s->output_params};
    r[2 * L + 2] = (spill_region){"output_norm", s->norm_bytes, -1, SPILL_REGION_WEIGHT, 1.0, 0};
    *out = r;
    *n = nr;
    return 0;
}

void spill_regions_free(spill_region *r) { free(r); }
