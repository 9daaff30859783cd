/* config.json of a Hugging Face checkpoint (see hf_config.h). */
#include "hf_config.h"

#include <strings.h>

#include "spill_json.h"

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
    c->hp = (spill_hparams){.n_layers = (int)L, .dim = (int)dim, .n_heads = (int)heads, .n_kv_heads = (int)kv,
                            .head_dim = (int)hd, .ffn_dim = (int)ffn, .vocab = (int)vocab, .ctx_train = (int)ctx,
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
    c->hp.tied = tie ? tie->boolean : 0;
    c->hp.qkv_bias = !strcmp(c->arch, "Qwen2ForCausalLM");
    c->hp.rope_adjacent = 0; /* Hugging Face rotates pairs (i, i + d/2) */
    /* rope_theta and rope_scaling at the top (transformers 4) or inside rope_parameters (5) */
    const spill_json *rp = spill_json_get_type(j, "rope_parameters", SPILL_JSON_OBJECT);
    const spill_json *rs = spill_json_get_type(j, "rope_scaling", SPILL_JSON_OBJECT);
    if (!rs) rs = rp;
    double eps, theta;
    if (spill_json_get_num(j, "rms_norm_eps", 1e-5, &eps, path, err) ||
        spill_json_get_num(j, "rope_theta", 10000.0, &theta, path, err) ||
        (rp && spill_json_get_num(rp, "rope_theta", theta, &theta, path, err)))
        goto out;
    if (!(eps > 0 && eps < 1) || !(theta > 1)) {
        spill_err_set(err, "%s: rms_norm_eps %g or rope_theta %g is out of range", path, eps, theta);
        goto out;
    }
    c->hp.eps = (float)eps;
    c->hp.rope_base = (float)theta;
    const spill_json *sws = spill_json_get(j, "sliding_window");
    const spill_json *use_sw = spill_json_get_type(j, "use_sliding_window", SPILL_JSON_BOOL);
    if (sws && sws->type == SPILL_JSON_NUMBER && (!use_sw || use_sw->boolean) &&
        spill_json_get_int(j, "sliding_window", 1, 1 << 24, 0, &sw, path, err))
        goto out;
    c->hp.sliding_window = (int)sw;
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

