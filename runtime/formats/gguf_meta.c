/* What a GGUF's metadata says about the model it holds: its architecture and hyperparameters,
 * read and checked once for the loader and the planner alike (gguf.h). */
#include "gguf.h"

int spill_gguf_arch(const spill_gguf *g, char *arch, size_t len, spill_err *err) {
    spill_str a;
    int rc = spill_gguf_get_str(g, "general.architecture", &a, err);
    if (rc < 0) return -1;
    if (rc == 1) return spill_err_set(err, "%s: metadata 'general.architecture' is missing", g->path);
    if (a.len == 0 || a.len >= len || memchr(a.ptr, 0, a.len))
        return spill_err_set(err, "%s: metadata 'general.architecture' is not a name (%llu bytes)", g->path,
                             (unsigned long long)a.len);
    memcpy(arch, a.ptr, a.len);
    arch[a.len] = 0;
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

static int arch_f32(const spill_gguf *g, const char *arch, const char *key, float *out, spill_err *err) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return spill_gguf_get_f32(g, k, out, err) < 0 ? -1 : 0;
}

int spill_gguf_hparams_read(const spill_gguf *g, const char *a, spill_hparams *hp, spill_err *err) {
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
    memset(hp, 0, sizeof *hp);
    hp->n_layers = (int)n_layers;
    hp->dim = (int)dim;
    hp->n_heads = (int)n_heads;
    hp->n_kv_heads = (int)n_kv;
    hp->head_dim = (int)(dim / n_heads);
    hp->ffn_dim = (int)ffn;
    hp->ctx_train = ctx < 1 ? 2048 : ctx > (1u << 24) ? 1 << 24 : (int)ctx;
    hp->rope_dims = rope_dims ? (int)rope_dims : hp->head_dim;
    if (hp->rope_dims > hp->head_dim || hp->rope_dims % 2)
        return spill_err_set(err, "%s: %s.rope.dimension_count is %d; it must be even and at most the head size %d",
                             g->path, a, hp->rope_dims, hp->head_dim);
    hp->eps = 1e-5f;
    hp->rope_base = 10000.0f;
    if (arch_f32(g, a, "attention.layer_norm_rms_epsilon", &hp->eps, err) || arch_f32(g, a, "rope.freq_base", &hp->rope_base, err))
        return -1;
    if (!(hp->eps > 0 && hp->eps < 1))
        return spill_err_set(err, "%s: %s.attention.layer_norm_rms_epsilon is %g; (0, 1) is allowed", g->path, a, hp->eps);
    if (!(hp->rope_base > 1)) return spill_err_set(err, "%s: %s.rope.freq_base is %g; it must be > 1", g->path, a, hp->rope_base);
    /* llama.cpp stores Llama's q/k rows permuted for adjacent pairs, and Qwen2 as Hugging Face has it */
    hp->rope_adjacent = strcmp(a, "qwen2") != 0;
    hp->qkv_bias = !strcmp(a, "qwen2");
    /* vocab and tied: the tensors say (token_embd.weight's rows; whether output.weight is there) */
    const spill_gguf_tensor *emb = spill_gguf_tensor_find(g, "token_embd.weight");
    if (emb && emb->n_dims == 2 && emb->ne[1] <= (1u << 24)) hp->vocab = (int)emb->ne[1];
    hp->tied = !spill_gguf_tensor_find(g, "output.weight");
    return 0;
}
